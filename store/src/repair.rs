//! Start-up repair of derived state. The index and the Delta log are rebuilt from the catalog and
//! the lake, so one that cannot be opened (a truncated segment, a damaged commit) is set aside under
//! a `.damaged-<unix time>` name, kept for inspection, and replaced by an empty one that recovery
//! fills again. `cordon verify` opens the store without repair, so it reports such damage instead.

use crate::StoreError;
use crate::delta::DeltaLog;
use crate::index::FullTextIndex;
use crate::objects::Objects;
use std::path::{Path, PathBuf};

/// Opens the index in `dir`, setting a damaged one aside when `repair` is on.
pub(crate) fn open_index(
    dir: &Path,
    repair: bool,
    repaired: &mut Vec<String>,
) -> Result<FullTextIndex, StoreError> {
    match FullTextIndex::open(dir) {
        Ok(index) => Ok(index),
        Err(e) if repair => {
            let aside = set_aside(dir)?;
            let why = format!(
                "index set aside as {} and rebuilt from the lake: {}",
                aside.display(),
                schemas::error_chain(&e)
            );
            tracing::error!("{why}");
            repaired.push(why);
            Ok(FullTextIndex::open(dir)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the Delta log of the lake's `events` table, setting a damaged one aside when `repair` is
/// on and the lake is a directory (a bucket's log is left for the operator).
pub(crate) fn open_delta(
    objects: &Objects,
    repair: bool,
    repaired: &mut Vec<String>,
) -> Result<DeltaLog, StoreError> {
    match DeltaLog::open(objects, "events") {
        Ok(log) => Ok(log),
        Err(e) if repair && objects.local_root().is_some() => {
            let dir = objects.local_root().expect("checked").join("events").join("_delta_log");
            let aside = set_aside(&dir)?;
            let why = format!(
                "Delta log set aside as {} and started again from the catalog: {}",
                aside.display(),
                schemas::error_chain(&e)
            );
            tracing::error!("{why}");
            repaired.push(why);
            Ok(DeltaLog::open(objects, "events")?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Renames `path` to `<path>.damaged-<unix time>`.
fn set_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".damaged-{secs}"));
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside)
        .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
    Ok(aside)
}
