//! Asset inventory, periodic: the host (OS, kernel, architecture, CPU, memory, the machine's vendor
//! and model), its installed packages (dpkg's status file, else `rpm -qa`), its users and groups, and
//! removable block devices attached and removed. The first inventory reports everything as
//! `present`; later ones only what changed (`installed`, `removed`, `upgraded` with the version
//! before; `added` and `removed` users, groups and devices), so a host's inventory costs events only
//! when it changes. Devices are looked at every [`DEVICE_POLL`], the rest every inventory interval.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often block devices are looked at.
pub const DEVICE_POLL: Duration = Duration::from_secs(5);

/// Installed packages: name -> (version, architecture).
type Packages = BTreeMap<String, (String, String)>;

/// What the last inventory found, to report changes against.
#[derive(Default)]
pub struct Inventory {
    root: PathBuf,
    host: String,
    packages: Option<Packages>,
    users: Option<BTreeMap<String, String>>,
    groups: Option<BTreeMap<String, String>>,
    devices: Option<BTreeMap<String, Value>>,
}

impl Inventory {
    /// Takes inventories of the host under `root` (`/` live).
    pub fn new(root: &Path, host: &str) -> Self {
        Self { root: root.to_owned(), host: host.to_owned(), ..Default::default() }
    }

    fn event(&self, category: &str, action: &str) -> Value {
        json!({
            "@timestamp": schemas::time::format_micros(schemas::time::now_micros()),
            "event": {"kind": "state", "category": category, "action": action, "module": "cordon-agent",
                      "dataset": "cordon.inventory"},
            "host": {"name": self.host, "os": {"type": "linux", "family": "linux"}},
        })
    }

    /// A full round: the host, then what changed in packages, users and groups.
    pub fn take(&mut self) -> Vec<Value> {
        let mut out = vec![self.host_event()];
        out.extend(self.packages());
        out.extend(self.accounts());
        out
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(rel)).ok().map(|s| s.trim().to_owned())
    }

    /// OS, kernel, architecture, CPU, memory, vendor and model.
    fn host_event(&self) -> Value {
        let os_release: BTreeMap<String, String> = self
            .read("etc/os-release")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        let cpuinfo = self.read("proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()));
        let meminfo = self.read("proc/meminfo").unwrap_or_default();
        let mem_kib: Option<u64> = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok());
        let mut e = self.event("host", "inventory");
        e["host"]["os"] = json!({
            "type": "linux", "family": "linux",
            "name": os_release.get("NAME"), "version": os_release.get("VERSION_ID"),
            "full": os_release.get("PRETTY_NAME"), "platform": os_release.get("ID"),
            "kernel": self.read("proc/sys/kernel/osrelease"),
        });
        e["host"]["architecture"] = json!(std::env::consts::ARCH);
        e["host"]["hostname"] = json!(self.read("proc/sys/kernel/hostname"));
        e["host"]["cpu"] =
            json!({"count": cpuinfo.lines().filter(|l| l.starts_with("processor")).count(), "model": model});
        e["host"]["memory"] = json!({"total": mem_kib.map(|k| k * 1024)});
        e["host"]["hardware"] = json!({"vendor": self.read("sys/class/dmi/id/sys_vendor"),
                                       "model": self.read("sys/class/dmi/id/product_name")});
        e
    }

    /// Installed packages: (name -> (version, architecture)), from dpkg or rpm.
    fn installed(&self) -> Option<(&'static str, Packages)> {
        if let Some(status) = self.read("var/lib/dpkg/status") {
            return Some(("deb", dpkg_installed(&status)));
        }
        let rpm = std::process::Command::new("rpm")
            .args(["-qa", "--qf", "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\n"])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&rpm.stdout);
        let map = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some((f.next()?.to_owned(), (f.next()?.to_owned(), f.next().unwrap_or_default().to_owned())))
            })
            .collect();
        Some(("rpm", map))
    }

    fn packages(&mut self) -> Vec<Value> {
        let Some((kind, now)) = self.installed() else { return Vec::new() };
        let mut out = Vec::new();
        let pkg =
            |s: &Self, action: &str, name: &str, (version, arch): &(String, String), before: Option<&str>| {
                let mut e = s.event("package", action);
                e["package"] = json!({"name": name, "version": version, "architecture": arch, "type": kind});
                if let Some(b) = before {
                    e["package"]["previous_version"] = json!(b);
                }
                e
            };
        match &self.packages {
            None => out.extend(now.iter().map(|(n, v)| pkg(self, "present", n, v, None))),
            Some(before) => {
                for (n, v) in &now {
                    match before.get(n) {
                        None => out.push(pkg(self, "installed", n, v, None)),
                        Some(b) if b.0 != v.0 => out.push(pkg(self, "upgraded", n, v, Some(&b.0))),
                        _ => {}
                    }
                }
                for (n, v) in before.iter().filter(|(n, _)| !now.contains_key(*n)) {
                    out.push(pkg(self, "removed", n, v, None));
                }
            }
        }
        self.packages = Some(now);
        out
    }

    /// Users and groups from the account files: (name -> id).
    fn accounts(&mut self) -> Vec<Value> {
        let table = |rel: &str| -> BTreeMap<String, String> {
            self.read(rel)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    Some(((*f.first()?).to_owned(), (*f.get(2)?).to_owned()))
                })
                .collect()
        };
        let (users, groups) = (table("etc/passwd"), table("etc/group"));
        let mut out = Vec::new();
        for (what, now, before) in [("user", &users, &self.users), ("group", &groups, &self.groups)] {
            let ev = |action: &str, name: &str, id: &str| {
                let mut e = self.event("iam", &format!("{what}-{action}"));
                e[what] = json!({"name": name, "id": id});
                e
            };
            match before {
                None => out.extend(now.iter().map(|(n, id)| ev("present", n, id))),
                Some(b) => {
                    out.extend(
                        now.iter().filter(|(n, _)| !b.contains_key(*n)).map(|(n, id)| ev("added", n, id)),
                    );
                    out.extend(
                        b.iter().filter(|(n, _)| !now.contains_key(*n)).map(|(n, id)| ev("removed", n, id)),
                    );
                }
            }
        }
        (self.users, self.groups) = (Some(users), Some(groups));
        out
    }

    /// Removable block devices attached or removed since the last look (the first look reports
    /// those present).
    pub fn devices(&mut self) -> Vec<Value> {
        let now = removable_devices(&self.root.join("sys/block"));
        let mut out = Vec::new();
        let dev = |s: &Self, action: &str, d: &Value| {
            let mut e = s.event("host", action);
            e["cordon"] = json!({"device": d});
            e
        };
        match &self.devices {
            None => out.extend(now.values().map(|d| dev(self, "device-present", d))),
            Some(before) => {
                out.extend(
                    now.iter()
                        .filter(|(n, _)| !before.contains_key(*n))
                        .map(|(_, d)| dev(self, "device-attached", d)),
                );
                out.extend(
                    before
                        .iter()
                        .filter(|(n, _)| !now.contains_key(*n))
                        .map(|(_, d)| dev(self, "device-removed", d)),
                );
            }
        }
        self.devices = Some(now);
        out
    }
}

/// Packages dpkg says are installed: (name -> (version, architecture)).
pub fn dpkg_installed(status: &str) -> Packages {
    status
        .split("\n\n")
        .filter_map(|para| {
            let field =
                |k: &str| para.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(':').map(str::trim));
            field("Status").filter(|s| s.ends_with(" installed"))?;
            Some((
                field("Package")?.to_owned(),
                (field("Version")?.to_owned(), field("Architecture").unwrap_or_default().to_owned()),
            ))
        })
        .collect()
}

/// Block devices under `sys_block` marked removable, or on USB, with their vendor, model and size.
fn removable_devices(sys_block: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(sys_block).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        let read = |rel: &str| std::fs::read_to_string(p.join(rel)).ok().map(|s| s.trim().to_owned());
        let usb = std::fs::canonicalize(&p).is_ok_and(|r| r.to_string_lossy().contains("/usb"));
        if read("removable").as_deref() != Some("1") && !usb {
            continue;
        }
        let sectors: Option<u64> = read("size").and_then(|s| s.parse().ok());
        out.insert(
            name.clone(),
            json!({"name": name, "vendor": read("device/vendor"), "model": read("device/model"),
                   "size": sectors.map(|s| s * 512), "bus": if usb { "usb" } else { "other" }}),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn the_first_inventory_lists_everything_and_later_ones_what_changed() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "etc/os-release", "NAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID=\"12\"\n");
        write(r, "proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        write(r, "proc/meminfo", "MemTotal:       16384000 kB\n");
        let status = |ssh: &str| {
            format!(
                "Package: openssh-server\nStatus: install ok installed\nVersion: {ssh}\nArchitecture: amd64\n\n\
                     Package: old-tool\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
                     Package: curl\nStatus: install ok installed\nVersion: 7.88.1-10\nArchitecture: amd64\n"
            )
        };
        write(r, "var/lib/dpkg/status", &status("1:9.2p1-2"));
        write(r, "etc/passwd", "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n");
        write(r, "etc/group", "root:x:0:\n");
        write(r, "sys/block/sdb/removable", "1\n");
        write(r, "sys/block/sdb/size", "2048\n");
        write(r, "sys/block/sda/removable", "0\n");
        let mut inv = Inventory::new(r, "h");
        let first = inv.take();
        assert_eq!(first[0]["host"]["os"]["kernel"], "6.1.0-18-amd64");
        assert_eq!(
            (first[0]["host"]["os"]["platform"].as_str(), first[0]["host"]["memory"]["total"].as_u64()),
            (Some("debian"), Some(16_384_000 * 1024))
        );
        let actions = |v: &[Value]| {
            v.iter().skip(1).map(|e| e["event"]["action"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(
            actions(&first),
            ["present", "present", "user-present", "user-present", "group-present"],
            "config-files only is not installed"
        );
        assert_eq!(inv.devices().len(), 1);
        // An upgrade, a new user, a USB stick pulled.
        write(r, "var/lib/dpkg/status", &status("1:9.2p1-2+deb12u3"));
        write(
            r,
            "etc/passwd",
            "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\nbackdoor:x:0:0::/root:/bin/bash\n",
        );
        std::fs::remove_dir_all(r.join("sys/block/sdb")).unwrap();
        let later = inv.take();
        assert_eq!(actions(&later), ["upgraded", "user-added"]);
        assert_eq!(later[1]["package"]["previous_version"], "1:9.2p1-2");
        assert_eq!(
            (later[2]["user"]["name"].as_str(), later[2]["user"]["id"].as_str()),
            (Some("backdoor"), Some("0"))
        );
        let gone = inv.devices();
        assert_eq!((gone.len(), gone[0]["event"]["action"].as_str()), (1, Some("device-removed")));
        assert!(inv.take().len() == 1, "nothing changed: only the host");
    }
}
