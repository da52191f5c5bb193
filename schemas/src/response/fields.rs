//! The check of each field kind: a value comes back normalised, or with what is wrong with it.

use super::table::Kind;
use serde_json::{Value, json};

const MAX_TEXT: usize = 4096;
const MAX_SCRIPT: usize = 64 * 1024;
const MAX_LIST: usize = 64;
/// At most this many hashes in a scan's list.
pub const MAX_HASHES: usize = 10_000;
const ATTRIBUTES: &[&str] = &["readonly", "hidden", "system", "immutable", "append_only"];
const REG_TYPES: &[&str] =
    &["REG_SZ", "REG_EXPAND_SZ", "REG_MULTI_SZ", "REG_DWORD", "REG_QWORD", "REG_BINARY"];
const HIVES: &[&str] = &["HKLM", "HKCU", "HKU", "HKCR", "HKCC"];

/// Checks `v` as a `kind`; `Ok` holds the normalised value.
pub(crate) fn check(kind: Kind, v: &Value) -> Result<Value, String> {
    match kind {
        Kind::Text => text(v, MAX_TEXT).map(Value::from),
        Kind::Script => text(v, MAX_SCRIPT).map(Value::from),
        Kind::Name => name(v).map(Value::from),
        Kind::Names => list(v, name),
        Kind::NamesOrPaths => list(v, |x| path(x).or_else(|_| name(x))),
        Kind::Path => path(v).map(Value::from),
        Kind::RegKey => reg_key(v).map(Value::from),
        Kind::RegType => one_of(v, REG_TYPES).map(Value::from),
        Kind::Sha256 => sha256(v).map(Value::from),
        Kind::Sha256s => list_of(v, MAX_HASHES, sha256),
        Kind::Ip => ip(v).map(Value::from),
        Kind::Ips => list(v, ip),
        Kind::Port => int(v, 1, 65_535).map(Value::from),
        Kind::Protocol => one_of(v, &["tcp", "udp"]).map(Value::from),
        Kind::Secs => int(v, 1, 31_536_000).map(Value::from),
        Kind::Url => url(v).map(Value::from),
        Kind::Schedule => schedule(v).map(Value::from),
        Kind::Process => process(v),
        Kind::ProcOp => one_of(v, &["suspend", "resume"]).map(Value::from),
        Kind::DeviceOp => one_of(v, &["eject", "block"]).map(Value::from),
        Kind::Attributes => attributes(v),
        Kind::MbrData => mbr_data(v).map(Value::from),
        Kind::Bool => v.as_bool().map(Value::from).ok_or_else(|| "must be true or false".to_owned()),
    }
}

fn text(v: &Value, max: usize) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string")?;
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > max {
        return Err(format!("is {} bytes; at most {max}", s.len()));
    }
    if s.contains('\0') {
        return Err("must not contain NUL".into());
    }
    Ok(s.to_owned())
}

fn name(v: &Value) -> Result<String, String> {
    let s = text(v, 255)?;
    if s.contains(['/', '\\']) || s == "." || s == ".." {
        return Err(format!("{s:?} must be a name, without path separators"));
    }
    Ok(s)
}

fn path(v: &Value) -> Result<String, String> {
    let s = text(v, MAX_TEXT)?;
    let windows = s.len() > 2 && s.as_bytes()[0].is_ascii_alphabetic() && &s[1..3] == ":\\";
    if !(s.starts_with('/') || windows) {
        return Err(format!("{s:?} must be an absolute path (/... or C:\\...)"));
    }
    if s.split(['/', '\\']).any(|c| c == "..") {
        return Err(format!("{s:?} must not contain '..'"));
    }
    Ok(s)
}

fn list(v: &Value, each: impl Fn(&Value) -> Result<String, String>) -> Result<Value, String> {
    list_of(v, MAX_LIST, each)
}

fn list_of(v: &Value, max: usize, each: impl Fn(&Value) -> Result<String, String>) -> Result<Value, String> {
    let items = v.as_array().ok_or("must be a list")?;
    if items.is_empty() || items.len() > max {
        return Err(format!("must hold 1 to {max} items, holds {}", items.len()));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, x) in items.iter().enumerate() {
        out.push(each(x).map_err(|e| format!("item {i}: {e}"))?);
    }
    Ok(json!(out))
}

fn one_of(v: &Value, allowed: &[&str]) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string")?;
    let found = allowed.iter().find(|a| a.eq_ignore_ascii_case(s));
    found.map(|a| (*a).to_owned()).ok_or_else(|| format!("{s:?} is not one of {}", allowed.join(", ")))
}

fn int(v: &Value, min: i64, max: i64) -> Result<i64, String> {
    let n = v.as_i64().ok_or("must be a whole number")?;
    if !(min..=max).contains(&n) {
        return Err(format!("{n} is outside {min}-{max}"));
    }
    Ok(n)
}

fn reg_key(v: &Value) -> Result<String, String> {
    let s = text(v, 512)?;
    let long = [
        ("HKEY_LOCAL_MACHINE", "HKLM"),
        ("HKEY_CURRENT_USER", "HKCU"),
        ("HKEY_USERS", "HKU"),
        ("HKEY_CLASSES_ROOT", "HKCR"),
        ("HKEY_CURRENT_CONFIG", "HKCC"),
    ];
    let (hive, rest) = s.split_once('\\').unwrap_or((&s, ""));
    let hive = long.iter().find(|(l, _)| l.eq_ignore_ascii_case(hive)).map_or(hive, |(_, short)| short);
    match HIVES.iter().find(|h| h.eq_ignore_ascii_case(hive)) {
        Some(h) if !rest.is_empty() => Ok(format!("{h}\\{rest}")),
        _ => Err(format!("{s:?} must be a key under a hive ({}\\...)", HIVES.join(", "))),
    }
}

fn sha256(v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string")?;
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{s:?} is not a SHA-256 (64 hex digits)"));
    }
    Ok(s.to_ascii_lowercase())
}

fn ip(v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string")?;
    let (addr, bits) = s.split_once('/').map_or((s, None), |(a, b)| (a, Some(b)));
    let parsed: std::net::IpAddr =
        addr.parse().map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
    if let Some(b) = bits {
        let max = if parsed.is_ipv4() { 32 } else { 128 };
        match b.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => return Err(format!("{s:?}: the prefix length must be 0-{max}")),
        }
    }
    Ok(s.to_owned())
}

fn url(v: &Value) -> Result<String, String> {
    let s = text(v, 2048)?;
    let rest = s.strip_prefix("https://").ok_or_else(|| format!("{s:?} must be an https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(format!("{s:?} has no host"));
    }
    Ok(s)
}

fn schedule(v: &Value) -> Result<String, String> {
    let s = text(v, 256)?;
    let parts: Vec<&str> = s.split_whitespace().collect();
    let ok =
        parts.len() == 5 && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c)));
    if !ok {
        return Err(format!("{s:?} is not a five-field cron schedule (minute hour day month weekday)"));
    }
    Ok(parts.join(" "))
}

/// A process by pid and start time, by executable and hash, or by name: never by pid alone, so a
/// reused pid is never hit.
fn process(v: &Value) -> Result<Value, String> {
    let o = v.as_object().ok_or("must be an object")?;
    let keys: Vec<&str> = o.keys().map(String::as_str).collect();
    let mut out = serde_json::Map::new();
    match keys.as_slice() {
        ["pid", "start_time"] | ["start_time", "pid"] => {
            out.insert(
                "pid".into(),
                int(&o["pid"], 2, i64::from(i32::MAX)).map_err(|e| format!("pid: {e}"))?.into(),
            );
            let t = int(&o["start_time"], 0, i64::MAX).map_err(|e| format!("start_time: {e}"))?;
            out.insert("start_time".into(), t.into());
        }
        ["executable", "sha256"] | ["sha256", "executable"] => {
            out.insert(
                "executable".into(),
                path(&o["executable"]).map_err(|e| format!("executable: {e}"))?.into(),
            );
            out.insert("sha256".into(), sha256(&o["sha256"]).map_err(|e| format!("sha256: {e}"))?.into());
        }
        ["name"] => {
            out.insert("name".into(), name(&o["name"]).map_err(|e| format!("name: {e}"))?.into());
        }
        _ => {
            return Err(format!(
                "names a process by {{pid, start_time}}, {{executable, sha256}} or {{name}}, not by {keys:?}"
            ));
        }
    }
    Ok(Value::Object(out))
}

fn attributes(v: &Value) -> Result<Value, String> {
    list(v, |x| {
        let s = x.as_str().ok_or("must be a string")?;
        let octal = s.len() == 4 && s.starts_with('0') && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
        let bare = s.trim_start_matches(['+', '-']);
        if octal || (s.len() - bare.len() <= 1 && ATTRIBUTES.contains(&bare)) {
            Ok(s.to_owned())
        } else {
            Err(format!("{s:?} is not an octal mode (0644) or [+-] one of {}", ATTRIBUTES.join(", ")))
        }
    })
}

fn mbr_data(v: &Value) -> Result<String, String> {
    let s = text(v, 4096)?;
    if s.eq_ignore_ascii_case("backup") {
        return Ok("backup".into());
    }
    let bytes = hex_bytes(&s)?;
    if bytes.len() > 512 {
        return Err(format!("{} bytes: a boot record is at most 512", bytes.len()));
    }
    Ok(s)
}

/// Bytes written as hex pairs, spaces allowed between them (`31 C0 FA`).
pub fn hex_bytes(s: &str) -> Result<Vec<u8>, String> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) || !digits.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(format!("{s:?} is not bytes in hex (\"31 C0 FA\")"));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}
