//! Checked reads for DataFusion: every query sees exactly the catalog's live files for its tenant,
//! and no byte of a lake file reaches a query before the whole file has matched the SHA-256 the
//! catalog recorded at its commit.
//!
//! [`VerifyingStore`] wraps the lake's object store for one query session:
//! - **listing** the tenant's events table yields only the files the catalog holds (an orphan, a
//!   file retired by compaction but not yet unlinked, or a stray copy is never a row);
//! - the **first read** of a file (its footer, usually) fetches the whole file and checks its size
//!   and SHA-256; a file that matches is remembered in the engine-wide [`Verified`] set (lake files
//!   are immutable, so the check stands for [`RECHECK_AFTER`], an hour, and the server's scrub adds
//!   what it checked);
//!   a file that does not is refused with an error naming it (see [`damaged_path`]), which the store
//!   turns into a quarantine.
//!
//! Paths outside the events table (the alerts export) pass through unchecked: they are rebuilt
//! from the catalog, not a record of their own.

use crate::catalog::{FileEntry, sha256_hex};
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the catalog says one live lake file must be.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExpectedFile {
    /// Lake-relative path (`events/tenant=…/date=…/….parquet`).
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
}

impl From<&FileEntry> for ExpectedFile {
    fn from(f: &FileEntry) -> Self {
        Self { path: f.path.clone(), bytes: f.bytes.max(0) as u64, sha256: f.sha256.clone() }
    }
}

/// How long a check stands before a read checks the file again: bounds how long damage that
/// appears in a file after its check (bit rot) can go unseen by a long-running process.
pub const RECHECK_AFTER: Duration = Duration::from_secs(3600);

/// Files known good in this process, as (lake path, SHA-256), with when each was checked.
#[derive(Debug)]
pub struct Verified {
    checked: Mutex<HashMap<(String, String), Instant>>,
    recheck_after: Duration,
}

impl Default for Verified {
    fn default() -> Self {
        Self::new(RECHECK_AFTER)
    }
}

impl Verified {
    /// A set whose checks stand for `recheck_after`.
    pub fn new(recheck_after: Duration) -> Self {
        Self { checked: Mutex::default(), recheck_after }
    }

    /// Notes that `file` matched its checksum just now.
    pub fn insert(&self, file: &ExpectedFile) {
        self.lock().insert((file.path.clone(), file.sha256.clone()), Instant::now());
    }

    pub(crate) fn contains(&self, file: &ExpectedFile) -> bool {
        let key = (file.path.clone(), file.sha256.clone());
        self.lock().get(&key).is_some_and(|at| at.elapsed() < self.recheck_after)
    }

    /// Forgets files no longer live (keeps the set from growing with compaction's churn).
    pub fn retain_live(&self, live: &[ExpectedFile]) {
        let keep: HashSet<(&str, &str)> = live.iter().map(|f| (f.path.as_str(), f.sha256.as_str())).collect();
        self.lock().retain(|(p, s), _| keep.contains(&(p.as_str(), s.as_str())));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Instant>> {
        self.checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Text that starts the error for a damaged file; the lake path follows, then `]`.
const DAMAGED: &str = "[damaged lake file ";

/// The lake path named by a damaged-file error anywhere in `message`.
pub fn damaged_path(message: &str) -> Option<String> {
    let start = message.find(DAMAGED)? + DAMAGED.len();
    let end = message[start..].find(']')?;
    Some(message[start..start + end].to_owned())
}

/// The object store one query session reads through.
#[derive(Debug)]
pub struct VerifyingStore {
    inner: Arc<dyn ObjectStore>,
    /// The events table's directory as the object store names it.
    table: Path,
    /// Live files by their object-store path.
    files: HashMap<Path, ExpectedFile>,
    verified: Arc<Verified>,
}

impl std::fmt::Display for VerifyingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingStore({})", self.inner)
    }
}

impl VerifyingStore {
    /// A store over `inner` for the table at `table` (the object-store path of the lake's
    /// `table_rel` directory) holding exactly `files`.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        table: Path,
        table_rel: &str,
        files: Vec<ExpectedFile>,
        verified: Arc<Verified>,
    ) -> Self {
        let prefix = format!("{}/", table_rel.trim_matches('/'));
        let files = files
            .into_iter()
            .filter_map(|f| {
                let rest = f.path.strip_prefix(&prefix)?;
                let location = rest.split('/').fold(table.clone(), |p, part| p.join(part));
                Some((location, f))
            })
            .collect();
        Self { inner, table, files, verified }
    }

    /// In the events table: `Some(expected)` for a live file, `Err` for any other file. Outside
    /// it: `Ok(None)`.
    fn expected(&self, location: &Path) -> object_store::Result<Option<&ExpectedFile>> {
        if !location.prefix_matches(&self.table) {
            return Ok(None);
        }
        match self.files.get(location) {
            Some(f) => Ok(Some(f)),
            None => Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: "not a live file of the catalog".into(),
            }),
        }
    }

    /// Reads the whole file once and checks it, unless this process already has.
    async fn check(&self, location: &Path, file: &ExpectedFile) -> object_store::Result<()> {
        if self.verified.contains(file) {
            return Ok(());
        }
        let bytes = self.inner.get(location).await?.bytes().await?;
        let found = sha256_hex(&bytes);
        if bytes.len() as u64 != file.bytes || found != file.sha256 {
            tracing::error!(file = %file.path, expected = %file.sha256, %found, size = bytes.len(),
                "lake file failed its checksum on read");
            return Err(object_store::Error::Generic {
                store: "lake",
                source: format!(
                    "{DAMAGED}{}] holds {} bytes with SHA-256 {found}; the catalog recorded {} bytes, {}",
                    file.path,
                    bytes.len(),
                    file.bytes,
                    file.sha256
                )
                .into(),
            });
        }
        self.verified.insert(file);
        Ok(())
    }
}

fn read_only() -> object_store::Error {
    object_store::Error::NotSupported { source: "queries read the lake, never write it".into() }
}

#[async_trait]
impl ObjectStore for VerifyingStore {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> object_store::Result<PutResult> {
        Err(read_only())
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only())
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        if let Some(file) = self.expected(location)? {
            self.check(location, file).await?;
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations.map(|_| Err(read_only())).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let keep = self.keep_set();
        self.inner
            .list(prefix)
            .filter(move |m| {
                futures::future::ready(m.as_ref().map_or(true, |meta| keep.keeps(&meta.location)))
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        let keep = self.keep_set();
        listed.objects.retain(|m| keep.keeps(&m.location));
        Ok(listed)
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store::Result<()> {
        Err(read_only())
    }
}

/// What a listing keeps, owned so the listing stream can outlive the borrow of the store.
struct KeepSet {
    table: Path,
    files: HashSet<Path>,
}

impl KeepSet {
    fn keeps(&self, location: &Path) -> bool {
        !location.prefix_matches(&self.table) || self.files.contains(location)
    }
}

impl VerifyingStore {
    fn keep_set(&self) -> KeepSet {
        KeepSet { table: self.table.clone(), files: self.files.keys().cloned().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;

    fn file(path: &str, body: &[u8]) -> ExpectedFile {
        ExpectedFile { path: path.to_owned(), bytes: body.len() as u64, sha256: sha256_hex(body) }
    }

    async fn store_with(bodies: &[(&str, &[u8])]) -> Arc<dyn ObjectStore> {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for (p, b) in bodies {
            mem.put(&Path::from(format!("lake/{p}")), PutPayload::from(b.to_vec())).await.unwrap();
        }
        mem
    }

    #[tokio::test]
    async fn lists_only_live_files_and_refuses_a_changed_one() {
        let good = b"PAR1 good rows PAR1".as_slice();
        let stored_bad = b"PAR1 flipped!! PAR1".as_slice();
        let inner = store_with(&[
            ("events/tenant=t/date=d/a.parquet", good),
            ("events/tenant=t/date=d/b.parquet", stored_bad),
            ("events/tenant=t/date=d/orphan.parquet", good),
            ("alerts/tenant=t/x.parquet", good),
        ])
        .await;
        let expected = vec![
            file("events/tenant=t/date=d/a.parquet", good),
            // The catalog recorded b's bytes before they changed on disk.
            file("events/tenant=t/date=d/b.parquet", b"PAR1 good rows PAR1"),
            // Another tenant's file is not this session's.
            file("events/tenant=u/date=d/c.parquet", good),
        ];
        let verified = Arc::new(Verified::default());
        let store = VerifyingStore::new(
            inner,
            Path::from("lake/events/tenant=t"),
            "events/tenant=t",
            expected.clone(),
            Arc::clone(&verified),
        );
        let mut listed: Vec<String> = store
            .list(Some(&Path::from("lake")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        listed.sort();
        assert_eq!(
            listed,
            [
                "lake/alerts/tenant=t/x.parquet",
                "lake/events/tenant=t/date=d/a.parquet",
                "lake/events/tenant=t/date=d/b.parquet"
            ]
        );
        let a = Path::from("lake/events/tenant=t/date=d/a.parquet");
        assert_eq!(store.get_range(&a, 0..4).await.unwrap().as_ref(), b"PAR1");
        assert!(verified.contains(&expected[0]), "a checked file is remembered");
        let b = Path::from("lake/events/tenant=t/date=d/b.parquet");
        let err = store.get_range(&b, 0..4).await.unwrap_err().to_string();
        assert_eq!(damaged_path(&err).as_deref(), Some("events/tenant=t/date=d/b.parquet"), "{err}");
        assert!(!verified.contains(&expected[1]));
        let orphan = Path::from("lake/events/tenant=t/date=d/orphan.parquet");
        assert!(matches!(store.get(&orphan).await, Err(object_store::Error::NotFound { .. })));
        assert!(store.put(&a, PutPayload::from_static(b"x")).await.is_err(), "read-only");
    }

    #[test]
    fn a_check_stands_for_its_time_only() {
        let a = file("events/a.parquet", b"a");
        let now = Verified::new(Duration::ZERO);
        now.insert(&a);
        assert!(!now.contains(&a), "with no standing time every read checks again");
        let hour = Verified::new(Duration::from_secs(3600));
        hour.insert(&a);
        assert!(hour.contains(&a));
        assert!(!hour.contains(&file("events/a.parquet", b"other bytes")), "keyed by the checksum too");
    }

    #[test]
    fn verified_set_forgets_retired_files() {
        let v = Verified::default();
        let (a, b) = (file("events/a.parquet", b"a"), file("events/b.parquet", b"b"));
        v.insert(&a);
        v.insert(&b);
        v.retain_live(std::slice::from_ref(&b));
        assert!(!v.contains(&a));
        assert!(v.contains(&b));
    }
}
