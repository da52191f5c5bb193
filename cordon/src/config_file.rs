//! The configuration file's sections as they are read (`deny_unknown_fields`: a misspelt key is an
//! error, not a default); [`super::ServeArgs::resolve`] merges them with the flags and validates.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub(super) server: FileServer,
    #[serde(default)]
    pub(super) nats: FileNats,
    #[serde(default)]
    pub(super) ingest: FileIngest,
    #[serde(default)]
    pub(super) store: FileStore,
    #[serde(default)]
    pub(super) correlate: FileCorrelate,
    #[serde(default)]
    pub(super) anomaly: FileAnomaly,
    #[serde(default)]
    pub(super) reports: Vec<FileReport>,
    #[serde(default)]
    pub(super) detection: FileDetection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDetection {
    #[serde(default)]
    pub(super) rules: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileReport {
    pub(super) name: String,
    pub(super) schedule: String,
    pub(super) period_hours: Option<u32>,
    pub(super) webhook: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAnomaly {
    pub(super) refit: Option<String>,
    pub(super) threads: Option<usize>,
    pub(super) history_hours: Option<usize>,
    pub(super) min_history_hours: Option<usize>,
    pub(super) horizon_hours: Option<usize>,
    pub(super) level: Option<f64>,
    pub(super) fleet_quantile: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCorrelate {
    pub(super) incident_window_hours: Option<u32>,
    pub(super) graph_hot_hours: Option<u32>,
    pub(super) graph_max_edges: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStore {
    pub(super) lake_url: Option<String>,
    #[serde(default)]
    pub(super) lake_options: std::collections::BTreeMap<String, String>,
    pub(super) index_commit_ms: Option<u64>,
    pub(super) index_commit_docs: Option<u64>,
    pub(super) delta_interval_secs: Option<u64>,
    pub(super) delta_checkpoint_every: Option<i64>,
    pub(super) maintenance_interval_secs: Option<u64>,
    pub(super) scrub_interval_secs: Option<u64>,
    pub(super) retention_days: Option<u32>,
    pub(super) shared_catalog: Option<bool>,
    pub(super) lease_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) metadata_url: Option<String>,
    pub(super) listen: Option<String>,
    pub(super) query_memory_mib: Option<usize>,
    pub(super) sql_workers: Option<usize>,
    pub(super) sql_timeout_secs: Option<u64>,
    pub(super) sql_executors: Option<Vec<String>>,
    pub(super) sql_executor_key_file: Option<PathBuf>,
    pub(super) sql_task_kib: Option<usize>,
    pub(super) sql_executor_ca: Option<PathBuf>,
    pub(super) auth_failure_limit: Option<u32>,
    pub(super) allow_private_webhooks: Option<bool>,
    pub(super) signing_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileNats {
    pub(super) url: Option<String>,
    pub(super) subject_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileIngest {
    pub(super) max_message_bytes: Option<usize>,
    pub(super) stream_max_mib: Option<u64>,
    pub(super) stream_replicas: Option<usize>,
    pub(super) agent_events_per_sec: Option<u64>,
    pub(super) agent_bytes_per_sec: Option<u64>,
    pub(super) agent_dead_secs: Option<u64>,
    pub(super) agent_quiet_secs: Option<u64>,
}
