//! Issue 17's end-to-end response test, with real agents: an analyst asks to isolate one host and to
//! terminate a process on another; two responders approve each with their own keys; both agents
//! carry them out. The isolated host lives in a network namespace this test makes (a veth pair to
//! the test's side, where nats-server and a plain TCP server listen): after isolation its agent
//! still reaches NATS (its signed result arrives, and it goes on asking for orders) while the TCP
//! server is unreachable; a release restores it. Results, verification and the audit chain are
//! checked for both hosts.

use super::requests::{hand_in, sign, victim};
use super::{Env, bin};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use tests::{ServerOptions, get, post};

/// A network namespace joined to the test's by a veth pair: `outside` is the test's address on it,
/// `inside` the namespace's. Deleted (with the veth and any nftables rules inside) when dropped.
struct Netns {
    name: String,
    outside: String,
}

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    anyhow::ensure!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

impl Netns {
    fn new() -> anyhow::Result<Self> {
        let ok = Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success());
        anyhow::ensure!(ok, "nft is not installed: apt-get install nftables (./dev test installs it)");
        let pid = std::process::id();
        let (name, veth) = (format!("cordon-e2e-{pid}"), format!("cdn{}", pid % 1_000_000));
        // A /30 of 10.213.0.0/16 of this run's own.
        let (x, y) = ((pid >> 6) % 250, (pid % 64) * 4);
        let (outside, inside) = (format!("10.213.{x}.{}", y + 1), format!("10.213.{x}.{}", y + 2));
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name])?;
        let ns = Self { name: name.clone(), outside: outside.clone() };
        let peer = format!("{veth}p");
        sh(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer])?;
        sh(&["ip", "link", "set", &peer, "netns", &name])?;
        sh(&["ip", "addr", "add", &format!("{outside}/30"), "dev", &veth])?;
        sh(&["ip", "link", "set", &veth, "up"])?;
        sh(&["ip", "netns", "exec", &name, "ip", "addr", "add", &format!("{inside}/30"), "dev", &peer])?;
        sh(&["ip", "netns", "exec", &name, "ip", "link", "set", &peer, "up"])?;
        sh(&["ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Whether a TCP connection from inside reaches `port` on the test's side within two seconds.
    fn reaches(&self, port: u16) -> bool {
        let probe = format!("exec 3<>/dev/tcp/{}/{port}", self.outside);
        Command::new("ip")
            .args(["netns", "exec", &self.name, "timeout", "2", "bash", "-c", &probe])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The namespace's nftables ruleset.
    fn ruleset(&self) -> String {
        let out = Command::new("ip").args(["netns", "exec", &self.name, "nft", "list", "ruleset"]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A TCP server on the test's side that accepts whoever reaches it: the "elsewhere" an isolated
/// host must not reach.
fn elsewhere(addr: &str) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((addr, 0))?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    Ok(port)
}

fn enroll(api: &str, token: &str, state: &Path, host: &str) -> anyhow::Result<String> {
    let st = state.display().to_string();
    let args = ["agent", "enroll", "--server", api, "--token", token, "--state-dir", &st, "--host", host];
    let (status, out) = tests::run(&bin(), &args)?;
    anyhow::ensure!(status == 0, "enroll {host}: {out}");
    let v: Value = serde_json::from_str(out.trim())?;
    Ok(v["agent_id"].as_str().unwrap_or_default().to_owned())
}

/// `cordon agent respond` for `secs`, inside `netns` when given.
fn respond(nats: &str, state: &Path, secs: u64, netns: Option<&Netns>) -> anyhow::Result<Child> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name]).arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    cmd.args(["agent", "--nats-url", nats, "--state-dir"]).arg(state);
    cmd.args(["respond", "--for-secs", &secs.to_string(), "--poll-ms", "300"]);
    Ok(cmd.env("CORDON_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?)
}

fn summary(child: Child) -> anyhow::Result<Value> {
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "the agent failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(text.trim().lines().last().unwrap_or_default())?)
}

#[test]
fn isolation_and_termination_on_two_hosts_each_approved_by_two_responders() -> anyhow::Result<()> {
    let net = Netns::new()?;
    let bus = cordon::nats::NatsOptions { host: Some(net.outside.clone()), ..Default::default() };
    let env = Env::start_with_bus(&ServerOptions::default(), &bus)?;
    let (api, admin) = (env.server.api.clone(), env.token.clone());
    let dir = tempfile::tempdir()?;
    let super::requests::Approvers { analyst, r1, r2 } =
        super::requests::register_approvers(&env, dir.path())?;
    let (_, enroll_token) = tests::enroll_token(&bin(), &env.data, "default", 2)?;
    let (db_state, web_state) = (dir.path().join("db-1"), dir.path().join("web-1"));
    let db = enroll(&api, &enroll_token, &db_state, "db-1")?;
    let web = enroll(&api, &enroll_token, &web_state, "web-1")?;

    let nats_port = env.nats.port();
    let other = elsewhere(&net.outside)?;
    assert!(net.reaches(other) && net.reaches(nats_port), "before isolation db-1 reaches both");
    let (mut proc, exe, sha) = victim(dir.path())?;

    // The analyst asks; alice and bob approve each request on their own machines.
    let approve = |rule: Value, target: &str, approvers: &[(&str, &str)]| -> anyhow::Result<String> {
        let body = json!({"rule": rule, "targets": [target], "reason": "incident 12: contain db-1, stop the implant on web-1"});
        let (status, mut req) = post(&format!("{api}/api/v1/response/requests"), Some(&analyst), &body)?;
        anyhow::ensure!(status == 201, "{req}");
        let id = req["id"].as_str().unwrap_or_default().to_owned();
        for (key, token) in approvers {
            let (status, next) = hand_in(&api, token, &id, &sign(dir.path(), &req, key)?)?;
            anyhow::ensure!(status == 200, "{next}");
            req = next;
        }
        anyhow::ensure!(req["state"] == "approved", "{req}");
        Ok(id)
    };
    let both = [("alice.key", r1.as_str()), ("bob.key", r2.as_str())];
    let isolate =
        json!({"name": "contain db-1", "kind": "handling", "actions": [{"action": "Other_NetOff"}]});
    let iso_id = approve(isolate, &db, &both)?;
    let kill = json!({"name": "stop the implant", "kind": "handling", "actions": [
        {"action": "Proc_Terminate", "process": {"executable": exe, "sha256": sha}}]});
    let kill_id = approve(kill, &web, &both)?;

    // Both agents carry out their command at the same time.
    let nats_url = format!("nats://{}:{nats_port}", net.outside);
    let db_agent = respond(&nats_url, &db_state, 6, Some(&net))?;
    let web_agent = respond(&nats_url, &web_state, 6, None)?;
    let (db_done, web_done) = (summary(db_agent)?, summary(web_agent)?);
    for (done, id) in [(&db_done, &iso_id), (&web_done, &kill_id)] {
        let handled = done["handled"].as_array().cloned().unwrap_or_default();
        assert_eq!(handled.len(), 1, "{done}");
        assert_eq!(
            (handled[0]["command"].as_str(), handled[0]["outcome"].as_str()),
            (Some(id.as_str()), Some("executed")),
            "{done}"
        );
        assert_eq!(handled[0]["stored"], true, "the result reached the server: {done}");
    }
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(proc.wait()?.signal(), Some(9), "the implant on web-1 was killed");

    // db-1 is cut off from everything but its management channel.
    assert!(!net.reaches(other), "an isolated host reaches a server elsewhere:\n{}", net.ruleset());
    assert!(net.reaches(nats_port), "an isolated host lost its management channel");
    assert!(net.ruleset().contains("table inet cordon_isolate"), "{}", net.ruleset());

    // The results, verified on each host, are stored and in the audit chain.
    let target = |id: &str| -> anyhow::Result<Value> {
        let (_, shown) = get(&format!("{api}/api/v1/response/requests/{id}"), Some(&analyst))?;
        Ok(shown["targets"][0].clone())
    };
    let iso = target(&iso_id)?;
    assert_eq!(
        (iso["agent"].as_str(), iso["state"].as_str()),
        (Some(db.as_str()), Some("executed")),
        "{iso}"
    );
    let detail = iso["result"]["actions"][0]["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        detail.starts_with("isolated") && detail.contains(&format!("management {}:{nats_port}", net.outside)),
        "{iso}"
    );
    let killed = target(&kill_id)?;
    assert_eq!(killed["result"]["actions"][0]["detail"], "1 process(es) gone", "{killed}");

    // Released (not destructive: one approval), db-1 reaches the server again.
    let release = json!({"name": "release db-1", "kind": "handling", "actions": [{"action": "Other_NetOn"}]});
    let rel_id = approve(release, &db, &both[..1])?;
    let released = summary(respond(&nats_url, &db_state, 3, Some(&net))?)?;
    assert_eq!(released["handled"][0]["outcome"], "executed", "{released}");
    let rel = target(&rel_id)?;
    assert!(
        rel["result"]["actions"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("as they were before isolation"),
        "{rel}"
    );
    assert!(net.reaches(other), "released, db-1 reaches the server again");
    assert!(!net.ruleset().contains("cordon_isolate"), "{}", net.ruleset());

    let (_, audit) = get(&format!("{api}/api/v1/audit?limit=1000"), Some(&admin))?;
    let chain = audit["entries"].as_array().cloned().unwrap_or_default();
    for (id, agent) in [(&iso_id, &db), (&kill_id, &web), (&rel_id, &db)] {
        let result =
            chain.iter().find(|e| e["action"] == "response.result" && e["target"] == format!("request:{id}"));
        let result = result.ok_or_else(|| anyhow::anyhow!("no result for {id} in the audit chain"))?;
        assert_eq!(result["actor"], format!("agent:{agent}"));
        assert_eq!(result["detail"]["outcome"], "executed");
    }
    let approvals = chain
        .iter()
        .filter(|e| e["action"] == "response.approve" && e["detail"]["outcome"] == "done")
        .count();
    assert_eq!(approvals, 5, "two for each destructive request, one for the release");
    eprintln!(
        "response e2e: db-1 isolated in its namespace (NATS {} kept, port {other} dropped) and released; web-1's implant killed; 5 approvals, 3 signed results audited",
        net.outside
    );
    Ok(())
}
