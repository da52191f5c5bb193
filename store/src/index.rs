//! The tantivy full-text index: lean, derived state.
//!
//! The lake is the document store; the index stores no documents, only the terms analysts hunt on
//! (from the `search` role of each row of `schemas::FIELDS`), the event time as a fast field, and a
//! row reference `file id << 24 | row` as a fast field. Each commit carries the highest lake file id it
//! covers as its payload; on start the index catches up from the lake, so it may lag the catalog but
//! never lead it.

use schemas::{Cell, FIELDS, Record, Search};
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;
use tantivy::collector::Count;
use tantivy::query::{BooleanQuery, Occur, PhraseQuery, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{FAST, Field, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{LowerCaser, RawTokenizer, SimpleTokenizer, TextAnalyzer, TokenStream};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term};

mod held;
mod host_agg;
mod merging;
mod newest;
mod syntax;
#[cfg(test)]
mod tests;
mod timeline;
pub use held::FileSet;
use host_agg::HostAgg;
use newest::{ColumnCache, Newest};
use syntax::query_shape;
pub use syntax::{MAX_QUERY_BYTES, MAX_QUERY_DEPTH};
pub use timeline::TimelineScan;

/// Rows per file addressable by a reference.
pub const ROW_BITS: u32 = 24;

/// Index failures.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// tantivy failed.
    #[error("full-text index error")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The query text does not parse.
    #[error("invalid search query: {0}")]
    BadQuery(String),
    /// The index directory could not be created.
    #[error("cannot create index directory")]
    Io(#[source] std::io::Error),
}

/// A search that parsed but cannot run as asked (`text:*` needs a fast field the index does not
/// keep) is the caller's to fix: a bad query, not an index failure.
fn query_error(e: tantivy::TantivyError) -> IndexError {
    use tantivy::TantivyError as T;
    match e {
        T::InvalidArgument(m) | T::SchemaError(m) | T::FieldNotFound(m) => IndexError::BadQuery(m),
        other => IndexError::Tantivy(other),
    }
}

#[derive(Clone, Copy, Debug)]
struct Fields {
    tenant: Field,
    host: Field,
    kind: Field,
    user: Field,
    ip: Field,
    hash: Field,
    domain: Field,
    technique: Field,
    text: Field,
    time: Field,
    row_ref: Field,
}

/// One search hit: where its row lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Lake file id.
    pub file_id: i64,
    /// Row within the file.
    pub row: usize,
    /// Event time.
    pub time: i64,
}

/// What a search asks for.
#[derive(Clone, Debug, Default)]
pub struct SearchQuery {
    /// Query text.
    pub q: String,
    /// Treat `q` as a literal string (an IOC or a pasted log fragment), not query syntax.
    pub literal: bool,
    /// From this time (inclusive, microseconds).
    pub from: Option<i64>,
    /// Up to this time (exclusive).
    pub to: Option<i64>,
    /// Only this host.
    pub host: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Hits to skip.
    pub offset: usize,
}

/// Per-host aggregate of an IOC's matches.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct HostMatches {
    /// Host name.
    pub host: String,
    /// Matching events.
    pub count: u64,
    /// Earliest match, microseconds (RFC 3339 outside).
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub first_seen: i64,
    /// Latest match.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub last_seen: i64,
}

/// Which exact-match field an IOC is looked up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IocField {
    /// IP addresses.
    Ip,
    /// Hex digests.
    Hash,
    /// Domains.
    Domain,
    /// A phrase in the text (URLs, file names, anything else).
    Text,
}

/// The index: one writer behind a lock, one reader reloaded after each commit.
pub struct FullTextIndex {
    index: Index,
    fields: Fields,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    pending: Mutex<Pending>,
    /// Publish-to-searchable ages (microseconds) of the batches the commits since the last
    /// [`FullTextIndex::take_ages`] made searchable.
    ages: Mutex<Vec<i64>>,
    /// Each segment's time and row-reference columns, for searches.
    columns: ColumnCache,
    /// The lake files every searcher taken from now on holds (set after each reload; see [`held`]).
    held: std::sync::RwLock<std::sync::Arc<FileSet>>,
    /// The mark of an index committed before the set was kept, until the store adopts it.
    legacy: Mutex<Option<i64>>,
    /// Merged files whose documents searches leave out until their swap.
    merging: merging::Merging,
}

/// Ages kept between two takes at most (the oldest go first).
const MAX_AGES: usize = 65_536;

/// What the writer holds that no commit covers yet.
#[derive(Debug)]
struct Pending {
    docs: u64,
    deletes: u64,
    /// Files added (`true`) and deleted since the last commit, in order.
    changes: Vec<(i64, bool)>,
    /// Everything was deleted since the last commit: the files held start again from none.
    reset: bool,
    since: std::time::Instant,
    /// When each batch added since the last commit was published (microseconds).
    published: Vec<i64>,
}

impl Pending {
    fn new() -> Self {
        Self {
            docs: 0,
            deletes: 0,
            changes: Vec::new(),
            reset: false,
            since: std::time::Instant::now(),
            published: Vec::new(),
        }
    }
}

/// When buffered documents are committed: whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct CommitPolicy {
    /// Documents buffered.
    pub max_docs: u64,
    /// Time since the last commit.
    pub max_delay: std::time::Duration,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        Self { max_docs: 100_000, max_delay: std::time::Duration::from_secs(1) }
    }
}

impl std::fmt::Debug for FullTextIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FullTextIndex").finish_non_exhaustive()
    }
}

fn build_schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let kw_lower = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("kw_lower")
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("text")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        tenant: b.add_text_field("tenant", STRING),
        host: b.add_text_field("host", STRING | FAST),
        kind: b.add_text_field("kind", STRING),
        user: b.add_text_field("user", kw_lower.clone()),
        ip: b.add_text_field("ip", STRING),
        hash: b.add_text_field("hash", kw_lower.clone()),
        domain: b.add_text_field("domain", kw_lower),
        technique: b.add_text_field("technique", STRING),
        text: b.add_text_field("text", text),
        time: b.add_i64_field("time", FAST),
        row_ref: b.add_u64_field("ref", FAST),
    };
    (b.build(), fields)
}

fn register_tokenizers(index: &Index) {
    index
        .tokenizers()
        .register("kw_lower", TextAnalyzer::builder(RawTokenizer::default()).filter(LowerCaser).build());
    index
        .tokenizers()
        .register("text", TextAnalyzer::builder(SimpleTokenizer::default()).filter(LowerCaser).build());
}

impl FullTextIndex {
    /// Opens (or creates) the index in `dir`.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir).map_err(IndexError::Io)?;
        let (schema, fields) = build_schema();
        let mmap = tantivy::directory::MmapDirectory::open(dir).map_err(|e| IndexError::Tantivy(e.into()))?;
        let index = Index::open_or_create(mmap, schema)?;
        register_tokenizers(&index);
        let writer = index.writer_with_num_threads(1, 64 * 1024 * 1024)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let pending = Mutex::new(Pending::new());
        let ix = Self {
            index,
            fields,
            writer: Mutex::new(writer),
            reader,
            pending,
            ages: Mutex::new(Vec::new()),
            columns: ColumnCache::default(),
            held: Default::default(),
            legacy: Mutex::new(None),
            merging: merging::Merging::open(dir)?,
        };
        match held::read_payload(ix.index.load_metas()?.payload.as_deref()) {
            held::Held::Files(files) => ix.set_held(files),
            held::Held::UpTo(mark) => *ix.legacy.lock().unwrap_or_else(|e| e.into_inner()) = Some(mark),
        }
        Ok(ix)
    }

    /// Adds the rows of file `file_id` (in their order within the file), starting at row `first_row`;
    /// the next commit holds the file.
    pub fn add_file(&self, file_id: i64, first_row: usize, rows: &[Record]) -> Result<(), IndexError> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        for (row, rec) in rows.iter().enumerate() {
            writer.add_document(self.document(file_id, first_row + row, rec))?;
        }
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.docs += rows.len() as u64;
        if p.changes.last() != Some(&(file_id, true)) {
            p.changes.push((file_id, true));
        }
        Ok(())
    }

    /// Deletes the documents of these files (retired by compaction or retention) at the next commit.
    pub fn delete_files(&self, ids: &[i64]) -> Result<(), IndexError> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        for &id in ids {
            writer.delete_query(merging::file_range(self.fields.row_ref, id))?;
        }
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.deletes += ids.len() as u64;
        p.changes.extend(ids.iter().map(|&id| (id, false)));
        Ok(())
    }

    /// Commits when the policy says so (or `force`), with the files it holds in its payload, and
    /// makes the result visible to searches. True if it committed.
    pub fn commit_if_due(&self, policy: &CommitPolicy, force: bool) -> Result<bool, IndexError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.docs == 0 && p.deletes == 0 && p.changes.is_empty() {
            p.since = std::time::Instant::now();
            return Ok(false);
        }
        if !force && p.docs < policy.max_docs && p.since.elapsed() < policy.max_delay {
            return Ok(false);
        }
        let (held, payload) = self.next_held(p.reset, &p.changes);
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        let published = std::mem::replace(&mut *p, Pending::new()).published;
        drop(p);
        drop(writer);
        self.reader.reload()?;
        self.set_held(held);
        self.note_searchable(&published);
        Ok(true)
    }

    /// Notes when the batches whose documents were just added were published; their ages are
    /// taken when a commit makes them searchable.
    pub fn note_published(&self, published: &[i64]) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).published.extend_from_slice(published);
    }

    fn note_searchable(&self, published: &[i64]) {
        if published.is_empty() {
            return;
        }
        let now = schemas::time::now_micros();
        let mut ages = self.ages.lock().unwrap_or_else(|e| e.into_inner());
        ages.extend(published.iter().map(|t| (now - t).max(0)));
        let over = ages.len().saturating_sub(MAX_AGES);
        ages.drain(..over);
    }

    /// The publish-to-searchable ages (microseconds) of the batches made searchable since the
    /// last call.
    pub fn take_ages(&self) -> Vec<i64> {
        std::mem::take(&mut *self.ages.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Commits everything buffered now.
    pub fn commit(&self) -> Result<(), IndexError> {
        self.commit_if_due(&CommitPolicy::default(), true).map(drop)
    }

    /// Drops uncommitted documents (after a failed commit elsewhere).
    pub fn rollback(&self) -> Result<(), IndexError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.rollback()?;
        self.bump_epoch();
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Pending::new();
        Ok(())
    }

    /// Documents buffered and not yet committed.
    pub fn pending_docs(&self) -> u64 {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).docs
    }

    /// Deletes every document (for a full rebuild).
    pub fn clear(&self) -> Result<(), IndexError> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).delete_all_documents()?;
        self.bump_epoch();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.deletes += 1;
        p.reset = true;
        p.changes.clear();
        Ok(())
    }

    /// Segment files whose checksum does not match their content (bit rot, a torn write).
    pub fn corrupt_files(&self) -> Result<Vec<String>, IndexError> {
        let mut bad: Vec<String> =
            self.index.validate_checksum()?.into_iter().map(|p| p.display().to_string()).collect();
        bad.sort();
        Ok(bad)
    }

    /// Segments a search reads (each adds a fixed cost to every query).
    pub fn segments(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }

    /// Committed documents (what searches see: merges in flight left out).
    pub fn num_docs(&self) -> u64 {
        let searcher = self.reader.searcher();
        let hidden = self.merging.exclusions(self.fields.row_ref);
        if hidden.is_empty() {
            return searcher.num_docs();
        }
        let mut all: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(tantivy::query::AllQuery))];
        all.extend(hidden);
        searcher.search(&BooleanQuery::new(all), &Count).map_or(0, |n| n as u64)
    }

    fn document(&self, file_id: i64, row: usize, rec: &Record) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_text(f.tenant, rec.tenant());
        doc.add_i64(f.time, rec.time());
        doc.add_u64(f.row_ref, ((file_id as u64) << ROW_BITS) | row as u64);
        for (def, cell) in rec.iter().map(|(i, c)| (&FIELDS[i], c)) {
            let field = match def.search {
                Search::None => continue,
                Search::Host => f.host,
                Search::User => f.user,
                Search::Ip => f.ip,
                Search::Hash => f.hash,
                Search::Domain => f.domain,
                Search::Kind => f.kind,
                Search::Text => f.text,
                Search::Technique => f.technique,
            };
            match cell {
                Cell::Str(s) if !s.is_empty() => doc.add_text(field, s),
                Cell::List(items) => items.iter().for_each(|s| doc.add_text(field, s)),
                _ => {}
            }
        }
        doc
    }

    fn tokens(&self, text: &str) -> Vec<String> {
        let mut analyzer =
            self.index.tokenizers().get("text").expect("the text tokenizer is registered at open");
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    fn text_query(&self, text: &str) -> Option<Box<dyn Query>> {
        let terms: Vec<Term> =
            self.tokens(text).iter().map(|t| Term::from_field_text(self.fields.text, t)).collect();
        match terms.len() {
            0 => None,
            1 => Some(Box::new(TermQuery::new(terms[0].clone(), IndexRecordOption::Basic))),
            _ => Some(Box::new(PhraseQuery::new(terms))),
        }
    }

    fn user_query(&self, q: &SearchQuery) -> Result<Box<dyn Query>, IndexError> {
        if q.literal {
            let lower = q.q.trim().to_lowercase();
            let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for field in [self.fields.ip, self.fields.host] {
                should.push((
                    Occur::Should,
                    Box::new(TermQuery::new(
                        Term::from_field_text(field, q.q.trim()),
                        IndexRecordOption::Basic,
                    )),
                ));
            }
            for field in [self.fields.hash, self.fields.domain, self.fields.user] {
                should.push((
                    Occur::Should,
                    Box::new(TermQuery::new(Term::from_field_text(field, &lower), IndexRecordOption::Basic)),
                ));
            }
            if let Some(t) = self.text_query(&q.q) {
                should.push((Occur::Should, t));
            }
            return Ok(Box::new(BooleanQuery::new(should)));
        }
        let f = &self.fields;
        let mut parser =
            QueryParser::for_index(&self.index, vec![f.text, f.ip, f.hash, f.domain, f.host, f.user]);
        parser.set_conjunction_by_default();
        query_shape(&q.q)?;
        parser.parse_query(&q.q).map_err(|e| IndexError::BadQuery(e.to_string()))
    }

    /// The user's query limited to `tenant`'s events, and to the host and time range asked for,
    /// without the documents of merges in flight ([`merging`]). The
    /// tenant's term is left out where every document the searcher holds is the tenant's (live or
    /// deleted: a single-tenant index), and a query of one clause is that clause: a lone term is
    /// then counted from its document frequency, not by visiting each match.
    fn scoped(
        &self,
        searcher: &Searcher,
        tenant: &str,
        inner: Box<dyn Query>,
        q: &SearchQuery,
    ) -> Box<dyn Query> {
        let f = &self.fields;
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, inner)];
        must.extend(self.merging.exclusions(f.row_ref));
        let tenant = Term::from_field_text(f.tenant, tenant);
        if !holds_only(searcher, &tenant) {
            must.push((Occur::Must, Box::new(TermQuery::new(tenant, IndexRecordOption::Basic))));
        }
        if let Some(h) = &q.host {
            must.push((
                Occur::Must,
                Box::new(TermQuery::new(Term::from_field_text(f.host, h), IndexRecordOption::Basic)),
            ));
        }
        if q.from.is_some() || q.to.is_some() {
            let lo = q.from.map_or(Bound::Unbounded, |t| Bound::Included(Term::from_field_i64(f.time, t)));
            let hi = q.to.map_or(Bound::Unbounded, |t| Bound::Excluded(Term::from_field_i64(f.time, t)));
            must.push((Occur::Must, Box::new(RangeQuery::new(lo, hi))));
        }
        match must.len() {
            1 => must.pop().map(|(_, q)| q).expect("one clause"),
            _ => Box::new(BooleanQuery::new(must)),
        }
    }

    /// Searches a tenant's events, newest first. Returns the page of hits and the total match count.
    pub fn search(&self, tenant: &str, q: &SearchQuery) -> Result<(Vec<Hit>, usize), IndexError> {
        let searcher = self.reader.searcher();
        let query = self.scoped(&searcher, tenant, self.user_query(q)?, q);
        let newest = Newest::among_all(q.limit.max(1) + q.offset, self.columns.of(&searcher)?);
        // A lone term counts from its postings' lengths; anything else counts as it collects.
        let (found, total) = if query.is::<TermQuery>() {
            (
                searcher.search(&query, &newest).map_err(query_error)?,
                query.count(&searcher).map_err(query_error)?,
            )
        } else {
            searcher.search(&query, &(newest, Count)).map_err(query_error)?
        };
        let hits = found.into_iter().skip(q.offset).map(hit).collect();
        Ok((hits, total))
    }

    /// The lowercased terms a query text would match, for reporting which fields matched.
    pub fn match_terms(&self, q: &SearchQuery) -> Vec<String> {
        if q.literal {
            return vec![q.q.trim().to_lowercase()];
        }
        let Ok(query) = self.user_query(q) else { return Vec::new() };
        let mut out = Vec::new();
        query.query_terms(&mut |term, _| {
            if let Some(s) = term.value().as_str() {
                out.push(s.to_lowercase());
            }
        });
        out
    }

    /// Looks up one IOC in a tenant: matches per host.
    pub fn sweep(&self, tenant: &str, field: IocField, value: &str) -> Result<Vec<HostMatches>, IndexError> {
        let f = &self.fields;
        let inner: Box<dyn Query> = match field {
            IocField::Ip => {
                Box::new(TermQuery::new(Term::from_field_text(f.ip, value), IndexRecordOption::Basic))
            }
            IocField::Hash => Box::new(TermQuery::new(
                Term::from_field_text(f.hash, &value.to_lowercase()),
                IndexRecordOption::Basic,
            )),
            IocField::Domain => Box::new(TermQuery::new(
                Term::from_field_text(f.domain, &value.to_lowercase()),
                IndexRecordOption::Basic,
            )),
            IocField::Text => match self.text_query(value) {
                Some(q) => q,
                None => return Ok(Vec::new()),
            },
        };
        let searcher = self.reader.searcher();
        let query = self.scoped(&searcher, tenant, inner, &SearchQuery::default());
        let per_host = searcher.search(&query, &HostAgg)?;
        let mut out: Vec<HostMatches> = per_host
            .into_iter()
            .map(|(host, (count, first_seen, last_seen))| HostMatches { host, count, first_seen, last_seen })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.host.cmp(&b.host)));
        Ok(out)
    }
}

/// A collected (time, row reference) as a hit (a document without a time gets 0).
fn hit((time, r): (i64, u64)) -> Hit {
    Hit {
        file_id: (r >> ROW_BITS) as i64,
        row: (r & ((1 << ROW_BITS) - 1)) as usize,
        time: if time == i64::MIN { 0 } else { time },
    }
}

/// Whether every document `searcher` holds, live or deleted, has `term` (a term's document frequency
/// counts deleted documents until their segment is merged, as `max_doc` does).
fn holds_only(searcher: &Searcher, term: &Term) -> bool {
    let docs: u64 = searcher.segment_readers().iter().map(|s| u64::from(s.max_doc())).sum();
    searcher.doc_freq(term).is_ok_and(|n| n == docs)
}
