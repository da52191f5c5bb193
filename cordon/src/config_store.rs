//! The store's settings, taken from the server's validated configuration.

use super::{ServeArgs, ServerConfig, SqlCluster, file::FileServer, file::FileStore};
use anyhow::{Context, bail};
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

impl ServeArgs {
    /// `--sql-executors` and their key, checked: executors read the lake themselves, so it must be
    /// one they reach (`--lake-url`), not the server's own data directory.
    pub(super) fn sql_cluster(
        &self,
        file: &FileServer,
        lake_url: Option<&str>,
    ) -> anyhow::Result<Option<SqlCluster>> {
        let addresses = if self.sql_executors.is_empty() {
            file.sql_executors.clone()
        } else {
            Some(self.sql_executors.clone())
        };
        let Some(addresses) = addresses else { return Ok(None) };
        let Some(key_file) = self.sql_executor_key_file.clone().or(file.sql_executor_key_file.clone()) else {
            bail!("--sql-executors needs --sql-executor-key-file (the key the executors take)");
        };
        if lake_url.is_none() {
            bail!(
                "--sql-executors needs the lake the executors read (--lake-url), outside the data directory"
            );
        }
        let executors = distsql::Executors::parse(&addresses)?;
        let ca_pem = match self.sql_executor_ca.as_ref().or(file.sql_executor_ca.as_ref()) {
            Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
            None => None,
        };
        let task_bytes = match self.sql_task_kib.or(file.sql_task_kib) {
            None => distsql::BYTES_PER_TASK,
            Some(kib @ 1..=1_048_576) => kib * 1024,
            Some(_) => bail!("--sql-task-kib must be from 1 to 1048576"),
        };
        let key = crate::executor::read_key(&key_file)?;
        let engine = distsql::DistributedSql::new(executors, key, distsql::Channels::new(ca_pem.as_deref()))
            .context("--sql-executors and --sql-executor-ca")?;
        Ok(Some(SqlCluster { engine: engine.with_bytes_per_task(task_bytes) }))
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
    scfg.sql_engine = cfg
        .sql_cluster
        .as_ref()
        .map(|c| std::sync::Arc::new(c.engine.clone()) as std::sync::Arc<dyn store::query::SqlEngine>);
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
