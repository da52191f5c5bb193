//! The per-ATT&CK-technique response policy: for every tactic, technique and sub-technique, whether
//! matching behaviour is **blocked** (an alert, and the agent stops it), **alerted** on, only
//! **recorded** (stored with its tags for hunting), or ignored (**off**).
//!
//! A decision walks from the most specific setting to the least: the host group's override for the
//! sub-technique, its technique, its tactics and the group's default, then the same chain in the base
//! policy, ending at the base default. When a technique belongs to several tactics and the decision
//! falls to the tactic level, the strictest of those tactics' tiers applies. Every decision says which
//! setting made it.

use crate::attack::{self, Catalog};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What happens to behaviour of a technique.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Not evaluated.
    Off,
    /// Stored with its tags, no alert.
    Record,
    /// An alert is raised.
    Alert,
    /// An alert is raised and the agent stops the behaviour.
    Block,
}

impl Tier {
    /// The lower-case name (`block`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Off => "off",
            Tier::Record => "record",
            Tier::Alert => "alert",
            Tier::Block => "block",
        }
    }
}

/// A host group's overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Fallback for anything not set below (without one, the group falls through to the base policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Tier>,
    /// By tactic shortname (`credential-access`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tactics: BTreeMap<String, Tier>,
    /// By technique or sub-technique id (`T1003`, `T1003.001`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub techniques: BTreeMap<String, Tier>,
}

/// The JetStream key-value bucket through which ingest publishes each tenant's current policy to
/// agents (key: the tenant id; value: [`Published`] as JSON).
pub const POLICY_BUCKET: &str = "CORDON_POLICY";

/// The JetStream object store where the server publishes the operator's rule files for agents
/// (object [`RULES_OBJECT`]: a [`RuleBundle`] as JSON; too large for a key-value entry).
pub const RULES_BUCKET: &str = "CORDON_RULES";

/// The object holding the current [`RuleBundle`].
pub const RULES_OBJECT: &str = "current";

/// The rule files the server runs beside Cordon's pack, as sent to agents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleBundle {
    /// The digest of the pack and these files (as in [`Published::rules_digest`]).
    pub digest: String,
    /// (name, Sigma YAML text).
    pub files: Vec<(String, String)>,
}

/// A tenant's current policy as published to agents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The tenant.
    pub tenant: String,
    /// The policy version (0: the shipped default).
    pub version: i64,
    /// Who made that version.
    pub author: String,
    /// The digest of the rule pack the server runs (agents report a mismatch with theirs).
    pub rules_digest: String,
    /// The policy.
    pub policy: Policy,
}

/// The whole policy: base settings and per-host-group overrides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The tier of anything no other setting covers.
    pub default: Tier,
    /// By tactic shortname.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tactics: BTreeMap<String, Tier>,
    /// By technique or sub-technique id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub techniques: BTreeMap<String, Tier>,
    /// Overrides by host group name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, Settings>,
}

/// A policy decision and the setting that made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Decision {
    /// The tier.
    pub tier: Tier,
    /// Which setting decided: `group servers technique T1486`, `tactic impact`, `default`.
    pub because: String,
}

/// A policy that cannot be used, with every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy: {}", problems.join("; "))]
pub struct PolicyError {
    /// One line per problem.
    pub problems: Vec<String>,
}

/// How many sub-techniques (and techniques without any) get each tier, for one platform.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct TierCounts {
    /// Blocked.
    pub block: usize,
    /// Alerted.
    pub alert: usize,
    /// Recorded.
    pub record: usize,
    /// Off.
    pub off: usize,
}

impl Policy {
    /// Cordon's shipped policy: block brute force, ransomware impact, credential dumping and process
    /// injection; alert on execution through system tools, persistence and the other intrusion
    /// tactics; record discovery, collection, routine network use and reconnaissance.
    pub fn cordon_default() -> Self {
        let tier_map = |pairs: &[(&str, Tier)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        use Tier::{Alert, Block, Record};
        Self {
            default: Record,
            tactics: tier_map(&[
                ("initial-access", Alert),
                ("execution", Alert),
                ("persistence", Alert),
                ("privilege-escalation", Alert),
                ("defense-evasion", Alert),
                ("credential-access", Alert),
                ("lateral-movement", Alert),
                ("exfiltration", Alert),
                ("impact", Alert),
                ("discovery", Record),
                ("collection", Record),
                ("command-and-control", Record),
                ("reconnaissance", Record),
                ("resource-development", Record),
            ]),
            techniques: tier_map(&[
                ("T1110", Block),  // brute force
                ("T1486", Block),  // data encrypted for impact (ransomware)
                ("T1490", Block),  // inhibit system recovery (shadow copy deletion)
                ("T1003", Block),  // OS credential dumping
                ("T1055", Block),  // process injection
                ("T1105", Alert),  // ingress tool transfer (the download of the payload)
                ("T1071", Record), // application layer protocol: routine network use
                ("T1046", Alert),  // network service discovery (internal scanning)
                ("T1595", Alert),  // active scanning
            ]),
            groups: BTreeMap::new(),
        }
    }

    /// Checks every id and name against the ATT&CK catalog and normalises tactics to shortnames and
    /// technique ids to upper case. Unknown ids and unknown tactics are reported together.
    pub fn validated(mut self) -> Result<Self, PolicyError> {
        let catalog = attack::catalog();
        let mut problems = Vec::new();
        normalise(&mut self.tactics, &mut self.techniques, catalog, "", &mut problems);
        for (name, g) in &mut self.groups {
            if name.trim().is_empty() {
                problems.push("a host group name is empty".to_owned());
            }
            normalise(&mut g.tactics, &mut g.techniques, catalog, &format!("group {name}: "), &mut problems);
        }
        if problems.is_empty() { Ok(self) } else { Err(PolicyError { problems }) }
    }

    /// The tier for behaviour tagged with `technique` (and/or `tactics`, shortnames) on a host in
    /// `group`.
    pub fn decide(&self, technique: Option<&str>, tactics: &[&str], group: Option<&str>) -> Decision {
        let catalog = attack::catalog();
        let technique = technique.map(str::to_ascii_uppercase);
        // The chain of ids to try: sub-technique, then its parent.
        let mut ids: Vec<String> = Vec::new();
        // A setting in either ATT&CK version applies: each id with its counterpart (v18 `T1562.001`,
        // v19 `T1685`).
        if let Some(t) = &technique {
            let parent = t.split_once('.').map(|(p, _)| p.to_owned());
            for id in std::iter::once(t.clone()).chain(parent) {
                let other = attack::crosswalk::counterpart(&id).map(str::to_owned);
                ids.push(id);
                ids.extend(other);
            }
        }
        // Tactics: the tag's, else the catalog's for the technique.
        let mut tactic_names: Vec<String> = tactics.iter().map(|t| t.to_ascii_lowercase()).collect();
        if tactic_names.is_empty()
            && let Some(t) = &technique
        {
            tactic_names = catalog.tactics_of(t).iter().map(|t| t.shortname.to_owned()).collect();
        }
        let group_layer = group.and_then(|g| {
            self.groups.get(g).map(|s| (format!("group {g} "), s.default, &s.tactics, &s.techniques))
        });
        let base_layer = (String::new(), Some(self.default), &self.tactics, &self.techniques);
        for (prefix, default, tactics, techniques) in
            group_layer.into_iter().chain(std::iter::once(base_layer))
        {
            for id in &ids {
                if let Some(tier) = techniques.get(id) {
                    return Decision { tier: *tier, because: format!("{prefix}technique {id}") };
                }
            }
            let strictest = tactic_names.iter().filter_map(|t| tactics.get(t).map(|tier| (*tier, t))).max();
            if let Some((tier, t)) = strictest {
                return Decision { tier, because: format!("{prefix}tactic {t}") };
            }
            if let Some(tier) = default {
                return Decision { tier, because: format!("{prefix}default") };
            }
        }
        unreachable!("the base layer always has a default")
    }

    /// Tiers over the catalog for hosts of `platform` (`Windows`, `Linux`...) in `group`: one count
    /// per sub-technique, and per technique that has none ("alerts on 52 endpoint sub-techniques and
    /// records 204").
    pub fn summary(&self, platform: &str, group: Option<&str>) -> TierCounts {
        let catalog = attack::catalog();
        let has_subs: std::collections::HashSet<&str> =
            catalog.techniques().iter().filter_map(|t| t.parent).collect();
        let mut counts = TierCounts::default();
        for t in catalog.techniques() {
            if has_subs.contains(t.id) || !t.platforms.iter().any(|p| p.eq_ignore_ascii_case(platform)) {
                continue;
            }
            match self.decide(Some(t.id), &[], group).tier {
                Tier::Block => counts.block += 1,
                Tier::Alert => counts.alert += 1,
                Tier::Record => counts.record += 1,
                Tier::Off => counts.off += 1,
            }
        }
        counts
    }
}

fn normalise(
    tactics_in: &mut BTreeMap<String, Tier>,
    techniques_in: &mut BTreeMap<String, Tier>,
    catalog: &Catalog,
    prefix: &str,
    problems: &mut Vec<String>,
) {
    let mut tactics = BTreeMap::new();
    for (k, v) in std::mem::take(tactics_in) {
        match catalog.tactic(&k) {
            Some(t) => {
                tactics.insert(t.shortname.to_owned(), v);
            }
            None => problems.push(format!("{prefix}unknown tactic {k:?}")),
        }
    }
    let mut techniques = BTreeMap::new();
    for (k, v) in std::mem::take(techniques_in) {
        match catalog.technique(k.trim()) {
            Some(t) => {
                techniques.insert(t.id.to_owned(), v);
            }
            None => problems.push(format!(
                "{prefix}unknown technique id {k:?} (not in ATT&CK Enterprise v18, nor a v19 renumbering)"
            )),
        }
    }
    (*tactics_in, *techniques_in) = (tactics, techniques);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_in_either_attack_version_applies_to_both() {
        let mut p = Policy::cordon_default();
        p.techniques.insert("T1562.001".into(), Tier::Off);
        p.techniques.insert("T1685.005".into(), Tier::Block);
        p.tactics.insert("stealth".into(), Tier::Record);
        let p = p.validated().unwrap();
        // A v18 setting decides for the v19 id, and a v19 setting for the v18 id.
        let d = p.decide(Some("T1685"), &[], None);
        assert_eq!((d.tier, d.because.as_str()), (Tier::Off, "technique T1562.001"));
        let d = p.decide(Some("T1070.001"), &[], None);
        assert_eq!((d.tier, d.because.as_str()), (Tier::Block, "technique T1685.005"));
        // A v19 tactic is a tactic; a v19 tag's tactics include the v18 one it split.
        let d = p.decide(None, &["stealth"], None);
        assert_eq!(d.tier, Tier::Record);
        assert!(
            Policy { techniques: [("T1999".into(), Tier::Off)].into(), ..Policy::cordon_default() }
                .validated()
                .is_err()
        );
    }

    #[test]
    fn inheritance_goes_from_sub_technique_to_default_and_says_why() {
        let p = Policy::cordon_default().validated().unwrap();
        let d = p.decide(Some("T1003.001"), &[], None);
        assert_eq!((d.tier, d.because.as_str()), (Tier::Block, "technique T1003"), "parent technique");
        let d = p.decide(Some("T1059.001"), &[], None);
        assert_eq!((d.tier, d.because.as_str()), (Tier::Alert, "tactic execution"));
        let d = p.decide(Some("T1083"), &[], None);
        assert_eq!((d.tier, d.because.as_str()), (Tier::Record, "tactic discovery"));
        let d = p.decide(None, &[], None);
        assert_eq!((d.tier, d.because.as_str()), (Tier::Record, "default"));
        // A technique in several tactics takes the strictest: T1016 (system network configuration
        // discovery) is discovery only; T1078 (valid accounts) spans four alerting tactics.
        assert_eq!(p.decide(Some("T1016"), &[], None).tier, Tier::Record);
        assert_eq!(p.decide(Some("T1078"), &[], None).tier, Tier::Alert);
        // The rule's own tactic tag is used when it gives one.
        assert_eq!(p.decide(Some("T1078"), &["discovery"], None).because, "tactic discovery");
    }

    #[test]
    fn group_overrides_win_at_every_level_then_fall_through() {
        let mut p = Policy::cordon_default();
        p.groups.insert(
            "servers".into(),
            Settings {
                default: None,
                tactics: [("Discovery".to_owned(), Tier::Alert)].into(),
                techniques: [("t1486".to_owned(), Tier::Alert)].into(),
            },
        );
        let p = p.validated().unwrap();
        assert!(p.groups["servers"].tactics.contains_key("discovery"), "normalised to the shortname");
        let d = p.decide(Some("T1486"), &[], Some("servers"));
        assert_eq!((d.tier, d.because.as_str()), (Tier::Alert, "group servers technique T1486"));
        assert_eq!(p.decide(Some("T1083"), &[], Some("servers")).because, "group servers tactic discovery");
        // Not overridden in the group: the base decides; other groups are untouched.
        assert_eq!(p.decide(Some("T1110.001"), &[], Some("servers")).because, "technique T1110");
        assert_eq!(p.decide(Some("T1486"), &[], Some("workstations")).tier, Tier::Block);
    }

    #[test]
    fn unknown_ids_are_reported_all_at_once() {
        let mut p = Policy::cordon_default();
        p.techniques.insert("T9999".into(), Tier::Block);
        p.tactics.insert("teleportation".into(), Tier::Alert);
        p.groups.insert(
            "g".into(),
            Settings { techniques: [("T1059.999".to_owned(), Tier::Off)].into(), ..Settings::default() },
        );
        let err = p.validated().unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(err.to_string().contains("T9999") && err.to_string().contains("teleportation"));
        assert!(err.problems.iter().any(|m| m.starts_with("group g: ") && m.contains("T1059.999")));
    }

    #[test]
    fn json_form_round_trips_and_refuses_unknown_keys() {
        let p = Policy::cordon_default();
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&text).unwrap(), p);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["default"], "record");
        assert_eq!(v["techniques"]["T1486"], "block");
        assert!(serde_json::from_str::<Policy>(r#"{"default": "record", "tiers": {}}"#).is_err());
        assert!(serde_json::from_str::<Policy>(r#"{"default": "maybe"}"#).is_err());
    }

    #[test]
    fn summary_counts_every_windows_leaf_technique_once() {
        let p = Policy::cordon_default().validated().unwrap();
        let c = p.summary("Windows", None);
        let catalog = attack::catalog();
        let parents: std::collections::HashSet<&str> =
            catalog.techniques().iter().filter_map(|t| t.parent).collect();
        let leaves = catalog
            .techniques()
            .iter()
            .filter(|t| !parents.contains(t.id) && t.platforms.contains(&"Windows"))
            .count();
        assert_eq!(c.block + c.alert + c.record + c.off, leaves);
        // Blocked: exactly the Windows leaves of brute force, ransomware impact, recovery inhibition,
        // credential dumping and process injection.
        let blocked = catalog
            .techniques()
            .iter()
            .filter(|t| !parents.contains(t.id) && t.platforms.contains(&"Windows"))
            .filter(|t| ["T1110", "T1486", "T1490", "T1003", "T1055"].contains(&t.parent.unwrap_or(t.id)))
            .count();
        assert_eq!(c.block, blocked, "{c:?}");
        let all_off = Policy {
            default: Tier::Off,
            tactics: BTreeMap::new(),
            techniques: BTreeMap::new(),
            groups: BTreeMap::new(),
        };
        assert_eq!(all_off.summary("Windows", None).off, leaves);
    }
}
