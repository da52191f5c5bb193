//! The agent's side of response (issue 17 items 3 and 4): it asks the server for its approved
//! commands on its own subject, decides each with [`verify`] against the approver set it pinned at
//! enrollment, carries out what it accepts with the [`crate::executor`], and hands in a result
//! signed with its own key. The server only relays: it holds no key this agent obeys.
//!
//! At most once, across restarts: the replay guard (nonces and the last counter) is written to disk
//! *before* a command runs, so a command delivered again after a crash is refused as a replay and
//! never runs twice. Results are kept on disk too and handed in again when the same command comes
//! back (the server had not stored it yet).

use crate::AgentError;
use crate::executor::{self, Outcome};
use schemas::response::approvers::{self, SignedSetChange};
use schemas::response::command::{
    ApproverSet, RESULT_DOMAIN, ReplayGuard, ResultBody, SignedCommand, SignedResult, verify,
};
use schemas::response::standing::{SignedOrder, Trigger};
use schemas::signed::AgentKey;
use schemas::subject::SubjectKind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Results kept on disk to hand in again, at most.
const KEEP_RESULTS: usize = 1000;
/// Destructive commands an agent carries out per hour unless told otherwise: past it, a
/// compromised approver set or a runaway automation cannot keep acting on this host.
pub const DEFAULT_DESTRUCTIVE_PER_HOUR: usize = 30;
const HOUR_MICROS: i64 = 3_600_000_000;

/// What the agent keeps across restarts.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct State {
    guard: ReplayGuard,
    /// Results by command id, oldest first by insertion.
    results: BTreeMap<String, SignedResult>,
    /// When destructive commands ran within the last hour (microseconds).
    #[serde(default)]
    destructive_runs: Vec<i64>,
    /// The approver set as changed since enrollment (by changes its members signed).
    #[serde(default)]
    set: Option<ApproverSet>,
    /// Standing orders held (verified), by id.
    #[serde(default)]
    pub(crate) orders: BTreeMap<String, SignedOrder>,
    /// When each order's triggers ran within the last hour (microseconds).
    #[serde(default)]
    pub(crate) fired: BTreeMap<String, Vec<i64>>,
    /// Trigger ids handled recently, with when.
    #[serde(default)]
    pub(crate) triggers_seen: BTreeMap<String, i64>,
}

/// What the server answers on the orders subject.
#[derive(Debug, Default, serde::Deserialize)]
struct Orders {
    #[serde(default)]
    commands: Vec<SignedCommand>,
    #[serde(default)]
    approver_sets: Vec<SignedSetChange>,
    /// The standing orders that cover this agent (the whole current list).
    #[serde(default)]
    standing: Option<Vec<SignedOrder>>,
}

/// One command's outcome, for the run summary.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Handled {
    /// The command id.
    pub command: String,
    /// `executed`, `failed` or `refused`.
    pub outcome: String,
    /// Why, or a summary.
    pub detail: String,
    /// Whether the server stored the result.
    pub stored: bool,
}

/// An enrolled identity answering response commands.
pub struct Responder {
    dir: PathBuf,
    pub(crate) agent: String,
    pub(crate) tenant: String,
    key: AgentKey,
    pub(crate) set: Option<ApproverSet>,
    pub(crate) state: State,
    pub(crate) exec: executor::Config,
    /// Destructive commands carried out per hour at most.
    cap_per_hour: usize,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Responder({})", self.agent)
    }
}

fn failed(m: impl std::fmt::Display) -> AgentError {
    AgentError::Enroll(m.to_string())
}

impl Responder {
    /// The identity enrolled in `dir`, its pinned approvers, and its state on disk.
    pub fn open(dir: &Path, exec: executor::Config) -> Result<Self, AgentError> {
        let path = dir.join("enrollment.json");
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&path).map_err(|e| failed(format!("{}: {e}", path.display())))?,
        )
        .map_err(|e| failed(format!("{}: {e}", path.display())))?;
        let agent = record["agent_id"].as_str().unwrap_or_default().to_owned();
        let tenant = record["tenant"].as_str().unwrap_or_default().to_owned();
        let state: State = match std::fs::read_to_string(dir.join("response-state.json")) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|e| failed(format!("response-state.json: {e}")))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(failed(format!("response-state.json: {e}"))),
        };
        let set = state.set.clone().or_else(|| pinned(&record["approvers"]));
        if set.is_none() {
            tracing::warn!(agent, "no approver set pinned at enrollment: every command will be refused");
        }
        let key = crate::enroll::agent_key(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            agent,
            tenant,
            key,
            set,
            state,
            exec,
            cap_per_hour: DEFAULT_DESTRUCTIVE_PER_HOUR,
        })
    }

    /// Sets the cap on destructive commands per hour.
    pub fn with_cap(mut self, per_hour: usize) -> Self {
        self.cap_per_hour = per_hour;
        self
    }

    /// This identity's agent id.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The approver set it holds, if any.
    pub fn approver_set(&self) -> Option<&ApproverSet> {
        self.set.as_ref()
    }

    /// Takes the changes that follow the set it holds, in version order, each only if enough of
    /// the set it replaces signed it; stops at the first it cannot take. The new set is on disk
    /// before it is used.
    pub fn adopt(&mut self, changes: &[SignedSetChange]) -> Result<(), AgentError> {
        let Some(mut current) = self.set.clone() else { return Ok(()) };
        let mut sorted: Vec<(u64, &SignedSetChange)> = changes
            .iter()
            .filter_map(|c| {
                serde_json::from_str::<serde_json::Value>(&c.body)
                    .ok()
                    .map(|v| (v["version"].as_u64().unwrap_or(0), c))
            })
            .filter(|(v, _)| *v > current.version)
            .collect();
        sorted.sort_by_key(|(v, _)| *v);
        let before = current.version;
        for (version, change) in sorted {
            match approvers::apply(&current, change, &self.tenant) {
                Ok(next) => current = next,
                Err(why) => {
                    tracing::warn!(version, %why, "approver-set change refused; keeping the set held");
                    break;
                }
            }
        }
        if current.version != before {
            tracing::warn!(
                from = before,
                to = current.version,
                keys = current.keys.len(),
                "approver set changed"
            );
            self.state.set = Some(current.clone());
            self.set = Some(current);
            self.save()?;
        }
        Ok(())
    }

    /// Decides and carries out one command; its signed result.
    pub fn handle(&mut self, cmd: &SignedCommand, now: i64) -> Result<SignedResult, AgentError> {
        let id = serde_json::from_str::<serde_json::Value>(&cmd.body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if let Some(kept) = self.state.results.get(&id) {
            return Ok(kept.clone());
        }
        let Some(set) = &self.set else {
            return self.finish(
                &id,
                "refused",
                "no approver set was pinned at enrollment".into(),
                json_null(),
                now,
            );
        };
        let mut guard = self.state.guard.clone();
        let (_, rule) = match verify(cmd, &self.agent, set, &mut guard, now) {
            Ok(accepted) => accepted,
            Err(refusal) => return self.finish(&id, "refused", refusal.to_string(), json_null(), now),
        };
        // The guard reaches the disk before anything runs: a crash from here on refuses the
        // command as a replay when it comes again.
        self.state.guard = guard;
        self.state.destructive_runs.retain(|t| now - t < HOUR_MICROS);
        if rule.is_destructive() {
            if self.state.destructive_runs.len() >= self.cap_per_hour {
                self.save()?;
                let why =
                    format!("over this agent's cap of {} destructive commands per hour", self.cap_per_hour);
                return self.finish(&id, "refused", why, json_null(), now);
            }
            self.state.destructive_runs.push(now);
        }
        self.save()?;
        let results = executor::carry_out(&rule, &self.exec);
        let bad = results.iter().filter(|r| matches!(r.outcome, Outcome::Failed)).count();
        let outcome = if bad == 0 { "executed" } else { "failed" };
        let detail = format!("{} action(s), {bad} failed", results.len());
        let actions = serde_json::to_value(&results).unwrap_or_default();
        tracing::warn!(command = %id, outcome, %detail, "response command carried out");
        self.finish(&id, outcome, detail, actions, now)
    }

    pub(crate) fn finish(
        &mut self,
        id: &str,
        outcome: &str,
        detail: String,
        actions: serde_json::Value,
        now: i64,
    ) -> Result<SignedResult, AgentError> {
        let body = ResultBody {
            command: id.to_owned(),
            agent: self.agent.clone(),
            outcome: outcome.to_owned(),
            detail,
            actions,
            at: now,
        };
        let text = serde_json::to_string(&body).map_err(failed)?;
        let signed = SignedResult { sig: self.key.sign_detached(RESULT_DOMAIN, &text), body: text };
        if !id.is_empty() {
            if self.state.results.len() >= KEEP_RESULTS
                && let Some(oldest) = self.state.results.keys().next().cloned()
            {
                self.state.results.remove(&oldest);
            }
            self.state.results.insert(id.to_owned(), signed.clone());
            self.save()?;
        }
        Ok(signed)
    }

    /// Writes the state atomically and durably (temp file, fsync, rename, fsync the directory).
    pub(crate) fn save(&self) -> Result<(), AgentError> {
        use std::io::Write;
        let path = self.dir.join("response-state.json");
        let tmp = self.dir.join(".response-state.json.tmp");
        let text = serde_json::to_vec(&self.state).map_err(failed)?;
        let mut f = std::fs::File::create(&tmp).map_err(failed)?;
        f.write_all(&text).and_then(|()| f.sync_all()).map_err(failed)?;
        std::fs::rename(&tmp, &path).map_err(failed)?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(failed)
    }
}

fn json_null() -> serde_json::Value {
    serde_json::Value::Null
}

/// The approver set in an enrollment record, if it holds a usable one.
fn pinned(v: &serde_json::Value) -> Option<ApproverSet> {
    let keys: Vec<String> =
        v["keys"].as_array()?.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect();
    let threshold = v["threshold"].as_u64().unwrap_or(2) as usize;
    ApproverSet::new(keys, threshold).ok()
}

/// The subjects one identity answers on: its orders (asked), its results (handed in) and its
/// command subject (standing orders' triggers, pushed by the server).
#[derive(Clone, Debug)]
pub struct ResponseSubjects {
    /// `...orders`.
    pub orders: String,
    /// `...result`.
    pub results: String,
    /// `...cmd`.
    pub triggers: String,
}

async fn next_trigger(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    use futures::StreamExt;
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Answers for `for_secs`: asks for orders every `poll` (commands, approver-set changes, the
/// standing orders that cover it) and carries out the triggers pushed in between; each result is
/// handed in.
pub async fn serve(
    client: &async_nats::Client,
    subjects: &ResponseSubjects,
    responder: &mut Responder,
    for_secs: u64,
    poll: Duration,
) -> Vec<Handled> {
    let mut triggers = match client.subscribe(subjects.triggers.clone()).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot subscribe to triggers; standing orders wait for the next run");
            None
        }
    };
    let _ = client.flush().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(for_secs);
    let mut next_poll = tokio::time::Instant::now();
    let mut handled = Vec::new();
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            msg = next_trigger(&mut triggers) => {
                let Some(msg) = msg else { triggers = None; continue };
                match serde_json::from_slice::<Trigger>(&msg.payload) {
                    Ok(t) => {
                        let result = responder.trigger(&t, schemas::time::now_micros());
                        handled.push(hand_in(client, &subjects.results, result).await);
                    }
                    Err(e) => tracing::warn!(error = %e, "a malformed trigger was ignored"),
                }
            }
            _ = tokio::time::sleep_until(next_poll.min(deadline)) => {
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                ask(client, subjects, responder, &mut handled).await;
                next_poll = tokio::time::Instant::now() + poll;
            }
        }
    }
    handled
}

/// Asks once for orders and handles what comes back.
async fn ask(
    client: &async_nats::Client,
    subjects: &ResponseSubjects,
    responder: &mut Responder,
    handled: &mut Vec<Handled>,
) {
    let msg = match client.request(subjects.orders.clone(), Vec::new().into()).await {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "asking for response orders failed; asking again");
            return;
        }
    };
    let orders: Orders = serde_json::from_slice(&msg.payload).unwrap_or_default();
    if let Err(e) = responder.adopt(&orders.approver_sets) {
        tracing::warn!(error = %e, "cannot keep the new approver set");
    }
    if let Some(standing) = &orders.standing {
        match responder.hold_orders(standing, schemas::time::now_micros()) {
            Ok(refused) => refused
                .iter()
                .for_each(|r| tracing::warn!(order = %r.order, why = %r.detail, "standing order refused")),
            Err(e) => tracing::warn!(error = %e, "cannot keep the standing orders"),
        }
    }
    for cmd in orders.commands {
        let result = responder.handle(&cmd, schemas::time::now_micros());
        handled.push(hand_in(client, &subjects.results, result).await);
    }
}

async fn hand_in(
    client: &async_nats::Client,
    subject: &str,
    result: Result<SignedResult, AgentError>,
) -> Handled {
    let signed = match result {
        Ok(s) => s,
        Err(e) => {
            return Handled {
                command: String::new(),
                outcome: "failed".into(),
                detail: e.to_string(),
                stored: false,
            };
        }
    };
    let body: ResultBody = serde_json::from_str(&signed.body).unwrap_or_else(|_| ResultBody {
        command: String::new(),
        agent: String::new(),
        outcome: "failed".into(),
        detail: String::new(),
        actions: json_null(),
        at: 0,
    });
    let payload = serde_json::to_vec(&signed).unwrap_or_default();
    let stored = match client.request(subject.to_owned(), payload.into()).await {
        Ok(answer) => serde_json::from_slice::<serde_json::Value>(&answer.payload)
            .ok()
            .and_then(|v| v["stored"].as_bool())
            .unwrap_or(false),
        Err(e) => {
            tracing::warn!(error = %e, "handing in a response result failed; it goes again with the command");
            false
        }
    };
    Handled { command: body.command, outcome: body.outcome, detail: body.detail, stored }
}

/// How `cordon-agent respond` answers.
#[derive(Clone, Debug)]
pub struct RespondOptions {
    /// Seconds to answer.
    pub for_secs: u64,
    /// Time between asks.
    pub poll: Duration,
    /// Disk roots for file instructions (empty: `/`).
    pub roots: Vec<PathBuf>,
    /// Destructive commands per hour at most.
    pub cap_per_hour: usize,
    /// SHA-256s of the scripts this agent runs (empty: none).
    pub scripts: Vec<String>,
}

/// `cordon-agent respond`: the identity enrolled in `--state-dir`, connected with its own key,
/// answering for `opts.for_secs`; the summary as JSON.
pub async fn main(
    common: &crate::cli::Common,
    opts: RespondOptions,
) -> Result<serde_json::Value, AgentError> {
    let RespondOptions { for_secs, poll, roots, cap_per_hour, scripts } = opts;
    let dir = common.state_dir.clone().ok_or_else(|| failed("respond needs --state-dir"))?;
    let mut exec = executor::Config::for_host(&dir);
    if !roots.is_empty() {
        exec.roots = roots;
    }
    exec.management = executor::net::management_endpoints(&common.nats_url);
    exec.scripts = scripts;
    exec.ca = common.ca.clone();
    let mut responder = Responder::open(&dir, exec)?.with_cap(cap_per_hour);
    let creds = crate::identity::Credentials::Enrolled {
        state_dir: dir.clone(),
        enroll: None,
        patience: Duration::from_secs(common.drain_secs),
    };
    let tenant = schemas::TenantId::new(common.tenant.clone())?;
    let host = crate::cli::this_host();
    let (id, client) = creds.connect(&common.nats_url, common.ca.as_deref(), &tenant, None, &host).await?;
    let subjects = schemas::subject::Subjects::new(&common.subject_prefix)?;
    let kind = |k| subjects.subject(&id.tenant, &id.agent, k);
    let subjects = ResponseSubjects {
        orders: kind(SubjectKind::Orders),
        results: kind(SubjectKind::Result),
        triggers: kind(SubjectKind::Command),
    };
    let handled = serve(&client, &subjects, &mut responder, for_secs, poll).await;
    let _ = client.flush().await;
    Ok(
        serde_json::json!({"agent": responder.agent(), "handled": handled, "standing_orders": responder.orders_held()}),
    )
}

#[cfg(test)]
#[path = "respond_tests.rs"]
pub(crate) mod tests;
