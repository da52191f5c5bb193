//! The store's settings, taken from the server's validated configuration.

use super::ServerConfig;

/// The store's settings from the server's.
pub fn store_config(cfg: &ServerConfig) -> store::StoreConfig {
    let mut scfg = store::StoreConfig::new(cfg.data_dir.clone());
    scfg.metadata_url = cfg.metadata_url.clone();
    scfg.lake_url = cfg.lake_url.clone();
    scfg.lake_options = cfg.lake_options.clone();
    scfg.query_memory_bytes = cfg.query_memory_bytes;
    scfg.sql_workers = sql_workers(cfg.sql_workers);
    scfg.index_commit = cfg.index_commit;
    scfg.delta_interval = cfg.delta_interval;
    scfg.delta_checkpoint_every = cfg.delta_checkpoint_every;
    scfg
}

/// Analyst SQL runs in this binary's hidden `sql-worker` subcommand.
fn sql_workers(slots: usize) -> Option<store::sql_pool::WorkerCommand> {
    if slots == 0 {
        return None;
    }
    match std::env::current_exe() {
        Ok(program) => {
            Some(store::sql_pool::WorkerCommand { program, args: vec!["sql-worker".to_owned()], slots })
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this binary; analyst SQL runs in the server");
            None
        }
    }
}
