//! Detection at the edge: the agent runs Cordon's rule pack under its tenant's policy on every event
//! before shipping it, so events leave the endpoint ATT&CK-tagged (`threat.technique.id`,
//! `threat.tactic.name`, `rule.name`, `cordon.policy_tier`), and a process start the policy blocks is
//! terminated on the spot instead of after a round trip to the server.
//!
//! The policy comes from the server: the agent asks for its tenant's current version on its own
//! `<prefix>.<tenant>.<agent>.policy` subject at start and every few seconds after, so a change
//! applies while the agent runs. Until a policy arrives (or without a server-side one) it uses the
//! shipped default.
//!
//! The rules follow the server's too: the operator's rule files (SigmaHQ's, the team's own) are
//! asked for on `.rules` with the digest the agent has; the server answers with the bundle when it
//! differs, and the agent runs them beside the pack. The summary
//! says which rule set it ran and whether it is the server's. Ingest re-evaluates every event with
//! the central rules either way, keeping the agent's tags.
//!
//! Both arrive signed by the server ([`schemas::signed`]): the agent applies only what verifies
//! against the server key it was given (`--server-key`), for its own tenant, and never a policy
//! version older than the one it applied; anything else is refused, logged and counted (`refused`).
//! Without a server key it trusts nothing from the bus and runs the pack under the shipped default.

use crate::enforce::{self, Outcome};
use crate::shipper::Identity;
use correlate::sigma::{RuleFile, Tagger};
use schemas::fields::col;
use schemas::policy::{Policy, Published, RuleBundle};
use schemas::subject::{SubjectKind, Subjects};
use serde_json::Value;
use std::sync::{Arc, Mutex, RwLock};

/// Where the edge asks for the server's policy and rules: the process identity's own subjects.
struct Asks {
    client: async_nats::Client,
    policy: String,
    rules: String,
    tenant: String,
}

impl Asks {
    /// The server's answer on `subject` (empty: nothing, or nothing new).
    async fn get(&self, subject: &str, body: String) -> Result<bytes::Bytes, String> {
        let ask = self.client.request(subject.to_owned(), body.into());
        match tokio::time::timeout(std::time::Duration::from_secs(5), ask).await {
            Ok(Ok(m)) => Ok(m.payload),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 5 s".to_owned()),
        }
    }
}

/// What the edge did, for the run summary.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EdgeSummary {
    /// The policy version applied last (0: the shipped default).
    pub policy_version: i64,
    /// Whether the server's rule set is this agent's (`None`: no policy from the server yet).
    pub rules_match: Option<bool>,
    /// The digest of the rule set the agent runs (Cordon's pack plus the server's rule files).
    pub rules_digest: String,
    /// The server's rule files the agent runs beside the pack.
    pub rule_files: usize,
    /// Rules in those files this agent's engine refused.
    pub rules_refused: usize,
    /// Events tagged by a rule.
    pub tagged: u64,
    /// Process starts the policy blocked (terminated here when enforcement is on).
    pub blocked: u64,
    /// The server key policies and rules must be signed with (none: nothing from the server is used).
    pub server_key: Option<String>,
    /// Policies and rule bundles refused: unsigned, signed by another key, for another tenant, or
    /// older than the version in use.
    pub refused: u64,
}

/// The edge tagger shared by an agent's shippers.
#[derive(Debug)]
pub struct Edge {
    /// The rules under the shipped default policy.
    base: RwLock<Tagger>,
    /// The policy applied last.
    policy: RwLock<Option<Published>>,
    current: RwLock<Arc<Tagger>>,
    summary: Mutex<EdgeSummary>,
    /// With enforcement on: the standing orders that bound it.
    enforce: Option<crate::standing::HeldOrders>,
    outcomes: Mutex<Vec<Outcome>>,
    /// Hashes of the last policy and rule answers looked at: an answer is judged once, however
    /// often it is asked for again.
    seen: Mutex<[u64; 2]>,
}

impl Edge {
    /// The pack under the shipped default policy; `enforce`: terminate blocked process starts, each
    /// only within a standing order the identity holds.
    pub fn new(enforce: Option<crate::standing::HeldOrders>) -> Arc<Self> {
        let base = Tagger::cordon_pack(Policy::cordon_default())
            .expect("Cordon's rule pack compiles (tested in correlate)");
        let summary = EdgeSummary { rules_digest: base.sources().digest.clone(), ..EdgeSummary::default() };
        Arc::new(Self {
            current: RwLock::new(Arc::new(base.clone())),
            base: RwLock::new(base),
            policy: RwLock::new(None),
            summary: Mutex::new(summary),
            enforce,
            outcomes: Mutex::new(Vec::new()),
            seen: Mutex::new([0; 2]),
        })
    }

    /// Applies a published policy (ignored when it does not validate; the previous one stays).
    pub fn apply(&self, p: &Published) {
        match p.policy.clone().validated() {
            Ok(policy) => {
                let base = self.base.read().unwrap_or_else(|e| e.into_inner());
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(base.with_policy(policy));
                let mut s = self.summary.lock().unwrap_or_else(|e| e.into_inner());
                s.policy_version = p.version;
                s.rules_match = Some(p.rules_digest == base.sources().digest);
                *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
                tracing::info!(version = p.version, author = %p.author, "policy applied at the edge");
            }
            Err(e) => {
                tracing::error!(version = p.version, error = %e, "published policy is invalid; keeping the previous one")
            }
        }
    }

    /// The matcher for the server's rule files (a [`RuleBundle`]) beside the pack: `None` (logged,
    /// and the rules in use stay) when the bundle's digest does not match its files or it does not
    /// build. Compiling thousands of rules takes a while: it runs on a blocking thread.
    fn build_rules(bundle: RuleBundle) -> Option<Tagger> {
        let files: Vec<RuleFile> =
            bundle.files.into_iter().map(|(name, text)| RuleFile { name, text }).collect();
        let digest = correlate::sigma::rules_digest(&files);
        if digest != bundle.digest {
            tracing::error!(claimed = %bundle.digest, actual = %digest, "rule bundle does not match its digest; ignored");
            return None;
        }
        Tagger::with_rule_files(files, Policy::cordon_default())
            .map_err(|e| tracing::error!(error = %e, "rule bundle does not build; keeping the rules in use"))
            .ok()
    }

    /// Makes `built` the rules in use, under the policy applied last.
    fn install_rules(&self, built: Tagger) {
        let sources = built.sources().clone();
        *self.base.write().unwrap_or_else(|e| e.into_inner()) = built.clone();
        let published = self.policy.read().unwrap_or_else(|e| e.into_inner()).clone();
        match &published {
            Some(p) => self.apply(p),
            None => *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(built),
        }
        let mut s = self.summary.lock().unwrap_or_else(|e| e.into_inner());
        s.rules_digest = sources.digest.clone();
        s.rule_files = sources.files.len();
        s.rules_refused = sources.refused.len();
        tracing::info!(digest = %sources.digest, files = sources.files.len(), loaded = sources.loaded, refused = sources.refused.len(), "server's rules applied at the edge");
    }

    /// Reads the server's rule files and the tenant's published policy now, then re-reads them
    /// every `every` in a background task (a poll rather than a watch: it survives server restarts
    /// and never spins). Both are asked for on `id`'s own subjects (request and reply: an agent has
    /// no JetStream API access). Only what `server_key` signed is applied; without one, nothing is
    /// read.
    pub async fn follow(
        self: &Arc<Self>,
        client: async_nats::Client,
        subjects: &Subjects,
        id: &Identity,
        every: std::time::Duration,
        server_key: Option<String>,
    ) {
        let Some(key) = server_key else {
            tracing::warn!(
                "no --server-key: the server's policy and rules are not trusted; running the pack under the shipped default"
            );
            return;
        };
        self.summary.lock().unwrap_or_else(|e| e.into_inner()).server_key = Some(key);
        let ask = Asks {
            client,
            policy: subjects.subject(&id.tenant, &id.agent, SubjectKind::Policy),
            rules: subjects.subject(&id.tenant, &id.agent, SubjectKind::Rules),
            tenant: id.tenant.to_string(),
        };
        self.poll_rules(&ask).await;
        self.poll(&ask).await;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                me.poll_rules(&ask).await;
                me.poll(&ask).await;
            }
        });
    }

    /// Fetches the server's rule bundle when its digest differs from the rules in use (the server
    /// answers nothing when they are the same).
    async fn poll_rules(&self, ask: &Asks) {
        let mine = self.base.read().unwrap_or_else(|e| e.into_inner()).sources().digest.clone();
        let body = match ask.get(&ask.rules, mine).await {
            Ok(b) if b.is_empty() || !self.first_look(1, &b) => return,
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "cannot ask for the server's rule files now; trying again");
                return;
            }
        };
        let bundle = self
            .verified(&body, schemas::signed::RULES_DOMAIN)
            .and_then(|text| serde_json::from_str::<RuleBundle>(&text).map_err(|e| e.to_string()));
        match bundle {
            Ok(bundle) => match tokio::task::spawn_blocking(move || Self::build_rules(bundle)).await {
                Ok(Some(built)) => self.install_rules(built),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "building the server's rules failed"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot use the server's rule files now; trying again"),
        }
    }

    /// The payload of a signed object from the bus, if the server key signed it for `domain`;
    /// otherwise refused, counted and logged.
    fn verified(&self, body: &[u8], domain: &'static str) -> Result<String, String> {
        let key =
            self.summary.lock().unwrap_or_else(|e| e.into_inner()).server_key.clone().unwrap_or_default();
        let checked = serde_json::from_slice::<schemas::signed::Signed>(body)
            .map_err(|e| format!("not a signed object ({e})"))
            .and_then(|s| s.verify(domain, &key).map(str::to_owned).map_err(|e| e.to_string()));
        if let Err(e) = &checked {
            self.refuse(&format!("{domain}: {e}"));
        }
        checked
    }

    fn refuse(&self, why: &str) {
        tracing::warn!(why, "security: refused what the bus offered as the server's");
        self.summary.lock().unwrap_or_else(|e| e.into_inner()).refused += 1;
    }

    /// Whether `body` differs from the last answer of this kind (0 policy, 1 rules); remembers it.
    fn first_look(&self, kind: usize, body: &[u8]) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        let hash = h.finish();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut seen[kind], hash) != hash
    }

    /// Applies the tenant's published policy when it is newer than the one in use.
    async fn poll(&self, ask: &Asks) {
        let body = match ask.get(&ask.policy, String::new()).await {
            Ok(b) if b.is_empty() || !self.first_look(0, &b) => return,
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "cannot ask for the policy now; trying again");
                return;
            }
        };
        let Ok(text) = self.verified(&body, schemas::signed::POLICY_DOMAIN) else { return };
        let applied = self.summary.lock().unwrap_or_else(|e| e.into_inner()).policy_version;
        let fresh = self.policy.read().unwrap_or_else(|e| e.into_inner()).is_none();
        match serde_json::from_str::<Published>(&text) {
            Ok(p) if p.tenant != ask.tenant => {
                self.refuse(&format!("a policy of tenant {:?} under {:?}", p.tenant, ask.tenant))
            }
            Ok(p) if p.version < applied => {
                self.refuse(&format!("policy version {} is older than {applied}, in use", p.version))
            }
            Ok(p) if p.version == applied && !fresh => {}
            Ok(p) => self.apply(&p),
            Err(err) => tracing::warn!(error = %err, "published policy does not parse"),
        }
    }

    /// Tags the event `line` holds (serialised): the event with its tags when a rule tagged it (its
    /// line is then written again), else `None`. A blocked process start is terminated (when
    /// enforcing). Events that do not decode are left as they are for ingest to reject with the
    /// reason.
    pub fn tag(&self, id: &Identity, line: &[u8]) -> Option<Value> {
        let tagger = Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()));
        let now = schemas::time::now_micros();
        let ch = schemas::decode::Channel {
            tenant: id.tenant.as_str(),
            agent: id.agent.as_str(),
            message_key: "edge",
            stream_seq: 0,
            received: now,
        };
        let mut rec = schemas::decode::decode_line(line, 1, &ch, &schemas::decode::Limits::default()).ok()?;
        let found = tagger.tag(&mut rec);
        if found.is_empty() {
            return None;
        }
        self.block(id, &rec, &found, now);
        self.summary.lock().unwrap_or_else(|e| e.into_inner()).tagged += 1;
        // It decoded, so it is a JSON object.
        let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(line) else { return None };
        for c in [col::THREAT_TECHNIQUE_ID, col::THREAT_TACTIC_NAME, col::RULE_NAME, col::POLICY_TIER] {
            let v = match rec.cell(c) {
                schemas::Cell::List(l) => serde_json::json!(l),
                schemas::Cell::Str(s) => serde_json::json!(s),
                _ => continue,
            };
            schemas::record::insert_path(&mut obj, schemas::FIELDS[c].path, v);
        }
        Some(Value::Object(obj))
    }

    /// What a trigger from the server would do for a blocked process start among `found`, here
    /// without the round trip, and within the same standing orders.
    fn block(
        &self,
        id: &Identity,
        rec: &schemas::Record,
        found: &[correlate::sigma::tagger::Detection],
        now: i64,
    ) {
        let Some((mut cmd, techniques)) = found.iter().find_map(|d| {
            correlate::sigma::tagger::terminate_command(rec, d, now).map(|c| (c, d.techniques.clone()))
        }) else {
            return;
        };
        self.summary.lock().unwrap_or_else(|e| e.into_inner()).blocked += 1;
        if let Some(orders) = &self.enforce {
            cmd.id = format!("edge-{}", cmd.id);
            let o = match orders.allow(id.agent.as_str(), &techniques, now) {
                Ok(order) => {
                    cmd.reason.push_str(&format!(", at the edge within standing order {order}"));
                    enforce::execute(&cmd, now)
                }
                Err(why) => {
                    Outcome { command: cmd.id.clone(), pid: cmd.pid, result: format!("refused: {why}") }
                }
            };
            tracing::warn!(pid = o.pid, result = %o.result, "enforcement at the edge");
            self.outcomes.lock().unwrap_or_else(|e| e.into_inner()).push(o);
        }
    }

    /// What the edge did so far.
    pub fn summary(&self) -> EdgeSummary {
        self.summary.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The terminations carried out at the edge.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
