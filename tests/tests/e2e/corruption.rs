//! Issue 16 item 3, the corruption matrix: single-byte damage and truncation of each kind of file
//! the store keeps (Parquet, index segments, the catalog, the Delta log), each on its own copy of one
//! data directory; `cordon verify` must exit non-zero and name what it found, every time.

use super::{Env, bin};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tests::{ServerOptions, agent, counts, eventually, files_under, get, metric};

fn ext(p: &Path) -> &str {
    p.extension().and_then(|e| e.to_str()).unwrap_or_default()
}

/// Inverts one byte at `at` (clamped into the file).
fn flip(path: &Path, at: u64) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(path)?;
    let i = (at as usize).min(bytes.len() - 1);
    bytes[i] = !bytes[i];
    Ok(std::fs::write(path, bytes)?)
}

fn truncate(path: &Path) -> anyhow::Result<()> {
    let len = std::fs::metadata(path)?.len();
    Ok(std::fs::OpenOptions::new().write(true).open(path)?.set_len(len / 2)?)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    let ok = Command::new("cp").arg("-a").arg(from).arg(to).status()?.success();
    anyhow::ensure!(ok, "cp -a {} {}", from.display(), to.display());
    Ok(())
}

/// `cordon verify` on `data`: (exit code, stdout and stderr together).
fn verify(data: &Path) -> anyhow::Result<(i32, String)> {
    let out =
        Command::new(bin()).args(["verify", "--data-dir"]).arg(data).env("CORDON_LOG", "error").output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), text))
}

/// SQLite's write-ahead log folded into the database file, so damage to the file is damage to the
/// data (through the page-checksum VFS, as the server writes it; the server is stopped).
fn checkpoint_sqlite(db: &Path) -> anyhow::Result<()> {
    let url = format!("sqlite://{}", db.display());
    Ok(tokio::runtime::Runtime::new()?.block_on(sqlite_cksum::checkpoint(&url))?)
}

/// Flips one bit inside the first stored copy of `text` in `path` (a value inside a row).
fn flip_inside(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(path)?;
    let at = bytes.windows(text.len()).position(|w| w == text.as_bytes());
    let at = at.ok_or_else(|| anyhow::anyhow!("{text:?} is not in {}", path.display()))?;
    bytes[at + text.len() / 2] ^= 0x02;
    Ok(std::fs::write(path, bytes)?)
}

/// A way to damage a copy of the data directory.
type Damage = Box<dyn Fn(&Path) -> anyhow::Result<()>>;

#[test]
fn verify_finds_every_kind_of_damage_to_every_kind_of_file() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let sent =
        agent(&bin(), &env.nats.url, &env.spool(), &["replay", "builtin:log4j-conti"])?["events_acked"]
            .as_u64()
            .unwrap();
    eventually(Duration::from_secs(60), || {
        let (_, h) = get(&format!("{}/healthz", env.server.api), None)?;
        let level =
            counts(&env.server.api, &env.token)?.0 == sent && h["indexed_events"].as_u64() == Some(sent);
        Ok(level.then_some(()))
    })?;
    let nats_url = env.nats.url.clone();
    let tok = env.token.clone();
    let Env { server, data, dir, .. } = env;
    server.kill();
    checkpoint_sqlite(&data.join("meta.db"))?;
    let (code, out) = verify(&data)?;
    assert_eq!(code, 0, "the undamaged store verifies: {out}");

    let parquet = |d: &Path| {
        files_under(&d.join("lake"), &|p| ext(p) == "parquet" && !p.to_string_lossy().contains("_delta_log"))
            [0]
        .clone()
    };
    let segment = |d: &Path| {
        files_under(&d.join("index"), &|p| matches!(ext(p), "idx" | "store" | "term" | "pos" | "fast"))[0]
            .clone()
    };
    let delta = |d: &Path| {
        let mut logs =
            files_under(&d.join("lake"), &|p| ext(p) == "json" && p.to_string_lossy().contains("_delta_log"));
        logs.sort();
        logs.pop().expect("a Delta commit")
    };
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "a flipped byte in a Parquet file",
            Box::new(move |d| {
                let f = parquet(d);
                flip(&f, std::fs::metadata(&f)?.len() / 2)
            }),
            "corrupt or missing files",
        ),
        ("a truncated Parquet file", Box::new(move |d| truncate(&parquet(d))), "corrupt or missing files"),
        (
            "a flipped byte in an index segment",
            Box::new(move |d| {
                let f = segment(d);
                flip(&f, std::fs::metadata(&f)?.len() / 2)
            }),
            "index",
        ),
        ("a truncated index segment", Box::new(move |d| truncate(&segment(d))), "index"),
        // Page 2's first byte is its b-tree page type, which SQLite's own check sees; a bit flipped
        // inside a row's value (a host's name, which nothing else cross-checks) only the page
        // checksums see.
        ("a damaged catalog page", Box::new(|d| flip(&d.join("meta.db"), 4096)), "database"),
        (
            "a flipped bit inside a catalog row",
            Box::new(|d| flip_inside(&d.join("meta.db"), "WIN-DAKEQI")),
            "checksum",
        ),
        ("a truncated catalog", Box::new(|d| truncate(&d.join("meta.db"))), "database"),
        (
            "a flipped byte in the latest Delta commit",
            Box::new(move |d| {
                let f = delta(d);
                flip(&f, std::fs::metadata(&f)?.len() / 3)
            }),
            "delta",
        ),
        ("a truncated Delta commit", Box::new(move |d| truncate(&delta(d))), "delta"),
    ];
    for (i, (what, damage, says)) in cases.iter().enumerate() {
        let copy = dir.path().join(format!("damaged-{i}"));
        copy_dir(&data, &copy)?;
        damage(&copy)?;
        let (code, out) = verify(&copy)?;
        assert_ne!(code, 0, "{what}: verify passed: {out}");
        assert!(out.to_lowercase().contains(says), "{what}: verify said: {out}");
        let said = out.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
        eprintln!("corruption: {what}: exit {code}: {}", &said[..said.len().min(240)]);
    }
    // Start-up repairs derived state that verify only reports: an index or a Delta log that cannot
    // be opened is set aside and rebuilt, and the store verifies clean again.
    for i in [3, 7, 8] {
        let copy = dir.path().join(format!("damaged-{i}"));
        let server = tests::Server::start(&bin(), &copy, &nats_url, &ServerOptions::default())?;
        eventually(Duration::from_secs(60), || {
            let (_, h) = get(&format!("{}/healthz", server.api), None)?;
            let level = counts(&server.api, &tok)?.0 == sent && h["indexed_events"].as_u64() == Some(sent);
            Ok(level.then_some(()))
        })
        .map_err(|e| e.context(format!("repairing {}", cases[i].0)))?;
        server.kill();
        let (code, out) = verify(&copy)?;
        assert_eq!(code, 0, "{} was repaired at start: {out}", cases[i].0);
    }
    quarantine_at_start(&data, &dir.path().join("damaged-0"), &nats_url, &tok, sent)?;
    quarantine_on_read(&data, &dir.path().join("damaged-read"), &nats_url, &tok, sent)
}

/// Rows in one Parquet file, by polars (the reference reader).
fn parquet_rows(path: &Path) -> anyhow::Result<u64> {
    let script =
        "import polars as pl,sys; print(pl.scan_parquet(sys.argv[1]).select(pl.len()).collect().item())";
    let out = Command::new("python3").args(["-c", script]).arg(path).output()?;
    anyhow::ensure!(
        out.status.success(),
        "polars on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// A server started on a store with a damaged Parquet file quarantines the file (its scrub at
/// start) and serves every other row: SQL and the index both hold what was sent minus that file's
/// rows, the bytes are kept under `events/_damaged/`, and `cordon verify` reports the rows lost.
fn quarantine_at_start(
    whole: &Path,
    damaged: &Path,
    nats_url: &str,
    tok: &str,
    sent: u64,
) -> anyhow::Result<()> {
    let server = tests::Server::start(&bin(), damaged, nats_url, &ServerOptions::default())?;
    let events = damaged.join("lake").join("events");
    let aside =
        eventually(Duration::from_secs(60), || Ok(files_under(&events.join("_damaged"), &set_aside).pop()))?;
    // `_damaged/<partition>/<name>.parquet.<time>` was `events/<partition>/<name>.parquet`.
    let rel = aside.strip_prefix(events.join("_damaged"))?.with_extension("");
    let lost = parquet_rows(&whole.join("lake").join("events").join(&rel))?;
    assert!(lost > 0 && lost < sent, "the damaged file held some of the rows: {lost} of {sent}");
    let served = eventually(Duration::from_secs(60), || {
        let (_, h) = get(&format!("{}/healthz", server.api), None)?;
        let now = (counts(&server.api, tok)?.0, h["indexed_events"].as_u64().unwrap_or(0));
        Ok((now == (sent - lost, sent - lost)).then_some(now))
    })?;
    server.kill();
    let (code, out) = verify(damaged)?;
    assert_ne!(code, 0, "verify reports the loss: {out}");
    assert!(out.contains(&format!("{lost} rows lost")), "verify names the rows lost: {out}");
    eprintln!("corruption: quarantined {} ({lost} rows), (rows, indexed) now {served:?}", rel.display());
    Ok(())
}

/// A file set aside whole (not the temporary file it is written through first).
fn set_aside(p: &Path) -> bool {
    !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
}

/// The server's metrics page as text.
fn metrics(api: &str, tok: &str) -> anyhow::Result<String> {
    let (_, m) = get(&format!("{api}/metrics"), Some(tok))?;
    Ok(m.as_str().unwrap_or_default().to_owned())
}

/// A file damaged while the server runs, after its scrub found every file whole, is not served by
/// the next query: the SQL worker checks each file before its first use, the server checks the
/// refused file again and quarantines it, and the query answers from the other files.
fn quarantine_on_read(whole: &Path, dir: &Path, nats_url: &str, tok: &str, sent: u64) -> anyhow::Result<()> {
    copy_dir(whole, dir)?;
    let server = tests::Server::start(&bin(), dir, nats_url, &ServerOptions::default())?;
    eventually(Duration::from_secs(60), || {
        Ok((metric(&metrics(&server.api, tok)?, "cordon_lake_scrubs") >= 1.0).then_some(()))
    })?;
    let events = dir.join("lake").join("events");
    let mut parquet = files_under(&events, &|p| ext(p) == "parquet");
    parquet.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let target = parquet.pop().expect("the lake has files");
    let lost = parquet_rows(&target)?;
    flip(&target, std::fs::metadata(&target)?.len() / 2)?;
    let after = counts(&server.api, tok)?;
    assert_eq!(after, (sent - lost, sent - lost), "the damaged file's {lost} rows are not served");
    assert!(!target.exists(), "the damaged file left the table");
    let aside = files_under(&events.join("_damaged"), &set_aside);
    assert_eq!(aside.len(), 1, "its bytes are kept aside: {aside:?}");
    let text = metrics(&server.api, tok)?;
    assert_eq!(metric(&text, "cordon_lake_damaged_files"), 1.0);
    assert_eq!(metric(&text, "cordon_lake_damaged_rows"), lost as f64);
    server.kill();
    let (code, out) = verify(dir)?;
    assert_ne!(code, 0, "verify reports the loss: {out}");
    assert!(out.contains(&format!("{lost} rows lost")), "verify names the rows lost: {out}");
    eprintln!("corruption: a file damaged after its scrub was refused by the first query ({lost} rows)");
    Ok(())
}
