use super::*;

/// `n` process starts of `tenant` on hosts h0..h2, one in ten running mimikatz, a second apart.
fn records(tenant: &str, n: usize) -> Vec<Record> {
    let ch = schemas::decode::Channel {
        tenant,
        agent: "a",
        message_key: "boot-1:7",
        stream_seq: 7,
        received: 1_780_000_000_000_000,
    };
    (0..n)
        .map(|i| {
            let tool = if i % 10 == 0 { "mimikatz.exe sekurlsa::logonpasswords" } else { "notepad.exe" };
            let line = format!(
                r#"{{"@timestamp":"2026-05-28T20:{:02}:{:02}Z","host":{{"name":"h{}"}},"event":{{"category":"process","action":"start"}},"process":{{"pid":{i},"command_line":"{tool}"}}}}"#,
                i / 60 % 60,
                i % 60,
                i % 3,
            );
            schemas::decode::decode_line(line.as_bytes(), i + 1, &ch, &schemas::decode::Limits::default()).unwrap()
        })
        .collect()
}

fn query(q: &str) -> SearchQuery {
    SearchQuery { q: q.to_owned(), limit: 10, ..Default::default() }
}

/// (hits' times, total) of a search.
fn found(index: &FullTextIndex, tenant: &str, q: &str) -> (Vec<i64>, usize) {
    let (hits, total) = index.search(tenant, &query(q)).unwrap();
    (hits.iter().map(|h| h.time).collect(), total)
}

/// Expected (newest ten times, count) among `sent` of the events `keep` selects.
fn expected(sent: &[Record], keep: impl Fn(&Record) -> bool) -> (Vec<i64>, usize) {
    let mut times: Vec<i64> = sent.iter().filter(|r| keep(r)).map(Record::time).collect();
    times.sort_unstable_by(|a, b| b.cmp(a));
    let n = times.len();
    times.truncate(10);
    (times, n)
}

fn mimikatz(r: &Record) -> bool {
    r.get("process_command_line").and_then(Cell::as_str).is_some_and(|c| c.contains("mimikatz"))
}

/// A single-tenant index answers without the tenant's term (a lone term is counted from its
/// document frequency); once another tenant's documents are in it, or were and are deleted but not
/// merged away, each tenant still sees its own events only, with the same counts and newest hits.
#[test]
fn each_tenant_sees_its_own_events_whether_or_not_it_shares_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let index = FullTextIndex::open(dir.path()).unwrap();
    let a = records("a", 300);
    let b = records("b", 50);
    index.add_file(1, 0, &a).unwrap();
    index.commit().unwrap();
    let host1 = |r: &Record| r.host() == "h1";
    let check = |b_present: bool| {
        assert_eq!(found(&index, "a", "text:mimikatz"), expected(&a, mimikatz));
        assert_eq!(found(&index, "a", "host:h1"), expected(&a, host1));
        assert_eq!(
            found(&index, "a", "host:h1 AND text:mimikatz"),
            expected(&a, |r| host1(r) && mimikatz(r))
        );
        let theirs = if b_present { expected(&b, mimikatz) } else { (Vec::new(), 0) };
        assert_eq!(found(&index, "b", "text:mimikatz"), theirs);
        let swept: u64 = index.sweep("a", IocField::Text, "mimikatz").unwrap().iter().map(|h| h.count).sum();
        assert_eq!(swept as usize, expected(&a, mimikatz).1);
    };
    check(false);
    // A later page, each hit pointing at the row it was added from.
    let (page, _) = index
        .search("a", &SearchQuery { q: "host:h1".into(), limit: 10, offset: 5, ..Default::default() })
        .unwrap();
    let mut times: Vec<i64> = a.iter().filter(|r| host1(r)).map(Record::time).collect();
    times.sort_unstable_by(|x, y| y.cmp(x));
    assert_eq!(page.iter().map(|h| h.time).collect::<Vec<_>>(), times[5..15]);
    assert!(page.iter().all(|h| h.file_id == 1 && a[h.row].time() == h.time && a[h.row].host() == "h1"));
    // The same hosts and terms in another tenant.
    index.add_file(2, 0, &b).unwrap();
    index.commit().unwrap();
    check(true);
    index.delete_files(&[2]).unwrap();
    index.commit().unwrap();
    check(false);
}

/// A sweep's per-host answer (count, first and last time) equals what was sent, host by host,
/// across segments and with hundreds of hosts (their names read from the dictionary in one pass).
#[test]
fn a_sweep_counts_each_host_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let index = FullTextIndex::open(dir.path()).unwrap();
    let ch =
        schemas::decode::Channel { tenant: "a", agent: "a", message_key: "k", stream_seq: 1, received: 0 };
    let limits = schemas::decode::Limits { max_skew_micros: i64::MAX, ..Default::default() };
    let mut want: std::collections::BTreeMap<String, (u64, i64, i64)> = Default::default();
    for (file, hosts) in [(1, 0..300), (2, 150..700)] {
        let mut recs = Vec::new();
        for h in hosts {
            for i in 0..(h % 4) {
                let t: i64 = 1_780_000_000_000_000 + (h * 10 + i + file * 7) * 1_000_000;
                let line = format!(
                    r#"{{"@timestamp":"{}","host":{{"name":"host-{h:04}"}},"event":{{"category":"network"}},"destination":{{"ip":"198.51.100.7"}}}}"#,
                    schemas::time::format_micros(t)
                );
                recs.push(schemas::decode::decode_line(line.as_bytes(), 1, &ch, &limits).unwrap());
                let e = want.entry(format!("host-{h:04}")).or_insert((0, i64::MAX, i64::MIN));
                *e = (e.0 + 1, e.1.min(t), e.2.max(t));
            }
        }
        index.add_file(file, 0, &recs).unwrap();
        index.commit().unwrap();
    }
    let got: std::collections::BTreeMap<String, (u64, i64, i64)> = index
        .sweep("a", IocField::Ip, "198.51.100.7")
        .unwrap()
        .into_iter()
        .map(|h| (h.host, (h.count, h.first_seen, h.last_seen)))
        .collect();
    assert_eq!(got, want);
}

/// The files an index holds survive a reopen as a set, out of id order and with deletes; an index
/// whose last commit carries only a mark (before the set was kept) says so until it is given its
/// set, and then writes it.
#[test]
fn the_files_held_are_a_set_that_survives_a_reopen_and_an_old_mark_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let rows = records("t", 3);
    {
        let ix = FullTextIndex::open(dir.path()).unwrap();
        for id in [5, 2, 9] {
            ix.add_file(id, 0, &rows).unwrap();
        }
        ix.delete_files(&[2]).unwrap();
        assert_eq!(ix.known_files(), [5, 9].into_iter().collect(), "held after the next commit");
        assert!(ix.held_files().iter().next().is_none(), "nothing held before it");
        ix.commit().unwrap();
    }
    let ix = FullTextIndex::open(dir.path()).unwrap();
    assert_eq!(*ix.held_files(), [5, 9].into_iter().collect());
    assert_eq!((ix.legacy_mark(), ix.held_files().max()), (None, 9));
    // A commit as an older Cordon made it: only the mark.
    {
        let mut writer = ix.writer.lock().unwrap();
        writer.add_document(ix.document(11, 0, &rows[0])).unwrap();
        let mut prepared = writer.prepare_commit().unwrap();
        prepared.set_payload(r#"{"file_id": 11}"#);
        prepared.commit().unwrap();
    }
    drop(ix);
    let ix = FullTextIndex::open(dir.path()).unwrap();
    assert_eq!(ix.legacy_mark(), Some(11));
    ix.adopt([5, 9, 11].into_iter().collect());
    ix.add_file(12, 0, &rows).unwrap();
    ix.commit().unwrap();
    drop(ix);
    let ix = FullTextIndex::open(dir.path()).unwrap();
    assert_eq!(*ix.held_files(), [5, 9, 11, 12].into_iter().collect());
    assert_eq!(ix.legacy_mark(), None);
}
