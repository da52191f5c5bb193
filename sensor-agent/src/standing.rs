//! Standing orders on the agent (issue 17 item 3): the orders it holds, each verified against its
//! pinned approver set, and the triggers it carries out within them. A trigger is not signed; what
//! bounds it is the order the approvers signed (techniques, this agent, the hourly cap, the
//! expiry), checked by [`check_trigger`], then the process's identity (its executable must be the
//! one the event reported, and its start time the one the sensor saw when it knows it), then the
//! executor's deny-list. Every trigger gets a result signed with the agent's key.

use crate::AgentError;
use crate::executor;
use crate::respond::Responder;
use schemas::response::command::SignedResult;
use schemas::response::standing::{OrderBody, SignedOrder, Trigger, check_trigger, verify_order};
use serde_json::json;

const HOUR_MICROS: i64 = 3_600_000_000;

/// An order refused, for the run summary.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RefusedOrder {
    /// The order's id, when its body parsed.
    pub order: String,
    /// Why.
    pub detail: String,
}

fn order_id(o: &SignedOrder) -> String {
    serde_json::from_str::<serde_json::Value>(&o.body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Responder {
    /// Replaces the orders held with those of `orders` that verify (the server's current list:
    /// an order it no longer sends is withdrawn, which only narrows what the agent does); the
    /// refused, with why.
    pub fn hold_orders(&mut self, orders: &[SignedOrder], now: i64) -> Result<Vec<RefusedOrder>, AgentError> {
        let Some(set) = self.set.clone() else {
            let refused = orders.iter().map(|o| RefusedOrder {
                order: order_id(o),
                detail: "no approver set was pinned at enrollment".into(),
            });
            return Ok(refused.collect());
        };
        let (mut held, mut refused) = (std::collections::BTreeMap::new(), Vec::new());
        for o in orders {
            match verify_order(o, &self.agent, &self.tenant, &set, now) {
                Ok(body) => {
                    held.insert(body.id, o.clone());
                }
                Err(e) => refused.push(RefusedOrder { order: order_id(o), detail: e.to_string() }),
            }
        }
        if held != self.state.orders {
            self.state.orders = held;
            self.save()?;
        }
        Ok(refused)
    }

    /// The ids of the orders held.
    pub fn orders_held(&self) -> Vec<String> {
        self.state.orders.keys().cloned().collect()
    }

    fn held(&self, id: &str) -> Option<OrderBody> {
        serde_json::from_str(&self.state.orders.get(id)?.body).ok()
    }

    /// Decides and carries out one trigger; its signed result (the result's command id is
    /// `trigger:<id>`).
    pub fn trigger(&mut self, t: &Trigger, now: i64) -> Result<SignedResult, AgentError> {
        let id = format!("trigger:{}", t.id);
        let order = self.held(&t.order);
        let fired = self
            .state
            .fired
            .get(&t.order)
            .map_or(0, |v| v.iter().filter(|at| now - **at < HOUR_MICROS).count());
        let seen = self.state.triggers_seen.contains_key(&t.id);
        if let Err(refusal) = check_trigger(order.as_ref(), t, fired, seen, now) {
            return self.finish(&id, "refused", refusal.to_string(), serde_json::Value::Null, now);
        }
        // Seen and counted on disk before anything runs: a crash from here on refuses it as a
        // replay when it comes again.
        self.state.triggers_seen.retain(|_, at| now - *at < 2 * HOUR_MICROS);
        self.state.triggers_seen.insert(t.id.clone(), now);
        let runs = self.state.fired.entry(t.order.clone()).or_default();
        runs.retain(|at| now - *at < HOUR_MICROS);
        runs.push(now);
        self.save()?;
        let (outcome, detail, actions) = terminate(t, &self.exec);
        tracing::warn!(trigger = %t.id, order = %t.order, outcome, %detail, "standing order carried out");
        self.finish(&id, outcome, detail, actions, now)
    }
}

/// Terminates the trigger's process when it is the one the event reported.
fn terminate(t: &Trigger, exec: &executor::Config) -> (&'static str, String, serde_json::Value) {
    let base = |p: &str| p.rsplit(['/', '\\']).next().unwrap_or(p).to_ascii_lowercase();
    let pid = i32::try_from(t.pid).unwrap_or(0);
    let running = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().trim_end_matches(" (deleted)").to_owned());
    let started = executor::linux::start_time(pid);
    let mismatch = match (&running, started) {
        (Err(_), _) | (_, None) => Some(format!("process {pid} is not running")),
        (Ok(exe), _) if base(exe) != base(&t.executable) => {
            Some(format!("pid {pid} runs {exe}, not {} (the pid was reused)", t.executable))
        }
        (_, Some(s)) if t.start_time.is_some_and(|want| want != s) => {
            Some(format!("pid {pid} started at {s}, not {:?} (the pid was reused)", t.start_time))
        }
        _ => None,
    };
    if let Some(why) = mismatch {
        return ("refused", why, serde_json::Value::Null);
    }
    let rule = json!({"name": format!("standing order {}", t.order), "kind": "defence", "actions": [
        {"action": "Proc_Terminate", "process": {"pid": pid, "start_time": started}}]});
    let Ok(rule) = schemas::response::parse(&rule) else {
        return ("failed", "could not build the terminate action".into(), serde_json::Value::Null);
    };
    let results = executor::carry_out(&rule, exec);
    let ok = results.iter().all(|r| r.outcome == executor::Outcome::Done);
    let detail = results.first().map(|r| r.detail.clone()).unwrap_or_default();
    (if ok { "executed" } else { "failed" }, detail, serde_json::to_value(&results).unwrap_or_default())
}

/// The standing orders the agent's identities hold, as the edge sees them: read from each
/// identity's response state (written by its responder only after the order verified against the
/// pinned approvers), so the edge's own `terminate` stays inside what approvers signed.
#[derive(Debug)]
pub struct HeldOrders {
    /// The state directory the identities' keys are under (`None`: no enrolled identities, so no
    /// orders).
    state_dir: Option<std::path::PathBuf>,
    /// When the edge acted on each order within the last hour.
    fired: std::sync::Mutex<std::collections::HashMap<String, Vec<i64>>>,
}

impl HeldOrders {
    /// The orders held under `state_dir`.
    pub fn new(state_dir: Option<std::path::PathBuf>) -> Self {
        Self { state_dir, fired: Default::default() }
    }

    /// The directory of the identity enrolled as `agent`: the state directory itself or one of its
    /// `ids/<name>`.
    fn dir_of(&self, agent: &str) -> Option<std::path::PathBuf> {
        let root = self.state_dir.as_ref()?;
        let ids = std::fs::read_dir(root.join("ids")).into_iter().flatten().flatten().map(|e| e.path());
        std::iter::once(root.clone()).chain(ids).find(|d| {
            std::fs::read_to_string(d.join("enrollment.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["agent_id"] == agent)
        })
    }

    /// The order that lets the edge terminate a process start of `techniques` on `agent` now, and
    /// counts it; or why none does.
    pub fn allow(&self, agent: &str, techniques: &[String], now: i64) -> Result<String, String> {
        let dir = self.dir_of(agent).ok_or("no enrolled identity holds a standing order")?;
        let text = std::fs::read_to_string(dir.join("response-state.json"))
            .map_err(|_| "no standing order is held")?;
        let state: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let orders: Vec<OrderBody> = state["orders"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, o)| serde_json::from_str(o["body"].as_str()?).ok())
            .collect();
        let mut fired = self.fired.lock().unwrap_or_else(|e| e.into_inner());
        for o in &orders {
            let Some(t) = techniques
                .iter()
                .map(|t| t.to_ascii_uppercase())
                .find(|t| o.techniques.iter().any(|s| t == s || t.starts_with(&format!("{s}."))))
            else {
                continue;
            };
            let runs = fired.entry(o.id.clone()).or_default();
            runs.retain(|at| now - *at < HOUR_MICROS);
            let probe = Trigger {
                id: String::new(),
                order: o.id.clone(),
                technique: t,
                pid: 0,
                start_time: None,
                executable: String::new(),
                event_id: String::new(),
                reason: String::new(),
                issued_at: now,
            };
            if check_trigger(Some(o), &probe, runs.len(), false, now).is_ok() {
                runs.push(now);
                return Ok(o.id.clone());
            }
        }
        Err(format!("no standing order held covers {techniques:?} now"))
    }
}

#[cfg(test)]
#[path = "standing_tests.rs"]
mod tests;
