//! Pipelines: the mapping of a rule's field names and logsource to one form of event, as data
//! (`correlate/pipelines/*.yml`).

use std::collections::HashMap;
use yaml_rust2::Yaml;

type Pairs = Vec<(String, String)>;
/// Field -> any of these values, and whether an event without the field also qualifies (`~` among
/// the values).
type Conditions = Vec<(String, Vec<String>, bool)>;
/// Sigma field -> (the target field, each Sigma value (lowercase) -> the target's values).
type ValueMaps = HashMap<String, (String, HashMap<String, Vec<String>>)>;

/// The field and logsource mapping from Sigma to Cordon's fields (`pipelines/cordon-ecs.yml`).
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// Its name.
    pub name: String,
    fields: HashMap<String, String>,
    /// Fields whose values this form of event says differently.
    values: ValueMaps,
    /// (what a rule's logsource must say, the conditions on Cordon's fields it brings).
    pub(super) logsources: Vec<(Pairs, Conditions)>,
    /// The logsource products this pipeline's events can come from (empty: any). A rule for
    /// another product (`cisco`, `zeek`, `aws`...) loads but never runs on them.
    pub products: Vec<String>,
    /// `unmapped: never`: a rule whose category or service has no `logsources` entry never runs
    /// (the pipeline knows every source of its events); otherwise it runs without conditions.
    pub strict: bool,
}

impl Pipeline {
    /// Cordon's own pipeline, embedded.
    pub fn cordon_ecs() -> Self {
        Self::parse(include_str!("../../pipelines/cordon-ecs.yml")).expect("the embedded pipeline parses")
    }

    /// A pipeline from its YAML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let docs = super::yaml::load(text).map_err(|e| format!("pipeline: {e}"))?;
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
        let values = value_maps(&doc["values"])?;
        let logsources = doc["logsources"]
            .as_vec()
            .map(|v| v.iter().map(|ls| (pairs(&ls["match"]), alternatives(&ls["conditions"]))).collect())
            .unwrap_or_default();
        let products = doc["products"]
            .as_vec()
            .map(|v| v.iter().filter_map(scalar).map(|p| p.to_ascii_lowercase()).collect())
            .unwrap_or_default();
        let strict = match doc["unmapped"].as_str() {
            None | Some("any") => false,
            Some("never") => true,
            Some(other) => return Err(format!("pipeline: unmapped: {other:?} must be `any` or `never`")),
        };
        Ok(Self { name, fields, values, logsources, products, strict })
    }

    /// The pipeline for flat Windows event log records (`EventID`, `Channel` and the `EventData`
    /// names as Sigma uses them), for EVTX files and the Sigma conformance tests.
    pub fn windows_flat() -> Self {
        Self::parse(include_str!("../../pipelines/windows-flat.yml")).expect("the embedded pipeline parses")
    }

    /// Why a rule of logsource `ls` never runs on this pipeline's events (`None`: it can): its
    /// product is not one of the pipeline's, or (strict pipelines) its category or service has no
    /// mapping.
    pub fn excludes(&self, ls: &super::rule::Logsource) -> Option<String> {
        if let Some(p) = ls.product.as_deref().map(str::to_ascii_lowercase)
            && !self.products.is_empty()
            && !self.products.contains(&p)
        {
            return Some(format!(
                "logsource product {p:?}: {} events come from {}",
                self.name,
                self.products.join(", ")
            ));
        }
        if !self.strict {
            return None;
        }
        [("category", ls.category.as_deref()), ("service", ls.service.as_deref())].into_iter().find_map(
            |(k, v)| {
                let v = v?;
                let mapped = self.logsources.iter().any(|(m, _)| m.iter().any(|(mk, mv)| mk == k && mv == v));
                (!mapped).then(|| format!("logsource {k} {v:?}: no {} events carry it", self.name))
            },
        )
    }

    /// Where a rule's `sigma: value` test goes when this form of event says the value differently:
    /// the target field and its values (`None`: the field has no value mapping).
    pub(super) fn mapped_value(&self, sigma: &str, value: &str) -> Option<(&str, Vec<String>)> {
        let (target, map) = self.values.get(sigma)?;
        let v = value.to_ascii_lowercase();
        Some((target, map.get(&v).cloned().unwrap_or_else(|| vec![v])))
    }

    pub(super) fn target(&self, sigma: &str) -> String {
        self.fields.get(sigma).cloned().unwrap_or_else(|| sigma.to_owned())
    }

    /// The logsources (each as its `match` pairs) whose conditions an event meets, by exact
    /// (case-insensitive) values; `get` reads one of the event's fields as text. Entries without
    /// conditions never match here. For peers that route by logsource (the B6 comparison).
    pub fn logsources_of(&self, get: &dyn Fn(&str) -> Option<String>) -> Vec<Vec<(String, String)>> {
        self.logsources
            .iter()
            .filter(|(_, conds)| {
                !conds.is_empty()
                    && conds.iter().all(|(f, alts, absent_ok)| match get(f) {
                        Some(v) => alts.iter().any(|a| a.eq_ignore_ascii_case(&v)),
                        None => *absent_ok,
                    })
            })
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// A field as a rule names it, resolved through the mapping to Cordon's column when it has one.
    pub fn field(&self, sigma: &str) -> super::event::Field {
        let target = self.target(sigma);
        let column = schemas::FIELDS.iter().position(|d| d.path == target);
        super::event::Field::new(sigma.to_owned(), target, column)
    }
}

/// `values:`: Sigma field -> {field: target, map: {value: [target values]}}.
fn value_maps(y: &Yaml) -> Result<ValueMaps, String> {
    let mut out = HashMap::new();
    let Some(h) = y.as_hash() else { return Ok(out) };
    for (k, v) in h {
        let (Some(sigma), Some(target)) = (scalar(k), v["field"].as_str()) else {
            return Err("pipeline: a value mapping needs a field name and `field:`".into());
        };
        let map = alternatives(&v["map"])
            .into_iter()
            .map(|(from, to, _)| (from.to_ascii_lowercase(), to))
            .collect();
        out.insert(sigma, (target.to_owned(), map));
    }
    Ok(out)
}

/// A map of field -> value or list of values (any of them; `~` in a list: or the field is absent).
fn alternatives(y: &Yaml) -> Conditions {
    y.as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| {
                    let (vals, absent_ok) = match v {
                        Yaml::Array(a) => {
                            (a.iter().filter_map(scalar).collect(), a.iter().any(|x| matches!(x, Yaml::Null)))
                        }
                        v => (vec![scalar(v)?], false),
                    };
                    Some((scalar(k)?, vals, absent_ok))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}
