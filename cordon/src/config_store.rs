//! The store's settings, taken from the server's validated configuration.

use super::{ServeArgs, ServerConfig, file::FileStore};
use anyhow::bail;
use std::time::Duration;

/// How old a lake file the catalog does not know must be before it is removed, where other
/// processes commit to the catalog: far longer than a commit takes between writing its files and
/// its catalog transaction.
const SHARED_ORPHAN_GRACE: Duration = Duration::from_secs(600);

impl ServeArgs {
    /// `--shared-catalog` and its lease, checked: processes share a catalog they all reach
    /// (PostgreSQL) and a lake outside each one's data directory.
    pub(super) fn shared(
        &self,
        file: &FileStore,
        metadata_url: &str,
        lake_url: Option<&str>,
    ) -> anyhow::Result<Option<Duration>> {
        if !(self.shared_catalog || file.shared_catalog.unwrap_or(false)) {
            return Ok(None);
        }
        if !metadata_url.starts_with("postgres") {
            bail!(
                "--shared-catalog needs a PostgreSQL catalog every process reaches (--metadata-url postgres://...)"
            );
        }
        if lake_url.is_none() {
            bail!(
                "--shared-catalog needs the lake every process writes to (--lake-url), outside the data directory"
            );
        }
        match self.lease_secs.or(file.lease_secs).unwrap_or(30) {
            secs @ 2..=3600 => Ok(Some(Duration::from_secs(secs))),
            _ => bail!("--lease-secs must be from 2 to 3600"),
        }
    }
}

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
    if let Some(lease) = cfg.shared_catalog {
        scfg.shared_catalog = true;
        scfg.orphan_grace = SHARED_ORPHAN_GRACE;
        scfg.maintenance_lease = lease;
    }
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
