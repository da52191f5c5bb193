//! Against real nftables, inside a network namespace each test makes (`ip netns add`) and enters
//! on its own thread, so the host's rules are never touched. Reachability across namespaces is the
//! end-to-end test's (`tests/tests/e2e/isolation.rs`); here: the tables, the sets, the refusals.

use super::super::{ActionResult, Config, Outcome};
use super::*;
use serde_json::json;

/// A network namespace of the test's own, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        assert!(
            available(Path::new("nft")),
            "nft is not installed: apt-get install nftables (./dev test installs it)"
        );
        let name = format!("cordon-ut-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ok = Command::new("ip").args(["netns", "add", &name]).status().is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} failed: the tests need root and iproute2");
        Self(name)
    }

    /// Runs `f` on a thread inside the namespace (children it spawns are inside too).
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = std::fs::File::open(&path).expect("the namespace file");
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&fd),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("setns");
                f()
            })
            .join()
            .expect("the thread in the namespace")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn cfg(dir: &Path) -> Config {
    Config {
        management: vec!["10.77.0.1:4222".parse().unwrap()],
        resolvers: vec!["10.77.0.53".parse().unwrap()],
        ..Config::for_host(dir)
    }
}

fn act(action: serde_json::Value, c: &Config, dry_run: bool) -> ActionResult {
    let rule = schemas::response::parse(&json!({"name": "t", "kind": "handling", "actions": [action]}))
        .expect("a valid rule");
    super::super::run(&rule, c, dry_run).remove(0)
}

#[test]
fn management_endpoints_come_from_the_nats_urls() {
    let got = management_endpoints("nats://127.0.0.1:4333, tls://user:pw@127.0.0.2, 127.0.0.3:99");
    let want: Vec<SocketAddr> =
        ["127.0.0.1:4333", "127.0.0.2:4222", "127.0.0.3:99"].iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(got, want);
}

#[test]
fn the_isolation_script_keeps_the_lifelines_and_drops_the_rest() {
    let script = isolation_script(
        &["10.77.0.1:4222".parse().unwrap(), "[fd00::1]:4300".parse().unwrap()],
        &["10.77.0.53".parse().unwrap()],
        &["192.0.2.0/24".into()],
    );
    for line in [
        "policy drop",
        "ip daddr 10.77.0.1 tcp dport 4222 accept",
        "ip saddr 10.77.0.1 tcp sport 4222 accept",
        "ip6 daddr fd00::1 tcp dport 4300 accept",
        "ip daddr 10.77.0.53 udp dport 53 accept",
        "ip daddr 192.0.2.0/24 accept",
        "oifname \"lo\" accept",
        "chain forward",
    ] {
        assert!(script.contains(line), "{line:?} missing from:\n{script}");
    }
    assert!(script.starts_with("table inet cordon_isolate {}\ndelete table inet cordon_isolate\n"));
}

#[test]
fn isolation_is_a_table_of_its_own_and_release_leaves_the_host_rules_as_they_were() {
    let ns = Netns::new("iso");
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    ns.enter(|| {
        // The host has rules of its own.
        let host = "table inet hostfw {\n chain input { type filter hook input priority 0; policy accept; tcp dport 22 accept; }\n}\n";
        nft(&c, &["-f", "-"], Some(host)).unwrap();
        let before = host_rules(&c).unwrap();

        let dry = act(json!({"action": "Other_NetOff"}), &c, true);
        assert_eq!(dry.outcome, Outcome::WouldDo, "{dry:?}");
        assert!(table(&c, ISOLATE).is_none(), "a dry run changes nothing");

        let r = act(json!({"action": "Other_NetOff", "allow": ["192.0.2.7"]}), &c, false);
        assert_eq!(r.outcome, Outcome::Done, "{r:?}");
        assert!(r.detail.contains("management 10.77.0.1:4222") && r.detail.contains("allowed 192.0.2.7"), "{r:?}");
        let objs = table(&c, ISOLATE).unwrap();
        for chain in ["input", "output", "forward"] {
            assert_eq!(chain_policy(&objs, chain).as_deref(), Some("drop"), "{chain}");
        }
        // Isolating again replaces the table rather than stacking rules.
        let rules = objs.iter().filter(|o| o.get("rule").is_some()).count();
        assert_eq!(act(json!({"action": "Other_NetOff", "allow": ["192.0.2.7"]}), &c, false).outcome, Outcome::Done);
        let again = table(&c, ISOLATE).unwrap().iter().filter(|o| o.get("rule").is_some()).count();
        assert_eq!(again, rules);
        assert_eq!(host_rules(&c).unwrap(), before, "the host's table is untouched");

        let r = act(json!({"action": "Other_NetOn"}), &c, false);
        assert_eq!(r.outcome, Outcome::Done, "{r:?}");
        assert!(r.detail.contains("as they were before"), "{r:?}");
        assert!(table(&c, ISOLATE).is_none());
        assert!(table(&c, "hostfw").is_some());
        let r = act(json!({"action": "Other_NetOn"}), &c, false);
        assert_eq!(r.outcome, Outcome::NothingFound, "releasing twice: {r:?}");
    });
}

#[test]
fn isolation_without_a_known_management_channel_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config { management: Vec::new(), ..cfg(dir.path()) };
    let r = act(json!({"action": "Other_NetOff"}), &c, false);
    assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
}

#[test]
fn blocks_go_into_expiring_sets_and_never_cut_the_lifelines() {
    let ns = Netns::new("blk");
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    ns.enter(|| {
        let r = act(
            json!({"action": "Other_Disabled_Ip", "ip": "203.0.113.9/16", "expires_secs": 600}),
            &c,
            false,
        );
        assert_eq!(r.outcome, Outcome::Done, "{r:?}");
        assert!(elements(&c, "addr4").contains(&"203.0.0.0/16".to_owned()));
        let r = act(json!({"action": "Other_Disabled_Ip", "ip": "2001:db8::5"}), &c, false);
        assert_eq!(r.outcome, Outcome::Done, "{r:?}");
        assert_eq!(elements(&c, "addr6"), vec!["2001:db8::5".to_owned()]);
        let r = act(json!({"action": "Other_Disabled_Port", "port": 4444}), &c, false);
        assert_eq!(r.outcome, Outcome::Done, "{r:?}");
        let mut ports = elements(&c, "ports");
        ports.sort();
        assert_eq!(ports, vec!["tcp . 4444".to_owned(), "udp . 4444".to_owned()]);
        // Expiry is the kernel's: an element with a one-second timeout is gone after it.
        let r = act(
            json!({"action": "Other_Disabled_Port", "port": 5555, "protocol": "udp", "expires_secs": 1}),
            &c,
            false,
        );
        assert_eq!(r.outcome, Outcome::Done, "{r:?}");
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(!elements(&c, "ports").contains(&"udp . 5555".to_owned()), "expired");

        for (action, why) in [
            (json!({"action": "Other_Disabled_Ip", "ip": "10.77.0.0/24"}), "management channel"),
            (json!({"action": "Other_Disabled_Ip", "ip": "10.77.0.53"}), "resolver"),
            (json!({"action": "Other_Disabled_Ip", "ip": "127.0.0.1"}), "loopback"),
            (json!({"action": "Other_Disabled_Port", "port": 4222}), "management channel"),
            (json!({"action": "Other_Disabled_Port", "port": 53, "protocol": "udp"}), "resolvers"),
        ] {
            let r = act(action.clone(), &c, false);
            assert_eq!(r.outcome, Outcome::Refused, "{action}: {r:?}");
            assert!(r.detail.contains(why), "{action}: {r:?}");
        }
        assert!(!elements(&c, "addr4").iter().any(|e| e.starts_with("10.77.")));
    });
}

#[test]
fn networks_are_normalised_as_nft_stores_them() {
    assert_eq!(network("10.1.2.3/16").unwrap(), ("10.1.0.0".parse().unwrap(), 16));
    assert_eq!(network("2001:db8::1/32").unwrap(), ("2001:db8::".parse().unwrap(), 32));
    assert!(contains(network("10.0.0.0/8").unwrap(), "10.77.0.1".parse().unwrap()));
    assert!(!contains(network("10.0.0.0/8").unwrap(), "11.0.0.1".parse().unwrap()));
}
