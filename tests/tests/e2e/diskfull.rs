//! T7 (issue 16 item 2): a full disk is a pause, not damage. The data directory is three small
//! tmpfs mounts the test makes (the metadata database at its root, `lake/` and `index/`), so each
//! store can be filled on its own while agents publish; then space returns and the server, never
//! restarted, must take everything, leave no partial file, and bring the index level with the lake.

use super::{bin, nats};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tests::{Server, ServerOptions, agent_summary, counts, eventually, get, metric, run, spawn_agent};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size_mib: u32) -> anyhow::Result<Self> {
        std::fs::create_dir_all(at)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(at)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "T7 mounts small filesystems for the data directory and needs root (or CAP_SYS_ADMIN): \
             mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Self(at.to_owned()))
    }

    /// Fills the filesystem to the last byte with a ballast file.
    fn fill(&self) -> anyhow::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("ballast"))?;
        for chunk in [1 << 20, 4096, 1] {
            let buf = vec![0u8; chunk];
            while f.write_all(&buf).is_ok() {}
        }
        let _ = f.sync_all();
        Ok(())
    }

    fn free(&self) -> anyhow::Result<()> {
        Ok(std::fs::remove_file(self.0.join("ballast"))?)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Temporary lake files (`.tmp-*`) under `dir`.
fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    tests::files_under(dir, &|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(".tmp-"))
    })
}

/// (rows, index documents) the server reports.
fn stored(server: &Server, tok: &str) -> anyhow::Result<(u64, u64)> {
    let rows = counts(&server.api, tok)?.0;
    let (_, h) = get(&format!("{}/healthz", server.api), None)?;
    Ok((rows, h["indexed_events"].as_u64().unwrap_or(0)))
}

/// Waits until the lake and the index both hold exactly `acked` events.
fn level(server: &Server, tok: &str, acked: u64) -> anyhow::Result<()> {
    eventually(Duration::from_secs(60), || Ok((stored(server, tok)? == (acked, acked)).then_some(())))
}

#[test]
fn a_full_disk_is_a_pause_for_the_lake_the_catalog_and_the_index() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let n = nats(dir.path());
    let data = dir.path().join("data");
    // Mounted outermost first; dropped (unmounted) innermost first.
    let root = Mount::tmpfs(&data, 32)?;
    let lake = Mount::tmpfs(&data.join("lake"), 32)?;
    let index = Mount::tmpfs(&data.join("index"), 32)?;
    let mut server = Server::start(&bin(), &data, &n.url, &ServerOptions::default())?;
    let tok = tests::token(&bin(), &data, None)?;
    let spool = dir.path().join("spool");
    let mut acked = 0u64;
    let mut seed = 0;
    let mut ship = |events_per_host: u32| -> anyhow::Result<std::process::Child> {
        seed += 1;
        let secs = (events_per_host / 400).max(1).to_string();
        spawn_agent(
            &bin(),
            &n.url,
            &spool,
            &[
                "--drain-secs",
                "120",
                "simulate",
                "--hosts",
                "4",
                "--rate",
                "1600",
                "--duration",
                &secs,
                "--seed",
                &seed.to_string(),
            ],
        )
    };
    let (code, a) = agent_summary(ship(800)?)?;
    assert_eq!(code, 0, "{a}");
    acked += a["events_acked"].as_u64().unwrap();
    level(&server, &tok, acked)?;

    for (what, mount) in [("lake", &lake), ("metadata database", &root), ("index", &index)] {
        mount.fill()?;
        let before = stored(&server, &tok)?;
        let (code, b) = agent_summary(ship(800)?)?;
        assert_eq!(code, 0, "{what}: the agent's events reach the stream while the disk is full: {b}");
        let sent = b["events_acked"].as_u64().unwrap();
        // While the disk stays full: the server lives, nothing partial outlives a failed write, and
        // the stores that cannot write do not move.
        let mut seen_tmp = Vec::new();
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(1500));
            let now = tmp_files(&data.join("lake"));
            let stale: Vec<_> = now.iter().filter(|p| seen_tmp.contains(*p)).collect();
            assert!(stale.is_empty(), "{what}: partial lake files outlived a failed write: {stale:?}");
            seen_tmp = now;
        }
        assert_eq!(server.exited(), None, "{what}: the server died on a full disk");
        let during = stored(&server, &tok)?;
        match what {
            "index" => assert_eq!(during.1, before.1, "the index cannot have grown on a full disk"),
            _ => assert_eq!(during.0, before.0, "{what}: rows were stored with the {what} full"),
        }
        let (_, m) = get(&format!("{}/metrics", server.api), Some(&tok))?;
        let m = m.as_str().unwrap_or_default().to_owned();
        if what == "index" {
            // A stalled stage is visible as a stall: the index is behind and lags the lake.
            assert_eq!(metric(&m, "cordon_index_behind"), 1.0, "the index is marked behind: {m}");
            assert!(metric(&m, "cordon_index_lag_events") > 0.0, "the index's lag is visible: {m}");
        } else {
            assert!(
                metric(&m, "cordon_ingest_commit_failures") > 0.0,
                "{what}: commit failures are visible: {m}"
            );
        }
        // Space returns: everything is taken, without a restart, within seconds.
        mount.free()?;
        let freed = Instant::now();
        acked += sent;
        level(&server, &tok, acked).map_err(|e| e.context(format!("{what}: after space returned")))?;
        eprintln!("T7 {what}: level again {:.1} s after space returned", freed.elapsed().as_secs_f64());
        let left = tmp_files(&data.join("lake"));
        assert!(left.is_empty(), "{what}: temporary files are left: {left:?}");
        let (_, m) = get(&format!("{}/metrics", server.api), Some(&tok))?;
        let m = m.as_str().unwrap_or_default().to_owned();
        assert_eq!(
            metric(&m, "cordon_ingest_stored_total") as u64,
            acked,
            "{what}: the stored metric tells the truth"
        );
        assert_eq!(metric(&m, "cordon_lake_rows") as u64, acked, "{what}: {m}");
        assert_eq!(
            (metric(&m, "cordon_index_lag_events"), metric(&m, "cordon_index_behind")),
            (0.0, 0.0),
            "{what}: {m}"
        );
    }
    assert_eq!(counts(&server.api, &tok)?, (acked, acked), "every event once");
    server.kill();
    let (code, out) = run(&bin(), &["verify", "--data-dir", &data.display().to_string()])?;
    assert_eq!(code, 0, "verify after the disk-full rounds: {out}");
    // After a restart the stored count still matches the catalog (it used to start from zero).
    let server = Server::start(&bin(), &data, &n.url, &ServerOptions::default())?;
    let (_, m) = get(&format!("{}/metrics", server.api), Some(&tok))?;
    assert_eq!(metric(m.as_str().unwrap_or_default(), "cordon_ingest_stored_total") as u64, acked);
    server.kill();
    drop((index, lake, root));
    Ok(())
}

/// T7 for the bus: the events stream has a size cap (`--stream-max-mib`) and work-queue retention.
/// With the lake's disk full, ingest cannot ack, so the stream fills to its cap and JetStream
/// refuses new events; the agents keep them spooled and send them again. Once space returns, ingest
/// drains the stream (acked messages leave it), the agents get through, and everything they were
/// acked for is stored exactly once, without restarting anything. (A JetStream store whose own disk
/// fills under it needs nats-server restarted: nats-server stops writing a stream after a write
/// error, by design; `max_file_store` below the disk's size keeps it from getting there.)
#[test]
fn a_full_events_stream_is_a_pause() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let n = nats(dir.path());
    let data = dir.path().join("data");
    let lake = Mount::tmpfs(&data.join("lake"), 32)?;
    let opts = ServerOptions { args: vec!["--stream-max-mib".into(), "1".into()], ..Default::default() };
    let server = Server::start(&bin(), &data, &n.url, &opts)?;
    let tok = tests::token(&bin(), &data, None)?;
    let spool = dir.path().join("spool");
    let sim = |seed: &str, secs: &str| {
        let secs = secs.to_owned();
        spawn_agent(
            &bin(),
            &n.url,
            &spool,
            &[
                "--drain-secs",
                "180",
                "simulate",
                "--hosts",
                "8",
                "--rate",
                "6000",
                "--duration",
                &secs,
                "--seed",
                seed,
            ],
        )
    };
    let (code, a) = agent_summary(sim("1", "1")?)?;
    assert_eq!(code, 0, "{a}");
    let mut acked = a["events_acked"].as_u64().unwrap();
    level(&server, &tok, acked)?;
    lake.fill()?;
    // Several times what fits in the cap, compressed.
    let b = sim("2", "8")?;
    std::thread::sleep(Duration::from_secs(12));
    let held = stored(&server, &tok)?.0;
    assert_eq!(held, acked, "nothing was stored with the lake full");
    let info = stream_bytes(&n.url)?;
    assert!(info <= 1 << 20, "the stream stayed within its 1 MiB cap: {info} bytes");
    assert!(info > 3 << 18, "the stream filled up to its cap: {info} bytes");
    eprintln!("T7 stream: {info} bytes held at the cap while the lake was full");
    lake.free()?;
    let (code, b) = agent_summary(b)?;
    assert_eq!(code, 0, "the agent sent everything once the stream had room: {b}");
    assert_eq!(b["events_dropped"].as_u64().unwrap_or(0), 0, "{b}");
    acked += b["events_acked"].as_u64().unwrap();
    level(&server, &tok, acked)?;
    assert_eq!(counts(&server.api, &tok)?, (acked, acked), "every event once");
    eventually(Duration::from_secs(30), || Ok((stream_bytes(&n.url)? == 0).then_some(())))
        .map_err(|e| e.context("acked messages leave the work-queue stream"))?;
    Ok(())
}

/// Bytes the events stream holds.
fn stream_bytes(nats_url: &str) -> anyhow::Result<u64> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let c = tests::connect_operator(nats_url).await?;
        let mut s = async_nats::jetstream::new(c).get_stream("CORDON_EVENTS").await?;
        Ok(s.info().await?.state.bytes)
    })
}
