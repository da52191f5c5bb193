//! Ingest's settings ([`IngestConfig`]) and their defaults.

use crate::{QuotaConfig, watchdog};
use schemas::decode::Limits;
use schemas::subject::Subjects;
use std::sync::Arc;
use std::time::Duration;

/// Ingest settings.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Subject namespace.
    pub subjects: Subjects,
    /// The events stream.
    pub stream: String,
    /// The dead-letter stream.
    pub dlq_stream: String,
    /// The durable consumer's name.
    pub consumer: String,
    /// Messages per fetch.
    pub fetch_messages: usize,
    /// How long a fetch waits for messages.
    pub fetch_wait: Duration,
    /// Largest message accepted (compressed and decompressed), bytes.
    pub max_message_bytes: usize,
    /// Per-line limits.
    pub limits: Limits,
    /// JetStream duplicate window for publisher retries.
    pub duplicate_window: Duration,
    /// The events stream's size cap, bytes (`None`: only nats-server's own `max_file_store`). Past
    /// it JetStream refuses new messages and agents keep them spooled until ingest has caught up.
    pub stream_max_bytes: Option<i64>,
    /// Copies JetStream keeps of the streams and buckets (one per cluster member that
    /// may be lost, plus one); existing streams are rescaled to it.
    pub stream_replicas: usize,
    /// Sigma rules and the shipped policy that tag events with ATT&CK techniques before they are
    /// stored (`None`: store events as sent). A tenant's policy from the catalog replaces the shipped
    /// one as soon as it is read.
    pub tagger: Option<Arc<correlate::sigma::Tagger>>,
    /// How often tenants' policies are re-read from the catalog (checked before each batch).
    pub policy_refresh: Duration,
    /// Detections of the same rule on the same host and object this close together join one alert.
    pub alert_window: Duration,
    /// Every tenant's entity graph, fed with each batch (shared with the API, which reads it).
    pub graphs: Arc<correlate::graph::Graphs>,
    /// How alerts are joined into incidents.
    pub incident: correlate::incident::IncidentConfig,
    /// Login baselines: fitted models and running counts (shared with the API and the refit task).
    pub baselines: Arc<anomaly::live::Live>,
    /// How the baselines are fitted (the refit's, and historical logins' judgement in their own time).
    pub forecast: anomaly::forecast::ForecastConfig,
    /// Signs what agents are sent (policies, rule bundles); agents verify with its public key.
    pub signing: Arc<schemas::signed::SigningKey>,
    /// What each agent may send (see [`quota`]).
    pub quota: QuotaConfig,
    /// When silent agents, stopped sources and sequence gaps are alerted (see [`watchdog`]).
    pub watch: watchdog::WatchConfig,
    /// The analysers each committed batch reaches, in order (the binary chooses; default: all).
    /// One left out keeps no state and raises nothing: without `graph`, no incidents are worked out.
    pub analysers: Vec<crate::analyse::AnalyserKind>,
    /// `Some(lease)`: several ingest processes share the catalog and the lake (ADR 0009), and the
    /// one holding the catalog's `analysis` lease analyses what every one of them commits, read back
    /// from the lake in commit order; a holder that stops renewing is replaced this long after.
    /// `None` (one process): ingest analyses what it commits, from the rows in hand.
    pub elected_analysis: Option<Duration>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            subjects: Subjects::default(),
            stream: "CORDON_EVENTS".to_owned(),
            dlq_stream: "CORDON_DLQ".to_owned(),
            consumer: "cordon-ingest".to_owned(),
            fetch_messages: 256,
            fetch_wait: Duration::from_millis(200),
            max_message_bytes: 8 * 1024 * 1024,
            limits: Limits::default(),
            duplicate_window: Duration::from_secs(120),
            stream_max_bytes: None,
            stream_replicas: 1,
            tagger: Some(Arc::new(
                correlate::sigma::Tagger::cordon_pack(schemas::policy::Policy::cordon_default())
                    .expect("Cordon's rule pack compiles (tested in correlate)"),
            )),
            policy_refresh: Duration::from_secs(1),
            alert_window: Duration::from_secs(3600),
            graphs: Arc::new(correlate::graph::Graphs::default()),
            incident: correlate::incident::IncidentConfig::default(),
            baselines: Arc::new(anomaly::live::Live::new()),
            forecast: anomaly::forecast::ForecastConfig::default(),
            signing: Arc::new(schemas::signed::SigningKey::generate().expect("the system has randomness").0),
            quota: QuotaConfig::default(),
            watch: watchdog::WatchConfig::default(),
            analysers: crate::analyse::AnalyserKind::ALL.to_vec(),
            elected_analysis: None,
        }
    }
}
