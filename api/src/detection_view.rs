//! The detection answers, typed: the ATT&CK coverage matrix, the rules loaded and refused, a
//! policy's preview, a saved policy and an alert's new handling.

use correlate::sigma::{Level, Refusal};
use schemas::policy::{Decision, Policy, TierCounts};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A rule that detects a technique.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct RuleRef {
    id: String,
    title: String,
    level: Level,
}

/// A cell of the matrix: a technique (or sub-technique) with its tier under the policy, the rules
/// that detect it and the events tagged with it in the range.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Cell {
    id: String,
    name: String,
    #[serde(flatten)]
    decision: Decision,
    rules: Vec<RuleRef>,
    events: u64,
    /// Its id in ATT&CK v19, where v19 renumbered it (`T1562.001` is `T1685`).
    #[serde(skip_serializing_if = "Option::is_none")]
    v19: Option<String>,
    /// Its sub-techniques (techniques only).
    #[serde(skip_serializing_if = "Option::is_none")]
    subtechniques: Option<Vec<Cell>>,
}

/// A column of the matrix.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Column {
    id: String,
    shortname: String,
    name: String,
    techniques: Vec<Cell>,
}

/// The coverage in one line and in figures.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct CoverageSummary {
    platform: String,
    /// Endpoint (sub-)techniques of the platform.
    techniques: usize,
    /// Those a rule detects (itself or through its parent).
    covered: usize,
    tiers: TierCounts,
    text: String,
}

/// `GET /api/v1/attack/coverage`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Coverage {
    summary: CoverageSummary,
    tactics: Vec<Column>,
}

/// The rules loaded as `(title, id, level, techniques)`.
pub(crate) type RuleTechniques = [(String, String, Level, Vec<String>)];

impl Coverage {
    /// The matrix for `platform` under `policy`, with `events` per technique id.
    pub(crate) fn new(
        platform: &str,
        policy: &Policy,
        rules: &RuleTechniques,
        events: &HashMap<String, u64>,
    ) -> Self {
        let catalog = schemas::attack::catalog();
        let crosswalk = schemas::attack::crosswalk::crosswalk();
        let product = platform.to_ascii_lowercase();
        let rules_for = |id: &str| -> Vec<RuleRef> {
            rules
                .iter()
                .filter(|r| r.3.iter().any(|t| t == id || t.starts_with(&format!("{id}."))))
                .map(|r| RuleRef { id: r.1.clone(), title: r.0.clone(), level: r.2 })
                .collect()
        };
        let cell = |t: &schemas::attack::Technique, tactic: &str, subtechniques: Option<Vec<Cell>>| Cell {
            id: t.id.to_owned(),
            name: t.name.to_owned(),
            decision: policy.decide(Some(t.id), &[tactic], None),
            rules: rules_for(t.id),
            events: events.get(t.id).copied().unwrap_or(0),
            v19: crosswalk.successor(t.id, Some(&product)).map(str::to_owned),
            subtechniques,
        };
        let tactics = catalog
            .tactics()
            .iter()
            .map(|tac| {
                let techniques = catalog
                    .techniques()
                    .iter()
                    .filter(|t| t.parent.is_none() && t.tactics.contains(&tac.shortname))
                    .map(|t| {
                        let subs = catalog
                            .techniques()
                            .iter()
                            .filter(|x| x.parent == Some(t.id))
                            .map(|x| cell(x, tac.shortname, None))
                            .collect();
                        cell(t, tac.shortname, Some(subs))
                    })
                    .collect();
                Column {
                    id: tac.id.to_owned(),
                    shortname: tac.shortname.to_owned(),
                    name: tac.name.to_owned(),
                    techniques,
                }
            })
            .collect();
        Coverage { summary: summary(platform, policy, rules), tactics }
    }
}

/// How many of the platform's endpoint (sub-)techniques a rule covers, and the policy's tiers.
fn summary(platform: &str, policy: &Policy, rules: &RuleTechniques) -> CoverageSummary {
    let catalog = schemas::attack::catalog();
    let parents: HashSet<&str> = catalog.techniques().iter().filter_map(|t| t.parent).collect();
    let has_rule = |id: &str| rules.iter().any(|r| r.3.iter().any(|x| x == id));
    let (mut total, mut covered) = (0usize, 0usize);
    for t in catalog.techniques() {
        if parents.contains(t.id) || !t.platforms.contains(&platform) {
            continue;
        }
        total += 1;
        covered += usize::from(has_rule(t.id) || t.parent.is_some_and(has_rule));
    }
    let tiers = policy.summary(platform, None);
    let text = format!(
        "covers {covered} of {total} {platform} endpoint (sub-)techniques with rules; policy: {} block, {} alert, {} record, {} off",
        tiers.block, tiers.alert, tiers.record, tiers.off
    );
    CoverageSummary { platform: platform.to_owned(), techniques: total, covered, tiers, text }
}

/// The operator's rule files.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct OperatorRules {
    files: usize,
    loaded: usize,
    refused: usize,
    refused_by_class: BTreeMap<String, usize>,
}

/// Cordon's own rule pack.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Pack {
    files: usize,
}

/// `GET /api/v1/rules`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct RulesAnswer {
    /// Detection runs on this server.
    enabled: bool,
    /// Detection and correlation rules loaded.
    rules: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlations: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pack: Option<Pack>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operator: Option<OperatorRules>,
    /// The refused rules with their reasons (unless `refused=false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<Vec<Refusal>>,
}

impl RulesAnswer {
    /// No detection on this server.
    pub(crate) fn disabled() -> Self {
        RulesAnswer {
            enabled: false,
            rules: 0,
            digest: None,
            correlations: None,
            pack: None,
            operator: None,
            refused: None,
        }
    }

    /// The tagger's rules and where they came from.
    pub(crate) fn of(t: &correlate::sigma::Tagger, with_refused: bool) -> Self {
        let src = t.sources();
        let mut by_class = BTreeMap::new();
        for r in &src.refused {
            *by_class.entry(r.class.to_owned()).or_default() += 1;
        }
        RulesAnswer {
            enabled: true,
            rules: t.rules().len(),
            digest: Some(src.digest.clone()),
            correlations: Some(t.correlations().count()),
            pack: Some(Pack { files: correlate::sigma::CORDON_RULES.len() }),
            operator: Some(OperatorRules {
                files: src.files.len(),
                loaded: src.loaded,
                refused: src.refused.len(),
                refused_by_class: by_class,
            }),
            refused: with_refused.then(|| src.refused.clone()),
        }
    }
}

/// Alerts and blocks under one policy.
#[derive(Clone, Copy, Debug, Default, Serialize, schemars::JsonSchema)]
pub(crate) struct Raised {
    alerts: u64,
    blocks: u64,
}

/// One technique's or host's counts under the current and the proposed policy.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct PreviewRow {
    /// The technique (in `by_technique`).
    #[serde(skip_serializing_if = "Option::is_none")]
    technique: Option<String>,
    /// The host (in `by_host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    current: Raised,
    proposed: Raised,
}

/// (technique or host) -> [current alerts, current blocks, proposed alerts, proposed blocks].
pub(crate) type Tally = BTreeMap<String, [u64; 4]>;

/// `POST /api/v1/policy/preview`: what the proposed policy would have raised over the last `days`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Preview {
    days: u32,
    events_scanned: u64,
    current: Raised,
    proposed: Raised,
    by_technique: Vec<PreviewRow>,
    by_host: Vec<PreviewRow>,
}

impl Preview {
    /// The preview from the tallies of a scan of `events_scanned` events.
    pub(crate) fn new(days: u32, events_scanned: u64, by_technique: &Tally, by_host: &Tally) -> Self {
        let raised = |v: &[u64; 4], k: usize| Raised { alerts: v[2 * k], blocks: v[2 * k + 1] };
        let rows = |t: &Tally, by_host: bool| -> Vec<PreviewRow> {
            t.iter()
                .map(|(k, v)| PreviewRow {
                    technique: (!by_host).then(|| k.clone()),
                    host: by_host.then(|| k.clone()),
                    current: raised(v, 0),
                    proposed: raised(v, 1),
                })
                .collect()
        };
        let mut total = [0u64; 4];
        for v in by_host.values() {
            for (a, b) in total.iter_mut().zip(v) {
                *a += b;
            }
        }
        Preview {
            days,
            events_scanned,
            current: raised(&total, 0),
            proposed: raised(&total, 1),
            by_technique: rows(by_technique, false),
            by_host: rows(by_host, true),
        }
    }
}

/// `PUT /api/v1/policy`: the version saved.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct PolicySaved {
    pub version: i64,
    pub author: String,
    pub policy: Policy,
}

/// `PATCH /api/v1/alerts/{id}`: the alert's new handling.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct HandlingSet {
    pub id: String,
    pub handling: schemas::alert::Handling,
}
