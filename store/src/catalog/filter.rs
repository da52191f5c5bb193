//! A listing query with optional filters: `WHERE tenant = $1` and then whatever the caller adds,
//! each value bound (never spliced into the SQL), numbered for either backend.

use super::{CatalogError, db};
use sqlx::any::AnyRow;

enum Bind {
    Int(i64),
    Str(String),
}

/// `SELECT <cols> FROM <table> WHERE tenant = $1` plus clauses.
pub(super) struct Listing {
    sql: String,
    binds: Vec<Bind>,
}

impl Listing {
    pub(super) fn new(cols: &str, table: &str) -> Self {
        Self { sql: format!("SELECT {cols} FROM {table} WHERE tenant = $1"), binds: Vec::new() }
    }

    /// Appends `text` with its `?` as the next placeholder, bound to `v`.
    pub(super) fn int(&mut self, text: &str, v: i64) -> &mut Self {
        self.binds.push(Bind::Int(v));
        self.sql.push_str(&text.replace('?', &format!("${}", self.binds.len() + 1)));
        self
    }

    /// As [`Listing::int`] for text.
    pub(super) fn text(&mut self, text: &str, v: String) -> &mut Self {
        self.binds.push(Bind::Str(v));
        self.sql.push_str(&text.replace('?', &format!("${}", self.binds.len() + 1)));
        self
    }

    /// Appends SQL with no value.
    pub(super) fn raw(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self
    }

    /// A technique (or one of its sub-techniques) in a column stored as `,T1059.001,T1105,`.
    pub(super) fn technique(&mut self, t: &str) -> &mut Self {
        self.text(" AND (techniques LIKE ?", format!("%,{t},%"))
            .text(" OR techniques LIKE ?)", format!("%,{t}.%"))
    }

    /// Most recent first, at most `limit` (1 to 1000) rows.
    pub(super) async fn fetch(
        mut self,
        pool: &sqlx::AnyPool,
        tenant: &str,
        limit: usize,
        op: &'static str,
    ) -> Result<Vec<AnyRow>, CatalogError> {
        self.sql.push_str(&format!(" ORDER BY last_seen DESC, id LIMIT {}", limit.clamp(1, 1000)));
        let mut q = sqlx::query(&self.sql).bind(tenant);
        for b in self.binds {
            q = match b {
                Bind::Int(i) => q.bind(i),
                Bind::Str(s) => q.bind(s),
            };
        }
        q.fetch_all(pool).await.map_err(db(op))
    }
}
