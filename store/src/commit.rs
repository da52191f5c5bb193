//! The commit protocol (the crate doc's steps), one function per step: the new messages grouped by
//! (tenant, date); their Parquet files, durable before the catalog hears of them; the catalog
//! transaction, the commit point; then the index, which follows the catalog.

use crate::catalog::{BatchEntry, CommitRecord, FileEntry, HostDelta};
use crate::index::IndexError;
use crate::lake::LakeError;
use crate::{CommitOutcome, MAX_FILE_ROWS, MessageBatch, Store, StoreError, failpoint};
use schemas::Record;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Rows per (tenant, date), the order a commit writes its files in.
type Groups = BTreeMap<(String, String), Vec<Record>>;

/// The lake files a commit wrote, each with its rows (sorted as in the file).
type Written = Vec<(FileEntry, Vec<Record>)>;

/// A commit's messages not committed before, grouped.
#[derive(Default)]
struct Grouped {
    groups: Groups,
    batches: Vec<BatchEntry>,
    /// When JetStream stored each message with rows (for the publish-to-searchable age).
    published: Vec<i64>,
    duplicates: usize,
}

/// Step 1: drops messages whose key is committed (`done`) or repeated; groups the rest's rows.
fn group(messages: Vec<MessageBatch>, done: &HashSet<String>) -> Grouped {
    let mut seen = HashSet::new();
    let mut out = Grouped::default();
    for m in messages {
        if done.contains(&m.key) || !seen.insert(m.key.clone()) {
            out.duplicates += 1;
            continue;
        }
        out.batches.push(BatchEntry {
            key: m.key,
            stream_seq: m.stream_seq as i64,
            events: m.records.len() as i64,
            rejected: m.rejected as i64,
        });
        if !m.records.is_empty() {
            out.published.extend(m.published);
        }
        // A message's records mostly share a tenant and a day: the key is made when either changes.
        let mut last: Option<(i64, (String, String))> = None;
        for r in m.records {
            let day = r.time().div_euclid(DAY_MICROS);
            if !last.as_ref().is_some_and(|(d, (t, _))| *d == day && t == r.tenant()) {
                last = Some((day, (r.tenant().to_owned(), schemas::time::date_of_micros(r.time()))));
            }
            let Some((_, key)) = &last else { continue };
            match out.groups.get_mut(key) {
                Some(rows) => rows.push(r),
                None => drop(out.groups.insert(key.clone(), vec![r])),
            }
        }
    }
    out
}

const DAY_MICROS: i64 = 86_400_000_000;

/// Each (tenant, host)'s first and last event time and count in these rows.
fn host_deltas<'a>(records: impl Iterator<Item = &'a Record>) -> Vec<HostDelta> {
    let mut map: BTreeMap<(&str, &str), HostDelta> = BTreeMap::new();
    for r in records {
        let t = r.time();
        let agent = r.cell(schemas::fields::col::AGENT_ID).as_str().unwrap_or("");
        let d = map.entry((r.tenant(), r.host())).or_insert_with(|| HostDelta {
            tenant: r.tenant().to_owned(),
            host: r.host().to_owned(),
            agent_id: agent.to_owned(),
            first_seen: t,
            last_seen: t,
            events: 0,
        });
        d.first_seen = d.first_seen.min(t);
        d.last_seen = d.last_seen.max(t);
        d.events += 1;
    }
    map.into_values().collect()
}

impl Store {
    /// Commits a batch of messages (the protocol in the crate doc). Returns once the batch is durable;
    /// only then may the caller ack the messages. It is searchable at the next index commit (within
    /// the commit policy's delay). The outcome hands the stored rows back, for what follows the
    /// commit.
    pub async fn commit(
        &self,
        consumer: &str,
        messages: Vec<MessageBatch>,
    ) -> Result<CommitOutcome, StoreError> {
        let _guard = self.commit_lock.lock().await;
        let keys: Vec<String> = messages.iter().map(|m| m.key.clone()).collect();
        let done = self.catalog.committed_keys(&keys).await?;
        let checkpoint = messages.iter().map(|m| m.stream_seq).max().unwrap_or(0);
        let grouped = group(messages, &done);
        let hosts = host_deltas(grouped.groups.values().flatten());
        let stored = grouped.groups.values().map(Vec::len).sum();
        let written = self.write_files(grouped.groups).await?;
        failpoint::hit("after_parquet");
        let record = CommitRecord {
            consumer: consumer.to_owned(),
            checkpoint: checkpoint as i64,
            files: written.iter().map(|(f, _)| f.clone()).collect(),
            batches: grouped.batches,
            hosts,
        };
        let commit_seq = self.commit_point(&record, &written).await?;
        failpoint::hit("after_catalog");
        let files = written.len();
        let written = self.index_written(written, grouped.published).await?;
        failpoint::hit("after_index");
        Ok(CommitOutcome {
            stored,
            duplicate_messages: grouped.duplicates,
            files,
            commit_seq,
            records: written.into_iter().flat_map(|(_, recs)| recs).collect(),
        })
    }

    /// Step 2: the Parquet files, durable before the catalog hears of them. The commit fails as a
    /// whole: a failed write removes the files written before it.
    async fn write_files(&self, groups: Groups) -> Result<Written, StoreError> {
        let files = groups.values().map(|rows| rows.len().div_ceil(MAX_FILE_ROWS)).sum();
        if files == 0 {
            return Ok(Written::new());
        }
        let first_id = self.catalog.take_file_ids(files).await?;
        let lake = self.lake.clone();
        let written = self
            .cpu
            .run(move || -> Result<Written, LakeError> {
                let mut out: Written = Vec::new();
                for ((tenant, date), mut recs) in groups {
                    // Index references address at most 2^24 rows per file; files stay far below.
                    while !recs.is_empty() {
                        let rest = recs.split_off(recs.len().min(MAX_FILE_ROWS));
                        let id = first_id + out.len() as i64;
                        match lake.write_file(id, &tenant, &date, &mut recs) {
                            Ok(entry) => out.push((entry, std::mem::replace(&mut recs, rest))),
                            Err(e) => {
                                for (f, _) in &out {
                                    let _ = lake.remove(&f.path);
                                }
                                return Err(e);
                            }
                        }
                    }
                }
                Ok(out)
            })
            .await??;
        Ok(written)
    }

    /// Step 3, the commit point: one catalog transaction (files, batch keys, host summaries,
    /// checkpoint). When it fails, the commit's files are removed.
    async fn commit_point(
        &self,
        record: &CommitRecord,
        written: &Written,
    ) -> Result<Option<i64>, StoreError> {
        match self.catalog.commit(record, schemas::time::now_micros()).await {
            Ok(seq) => Ok(seq),
            Err(e) => {
                for (f, _) in written {
                    let _ = self.lake.remove(&f.path);
                }
                Err(e.into())
            }
        }
    }

    /// Step 4: the index follows the catalog; its commits are batched by count and time (a crash
    /// before one loses nothing: the index catches up from the lake on start). A failed write is
    /// logged and the index caught up from the lake, which has the rows. Hands the rows back.
    async fn index_written(&self, written: Written, published: Vec<i64>) -> Result<Written, StoreError> {
        if written.is_empty() || self.index_is_behind() {
            return Ok(written);
        }
        let (index, policy) = (Arc::clone(&self.index), self.index_commit);
        let (written, indexed) = self
            .cpu
            .run(move || {
                let add = || -> Result<(), IndexError> {
                    for (f, recs) in &written {
                        index.add_file(f.id, 0, recs)?;
                    }
                    index.note_published(&published);
                    index.commit_if_due(&policy, false).map(drop)
                };
                let indexed = add();
                (written, indexed)
            })
            .await?;
        if let Err(e) = indexed {
            tracing::error!(error = %schemas::error_chain(&e), "indexing failed; catching up from the lake");
            self.reset_index_writer().await;
        }
        Ok(written)
    }
}

impl Store {
    /// The rows of the live files ingest committed after commit number `after`, up to `max_commits`
    /// commits, in commit order, and the last commit number read (`None`: nothing was committed
    /// since). Files found damaged are left out (logged; their rows are gone and the scrub
    /// quarantines them).
    pub async fn rows_committed_after(
        &self,
        after: i64,
        max_commits: i64,
    ) -> Result<(Vec<Record>, Option<i64>), StoreError> {
        // The latest number first: every number up to it is visible once it is.
        let through = self.catalog.last_commit_seq().await?.min(after.saturating_add(max_commits));
        if through <= after {
            return Ok((Vec::new(), None));
        }
        let numbered = self.catalog.files_committed_after(after, through).await?;
        let last = Some(through);
        let files: Vec<FileEntry> = numbered.into_iter().map(|(_, f)| f).collect();
        let lake = self.lake.clone();
        let rows = self
            .cpu
            .run(move || -> Result<Vec<Record>, LakeError> {
                let mut rows = Vec::new();
                for f in &files {
                    match lake.read_all(f) {
                        Ok(r) => rows.extend(r),
                        Err(e) if e.is_damage() => {
                            tracing::error!(path = %f.path, error = %e, "a committed lake file to analyse is damaged; left out");
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(rows)
            })
            .await??;
        Ok((rows, last))
    }
}
