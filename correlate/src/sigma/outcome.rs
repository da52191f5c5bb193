//! What a detection leads to beyond its tags: the uniform alert an analyst sees (when the policy
//! alerts or blocks) and the terminate command for a process start the policy blocks.

use super::event::RecordEvent;
use super::tagger::{Detection, list, push_unique};
use schemas::fields::col;
use schemas::policy::Tier;
use schemas::{Cell, Record};

/// The terminate command for a process start the policy blocks (`None` for other tiers and
/// events): the pid, the executable it must still run, the rule and the setting that decided, valid
/// for 15 minutes. Ingest sends it to the agent; the agent builds the same one at the edge.
pub fn terminate_command(rec: &Record, d: &Detection, now: i64) -> Option<schemas::wire::Command> {
    let col = |c: &str| schemas::fields::column_index(c).map(|i| rec.cell(i));
    if d.tier != Tier::Block
        || rec.cell(col::EVENT_KIND).as_str() != Some("process")
        || col("event_action").and_then(|c| c.as_str()) != Some("start")
    {
        return None;
    }
    let Some(Cell::Int(pid)) = col("process_pid") else { return None };
    let executable = col("process_executable").and_then(|c| c.as_str())?.to_owned();
    Some(schemas::wire::Command {
        id: format!("{now:x}-{pid:x}"),
        kind: "terminate".to_owned(),
        pid: *pid,
        executable,
        entity_id: col("process_entity_id").and_then(|c| c.as_str()).map(str::to_owned),
        event_id: rec.cell(col::EVENT_ID).as_str().unwrap_or_default().to_owned(),
        reason: format!("{} ({})", d.rule, d.because),
        issued_at: now,
        expires_at: now + 15 * 60 * 1_000_000,
    })
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
    let (endpoint, mut file, mut object) = endpoint_and_file(rec);
    let event_id = rec.cell(col::EVENT_ID).as_str().unwrap_or_default().to_owned();
    let (mut first, mut last, mut evidence) = (rec.time(), rec.time(), vec![event_id]);
    let mut source = "behaviour detection (Sigma)";
    if let Some(c) = &d.correlation {
        // A correlation's object is its group: the same group within the window is one alert.
        object = c.fire.group.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        file = Default::default();
        first = c.fire.first;
        last = c.fire.last;
        evidence = c.fire.evidence.clone();
        source = "correlation (Sigma)";
    }
    let tactics = tactics_of(rec, d);
    let why = why_of(d);
    let log = log_details(rec, d);
    if log.is_some() {
        source = "log analysis (Sigma)";
    }
    Some(Alert {
        id: String::new(),
        tenant: rec.tenant().to_owned(),
        level: d.level.number(),
        first_seen: schemas::time::format_micros(first),
        last_seen: schemas::time::format_micros(last),
        count: 1,
        object,
        description: if d.description.is_empty() { d.rule.clone() } else { d.description.clone() },
        source: source.to_owned(),
        rule: RuleRef { id: d.rule_id.clone(), title: d.rule.clone(), author: d.author.clone() },
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
        evidence,
        why,
        log,
    })
}

/// The tactics of a detection's techniques; a tactic-only rule's from the event it tagged.
fn tactics_of(rec: &Record, d: &Detection) -> Vec<String> {
    if d.techniques.is_empty() {
        return list(rec.cell(col::THREAT_TACTIC_NAME));
    }
    let catalog = schemas::attack::catalog();
    let mut tactics: Vec<String> = Vec::new();
    for t in &d.techniques {
        for tac in catalog.tactics_of(t) {
            push_unique(&mut tactics, tac.name.to_owned());
        }
    }
    tactics
}

/// Why a detection raised its alert: the rule, what matched, the policy, and its correlation.
fn why_of(d: &Detection) -> serde_json::Value {
    let mut why = serde_json::json!({
        "rule": {"id": d.rule_id, "title": d.rule, "level": d.level, "author": d.author},
        "matched": d.matched,
        "policy": {"tier": d.tier, "because": d.because},
    });
    if let Some(c) = &d.correlation {
        why["correlation"] = serde_json::to_value(c).unwrap_or_default();
    }
    why
}

/// A log alert's details: for rules with a group, or events that carry their raw line (never a
/// correlation's).
fn log_details(rec: &Record, d: &Detection) -> Option<schemas::alert::LogDetails> {
    let view = RecordEvent::new(rec); // parses the catch-all object once for the three lookups
    let text = |path: &str| -> Option<String> {
        let field = super::event::Field::new(path.to_owned(), path.to_owned(), None);
        let mut out = None;
        super::event::Event::get(&view, &field).any_text(&mut |t| {
            out = Some(t.to_owned());
            true
        });
        out
    };
    let raw = text("event.original");
    (d.correlation.is_none() && (d.group.is_some() || raw.is_some())).then(|| schemas::alert::LogDetails {
        rule_id: d.rule_id.clone(),
        rule_group: d.group.clone(),
        log_type: text("event.dataset"),
        reason: text("event.reason"),
        raw,
    })
}
