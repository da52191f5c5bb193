//! Issue 16 item 6: property-based fuzzing of every parser hostile bytes reach — the wire decoder, the
//! event decoder, the auth-log reader, the Sigma rule loader and the search front end — from seeds the
//! project writes, mutated (bit flips, cuts, splices, repeated and inserted tokens, deep nesting).
//! Each target must return (an error is fine) without panicking, overflowing its stack or running
//! away; crashes found become named regression cases below the harness.
//!
//! Bounded for CI: `CORDON_FUZZ_CASES` cases per target (default 5,000, a few seconds). `./dev fuzz` runs longer.
//! The EVTX reader needs real EVTX files as seeds, which the project cannot write: `cordon eval evtx
//! --mutants N` damages copies of the corpus's files instead (`./dev eval` runs 100 per file).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::time::{Duration, Instant};

/// How each input is changed.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Cut { at: usize, len: usize },
    Truncate { at: usize },
    Insert { at: usize, token: usize, times: usize },
    Splice { at: usize, from: usize, len: usize },
}

/// Tokens that push parsers into their corners.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    ":",
    ",",
    "null",
    "1e999",
    "-0",
    "NaN",
    "\u{0}",
    "\u{feff}",
    "\u{10ffff}",
    "\r\n",
    "\n",
    "\t",
    "'",
    "*",
    "?",
    "AND",
    "OR",
    "NOT",
    "~",
    "^",
    "host:",
    "\"\"",
    "- ",
    "  ",
    "|contains",
    "|re",
    "|base64offset",
    "|all",
    "1 of ",
    "all of them",
    "condition: ",
    "&a",
    "*a",
    "!!binary",
    "%",
    "\u{1b}[31m",
    "0x",
    "99999999999999999999",
    "\u{ff}",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Cut { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 0..TOKENS.len(), prop_oneof![9 => 1usize..4, 1 => 100usize..3000])
            .prop_map(|(at, token, times)| Mutation::Insert { at, token, times }),
        (any::<usize>(), any::<usize>(), 1usize..256).prop_map(|(at, from, len)| Mutation::Splice {
            at,
            from,
            len
        }),
    ]
}

fn apply(seed: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in muts {
        let n = b.len().max(1);
        match *m {
            Mutation::Flip { at, bit } => {
                if !b.is_empty() {
                    b[at % n] ^= 1 << bit;
                }
            }
            Mutation::Cut { at, len } => {
                let at = at % n;
                let end = (at + len).min(b.len());
                if at < end {
                    b.drain(at..end);
                }
            }
            Mutation::Truncate { at } => b.truncate(at % n),
            Mutation::Insert { at, token, times } => {
                let at = (at % n).min(b.len());
                let bytes = TOKENS[token].repeat(times).into_bytes();
                b.splice(at..at, bytes);
            }
            Mutation::Splice { at, from, len } => {
                let from = from % n;
                let piece: Vec<u8> = b.iter().skip(from).take(len).copied().collect();
                let at = (at % n).min(b.len());
                b.splice(at..at, piece);
            }
        }
    }
    b
}

/// Mutated seeds, plus now and then plain random bytes.
fn inputs(seeds: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        9 => (0..seeds.len(), prop::collection::vec(mutation(), 0..8))
            .prop_map(move |(i, muts)| apply(seeds[i].as_bytes(), &muts)),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

fn cases() -> u32 {
    std::env::var("CORDON_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000)
}

/// `CORDON_FUZZ_TRACE=DIR`: each input is written to `DIR/<target>.last` before it runs, so an
/// input that aborts the process (a stack overflow, which no harness can catch) is left behind.
fn trace(name: &str, input: &[u8]) {
    if let Some(dir) = std::env::var_os("CORDON_FUZZ_TRACE") {
        let path = std::path::Path::new(&dir).join(format!("{}.last", name.replace(' ', "-")));
        std::fs::write(&path, input).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Runs `target` on `cases()` inputs; each must finish within `budget`. Prints the rate.
fn fuzz(name: &str, seeds: &'static [&'static str], budget: Duration, target: impl Fn(&[u8])) {
    let mut runner =
        TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let started = Instant::now();
    let result = runner.run(&inputs(seeds), |input| {
        trace(name, &input);
        let t = Instant::now();
        target(&input);
        prop_assert!(t.elapsed() < budget, "{name}: one input took {:?}", t.elapsed());
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    eprintln!("fuzz {name}: {} cases in {:.1} s", cases(), started.elapsed().as_secs_f64());
}

const EVENT_SEEDS: &[&str] = &[
    r#"{"@timestamp":"2026-11-02T10:00:00Z","event":{"kind":"event","category":["process"],"type":["start"]},"host":{"name":"ws-01"},"process":{"pid":4242,"name":"powershell.exe","command_line":"powershell -enc SQBFAFgA","parent":{"pid":1000,"name":"winword.exe"}},"user":{"name":"alice"}}"#,
    r#"{"@timestamp":1762077600000,"event":{"category":"network"},"host":{"name":"web-01","ip":["10.0.0.5"]},"source":{"ip":"10.0.0.9","port":51515},"destination":{"ip":"203.0.113.7","port":443},"threat":{"technique":{"id":["T1071.001"]}}}"#,
    r#"{"@timestamp":"2026-11-02T10:00:00.123456+02:00","event":{"category":["authentication"],"outcome":"failure"},"host":{"name":"srv"},"user":{"name":"root"},"source":{"ip":"198.51.100.4"},"tags":["a","b"],"labels":{"k":"v"}}"#,
];

#[test]
fn the_event_decoder_survives_mutated_events() {
    let ch = schemas::Channel {
        tenant: "t1",
        agent: "agent-1",
        message_key: "boot:1",
        stream_seq: 7,
        received: 1_762_077_600_000_000,
    };
    let limits = schemas::Limits::default();
    fuzz("event decoder", EVENT_SEEDS, Duration::from_secs(2), |line| {
        if let Ok(rec) = schemas::decode_line(line, 1, &ch, &limits) {
            assert_eq!(rec.tenant(), "t1", "a decoded event keeps the channel's tenant");
        }
    });
}

#[test]
fn the_wire_decoder_survives_mutated_bodies() {
    fuzz("wire decoder", EVENT_SEEDS, Duration::from_secs(2), |body| {
        let max = 64 * 1024;
        // As sent (identity), and as a zstd frame built from it and then damaged.
        if let Ok(out) = schemas::wire::decode_body(Some(schemas::wire::WIRE_VERSION), None, body, max) {
            assert!(out.len() <= max);
        }
        let mut frame = schemas::wire::compress(body);
        if let Some(b) = frame.get_mut(body.len() % 7 + 4) {
            *b ^= 0x5a;
        }
        for f in [&frame[..], &frame[..frame.len() / 2]] {
            if let Ok(out) = schemas::wire::decode_body(None, Some(schemas::wire::ENCODING_ZSTD), f, max) {
                assert!(out.len() <= max, "decompression stays under its cap");
            }
        }
        for (_, line) in schemas::wire::lines(body) {
            assert!(!line.contains(&b'\n'));
        }
    });
}

const LOG_SEEDS: &[&str] = &[
    "Nov  2 10:00:01 web-01 sshd[1234]: Failed password for invalid user admin from 198.51.100.4 port 51515 ssh2\n\
     Nov  2 10:00:02 web-01 sshd[1234]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.4\n",
    "Nov  2 10:05:00 web-01 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/cat /etc/shadow\n",
    r#"{"__REALTIME_TIMESTAMP":"1762077600000000","_HOSTNAME":"db-01","SYSLOG_IDENTIFIER":"sshd","MESSAGE":"Accepted publickey for deploy from 10.0.0.9 port 4444 ssh2"}"#,
    "2026-11-02 10:00:00.123 UTC [4242] FATAL:  password authentication failed for user \"postgres\"\n",
    "2026-11-02T10:00:00.123456Z 42 [Note] Access denied for user 'root'@'10.0.0.9' (using password: YES)\n",
];

#[test]
fn the_log_reader_survives_mutated_logs() {
    fuzz("log reader", LOG_SEEDS, Duration::from_secs(2), |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let _ = sensor_agent::logs::parse(&text, 2026);
    });
}

const RULE_SEEDS: &[&str] = &[
    "title: Office spawns a shell\nid: 5f3c1e2a-0000-4000-8000-000000000001\nstatus: test\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n  parent:\n    ParentImage|endswith: '\\winword.exe'\n  child:\n    Image|endswith:\n      - '\\powershell.exe'\n      - '\\cmd.exe'\n  filter:\n    CommandLine|contains|all: ['-enc', 'IEX']\n  condition: parent and child and not filter\nlevel: high\ntags:\n  - attack.execution\n  - attack.t1059.001\n",
    "title: Many failures\nid: 5f3c1e2a-0000-4000-8000-000000000002\nlogsource:\n  category: authentication\ndetection:\n  sel:\n    event.outcome: failure\n    source.ip|cidr: 10.0.0.0/8\n  keywords:\n    - 'Failed password'\n  condition: 1 of sel* or keywords | count(source.ip) by host.name > 5\n  timeframe: 5m\nlevel: medium\n",
    "title: Spray\nid: 5f3c1e2a-0000-4000-8000-000000000003\ncorrelation:\n  type: value_count\n  rules:\n    - 5f3c1e2a-0000-4000-8000-000000000002\n  group-by:\n    - source.ip\n  timespan: 10m\n  condition:\n    field: user.name\n    gte: 10\nlevel: high\n",
];

#[test]
fn the_sigma_loader_survives_mutated_rules() {
    let pipeline = correlate::sigma::Pipeline::cordon_ecs();
    fuzz("sigma loader", RULE_SEEDS, Duration::from_secs(3), |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let _ = correlate::sigma::load_any(&text, &pipeline);
    });
}

const QUERY_SEEDS: &[&str] = &[
    "powershell AND host:ws-01",
    "\"${jndi:ldap\" OR (technique:T1059.001 AND NOT user:svc*)",
    "(ip:10.0.0.5 OR domain:evil.example) -kind:network hash:44d88612fea8a8f36de82e1278abb02f",
    "text:\"a b c\"~2 AND host:(a OR b)",
];

#[test]
fn the_search_front_end_survives_mutated_queries() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let index = store::index::FullTextIndex::open(dir.path()).expect("an empty index");
    fuzz("search front end", QUERY_SEEDS, Duration::from_secs(3), |bytes| {
        let q = store::index::SearchQuery {
            q: String::from_utf8_lossy(bytes).into_owned(),
            literal: bytes.first().is_some_and(|b| b & 1 == 1),
            limit: 10,
            ..Default::default()
        };
        match index.search("t1", &q) {
            Ok(_) | Err(store::index::IndexError::BadQuery(_)) => {}
            Err(e) => panic!("search {:?}: not a bad-query error: {}", q.q, schemas::error_chain(&e)),
        }
    });
}

/// Deep nesting, each parser at once (the class of input that took the server down before).
#[test]
fn deep_nesting_is_refused_by_every_parser() {
    let deep = |open: &str, close: &str, n: usize| format!("{}x{}", open.repeat(n), close.repeat(n));
    let ch = schemas::Channel { tenant: "t", agent: "a", message_key: "k", stream_seq: 1, received: 0 };
    let line = deep("{\"a\":", "}", 100_000);
    assert!(schemas::decode_line(line.as_bytes(), 1, &ch, &schemas::Limits::default()).is_err());
    let pipeline = correlate::sigma::Pipeline::cordon_ecs();
    for yaml in [deep("[", "]", 100_000), deep("{a: ", "}", 100_000), deep("- ", "", 20_000)] {
        let _ = correlate::sigma::load_any(&format!("title: t\ndetection: {yaml}\n"), &pipeline);
    }
    // Block nesting under a selection (the loader's YAML parser recursed on it until it was bounded).
    let block = format!("title: t\ndetection:\n  sel:\n   {}x\n  condition: sel\n", "- ".repeat(20_000));
    let refused = correlate::sigma::load_any(&block, &pipeline);
    assert!(
        matches!(&refused[..], [Err(e)] if e.reason.contains("columns deep")),
        "deep block nesting is refused"
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let index = store::index::FullTextIndex::open(dir.path()).expect("an empty index");
    let q = store::index::SearchQuery { q: deep("(", ")", 100_000), limit: 10, ..Default::default() };
    assert!(matches!(index.search("t", &q), Err(store::index::IndexError::BadQuery(_))));
}

/// Found by the search target: `field:*` parses to an exists query that needs a fast field the
/// index does not keep, and came back as an index failure (a 500) instead of a bad query.
#[test]
fn regression_field_wildcard_is_a_bad_query() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let index = store::index::FullTextIndex::open(dir.path()).expect("an empty index");
    for q in ["text:*", "host:*", "user:* AND powershell"] {
        let q = store::index::SearchQuery { q: q.to_owned(), limit: 10, ..Default::default() };
        match index.search("t", &q) {
            Ok(_) | Err(store::index::IndexError::BadQuery(_)) => {}
            Err(e) => panic!("{:?}: {}", q.q, schemas::error_chain(&e)),
        }
    }
}
