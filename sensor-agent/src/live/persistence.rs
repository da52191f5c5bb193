//! The persistence locations Linux detections watch, and what a change to one of them was: each
//! file's hash and (for text up to [`MAX_TEXT`]) its content are remembered, so a change is reported
//! with the hash before and after and a line diff.
//!
//! The locations: cron (system and user), systemd units and timers (system and user), SSH
//! `authorized_keys` (root's and each login user's), the dynamic linker's preload and search paths,
//! `rc.local` and init scripts, shell profiles (system and user), sudoers and doas, PAM, kernel
//! modules loaded at boot, and the account files.

use super::files::Target;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Text files larger than this are remembered by hash only.
pub const MAX_TEXT: u64 = 256 << 10;
/// A diff longer than this is cut (and says so).
const MAX_DIFF: usize = 8 << 10;

/// The persistence locations on the host under `root` (`/` on a live host).
pub fn locations(root: &Path) -> Vec<Target> {
    let mut out = Vec::new();
    let mut add = |kind: &'static str, rel: &str, recursive: bool| {
        out.push(Target { path: root.join(rel.trim_start_matches('/')), kind: Some(kind), recursive });
    };
    for f in ["/etc/crontab", "/etc/anacrontab", "/etc/cron.allow", "/etc/cron.deny"] {
        add("cron", f, false);
    }
    for d in ["/etc/cron.d", "/etc/cron.hourly", "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly"] {
        add("cron", d, false);
    }
    add("cron", "/var/spool/cron", true);
    for d in ["/etc/systemd/system", "/etc/systemd/user", "/usr/lib/systemd/system", "/usr/lib/systemd/user"]
    {
        add("systemd", d, true);
    }
    for f in ["/etc/ld.so.preload", "/etc/ld.so.conf"] {
        add("dynamic_linker", f, false);
    }
    add("dynamic_linker", "/etc/ld.so.conf.d", false);
    add("rc", "/etc/rc.local", false);
    add("rc", "/etc/init.d", false);
    for f in ["/etc/profile", "/etc/bash.bashrc", "/etc/environment", "/etc/zsh/zshrc"] {
        add("shell_profile", f, false);
    }
    add("shell_profile", "/etc/profile.d", false);
    for f in ["/etc/sudoers", "/etc/doas.conf"] {
        add("sudoers", f, false);
    }
    add("sudoers", "/etc/sudoers.d", false);
    add("pam", "/etc/pam.d", false);
    add("ssh", "/etc/ssh/sshd_config", false);
    add("ssh", "/etc/ssh/sshd_config.d", false);
    add("kernel_module", "/etc/modules", false);
    for d in ["/etc/modules-load.d", "/etc/modprobe.d", "/usr/lib/modules-load.d"] {
        add("kernel_module", d, false);
    }
    for f in ["/etc/passwd", "/etc/shadow", "/etc/group"] {
        add("account", f, false);
    }
    for home in homes(root) {
        for f in [".ssh/authorized_keys", ".ssh/authorized_keys2"] {
            out.push(Target { path: home.join(f), kind: Some("ssh_authorized_keys"), recursive: false });
        }
        for f in [".bashrc", ".bash_profile", ".bash_login", ".profile", ".bash_logout", ".zshrc"] {
            out.push(Target { path: home.join(f), kind: Some("shell_profile"), recursive: false });
        }
        out.push(Target { path: home.join(".config/systemd/user"), kind: Some("systemd"), recursive: true });
    }
    dedupe(out)
}

/// The same directory reached twice (`/lib` a link to `/usr/lib`) is watched once.
fn dedupe(targets: Vec<Target>) -> Vec<Target> {
    let mut seen = std::collections::HashSet::new();
    targets
        .into_iter()
        .filter(|t| {
            let real = std::fs::canonicalize(&t.path).unwrap_or_else(|_| t.path.clone());
            seen.insert(real)
        })
        .collect()
}

/// Root's home and each login user's (uid 1000 and above, with a home that exists), from the
/// host's passwd.
pub fn homes(root: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let mut out = vec![root.join("root")];
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let (Some(uid), Some(home)) = (f.get(2).and_then(|u| u.parse::<u32>().ok()), f.get(5)) else {
            continue;
        };
        if (1000..65534).contains(&uid) && home.starts_with('/') && *home != "/" {
            let h = root.join(home.trim_start_matches('/'));
            if h.is_dir() && !out.contains(&h) {
                out.push(h);
            }
        }
    }
    out
}

/// What a persistence file held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Its SHA-256 (none for a file too large or unreadable).
    pub sha256: Option<String>,
    /// Its text, when it is UTF-8 and small.
    pub text: Option<String>,
}

/// Files whose changes are reported by hash only: their text (password hashes) must not leave the
/// host.
const SECRET_FILES: [&str; 4] = ["shadow", "gshadow", "shadow-", "gshadow-"];

impl Snapshot {
    /// The regular file at `path` now (`None`: not a regular file, or gone).
    pub fn read(path: &Path) -> Option<Snapshot> {
        let m = std::fs::symlink_metadata(path).ok()?;
        if !m.is_file() {
            return None;
        }
        let secret = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| SECRET_FILES.contains(&n));
        if m.len() > MAX_TEXT || secret {
            return Some(Snapshot { sha256: super::hashes::sha256_of(path), text: None });
        }
        let bytes = std::fs::read(path).ok()?;
        let sha256 = Some(super::hashes::sha256_hex(&bytes));
        Some(Snapshot { sha256, text: String::from_utf8(bytes).ok() })
    }
}

/// Remembered persistence files.
#[derive(Default)]
pub struct Snapshots {
    files: HashMap<PathBuf, Snapshot>,
}

impl Snapshots {
    /// Remembers what `path` holds now, without reporting it.
    pub fn learn(&mut self, path: &Path) {
        if let Some(s) = Snapshot::read(path) {
            self.files.insert(path.to_owned(), s);
        }
    }

    /// The change at `path` (renamed from `from`, when it was), as the event's `cordon.persistence`
    /// object, and remembers the new content.
    pub fn change(
        &mut self,
        kind: &str,
        path: &Path,
        from: Option<&Path>,
        deleted: bool,
    ) -> serde_json::Value {
        let before = match from {
            Some(f) => self.files.remove(f),
            None => self.files.get(path).cloned(),
        };
        let after = if deleted { None } else { Snapshot::read(path) };
        match &after {
            Some(a) => self.files.insert(path.to_owned(), a.clone()),
            None => self.files.remove(path),
        };
        let text = |s: &Option<Snapshot>| s.as_ref().and_then(|s| s.text.clone());
        let diff = match (text(&before), text(&after)) {
            (b, a) if b.is_some() || a.is_some() => {
                Some(diff(b.as_deref().unwrap_or(""), a.as_deref().unwrap_or("")))
            }
            _ => None,
        };
        serde_json::json!({
            "kind": kind,
            "before_sha256": before.and_then(|b| b.sha256),
            "after_sha256": after.and_then(|a| a.sha256),
            "diff": diff,
        })
    }

    /// The remembered files under `dir` (or equal to it).
    pub fn under(&self, dir: &Path) -> Vec<PathBuf> {
        self.files.keys().filter(|p| p.starts_with(dir)).cloned().collect()
    }

    /// Whether `path` holds what was remembered.
    pub fn unchanged(&self, path: &Path) -> bool {
        match (self.files.get(path), Snapshot::read(path)) {
            (Some(a), Some(b)) => a.sha256 == b.sha256,
            (None, None) => true,
            _ => false,
        }
    }

    /// Whether `path` is remembered.
    pub fn knows(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }
}

/// A line diff of `before` and `after`: lines only in `before` as `-line`, only in `after` as
/// `+line`, in order; the common head and tail are left out, and a long diff is cut.
pub fn diff(before: &str, after: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..].iter().rev().zip(b[head..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut out = String::new();
    let mut push = |sign: char, line: &str| {
        if out.len() < MAX_DIFF {
            out.push(sign);
            out.push_str(line);
            out.push('\n');
        }
    };
    if a.len() * b.len() > 4_000_000 {
        a.iter().for_each(|l| push('-', l));
        b.iter().for_each(|l| push('+', l));
    } else {
        for (sign, line) in lcs_script(a, b) {
            push(sign, line);
        }
    }
    if out.len() >= MAX_DIFF {
        out.truncate(out.floor_char_boundary(MAX_DIFF));
        out.push_str("\n[diff cut]\n");
    }
    out
}

/// The edit script of the longest common subsequence of two line lists.
fn lcs_script<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(char, &'a str)> {
    let (n, m) = (a.len(), b.len());
    let mut t = vec![0u32; (n + 1) * (m + 1)];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i * (m + 1) + j] = if a[i] == b[j] {
                t[(i + 1) * (m + 1) + j + 1] + 1
            } else {
                t[(i + 1) * (m + 1) + j].max(t[i * (m + 1) + j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < n && (j == m || t[(i + 1) * (m + 1) + j] >= t[i * (m + 1) + j + 1]) {
            out.push(('-', a[i]));
            i += 1;
        } else {
            out.push(('+', b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_shows_the_changed_lines_only() {
        assert_eq!(diff("a\nb\nc\n", "a\nB\nc\nd\n"), "-b\n+B\n+d\n");
        assert_eq!(diff("", "ssh-ed25519 AAAA x@y\n"), "+ssh-ed25519 AAAA x@y\n");
        assert_eq!(diff("same\n", "same\n"), "");
        let long: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        let d = diff("", &long);
        assert!(d.len() < 9_000 && d.ends_with("[diff cut]\n"), "{}", d.len());
    }

    #[test]
    fn locations_cover_the_users_keys_and_the_system_persistence_paths() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::create_dir_all(root.path().join("home/alice")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n\
             daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nbob:x:1001:1001::/home/bob:/bin/sh\n",
        )
        .unwrap();
        let l = locations(root.path());
        let has =
            |rel: &str, kind: &str| l.iter().any(|t| t.path == root.path().join(rel) && t.kind == Some(kind));
        assert!(has("home/alice/.ssh/authorized_keys", "ssh_authorized_keys"));
        assert!(has("root/.ssh/authorized_keys", "ssh_authorized_keys"));
        assert!(!l.iter().any(|t| t.path.starts_with(root.path().join("home/bob"))), "bob has no home here");
        assert!(
            !l.iter().any(|t| t.path.starts_with(root.path().join("usr/sbin"))),
            "system users are left out"
        );
        for (rel, kind) in [
            ("etc/cron.d", "cron"),
            ("var/spool/cron", "cron"),
            ("etc/systemd/system", "systemd"),
            ("home/alice/.config/systemd/user", "systemd"),
            ("etc/ld.so.preload", "dynamic_linker"),
            ("etc/rc.local", "rc"),
            ("etc/sudoers.d", "sudoers"),
            ("etc/pam.d", "pam"),
            ("etc/modules-load.d", "kernel_module"),
            ("home/alice/.bashrc", "shell_profile"),
        ] {
            assert!(has(rel, kind), "{rel}");
        }
    }

    #[test]
    fn a_change_reports_the_hashes_before_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("authorized_keys");
        std::fs::write(&f, "ssh-ed25519 AAAA a@b\n").unwrap();
        let mut s = Snapshots::default();
        s.learn(&f);
        std::fs::write(&f, "ssh-ed25519 AAAA a@b\nssh-rsa BBBB evil@c\n").unwrap();
        assert!(!s.unchanged(&f));
        let c = s.change("ssh_authorized_keys", &f, None, false);
        assert_eq!(c["diff"], "+ssh-rsa BBBB evil@c\n");
        assert_ne!(c["before_sha256"], c["after_sha256"]);
        assert!(s.unchanged(&f));
        let shadow = dir.path().join("shadow");
        std::fs::write(&shadow, "root:$y$j9T$secret:19000:0:99999:7:::\n").unwrap();
        let c = s.change("account", &shadow, None, false);
        assert!(c["diff"].is_null() && c["after_sha256"].is_string(), "password hashes never leave: {c}");
        std::fs::remove_file(&f).unwrap();
        let gone = s.change("ssh_authorized_keys", &f, None, true);
        assert!(gone["after_sha256"].is_null() && gone["diff"].as_str().unwrap().starts_with("-ssh-ed25519"));
    }
}
