//! Tagging events with ATT&CK techniques and the policy tier: a rule set plus a policy, applied to
//! each event at ingest (and, later, at the agent).
//!
//! For every rule that fires, the event gains the rule's techniques and tactics (tactics from the
//! catalog when the rule names none); `rule.name` lists the rules that fired; `cordon.policy_tier` is
//! the strictest tier the policy gives any of them on the event's host group. Tags an agent already
//! set are kept.

use super::correlation::{Correlation, resolve};
use super::event::RecordEvent;
pub use super::outcome::{alert_for, terminate_command};
use super::pipeline::Pipeline;
use super::rule::{Level, Loaded, Matched, Rule, RuleError};
use super::ruleset::RuleSet;
use super::sources::{Sources, rules_digest};
use super::stream::{Correlator, Fire, Resolved, Routes};
use schemas::fields::col;
use schemas::policy::{Policy, Tier};
use schemas::{Cell, Record};
use std::sync::Arc;

/// Cordon's own rule pack (`correlate/rules/`), embedded.
pub const CORDON_RULES: &[(&str, &str)] = &[
    (
        "mr_cordon_dcom_after_network_logon.yml",
        include_str!("../../rules/mr_cordon_dcom_after_network_logon.yml"),
    ),
    ("cordon_boot_key_read.yml", include_str!("../../rules/cordon_boot_key_read.yml")),
    (
        "cordon_installutil_uninstall_bypass.yml",
        include_str!("../../rules/cordon_installutil_uninstall_bypass.yml"),
    ),
    ("cordon_register_cimprovider_dll.yml", include_str!("../../rules/cordon_register_cimprovider_dll.yml")),
    (
        "cordon_remote_thread_from_user_folder.yml",
        include_str!("../../rules/cordon_remote_thread_from_user_folder.yml"),
    ),
    (
        "cordon_session_enumeration_powershell.yml",
        include_str!("../../rules/cordon_session_enumeration_powershell.yml"),
    ),
    (
        "cordon_local_admins_enumerated_remotely.yml",
        include_str!("../../rules/cordon_local_admins_enumerated_remotely.yml"),
    ),
    ("cordon_runas_other_user.yml", include_str!("../../rules/cordon_runas_other_user.yml")),
    (
        "cordon_ad_object_permissions_changed.yml",
        include_str!("../../rules/cordon_ad_object_permissions_changed.yml"),
    ),
    ("cordon_bits_transfer_powershell.yml", include_str!("../../rules/cordon_bits_transfer_powershell.yml")),
    (
        "cordon_dcom_lateral_movement_powershell.yml",
        include_str!("../../rules/cordon_dcom_lateral_movement_powershell.yml"),
    ),
    (
        "cordon_defender_weakened_set_mppreference.yml",
        include_str!("../../rules/cordon_defender_weakened_set_mppreference.yml"),
    ),
    (
        "cordon_lsass_memory_read_object_access.yml",
        include_str!("../../rules/cordon_lsass_memory_read_object_access.yml"),
    ),
    (
        "cordon_powershell_service_tampering.yml",
        include_str!("../../rules/cordon_powershell_service_tampering.yml"),
    ),
    (
        "cordon_privileged_group_enumeration_powershell.yml",
        include_str!("../../rules/cordon_privileged_group_enumeration_powershell.yml"),
    ),
    ("cordon_sam_group_enumeration.yml", include_str!("../../rules/cordon_sam_group_enumeration.yml")),
    (
        "cordon_sensitive_privilege_assigned.yml",
        include_str!("../../rules/cordon_sensitive_privilege_assigned.yml"),
    ),
    (
        "cordon_share_permissions_changed.yml",
        include_str!("../../rules/cordon_share_permissions_changed.yml"),
    ),
    (
        "cordon_sql_server_audit_tampering.yml",
        include_str!("../../rules/cordon_sql_server_audit_tampering.yml"),
    ),
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
    (
        "cordon_linux_systemd_unit_written.yml",
        include_str!("../../rules/cordon_linux_systemd_unit_written.yml"),
    ),
    (
        "cordon_linux_authorized_keys_changed.yml",
        include_str!("../../rules/cordon_linux_authorized_keys_changed.yml"),
    ),
    ("cordon_linux_library_from_temp.yml", include_str!("../../rules/cordon_linux_library_from_temp.yml")),
    ("cordon_linux_code_from_memfd.yml", include_str!("../../rules/cordon_linux_code_from_memfd.yml")),
    ("cordon_linux_firewall_changed.yml", include_str!("../../rules/cordon_linux_firewall_changed.yml")),
    ("cordon_linux_firewall_flushed.yml", include_str!("../../rules/cordon_linux_firewall_flushed.yml")),
    (
        "cordon_injection_remote_thread_system_process.yml",
        include_str!("../../rules/cordon_injection_remote_thread_system_process.yml"),
    ),
    ("cordon_lsass_memory_access.yml", include_str!("../../rules/cordon_lsass_memory_access.yml")),
    ("cordon_persistence_run_key.yml", include_str!("../../rules/cordon_persistence_run_key.yml")),
    (
        "cordon_persistence_service_install.yml",
        include_str!("../../rules/cordon_persistence_service_install.yml"),
    ),
    (
        "cordon_persistence_scheduled_task.yml",
        include_str!("../../rules/cordon_persistence_scheduled_task.yml"),
    ),
    (
        "cordon_persistence_file_association_appinit.yml",
        include_str!("../../rules/cordon_persistence_file_association_appinit.yml"),
    ),
    (
        "cordon_log_windows_logon_failure.yml",
        include_str!("../../rules/cordon_log_windows_logon_failure.yml"),
    ),
    ("cordon_log_ssh_auth_failure.yml", include_str!("../../rules/cordon_log_ssh_auth_failure.yml")),
    ("cordon_log_db_auth_failure.yml", include_str!("../../rules/cordon_log_db_auth_failure.yml")),
    ("mr_cordon_internal_scanning.yml", include_str!("../../rules/mr_cordon_internal_scanning.yml")),
    ("mr_cordon_brute_force.yml", include_str!("../../rules/mr_cordon_brute_force.yml")),
    ("mr_cordon_mass_rename.yml", include_str!("../../rules/mr_cordon_mass_rename.yml")),
    (
        "mr_cordon_explicit_credential_spray.yml",
        include_str!("../../rules/mr_cordon_explicit_credential_spray.yml"),
    ),
    (
        "mr_cordon_netlogon_bad_password_flood.yml",
        include_str!("../../rules/mr_cordon_netlogon_bad_password_flood.yml"),
    ),
];

/// A digest of Cordon's rule pack alone: see [`rules_digest`].
pub fn pack_digest() -> String {
    rules_digest(&[])
}

/// One rule firing on one event.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Detection {
    /// The rule's id.
    pub rule_id: String,
    /// The rule's title.
    pub rule: String,
    /// The rule's description.
    pub description: String,
    /// The rule's author (alerts keep it, as the Detection Rule License asks).
    pub author: Option<String>,
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
    /// For a correlation: what held (group, count, window, the rules in it) and the evidence.
    pub correlation: Option<CorrelationHit>,
    /// The rule's group (log alert rules).
    pub group: Option<String>,
}

/// What a correlation rule saw when it fired.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CorrelationHit {
    /// `event_count`, `value_count`, `temporal`, `temporal_ordered`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The condition.
    pub condition: super::correlation::Condition,
    /// The timespan in seconds.
    pub timespan_secs: i64,
    /// The fields counted (value_count).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// The window and its events.
    #[serde(flatten)]
    pub fire: Fire,
}

/// Correlation rules resolved against a rule set.
#[derive(Debug, Default)]
struct Correlations {
    resolved: Vec<Resolved>,
    routes: Routes,
    /// Detection rules that only feed correlations (`generate: false`): they neither tag nor alert.
    silent: Vec<bool>,
}

/// A compiled rule set and the policy.
#[derive(Clone, Debug)]
pub struct Tagger {
    rules: RuleSet,
    policy: Policy,
    correlations: Arc<Correlations>,
    pub(super) sources: Arc<Sources>,
}

impl Tagger {
    /// These rules under `policy`.
    pub fn new(rules: Vec<Rule>, policy: Policy) -> Self {
        Self { rules: RuleSet::new(rules), policy, correlations: Arc::default(), sources: Arc::default() }
    }

    /// Detection and correlation rules under `policy`; the correlations' references are resolved
    /// (with `pipeline` for their field names) and anything unresolvable is refused.
    pub fn build(loaded: Vec<Loaded>, pipeline: &Pipeline, policy: Policy) -> Result<Self, RuleError> {
        let mut rules = Vec::new();
        let mut corrs: Vec<Correlation> = Vec::new();
        for l in loaded {
            match l {
                Loaded::Rule(r) => rules.push(r),
                Loaded::Correlation(c) => corrs.push(c),
            }
        }
        let (resolved, routes) = resolve(&rules, corrs, pipeline)?;
        let mut silent = vec![false; rules.len()];
        for c in &resolved {
            if !c.rule.generate {
                for s in &c.steps {
                    if let super::stream::Source::Rule(i) = s.source {
                        silent[i] = true;
                    }
                }
            }
        }
        Ok(Self {
            rules: RuleSet::new(rules),
            policy,
            correlations: Arc::new(Correlations { resolved, routes, silent }),
            sources: Arc::new(Sources { digest: pack_digest(), ..Sources::default() }),
        })
    }

    /// Cordon's rule pack under `policy`. The pack is tested to compile whole.
    pub fn cordon_pack(policy: Policy) -> Result<Self, RuleError> {
        Self::with_rule_files(Vec::new(), policy)
    }

    /// Where the rules came from: the digest agents compare, the operator's files, and what was
    /// refused.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// The same rules under another policy.
    pub fn with_policy(&self, policy: Policy) -> Self {
        Self {
            rules: self.rules.clone(),
            policy,
            correlations: Arc::clone(&self.correlations),
            sources: Arc::clone(&self.sources),
        }
    }

    /// The correlation rules.
    pub fn correlations(&self) -> impl Iterator<Item = &Correlation> {
        self.correlations.resolved.iter().map(|r| &r.rule)
    }

    /// The longest correlation timespan (µs; 0 without correlations): how much recent history
    /// rebuilds the correlation state after a restart.
    pub fn correlation_horizon(&self) -> i64 {
        self.correlations.resolved.iter().map(|r| r.rule.timespan).max().unwrap_or(0)
    }

    /// Empty correlation state for this rule set.
    pub fn correlator(&self) -> Correlator {
        Correlator::new(self.correlations.resolved.len())
    }

    /// Feeds an event and the detection rules it matched (from [`Tagger::tag_and_hits`]) to the
    /// correlations; returns the correlations that fired, decided by the policy (tier off dropped).
    pub fn correlate(&self, state: &mut Correlator, rec: &Record, hits: &[usize]) -> Vec<Detection> {
        if hits.is_empty() {
            return Vec::new();
        }
        let c = &*self.correlations;
        let view = RecordEvent::new(rec);
        let event_id = rec.cell(col::EVENT_ID).as_str().unwrap_or_default();
        let fires = state.observe(&c.resolved, &c.routes, &view, rec.time(), event_id, hits);
        let group = rec.cell(col::HOST_GROUP).as_str();
        let mut out = Vec::new();
        for fire in fires {
            let r = &c.resolved[fire.correlation];
            let Some((tier, because)) = self.decide(&r.rule.techniques, &r.rule.tactics, group) else {
                continue;
            };
            out.push(Detection {
                rule_id: r.rule.id.clone(),
                rule: r.rule.title.clone(),
                description: r.rule.description.clone(),
                author: r.rule.author.clone(),
                level: r.level,
                tier,
                because,
                techniques: r.rule.techniques.clone(),
                matched: Vec::new(),
                group: None,
                correlation: Some(CorrelationHit {
                    kind: r.rule.kind.as_str(),
                    condition: r.rule.condition,
                    timespan_secs: r.rule.timespan / 1_000_000,
                    fields: match &r.rule.kind {
                        super::correlation::Kind::ValueCount { fields } => fields.clone(),
                        _ => Vec::new(),
                    },
                    fire,
                }),
            });
        }
        out
    }

    /// The strictest tier the policy gives these techniques (or the tactics alone when there are
    /// none) on a host group, and why; `None` when it is off.
    fn decide(
        &self,
        techniques: &[String],
        tactics: &[String],
        group: Option<&str>,
    ) -> Option<(Tier, String)> {
        let tactic_refs: Vec<&str> = tactics.iter().map(String::as_str).collect();
        let decisions: Vec<_> = if techniques.is_empty() {
            vec![self.policy.decide(None, &tactic_refs, group)]
        } else {
            techniques.iter().map(|t| self.policy.decide(Some(t), &tactic_refs, group)).collect()
        };
        let d = decisions.into_iter().max_by_key(|d| d.tier)?;
        (d.tier != Tier::Off).then_some((d.tier, d.because))
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
        self.tag_and_hits(rec).0
    }

    /// [`Tagger::tag`], plus the indices of the matched rules that feed correlations (for
    /// [`Tagger::correlate`]).
    pub fn tag_and_hits(&self, rec: &mut Record) -> (Vec<Detection>, Vec<usize>) {
        let view = RecordEvent::new(rec);
        let matched = self.rules.matching_indices(&view);
        if matched.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let c = &*self.correlations;
        let feeds: Vec<usize> = matched.iter().copied().filter(|&i| c.routes.feeds(i)).collect();
        let hits: Vec<&Rule> = matched
            .iter()
            .filter(|&&i| !c.silent.get(i).copied().unwrap_or(false))
            .map(|&i| &self.rules.rules()[i])
            .collect();
        if hits.is_empty() {
            return (Vec::new(), feeds);
        }
        let group = rec.cell(col::HOST_GROUP).as_str().map(str::to_owned);
        let catalog = schemas::attack::catalog();
        let mut techniques = list(rec.cell(col::THREAT_TECHNIQUE_ID));
        let mut tactics = list(rec.cell(col::THREAT_TACTIC_NAME));
        // Rules that fired before (at the agent) are kept, each once.
        let mut names: Vec<String> = rec
            .cell(col::RULE_NAME)
            .as_str()
            .map(|s| s.split("; ").filter(|n| !n.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let mut strictest: Option<Tier> = rec.cell(col::POLICY_TIER).as_str().and_then(tier_of);
        let mut out = Vec::new();
        for rule in hits {
            let Some((tier, because)) = self.decide(&rule.techniques, &rule.tactics, group.as_deref()) else {
                continue;
            };
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
            strictest = strictest.max(Some(tier));
            out.push(Detection {
                rule_id: rule.id.clone(),
                rule: rule.title.clone(),
                description: rule.description.clone(),
                author: rule.author.clone(),
                level: rule.level,
                tier,
                because,
                techniques: rule.techniques.clone(),
                matched: rule.explain(&view),
                correlation: None,
                group: rule.group.clone(),
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
        (out, feeds)
    }
}

pub(super) fn list(c: &Cell) -> Vec<String> {
    match c {
        Cell::List(l) => l.clone(),
        Cell::Str(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

pub(super) fn push_unique(v: &mut Vec<String>, s: String) {
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

#[cfg(test)]
#[path = "tagger_tests.rs"]
mod tests;
