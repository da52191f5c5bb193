//! Enrollment (RELIABILITY.md T15, the enrollment half): no, wrong, expired, used-up and revoked
//! tokens, a closed switch and a forged proof enroll nobody; a good token enrolls exactly its uses;
//! the agent binary enrolls with its own key and keeps it private; failed attempts are held off per
//! address; every attempt is in the audit chain.

use super::{Env, bin};
use serde_json::{Value, json};
use tests::{ServerOptions, get, post, run, token_as};

fn enroll_token(env: &Env, args: &[&str]) -> anyhow::Result<(String, String)> {
    let dd = env.data.display().to_string();
    let mut all = vec!["enroll-token", "create", "--data-dir", &dd];
    all.extend_from_slice(args);
    let (code, out) = run(&bin(), &all)?;
    anyhow::ensure!(code == 0, "enroll-token create failed");
    let v: Value = serde_json::from_str(out.trim())?;
    Ok((v["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned()))
}

fn request(token: &str, key: &schemas::signed::AgentKey) -> Value {
    json!({"token": token, "public_key": key.public(), "proof": key.enroll_proof(token), "host": "pc-1"})
}

#[test]
fn only_good_tokens_enroll_and_only_as_many_agents_as_their_uses() -> anyhow::Result<()> {
    let opts =
        ServerOptions { args: vec!["--auth-failure-limit".into(), "1000".into()], ..Default::default() };
    let env = Env::start(&opts)?;
    let api = env.server.api.clone();
    let url = format!("{api}/api/v1/enroll");
    let dd = env.data.display().to_string();
    let key = || schemas::signed::AgentKey::generate().unwrap();

    let (_, two) = enroll_token(&env, &["--uses", "2", "--group", "workstations"])?;
    let (_, expiring) = enroll_token(&env, &["--ttl", "1s"])?;
    let (revoked_id, revoked) = enroll_token(&env, &[])?;
    assert_eq!(run(&bin(), &["enroll-token", "revoke", &revoked_id, "--data-dir", &dd])?.0, 0);
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let mut refused = Vec::new();
    // No token, a wrong one, an expired one, a revoked one, and a proof made by another key.
    let k = key();
    refused.push(post(&url, None, &json!({"public_key": k.public(), "proof": "00"}))?);
    refused.push(post(&url, None, &request("cet_wrong", &k))?);
    refused.push(post(&url, None, &request(&expiring, &k))?);
    refused.push(post(&url, None, &request(&revoked, &k))?);
    let mut forged = request(&two, &k);
    forged["public_key"] = json!(key().public());
    refused.push(post(&url, None, &forged)?);
    let statuses: Vec<u16> = refused.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [400, 401, 401, 401, 400], "{refused:?}");
    assert_eq!(refused[2].1["error"]["message"], "the enrollment token expired");

    // Two uses: two agents; the same key again is the same agent; a third key is refused.
    let (a, b, c) = (key(), key(), key());
    let (s1, first) = post(&url, None, &request(&two, &a))?;
    let (s2, second) = post(&url, None, &request(&two, &b))?;
    let (s1b, again) = post(&url, None, &request(&two, &a))?;
    let (s3, third) = post(&url, None, &request(&two, &c))?;
    assert_eq!((s1, s2, s1b, s3), (200, 200, 200, 401), "{third}");
    assert_eq!(third["error"]["message"], "the enrollment token is used up");
    assert_eq!(first["agent_id"], schemas::signed::agent_id(&a.public()));
    assert_eq!(again["agent_id"], first["agent_id"]);
    assert_ne!(first["agent_id"], second["agent_id"]);
    assert_eq!((first["tenant"].as_str(), first["group"].as_str()), (Some("default"), Some("workstations")));
    assert_eq!(first["server_key"].as_str(), tests::server_key(&env.nats.url).as_deref());

    // Closed: nobody enrolls, whatever the token.
    let (_, fresh) = enroll_token(&env, &["--uses", "5"])?;
    assert_eq!(run(&bin(), &["enrollment", "close", "--data-dir", &dd])?.0, 0);
    let (s, closed) = post(&url, None, &request(&fresh, &key()))?;
    assert_eq!(s, 403, "{closed}");
    assert_eq!(run(&bin(), &["enrollment", "open", "--data-dir", &dd])?.0, 0);

    // The agent binary: its own key, kept private, and the answer written beside it.
    let state = env.dir.path().join("agent-state");
    let (code, out) = run(
        &bin(),
        &[
            "agent",
            "enroll",
            "--server",
            &api,
            "--token",
            &fresh,
            "--state-dir",
            state.to_str().unwrap(),
            "--host",
            "lab-7",
        ],
    )?;
    assert_eq!(code, 0, "{out}");
    let answer: Value = serde_json::from_str(out.trim())?;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("agent.key"))?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let seed: [u8; 32] = std::fs::read(state.join("agent.key"))?.try_into().unwrap();
    let agent_key = schemas::signed::AgentKey::from_seed(seed)?;
    assert_eq!(answer["agent_id"], schemas::signed::agent_id(&agent_key.public()));
    let kept: Value = serde_json::from_slice(&std::fs::read(state.join("enrollment.json"))?)?;
    assert_eq!(kept["agent_id"], answer["agent_id"]);

    // Exactly the three enrolled; a revoked agent's key cannot enroll again.
    let (_, viewer) = token_as(&bin(), &env.data, None, "default", "viewer")?;
    let (_, list) = get(&format!("{api}/api/v1/agents/enrolled"), Some(&viewer))?;
    assert_eq!(list["agents"].as_array().unwrap().len(), 3, "{list}");
    let id = first["agent_id"].as_str().unwrap();
    assert_eq!(run(&bin(), &["agent", "revoke", id, "--data-dir", &dd])?.0, 0);
    let (s, taken) = post(&url, None, &request(&fresh, &a))?;
    assert_eq!(s, 409, "{taken}");

    // Every attempt is audited; the chain is whole.
    let (_, audit) = get(&format!("{api}/api/v1/audit?limit=1000"), Some(&env.token))?;
    let entries = audit["entries"].as_array().unwrap();
    let enrolled = entries.iter().filter(|e| e["action"] == "agent.enroll").count();
    assert_eq!(
        enrolled, 4,
        "the enrollments of this tenant: a, b, a again, the agent binary (refusals are audited without a tenant)"
    );
    assert!(entries.iter().any(|e| e["action"] == "agent.revoke"));
    assert_eq!(run(&bin(), &["audit", "verify", "--data-dir", &dd])?.0, 0);
    Ok(())
}

#[test]
fn failed_enrollments_are_held_off_per_address() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let url = format!("{}/api/v1/enroll", env.server.api);
    let k = schemas::signed::AgentKey::generate()?;
    let statuses: Vec<u16> = (0..25)
        .map(|i| post(&url, None, &request(&format!("cet_guess{i}"), &k)).map(|r| r.0))
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 20);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5);
    Ok(())
}

/// Twenty agents race for a token's three uses from two pools: exactly three enroll.
async fn enrollment_race(url: &str) -> anyhow::Result<()> {
    let (a, b) = (store::catalog::Catalog::connect(url).await?, store::catalog::Catalog::connect(url).await?);
    let now = schemas::time::now_micros();
    let (_, secret) = a.create_enroll_token("t", None, 3, now + 60_000_000, now).await?;
    let mut racers = Vec::new();
    for i in 0..20 {
        let (cat, secret) = (if i % 2 == 0 { a.clone() } else { b.clone() }, secret.clone());
        racers.push(tokio::spawn(async move {
            let k = schemas::signed::AgentKey::generate()?;
            let id = schemas::signed::agent_id(&k.public());
            anyhow::Ok(cat.enroll(&secret, &k.public(), &id, "h", now).await?.is_ok())
        }));
    }
    let mut enrolled = 0;
    for r in racers {
        enrolled += usize::from(r.await??);
    }
    assert_eq!(enrolled, 3);
    assert_eq!(a.enrolled_agents("t").await?.len(), 3);
    Ok(())
}

#[test]
fn a_token_enrolls_no_more_than_its_uses_under_a_race_on_sqlite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("meta.db").display());
    tokio::runtime::Runtime::new()?.block_on(enrollment_race(&url))
}

#[test]
fn a_token_enrolls_no_more_than_its_uses_under_a_race_on_postgres() -> anyhow::Result<()> {
    super::backends::on_postgres(|url| async move { enrollment_race(&url).await })
}
