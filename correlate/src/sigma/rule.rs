//! Loading and compiling one Sigma rule: metadata, ATT&CK tags, logsource, selections with their
//! modifiers, and the condition. Anything the engine cannot run is refused with the reason.

use super::condition::{self, Cond};
use super::correlation::Correlation;
use super::event::{Event, Field, Val};
use super::pipeline::{Pipeline, scalar};
use super::selection::Compiler;
use super::value::{Pattern, ValueTest};
use schemas::attack::{self, Tag};
use yaml_rust2::Yaml;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, schemars::JsonSchema)]
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
pub(super) enum Selection {
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
    /// `name` (how correlation rules may refer to it).
    pub name: Option<String>,
    /// `group`: a rule group for log alerts (`authentication_failed`), a Cordon custom attribute.
    pub group: Option<String>,
    /// `title`.
    pub title: String,
    /// `level`.
    pub level: Level,
    /// `status`.
    pub status: String,
    /// `description`.
    pub description: String,
    /// `author`, kept on the alerts the rule raises.
    pub author: Option<String>,
    /// ATT&CK technique ids from the tags (`T1059.001`).
    pub techniques: Vec<String>,
    /// ATT&CK tactic shortnames from the tags.
    pub tactics: Vec<String>,
    /// ATT&CK tags the catalog does not know (reported, not refused).
    pub unknown_tags: Vec<String>,
    /// `logsource`.
    pub logsource: Logsource,
    /// Why the rule never runs on the pipeline's events (its product is not one of the pipeline's),
    /// or `None`: a rule set leaves such rules out of matching.
    pub inapplicable: Option<String>,
    pub(super) fields: Vec<Field>,
    names: Vec<String>,
    pub(super) selections: Vec<Selection>,
    pub(super) condition: Cond,
    /// Logsource conditions from the pipeline, tested before the detection.
    pub(super) gate: Vec<(usize, ValueTest)>,
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

/// Every rule in a YAML text (several documents are several rules; Sigma's multi-document
/// `action: global` collections are refused). Correlation rules are refused here: they need the
/// rules they reference, which [`load_any`] and [`super::Tagger::build`] resolve.
pub fn load(text: &str, pipeline: &Pipeline) -> Vec<Result<Rule, RuleError>> {
    load_any(text, pipeline)
        .into_iter()
        .map(|r| match r {
            Ok(Loaded::Rule(r)) => Ok(r),
            Ok(Loaded::Correlation(c)) => Err(RuleError {
                rule: c.id.clone(),
                reason: "a correlation rule (load it with the rules it references)".into(),
                class: "correlation",
            }),
            Err(e) => Err(e),
        })
        .collect()
}

/// A loaded document: a detection rule or a correlation rule.
#[derive(Clone, Debug)]
pub enum Loaded {
    /// A detection rule.
    Rule(Rule),
    /// A correlation rule (its references unresolved).
    Correlation(Correlation),
}

/// Every rule and correlation rule in a YAML text.
pub fn load_any(text: &str, pipeline: &Pipeline) -> Vec<Result<Loaded, RuleError>> {
    match super::yaml::load(text) {
        Ok(docs) => docs.iter().map(|d| compile(d, pipeline)).collect(),
        Err(e) => {
            vec![Err(RuleError { rule: "rule".into(), reason: format!("invalid YAML: {e}"), class: "yaml" })]
        }
    }
}

/// What detection rules and correlation rules share: identity, level and ATT&CK tags.
pub(super) struct Meta {
    pub(super) id: String,
    pub(super) name: Option<String>,
    pub(super) title: String,
    pub(super) level: Option<Level>,
    pub(super) description: String,
    /// `author`: kept on every alert the rule raises (the Detection Rule License asks it).
    pub(super) author: Option<String>,
    pub(super) techniques: Vec<String>,
    pub(super) tactics: Vec<String>,
    pub(super) unknown_tags: Vec<String>,
}

impl Meta {
    /// The id, else the name, else the title: how refusals name the rule.
    pub(super) fn label(&self) -> String {
        [&self.id, self.name.as_deref().unwrap_or(""), &self.title]
            .into_iter()
            .find(|s| !s.is_empty())
            .map_or_else(|| "rule".to_owned(), |s| (*s).to_owned())
    }
}

pub(super) fn meta(doc: &Yaml) -> Result<Meta, RuleError> {
    let id = doc["id"].as_str().unwrap_or_default().to_owned();
    let title = doc["title"].as_str().unwrap_or_default().to_owned();
    let name = doc["name"].as_str().map(str::to_owned);
    let label = [id.as_str(), name.as_deref().unwrap_or(""), title.as_str()]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or("rule")
        .to_owned();
    let level = match doc["level"].as_str() {
        None => None,
        Some("informational") => Some(Level::Informational),
        Some("low") => Some(Level::Low),
        Some("medium") => Some(Level::Medium),
        Some("high") => Some(Level::High),
        Some("critical") => Some(Level::Critical),
        Some(other) => {
            return Err(RuleError {
                rule: label,
                reason: format!("unknown level {other:?}"),
                class: "structure",
            });
        }
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
    // v18 and v19 tags alike: each completed with the other version's ids.
    attack::crosswalk::both_versions(&mut techniques, &mut tactics, doc["logsource"]["product"].as_str());
    Ok(Meta {
        id,
        name,
        title,
        level,
        description: doc["description"].as_str().unwrap_or_default().trim().to_owned(),
        author: doc["author"].as_str().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()),
        techniques,
        tactics,
        unknown_tags,
    })
}

fn compile(doc: &Yaml, pipeline: &Pipeline) -> Result<Loaded, RuleError> {
    let m = meta(doc)?;
    if let Some(status @ ("deprecated" | "unsupported")) = doc["status"].as_str() {
        // Sigma's statuses for rules their authors withdrew, or that no backend can express.
        let reason = format!("status {status}: its authors withdrew it from use");
        return Err(RuleError { rule: m.label(), reason, class: "withdrawn" });
    }
    if !doc["correlation"].is_badvalue() {
        return super::correlation::parse(doc, m).map(Loaded::Correlation);
    }
    let name = m.label();
    let err = |class: &'static str, reason: String| RuleError { rule: name.clone(), reason, class };
    if doc["action"].as_str().is_some() {
        return Err(err("collection", "rule collections (`action: global/repeat`) are not supported".into()));
    }
    let detection =
        doc["detection"].as_hash().ok_or_else(|| err("structure", "no `detection` map".into()))?;
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

    // The pipeline's conditions for this logsource: those of every entry whose `match` keys all
    // agree with it (a category's and a product's or service's conditions all hold).
    let mut gate = Vec::new();
    let get = |k: &str| match k {
        "category" => logsource.category.as_deref(),
        "product" => logsource.product.as_deref(),
        "service" => logsource.service.as_deref(),
        _ => None,
    };
    for (_, conds) in
        pipeline.logsources.iter().filter(|(m, _)| m.iter().all(|(k, v)| get(k) == Some(v.as_str())))
    {
        for (field, want, absent_ok) in conds {
            let i = c.field_target(field);
            let one_of = ValueTest::Text {
                groups: vec![want.iter().map(|w| Pattern::Exact(w.to_lowercase())).collect()],
                all: false,
                cased: false,
                // Gates are a few exact values; their text is also the group key.
                fast: None,
            };
            gate.push((i, if *absent_ok { ValueTest::AbsentOr(Box::new(one_of)) } else { one_of }));
        }
    }
    Ok(Loaded::Rule(Rule {
        id: m.id,
        name: m.name,
        group: doc["group"].as_str().map(str::to_owned),
        title: m.title,
        level: m.level.unwrap_or(Level::Medium),
        status: doc["status"].as_str().unwrap_or("experimental").to_owned(),
        description: m.description,
        author: m.author,
        techniques: m.techniques,
        tactics: m.tactics,
        unknown_tags: m.unknown_tags,
        inapplicable: pipeline.excludes(&logsource),
        logsource,
        fields: c.fields,
        names,
        selections,
        condition,
        gate,
    }))
}

impl Rule {
    /// Whether the rule fires on `event`.
    pub fn matches(&self, event: &dyn Event) -> bool {
        self.gate_holds(event) && self.detection_holds(event)
    }

    /// Whether the event is of the rule's logsource (the pipeline's conditions; never for a rule
    /// whose product the pipeline's events do not come from).
    pub fn gate_holds(&self, event: &dyn Event) -> bool {
        self.inapplicable.is_none() && self.gate.iter().all(|(f, t)| self.test(event, *f, t))
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
