//! Least privilege per source. Linux keeps capabilities per thread, so each source's thread, once its
//! facility is open, keeps only what reading it needs ([`needs`]) and drops the rest from its
//! effective, permitted and bounding sets, with `no_new_privs` set: a bug in the file source cannot
//! load a kernel module, and a program a source runs (`nft`, `dpkg-query`, `journalctl`) inherits no
//! more than that source holds. The shipper's threads keep none.
//!
//! What each source keeps, and why:
//! - `process`, `library`: `CAP_SYS_PTRACE` (another user's `/proc/PID/exe`, `cwd` and `maps`) and
//!   `CAP_DAC_READ_SEARCH` (hashing executables and libraries whoever owns them);
//! - `network`: `CAP_SYS_PTRACE` (`/proc/PID/fd`, to find a socket's process);
//! - `file`, `login`, `inventory`: `CAP_DAC_READ_SEARCH` (files of any owner, read only);
//! - `firewall`: `CAP_NET_ADMIN` (reading the nftables ruleset).

use rustix::thread::{
    CapabilitySet, CapabilitySets, capabilities, capability_is_in_bounding_set, clear_ambient_capability_set,
    remove_capability_from_bounding_set, set_capabilities, set_no_new_privs,
};

/// The capabilities a source's facility needs once open.
pub fn needs(source: &str) -> CapabilitySet {
    match source {
        "process" | "library" => CapabilitySet::SYS_PTRACE | CapabilitySet::DAC_READ_SEARCH,
        "network" => CapabilitySet::SYS_PTRACE,
        "file" | "login" | "inventory" => CapabilitySet::DAC_READ_SEARCH,
        "firewall" => CapabilitySet::NET_ADMIN,
        _ => CapabilitySet::empty(),
    }
}

/// Confines the calling thread to `keep` (as much of it as it holds): the rest leaves the bounding
/// set (while `CAP_SETPCAP` still allows it), then the permitted and effective sets; the inheritable
/// and ambient sets are emptied and `no_new_privs` is set. Returns the names of what it kept.
pub fn confine(keep: CapabilitySet) -> Result<Vec<&'static str>, String> {
    let now = capabilities(None).map_err(|e| format!("capget: {e}"))?;
    let kept = keep & now.permitted;
    if now.effective.contains(CapabilitySet::SETPCAP) {
        for bit in 0..64u32 {
            let cap = CapabilitySet::from_bits_retain(1u64 << bit);
            // Past the kernel's last capability the read fails: nothing to drop there.
            if !kept.contains(cap) && capability_is_in_bounding_set(cap).unwrap_or(false) {
                remove_capability_from_bounding_set(cap)
                    .map_err(|e| format!("dropping capability {bit} from the bounding set: {e}"))?;
            }
        }
    }
    let _ = clear_ambient_capability_set();
    set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))?;
    set_capabilities(
        None,
        CapabilitySets { effective: kept, permitted: kept, inheritable: CapabilitySet::empty() },
    )
    .map_err(|e| format!("capset: {e}"))?;
    Ok(names(kept))
}

/// Confines the calling thread to what the source `name` needs, saying so in its gauge: the kept
/// capabilities, or why it could not drop the others (the source runs on regardless).
pub fn confine_source(name: &str, gauge: &super::health::Gauge) {
    match confine(needs(name)) {
        Ok(kept) => gauge.set_capabilities(kept.iter().map(|s| (*s).to_owned()).collect()),
        Err(why) => {
            tracing::warn!(source = name, error = %why, "capabilities not dropped");
            gauge.set_capabilities(vec![format!("not dropped: {why}")]);
        }
    }
}

/// The names of the capabilities in `set` that sources use.
fn names(set: CapabilitySet) -> Vec<&'static str> {
    [
        (CapabilitySet::DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"),
        (CapabilitySet::NET_ADMIN, "CAP_NET_ADMIN"),
        (CapabilitySet::SYS_PTRACE, "CAP_SYS_PTRACE"),
    ]
    .into_iter()
    .filter(|(c, _)| set.contains(*c))
    .map(|(_, n)| n)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_field(status: &str, key: &str) -> u64 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_default();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap_or("0"), 16).unwrap_or(u64::MAX)
    }

    /// A confined thread holds only what it kept, in every set the kernel reports, while the thread
    /// that started it keeps its own (capabilities are per thread). As root (CI runs as root).
    #[test]
    fn a_confined_thread_keeps_only_its_capabilities_and_others_keep_theirs() {
        let before = capabilities(None).unwrap();
        assert!(
            before.permitted.contains(CapabilitySet::SYS_PTRACE | CapabilitySet::SYS_MODULE),
            "this test runs as root (sudo cargo test); it holds {before:?}"
        );
        let (kept, status) = std::thread::spawn(|| {
            let kept = confine(needs("network")).unwrap();
            (kept, std::fs::read_to_string("/proc/thread-self/status").unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(kept, vec!["CAP_SYS_PTRACE"]);
        let ptrace = CapabilitySet::SYS_PTRACE.bits();
        for key in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(status_field(&status, key), ptrace, "{key} in {status}");
        }
        assert_eq!(status_field(&status, "CapInh:"), 0);
        assert!(status.contains("NoNewPrivs:\t1"), "{status}");
        assert_eq!(capabilities(None).unwrap(), before, "the test's own thread is untouched");
    }

    /// A program a confined source runs holds no more than the source (root's exec does not bring
    /// the full set back).
    #[test]
    fn a_program_run_by_a_confined_thread_inherits_no_more() {
        let status = std::thread::spawn(|| {
            confine(needs("firewall")).unwrap();
            let out = std::process::Command::new("/bin/cat").arg("/proc/self/status").output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        })
        .join()
        .unwrap();
        let admin = CapabilitySet::NET_ADMIN.bits();
        assert_eq!(status_field(&status, "CapEff:"), admin, "{status}");
        assert_eq!(status_field(&status, "CapBnd:"), admin, "{status}");
    }
}
