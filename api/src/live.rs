//! Server-sent events for screens that stay open: the alert queue learns of new and updated alerts
//! without polling the list itself.

use crate::error::ApiError;
use crate::routes::Params;
use crate::{AppState, Caller};
use axum::extract::{Extension, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the catalog is asked for the latest change.
const POLL: Duration = Duration::from_secs(1);
/// A stream ends after this long (or `?seconds=N`, 1-300); the browser's EventSource reconnects at
/// once, which authenticates the session again (so a revoked token or an ended session stops its
/// streams too).
const LIFETIME: Duration = Duration::from_secs(300);

/// When the tenant's alerts last changed: any alert raised, bumped or handled, whatever its place in
/// the queue (an alert dated in the future, such as an anomaly whose hour is still open, must not
/// hide the ones raised after it).
async fn last_change(state: &AppState, tenant: &str) -> Option<i64> {
    state.store.catalog().alerts_changed(tenant).await.ok().filter(|t| *t > 0)
}

/// `GET /api/v1/alerts/stream`: an `alerts` event whenever the tenant's alerts change.
pub(crate) async fn alert_stream(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(p): Params,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let lifetime = match p.get("seconds") {
        None => LIFETIME,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=LIFETIME.as_secs()).contains(s))
            .map(Duration::from_secs)
            .ok_or_else(|| {
                ApiError::invalid(
                    "bad_parameter",
                    format!("seconds={v:?} must be 1 to {}", LIFETIME.as_secs()),
                )
            })?,
    };
    let tenant = caller.token.tenant;
    let seen = last_change(&state, &tenant).await;
    let until = Instant::now() + lifetime;
    let stream = futures::stream::unfold((state, tenant, seen), move |(state, tenant, seen)| async move {
        while Instant::now() < until {
            tokio::time::sleep(POLL).await;
            let now = last_change(&state, &tenant).await;
            if now.is_some() && now != seen {
                let data =
                    serde_json::json!({ "changed": now.map(schemas::time::format_micros) }).to_string();
                let event = Event::default().event("alerts").data(data);
                return Some((Ok(event), (state, tenant, now)));
            }
        }
        None
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
