//! Logins from the host's authentication logs, followed as they grow and across rotation, read by
//! the same parser as `cordon-agent logs` ([`crate::logs::LineReader`]: sshd, PAM, su, sudo, login,
//! gdm...), or from the systemd journal (`journalctl --follow -o json`, the auth and authpriv
//! facilities) where no log file exists.
//!
//! A followed file is known by its device and inode. When the path names another file (logrotate
//! renamed it and a new one was made), the old file is read to its end first, through the handle
//! still open, then the new one from its start; a file that shrank (copytruncate) is read again from
//! its start. Each file's position is kept in the agent's state directory, so a restart resumes
//! where the last run stopped, in the rotated file (`PATH.1`) when the log rotated meanwhile; a log
//! seen for the first time is followed from its end.

use serde_json::{Value, json};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bytes read from one file per poll at most (the rest at the next poll).
const MAX_READ: u64 = 8 << 20;
/// A line longer than this is cut.
const MAX_LINE: usize = 64 << 10;

/// The default logs: Debian's and Red Hat's.
pub const DEFAULT_LOGS: [&str; 2] = ["/var/log/auth.log", "/var/log/secure"];

/// Where a followed file was, as the state file keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Bytes read.
    pub offset: u64,
}

/// What following did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TailStats {
    /// Lines read.
    pub lines: u64,
    /// Authentication events made.
    pub events: u64,
    /// Rotations followed (a new file at the path).
    pub rotations: u64,
    /// Files that shrank and were read again from the start.
    pub truncations: u64,
}

/// One followed log file.
pub struct Tail {
    path: PathBuf,
    file: Option<BufReader<File>>,
    pos: Position,
    partial: Vec<u8>,
    reader: crate::logs::LineReader,
    host: String,
    /// What it did.
    pub stats: TailStats,
}

impl Tail {
    /// Follows `path` from `saved` (the state file's position), else from the end of the file.
    /// Lines of a rotated file the last run did not finish come first (see [`Tail::resume`]).
    pub fn open(path: &Path, saved: Option<Position>, host: &str) -> (Tail, Vec<Value>) {
        let year = chrono::Datelike::year(&chrono::Utc::now());
        let mut t = Tail {
            path: path.to_owned(),
            file: None,
            pos: Position::default(),
            partial: Vec::new(),
            reader: crate::logs::LineReader::new(year),
            host: host.to_owned(),
            stats: TailStats::default(),
        };
        let early = t.resume(saved);
        (t, early)
    }

    /// Where the last run stopped: in this file, in the rotated `PATH.1`, or nowhere known (then
    /// from the current file's end).
    fn resume(&mut self, saved: Option<Position>) -> Vec<Value> {
        let Some(cur) = std::fs::metadata(&self.path).ok() else { return Vec::new() };
        match saved {
            Some(s) if (s.dev, s.ino) == (cur.dev(), cur.ino()) && s.offset <= cur.len() => {
                self.attach(s.offset);
                Vec::new()
            }
            Some(s) => {
                let mut events = Vec::new();
                let rotated = PathBuf::from(format!("{}.1", self.path.display()));
                if let Ok(m) = std::fs::metadata(&rotated)
                    && (m.dev(), m.ino()) == (s.dev, s.ino)
                    && let Ok(mut f) = File::open(&rotated)
                    && f.seek(SeekFrom::Start(s.offset)).is_ok()
                {
                    self.file = Some(BufReader::new(f));
                    events = self.drain();
                    self.stats.rotations += 1;
                }
                self.attach(0);
                events
            }
            None => {
                self.attach(cur.len());
                Vec::new()
            }
        }
    }

    /// Opens the file at the path, positioned at `offset`.
    fn attach(&mut self, offset: u64) {
        self.file = None;
        self.partial.clear();
        if let Ok(mut f) = File::open(&self.path)
            && let Ok(m) = f.metadata()
            && f.seek(SeekFrom::Start(offset)).is_ok()
        {
            self.pos = Position { dev: m.dev(), ino: m.ino(), offset };
            self.file = Some(BufReader::new(f));
        }
    }

    /// Where it is now (for the state file).
    pub fn position(&self) -> Position {
        self.pos
    }

    /// The path it follows.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The events of what was written since the last poll.
    pub fn poll(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        match std::fs::metadata(&self.path) {
            Ok(_) if self.file.is_none() => self.attach(0), // the log appeared: all of it is new
            Ok(m) if (m.dev(), m.ino()) != (self.pos.dev, self.pos.ino) => {
                out.extend(self.drain()); // the rotated file's last lines, through the open handle
                self.flush_partial(&mut out);
                self.stats.rotations += 1;
                self.attach(0);
            }
            Ok(m) if m.len() < self.pos.offset => {
                self.stats.truncations += 1;
                self.attach(0);
            }
            _ => {}
        }
        out.extend(self.drain());
        out
    }

    /// Reads the open file to its end (within [`MAX_READ`]), line by line.
    fn drain(&mut self) -> Vec<Value> {
        let mut lines = Vec::new();
        if let Some(f) = self.file.as_mut() {
            let mut limited = f.by_ref().take(MAX_READ);
            loop {
                let before = self.partial.len();
                match limited.read_until(b'\n', &mut self.partial) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        self.pos.offset += n as u64;
                        if self.partial.last() != Some(&b'\n') {
                            if self.partial.len() > MAX_LINE {
                                self.partial.truncate(MAX_LINE.max(before));
                            }
                            break; // a line still being written
                        }
                        let end = self.partial.len().min(MAX_LINE);
                        lines.push(String::from_utf8_lossy(&self.partial[..end]).into_owned());
                        self.partial.clear();
                    }
                }
            }
        }
        let mut out = Vec::new();
        for line in lines {
            self.line(&line, &mut out);
        }
        out
    }

    /// A rotated file's last line without its newline is a line too.
    fn flush_partial(&mut self, out: &mut Vec<Value>) {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.line(&line, out);
        }
    }

    fn line(&mut self, line: &str, out: &mut Vec<Value>) {
        self.stats.lines += 1;
        for mut e in self.reader.events(line) {
            if e["host"]["name"].as_str().is_none_or(str::is_empty) {
                e["host"]["name"] = json!(self.host);
            }
            e["host"]["os"] = json!({"type": "linux", "family": "linux"});
            e["log"]["file"] = json!({"path": self.path.display().to_string()});
            self.stats.events += 1;
            out.push(e);
        }
    }
}

/// The state file's positions, by path.
pub fn load_positions(state: &Path) -> std::collections::HashMap<PathBuf, Position> {
    std::fs::read(state).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Writes the positions (to a temporary file renamed into place).
pub fn save_positions(state: &Path, tails: &[Tail]) {
    let map: std::collections::HashMap<&Path, Position> =
        tails.iter().map(|t| (t.path.as_path(), t.pos)).collect();
    let tmp = state.with_extension("tmp");
    if std::fs::write(&tmp, serde_json::to_vec(&map).unwrap_or_default()).is_ok() {
        let _ = std::fs::rename(&tmp, state);
    }
}

/// `journalctl --follow -o json` for the auth and authpriv facilities, its lines handed over by a
/// reader thread (the journal when no log file is there).
pub struct Journal {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    reader: crate::logs::LineReader,
}

impl Journal {
    /// Starts following the journal from now; `None` when there is no journal to follow.
    pub fn open() -> Option<Journal> {
        if !Path::new("/run/systemd/journal").exists() {
            return None;
        }
        let mut child = std::process::Command::new("journalctl")
            .args(["--follow", "--output=json", "--lines=0", "SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let out = child.stdout.take()?;
        let (tx, lines) = std::sync::mpsc::sync_channel(10_000);
        std::thread::Builder::new()
            .name("cordon-journal".into())
            .spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        let year = chrono::Datelike::year(&chrono::Utc::now());
        Some(Journal { child, lines, reader: crate::logs::LineReader::new(year) })
    }

    /// The events of the journal lines read since the last poll.
    pub fn poll(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            out.extend(self.reader.events(&line));
        }
        out
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn failed(n: usize) -> String {
        format!(
            "Dec  4 10:00:{:02} web-1 sshd[{}]: Failed password for root from 203.0.113.7 port {} ssh2\n",
            n % 60,
            100 + n,
            40000 + n
        )
    }

    fn append(p: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    #[test]
    fn a_log_is_followed_across_rotation_truncation_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        append(&log, &failed(0)); // before the agent: not read
        let (mut t, early) = Tail::open(&log, None, "h");
        assert!(early.is_empty());
        append(&log, &(failed(1) + &failed(2)));
        append(&log, "Dec  4 10:00:03 web-1 sshd[103]: Failed password for root from 203.0.113.7 port 40003");
        assert_eq!(t.poll().len(), 2, "the half-written line waits");
        append(&log, " ssh2\n");
        assert_eq!(t.poll().len(), 1);
        // logrotate: renamed, the writer adds to the old file once more, then a new file.
        std::fs::rename(&log, dir.path().join("auth.log.1")).unwrap();
        append(&dir.path().join("auth.log.1"), &failed(4));
        append(&log, &failed(5));
        let got = t.poll();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[0]["process"]["pid"].as_u64(), got[1]["process"]["pid"].as_u64()),
            (Some(104), Some(105))
        );
        assert_eq!(got[0]["log"]["file"]["path"], log.display().to_string());
        assert_eq!(got[0]["log"]["source"], "syslog", "the reader's own log fields stay");
        assert_eq!(t.stats.rotations, 1);
        // copytruncate.
        std::fs::write(&log, "").unwrap();
        assert!(t.poll().is_empty());
        append(&log, &failed(6));
        assert_eq!(t.poll().len(), 1);
        assert_eq!(t.stats.truncations, 1);
        // A restart after another rotation: the rest of the old file, then the new one.
        let saved = t.position();
        append(&log, &failed(7));
        std::fs::rename(&log, dir.path().join("auth.log.1")).unwrap();
        append(&log, &failed(8));
        let (mut t2, early) = Tail::open(&log, Some(saved), "h");
        assert_eq!(early.len(), 1, "line 7, from the rotated file");
        assert_eq!(t2.poll().len(), 1, "line 8");
        assert!(early[0]["event"]["outcome"] == "failure" && early[0]["host"]["os"]["type"] == "linux");
        let state = dir.path().join("tails.json");
        save_positions(&state, &[t2]);
        assert_eq!(load_positions(&state)[&log].offset, failed(8).len() as u64);
    }
}
