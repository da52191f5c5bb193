//! Loading and compiling one Sigma rule: metadata, ATT&CK tags, logsource, selections with their
//! modifiers, and the condition. Anything the engine cannot run is refused with the reason.

use super::condition::{self, Cond};
use super::event::{Event, Field, Val};
use super::value::{self, Cidr, NumOp, Pattern, ValueTest};
use schemas::attack::{self, Tag};
use std::collections::HashMap;
use yaml_rust2::{Yaml, YamlLoader};

/// Why a rule was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {reason}")]
pub struct RuleError {
    /// The rule's id or title (or "rule" when it has neither).
    pub rule: String,
    /// Why.
    pub reason: String,
    /// A short class for counting refusals (`yaml`, `modifier`, `condition`, `regex`, `correlation`...).
    pub class: &'static str,
}

/// Sigma's severity levels, as Cordon's alert levels 1 (informational) to 5 (critical).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// 1.
    Informational,
    /// 2.
    Low,
    /// 3.
    Medium,
    /// 4.
    High,
    /// 5.
    Critical,
}

impl Level {
    /// 1 to 5.
    pub fn number(self) -> u8 {
        self as u8 + 1
    }
}

type Pairs = Vec<(String, String)>;
/// Field -> any of these values.
type Conditions = Vec<(String, Vec<String>)>;

/// The field and logsource mapping from Sigma to Cordon's fields (`pipelines/cordon-ecs.yml`).
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// Its name.
    pub name: String,
    fields: HashMap<String, String>,
    /// (what a rule's logsource must say, the conditions on Cordon's fields it brings).
    logsources: Vec<(Pairs, Conditions)>,
}

impl Pipeline {
    /// Cordon's own pipeline, embedded.
    pub fn cordon_ecs() -> Self {
        Self::parse(include_str!("../../pipelines/cordon-ecs.yml")).expect("the embedded pipeline parses")
    }

    /// A pipeline from its YAML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| format!("pipeline: {e}"))?;
        let doc = docs.first().ok_or("pipeline: empty document")?;
        let name = doc["name"].as_str().unwrap_or("unnamed").to_owned();
        let mut fields = HashMap::new();
        if let Some(h) = doc["fields"].as_hash() {
            for (k, v) in h {
                let (Some(k), Some(v)) = (scalar(k), scalar(v)) else {
                    return Err("pipeline: field mappings must be strings".into());
                };
                fields.insert(k, v);
            }
        }
        let pairs = |y: &Yaml| -> Vec<(String, String)> {
            y.as_hash()
                .map(|h| h.iter().filter_map(|(k, v)| Some((scalar(k)?, scalar(v)?))).collect())
                .unwrap_or_default()
        };
        let logsources = doc["logsources"]
            .as_vec()
            .map(|v| v.iter().map(|ls| (pairs(&ls["match"]), alternatives(&ls["conditions"]))).collect())
            .unwrap_or_default();
        Ok(Self { name, fields, logsources })
    }

    /// The pipeline for flat Windows event log records (`EventID`, `Channel` and the `EventData`
    /// names as Sigma uses them), for EVTX files and the Sigma conformance tests.
    pub fn windows_flat() -> Self {
        Self::parse(include_str!("../../pipelines/windows-flat.yml")).expect("the embedded pipeline parses")
    }

    fn target(&self, sigma: &str) -> String {
        self.fields.get(sigma).cloned().unwrap_or_else(|| sigma.to_owned())
    }
}

/// A rule's logsource.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Logsource {
    /// `process_creation`...
    pub category: Option<String>,
    /// `windows`, `linux`...
    pub product: Option<String>,
    /// `security`, `sysmon`...
    pub service: Option<String>,
}

#[derive(Clone, Debug)]
enum Selection {
    /// Every field test holds (a map).
    All(Vec<(usize, ValueTest)>),
    /// Any of these holds (a list of maps).
    Any(Vec<Selection>),
    /// Any keyword occurs in any string of the event.
    Keywords(ValueTest),
}

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// `id` (a UUID in SigmaHQ rules).
    pub id: String,
    /// `title`.
    pub title: String,
    /// `level`.
    pub level: Level,
    /// `status`.
    pub status: String,
    /// `description`.
    pub description: String,
    /// ATT&CK technique ids from the tags (`T1059.001`).
    pub techniques: Vec<String>,
    /// ATT&CK tactic shortnames from the tags.
    pub tactics: Vec<String>,
    /// ATT&CK tags the catalog does not know (reported, not refused).
    pub unknown_tags: Vec<String>,
    /// `logsource`.
    pub logsource: Logsource,
    fields: Vec<Field>,
    names: Vec<String>,
    selections: Vec<Selection>,
    condition: Cond,
    /// Logsource conditions from the pipeline, tested before the detection.
    gate: Vec<(usize, ValueTest)>,
}

/// A matched field and the value that matched, for an alert's "why".
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Matched {
    /// The selection.
    pub selection: String,
    /// The rule's field name.
    pub field: String,
    /// The event's value.
    pub value: String,
}

/// A map of field -> value or list of values (any of them).
fn alternatives(y: &Yaml) -> Vec<(String, Vec<String>)> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| {
                    let vals = match v {
                        Yaml::Array(a) => a.iter().filter_map(scalar).collect(),
                        v => vec![scalar(v)?],
                    };
                    Some((scalar(k)?, vals))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Every rule in a YAML text (several documents are several rules; Sigma's multi-document
/// `action: global` collections are refused).
pub fn load(text: &str, pipeline: &Pipeline) -> Vec<Result<Rule, RuleError>> {
    match YamlLoader::load_from_str(text) {
        Ok(docs) => docs.iter().map(|d| compile(d, pipeline)).collect(),
        Err(e) => {
            vec![Err(RuleError { rule: "rule".into(), reason: format!("invalid YAML: {e}"), class: "yaml" })]
        }
    }
}

fn compile(doc: &Yaml, pipeline: &Pipeline) -> Result<Rule, RuleError> {
    let id = doc["id"].as_str().unwrap_or_default().to_owned();
    let title = doc["title"].as_str().unwrap_or_default().to_owned();
    let name = if !id.is_empty() {
        id.clone()
    } else if !title.is_empty() {
        title.clone()
    } else {
        "rule".into()
    };
    let err = |class: &'static str, reason: String| RuleError { rule: name.clone(), reason, class };
    if !doc["correlation"].is_badvalue() {
        return Err(err("correlation", "a correlation rule (handled by the correlation engine)".into()));
    }
    if doc["action"].as_str().is_some() {
        return Err(err("collection", "rule collections (`action: global/repeat`) are not supported".into()));
    }
    let detection =
        doc["detection"].as_hash().ok_or_else(|| err("structure", "no `detection` map".into()))?;
    let level = match doc["level"].as_str().unwrap_or("medium") {
        "informational" => Level::Informational,
        "low" => Level::Low,
        "medium" => Level::Medium,
        "high" => Level::High,
        "critical" => Level::Critical,
        other => return Err(err("structure", format!("unknown level {other:?}"))),
    };
    let (mut techniques, mut tactics, mut unknown_tags) = (Vec::new(), Vec::new(), Vec::new());
    let catalog = attack::catalog();
    for t in doc["tags"].as_vec().into_iter().flatten().filter_map(Yaml::as_str) {
        match attack::parse_tag(t) {
            Some(tag) if !catalog.resolve(&tag) => unknown_tags.push(t.to_owned()),
            Some(Tag::Technique(id)) => techniques.push(id),
            Some(Tag::Tactic(name)) => {
                tactics.push(catalog.tactic(&name).map_or(name, |t| t.shortname.to_owned()));
            }
            _ => {}
        }
    }
    let ls = &doc["logsource"];
    let logsource = Logsource {
        category: ls["category"].as_str().map(str::to_owned),
        product: ls["product"].as_str().map(str::to_owned),
        service: ls["service"].as_str().map(str::to_owned),
    };

    let mut c = Compiler { pipeline, fields: Vec::new() };
    let mut names = Vec::new();
    let mut selections = Vec::new();
    let mut condition_texts = Vec::new();
    for (k, v) in detection {
        let key = scalar(k).unwrap_or_default();
        match key.as_str() {
            "condition" => match v {
                Yaml::String(s) => condition_texts.push(s.clone()),
                Yaml::Array(a) => {
                    condition_texts.extend(a.iter().filter_map(Yaml::as_str).map(str::to_owned))
                }
                _ => return Err(err("condition", "condition must be a string".into())),
            },
            "timeframe" => return Err(err("condition", "`timeframe` belongs to correlation rules".into())),
            _ => {
                let sel = c.selection(v).map_err(|(class, r)| err(class, format!("selection {key}: {r}")))?;
                names.push(key);
                selections.push(sel);
            }
        }
    }
    if condition_texts.is_empty() {
        return Err(err("condition", "no condition".into()));
    }
    let mut conds = Vec::new();
    for text in &condition_texts {
        conds.push(condition::parse(text, &names).map_err(|r| err("condition", r))?);
    }
    let condition = if conds.len() == 1 { conds.remove(0) } else { Cond::Or(conds) };

    // The pipeline's conditions for this logsource (the first entry whose `match` keys all agree).
    let mut gate = Vec::new();
    let get = |k: &str| match k {
        "category" => logsource.category.as_deref(),
        "product" => logsource.product.as_deref(),
        "service" => logsource.service.as_deref(),
        _ => None,
    };
    if let Some((_, conds)) =
        pipeline.logsources.iter().find(|(m, _)| m.iter().all(|(k, v)| get(k) == Some(v.as_str())))
    {
        for (field, want) in conds {
            let i = c.field_target(field);
            gate.push((
                i,
                ValueTest::Text {
                    groups: vec![want.iter().map(|w| Pattern::Exact(w.to_lowercase())).collect()],
                    all: false,
                    cased: false,
                },
            ));
        }
    }
    Ok(Rule {
        id,
        title,
        level,
        status: doc["status"].as_str().unwrap_or("experimental").to_owned(),
        description: doc["description"].as_str().unwrap_or_default().trim().to_owned(),
        techniques,
        tactics,
        unknown_tags,
        logsource,
        fields: c.fields,
        names,
        selections,
        condition,
        gate,
    })
}

struct Compiler<'a> {
    pipeline: &'a Pipeline,
    fields: Vec<Field>,
}

type CompileError = (&'static str, String);

impl Compiler<'_> {
    fn field(&mut self, sigma: &str) -> usize {
        if let Some(i) = self.fields.iter().position(|f| f.sigma == sigma) {
            return i;
        }
        let target = self.pipeline.target(sigma);
        let column = schemas::FIELDS.iter().position(|d| d.path == target);
        self.fields.push(Field { sigma: sigma.to_owned(), target, column });
        self.fields.len() - 1
    }

    /// A field named by its target (the pipeline's logsource conditions).
    fn field_target(&mut self, target: &str) -> usize {
        let column = schemas::FIELDS.iter().position(|d| d.path == target);
        self.fields.push(Field { sigma: target.to_owned(), target: target.to_owned(), column });
        self.fields.len() - 1
    }

    fn selection(&mut self, y: &Yaml) -> Result<Selection, CompileError> {
        match y {
            Yaml::Hash(h) => {
                let mut tests = Vec::new();
                let mut keywords = Vec::new();
                for (k, v) in h {
                    let key = scalar(k).ok_or(("structure", "a field name must be a string".to_owned()))?;
                    if key.starts_with('|') {
                        // `'|contains|all': [...]`: keywords with modifiers, anywhere in the event.
                        keywords.push(self.keyword_test(&key, v)?);
                    } else {
                        tests.push(self.field_test(&key, v)?);
                    }
                }
                match (tests.is_empty(), keywords.len()) {
                    (true, 1) => Ok(keywords.remove(0)),
                    (_, 0) => Ok(Selection::All(tests)),
                    _ => Err(("structure", "keywords with modifiers cannot share a map with fields".into())),
                }
            }
            Yaml::Array(items) if items.iter().all(|i| matches!(i, Yaml::Hash(_))) => {
                Ok(Selection::Any(items.iter().map(|i| self.selection(i)).collect::<Result<_, _>>()?))
            }
            Yaml::Array(items) => {
                // Keywords: any occurs anywhere in the event.
                let mut groups = Vec::new();
                for i in items {
                    let s = scalar(i).ok_or(("structure", "keywords must be strings".to_owned()))?;
                    groups.push(vec![keyword(&s)?]);
                }
                Ok(Selection::Keywords(ValueTest::Text { groups, all: false, cased: false }))
            }
            Yaml::String(s) => Ok(Selection::Keywords(ValueTest::Text {
                groups: vec![vec![keyword(s)?]],
                all: false,
                cased: false,
            })),
            _ => Err(("structure", "a selection must be a map, a list or a keyword".into())),
        }
    }

    fn keyword_test(&mut self, key: &str, v: &Yaml) -> Result<Selection, CompileError> {
        let mods: Vec<&str> = key.split('|').skip(1).collect();
        if let Some(m) = mods.iter().find(|m| {
            !matches!(**m, "contains" | "startswith" | "endswith" | "all" | "cased" | "windash" | "re" | "i")
        }) {
            return Err(("modifier", format!("modifier `{m}` is not supported on keywords")));
        }
        let values: Vec<&Yaml> = match v {
            Yaml::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let mut groups = Vec::new();
        for y in values {
            let s = scalar(y).ok_or(("structure", "keywords must be strings".to_owned()))?;
            groups.push(patterns(&s, &mods)?);
        }
        let cased = mods.contains(&"cased") || mods.contains(&"re");
        let all = mods.contains(&"all");
        Ok(Selection::Keywords(ValueTest::Text { groups, all, cased }))
    }

    fn field_test(&mut self, key: &str, v: &Yaml) -> Result<(usize, ValueTest), CompileError> {
        let mut parts = key.split('|');
        let fname = parts.next().unwrap_or_default();
        let mods: Vec<&str> = parts.collect();
        if fname.is_empty() {
            // `|contains: [...]` without a field: keywords with modifiers.
            return Err(("modifier", "a field-less modifier list is not supported".into()));
        }
        let field = self.field(fname);
        let values: Vec<&Yaml> = match v {
            Yaml::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let has = |m: &str| mods.contains(&m);
        for m in &mods {
            if !matches!(
                *m,
                "contains"
                    | "startswith"
                    | "endswith"
                    | "all"
                    | "re"
                    | "i"
                    | "m"
                    | "s"
                    | "cidr"
                    | "base64"
                    | "base64offset"
                    | "wide"
                    | "utf16le"
                    | "utf16be"
                    | "utf16"
                    | "windash"
                    | "exists"
                    | "fieldref"
                    | "gt"
                    | "gte"
                    | "lt"
                    | "lte"
                    | "cased"
            ) {
                let class = if *m == "expand" { "placeholder" } else { "modifier" };
                return Err((class, format!("modifier `{m}` is not supported")));
            }
        }
        if has("exists") {
            let want = matches!(v, Yaml::Boolean(true)) || scalar(v).as_deref() == Some("true");
            return Ok((field, ValueTest::Exists(want)));
        }
        if has("fieldref") {
            let other = scalar(v).ok_or(("modifier", "fieldref needs a field name".to_owned()))?;
            return Ok((field, ValueTest::FieldRef(self.field(&other))));
        }
        for (m, op) in [("gt", NumOp::Gt), ("gte", NumOp::Gte), ("lt", NumOp::Lt), ("lte", NumOp::Lte)] {
            if has(m) {
                let n = scalar(v)
                    .and_then(|s| s.parse::<f64>().ok())
                    .ok_or(("modifier", format!("`{m}` needs a number")))?;
                return Ok((field, ValueTest::Num { op, n }));
            }
        }
        if has("cidr") {
            let nets = values
                .iter()
                .map(|y| {
                    scalar(y)
                        .ok_or_else(|| "a cidr value must be a string".to_owned())
                        .and_then(|s| Cidr::parse(&s))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ("modifier", e))?;
            return Ok((field, ValueTest::Cidr(nets)));
        }
        // Plain values without modifiers: null, numbers and booleans keep their type.
        if mods.is_empty() && values.len() == 1 {
            match values[0] {
                Yaml::Null => return Ok((field, ValueTest::Null)),
                Yaml::Integer(n) => return Ok((field, ValueTest::Int(*n))),
                Yaml::Boolean(b) => return Ok((field, ValueTest::Bool(*b))),
                _ => {}
            }
        }
        if mods.is_empty()
            && values.iter().any(|y| matches!(y, Yaml::Null | Yaml::Integer(_) | Yaml::Boolean(_)))
        {
            // A list mixing types: text forms, plus null as the empty string.
            let mut groups = Vec::new();
            for y in &values {
                groups.push(match y {
                    Yaml::Null => vec![Pattern::Exact(String::new())],
                    y => vec![
                        value::glob(&scalar(y).unwrap_or_default().to_lowercase())
                            .map_err(|e| ("regex", e))?,
                    ],
                });
            }
            return Ok((field, ValueTest::Text { groups, all: false, cased: false }));
        }
        let cased = has("cased") || has("re") || has("base64") || has("base64offset");
        let mut groups = Vec::new();
        for y in values {
            let s = scalar(y).ok_or(("structure", "a value must be a scalar".to_owned()))?;
            groups.push(patterns(&s, &mods)?);
        }
        Ok((field, ValueTest::Text { groups, all: has("all"), cased }))
    }
}

/// A keyword: found anywhere in a string, case-insensitively.
fn keyword(s: &str) -> Result<Pattern, CompileError> {
    value::glob_wrapped(&s.to_lowercase(), true, true).map_err(|e| ("regex", e))
}

/// The alternatives one value can match as, after its modifiers.
fn patterns(s: &str, mods: &[&str]) -> Result<Vec<Pattern>, CompileError> {
    let has = |m: &str| mods.contains(&m);
    if has("re") {
        let mut flags = String::new();
        for (m, f) in [("i", 'i'), ("m", 'm'), ("s", 's')] {
            if has(m) {
                flags.push(f);
            }
        }
        let re = if flags.is_empty() { s.to_owned() } else { format!("(?{flags}){s}") };
        return Ok(vec![Pattern::Regex(value::build_regex(&re, false).map_err(|e| ("regex", e))?)]);
    }
    // windash, then the text encodings, then base64: each step can multiply the alternatives.
    let texts: Vec<String> = if has("windash") { value::windash(s) } else { vec![s.to_owned()] };
    let mut raw: Vec<Vec<u8>> = Vec::new();
    for t in &texts {
        if has("wide") || has("utf16le") {
            raw.push(value::utf16(t, false));
        } else if has("utf16be") {
            raw.push(value::utf16(t, true));
        } else if has("utf16") {
            let mut bom = vec![0xff, 0xfe];
            bom.extend(value::utf16(t, false));
            raw.push(bom);
        } else {
            raw.push(t.as_bytes().to_vec());
        }
    }
    let encoded = has("base64")
        || has("base64offset")
        || has("wide")
        || has("utf16le")
        || has("utf16be")
        || has("utf16");
    let literals: Vec<String> = if has("base64offset") {
        raw.iter().flat_map(|b| value::base64_offsets(b)).collect()
    } else if has("base64") {
        raw.iter().map(|b| value::base64(b)).collect()
    } else if encoded {
        return Err(("modifier", "utf16/wide must be followed by base64 or base64offset".into()));
    } else {
        texts
    };
    let cased = has("cased") || has("base64") || has("base64offset");
    let (pre, post) = match (has("contains") || has("base64offset"), has("startswith"), has("endswith")) {
        (true, _, _) => (true, true),
        (_, true, _) => (false, true),
        (_, _, true) => (true, false),
        _ => (false, false),
    };
    literals
        .iter()
        .map(|l| {
            // Encoded literals hold no wildcards; escape them so `*` and `?` in base64 output cannot occur.
            let body = if encoded || has("base64") {
                l.replace('\\', "\\\\").replace('*', "\\*").replace('?', "\\?")
            } else {
                l.clone()
            };
            let body = if cased { body } else { body.to_lowercase() };
            value::glob_wrapped(&body, pre, post).map_err(|e| ("regex", e))
        })
        .collect()
}

impl Rule {
    /// Whether the rule fires on `event`.
    pub fn matches(&self, event: &dyn Event) -> bool {
        self.gate_holds(event) && self.detection_holds(event)
    }

    /// Whether the event is of the rule's logsource (the pipeline's conditions).
    pub fn gate_holds(&self, event: &dyn Event) -> bool {
        self.gate.iter().all(|(f, t)| self.test(event, *f, t))
    }

    /// The logsource conditions, as text: rules with the same key share one gate test per event.
    pub fn gate_key(&self) -> String {
        self.gate
            .iter()
            .map(|(f, t)| format!("{}={t:?}", self.fields[*f].target))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Whether the detection (selections and condition) holds, the logsource aside.
    pub fn detection_holds(&self, event: &dyn Event) -> bool {
        // Each selection is evaluated at most once per event (the condition may name it twice).
        let mut small = [None; 16];
        let mut large;
        let cache: &mut [Option<bool>] = if self.selections.len() <= small.len() {
            &mut small[..self.selections.len()]
        } else {
            large = vec![None; self.selections.len()];
            &mut large
        };
        self.condition
            .eval(&mut |i| *cache[i].get_or_insert_with(|| self.selection(event, &self.selections[i])))
    }

    /// The field values behind a match: every field test of the selections the condition needs that
    /// holds on `event` (empty when the rule does not match).
    pub fn explain(&self, event: &dyn Event) -> Vec<Matched> {
        if !self.matches(event) {
            return Vec::new();
        }
        let mut positive = Vec::new();
        self.condition.positive(&mut positive, false);
        positive.sort_unstable();
        positive.dedup();
        let mut out = Vec::new();
        for i in positive {
            self.collect(event, &self.selections[i], &self.names[i], &mut out);
        }
        out
    }

    fn collect(&self, event: &dyn Event, sel: &Selection, name: &str, out: &mut Vec<Matched>) {
        match sel {
            Selection::All(tests) => {
                if tests.iter().all(|(f, t)| self.test(event, *f, t)) {
                    for (f, _) in tests {
                        let value = match event.get(&self.fields[*f]) {
                            Val::Missing => String::new(),
                            v => {
                                let mut s = String::new();
                                v.any_text(&mut |t| {
                                    s = t.to_owned();
                                    true
                                });
                                s
                            }
                        };
                        out.push(Matched {
                            selection: name.to_owned(),
                            field: self.fields[*f].sigma.clone(),
                            value,
                        });
                    }
                }
            }
            Selection::Any(subs) => subs.iter().for_each(|s| self.collect(event, s, name, out)),
            Selection::Keywords(t) => {
                let mut hit = None;
                event.any_string(&mut |s| {
                    let ok = t.test(&Val::Str(s), &|_| None);
                    if ok {
                        hit = Some(s.to_owned());
                    }
                    ok
                });
                if let Some(value) = hit {
                    out.push(Matched { selection: name.to_owned(), field: "keywords".into(), value });
                }
            }
        }
    }

    fn selection(&self, event: &dyn Event, sel: &Selection) -> bool {
        match sel {
            Selection::All(tests) => tests.iter().all(|(f, t)| self.test(event, *f, t)),
            Selection::Any(subs) => subs.iter().any(|s| self.selection(event, s)),
            Selection::Keywords(t) => event.any_string(&mut |s| t.test(&Val::Str(s), &|_| None)),
        }
    }

    fn test(&self, event: &dyn Event, field: usize, t: &ValueTest) -> bool {
        let v = event.get(&self.fields[field]);
        t.test(&v, &|other| {
            let mut out = None;
            event.get(&self.fields[other]).any_text(&mut |s| {
                out = Some(s.to_owned());
                true
            });
            out
        })
    }

    /// The fields the rule reads, resolved (for coverage and debugging).
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }
}

/// Rules grouped by logsource, so an event is tested once per distinct logsource and only the rules of
/// the logsources it belongs to run their detection.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// (gate key, indices of the rules with that gate).
    groups: Vec<(String, Vec<usize>)>,
}

impl RuleSet {
    /// Groups `rules` by their logsource conditions.
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let key = r.gate_key();
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        Self { rules, groups }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules that fire on `event`, in rule order within each logsource group.
    pub fn matching<'a>(&'a self, event: &dyn Event) -> Vec<&'a Rule> {
        let mut out = Vec::new();
        for (_, members) in &self.groups {
            if !self.rules[members[0]].gate_holds(event) {
                continue;
            }
            out.extend(members.iter().map(|&i| &self.rules[i]).filter(|r| r.detection_holds(event)));
        }
        out
    }
}
