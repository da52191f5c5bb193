//! Where the lake's bytes live: a local directory (the default) or an S3-compatible bucket through
//! `object_store`, behind one small set of operations the lake and the Delta log need.
//!
//! | operation   | local directory                                   | object store                 |
//! |-------------|---------------------------------------------------|------------------------------|
//! | `put`       | temp file, fsync, rename, fsync the directory     | `PUT` (atomic by definition) |
//! | `put_new`   | temp file, fsync, hard link (fails if it exists)   | `PUT` with `If-None-Match: *` |
//! | `get`       | read                                              | `GET`                        |
//! | `list`      | recursive walk                                    | `LIST` under the prefix      |
//! | `delete`    | unlink (missing is fine), empty partitions go      | `DELETE`                     |
//!
//! The lake's callers are synchronous code on the CPU pool, so the object-store side runs its futures
//! on a small runtime of its own and waits for them; a caller on any thread (inside or outside a
//! tokio runtime) may call it.
//!
//! Temporary names start with `.tmp-` and never end in `.parquet`: readers that list the lake
//! (DataFusion, Spark) skip them, and start-up recovery deletes them.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::fs::{self, File};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Failures of the lake's storage.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// The object or file does not exist.
    #[error("{path} does not exist")]
    NotFound {
        /// Lake-relative path.
        path: String,
    },
    /// `put_new` found the name taken.
    #[error("{path} already exists")]
    AlreadyExists {
        /// Lake-relative path.
        path: String,
    },
    /// Local file system.
    #[error("lake file system error at {path}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Object store (network, credentials, bucket).
    #[error("object store error at {path}")]
    Store {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: object_store::Error,
    },
    /// The lake location cannot be used.
    #[error("cannot use lake location {url}: {reason}")]
    Config {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ObjectsError + '_ {
    move |source| ObjectsError::Io { path: path.display().to_string(), source }
}

/// The lake's storage: a directory or a bucket (with a key prefix).
#[derive(Clone, Debug)]
pub struct Objects {
    inner: Inner,
}

#[derive(Clone, Debug)]
enum Inner {
    Local { root: PathBuf, fsync: bool },
    Remote(Remote),
}

#[derive(Clone, Debug)]
struct Remote {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket` (what DataFusion registers the store under).
    base: url::Url,
    /// Key prefix inside the bucket ("" for the bucket's root).
    prefix: String,
    rt: Arc<IoRuntime>,
}

/// The runtime object-store futures run on.
#[derive(Debug)]
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Objects {
    /// A lake in a local directory (created if missing). `fsync` false is for benchmarks only.
    pub fn local(root: &Path, fsync: bool) -> Result<Self, ObjectsError> {
        fs::create_dir_all(root).map_err(io(root))?;
        Ok(Self { inner: Inner::Local { root: root.to_owned(), fsync } })
    }

    /// A lake at an object-store URL: `s3://bucket/prefix`, configured from the `AWS_*` environment
    /// variables (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ALLOW_HTTP`...) and then `options` (the same keys in lower case: `endpoint`,
    /// `access_key_id`, `allow_http`...). `memory://` is an in-process store for tests.
    pub fn remote(url: &str, options: &[(String, String)]) -> Result<Self, ObjectsError> {
        let config = |reason: String| ObjectsError::Config { url: url.to_owned(), reason };
        let parsed = url::Url::parse(url).map_err(|e| config(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url);
                for (k, v) in options {
                    let key = k.parse().map_err(|e: object_store::Error| config(e.to_string()))?;
                    b = b.with_config(key, v);
                }
                Arc::new(b.build().map_err(|e| config(e.to_string()))?)
            }
            "memory" => Arc::new(object_store::memory::InMemory::new()),
            other => return Err(config(format!("unsupported scheme {other:?} (use s3:// or a directory)"))),
        };
        let host = parsed.host_str().unwrap_or_default();
        let base =
            url::Url::parse(&format!("{}://{host}", parsed.scheme())).map_err(|e| config(e.to_string()))?;
        let prefix = parsed.path().trim_matches('/').to_owned();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cordon-objects")
            .enable_all()
            .build()
            .map_err(|e| config(format!("cannot start the object-store runtime: {e}")))?;
        Ok(Self { inner: Inner::Remote(Remote { store, base, prefix, rt: Arc::new(IoRuntime(Some(rt))) }) })
    }

    /// A location given as a directory path or a URL (anything with `://`).
    pub fn open(location: &str, options: &[(String, String)], fsync: bool) -> Result<Self, ObjectsError> {
        if location.contains("://") {
            Self::remote(location, options)
        } else {
            Self::local(Path::new(location), fsync)
        }
    }

    /// The local root, when the lake is a directory.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Local { root, .. } => Some(root),
            Inner::Remote(_) => None,
        }
    }

    /// Where the lake is, for people: a directory or `s3://bucket/prefix`.
    pub fn display(&self) -> String {
        match &self.inner {
            Inner::Local { root, .. } => root.display().to_string(),
            Inner::Remote(r) if r.prefix.is_empty() => r.base.to_string(),
            Inner::Remote(r) => format!("{}/{}", r.base.as_str().trim_end_matches('/'), r.prefix),
        }
    }

    /// The URL of a lake-relative directory, for a DataFusion listing table (ends in `/`).
    pub fn dir_url(&self, rel: &str) -> String {
        let rel = rel.trim_matches('/');
        match &self.inner {
            Inner::Local { root, .. } => format!("{}/", root.join(rel).display()),
            Inner::Remote(_) => format!("{}/{rel}/", self.display().trim_end_matches('/')),
        }
    }

    /// The object store and the URL to register it under with DataFusion, when the lake is remote.
    pub fn object_store(&self) -> Option<(url::Url, Arc<dyn ObjectStore>)> {
        match &self.inner {
            Inner::Local { .. } => None,
            Inner::Remote(r) => Some((r.base.clone(), Arc::clone(&r.store))),
        }
    }

    /// Writes `bytes` at `rel`, replacing what is there, atomically and durably.
    pub fn put(&self, rel: &str, bytes: Bytes) -> Result<(), ObjectsError> {
        match &self.inner {
            Inner::Local { root, fsync } => {
                let target = root.join(rel);
                let tmp = write_temp(&target, &bytes, *fsync)?;
                if let Err(e) = fs::rename(&tmp, &target) {
                    let _ = fs::remove_file(&tmp);
                    return Err(io(&target)(e));
                }
                sync_parent(&target, *fsync)
            }
            Inner::Remote(r) => {
                let path = r.path(rel)?;
                let store = Arc::clone(&r.store);
                r.block(async move { store.put(&path, PutPayload::from(bytes)).await.map(drop) })
                    .map_err(|e| store_err(rel, e))
            }
        }
    }

    /// Writes `bytes` at `rel` only if nothing is there (Delta's put-if-absent);
    /// [`ObjectsError::AlreadyExists`] otherwise.
    pub fn put_new(&self, rel: &str, bytes: Bytes) -> Result<(), ObjectsError> {
        match &self.inner {
            Inner::Local { root, fsync } => {
                let target = root.join(rel);
                let tmp = write_temp(&target, &bytes, *fsync)?;
                let linked = fs::hard_link(&tmp, &target);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => sync_parent(&target, *fsync),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Err(ObjectsError::AlreadyExists { path: rel.to_owned() })
                    }
                    Err(source) => Err(ObjectsError::Io { path: target.display().to_string(), source }),
                }
            }
            Inner::Remote(r) => {
                let path = r.path(rel)?;
                let store = Arc::clone(&r.store);
                let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
                r.block(async move { store.put_opts(&path, PutPayload::from(bytes), opts).await.map(drop) })
                    .map_err(|e| store_err(rel, e))
            }
        }
    }

    /// The bytes at `rel`.
    pub fn get(&self, rel: &str) -> Result<Bytes, ObjectsError> {
        match &self.inner {
            Inner::Local { root, .. } => {
                let p = root.join(rel);
                match fs::read(&p) {
                    Ok(b) => Ok(Bytes::from(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Err(ObjectsError::NotFound { path: rel.to_owned() })
                    }
                    Err(source) => Err(ObjectsError::Io { path: p.display().to_string(), source }),
                }
            }
            Inner::Remote(r) => {
                let path = r.path(rel)?;
                let store = Arc::clone(&r.store);
                r.block(async move { store.get(&path).await?.bytes().await }).map_err(|e| store_err(rel, e))
            }
        }
    }

    /// Every file under the lake-relative directory `rel_dir`, recursively, as lake-relative paths
    /// with their sizes, sorted. A missing directory is empty.
    pub fn list(&self, rel_dir: &str) -> Result<Vec<(String, u64)>, ObjectsError> {
        Ok(self.list_modified(rel_dir)?.into_iter().map(|(p, size, _)| (p, size)).collect())
    }

    /// [`Objects::list`], each file with when it was last written (the store's clock for a bucket).
    pub fn list_modified(&self, rel_dir: &str) -> Result<Vec<(String, u64, SystemTime)>, ObjectsError> {
        let rel_dir = rel_dir.trim_matches('/');
        let mut out = match &self.inner {
            Inner::Local { root, .. } => {
                let mut out = Vec::new();
                let mut stack = vec![root.join(rel_dir)];
                while let Some(dir) = stack.pop() {
                    let entries = match fs::read_dir(&dir) {
                        Ok(e) => e,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(source) => {
                            return Err(ObjectsError::Io { path: dir.display().to_string(), source });
                        }
                    };
                    for entry in entries {
                        let entry = entry.map_err(io(&dir))?;
                        let p = entry.path();
                        let meta = entry.metadata().map_err(io(&p))?;
                        if meta.is_dir() {
                            stack.push(p);
                        } else if let Ok(rel) = p.strip_prefix(root) {
                            let modified = meta.modified().map_err(io(&p))?;
                            out.push((rel.to_string_lossy().replace('\\', "/"), meta.len(), modified));
                        }
                    }
                }
                out
            }
            Inner::Remote(r) => {
                let path = r.path(rel_dir)?;
                let store = Arc::clone(&r.store);
                let metas = r
                    .block(async move { store.list(Some(&path)).try_collect::<Vec<_>>().await })
                    .map_err(|e| store_err(rel_dir, e))?;
                metas
                    .into_iter()
                    .filter_map(|m| {
                        let full = m.location.to_string();
                        let rel = if r.prefix.is_empty() {
                            Some(full.as_str())
                        } else {
                            full.strip_prefix(r.prefix.as_str()).and_then(|s| s.strip_prefix('/'))
                        };
                        rel.map(|rel| (rel.to_owned(), m.size, SystemTime::from(m.last_modified)))
                    })
                    .collect()
            }
        };
        out.sort();
        Ok(out)
    }

    /// Deletes files (missing ones are fine). Locally, directories left empty go too and the others
    /// are fsynced, so a listing never shows an empty partition.
    pub fn delete(&self, rels: &[String]) -> Result<(), ObjectsError> {
        match &self.inner {
            Inner::Local { root, fsync } => {
                let mut dirs = std::collections::BTreeSet::new();
                for rel in rels {
                    let p = root.join(rel);
                    match fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(ObjectsError::Io { path: p.display().to_string(), source });
                        }
                    }
                    if let Some(d) = p.parent() {
                        dirs.insert(d.to_owned());
                    }
                }
                for d in dirs {
                    if fs::read_dir(&d).map(|mut it| it.next().is_none()).unwrap_or(false) {
                        let _ = fs::remove_dir(&d);
                    } else if *fsync {
                        File::open(&d).and_then(|f| f.sync_all()).map_err(io(&d))?;
                    }
                }
                Ok(())
            }
            Inner::Remote(r) => {
                for rel in rels {
                    let path = r.path(rel)?;
                    let store = Arc::clone(&r.store);
                    match r.block(async move { store.delete(&path).await }) {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(store_err(rel, e)),
                    }
                }
                Ok(())
            }
        }
    }

    /// Runs an async read against the object store (remote lakes only): the Parquet readers use it
    /// to fetch just the byte ranges they need.
    pub(crate) fn remote_read<R, F>(
        &self,
        rel: &str,
        f: impl FnOnce(Arc<dyn ObjectStore>, ObjectPath) -> F,
    ) -> Option<Result<R, ObjectsError>>
    where
        R: Send + 'static,
        F: Future<Output = R> + Send + 'static,
    {
        match &self.inner {
            Inner::Local { .. } => None,
            Inner::Remote(r) => Some(r.path(rel).map(|path| r.block(f(Arc::clone(&r.store), path)))),
        }
    }
}

impl Remote {
    fn path(&self, rel: &str) -> Result<ObjectPath, ObjectsError> {
        let rel = rel.trim_matches('/');
        let full = match (self.prefix.is_empty(), rel.is_empty()) {
            (true, _) => rel.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{rel}", self.prefix),
        };
        ObjectPath::parse(&full)
            .map_err(|e| ObjectsError::Config { url: full.clone(), reason: e.to_string() })
    }

    /// Runs a future on the object-store runtime and waits for it, from any thread.
    fn block<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let rt = self.rt.0.as_ref().expect("the runtime is only taken in drop");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().expect("object-store runtime stopped while a request was in flight")
    }
}

/// A lake file in a bucket, read by ranged `GET`s (the footer first, then the pages a read needs).
pub(crate) struct ObjectFile {
    pub(crate) store: std::sync::Arc<dyn object_store::ObjectStore>,
    pub(crate) location: object_store::path::Path,
    pub(crate) size: u64,
}

impl parquet::arrow::async_reader::AsyncFileReader for ObjectFile {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            object_store::ObjectStoreExt::get_range(self.store.as_ref(), &self.location, range)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        // Adjacent ranges are coalesced into one request by the store.
        Box::pin(async move {
            self.store
                .get_ranges(&self.location, &ranges)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a parquet::arrow::arrow_reader::ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<
        'a,
        parquet::errors::Result<std::sync::Arc<parquet::file::metadata::ParquetMetaData>>,
    > {
        Box::pin(async move {
            let size = self.size;
            // One request usually gets the whole footer (Cordon's footers are a few KiB).
            let meta = parquet::file::metadata::ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(self, size)
                .await?;
            Ok(std::sync::Arc::new(meta))
        })
    }
}

fn store_err(rel: &str, e: object_store::Error) -> ObjectsError {
    match e {
        object_store::Error::NotFound { .. } => ObjectsError::NotFound { path: rel.to_owned() },
        object_store::Error::AlreadyExists { .. } => ObjectsError::AlreadyExists { path: rel.to_owned() },
        source => ObjectsError::Store { path: rel.to_owned(), source },
    }
}

/// Writes `bytes` to a fresh temporary file beside `target` (creating the directory), fsynced.
fn write_temp(target: &Path, bytes: &[u8], fsync: bool) -> Result<PathBuf, ObjectsError> {
    let dir = target.parent().expect("a lake path has a parent");
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        if fsync { f.sync_all() } else { Ok(()) }
    });
    if let Err(e) = written {
        // A full disk fails the write part way: no partial file outlives it.
        let _ = fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    Ok(tmp)
}

fn sync_parent(target: &Path, fsync: bool) -> Result<(), ObjectsError> {
    if fsync {
        let dir = target.parent().expect("a lake path has a parent");
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same contract on both backends.
    fn contract(o: &Objects) {
        o.put("events/a/one.json", Bytes::from_static(b"1")).unwrap();
        o.put("events/a/one.json", Bytes::from_static(b"2")).unwrap();
        assert_eq!(o.get("events/a/one.json").unwrap(), Bytes::from_static(b"2"));
        o.put_new("events/b/two.json", Bytes::from_static(b"x")).unwrap();
        let err = o.put_new("events/b/two.json", Bytes::from_static(b"y")).unwrap_err();
        assert!(matches!(err, ObjectsError::AlreadyExists { .. }), "{err:?}");
        assert_eq!(o.get("events/b/two.json").unwrap(), Bytes::from_static(b"x"));
        assert!(matches!(o.get("events/none").unwrap_err(), ObjectsError::NotFound { .. }));
        let listed = o.list("events").unwrap();
        assert_eq!(listed, vec![("events/a/one.json".to_owned(), 1), ("events/b/two.json".to_owned(), 1)]);
        assert!(o.list("nothing/here").unwrap().is_empty());
        o.delete(&["events/a/one.json".to_owned(), "events/missing".to_owned()]).unwrap();
        assert_eq!(o.list("").unwrap(), vec![("events/b/two.json".to_owned(), 1)]);
    }

    #[test]
    fn local_directory_contract() {
        let dir = tempfile::tempdir().unwrap();
        let o = Objects::local(dir.path(), true).unwrap();
        contract(&o);
        // No temporary file is left behind, and emptied directories go.
        assert!(!dir.path().join("events/a").exists());
        let names: Vec<_> =
            fs::read_dir(dir.path().join("events/b")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn object_store_contract_from_inside_and_outside_a_runtime() {
        let o = Objects::remote("memory://bucket/some/prefix", &[]).unwrap();
        contract(&o);
        assert_eq!(o.dir_url("events/tenant=t"), "memory://bucket/some/prefix/events/tenant=t/");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let o2 = o.clone();
        rt.block_on(async move {
            o2.put("events/c", Bytes::from_static(b"z")).unwrap();
            assert_eq!(o2.get("events/c").unwrap(), Bytes::from_static(b"z"));
        });
    }

    #[test]
    fn unsupported_locations_are_refused_with_the_reason() {
        let err = Objects::remote("ftp://host/x", &[]).unwrap_err().to_string();
        assert!(err.contains("unsupported scheme"), "{err}");
        let err =
            Objects::remote("s3://bucket/x", &[("no_such_key".into(), "1".into())]).unwrap_err().to_string();
        assert!(err.contains("no_such_key") || err.contains("not valid"), "{err}");
    }
}
