//! Sigma correlation rules (`correlation:` documents, Sigma correlation specification 2.1):
//! `event_count`, `value_count`, `temporal` and `temporal_ordered` over the events the referenced
//! rules match, grouped by fields, within a timespan. Parsing lives here; the streaming evaluation
//! is [`super::stream`].
//!
//! The metric types of 2.1 (`value_sum`, `value_avg`, `value_percentile`) are refused with the
//! reason, and so are conditions with no lower bound (`lt`, `lte` or `neq` alone): Cordon evaluates
//! correlations as a stream and raises them as soon as they hold, and "fewer than N within an hour"
//! only holds once the hour is over.

use super::pipeline::Pipeline;
use super::rule::{Level, Meta, Rule, RuleError};
use super::stream::{Pick, Resolved, Routes, Source, Step};
use std::collections::{BTreeMap, HashMap};
use yaml_rust2::Yaml;

/// What a correlation counts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Kind {
    /// Matching events per group.
    EventCount,
    /// Distinct values of these fields (together) per group.
    ValueCount {
        /// The fields whose distinct values are counted.
        fields: Vec<String>,
    },
    /// Every referenced rule matched within the timespan (any order).
    Temporal,
    /// Every referenced rule matched within the timespan, in the order listed.
    TemporalOrdered,
}

impl Kind {
    /// The specification's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::EventCount => "event_count",
            Kind::ValueCount { .. } => "value_count",
            Kind::Temporal => "temporal",
            Kind::TemporalOrdered => "temporal_ordered",
        }
    }
}

/// A bound on a count: `gt`/`gte` below, `lt`/`lte` above, `eq`, `neq`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Condition {
    /// `gte` (a `gt` is stored as `gte` of one more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gte: Option<u64>,
    /// `lte` (a `lt` is stored as `lte` of one less).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lte: Option<u64>,
    /// `neq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neq: Option<u64>,
}

impl Condition {
    /// Whether `n` satisfies the condition.
    pub fn holds(&self, n: u64) -> bool {
        self.gte.is_none_or(|g| n >= g) && self.lte.is_none_or(|l| n <= l) && self.neq != Some(n)
    }
}

/// A parsed correlation rule; the rules it names are resolved when a rule set is built.
#[derive(Clone, Debug)]
pub struct Correlation {
    /// `id`.
    pub id: String,
    /// `name` (other correlations may refer to it).
    pub name: Option<String>,
    /// `title`.
    pub title: String,
    /// `level` (when absent, the highest level of the rules it references).
    pub level: Option<Level>,
    /// `description`.
    pub description: String,
    /// `author`, kept on the alerts it raises.
    pub author: Option<String>,
    /// ATT&CK technique ids from the tags.
    pub techniques: Vec<String>,
    /// ATT&CK tactic shortnames from the tags.
    pub tactics: Vec<String>,
    /// Unknown ATT&CK tags.
    pub unknown_tags: Vec<String>,
    /// The type.
    pub kind: Kind,
    /// The referenced rules, by id or name, in order.
    pub rules: Vec<String>,
    /// `group-by` (possibly aliases).
    pub group_by: Vec<String>,
    /// `aliases`: alias -> (rule name -> field).
    pub aliases: BTreeMap<String, BTreeMap<String, String>>,
    /// `timespan`, in microseconds.
    pub timespan: i64,
    /// The condition (for temporal types, on the number of distinct rules matched; all by default).
    pub condition: Condition,
    /// `generate`: the referenced rules also alert on their own.
    pub generate: bool,
}

/// Parses a correlation document.
pub(super) fn parse(doc: &Yaml, m: Meta) -> Result<Correlation, RuleError> {
    let label = m.label();
    let err = |reason: String| RuleError { rule: label.clone(), reason, class: "correlation" };
    let c = &doc["correlation"];
    if c.as_hash().is_none() {
        return Err(err("`correlation` must be a map".into()));
    }
    let strings = |y: &Yaml, what: &str| -> Result<Vec<String>, RuleError> {
        match y {
            Yaml::BadValue => Ok(Vec::new()),
            Yaml::String(s) => Ok(vec![s.clone()]),
            Yaml::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str().map(str::to_owned).ok_or_else(|| err(format!("`{what}` must list strings")))
                })
                .collect(),
            _ => Err(err(format!("`{what}` must be a string or a list of strings"))),
        }
    };
    let rules = strings(&c["rules"], "rules")?;
    if rules.is_empty() {
        return Err(err("`rules` names no rule".into()));
    }
    let group_by = strings(&c["group-by"], "group-by")?;
    let timespan = match &c["timespan"] {
        Yaml::String(s) => {
            parse_timespan(s).ok_or_else(|| err(format!("bad timespan {s:?} (want e.g. 90s, 5m, 1h, 2d)")))?
        }
        Yaml::BadValue => return Err(err("no `timespan`".into())),
        _ => return Err(err("`timespan` must be text such as 5m".into())),
    };
    let cond = &c["condition"];
    let mut condition = Condition::default();
    let mut value_fields = Vec::new();
    if let Some(h) = cond.as_hash() {
        for (k, v) in h {
            let key = k.as_str().unwrap_or_default();
            if key == "field" {
                value_fields = strings(v, "condition.field")?;
                continue;
            }
            let n = match v {
                Yaml::Integer(n) if *n >= 0 => *n as u64,
                _ => return Err(err(format!("condition {key}: want a whole number >= 0"))),
            };
            match key {
                "gte" => condition.gte = Some(condition.gte.map_or(n, |g| g.max(n))),
                "gt" => condition.gte = Some(condition.gte.map_or(n + 1, |g| g.max(n + 1))),
                "lte" => condition.lte = Some(condition.lte.map_or(n, |l| l.min(n))),
                "lt" if n == 0 => return Err(err("condition lt: 0 can never hold".into())),
                "lt" => condition.lte = Some(condition.lte.map_or(n - 1, |l| l.min(n - 1))),
                "eq" => {
                    condition.gte = Some(n);
                    condition.lte = Some(n);
                }
                "neq" => condition.neq = Some(n),
                other => return Err(err(format!("unknown condition operator {other:?}"))),
            }
        }
    } else if !cond.is_badvalue() {
        return Err(err("`condition` must be a map such as {gte: 10}".into()));
    }
    let kind = match c["type"].as_str() {
        Some("event_count") => Kind::EventCount,
        Some("value_count") => {
            if value_fields.is_empty() {
                return Err(err("value_count needs `condition.field`".into()));
            }
            Kind::ValueCount { fields: value_fields }
        }
        Some("temporal") => Kind::Temporal,
        Some("temporal_ordered") => Kind::TemporalOrdered,
        Some(t @ ("value_sum" | "value_avg" | "value_percentile")) => {
            return Err(err(format!("{t} correlations are not supported yet")));
        }
        Some(other) => return Err(err(format!("unknown correlation type {other:?}"))),
        None => return Err(err("no correlation `type`".into())),
    };
    match kind {
        Kind::EventCount | Kind::ValueCount { .. } => {
            if cond.is_badvalue() {
                return Err(err(format!("{} needs a `condition`", kind.as_str())));
            }
        }
        Kind::Temporal | Kind::TemporalOrdered => {
            if group_by.is_empty() {
                return Err(err(format!("{} needs `group-by`", kind.as_str())));
            }
            if condition.gte.is_none() && condition.lte.is_none() && condition.neq.is_none() {
                condition.gte = Some(rules.len() as u64);
            }
        }
    }
    if condition.gte.unwrap_or(0) == 0 {
        return Err(err(
            "the condition has no lower bound (only gt/gte/eq can be decided while events stream in)".into(),
        ));
    }
    if condition.lte.is_some_and(|l| l < condition.gte.unwrap_or(0)) {
        return Err(err("the condition can never hold".into()));
    }
    let mut aliases = BTreeMap::new();
    if let Some(h) = c["aliases"].as_hash() {
        for (alias, per_rule) in h {
            let alias = alias.as_str().ok_or_else(|| err("alias names must be text".into()))?;
            let mut map = BTreeMap::new();
            for (r, f) in per_rule.as_hash().ok_or_else(|| err(format!("alias {alias}: want rule: field")))? {
                let (Some(r), Some(f)) = (r.as_str(), f.as_str()) else {
                    return Err(err(format!("alias {alias}: want rule: field")));
                };
                map.insert(r.to_owned(), f.to_owned());
            }
            aliases.insert(alias.to_owned(), map);
        }
    }
    Ok(Correlation {
        id: m.id,
        name: m.name,
        title: m.title,
        level: m.level,
        description: m.description,
        author: m.author,
        techniques: m.techniques,
        tactics: m.tactics,
        unknown_tags: m.unknown_tags,
        kind,
        rules,
        group_by,
        aliases,
        timespan,
        condition,
        generate: doc["generate"].as_bool().or_else(|| c["generate"].as_bool()).unwrap_or(false),
    })
}

/// Resolves the correlations' references against the detection rules (by id or name) and each
/// other, and each step's group-by and value fields (through the aliases and the pipeline). A
/// reference to nothing, a cycle, or a group-by field that a referenced correlation does not group
/// by is refused.
pub fn resolve(
    rules: &[Rule],
    corrs: Vec<Correlation>,
    pipeline: &Pipeline,
) -> Result<(Vec<Resolved>, Routes), RuleError> {
    let mut names: HashMap<&str, Source> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        for n in [Some(r.id.as_str()), r.name.as_deref()].into_iter().flatten().filter(|n| !n.is_empty()) {
            names.insert(n, Source::Rule(i));
        }
    }
    for (j, c) in corrs.iter().enumerate() {
        for n in [Some(c.id.as_str()), c.name.as_deref()].into_iter().flatten().filter(|n| !n.is_empty()) {
            names.insert(n, Source::Correlation(j));
        }
    }
    let mut routes = Routes { by_correlation: vec![Vec::new(); corrs.len()], ..Routes::default() };
    let mut resolved = Vec::with_capacity(corrs.len());
    for (j, c) in corrs.iter().enumerate() {
        let label = if c.id.is_empty() { c.title.clone() } else { c.id.clone() };
        let err = |reason: String| RuleError { rule: label.clone(), reason, class: "correlation" };
        let mut steps = Vec::new();
        let mut titles = Vec::new();
        let mut level: Option<Level> = None;
        for (k, reference) in c.rules.iter().enumerate() {
            let source = names
                .get(reference.as_str())
                .cloned()
                .ok_or_else(|| err(format!("references {reference:?}, which is not a loaded rule")))?;
            // The field a group-by (or value) name stands for in this step's events.
            let aliased = |g: &str| -> String {
                let own_names = match &source {
                    Source::Rule(i) => [Some(rules[*i].id.as_str()), rules[*i].name.as_deref()],
                    Source::Correlation(i) => [Some(corrs[*i].id.as_str()), corrs[*i].name.as_deref()],
                };
                c.aliases
                    .get(g)
                    .and_then(|m| {
                        m.get(reference.as_str())
                            .or_else(|| own_names.iter().flatten().find_map(|n| m.get(*n)))
                    })
                    .cloned()
                    .unwrap_or_else(|| g.to_owned())
            };
            let pick = |g: &str| -> Result<Pick, RuleError> {
                let f = aliased(g);
                match &source {
                    Source::Rule(_) => Ok(Pick::Field(pipeline.field(&f))),
                    Source::Correlation(i) => {
                        corrs[*i].group_by.iter().position(|x| *x == f).map(Pick::Inner).ok_or_else(|| {
                            err(format!(
                                "group-by {g:?}: the correlation {reference:?} does not group by {f:?}"
                            ))
                        })
                    }
                }
            };
            let group = c.group_by.iter().map(|g| pick(g)).collect::<Result<Vec<_>, _>>()?;
            let values = match &c.kind {
                Kind::ValueCount { fields } => {
                    fields.iter().map(|g| pick(g)).collect::<Result<Vec<_>, _>>()?
                }
                _ => Vec::new(),
            };
            match &source {
                Source::Rule(i) => {
                    routes.by_rule.entry(*i).or_default().push((j, k));
                    titles.push(rules[*i].title.clone());
                    level = level.max(Some(rules[*i].level));
                }
                Source::Correlation(i) => {
                    if *i == j {
                        return Err(err("references itself".into()));
                    }
                    routes.by_correlation[*i].push((j, k));
                    titles.push(corrs[*i].title.clone());
                    level = level.max(corrs[*i].level);
                }
            }
            steps.push(Step { source, group, values });
        }
        routes.titles.push(titles);
        resolved.push(Resolved { rule: c.clone(), level: c.level.or(level).unwrap_or(Level::Medium), steps });
    }
    // Chains must end: no correlation may reach itself.
    for start in 0..corrs.len() {
        let mut stack = vec![start];
        let mut seen = vec![false; corrs.len()];
        while let Some(x) = stack.pop() {
            for &(outer, _) in &routes.by_correlation[x] {
                if outer == start {
                    return Err(RuleError {
                        rule: corrs[start].id.clone(),
                        reason: "correlation chain is a cycle".into(),
                        class: "correlation",
                    });
                }
                if !seen[outer] {
                    seen[outer] = true;
                    stack.push(outer);
                }
            }
        }
    }
    Ok((resolved, routes))
}

/// `30s`, `5m`, `1h`, `2d` in microseconds.
pub fn parse_timespan(s: &str) -> Option<i64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(1_000_000)
}
