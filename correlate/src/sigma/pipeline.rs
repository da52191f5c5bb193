//! Pipelines: the mapping of a rule's field names and logsource to one form of event, as data
//! (`correlate/pipelines/*.yml`).

use std::collections::HashMap;
use yaml_rust2::{Yaml, YamlLoader};

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
    pub(super) logsources: Vec<(Pairs, Conditions)>,
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
                    && conds.iter().all(|(f, alts)| {
                        get(f).is_some_and(|v| alts.iter().any(|a| a.eq_ignore_ascii_case(&v)))
                    })
            })
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// A field as a rule names it, resolved through the mapping to Cordon's column when it has one.
    pub fn field(&self, sigma: &str) -> super::event::Field {
        let target = self.target(sigma);
        let column = schemas::FIELDS.iter().position(|d| d.path == target);
        super::event::Field { sigma: sigma.to_owned(), target, column }
    }
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

pub(super) fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}
