//! Outbound HTTP (report webhooks, and anything later that calls out): a URL from configuration must
//! not become a way into internal services. The host is resolved, every address is checked, and the
//! connection goes only to an address that passed (one step, so a DNS answer cannot change between the
//! check and the connect); loopback, private, link-local, shared, multicast, reserved and IPv4-mapped
//! or -translated addresses are refused unless configuration allows internal targets; no proxy from
//! the environment; no redirect is followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Why an address is not a permitted outbound target, or None when it is.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    match () {
        _ if ip.is_loopback() => Some("loopback"),
        _ if ip.is_private() => Some("private"),
        _ if ip.is_link_local() => Some("link-local"),
        _ if ip.is_unspecified() || a == 0 => Some("unspecified (this network)"),
        _ if a == 100 && (64..128).contains(&b) => Some("shared address space (carrier-grade NAT)"),
        _ if a == 192 && b == 0 && c == 0 => Some("IETF protocol assignments"),
        _ if a == 198 && (18..20).contains(&b) => Some("benchmarking"),
        _ if ip.is_multicast() => Some("multicast"),
        _ if a >= 240 => Some("reserved or broadcast"),
        _ => None,
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    match () {
        _ if ip.is_loopback() => Some("loopback"),
        _ if ip.is_unspecified() => Some("unspecified"),
        _ if ip.to_ipv4_mapped().is_some() => Some("IPv4-mapped"),
        _ if s[0] == 0x64 && s[1] == 0xff9b => Some("IPv4-translated (NAT64)"),
        _ if s[..6] == [0; 6] => Some("IPv4-compatible"),
        _ if (s[0] & 0xfe00) == 0xfc00 => Some("unique local (private)"),
        _ if (s[0] & 0xffc0) == 0xfe80 => Some("link-local"),
        _ if (s[0] & 0xff00) == 0xff00 => Some("multicast"),
        _ if s[0] == 0x2001 && s[1] == 0x0db8 => Some("documentation"),
        _ => None,
    }
}

/// Resolves with the system resolver, then keeps only permitted addresses.
#[derive(Debug)]
struct GuardedResolver {
    allow_internal: bool,
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let found = DefaultResolver::default().resolve(uri, config, timeout)?;
        if self.allow_internal {
            return Ok(found);
        }
        let mut kept = self.empty();
        let mut why = Vec::new();
        for a in found.iter() {
            match refused(a.ip()) {
                None => kept.push(*a),
                Some(reason) => why.push(format!("{} ({reason})", a.ip())),
            }
        }
        if kept.is_empty() {
            let host = uri.host().unwrap_or("");
            return Err(ureq::Error::Other(
                format!(
                    "{host} resolves only to internal addresses: {}; outbound requests go to public addresses unless allow_private_webhooks is set",
                    why.join(", ")
                )
                .into(),
            ));
        }
        Ok(kept)
    }
}

/// An agent for outbound requests: permitted addresses only (unless `allow_internal`), no proxy from
/// the environment, no redirects, a 30 s budget, statuses returned rather than raised.
pub fn agent(allow_internal: bool) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    ureq::Agent::with_parts(config, DefaultConnector::default(), GuardedResolver { allow_internal })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges_are_refused_and_public_ones_pass() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::a00:1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(refused(ip.parse().unwrap()).is_some(), "{ip} must be refused");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "2606:4700::1111"] {
            assert_eq!(refused(ip.parse().unwrap()), None, "{ip} is public");
        }
    }

    /// A webhook on loopback is never connected to without the setting, by name or by address.
    #[test]
    fn a_loopback_webhook_is_refused_before_any_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        for url in [format!("http://127.0.0.1:{port}/hook"), format!("http://localhost:{port}/hook")] {
            let err = agent(false).post(&url).send("{}").unwrap_err().to_string();
            assert!(err.contains("internal addresses") && err.contains("loopback"), "{url}: {err}");
        }
        assert!(listener.accept().is_err(), "no connection reached the listener");
    }
}
