//! T4 (issue 16 item 3): power loss. The server's whole data directory is a FUSE filesystem
//! ([`tests::lossyfs`]) that keeps written data in memory until it is fsynced (or has waited two
//! seconds for writeback) and drops it when the power is cut. The power is cut four times at
//! random moments while agents publish; each time the server is killed first, as a power cut
//! would, and started again on what survived. With fsync honoured no acknowledged event may be
//! lost; the negative control ignores fsync and must lose some, or the test proves nothing.
//!
//! nats-server's store is not on the lossy filesystem: it stands for the separate machines a
//! JetStream cluster runs on. What is measured is Cordon's promise that it acknowledges a message
//! to the stream only after the event is durable in its own stores.

use super::{bin, nats};
use std::time::Duration;
use tests::lossyfs::{LossStats, LossyMount};
use tests::{Server, ServerOptions, agent_summary, counts, eventually, get, metric, run, spawn_agent};

/// What a run of power cuts left.
struct Outcome {
    acked: u64,
    /// (rows, distinct event ids, index documents) after recovery, or why nothing could be read.
    stored: Result<(u64, u64, u64), String>,
    fs: LossStats,
}

/// Power cuts per run, each 1.0-2.2 s after the server came back.
const CUTS: usize = 4;

/// A small deterministic generator for the moments of the cuts.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Runs agents for about ten seconds, cutting the power [`CUTS`] times; `stored` waits up to
/// `settle` for the server to hold every acknowledged event, then reports what it holds.
fn cut_power_while_agents_publish(honour_fsync: bool, mut seed: u64) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let nats = nats(dir.path());
    let data = dir.path().join("data");
    let mut fs = LossyMount::mount(&dir.path().join("backing"), &data, honour_fsync)?;
    let mut server = Server::start(&bin(), &data, &nats.url, &ServerOptions::default())?;
    let tok = tests::token(&bin(), &data, None)?;
    if !honour_fsync {
        // The control measures lost events, not a lost token: the machine had been up a while.
        fs.sync()?;
    }
    let listen = server.api.trim_start_matches("http://").to_owned();
    let mut agents = spawn_agent(
        &bin(),
        &nats.url,
        &dir.path().join("spool"),
        &[
            "--drain-secs",
            "120",
            "simulate",
            "--hosts",
            "4",
            "--rate",
            "600",
            "--duration",
            "10",
            "--seed",
            &seed.to_string(),
        ],
    )?;
    for _ in 0..CUTS {
        std::thread::sleep(Duration::from_millis(1000 + next(&mut seed) % 1200));
        server.kill();
        fs.power_cut()?;
        let opts = ServerOptions { listen: Some(listen.clone()), ..Default::default() };
        server = match Server::start(&bin(), &data, &nats.url, &opts) {
            Ok(s) => s,
            Err(e) if !honour_fsync => {
                let _ = agents.kill();
                let _ = agents.wait();
                let stored = Err(format!("the server could not start again: {e:#}"));
                return Ok(Outcome { acked: 0, stored, fs: fs.stats() });
            }
            Err(e) => return Err(e.context("the server starts again after a power cut")),
        };
    }
    let (code, shipped) = agent_summary(agents)?;
    anyhow::ensure!(code == 0, "the agents shipped everything: {shipped}");
    let acked = shipped["events_acked"].as_u64().unwrap_or(0);
    // Without fsync the metadata database can lose even what was written back before the cuts
    // (a checkpoint's pages dropped while the log that held them was already reused).
    let (status, _) = get(&format!("{}/api/v1/policy", server.api), Some(&tok))?;
    let stored = match status {
        401 => Err("the metadata database lost the API token, written back before the first cut".to_owned()),
        _ => settle(&server, &tok, acked),
    };
    server.kill();
    if honour_fsync {
        let (code, out) = run(&bin(), &["verify", "--data-dir", &data.display().to_string()])?;
        anyhow::ensure!(code == 0, "cordon verify after the power cuts: {out}");
    }
    Ok(Outcome { acked, stored, fs: fs.stats() })
}

/// (rows, distinct ids, index documents) once they reach `acked`; or, when they fall short, once
/// the stream has nothing left for the server (its lag gauge at 0) and the counts have stood still
/// for 3 s. Messages a killed server held unacknowledged come back after the consumer's ack wait.
fn settle(server: &Server, tok: &str, acked: u64) -> Result<(u64, u64, u64), String> {
    let read = || -> anyhow::Result<((u64, u64, u64), Option<f64>)> {
        let (rows, distinct) = counts(&server.api, tok)?;
        let (_, h) = get(&format!("{}/healthz", server.api), None)?;
        let (_, m) = get(&format!("{}/metrics", server.api), Some(tok))?;
        let text = m.as_str().unwrap_or_default();
        let lag =
            text.contains("\ncordon_ingest_lag_messages").then(|| metric(text, "cordon_ingest_lag_messages"));
        Ok(((rows, distinct, h["indexed_events"].as_u64().unwrap_or(0)), lag))
    };
    let mut last = None;
    let mut still = 0;
    let found = eventually(Duration::from_secs(150), || {
        let (now, lag) = read()?;
        still = if last == Some(now) && lag == Some(0.0) { still + 1 } else { 0 };
        last = Some(now);
        Ok((now.0 >= acked && now.2 >= acked || still >= 30).then_some(now))
    });
    found.map_err(|e| format!("{e:#}"))
}

#[test]
fn power_cuts_lose_no_acknowledged_event() -> anyhow::Result<()> {
    let o = cut_power_while_agents_publish(true, 0x7a4c_9e21)?;
    let stored = o.stored.map_err(anyhow::Error::msg)?;
    eprintln!(
        "T4 fsync honoured: {} cuts dropped {} KiB never fsynced ({} fsyncs); {} events acked, (rows, distinct, indexed) = {stored:?}",
        o.fs.cuts,
        o.fs.lost / 1024,
        o.fs.fsyncs,
        o.acked
    );
    assert!(o.fs.lost > 0, "the power cuts dropped data (or they tested nothing)");
    assert!(o.acked > 5_000, "the agents were acked for events: {}", o.acked);
    assert_eq!(stored, (o.acked, o.acked, o.acked), "(rows, distinct ids, index docs) vs acked");
    Ok(())
}

#[test]
fn power_cuts_with_fsync_ignored_lose_events() -> anyhow::Result<()> {
    let o = cut_power_while_agents_publish(false, 0x7a4c_9e21)?;
    let loss = match &o.stored {
        Ok((rows, distinct, _)) if *distinct < o.acked => {
            format!("{} of {} acked events lost ({rows} rows)", o.acked - distinct, o.acked)
        }
        Ok(s) => panic!(
            "the control lost nothing ({s:?} stored of {} acked): T4 cannot tell fsync from its absence",
            o.acked
        ),
        Err(why) => why.clone(),
    };
    eprintln!(
        "T4 negative control (fsync ignored): {} cuts dropped {} KiB; {loss}",
        o.fs.cuts,
        o.fs.lost / 1024
    );
    Ok(())
}

/// The filesystem itself: what was fsynced survives a cut, what was not is gone, and names (made,
/// renamed, linked) are kept as they were at the cut.
#[test]
fn the_lossy_filesystem_drops_what_was_not_fsynced() -> anyhow::Result<()> {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let at = dir.path().join("mnt");
    let mut fs = LossyMount::mount(&dir.path().join("backing"), &at, true)?;
    std::fs::create_dir_all(at.join("a/b"))?;
    let mut kept = std::fs::File::create(at.join("a/b/kept"))?;
    kept.write_all(b"durable")?;
    kept.sync_all()?;
    kept.write_all(b" and then not")?;
    let mut lost = std::fs::File::create(at.join("a/lost"))?;
    lost.write_all(b"never fsynced")?;
    assert_eq!(std::fs::read(at.join("a/lost"))?, b"never fsynced", "readable before the cut");
    std::fs::write(at.join("a/tmp"), b"renamed after fsync")?;
    std::fs::File::open(at.join("a/tmp"))?.sync_all()?;
    std::fs::rename(at.join("a/tmp"), at.join("a/b/final"))?;
    std::fs::hard_link(at.join("a/b/final"), at.join("a/linked"))?;
    drop((kept, lost));
    let dropped = fs.power_cut()?;
    assert_eq!(dropped, (b" and then not".len() + b"never fsynced".len()) as u64);
    assert_eq!(std::fs::read(at.join("a/b/kept"))?, b"durable");
    assert_eq!(std::fs::read(at.join("a/lost"))?, b"", "the name survives, its data does not");
    assert_eq!(std::fs::read(at.join("a/b/final"))?, b"renamed after fsync");
    assert_eq!(std::fs::read(at.join("a/linked"))?, b"renamed after fsync");
    assert!(!at.join("a/tmp").exists());
    Ok(())
}
