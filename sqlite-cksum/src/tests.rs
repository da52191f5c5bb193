use super::*;
use sqlx::sqlite::{SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;

const ROWS: i64 = 2_000;

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Options for a connection through the shim in WAL mode, as Cordon's catalog opens it.
fn shim_opts(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .vfs(VFS_NAME)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
}

/// Writes ROWS rows, each naming itself, in many transactions.
async fn fill(opts: SqliteConnectOptions) -> Result<(), Error> {
    let pool = SqlitePoolOptions::new().max_connections(2).connect_with(opts).await?;
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT NOT NULL)").execute(&pool).await?;
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(100) {
        let mut tx = pool.begin().await?;
        for id in chunk {
            sqlx::query("INSERT INTO t (id, note) VALUES (?, ?)")
                .bind(id)
                .bind(format!("row-{id:06}-payload-kept-in-the-catalog"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    pool.close().await;
    Ok(())
}

async fn read_all(opts: SqliteConnectOptions) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let mut conn = SqliteConnection::connect_with(&opts).await?;
    let rows = sqlx::query_as("SELECT id, note FROM t ORDER BY id").fetch_all(&mut conn).await;
    conn.close().await?;
    rows
}

/// Flips one bit inside the stored text of row `id` (found in the file's bytes).
fn flip_inside_row(path: &Path, id: i64) {
    let mut bytes = std::fs::read(path).unwrap();
    let needle = format!("row-{id:06}-payload");
    let at = bytes.windows(needle.len()).position(|w| w == needle.as_bytes()).expect("row text in the file");
    bytes[at + 12] ^= 0x04;
    std::fs::write(path, bytes).unwrap();
}

fn expect_checksum_error(e: sqlx::Error) {
    let code = e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some(IOERR_DATA.to_string().as_str()), "want SQLITE_IOERR_DATA, got {e}");
}

#[test]
fn checksum_catches_every_single_bit_flip_and_a_zeroed_page() {
    let mut page: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let sum = page_checksum(&page);
    for bit in (0..(4096 - 8) * 8).step_by(7) {
        page[bit / 8] ^= 1 << (bit % 8);
        assert_ne!(page_checksum(&page), sum, "flip of bit {bit} went unseen");
        page[bit / 8] ^= 1 << (bit % 8);
    }
    assert_eq!(page_checksum(&page), sum, "the checksum ignores the reserved bytes themselves");
    assert_ne!(page_checksum(&[0u8; 4096]), [0u8; 8], "a zeroed page must fail");
    assert!(is_page(4096, 8192) && !is_page(4096, 100) && !is_page(100, 0) && !is_page(4120, 0));
}

#[tokio::test]
async fn a_new_database_keeps_checksums_and_a_flipped_bit_in_a_row_is_an_error() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.db");
    assert_eq!(enable(&url(&db)).await?, Enabled::Now);
    assert_eq!(checksums_on(&db).unwrap(), Some(true));
    fill(shim_opts(&db)).await?;
    assert_eq!(enable(&url(&db)).await?, Enabled::Already);
    assert_eq!(read_all(shim_opts(&db)).await?.len() as i64, ROWS);

    flip_inside_row(&db, 1234);
    expect_checksum_error(read_all(shim_opts(&db)).await.unwrap_err());
    let mut conn = SqliteConnection::connect_with(&shim_opts(&db)).await?;
    let check = sqlx::query_as::<_, (String,)>("PRAGMA integrity_check").fetch_all(&mut conn).await;
    expect_checksum_error(check.unwrap_err());
    // Rows on other pages are still served.
    let (first,): (String,) = sqlx::query_as("SELECT note FROM t WHERE id = 0").fetch_one(&mut conn).await?;
    assert_eq!(first, "row-000000-payload-kept-in-the-catalog");
    Ok(())
}

/// The negative control: without checksums the same flip is served as a row.
#[tokio::test]
async fn without_checksums_the_same_flip_reads_back_as_a_different_value() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plain.db");
    let plain = SqliteConnectOptions::new().filename(&db).create_if_missing(true);
    fill(plain.clone()).await?;
    assert_eq!(checksums_on(&db).unwrap(), Some(false));
    flip_inside_row(&db, 1234);
    let rows = read_all(plain).await?;
    assert_eq!(rows.len() as i64, ROWS);
    assert_ne!(rows[1234].1, "row-001234-payload-kept-in-the-catalog", "the flip was served silently");
    Ok(())
}

#[tokio::test]
async fn an_existing_database_is_rebuilt_with_checksums_and_keeps_its_rows() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    fill(
        SqliteConnectOptions::new()
            .filename(&db)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal),
    )
    .await?;
    assert_eq!(checksums_on(&db).unwrap(), Some(false));
    assert_eq!(enable(&url(&db)).await?, Enabled::Now);
    assert_eq!(checksums_on(&db).unwrap(), Some(true));
    let rows = read_all(shim_opts(&db)).await?;
    assert_eq!(rows.len() as i64, ROWS);
    assert_eq!(rows[1999].1, "row-001999-payload-kept-in-the-catalog");
    flip_inside_row(&db, 7);
    expect_checksum_error(read_all(shim_opts(&db)).await.unwrap_err());
    Ok(())
}

/// A copy of the database and its write-ahead log taken while a writer is open (what a power cut
/// leaves) recovers every committed row: the shim leaves WAL frames, and their checksums, alone.
#[tokio::test]
async fn the_write_ahead_log_recovers_after_a_crash_with_checksums_on() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    enable(&url(&db)).await?;
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(shim_opts(&db)).await?;
    sqlx::query("PRAGMA wal_autocheckpoint=0").execute(&pool).await?;
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT NOT NULL)").execute(&pool).await?;
    for id in 0..300i64 {
        sqlx::query("INSERT INTO t (id, note) VALUES (?, ?)")
            .bind(id)
            .bind(format!("row-{id:06}-payload-kept-in-the-catalog"))
            .execute(&pool)
            .await?;
    }
    let crashed = dir.path().join("crashed.db");
    std::fs::copy(&db, &crashed).unwrap();
    std::fs::copy(dir.path().join("live.db-wal"), dir.path().join("crashed.db-wal")).unwrap();
    pool.close().await;

    let rows = read_all(shim_opts(&crashed)).await?;
    assert_eq!(rows.len(), 300, "committed rows in the log are recovered");
    let mut conn = SqliteConnection::connect_with(&shim_opts(&crashed)).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await?;
    conn.close().await?;
    let mut conn = SqliteConnection::connect_with(&shim_opts(&crashed)).await?;
    let check: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check").fetch_all(&mut conn).await?;
    assert_eq!(check, vec![("ok".to_owned(),)], "checkpointed pages carry valid checksums");
    conn.close().await?;
    Ok(())
}
