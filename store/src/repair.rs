//! Start-up repair of derived state. The index and the Delta log are rebuilt from the catalog and
//! the lake, so one that cannot be opened (a truncated segment, a damaged commit) is set aside under
//! a `.damaged-<unix time>` name, kept for inspection, and replaced by an empty one that recovery
//! fills again. `cordon verify` opens the store without repair, so it reports such damage instead.

use crate::StoreError;
use crate::delta::DeltaLog;
use crate::index::FullTextIndex;
use crate::objects::Objects;
use std::path::Path;

/// Opens the index in `dir`, setting a damaged one aside when `repair` is on.
pub(crate) fn open_index(dir: &Path, repair: bool) -> Result<FullTextIndex, StoreError> {
    match FullTextIndex::open(dir) {
        Ok(index) => Ok(index),
        Err(e) if repair => {
            set_aside(dir, "index", "rebuilt from the lake", &e)?;
            Ok(FullTextIndex::open(dir)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the Delta log of the lake's `events` table, setting a damaged one aside when `repair` is
/// on and the lake is a directory (a bucket's log is left for the operator).
pub(crate) fn open_delta(objects: &Objects, repair: bool) -> Result<DeltaLog, StoreError> {
    match DeltaLog::open(objects, "events") {
        Ok(log) => Ok(log),
        Err(e) if repair && objects.local_root().is_some() => {
            let dir = objects.local_root().expect("checked").join("events").join("_delta_log");
            set_aside(&dir, "Delta log", "started again from the catalog", &e)?;
            Ok(DeltaLog::open(objects, "events")?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Renames `path` (the damaged `what`) to `<path>.damaged-<unix time>` and logs why.
fn set_aside(path: &Path, what: &str, then: &str, cause: &dyn std::error::Error) -> Result<(), StoreError> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".damaged-{secs}"));
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside)
        .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
    tracing::error!("{what} set aside as {} and {then}: {}", aside.display(), schemas::error_chain(cause));
    Ok(())
}
