//! A syslog line's header, in the layouts Linux hosts write their authentication logs in:
//!
//! - BSD (RFC 3164, the traditional file format): `Jun 14 15:16:01 combo sshd(pam_unix)[19939]: msg`,
//!   the day space-padded or not; also after a collector's own prefix (`- 1131566461 2005.11.09 dn228
//!   Nov 9 12:01:01 dn228/dn228 crond[2916]: msg`);
//! - RFC 3339 timestamps (rsyslog's high-precision file format, the default on current Debian):
//!   `2024-01-08T10:00:00.123456+01:00 web-1 sshd[811]: msg`;
//! - RFC 5424: `<38>1 2024-01-08T10:00:00.123Z web-1 sshd 811 - - msg`.
//!
//! BSD timestamps carry no year and no zone: the caller gives the year, and times are read as UTC.

/// The parts of a line the authentication reader needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// RFC 3339, UTC.
    pub time: String,
    /// The month (1-12) as written, for the year's rollover in BSD logs (`None` otherwise).
    pub bsd_month: Option<u32>,
    /// The host.
    pub host: &'a str,
    /// The program (`sshd`, `sshd(pam_unix)`, `sudo`).
    pub program: &'a str,
    /// Its process id, when written.
    pub pid: Option<i64>,
    /// The message.
    pub msg: &'a str,
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// How far into a line a BSD timestamp is looked for (a collector's prefix before it).
const PREFIX_BYTES: usize = 64;

/// The header of `line`, in any of the layouts above.
pub fn header(line: &str, year: i32) -> Option<Header<'_>> {
    if line.starts_with('<') {
        return rfc5424(line);
    }
    if line.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && let Some(h) = rfc3339(line)
    {
        return Some(h);
    }
    bsd(line, year).or_else(|| bsd_after_prefix(line, year))
}

/// `program[pid]: message` or `program: message`.
fn tagged(rest: &str) -> Option<(&str, Option<i64>, &str)> {
    let (tag, msg) = rest.split_once(": ")?;
    if tag.is_empty() || tag.contains(' ') {
        return None;
    }
    Some(match tag.split_once('[') {
        Some((p, pid)) => (p, pid.trim_end_matches(']').parse::<i64>().ok(), msg),
        None => (tag, None, msg),
    })
}

/// `Mmm dd hh:mm:ss host tag: msg` at the start of `line`.
fn bsd(line: &str, year: i32) -> Option<Header<'_>> {
    let month = MONTHS.iter().position(|m| line.starts_with(m))? as u32 + 1;
    let rest = line.get(3..)?.strip_prefix(' ')?.trim_start();
    let (day, rest) = rest.split_once(' ')?;
    let day: u32 = day.parse().ok()?;
    let (clock, rest) = rest.split_once(' ')?;
    let (host, rest) = rest.trim_start().split_once(' ')?;
    let (program, pid, msg) = tagged(rest)?;
    let time = format!("{year:04}-{month:02}-{day:02}T{clock}Z");
    schemas::time::parse_rfc3339_micros(&time)?;
    Some(Header { time, bsd_month: Some(month), host, program, pid, msg })
}

/// A BSD header after a collector's prefix: the first month name that starts a word within
/// [`PREFIX_BYTES`] and reads as a whole header.
fn bsd_after_prefix(line: &str, year: i32) -> Option<Header<'_>> {
    let head = &line[..line.floor_char_boundary(PREFIX_BYTES)];
    head.char_indices()
        .filter(|(i, _)| *i > 0 && head.as_bytes()[i - 1] == b' ')
        .filter(|(i, _)| MONTHS.iter().any(|m| head[*i..].starts_with(m)))
        .find_map(|(i, _)| bsd(&line[i..], year))
}

/// `2024-01-08T10:00:00.123456+01:00 host tag: msg`.
fn rfc3339(line: &str) -> Option<Header<'_>> {
    let (ts, rest) = line.split_once(' ')?;
    let micros = schemas::time::parse_rfc3339_micros(ts)?;
    let (host, rest) = rest.split_once(' ')?;
    let (program, pid, msg) = tagged(rest)?;
    Some(Header { time: schemas::time::format_micros(micros), bsd_month: None, host, program, pid, msg })
}

/// `<PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID STRUCTURED-DATA MSG` (`-` for a nil field).
fn rfc5424(line: &str) -> Option<Header<'_>> {
    let (_, rest) = line.strip_prefix('<')?.split_once('>')?;
    let rest = rest.strip_prefix("1 ")?;
    let mut parts = rest.splitn(6, ' ');
    let micros = schemas::time::parse_rfc3339_micros(parts.next()?)?;
    let host = parts.next()?;
    let program = parts.next()?;
    let pid = parts.next()?.parse::<i64>().ok();
    let _msgid = parts.next()?;
    let msg = structured_data_end(parts.next()?)?;
    let host = if host == "-" { "" } else { host };
    Some(Header { time: schemas::time::format_micros(micros), bsd_month: None, host, program, pid, msg })
}

/// The message after RFC 5424's structured data (`-` or `[id k="v"]...`), without a UTF-8 BOM.
fn structured_data_end(s: &str) -> Option<&str> {
    let rest = if let Some(r) = s.strip_prefix('-') {
        r
    } else if s.starts_with('[') {
        // Elements end at a `]` outside a quoted value (values escape `"`, `\` and `]`).
        let (mut quoted, mut escaped, mut end) = (false, false, None);
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = !quoted,
                ']' if !quoted && !s[i + 1..].starts_with('[') => {
                    end = Some(i + 1);
                    break;
                }
                _ => {}
            }
        }
        &s[end?..]
    } else {
        return None;
    };
    Some(rest.trim_start_matches(' ').trim_start_matches('\u{feff}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_gives_the_same_parts() {
        let want = |time: &str, host: &str| (time.to_owned(), host.to_owned(), "sshd".to_owned(), Some(811));
        let parts = |h: Header<'_>| (h.time, h.host.to_owned(), h.program.to_owned(), h.pid);
        let cases = [
            ("Jan  8 10:00:00 web-1 sshd[811]: Failed password", "2024-01-08T10:00:00Z", "web-1"),
            ("Jan 8 10:00:00 web-1 sshd[811]: Failed password", "2024-01-08T10:00:00Z", "web-1"),
            (
                "2024-01-08T11:00:00.250000+01:00 web-1 sshd[811]: Failed password",
                "2024-01-08T10:00:00.250000Z",
                "web-1",
            ),
            (
                "<38>1 2024-01-08T10:00:00.000Z web-1 sshd 811 - - Failed password",
                "2024-01-08T10:00:00.000000Z",
                "web-1",
            ),
            (
                "<38>1 2024-01-08T10:00:00Z web-1 sshd 811 ID47 [origin ip=\"10.0.0.1\" x=\"a]b\"][meta seq=\"1\"] \u{feff}Failed password",
                "2024-01-08T10:00:00.000000Z",
                "web-1",
            ),
            (
                "- 1131566461 2005.11.09 dn228 Jan 8 10:00:00 dn228/dn228 sshd[811]: Failed password",
                "2024-01-08T10:00:00Z",
                "dn228/dn228",
            ),
        ];
        for (line, time, host) in cases {
            let h = header(line, 2024).unwrap_or_else(|| panic!("no header in {line}"));
            assert_eq!(h.msg, "Failed password", "{line}");
            assert_eq!(parts(h), want(time, host), "{line}");
        }
        assert_eq!(header("Jan  8 10:00:00 web-1 sshd[811]: x", 2024).unwrap().bsd_month, Some(1));
    }

    #[test]
    fn lines_without_a_header_have_none() {
        for line in [
            "",
            "hello world",
            "Jan",
            "Janet 8 10:00:00 a b: c",
            "<38>1 yesterday h a 1 - - m",
            "2024-13-01T00:00:00Z h a: m",
        ] {
            assert_eq!(header(line, 2024), None, "{line}");
        }
    }
}
