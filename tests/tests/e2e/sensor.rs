//! Issue 19 (its first part): `cordon-agent run` on this live host follows processes through the
//! kernel's process connector and ships them with their identity and parent chain; each arrives in
//! the lake through NATS, and the pack's Linux rule tags a program run from /tmp.

use super::{Env, bin};
use std::process::Command;
use std::time::Duration;
use tests::{ServerOptions, eventually, sql};

/// One column of the start events matching `filter`.
fn starts(api: &str, tok: &str, filter: &str) -> anyhow::Result<Vec<Vec<serde_json::Value>>> {
    sql(
        api,
        tok,
        &format!(
            "SELECT process_pid, process_entity_id, process_executable, process_command_line, parent_pid, \
         parent_entity_id, process_hash_sha256, user_name, array_to_string(threat_technique_id, ',') \
         FROM events WHERE host_name = 'live-1' AND event_action = 'start' AND {filter}"
        ),
    )
}

#[test]
fn live_processes_arrive_with_their_identity_and_parent_chain() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (api, tok) = (env.server.api.as_str(), env.token.as_str());
    let agent = tests::spawn_agent(
        &bin(),
        &env.nats.url,
        &env.spool(),
        // The budget of a debug build (about ten times the CPU of a release one) is lifted, so
        // the hashes asserted below are taken.
        &["run", "--host", "live-1", "--max-secs", "300", "--cpu-budget-pct", "100"],
    )?;
    // The agent is following once a process started after it shows in the lake.
    let me = std::process::id();
    super::wait_until_following(api, tok, "live-1")?;

    // A shell that starts a child: the chain test process -> sh -> sleep.
    let mut sh = Command::new("/bin/sh").args(["-c", "/bin/sleep 0.5; exit 3", "cordon-chain"]).spawn()?;
    let sh_pid = sh.id();
    assert_eq!(sh.wait()?.code(), Some(3));
    // One process of a millisecond.
    let short = Command::new("/bin/true").spawn()?.id();
    // A burst of 1,000 from one shell.
    let mut burst = Command::new("/bin/sh")
        .args(["-c", "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done"])
        .spawn()?;
    let burst_pid = burst.id();
    assert!(burst.wait()?.success());
    // A program run from a temporary directory.
    let tmp = tempfile::tempdir_in("/tmp")?;
    let dropped = tmp.path().join("payload");
    // (A payload that lives a moment, as one does: a program gone before `/proc` is read ships
    // without its executable, and no rule can name it.)
    std::fs::copy("/bin/sleep", &dropped)?;
    let dropped_pid = Command::new(&dropped).arg("0.5").spawn()?.id();

    let mut burst_rows = Vec::new();
    let _ = eventually(Duration::from_secs(60), || {
        burst_rows = starts(api, tok, &format!("parent_pid = {burst_pid}"))?;
        Ok((burst_rows.len() >= 1000).then_some(()))
    });
    if burst_rows.len() != 1000 {
        let orphans = starts(api, tok, "parent_pid IS NULL")?.len();
        Command::new("kill").args(["-TERM", &agent.id().to_string()]).status()?;
        let (_, summary) = tests::agent_summary(agent)?;
        anyhow::bail!(
            "{} of the burst's 1,000 starts arrived; {orphans} starts without a parent; the agent: {}",
            burst_rows.len(),
            summary["sources"]
        );
    }
    assert_eq!(burst_rows.len(), 1000, "every start of the burst, once");
    let shell = starts(api, tok, &format!("process_pid = {sh_pid}"))?;
    assert_eq!(shell.len(), 1, "{shell:?}");
    let s = &shell[0];
    assert_eq!(
        (s[4].as_u64(), s[3].as_str()),
        (Some(u64::from(me)), Some("/bin/sh -c /bin/sleep 0.5; exit 3 cordon-chain")),
        "{s:?}"
    );
    let child = starts(api, tok, &format!("parent_pid = {sh_pid}"))?;
    assert_eq!(child.len(), 1, "{child:?}");
    let c = &child[0];
    assert!(c[2].as_str().is_some_and(|x| x.ends_with("/sleep")), "{c:?}");
    assert_eq!(c[5], s[1], "the child's parent entity is the shell's entity: {c:?} {s:?}");
    assert_eq!(c[6].as_str().map(str::len), Some(64), "{c:?}");
    assert_eq!(c[7].as_str(), Some("root"), "{c:?}");
    let one = starts(api, tok, &format!("process_pid = {short}"))?;
    assert_eq!(one.len(), 1, "the millisecond-long process: {one:?}");
    assert_eq!(one[0][4].as_u64(), Some(u64::from(me)));
    let payload = eventually(Duration::from_secs(30), || {
        let rows = starts(api, tok, &format!("process_pid = {dropped_pid}"))?;
        Ok(rows.into_iter().next())
    })?;
    assert!(
        payload[8].as_str().is_some_and(|t| t.contains("T1204.002")),
        "tagged by the pack's Linux rule: {payload:?}"
    );

    // Ends: the shell's exit code, on the same entity.
    let ends = sql(
        api,
        tok,
        &format!(
            "SELECT process_exit_code, process_entity_id FROM events WHERE host_name = 'live-1' AND event_action = 'end' AND process_pid = {sh_pid}"
        ),
    )?;
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!((ends[0][0].as_i64(), &ends[0][1]), (Some(3), &s[1]));

    // SIGTERM ends the run with everything queued shipped, and its summary.
    let status = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status()?;
    assert!(status.success());
    let (code, summary) = tests::agent_summary(agent)?;
    assert_eq!(code, 0, "{summary}");
    let p = &summary["sources"]["process"];
    assert_eq!(p["facility"], "netlink", "the process connector is available here: {summary}");
    assert_eq!((p["queue_dropped"].as_u64(), p["kernel_overruns"].as_u64()), (Some(0), Some(0)), "{summary}");
    println!("process source: {p}");
    Ok(())
}
