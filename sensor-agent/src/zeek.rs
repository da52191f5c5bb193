//! Network security logs as Cordon events: Zeek's logs, in its TSV form (the `#separator`,
//! `#fields` and `#types` header) or as JSON lines, of the kinds detection and IOC sweeps read:
//! `conn`, `dns`, `http`, `ssl`, `files`, `notice`, `kerberos`, `smb_files` and `smb_mapping`. Each
//! record becomes an ECS event from the sensor (addresses, ports, domains, URLs, hashes in Cordon's
//! columns, so sweeps and the entity graph find them), with the whole record under `zeek.<log>` for
//! rules. Records of other logs are kept the same way with the fields every Zeek log shares.
//! Generic NDJSON from other tools goes through a mapping file instead ([`crate::ndjson`]).

use serde_json::{Map, Value, json};

/// What reading one log found.
#[derive(Debug, Default)]
pub struct Parsed {
    /// ECS events, in file order (no host yet: the caller names the sensor).
    pub events: Vec<Value>,
    /// Lines that are neither a header, a comment nor a record (counted, skipped).
    pub skipped: u64,
    /// The log kind (`conn`, `http`...), from `#path`, a record's `_path`, or the file name.
    pub kind: String,
}

/// Reads a Zeek log's text; `name` (the file name) says its kind when the log does not.
pub fn parse(text: &str, name: &str) -> Parsed {
    let stem = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut out =
        Parsed { kind: stem.split('.').next().unwrap_or_default().to_owned(), ..Default::default() };
    let mut tsv = Tsv::default();
    for line in text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            tsv.header(line, &mut out.kind);
            continue;
        }
        let record = if line.starts_with('{') {
            serde_json::from_str::<Map<String, Value>>(line).ok()
        } else {
            tsv.record(line)
        };
        match record {
            Some(r) => {
                let kind = r.get("_path").and_then(Value::as_str).unwrap_or(&out.kind).to_owned();
                out.events.push(to_ecs(&kind, r));
            }
            None => out.skipped += 1,
        }
    }
    out
}

/// The TSV form's header, as read so far.
#[derive(Default)]
struct Tsv {
    separator: Option<String>,
    set_separator: Option<String>,
    empty: Option<String>,
    unset: Option<String>,
    fields: Vec<String>,
    types: Vec<String>,
}

impl Tsv {
    fn header(&mut self, line: &str, kind: &mut String) {
        if let Some(sep) = line.strip_prefix("#separator ") {
            self.separator = Some(unescape(sep.trim()));
            return;
        }
        let sep = self.separator.clone().unwrap_or_else(|| "\t".to_owned());
        let Some((key, rest)) = line[1..].split_once(sep.as_str()) else { return };
        let values = || rest.split(sep.as_str()).map(str::to_owned).collect::<Vec<_>>();
        match key {
            "set_separator" => self.set_separator = Some(rest.to_owned()),
            "empty_field" => self.empty = Some(rest.to_owned()),
            "unset_field" => self.unset = Some(rest.to_owned()),
            "path" => *kind = rest.to_owned(),
            "fields" => self.fields = values(),
            "types" => self.types = values(),
            _ => {}
        }
    }

    /// One record as Zeek's JSON form writes it (dotted names, numbers as numbers, sets as lists).
    fn record(&self, line: &str) -> Option<Map<String, Value>> {
        if self.fields.is_empty() {
            return None;
        }
        let sep = self.separator.as_deref().unwrap_or("\t");
        let values: Vec<&str> = line.split(sep).collect();
        if values.len() != self.fields.len() {
            return None;
        }
        let mut r = Map::new();
        for (i, (f, v)) in self.fields.iter().zip(values).enumerate() {
            if Some(v) == self.unset.as_deref().or(Some("-")) {
                continue;
            }
            let ty = self.types.get(i).map_or("string", String::as_str);
            let v = if Some(v) == self.empty.as_deref().or(Some("(empty)")) { "" } else { v };
            r.insert(f.clone(), typed(v, ty, self.set_separator.as_deref().unwrap_or(",")));
        }
        Some(r)
    }
}

/// `\x09` -> a tab.
fn unescape(s: &str) -> String {
    match s.strip_prefix("\\x").and_then(|h| u8::from_str_radix(h, 16).ok()) {
        Some(b) => (b as char).to_string(),
        None => s.to_owned(),
    }
}

/// A TSV value as its Zeek type.
fn typed(v: &str, ty: &str, set_sep: &str) -> Value {
    if ty.starts_with("set[") || ty.starts_with("vector[") {
        let inner = &ty[ty.find('[').map_or(0, |i| i + 1)..ty.len().saturating_sub(1)];
        return Value::Array(
            v.split(set_sep).filter(|x| !x.is_empty()).map(|x| typed(x, inner, set_sep)).collect(),
        );
    }
    let number = match ty {
        "count" | "int" | "port" => v.parse::<i64>().ok().map(Value::from),
        "time" | "interval" | "double" => v.parse::<f64>().ok().map(Value::from),
        "bool" => Some(Value::Bool(v == "T")),
        _ => None,
    };
    number.unwrap_or_else(|| json!(v))
}

/// A record's field as text (numbers rendered), `None` when absent or empty.
fn text(r: &Map<String, Value>, k: &str) -> Option<String> {
    match r.get(k)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "T" } else { "F" }.to_owned()),
        Value::Array(a) => a.first().and_then(|x| x.as_str()).map(str::to_owned),
        _ => None,
    }
}

fn put(doc: &mut Map<String, Value>, path: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        schemas::record::insert_path(doc, path, v.into());
    }
}

/// Zeek's `ts`: seconds since the epoch, or an ISO 8601 text when Zeek was told to write that.
fn timestamp(r: &Map<String, Value>) -> Option<String> {
    match r.get("ts")? {
        Value::Number(n) => n.as_f64().map(|s| schemas::time::format_micros((s * 1e6).round() as i64)),
        Value::String(s) => s
            .parse::<f64>()
            .ok()
            .map(|s| schemas::time::format_micros((s * 1e6).round() as i64))
            .or_else(|| schemas::time::parse_rfc3339_micros(s).map(schemas::time::format_micros)),
        _ => None,
    }
}

/// The ECS event of one record of log `kind`.
pub fn to_ecs(kind: &str, r: Map<String, Value>) -> Value {
    let mut doc = Map::new();
    put(&mut doc, "@timestamp", timestamp(&r));
    put(&mut doc, "event.module", Some("zeek"));
    put(&mut doc, "event.dataset", Some(format!("zeek.{kind}")));
    let int = |k: &str| text(&r, k).and_then(|v| v.parse::<i64>().ok());
    put(&mut doc, "source.ip", text(&r, "id.orig_h"));
    put(&mut doc, "source.port", int("id.orig_p"));
    put(&mut doc, "destination.ip", text(&r, "id.resp_h"));
    put(&mut doc, "destination.port", int("id.resp_p"));
    let (category, action) = match kind {
        "conn" => conn(&r, &mut doc),
        "dns" => {
            put(&mut doc, "dns.question.name", text(&r, "query"));
            let ips: Vec<String> =
                list(&r, "answers").filter(|a| a.parse::<std::net::IpAddr>().is_ok()).collect();
            put(&mut doc, "dns.resolved_ip", (!ips.is_empty()).then(|| json!(ips)));
            put(&mut doc, "network.protocol", Some("dns"));
            ("network", "dns-query")
        }
        "http" => http(&r, &mut doc),
        "ssl" => {
            put(&mut doc, "destination.domain", text(&r, "server_name"));
            put(&mut doc, "network.protocol", Some("tls"));
            ("network", "tls")
        }
        "files" => files(&r, &mut doc),
        "notice" => notice(&r, &mut doc),
        "kerberos" => kerberos(&r, &mut doc),
        "smb_files" => {
            let path =
                [text(&r, "path"), text(&r, "name")].into_iter().flatten().collect::<Vec<_>>().join("\\");
            put(&mut doc, "file.path", (!path.is_empty()).then_some(path));
            put(&mut doc, "file.name", text(&r, "name"));
            put(&mut doc, "network.protocol", Some("smb"));
            ("file", "smb-file")
        }
        "smb_mapping" => {
            put(&mut doc, "file.path", text(&r, "path"));
            put(&mut doc, "network.protocol", Some("smb"));
            ("network", "smb-mapping")
        }
        _ => ("network", "zeek-record"),
    };
    put(&mut doc, "event.category", Some(category));
    put(&mut doc, "event.action", Some(action));
    put(&mut doc, &format!("zeek.{}", kind.replace('.', "_")), Some(Value::Object(r)));
    Value::Object(doc)
}

/// A set or vector field's items as text.
fn list<'r>(r: &'r Map<String, Value>, k: &str) -> impl Iterator<Item = String> + 'r {
    let items: Vec<&Value> = match r.get(k) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_owned).or_else(|| v.as_number().map(|n| n.to_string())))
}

fn conn(r: &Map<String, Value>, doc: &mut Map<String, Value>) -> (&'static str, &'static str) {
    put(doc, "network.transport", text(r, "proto"));
    put(doc, "network.protocol", text(r, "service"));
    put(doc, "source.bytes", text(r, "orig_bytes").and_then(|v| v.parse::<i64>().ok()));
    put(doc, "destination.bytes", text(r, "resp_bytes").and_then(|v| v.parse::<i64>().ok()));
    let direction = match (text(r, "local_orig").as_deref(), text(r, "local_resp").as_deref()) {
        (Some("T"), Some("F")) => Some("outbound"),
        (Some("F"), Some("T")) => Some("inbound"),
        (Some("T"), Some("T")) => Some("internal"),
        (Some("F"), Some("F")) => Some("external"),
        _ => None,
    };
    put(doc, "network.direction", direction);
    ("network", "connection")
}

fn http(r: &Map<String, Value>, doc: &mut Map<String, Value>) -> (&'static str, &'static str) {
    let host = text(r, "host");
    let uri = text(r, "uri").unwrap_or_default();
    let full = match &host {
        Some(h) if !uri.starts_with("http") => format!("http://{h}{uri}"),
        _ => uri.clone(),
    };
    put(doc, "url.full", (!full.is_empty()).then_some(full));
    put(doc, "url.domain", host.clone());
    put(doc, "destination.domain", host);
    put(doc, "http.request.method", text(r, "method"));
    put(doc, "http.response.status_code", text(r, "status_code").and_then(|v| v.parse::<i64>().ok()));
    put(doc, "user_agent.original", text(r, "user_agent"));
    put(doc, "network.protocol", Some("http"));
    ("web", "http-request")
}

fn files(r: &Map<String, Value>, doc: &mut Map<String, Value>) -> (&'static str, &'static str) {
    // Older Zeek names the two ends in sets; newer adds the connection's `id.*`.
    if !doc.contains_key("source") {
        put(doc, "source.ip", list(r, "tx_hosts").next());
        put(doc, "destination.ip", list(r, "rx_hosts").next());
    }
    for (f, to) in [("md5", "file.hash.md5"), ("sha1", "file.hash.sha1"), ("sha256", "file.hash.sha256")] {
        put(doc, to, text(r, f).map(|h| h.to_ascii_lowercase()));
    }
    put(doc, "file.name", text(r, "filename"));
    put(doc, "file.mime_type", text(r, "mime_type"));
    put(
        doc,
        "file.size",
        text(r, "total_bytes").or_else(|| text(r, "seen_bytes")).and_then(|v| v.parse::<i64>().ok()),
    );
    ("file", "transfer")
}

fn notice(r: &Map<String, Value>, doc: &mut Map<String, Value>) -> (&'static str, &'static str) {
    if !doc.contains_key("source") {
        put(doc, "source.ip", text(r, "src"));
        put(doc, "destination.ip", text(r, "dst"));
        put(doc, "destination.port", text(r, "p").and_then(|v| v.parse::<i64>().ok()));
    }
    put(doc, "rule.name", text(r, "note"));
    let msg = [text(r, "msg"), text(r, "sub")].into_iter().flatten().collect::<Vec<_>>().join(": ");
    put(doc, "message", (!msg.is_empty()).then_some(msg));
    ("intrusion_detection", "notice")
}

fn kerberos(r: &Map<String, Value>, doc: &mut Map<String, Value>) -> (&'static str, &'static str) {
    // `client` is `user/REALM`.
    if let Some(c) = text(r, "client") {
        let (user, realm) = c.split_once('/').unwrap_or((&c, ""));
        put(doc, "user.name", Some(user.to_owned()));
        put(doc, "user.domain", (!realm.is_empty()).then(|| realm.to_owned()));
    }
    put(doc, "service.name", text(r, "service"));
    let ok = text(r, "success");
    put(doc, "event.outcome", ok.as_deref().map(|s| if s == "T" { "success" } else { "failure" }));
    put(doc, "event.reason", text(r, "error_msg"));
    put(doc, "network.protocol", Some("kerberos"));
    ("authentication", "kerberos")
}

#[cfg(test)]
#[path = "zeek_tests.rs"]
mod tests;
