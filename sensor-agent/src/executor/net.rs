//! Network instructions on Linux, with nftables: isolation, its release, and blocking an address
//! or a port until it expires.
//!
//! Cordon keeps to tables of its own and never edits the host's: `inet cordon_isolate` holds the
//! isolation (input, output and forward chains whose policy is drop, accepting only loopback, IPv6
//! neighbour discovery, the management channel to NATS, the resolvers and the rule's `allow`
//! list), and `inet cordon_block` the blocks (sets with per-element timeouts, matched in both
//! directions). A drop in any base chain is final in nftables, so these tables take effect whatever
//! the host's own rules say, and deleting `cordon_isolate` leaves the host's rules exactly as they
//! were; the release checks that against a snapshot taken at isolation. Every change is one `nft -f`
//! transaction, checked afterwards by listing the table as JSON.

use super::{ActionResult, Config, Outcome};
use schemas::response::Action;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};

const ISOLATE: &str = "cordon_isolate";
const BLOCK: &str = "cordon_block";
/// What the host's ruleset was when isolation began (cordon's own tables left out).
const SNAPSHOT: &str = "isolation-before.json";

/// Carries out a network instruction into `r`; false when `a` is not one this module handles.
pub(super) fn run(a: &Action, cfg: &Config, dry_run: bool, r: &mut ActionResult) -> bool {
    let done = match a.instruction.name {
        "Other_NetOff" => isolate(&ips(a.args.get("allow")), cfg, dry_run, r),
        "Other_NetOn" => release(cfg, dry_run, r),
        "Other_Disabled_Ip" => {
            let ip = a.args["ip"].as_str().unwrap_or_default();
            block_ip(ip, a.args.get("expires_secs").and_then(Value::as_u64), cfg, dry_run, r)
        }
        "Other_Disabled_Port" => {
            let port = a.args["port"].as_u64().unwrap_or_default() as u16;
            let protos = match a.args.get("protocol").and_then(Value::as_str) {
                Some(p) => vec![p.to_owned()],
                None => vec!["tcp".into(), "udp".into()],
            };
            block_port(port, &protos, a.args.get("expires_secs").and_then(Value::as_u64), cfg, dry_run, r)
        }
        _ => return false,
    };
    if let Err(e) = done {
        r.outcome = Outcome::Failed;
        r.detail = e;
    }
    true
}

fn ips(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(|x| x.as_str().map(str::to_owned)).collect()
}

/// The addresses behind a NATS URL list (`nats://a:4222,tls://b`), the port defaulting to 4222.
pub fn management_endpoints(urls: &str) -> Vec<SocketAddr> {
    use std::net::ToSocketAddrs;
    schemas::subject::nats_urls(urls)
        .into_iter()
        .filter_map(|u| {
            let rest = u.split_once("://").map_or(u, |(_, r)| r);
            let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h).trim_end_matches('/');
            let with_port = if hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
                hostport.to_owned()
            } else {
                format!("{hostport}:4222")
            };
            with_port.to_socket_addrs().ok()
        })
        .flatten()
        .collect()
}

/// The resolvers in `resolv.conf`; behind a local stub (systemd-resolved's 127.0.0.53), its
/// upstream servers as well.
pub fn resolvers() -> Vec<IpAddr> {
    let read = |p: &str| -> Vec<IpAddr> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|a| a.trim().split('%').next()?.parse().ok())
            .collect()
    };
    let mut out = read("/etc/resolv.conf");
    if out.iter().any(IpAddr::is_loopback) {
        out.extend(read("/run/systemd/resolve/resolv.conf"));
    }
    out.retain(|a| !a.is_loopback());
    out.sort();
    out.dedup();
    out
}

fn family(ip: &str) -> &'static str {
    if ip.contains(':') { "ip6" } else { "ip" }
}

/// The isolation table as one nft transaction: created empty (so the delete never fails), deleted,
/// and made again whole, so isolating twice replaces rather than stacks.
pub fn isolation_script(management: &[SocketAddr], resolvers: &[IpAddr], allow: &[String]) -> String {
    let mut inbound = vec![
        "iifname \"lo\" accept".to_owned(),
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, nd-router-solicit } accept"
            .to_owned(),
    ];
    let mut outbound = vec![inbound[1].clone()];
    outbound.insert(0, "oifname \"lo\" accept".into());
    for m in management {
        let (f, ip, port) = (family(&m.ip().to_string()), m.ip(), m.port());
        inbound.push(format!("{f} saddr {ip} tcp sport {port} accept comment \"cordon: management\""));
        outbound.push(format!("{f} daddr {ip} tcp dport {port} accept comment \"cordon: management\""));
    }
    for r in resolvers {
        let f = family(&r.to_string());
        for proto in ["udp", "tcp"] {
            inbound.push(format!("{f} saddr {r} {proto} sport 53 accept comment \"cordon: resolver\""));
            outbound.push(format!("{f} daddr {r} {proto} dport 53 accept comment \"cordon: resolver\""));
        }
    }
    for a in allow {
        let f = family(a);
        inbound.push(format!("{f} saddr {a} accept comment \"cordon: allowed\""));
        outbound.push(format!("{f} daddr {a} accept comment \"cordon: allowed\""));
    }
    let chain = |name: &str, rules: &[String]| {
        let body: String = rules.iter().map(|r| format!("    {r}\n")).collect();
        format!(
            "  chain {name} {{\n    type filter hook {name} priority filter - 10; policy drop;\n{body}  }}\n"
        )
    };
    format!(
        "table inet {ISOLATE} {{}}\ndelete table inet {ISOLATE}\ntable inet {ISOLATE} {{\n{}{}{}}}\n",
        chain("input", &inbound),
        chain("output", &outbound),
        chain("forward", &[])
    )
}

/// The block table, made when it is missing: address sets per family and a protocol-and-port set,
/// each element with its own timeout, matched in both directions.
fn block_table_script() -> String {
    let chain = |name: &str, dir: &str| {
        format!(
            "  chain {name} {{\n    type filter hook {name} priority filter - 5; policy accept;\n    \
             ip {dir} @addr4 drop\n    ip6 {dir} @addr6 drop\n    meta l4proto . th dport @ports drop\n  }}\n"
        )
    };
    format!(
        "table inet {BLOCK} {{\n  set addr4 {{ type ipv4_addr; flags interval, timeout; }}\n  \
         set addr6 {{ type ipv6_addr; flags interval, timeout; }}\n  \
         set ports {{ type inet_proto . inet_service; flags timeout; }}\n{}{}}}\n",
        chain("input", "saddr"),
        chain("output", "daddr")
    )
}

/// Runs `nft` with `args`, the script on its standard input when there is one; its output.
fn nft(cfg: &Config, args: &[&str], script: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new(&cfg.nft)
        .args(args)
        .stdin(if script.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e} (install nftables)", cfg.nft.display()))?;
    if let (Some(s), Some(mut stdin)) = (script, child.stdin.take()) {
        stdin.write_all(s.as_bytes()).map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if !out.status.success() {
        return Err(format!("nft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The table as nft's JSON objects, or None when it does not exist.
fn table(cfg: &Config, name: &str) -> Option<Vec<Value>> {
    let text = nft(cfg, &["-j", "list", "table", "inet", name], None).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(v["nftables"].as_array()?.clone())
}

/// The host's ruleset without Cordon's tables, without handles and expiry countdowns: what a
/// release compares with what isolation found.
fn host_rules(cfg: &Config) -> Result<Value, String> {
    let text = nft(cfg, &["-j", "list", "ruleset"], None)?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("nft's JSON: {e}"))?;
    let ours = |o: &Value| {
        let Some((kind, inner)) = o.as_object().and_then(|m| m.iter().next()) else { return true };
        let table = if kind == "table" { &inner["name"] } else { &inner["table"] };
        kind == "metainfo" || table.as_str().is_some_and(|t| t.starts_with("cordon_"))
    };
    let mut kept: Vec<Value> =
        v["nftables"].as_array().into_iter().flatten().filter(|o| !ours(o)).cloned().collect();
    kept.iter_mut().for_each(strip_volatile);
    Ok(Value::Array(kept))
}

fn strip_volatile(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("handle");
            m.remove("expires");
            m.values_mut().for_each(strip_volatile);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_volatile),
        _ => {}
    }
}

fn chain_policy(objs: &[Value], chain: &str) -> Option<String> {
    objs.iter().find_map(|o| {
        let c = o.get("chain")?;
        (c["name"] == chain).then(|| c["policy"].as_str().unwrap_or_default().to_owned())
    })
}

fn isolate(allow: &[String], cfg: &Config, dry_run: bool, r: &mut ActionResult) -> Result<(), String> {
    r.touched = vec![format!("nftables table inet {ISOLATE}")];
    if cfg.management.is_empty() {
        r.outcome = Outcome::Refused;
        r.detail = "the agent does not know its management channel; isolating would cut it off".into();
        return Ok(());
    }
    let kept: Vec<String> = cfg
        .management
        .iter()
        .map(|m| format!("management {m}"))
        .chain(cfg.resolvers.iter().map(|d| format!("resolver {d}")))
        .chain(allow.iter().map(|a| format!("allowed {a}")))
        .collect();
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("would drop all traffic but loopback, {}", kept.join(", "));
        return Ok(());
    }
    if table(cfg, ISOLATE).is_none() {
        let before = host_rules(cfg)?;
        std::fs::write(cfg.state.join(SNAPSHOT), before.to_string()).map_err(|e| format!("snapshot: {e}"))?;
    }
    nft(cfg, &["-f", "-"], Some(&isolation_script(&cfg.management, &cfg.resolvers, allow)))?;
    let objs = table(cfg, ISOLATE).unwrap_or_default();
    let dropping =
        ["input", "output", "forward"].iter().all(|c| chain_policy(&objs, c).as_deref() == Some("drop"));
    let rules = objs.iter().filter(|o| o.get("rule").is_some()).count();
    r.outcome = if dropping { Outcome::Done } else { Outcome::Failed };
    r.detail = if dropping {
        format!(
            "isolated: input, output and forward drop all but loopback, {} ({rules} rules)",
            kept.join(", ")
        )
    } else {
        "the isolation table is not in place".into()
    };
    Ok(())
}

fn release(cfg: &Config, dry_run: bool, r: &mut ActionResult) -> Result<(), String> {
    r.touched = vec![format!("nftables table inet {ISOLATE}")];
    if table(cfg, ISOLATE).is_none() {
        r.outcome = Outcome::NothingFound;
        r.detail = "the host is not isolated".into();
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = "would delete the isolation table; the host's own rules are untouched".into();
        return Ok(());
    }
    nft(cfg, &["delete", "table", "inet", ISOLATE], None)?;
    let gone = table(cfg, ISOLATE).is_none();
    let snapshot = cfg.state.join(SNAPSHOT);
    let same =
        match std::fs::read_to_string(&snapshot).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()) {
            Some(before) => Some(before == host_rules(cfg)?),
            None => None,
        };
    let _ = std::fs::remove_file(&snapshot);
    r.outcome = if gone { Outcome::Done } else { Outcome::Failed };
    r.detail = match (gone, same) {
        (false, _) => "the isolation table is still there".into(),
        (true, Some(true)) => "released: the host's rules are as they were before isolation".into(),
        (true, Some(false)) => "released; the host's own rules changed while it was isolated".into(),
        (true, None) => "released (no snapshot from before isolation to compare)".into(),
    };
    Ok(())
}

/// The network `ip` names (`10.1.2.3/16` is `10.1.0.0/16`): what nft stores and lists.
fn network(ip: &str) -> Result<(IpAddr, u8), String> {
    let (addr, bits) = ip.split_once('/').map_or((ip, None), |(a, b)| (a, Some(b)));
    let addr: IpAddr = addr.parse().map_err(|_| format!("{ip:?} is not an address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.map_or(Ok(max), |b| b.parse::<u8>().map_err(|_| format!("{ip:?}: bad prefix")))?;
    if bits > max {
        return Err(format!("{ip:?}: the prefix is longer than the address"));
    }
    let masked = match addr {
        IpAddr::V4(a) => {
            let m = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            IpAddr::from((u32::from(a) & m).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let m = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            IpAddr::from((u128::from(a) & m).to_be_bytes())
        }
    };
    Ok((masked, bits))
}

fn contains(net: (IpAddr, u8), ip: IpAddr) -> bool {
    ip.is_ipv4() == net.0.is_ipv4() && network(&format!("{ip}/{}", net.1)).is_ok_and(|n| n.0 == net.0)
}

/// What blocking `net` would cut the agent off from, if anything.
fn blocks_lifeline(net: (IpAddr, u8), cfg: &Config) -> Option<String> {
    if net.0.is_loopback() || net.1 == 0 {
        return Some("loopback, or every address".into());
    }
    let m = cfg.management.iter().find(|m| contains(net, m.ip()));
    let d = cfg.resolvers.iter().find(|d| contains(net, **d));
    m.map(|m| format!("the management channel {m}")).or_else(|| d.map(|d| format!("the resolver {d}")))
}

fn ensure_block_table(cfg: &Config) -> Result<(), String> {
    if table(cfg, BLOCK).is_none() {
        nft(cfg, &["-f", "-"], Some(&block_table_script()))?;
    }
    Ok(())
}

fn timeout(expires: Option<u64>) -> String {
    expires.map(|s| format!(" timeout {s}s")).unwrap_or_default()
}

/// The set's elements as nft lists them: `10.0.0.0/16`, `1.2.3.4`, `tcp . 4444`.
fn elements(cfg: &Config, set: &str) -> Vec<String> {
    let Ok(text) = nft(cfg, &["-j", "list", "set", "inet", BLOCK, set], None) else { return Vec::new() };
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    let one = |e: &Value| -> String {
        let val = e.get("elem").map_or(e, |x| &x["val"]);
        if let Some(p) = val.get("prefix") {
            format!("{}/{}", p["addr"].as_str().unwrap_or_default(), p["len"])
        } else if let Some(c) = val.get("concat").and_then(Value::as_array) {
            c.iter().map(|x| x.as_str().map_or(x.to_string(), str::to_owned)).collect::<Vec<_>>().join(" . ")
        } else {
            val.as_str().map_or(val.to_string(), str::to_owned)
        }
    };
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("set")?.get("elem")?.as_array().cloned())
        .flatten()
        .map(|e| one(&e))
        .collect()
}

fn block_ip(
    ip: &str,
    expires: Option<u64>,
    cfg: &Config,
    dry_run: bool,
    r: &mut ActionResult,
) -> Result<(), String> {
    let net = network(ip)?;
    let max = if net.0.is_ipv4() { 32 } else { 128 };
    let shown = if net.1 == max { net.0.to_string() } else { format!("{}/{}", net.0, net.1) };
    let set = if net.0.is_ipv4() { "addr4" } else { "addr6" };
    r.touched = vec![format!("{shown} in nftables set inet {BLOCK} {set}")];
    if let Some(lifeline) = blocks_lifeline(net, cfg) {
        r.outcome = Outcome::Refused;
        r.detail = format!("blocking {shown} would cut off {lifeline}");
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("would drop traffic to and from {shown}{}", timeout(expires));
        return Ok(());
    }
    ensure_block_table(cfg)?;
    let script = format!("add element inet {BLOCK} {set} {{ {shown}{} }}\n", timeout(expires));
    nft(cfg, &["-f", "-"], Some(&script))?;
    let there = elements(cfg, set).contains(&shown);
    r.outcome = if there { Outcome::Done } else { Outcome::Failed };
    r.detail = if there {
        format!("{shown} dropped both ways{}", expires.map(|s| format!(" for {s} s")).unwrap_or_default())
    } else {
        format!("{shown} is not in the block set")
    };
    Ok(())
}

fn block_port(
    port: u16,
    protos: &[String],
    expires: Option<u64>,
    cfg: &Config,
    dry_run: bool,
    r: &mut ActionResult,
) -> Result<(), String> {
    let wanted: Vec<String> = protos.iter().map(|p| format!("{p} . {port}")).collect();
    r.touched = wanted.iter().map(|w| format!("{w} in nftables set inet {BLOCK} ports")).collect();
    if let Some(m) = cfg.management.iter().find(|m| m.port() == port && protos.iter().any(|p| p == "tcp")) {
        r.outcome = Outcome::Refused;
        r.detail = format!("blocking tcp port {port} would cut off the management channel {m}");
        return Ok(());
    }
    if port == 53 && !cfg.resolvers.is_empty() {
        r.outcome = Outcome::Refused;
        r.detail = "blocking port 53 would cut off the resolvers".into();
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("would drop {} in both directions{}", wanted.join(", "), timeout(expires));
        return Ok(());
    }
    ensure_block_table(cfg)?;
    let items: Vec<String> = wanted.iter().map(|w| format!("{w}{}", timeout(expires))).collect();
    nft(cfg, &["-f", "-"], Some(&format!("add element inet {BLOCK} ports {{ {} }}\n", items.join(", "))))?;
    let have = elements(cfg, "ports");
    let missing: Vec<&String> = wanted.iter().filter(|w| !have.contains(w)).collect();
    r.outcome = if missing.is_empty() { Outcome::Done } else { Outcome::Failed };
    r.detail = if missing.is_empty() {
        format!("{} dropped{}", wanted.join(", "), expires.map(|s| format!(" for {s} s")).unwrap_or_default())
    } else {
        format!("not in the block set: {missing:?}")
    };
    Ok(())
}

/// Whether `nft` runs here (the tests say how to get it when it does not).
pub fn available(nft_path: &Path) -> bool {
    Command::new(nft_path).arg("--version").output().is_ok_and(|o| o.status.success())
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
