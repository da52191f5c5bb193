//! Both metadata backends pass the same tests: the catalog contract directly, and the whole pipeline
//! with PostgreSQL as the metadata database.

use super::{Env, bin};
use std::time::Duration;
use store::catalog::{BatchEntry, Catalog, CatalogError, CommitRecord, FileEntry, HostDelta};
use tests::{Server, ServerOptions, agent, counts, eventually};

fn postgres_base() -> String {
    std::env::var("CORDON_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh PostgreSQL database for one test, dropped afterwards.
pub(crate) struct PgDb {
    admin: String,
    name: String,
    pub(crate) url: String,
}

impl PgDb {
    pub(crate) async fn create() -> anyhow::Result<Self> {
        use sqlx::Connection;
        let admin = postgres_base();
        let mut conn = sqlx::PgConnection::connect(&admin).await.map_err(|e| {
            anyhow::anyhow!("PostgreSQL is not reachable at {admin} ({e}); start it (pg_ctlcluster 15 main start) or set CORDON_TEST_POSTGRES")
        })?;
        let name = format!("cordon_test_{}_{}", std::process::id(), uuid_like());
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => anyhow::bail!("bad CORDON_TEST_POSTGRES"),
        };
        Ok(Self { admin, name, url })
    }

    pub(crate) async fn drop_db(self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}

fn uuid_like() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

async fn catalog_contract(url: &str) -> anyhow::Result<()> {
    let cat = Catalog::connect(url).await?;
    // Migrations are idempotent.
    let cat2 = Catalog::connect(url).await?;
    assert_eq!(cat.next_file_id().await?, 1);
    let file = |id: i64| FileEntry {
        id,
        tenant: "t".into(),
        date: "2026-11-23".into(),
        path: format!("events/f{id}.parquet"),
        rows: 10,
        bytes: 100,
        sha256: "ab".into(),
        min_time: 5,
        max_time: 50,
        min_seq: 1,
        max_seq: 3,
    };
    let host = |first, last, events| HostDelta {
        tenant: "t".into(),
        host: "h1".into(),
        agent_id: "a".into(),
        first_seen: first,
        last_seen: last,
        events,
    };
    let c1 = CommitRecord {
        consumer: "c".into(),
        checkpoint: 3,
        files: vec![file(1)],
        batches: vec![BatchEntry { key: "t/a/a:1:1".into(), stream_seq: 3, events: 10, rejected: 1 }],
        hosts: vec![host(5, 50, 10)],
    };
    assert_eq!(cat.last_commit_seq().await?, 0);
    assert_eq!(cat.commit(&c1, 1).await?, Some(1), "commits are numbered from 1");
    assert_eq!(cat2.committed_keys(&["t/a/a:1:1".into(), "t/a/a:1:2".into()]).await?.len(), 1);
    assert_eq!(cat.checkpoint("c").await?, Some(3));
    // A batch key can be committed once; the failed transaction leaves nothing behind.
    let dup = CommitRecord { files: vec![file(2)], ..c1.clone() };
    assert!(cat.commit(&dup, 2).await.is_err());
    assert_eq!(cat.next_file_id().await?, 2);
    assert_eq!(cat.last_commit_seq().await?, 1, "a commit that failed gives its number back");
    assert_eq!(cat.totals(Some("t")).await?, (10, 1));
    // Host summaries fold: min first, max last, summed counts; checkpoints never go back.
    let c2 = CommitRecord {
        consumer: "c".into(),
        checkpoint: 2,
        files: vec![file(2)],
        batches: vec![BatchEntry { key: "t/a/a:1:2".into(), stream_seq: 2, events: 10, rejected: 0 }],
        hosts: vec![host(1, 20, 10)],
    };
    assert_eq!(cat.commit(&c2, 3).await?, Some(2));
    // A commit that adds no file takes no number.
    let empty = CommitRecord {
        files: vec![],
        batches: vec![BatchEntry { key: "t/a/a:1:9".into(), stream_seq: 4, events: 0, rejected: 1 }],
        hosts: vec![],
        ..c2.clone()
    };
    assert_eq!(cat.commit(&empty, 3).await?, None);
    assert_eq!(cat.files_committed_after(0, 2).await?, vec![(1, file(1)), (2, file(2))]);
    assert_eq!(cat.files_committed_after(1, 9).await?, vec![(2, file(2))]);
    // Maintenance leaves alone what a reader of the `analysed` table has not read.
    assert!(cat.unanalysed_file_ids().await?.is_empty(), "nothing reads yet");
    cat.set_analysed_through("c", 1, 3, None).await?;
    assert_eq!(cat.unanalysed_file_ids().await?, [2].into());
    let hosts = cat.hosts("t", 10, 0).await?;
    assert_eq!((hosts[0].first_seen, hosts[0].last_seen, hosts[0].events), (1, 50, 20));
    assert_eq!(cat.checkpoint("c").await?, Some(3));
    assert_eq!(cat.files_after(1).await?, vec![file(2)]);
    assert_eq!(cat.files_by_id(&[2, 1]).await?.len(), 2);
    // Maintenance: one transaction retires files and adds their replacement.
    cat.swap_files(&[file(1), file(2)], &[file(3)], "compaction", 4, &[]).await?;
    assert_eq!(cat.files_after(0).await?, vec![file(3)]);
    // A merge's output carries no commit number: its rows were read as they were committed.
    assert!(cat.files_committed_after(0, 9).await?.is_empty());
    assert_eq!(cat.last_commit_seq().await?, 2);
    assert_eq!(cat.retired_unpurged().await?, vec![1, 2]);
    // Retiring a file that is no longer live is a conflict, and changes nothing.
    let stale = cat.swap_files(&[file(1)], &[file(4)], "retention", 5, &[]).await;
    assert!(matches!(stale, Err(CatalogError::Conflict(_))), "{stale:?}");
    assert_eq!(cat.files_after(0).await?, vec![file(3)]);
    cat.mark_purged(&[1, 2]).await?;
    assert!(cat.retired_unpurged().await?.is_empty());
    // Retention takes expired rows off the hosts' counts; retired ids are never handed out again.
    cat.swap_files(&[file(3)], &[], "retention", 6, &[("t".into(), "h1".into(), 15)]).await?;
    assert_eq!(cat.hosts("t", 10, 0).await?[0].events, 5);
    assert!(cat.files_after(0).await?.is_empty());
    assert_eq!(cat.next_file_id().await?, 4);
    assert_eq!(cat.max_checkpoint().await?, 3);
    // Leases: one holder at a time, renewed by its holder, taken over once lapsed or given up.
    assert!(cat.hold_lease("maintenance", "p1", 100, 50).await?);
    assert!(!cat2.hold_lease("maintenance", "p2", 120, 50).await?, "p1 holds it until 150");
    assert!(cat.hold_lease("maintenance", "p1", 140, 50).await?, "p1 renews it until 190");
    assert!(!cat2.hold_lease("maintenance", "p2", 180, 50).await?);
    assert!(cat2.hold_lease("maintenance", "p2", 191, 50).await?, "lapsed: p2 takes it over");
    assert!(!cat.hold_lease("maintenance", "p1", 200, 50).await?);
    cat.release_lease("maintenance", "p1").await?;
    assert!(!cat.hold_lease("maintenance", "p1", 201, 50).await?, "only the holder gives it up");
    cat2.release_lease("maintenance", "p2").await?;
    assert!(cat.hold_lease("maintenance", "p1", 202, 50).await?, "given up: taken at once");
    assert!(cat.hold_lease("analysis", "p2", 202, 50).await?, "leases are per name");
    // Fenced writes land only while their process holds the lease: a holder that paused past it
    // and resumes after a takeover writes nothing over its successor's work.
    let fence = |holder| Some(store::catalog::Fence { lease: "analysis", holder });
    assert!(cat.set_analysed_through("fenced", 5, 203, fence("p2")).await?, "p2 holds the analysis lease");
    assert!(!cat2.set_analysed_through("fenced", 9, 204, fence("p1")).await?, "p1 does not");
    assert!(!cat.set_analysed_through("fenced", 9, 204, fence("p3")).await?, "nor does a stranger");
    assert_eq!(cat.analysed_through("fenced").await?, Some(5), "refused marks did not move it");
    // Tokens: stored as hashes with their role, verified, revoked.
    let (id, secret) = cat.create_token("n", "t", schemas::access::Role::RuleAuthor, 1).await?;
    let found = cat.verify_token(&secret).await?.expect("the token verifies");
    assert_eq!((found.tenant.as_str(), found.role), ("t", schemas::access::Role::RuleAuthor));
    assert!(cat.verify_token("cdn_nope").await?.is_none());
    assert!(cat.revoke_token(&id, 2).await?);
    assert!(cat.verify_token(&secret).await?.is_none());
    // Heartbeats and security events.
    let hb = schemas::wire::Heartbeat { boot: 7, events_dropped: 3, host: "h1".into(), ..Default::default() };
    cat.heartbeat("t", "a", &hb, 9).await?;
    cat.heartbeat("t", "a", &hb, 10).await?;
    let a = &cat.agents("t").await?[0];
    assert_eq!((a.agent_id.as_str(), a.host.as_str(), a.boot, a.events_dropped), ("a", "h1", 7, 3));
    // A heartbeat without new events leaves the last activity where it was; new events move it.
    assert_eq!((a.last_heartbeat, a.last_activity), (10, 9));
    cat.heartbeat("t", "a", &schemas::wire::Heartbeat { events_in: 5, ..hb.clone() }, 11).await?;
    let a = &cat.agents("t").await?[0];
    assert_eq!((a.last_heartbeat, a.last_activity, a.events_in), (11, 11, 5));
    // The watchdog's bookkeeping: the last heartbeat as sent, and each occurrence raised once.
    assert_eq!(a.state.as_ref().map(|s| (s.boot, s.events_in)), Some((7, 5)));
    assert_eq!(cat.all_agents().await?.len(), 1);
    assert!(cat.raise_once("t", "a", "silent", "", 11, 12).await?);
    assert!(!cat.raise_once("t", "a", "silent", "", 11, 13).await?, "the same silence is raised once");
    assert!(cat.raise_once("t", "a", "silent", "", 20, 21).await?, "a new silence is news");
    assert!(cat.raise_once("t", "a", "source", "process", 20, 21).await?, "kinds and subjects are apart");
    cat.security_event("t", "a", "identity_mismatch", "d", 1).await?;
    assert_eq!(cat.security_events("t").await?.len(), 1);
    // Policies: versions count up per tenant, a change against a stale version is refused, the
    // history keeps who and why, and the current version of each tenant is the newest.
    assert!(cat.current_policies().await?.is_empty());
    assert_eq!(cat.put_policy("t", 0, "{\"default\":\"record\"}", "alice", "initial", 1).await?, 1);
    assert_eq!(cat.put_policy("t", 1, "{\"default\":\"alert\"}", "bob", "stricter", 2).await?, 2);
    assert!(matches!(cat2.put_policy("t", 1, "{}", "eve", "stale", 3).await, Err(CatalogError::Conflict(_))));
    assert_eq!(cat.put_policy("u", 0, "{\"default\":\"off\"}", "carol", "other tenant", 4).await?, 1);
    let hist = cat.policy_history("t").await?;
    assert_eq!(
        hist.iter().map(|p| (p.version, p.author.as_str(), p.reason.as_str())).collect::<Vec<_>>(),
        vec![(2, "bob", "stricter"), (1, "alice", "initial")]
    );
    let mut current: Vec<(String, i64)> =
        cat.current_policies().await?.into_iter().map(|p| (p.tenant, p.version)).collect();
    current.sort();
    assert_eq!(current, vec![("t".to_owned(), 2), ("u".to_owned(), 1)]);
    // Alerts: deduplicated by rule, host and object within the window, idempotent per evidence event,
    // filtered, handled with comments; a handled alert is not reopened.
    let alert = |ev: &str, t: &str| schemas::alert::Alert {
        id: String::new(),
        tenant: "t".into(),
        level: 5,
        first_seen: t.into(),
        last_seen: t.into(),
        count: 1,
        object: "C:\\x\\update.exe".into(),
        description: "d".into(),
        source: "s".into(),
        rule: schemas::alert::RuleRef { id: "r1".into(), title: "R".into(), author: None },
        status: schemas::alert::Status::Blocked,
        handling: schemas::alert::Handling::Unhandled,
        endpoint: schemas::alert::Endpoint { name: "h1".into(), ..Default::default() },
        file: Default::default(),
        techniques: vec![schemas::alert::TechniqueTag { id: "T1486".into(), name: "x".into() }],
        tactics: vec![],
        evidence: vec![ev.into()],
        why: serde_json::Value::Null,
        log: None,
    };
    let hour = 3_600_000_000;
    let a = cat.record_alerts(&[alert("e1", "2026-01-01T00:00:00Z")], hour, 1).await?;
    let b = cat
        .record_alerts(&[alert("e1", "2026-01-01T00:00:00Z"), alert("e2", "2026-01-01T00:30:00Z")], hour, 2)
        .await?;
    assert_eq!((a[0].as_str(), b[0].as_str(), b[1].as_str()), (a[0].as_str(), a[0].as_str(), a[0].as_str()));
    let all = cat.alerts("t", &store::catalog::AlertFilter { limit: 10, ..Default::default() }).await?;
    assert_eq!((all.len(), all[0].count, all[0].evidence.len()), (1, 2, 2), "e1 twice counts once");
    assert_eq!(all[0].last_seen, "2026-01-01T00:30:00Z");
    assert_eq!(all[0].description, "d", "a raise with other evidence keeps the first explanation");
    // A later view of the same evidence (a growing count) replaces the explanation.
    let mut grown = alert("e1", "2026-01-01T00:40:00Z");
    grown.evidence = vec!["e1".into(), "e2".into(), "e9".into()];
    grown.description = "observed 3".into();
    grown.why = serde_json::json!({"observed": 3});
    cat.record_alerts(&[grown], hour, 2).await?;
    let all = cat.alerts("t", &store::catalog::AlertFilter { limit: 10, ..Default::default() }).await?;
    assert_eq!((all[0].description.as_str(), all[0].why["observed"].as_u64()), ("observed 3", Some(3)));
    assert_eq!(all[0].evidence.len(), 3);
    let far = cat.record_alerts(&[alert("e3", "2026-01-01T05:00:00Z")], hour, 3).await?;
    assert_ne!(far[0], a[0], "outside the window: a new alert");
    let f =
        |t: &str| store::catalog::AlertFilter { technique: Some(t.into()), limit: 10, ..Default::default() };
    assert_eq!(cat.alerts("t", &f("T1486")).await?.len(), 2);
    assert_eq!(cat.alerts("t", &f("T148")).await?.len(), 0, "technique ids match whole");
    assert_eq!(cat.alerts("u", &f("T1486")).await?.len(), 0, "tenants are separate");
    assert!(
        cat.handle_alert("t", &a[0], schemas::alert::Handling::FalsePositive, "test box", "alice", 4).await?
    );
    assert!(
        !cat.handle_alert("u", &a[0], schemas::alert::Handling::Handled, "", "eve", 5).await?,
        "another tenant's alert"
    );
    let (one, comments) = cat.alert("t", &a[0]).await?.unwrap();
    assert_eq!(
        (one.handling, comments[0].author.as_str()),
        (schemas::alert::Handling::FalsePositive, "alice")
    );
    let reopened = cat.record_alerts(&[alert("e4", "2026-01-01T00:40:00Z")], hour, 6).await?;
    assert_ne!(reopened[0], a[0], "a handled alert is not reopened");

    // Incidents: ingest's body and the analysts' status/owner never overwrite each other, and a
    // merge marks the absorbed one.
    use store::catalog::{IncidentChange, IncidentFilter, IncidentWrite};
    let inc = |id: &str, hosts: &[&str], last: i64, merged: Option<&str>| IncidentWrite {
        id: id.to_owned(),
        tenant: "t".to_owned(),
        severity: 4,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        techniques: vec!["T1486".to_owned(), "T1059.001".to_owned()],
        first: 1,
        last,
        merged_into: merged.map(str::to_owned),
        body: format!("{{\"id\": \"{id}\", \"hosts\": {}}}", hosts.len()),
    };
    cat.upsert_incidents(&[inc("i1", &["pc", "web"], 10, None), inc("i2", &["db"], 20, None)], 7, None)
        .await?;
    let change = |status: &str| IncidentChange {
        status: Some(status.to_owned()),
        owner: Some("bob".to_owned()),
        comment: "looking".to_owned(),
        author: "alice".to_owned(),
    };
    assert!(cat.update_incident("t", "i1", &change("investigating"), 8).await?);
    assert!(!cat.update_incident("u", "i1", &change("resolved"), 8).await?, "another tenant's incident");
    cat.upsert_incidents(&[inc("i1", &["pc", "web", "dc"], 30, None)], 9, None).await?;
    let (one, comments) = cat.incident("t", "i1").await?.unwrap();
    assert_eq!(
        (one.status.as_str(), one.owner.as_str()),
        ("investigating", "bob"),
        "ingest kept the analyst's fields"
    );
    assert_eq!(one.body["hosts"], 3, "and wrote its body");
    let p1 = store::catalog::Fence { lease: "analysis", holder: "p1" };
    let stale = cat.upsert_incidents(&[inc("i1", &["pc"], 40, None)], 10, Some(p1)).await?;
    assert!(!stale, "p1 no longer holds the analysis lease");
    let (one, _) = cat.incident("t", "i1").await?.unwrap();
    assert_eq!(
        (one.body["hosts"].as_i64(), one.updated.as_str()),
        (Some(3), schemas::time::format_micros(9).as_str()),
        "a refused write changes nothing"
    );
    assert_eq!((comments.len(), comments[0].author.as_str()), (1, "alice"));
    let f = |host: Option<&str>, technique: Option<&str>| IncidentFilter {
        host: host.map(str::to_owned),
        technique: technique.map(str::to_owned),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(cat.incidents("t", &f(Some("web"), None)).await?.len(), 1);
    assert_eq!(
        cat.incidents("t", &f(None, Some("T1059"))).await?.len(),
        2,
        "a technique finds its sub-techniques"
    );
    assert_eq!(cat.incidents("t", &f(Some("we"), None)).await?.len(), 0, "hosts match whole names");
    cat.upsert_incidents(&[inc("i2", &["db"], 20, Some("i1"))], 10, None).await?;
    let listed = cat.incidents("t", &f(None, None)).await?;
    assert_eq!(listed.len(), 1, "merged incidents are left out of the default list");
    let merged = IncidentFilter { status: Some("merged".to_owned()), limit: 10, ..Default::default() };
    let m = cat.incidents("t", &merged).await?;
    assert_eq!((m.len(), m[0].merged_into.as_deref()), (1, Some("i1")));
    assert_eq!(cat.recent_incident_bodies(15).await?.len(), 1, "merged bodies are not carried on");
    // Reports: stored once, listed newest first without bodies, the previous of a schedule found.
    let rep = |id: &str, name: &str, to: i64, created: i64| store::catalog::ReportRow {
        id: id.into(),
        tenant: "t".into(),
        name: name.into(),
        period_from: to - 100,
        period_to: to,
        anomalies: 3,
        created_at: created,
        body: format!("{{\"id\":\"{id}\"}}"),
    };
    cat.insert_report(&rep("r1", "daily", 1000, 1)).await?;
    cat.insert_report(&rep("r2", "daily", 2000, 2)).await?;
    cat.insert_report(&rep("r3", "on-demand", 2000, 3)).await?;
    assert!(cat.insert_report(&rep("r3", "x", 1, 4)).await.is_err(), "ids are unique");
    let list = cat.reports("t", 10).await?;
    assert_eq!(list.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["r3", "r2", "r1"]);
    assert!(list[0].body.is_empty());
    assert_eq!(cat.report("t", "r2").await?.unwrap().body, "{\"id\":\"r2\"}");
    assert!(cat.report("other", "r2").await?.is_none(), "tenants are apart");
    assert_eq!(cat.previous_report("t", "daily", 2000).await?.unwrap().id, "r2");
    assert_eq!(cat.previous_report("t", "daily", 1999).await?.unwrap().id, "r1");
    assert!(cat.previous_report("t", "weekly", 5000).await?.is_none());

    // Concurrent writers (ingest's alerts through one pool, analysts' handling through another): every
    // write lands, and the raises of one dedup key add up in one alert, none lost or split.
    let writers = 8;
    let per_writer = 5;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let c = if w % 2 == 0 { cat.clone() } else { cat2.clone() };
        let mk = alert;
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let mut a = mk(&format!("c{w}-{i}"), "2026-02-01T00:00:00Z");
                a.tenant = "concurrent".into();
                c.record_alerts(&[a], hour, 10).await?;
                c.handle_alert("t", "no-such-alert", schemas::alert::Handling::Handled, "", "bob", 11)
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let all =
        cat.alerts("concurrent", &store::catalog::AlertFilter { limit: 10, ..Default::default() }).await?;
    assert_eq!(
        all.iter().map(|a| (a.count, a.evidence.len())).collect::<Vec<_>>(),
        [((writers * per_writer) as u64, writers * per_writer)]
    );
    response_contract(&cat, &cat2).await?;
    cat.close().await;
    cat2.close().await;
    Ok(())
}

/// Response requests: counters per agent rise by one per request, approvals from two pools racing
/// for the last one needed both land and approve the request once, and a closed request takes no more.
async fn response_contract(
    cat: &store::catalog::Catalog,
    cat2: &store::catalog::Catalog,
) -> anyhow::Result<()> {
    use store::catalog::{ApprovalRow, NewRequest, RequestRefusal};
    let new = |id: &str, targets: &[&str]| NewRequest {
        id: id.into(),
        tenant: "t".into(),
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        destructive: true,
        needed: 2,
        requested_by: "analyst".into(),
        expires_at: 1_000,
    };
    let body = |c: &std::collections::BTreeMap<String, u64>| serde_json::to_string(c).unwrap();
    let r1 = cat.create_request(&new("r1", &["a", "b"]), body, 10).await?;
    let r2 = cat2.create_request(&new("r2", &["b"]), body, 11).await?;
    assert_eq!((r1.body.as_str(), r2.body.as_str()), (r#"{"a":1,"b":1}"#, r#"{"b":2}"#));
    let approval =
        |key: &str| ApprovalRow { public_key: key.into(), sig: "s".into(), by_token: key.into(), at: 20 };
    let (k1, k2) = (approval("k1"), approval("k2"));
    let (x, y) = tokio::join!(cat.approve_request("t", "r1", &k1), cat2.approve_request("t", "r1", &k2));
    let (x, y) = (x?.map_err(anyhow::Error::msg)?, y?.map_err(anyhow::Error::msg)?);
    let states = [x.state.as_str(), y.state.as_str()];
    assert!(states.contains(&"approved"), "the last approval approves: {states:?}");
    let r1 = cat.request("t", "r1", 30).await?.unwrap();
    assert_eq!((r1.state.as_str(), r1.approvals.len()), ("approved", 2));
    assert_eq!(
        cat.approve_request("t", "r1", &approval("k3")).await?,
        Err(RequestRefusal::Closed("approved".into()))
    );
    assert_eq!(
        cat.approve_request("t", "r2", &approval("k1")).await?.map(|r| r.state),
        Ok("requested".into())
    );
    assert_eq!(cat.approve_request("t", "r2", &approval("k1")).await?, Err(RequestRefusal::AlreadyApproved));
    assert_eq!(cat.cancel_request("t", "r2", 31).await?.map(|r| r.state), Ok("cancelled".into()));
    assert_eq!(cat.request("t", "r2", 2_000).await?.unwrap().state, "cancelled", "cancelled stays cancelled");
    let r3 = cat.create_request(&new("r3", &["a"]), body, 40).await?;
    assert_eq!(r3.body, r#"{"a":2}"#);
    assert_eq!(cat.request("t", "r3", 2_000).await?.unwrap().state, "expired", "past its expiry");
    assert_eq!(
        cat.approve_request("t", "r3", &ApprovalRow { at: 2_000, ..approval("k1") }).await?,
        Err(RequestRefusal::Closed("expired".into()))
    );
    assert!(cat.request("other", "r1", 30).await?.is_none(), "requests are per tenant");
    Ok(())
}

#[test]
fn catalog_contract_on_sqlite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("meta.db").display());
    tokio::runtime::Runtime::new()?.block_on(catalog_contract(&url))
}

/// Runs `test` against a fresh PostgreSQL database (its URL), dropped afterwards whatever happened.
pub(crate) fn on_postgres<F, Fut>(test: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    tokio::runtime::Runtime::new()?.block_on(async {
        let db = PgDb::create().await?;
        let r = test(db.url.clone()).await;
        db.drop_db().await?;
        r
    })
}

#[test]
fn catalog_contract_on_postgres() -> anyhow::Result<()> {
    on_postgres(|url| async move { catalog_contract(&url).await })
}

/// Processes sharing a catalog (ADR 0009) start at once: the first migrates it, the others wait and
/// find it migrated, and every migration is recorded once.
#[test]
fn servers_starting_at_once_migrate_a_new_postgres_catalog_once() -> anyhow::Result<()> {
    on_postgres(|url| async move {
        let opened = futures::future::join_all((0..4).map(|_| Catalog::connect(&url))).await;
        for (i, c) in opened.iter().enumerate() {
            assert!(c.is_ok(), "connection {i} failed: {:?}", c.as_ref().err());
        }
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        let (rows, versions): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT version) FROM cordon_migrations")
                .fetch_one(&mut conn)
                .await?;
        assert_eq!(rows, versions, "a migration recorded twice");
        assert_eq!(opened[0].as_ref().map_err(|e| anyhow::anyhow!("{e}"))?.next_file_id().await?, 1);
        Ok(())
    })
}

#[test]
fn pipeline_with_postgres_metadata() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let db = rt.block_on(PgDb::create())?;
    let result = (|| {
        let opts = ServerOptions { metadata_url: Some(db.url.clone()), ..Default::default() };
        let env = Env::start(&opts)?;
        let spool = env.spool();
        let Env { server, nats: n, data, token: tok, dir: _dir } = env;
        let sent = agent(&bin(), &n.url, &spool, &["replay", "builtin:log4j-conti", "--batch-size", "7"])?;
        let acked = sent["events_acked"].as_u64().unwrap();
        let got = eventually(Duration::from_secs(30), || {
            Ok(Some(counts(&server.api, &tok)?).filter(|c| c.0 >= acked))
        })?;
        assert_eq!(got, (acked, acked));
        // A restart against the same PostgreSQL catalog keeps everything and duplicates nothing.
        server.kill();
        let server = Server::start(&bin(), &data, &n.url, &opts)?;
        assert_eq!(counts(&server.api, &tok)?, (acked, acked));
        anyhow::Ok(())
    })();
    rt.block_on(db.drop_db())?;
    result
}
