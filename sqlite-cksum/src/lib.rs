//! Page checksums for SQLite database files.
//!
//! SQLite checks a database's structure (`PRAGMA integrity_check`) but not its content: a flipped bit
//! inside a row's payload reads back as a different value. This crate keeps an 8-byte checksum in
//! the last bytes of every page of the main database file (the page's *reserved* bytes, which SQLite
//! leaves to extensions) and refuses a page whose checksum no longer matches with
//! `SQLITE_IOERR_DATA`, so a damaged page is an error and never a row.
//!
//! Two parts:
//! - [`register`] adds the VFS [`VFS_NAME`], a shim over the platform's default VFS that writes the
//!   checksum of every page it writes to the database file and checks the checksum of every page it
//!   reads from it. It does this only for files whose header says 8 bytes are reserved per page; other
//!   files pass through untouched.
//! - [`enable`] reserves those 8 bytes in a database (at creation, or once for an existing one by
//!   rebuilding it with `VACUUM`).
//!
//! What it covers: the main database file, which is where data lives for good. Pages in a write-ahead
//! log carry SQLite's own frame checksums (checked when the log is recovered after a crash) and reach
//! the database file through a checkpoint, which this shim checksums as it writes them. A writer that
//! opens the file without this VFS (the `sqlite3` shell) leaves pages whose checksum fails; read
//! such files with this VFS only after rewriting them with it.

mod vfs;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use std::str::FromStr;

/// The name the shim is registered under (`?vfs=cordon-cksum` in a SQLite URL).
pub const VFS_NAME: &str = "cordon-cksum";

/// Bytes reserved at the end of each page for the checksum.
pub const RESERVE: u8 = 8;

/// The extended result code of a page that fails its checksum (`SQLITE_IOERR_DATA`).
pub const IOERR_DATA: i32 = libsqlite3_sys::SQLITE_IOERR_DATA;

/// Errors from [`register`] and [`enable`].
#[derive(Debug)]
pub enum Error {
    /// SQLite refused the registration or a file control (its result code).
    Sqlite(&'static str, i32),
    /// The database already reserves bytes per page for something else.
    Reserved(i32),
    /// A statement failed.
    Sql(sqlx::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(what, rc) => write!(f, "sqlite {what} failed with result code {rc}"),
            Self::Reserved(n) => write!(
                f,
                "the database reserves {n} bytes per page for another extension; page checksums need {RESERVE}"
            ),
            Self::Sql(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

/// Registers the checksum VFS (once per process; later calls return at once). It is not made the
/// default: connections choose it with `?vfs=cordon-cksum`.
pub fn register() -> Result<(), Error> {
    static DONE: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    (*DONE.get_or_init(vfs::register)).map_err(|rc| Error::Sqlite("vfs_register", rc))
}

/// What [`enable`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enabled {
    /// The database already kept checksums.
    Already,
    /// The database was rebuilt with room for checksums (new, or older than this crate).
    Now,
}

/// Makes the database at `url` (a `sqlite:` URL) keep page checksums, creating it if needed.
///
/// A database without reserved bytes is switched to rollback-journal mode, told to reserve
/// [`RESERVE`] bytes per page and rebuilt with `VACUUM`, which rewrites every page through this VFS;
/// callers put it back in WAL mode on their own connections. This needs the database to itself, so
/// call it before opening a pool; a database that already keeps checksums is left alone and may be
/// in use.
pub async fn enable(url: &str) -> Result<Enabled, Error> {
    register()?;
    let opts = SqliteConnectOptions::from_str(url)?.vfs(VFS_NAME).create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&opts).await?;
    let outcome = enable_on(&mut conn).await;
    conn.close().await?;
    outcome
}

/// Folds the write-ahead log of the database at `url` into the database file through this VFS, so
/// the pages it writes carry checksums (a checkpoint by any other SQLite, such as the `sqlite3`
/// shell, would write them without).
pub async fn checkpoint(url: &str) -> Result<(), Error> {
    register()?;
    let opts = SqliteConnectOptions::from_str(url)?.vfs(VFS_NAME);
    let mut conn = SqliteConnection::connect_with(&opts).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await?;
    Ok(conn.close().await?)
}

async fn enable_on(conn: &mut SqliteConnection) -> Result<Enabled, Error> {
    let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count").fetch_one(&mut *conn).await?;
    let reserve = reserve_bytes(conn, -1).await?;
    if pages > 0 && reserve == i32::from(RESERVE) {
        return Ok(Enabled::Already);
    }
    if pages > 0 && reserve != 0 {
        return Err(Error::Reserved(reserve));
    }
    sqlx::query("PRAGMA journal_mode=DELETE").execute(&mut *conn).await?;
    reserve_bytes(conn, i32::from(RESERVE)).await?;
    if pages == 0 {
        // An empty file has no page to rebuild; the first write creates page 1 with the reserve.
        sqlx::query("PRAGMA user_version=1").execute(&mut *conn).await?;
        sqlx::query("PRAGMA user_version=0").execute(&mut *conn).await?;
    } else {
        sqlx::query("VACUUM").execute(&mut *conn).await?;
    }
    Ok(Enabled::Now)
}

/// Sets the main database's reserved bytes per page (`n` in 0..=255) or, with -1, reads them.
async fn reserve_bytes(conn: &mut SqliteConnection, n: i32) -> Result<i32, Error> {
    let mut handle = conn.lock_handle().await?;
    vfs::reserve_bytes(handle.as_raw_handle().as_ptr(), n).map_err(|rc| Error::Sqlite("file_control", rc))
}

/// Whether the database file at `path` reserves [`RESERVE`] bytes per page (byte 20 of its header),
/// which is what tells this VFS to keep checksums in it. `None` when it has no header yet.
pub fn checksums_on(path: &std::path::Path) -> std::io::Result<Option<bool>> {
    use std::io::Read;
    let mut header = [0u8; 100];
    let mut file = std::fs::File::open(path)?;
    match file.read_exact(&mut header) {
        Ok(()) => Ok(vfs::header_reserve(&header).map(|r| r == RESERVE)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// The checksum of one page: two running 32-bit sums over its bytes but the last eight, taken as
/// pairs of little-endian words, each sum feeding the other so that order and position count. The
/// sums start from a non-zero seed so that a page zeroed by the storage fails too.
pub fn page_checksum(page: &[u8]) -> [u8; 8] {
    let body = &page[..page.len() - RESERVE as usize];
    let (mut s1, mut s2) = (0x436f_7264u32, 0x6f6e_2121u32);
    for pair in body.chunks_exact(8) {
        let a = u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]);
        let b = u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]);
        s1 = s1.wrapping_add(a).wrapping_add(s2);
        s2 = s2.wrapping_add(b).wrapping_add(s1);
    }
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&s1.to_le_bytes());
    out[4..].copy_from_slice(&s2.to_le_bytes());
    out
}

/// Whether a read or write of `len` bytes at `offset` is one whole page: a power of two from 512 to
/// 65,536 bytes at a multiple of itself.
fn is_page(len: usize, offset: i64) -> bool {
    (512..=65536).contains(&len) && len.is_power_of_two() && offset % len as i64 == 0
}

#[cfg(test)]
mod tests;
