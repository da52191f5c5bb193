//! # api: the REST API (axum), versioned under `/api/v1`
//!
//! Every route is a row of [`ROUTES`]: method, path, the permission it needs, its audit action, and its
//! documentation. The router and the OpenAPI document are both built from that table, so a route cannot
//! exist without an access rule (deny by default) or without documentation. Callers authenticate with a
//! bearer token (created with `cordon token create --role`); a token belongs to one tenant, every read
//! is scoped to it, and its role ([`schemas::access::Role`]) decides which permissions it has
//! ([`access`]). Writes and exports are written to the audit chain with their outcome.
//!
//! Depends on `schemas` and `store` (reads) and on the metrics registry; never on ingest internals.

pub mod access;
mod approver_sets;
pub mod baselines;
pub mod console;
mod detection;
mod detection_view;
mod enroll;
pub mod error;
mod graph_view;
mod investigate;
pub mod ioc;
pub mod limits;
mod live;
mod logins_view;
pub mod openapi;
pub mod reports;
mod requests;
mod requests_view;
mod response;
mod response_view;
mod routes;
pub mod session;
mod standing;
mod table;
mod table_response;
mod trust;

pub use openapi::openapi;

use axum::Router;
use error::ApiError;
use schemas::metrics::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;
use store::catalog::TokenInfo;

pub use table::{Access, Param, ROUTES, RouteSpec};

/// Shared state of the handlers.
#[derive(Debug)]
pub struct AppState {
    /// The store.
    pub store: Arc<Store>,
    /// Metrics.
    pub metrics: Arc<Registry>,
    tokens: Mutex<HashMap<String, (TokenInfo, Instant)>>,
    /// Failed token attempts per client address.
    pub limiter: access::FailureLimiter,
    /// Failed enrollments per client address.
    pub enroll_limiter: access::FailureLimiter,
    /// The server's public signing key, given to agents at enrollment.
    pub server_key: std::sync::OnceLock<String>,
    /// The time budget of analyst SQL (default 30 s).
    pub sql_timeout: std::sync::OnceLock<std::time::Duration>,
    /// The detection and correlation rules ingest runs (coverage matrix, policy preview, rules):
    /// the same cell as ingest's, so a reload shows at once.
    pub detection: Arc<correlate::sigma::CurrentRules>,
    /// Every tenant's entity graph, as ingest keeps it.
    pub graphs: Arc<correlate::graph::Graphs>,
    /// The login baselines ingest checks against, and how a refit fits them.
    pub baselines: Arc<anomaly::live::Live>,
    /// Forecast settings for refits asked for over the API.
    pub forecast: anomaly::forecast::ForecastConfig,
    /// Console sessions.
    pub sessions: session::Sessions,
    /// Whether ingest consumes yet (`/readyz`); an API without ingest is ready.
    pub ingest_ready: std::sync::OnceLock<Arc<std::sync::atomic::AtomicBool>>,
}

impl AppState {
    /// State over a store and a metrics registry.
    pub fn new(store: Arc<Store>, metrics: Arc<Registry>) -> Arc<Self> {
        Self::with_detection(store, metrics, None)
    }

    /// State that also knows the rules ingest runs.
    pub fn with_detection(
        store: Arc<Store>,
        metrics: Arc<Registry>,
        detection: Option<Arc<correlate::sigma::Tagger>>,
    ) -> Arc<Self> {
        Self::with_correlation(
            store,
            metrics,
            Arc::new(correlate::sigma::CurrentRules::new(detection)),
            Arc::new(correlate::graph::Graphs::default()),
        )
    }

    /// State that also reads the entity graphs ingest keeps.
    pub fn with_correlation(
        store: Arc<Store>,
        metrics: Arc<Registry>,
        detection: Arc<correlate::sigma::CurrentRules>,
        graphs: Arc<correlate::graph::Graphs>,
    ) -> Arc<Self> {
        Self::with_baselines(
            store,
            metrics,
            detection,
            graphs,
            Arc::new(anomaly::live::Live::new()),
            anomaly::forecast::ForecastConfig::default(),
        )
    }

    /// State that also reads the login baselines ingest keeps.
    pub fn with_baselines(
        store: Arc<Store>,
        metrics: Arc<Registry>,
        detection: Arc<correlate::sigma::CurrentRules>,
        graphs: Arc<correlate::graph::Graphs>,
        baselines: Arc<anomaly::live::Live>,
        forecast: anomaly::forecast::ForecastConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            metrics,
            tokens: Mutex::new(HashMap::new()),
            limiter: access::FailureLimiter::default(),
            enroll_limiter: access::FailureLimiter::default(),
            server_key: std::sync::OnceLock::new(),
            sql_timeout: std::sync::OnceLock::new(),
            detection,
            graphs,
            baselines,
            forecast,
            sessions: session::Sessions::default(),
            ingest_ready: std::sync::OnceLock::new(),
        })
    }

    /// (title, id, level, techniques) of every rule ingest runs that carries techniques: detection
    /// rules and correlations.
    pub(crate) fn rule_techniques(&self) -> Vec<(String, String, correlate::sigma::Level, Vec<String>)> {
        let Some(t) = self.detection.get() else { return Vec::new() };
        let rules = t.rules().iter().map(|r| (r.title.clone(), r.id.clone(), r.level, r.techniques.clone()));
        let corrs = t.correlations().map(|c| {
            (
                c.title.clone(),
                c.id.clone(),
                c.level.unwrap_or(correlate::sigma::Level::Medium),
                c.techniques.clone(),
            )
        });
        rules.chain(corrs).filter(|r| !r.3.is_empty()).collect()
    }

    /// A token seen within the last 30 s (a revocation takes effect within that).
    pub(crate) fn cached_token(&self, secret: &str) -> Option<TokenInfo> {
        const TTL: Duration = Duration::from_secs(30);
        let cache = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(secret).filter(|(_, at)| at.elapsed() < TTL).map(|(info, _)| info.clone())
    }

    /// The token behind a secret from the catalog (None: unknown or revoked), cached when found.
    pub(crate) async fn lookup_token(&self, secret: &str) -> Result<Option<TokenInfo>, ApiError> {
        match self.store.catalog().verify_token(secret).await {
            Ok(Some(info)) => {
                let mut cache = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(secret.to_owned(), (info.clone(), Instant::now()));
                Ok(Some(info))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(store::StoreError::from(e).into()),
        }
    }
}

/// The caller, as established by the auth layer.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token.
    pub token: TokenInfo,
}

/// The router, every route behind the auth layer.
pub fn router(state: Arc<AppState>) -> Router {
    let mut r = Router::new();
    for spec in ROUTES.iter() {
        r = r.route(spec.path, routes::handler(spec));
    }
    // Route layers run outermost last-added: authentication, then the parameter limits.
    r.route_layer(axum::middleware::from_fn(limits::params_layer))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), access::layer))
        .layer(axum::middleware::from_fn(limits::uri_layer))
        .with_state(state)
}
