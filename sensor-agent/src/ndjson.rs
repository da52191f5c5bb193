//! Any tool's JSON lines as Cordon events, through a mapping file: which field of the tool's
//! records fills which ECS field, which fields every event gets, and how its time is written.
//!
//! ```json
//! {"time": {"field": "timestamp", "format": "epoch_ms"},
//!  "fields": {"source.ip": "src_ip", "destination.ip": "dest.ip", "url.full": "http.url"},
//!  "set": {"event.category": "network", "event.action": "alert", "event.dataset": "suricata.eve"}}
//! ```
//!
//! A source field is a key of the record, else a dotted path into it. Time formats: `rfc3339`
//! (default), `epoch_s`, `epoch_ms`, `epoch_us`. The record itself stays whole in `event.original`.

use serde_json::{Map, Value};

/// A mapping file, parsed.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    time_field: String,
    time_format: TimeFormat,
    fields: Vec<(String, String)>,
    set: Vec<(String, Value)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum TimeFormat {
    #[default]
    Rfc3339,
    EpochS,
    EpochMs,
    EpochUs,
}

impl Mapping {
    /// Parses a mapping file's JSON text; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("mapping: not JSON: {e}"))?;
        let o = v.as_object().ok_or("mapping: not a JSON object")?;
        if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "time" | "fields" | "set")) {
            return Err(format!("mapping: unknown key {k:?} (time, fields, set)"));
        }
        let time_field = o.get("time").and_then(|t| t["field"].as_str()).unwrap_or("@timestamp").to_owned();
        let time_format = match o.get("time").and_then(|t| t["format"].as_str()).unwrap_or("rfc3339") {
            "rfc3339" => TimeFormat::Rfc3339,
            "epoch_s" => TimeFormat::EpochS,
            "epoch_ms" => TimeFormat::EpochMs,
            "epoch_us" => TimeFormat::EpochUs,
            other => {
                return Err(format!("mapping: time format {other:?} (rfc3339, epoch_s, epoch_ms, epoch_us)"));
            }
        };
        let mut fields = Vec::new();
        for (to, from) in o.get("fields").and_then(Value::as_object).into_iter().flatten() {
            let from =
                from.as_str().ok_or_else(|| format!("mapping: fields.{to} must name a source field"))?;
            fields.push((to.clone(), from.to_owned()));
        }
        let set = o
            .get("set")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Self { time_field, time_format, fields, set })
    }

    /// The ECS event of one line, or why it is refused (not a JSON object, no readable time).
    pub fn event(&self, line: &str) -> Result<Value, String> {
        let rec: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
        let mut doc = Map::new();
        let time =
            lookup(&rec, &self.time_field).ok_or_else(|| format!("no time field {:?}", self.time_field))?;
        let micros = self.micros(time).ok_or_else(|| format!("time {time} is not {:?}", self.time_format))?;
        doc.insert("@timestamp".into(), Value::String(schemas::time::format_micros(micros)));
        for (to, value) in &self.set {
            schemas::record::insert_path(&mut doc, to, value.clone());
        }
        for (to, from) in &self.fields {
            if let Some(v) = lookup(&rec, from).filter(|v| !v.is_null()) {
                schemas::record::insert_path(&mut doc, to, v.clone());
            }
        }
        schemas::record::insert_path(&mut doc, "event.original", Value::String(line.to_owned()));
        Ok(Value::Object(doc))
    }

    fn micros(&self, v: &Value) -> Option<i64> {
        let n = || v.as_f64().or_else(|| v.as_str()?.parse::<f64>().ok());
        match self.time_format {
            TimeFormat::Rfc3339 => schemas::time::parse_rfc3339_micros(v.as_str()?),
            TimeFormat::EpochS => n().map(|s| (s * 1e6).round() as i64),
            TimeFormat::EpochMs => n().map(|s| (s * 1e3).round() as i64),
            TimeFormat::EpochUs => n().map(|s| s.round() as i64),
        }
    }
}

/// `path` in `rec`: the key itself, else a dotted path through nested objects.
fn lookup<'r>(rec: &'r Map<String, Value>, path: &str) -> Option<&'r Value> {
    rec.get(path).or_else(|| {
        let (first, rest) = path.split_once('.')?;
        rest.split('.').try_fold(rec.get(first)?, |v, k| v.get(k))
    })
}

/// What reading one file through a mapping found.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Events, in file order.
    pub events: Vec<Value>,
    /// Lines refused, with the first few reasons (line number: why).
    pub refused: Vec<String>,
    /// Lines refused in all.
    pub refused_count: u64,
}

/// Reads every non-empty line of `text` through `m`.
pub fn parse(text: &str, m: &Mapping) -> Parsed {
    let mut out = Parsed::default();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match m.event(line) {
            Ok(e) => out.events.push(e),
            Err(why) => {
                out.refused_count += 1;
                if out.refused.len() < 5 {
                    out.refused.push(format!("line {}: {why}", i + 1));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_mapping_fills_ecs_fields_sets_constants_and_keeps_the_line() {
        let m = Mapping::parse(
            r#"{"time": {"field": "ts", "format": "epoch_ms"},
                "fields": {"source.ip": "src_ip", "destination.ip": "dest.ip", "url.full": "http.url"},
                "set": {"event.category": "network", "event.action": "alert"}}"#,
        )
        .unwrap();
        let line = r#"{"ts": 1764496800250, "src_ip": "10.0.0.5", "dest": {"ip": "203.0.113.9"}, "http": {"url": "http://evil.example/x"}}"#;
        let p = parse(&format!("{line}\nnot json\n{{\"src_ip\": \"1.2.3.4\"}}\n"), &m);
        assert_eq!((p.events.len(), p.refused_count), (1, 2), "{:?}", p.refused);
        assert!(p.refused[0].starts_with("line 2: not a JSON object"), "{:?}", p.refused);
        assert!(p.refused[1].contains("no time field \"ts\""), "{:?}", p.refused);
        let e = &p.events[0];
        assert_eq!(e["@timestamp"], "2025-11-30T10:00:00.250000Z");
        assert_eq!(
            (e["source"]["ip"].as_str(), e["destination"]["ip"].as_str()),
            (Some("10.0.0.5"), Some("203.0.113.9"))
        );
        assert_eq!(
            (e["url"]["full"].as_str(), e["event"]["category"].as_str()),
            (Some("http://evil.example/x"), Some("network"))
        );
        assert_eq!(e["event"]["original"], json!(line));
    }

    #[test]
    fn a_bad_mapping_says_what_is_wrong() {
        assert!(Mapping::parse("[]").unwrap_err().contains("not a JSON object"));
        assert!(Mapping::parse(r#"{"fileds": {}}"#).unwrap_err().contains("unknown key \"fileds\""));
        assert!(Mapping::parse(r#"{"time": {"format": "julian"}}"#).unwrap_err().contains("julian"));
        assert!(Mapping::parse(r#"{"fields": {"source.ip": 3}}"#).unwrap_err().contains("fields.source.ip"));
    }
}
