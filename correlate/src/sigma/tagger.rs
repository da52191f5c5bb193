//! Tagging events with ATT&CK techniques and the policy tier: a rule set plus a policy, applied to
//! each event at ingest (and, later, at the agent).
//!
//! For every rule that fires, the event gains the rule's techniques and tactics (tactics from the
//! catalog when the rule names none); `rule.name` lists the rules that fired; `cordon.policy_tier` is
//! the strictest tier the policy gives any of them on the event's host group. Tags an agent already
//! set are kept.

use super::event::RecordEvent;
use super::pipeline::Pipeline;
use super::rule::{Level, Matched, Rule, RuleError, load};
use super::ruleset::RuleSet;
use schemas::fields::col;
use schemas::policy::{Policy, Tier};
use schemas::{Cell, Record};

/// Cordon's own rule pack (`correlate/rules/`), embedded.
pub const CORDON_RULES: &[(&str, &str)] = &[
    (
        "cordon_double_extension_exe_start.yml",
        include_str!("../../rules/cordon_double_extension_exe_start.yml"),
    ),
    (
        "cordon_double_extension_file_create.yml",
        include_str!("../../rules/cordon_double_extension_file_create.yml"),
    ),
    (
        "cordon_jndi_lookup_in_web_request.yml",
        include_str!("../../rules/cordon_jndi_lookup_in_web_request.yml"),
    ),
    (
        "cordon_jndi_lookup_sent_by_client.yml",
        include_str!("../../rules/cordon_jndi_lookup_sent_by_client.yml"),
    ),
    ("cordon_java_spawns_process.yml", include_str!("../../rules/cordon_java_spawns_process.yml")),
    ("cordon_java_writes_executable.yml", include_str!("../../rules/cordon_java_writes_executable.yml")),
    ("cordon_shadow_copy_deletion.yml", include_str!("../../rules/cordon_shadow_copy_deletion.yml")),
    (
        "cordon_ransomware_extension_rename.yml",
        include_str!("../../rules/cordon_ransomware_extension_rename.yml"),
    ),
    ("cordon_linux_exec_from_temp.yml", include_str!("../../rules/cordon_linux_exec_from_temp.yml")),
];

/// One rule firing on one event.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Detection {
    /// The rule's id.
    pub rule_id: String,
    /// The rule's title.
    pub rule: String,
    /// The rule's description.
    pub description: String,
    /// Its level.
    pub level: Level,
    /// The tier the policy gave it.
    pub tier: Tier,
    /// Which policy setting decided.
    pub because: String,
    /// Techniques.
    pub techniques: Vec<String>,
    /// The field values that matched.
    pub matched: Vec<Matched>,
}

/// A compiled rule set and the policy.
#[derive(Clone, Debug)]
pub struct Tagger {
    rules: RuleSet,
    policy: Policy,
}

impl Tagger {
    /// These rules under `policy`.
    pub fn new(rules: Vec<Rule>, policy: Policy) -> Self {
        Self { rules: RuleSet::new(rules), policy }
    }

    /// Cordon's rule pack under `policy`. The pack is tested to compile whole.
    pub fn cordon_pack(policy: Policy) -> Result<Self, RuleError> {
        let pipeline = Pipeline::cordon_ecs();
        let mut rules = Vec::new();
        for (_, text) in CORDON_RULES {
            for r in load(text, &pipeline) {
                rules.push(r?);
            }
        }
        Ok(Self::new(rules, policy))
    }

    /// The same rules under another policy.
    pub fn with_policy(&self, policy: Policy) -> Self {
        Self { rules: self.rules.clone(), policy }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        self.rules.rules()
    }

    /// Evaluates every rule on `rec`, tags it, and returns what fired.
    pub fn tag(&self, rec: &mut Record) -> Vec<Detection> {
        let view = RecordEvent::new(rec);
        let hits: Vec<&Rule> = self.rules.matching(&view);
        if hits.is_empty() {
            return Vec::new();
        }
        let group = rec.cell(col::HOST_GROUP).as_str().map(str::to_owned);
        let catalog = schemas::attack::catalog();
        let mut techniques = list(rec.cell(col::THREAT_TECHNIQUE_ID));
        let mut tactics = list(rec.cell(col::THREAT_TACTIC_NAME));
        let mut names: Vec<String> =
            rec.cell(col::RULE_NAME).as_str().map(|s| vec![s.to_owned()]).unwrap_or_default();
        let mut strictest: Option<Tier> = rec.cell(col::POLICY_TIER).as_str().and_then(tier_of);
        let mut out = Vec::new();
        for rule in hits {
            let tactic_refs: Vec<&str> = rule.tactics.iter().map(String::as_str).collect();
            // The strictest tier over the rule's techniques (or its tactics alone when it has none).
            let decisions: Vec<_> = if rule.techniques.is_empty() {
                vec![self.policy.decide(None, &tactic_refs, group.as_deref())]
            } else {
                rule.techniques
                    .iter()
                    .map(|t| self.policy.decide(Some(t), &tactic_refs, group.as_deref()))
                    .collect()
            };
            let Some(decision) = decisions.into_iter().max_by_key(|d| d.tier) else { continue };
            if decision.tier == Tier::Off {
                continue;
            }
            for t in &rule.techniques {
                push_unique(&mut techniques, t.clone());
            }
            let mut rule_tactics: Vec<String> = rule.tactics.clone();
            if rule_tactics.is_empty() {
                for t in &rule.techniques {
                    rule_tactics.extend(catalog.tactics_of(t).iter().map(|t| t.shortname.to_owned()));
                }
            }
            for t in rule_tactics {
                let name = catalog.tactic(&t).map_or(t.clone(), |t| t.name.to_owned());
                push_unique(&mut tactics, name);
            }
            push_unique(&mut names, rule.title.clone());
            strictest = strictest.max(Some(decision.tier));
            out.push(Detection {
                rule_id: rule.id.clone(),
                rule: rule.title.clone(),
                description: rule.description.clone(),
                level: rule.level,
                tier: decision.tier,
                because: decision.because,
                techniques: rule.techniques.clone(),
                matched: rule.explain(&view),
            });
        }
        drop(view);
        if !out.is_empty() {
            rec.set(col::THREAT_TECHNIQUE_ID, Cell::List(techniques));
            rec.set(col::THREAT_TACTIC_NAME, Cell::List(tactics));
            rec.set(col::RULE_NAME, Cell::Str(names.join("; ")));
            if let Some(t) = strictest {
                rec.set(col::POLICY_TIER, Cell::Str(t.as_str().to_owned()));
            }
        }
        out
    }
}

fn list(c: &Cell) -> Vec<String> {
    match c {
        Cell::List(l) => l.clone(),
        Cell::Str(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

fn tier_of(s: &str) -> Option<Tier> {
    match s {
        "off" => Some(Tier::Off),
        "record" => Some(Tier::Record),
        "alert" => Some(Tier::Alert),
        "block" => Some(Tier::Block),
        _ => None,
    }
}

/// The uniform alert for a detection on `rec`, when the policy alerts or blocks (`None` for
/// record and off).
pub fn alert_for(rec: &Record, d: &Detection) -> Option<schemas::alert::Alert> {
    use schemas::alert::{Alert, Handling, RuleRef, Status, TechniqueTag, endpoint_and_file};
    let status = match d.tier {
        Tier::Block => Status::Blocked,
        Tier::Alert => Status::Alerted,
        Tier::Record | Tier::Off => return None,
    };
    let catalog = schemas::attack::catalog();
    let (endpoint, file, object) = endpoint_and_file(rec);
    let time = schemas::time::format_micros(rec.time());
    let event_id = rec.cell(col::EVENT_ID).as_str().unwrap_or_default().to_owned();
    let mut tactics: Vec<String> = Vec::new();
    for t in &d.techniques {
        for tac in catalog.tactics_of(t) {
            push_unique(&mut tactics, tac.name.to_owned());
        }
    }
    Some(Alert {
        id: String::new(),
        tenant: rec.tenant().to_owned(),
        level: d.level.number(),
        first_seen: time.clone(),
        last_seen: time,
        count: 1,
        object,
        description: if d.description.is_empty() { d.rule.clone() } else { d.description.clone() },
        source: "behaviour detection (Sigma)".to_owned(),
        rule: RuleRef { id: d.rule_id.clone(), title: d.rule.clone() },
        status,
        handling: Handling::Unhandled,
        endpoint,
        file,
        techniques: d
            .techniques
            .iter()
            .map(|t| TechniqueTag {
                id: t.clone(),
                name: catalog.technique(t).map(|x| x.name.to_owned()).unwrap_or_default(),
            })
            .collect(),
        tactics,
        evidence: vec![event_id],
        why: serde_json::json!({
            "rule": {"id": d.rule_id, "title": d.rule, "level": d.level},
            "matched": d.matched,
            "policy": {"tier": d.tier, "because": d.because},
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    use crate::sigma::tests::decode;

    fn tagger() -> Tagger {
        Tagger::cordon_pack(Policy::cordon_default().validated().unwrap()).unwrap()
    }

    #[test]
    fn the_pack_compiles_and_its_tags_resolve() {
        let t = tagger();
        assert_eq!(t.rules().len(), CORDON_RULES.len());
        for r in t.rules() {
            assert!(r.unknown_tags.is_empty(), "{}: {:?}", r.title, r.unknown_tags);
            assert!(!r.techniques.is_empty(), "{} has no technique", r.title);
        }
    }

    #[test]
    fn every_rule_fires_on_its_positive_events_and_not_on_its_negative_ones() {
        let t = tagger();
        let titles: std::collections::HashMap<&str, String> = CORDON_RULES
            .iter()
            .map(|(file, text)| (*file, load(text, &Pipeline::cordon_ecs()).remove(0).unwrap().title))
            .collect();
        let cases: Vec<Value> = include_str!("../../rules/tests.ndjson")
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mut covered = std::collections::HashSet::new();
        for c in &cases {
            let file = c["rule"].as_str().unwrap();
            let title = titles.get(file).unwrap_or_else(|| panic!("no rule {file}"));
            let mut rec = decode(&c["event"]);
            let fired = t.tag(&mut rec).iter().any(|d| &d.rule == title);
            assert_eq!(fired, c["fires"].as_bool().unwrap(), "{file} on {}", c["event"]);
            covered.insert((file, fired));
        }
        for (file, _) in CORDON_RULES {
            assert!(
                covered.contains(&(*file, true)) && covered.contains(&(*file, false)),
                "{file} needs both kinds of test event"
            );
        }
    }

    #[test]
    fn the_log4j_conti_scenario_is_tagged_as_the_source_describes() {
        let t = tagger();
        let s = fixtures::scenario::log4j_conti();
        let mut tagged: Vec<(String, Value, Vec<String>, String)> = Vec::new();
        for i in 0..s.events.len() {
            let e = s.materialise(i, 1_700_000_000_000_000);
            let mut rec = decode(&e);
            t.tag(&mut rec);
            let techniques = match rec.cell(col::THREAT_TECHNIQUE_ID) {
                Cell::List(l) => l.clone(),
                _ => Vec::new(),
            };
            let tier = rec.cell(col::POLICY_TIER).as_str().unwrap_or("").to_owned();
            tagged.push((s.hosts[s.events[i].host].agent.clone(), e, techniques, tier));
        }
        let with =
            |host: &str, t: &str| tagged.iter().filter(|x| x.0 == host && x.2.iter().any(|y| y == t)).count();
        let text = |x: &(String, Value, Vec<String>, String), needle: &str| x.1.to_string().contains(needle);
        // The oracle is the scenario's own text, not the engine.
        let scans = tagged
            .iter()
            .filter(|x| x.0 == "win-dakeqi" && text(x, "http-request") && text(x, "${jndi:"))
            .count();
        assert!(scans > 0);
        assert_eq!(with("win-dakeqi", "T1595.002"), scans, "scanning on the workstation");
        assert_eq!(with("win-dakeqi", "T1046"), scans);
        let exploit = tagged
            .iter()
            .filter(|x| x.0 == "web-north" && text(x, "http-access") && text(x, "${jndi:"))
            .count();
        assert!(exploit > 0);
        assert_eq!(
            with("web-north", "T1190") - with_parent_java(&tagged),
            exploit,
            "exploitation on the web server"
        );
        assert_eq!(with("web-north", "T1105"), 1, "java.exe writes update.exe");
        let renames = tagged.iter().filter(|x| text(x, "rename") && text(x, ".CONTI")).count();
        assert!(renames >= 10);
        assert_eq!(with("web-north", "T1486"), renames);
        assert!(
            tagged.iter().filter(|x| x.2.contains(&"T1486".to_owned())).all(|x| x.3 == "block"),
            "ransomware is blocked"
        );
        assert_eq!(with("web-north", "T1490"), 1, "vssadmin delete shadows");
        assert_eq!(with("win-dakeqi", "T1204.002"), 1, "the attachment runs");
        assert_eq!(with("win-dakeqi", "T1566.001"), 1, "the attachment is saved");
        // Nothing else in the scenario is tagged: the background traffic is clean.
        let expected = scans + exploit + with_parent_java(&tagged) + 1 + renames + 1 + 1 + 1;
        let south =
            tagged.iter().filter(|x| x.0 != "web-north" && x.0 != "win-dakeqi" && !x.2.is_empty()).count();
        assert_eq!(tagged.iter().filter(|x| !x.2.is_empty()).count(), expected + south);
        assert!(
            tagged
                .iter()
                .filter(|x| !x.2.is_empty() && x.0 != "web-north" && x.0 != "win-dakeqi")
                .all(|x| x.2 == vec!["T1190"]),
            "other web servers only see the exploitation attempt"
        );
    }

    /// Process starts under java.exe (T1190 + T1059).
    fn with_parent_java(tagged: &[(String, Value, Vec<String>, String)]) -> usize {
        tagged
            .iter()
            .filter(|x| {
                x.1["process"]["parent"]["executable"]
                    .as_str()
                    .is_some_and(|p| p.to_lowercase().ends_with("\\java.exe"))
            })
            .count()
    }

    #[test]
    fn a_simulated_fleet_raises_nothing() {
        let t = tagger();
        let mut fleet = fixtures::fleet::FleetGenerator::new(7, 50);
        let mut fired = 0;
        for i in 0..20_000 {
            let (_, e) = fleet.next_event(1_700_000_000_000_000 + i * 1000);
            fired += usize::from(!t.tag(&mut decode(&e)).is_empty());
        }
        assert_eq!(fired, 0, "background activity must not match the attack rules");
    }
}
