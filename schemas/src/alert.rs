//! The uniform alert: one format for every detection (Sigma behaviour rules now; log rules, anomalies
//! and correlations later), after the format of the source talk: level 1-5, time, object, description,
//! source, rule, status (blocked / alerted) and handling (unhandled / handled / false positive), the
//! endpoint, the file details, the ATT&CK tags, the evidence events and a machine-readable "why".

use crate::Record;
use crate::fields::col;
use serde::{Deserialize, Serialize};

/// Whether the behaviour was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The policy blocks it: the agent is told to stop it.
    Blocked,
    /// The policy alerts on it.
    Alerted,
}

/// What an analyst made of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Handling {
    /// Nobody has looked yet.
    Unhandled,
    /// Dealt with.
    Handled,
    /// Not an attack.
    FalsePositive,
}

impl Handling {
    /// The snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Handling::Unhandled => "unhandled",
            Handling::Handled => "handled",
            Handling::FalsePositive => "false_positive",
        }
    }
}

/// The endpoint an alert is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Endpoint {
    /// Host name.
    pub name: String,
    /// Its addresses.
    pub ip: Vec<String>,
    /// Host group.
    pub group: Option<String>,
    /// The account involved (`DOMAIN\user`).
    pub account: Option<String>,
}

/// The file involved (the process image, or the file written or renamed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileDetails {
    /// File name.
    pub name: Option<String>,
    /// Full path.
    pub path: Option<String>,
    /// Size, bytes.
    pub size: Option<i64>,
    /// Whether it carries a code signature.
    pub signed: Option<bool>,
    /// The parent process image.
    pub parent_process: Option<String>,
    /// MD5.
    pub md5: Option<String>,
    /// SHA-1.
    pub sha1: Option<String>,
    /// SHA-256.
    pub sha256: Option<String>,
}

/// A technique tag with its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TechniqueTag {
    /// `T1486`.
    pub id: String,
    /// `Data Encrypted for Impact`.
    pub name: String,
}

/// A rule reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuleRef {
    /// Rule id.
    pub id: String,
    /// Title.
    pub title: String,
    /// The rule's author, as the rule gives it: alerts from third-party rules (SigmaHQ, Hayabusa;
    /// Detection Rule License 1.1) keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

/// The uniform alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Alert {
    /// Alert id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// 1 (informational) to 5 (critical).
    pub level: u8,
    /// First evidence event time (RFC 3339).
    pub first_seen: String,
    /// Last evidence event time.
    pub last_seen: String,
    /// Evidence events so far (deduplication increments it).
    pub count: u64,
    /// What the alert is about: the acting process image, else the file, URL or user.
    pub object: String,
    /// What happened.
    pub description: String,
    /// Which detection layer raised it.
    pub source: String,
    /// The rule.
    pub rule: RuleRef,
    /// Blocked or alerted.
    pub status: Status,
    /// Unhandled, handled or false positive.
    pub handling: Handling,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The file involved.
    pub file: FileDetails,
    /// ATT&CK techniques.
    pub techniques: Vec<TechniqueTag>,
    /// ATT&CK tactic names.
    pub tactics: Vec<String>,
    /// Event ids of the evidence (the first 100).
    pub evidence: Vec<String>,
    /// Why: the rule and the field values that matched, and the policy setting that decided the tier.
    pub why: serde_json::Value,
    /// For alerts raised on log lines (logon failures, sshd, databases): the log's own details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogDetails>,
}

/// What a log alert carries besides the uniform fields: the rule group, the log type, the log's
/// reason and the raw line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogDetails {
    /// The rule's id.
    pub rule_id: String,
    /// The rule group (`authentication_failed`).
    pub rule_group: Option<String>,
    /// The kind of log (`linux.auth`, `windows.security`, `postgresql.log`).
    pub log_type: Option<String>,
    /// The log's reason (`invalid user`, `password authentication failed`, `unknown user or bad password`).
    pub reason: Option<String>,
    /// The raw log line (or the rendered record).
    pub raw: Option<String>,
}

impl Alert {
    /// A new alert about an agent itself (not an event it sent) under `rule`, seen once at
    /// `now_micros`, with its evidence key of that minute (`<kind>:<tenant>:<agent>:<minute>`, so it
    /// is raised once a minute at most); the caller sets level, description, source and `why`.
    pub fn about_agent(tenant: &str, agent: &str, kind: &str, rule: RuleRef, now_micros: i64) -> Self {
        let at = crate::time::format_micros(now_micros);
        Self {
            id: String::new(),
            tenant: tenant.to_owned(),
            level: 0,
            first_seen: at.clone(),
            last_seen: at,
            count: 1,
            object: format!("agent {agent}"),
            description: String::new(),
            source: String::new(),
            rule,
            status: Status::Alerted,
            handling: Handling::Unhandled,
            endpoint: Endpoint { name: agent.to_owned(), ..Default::default() },
            file: Default::default(),
            techniques: Vec::new(),
            tactics: Vec::new(),
            evidence: vec![format!("{kind}:{tenant}:{agent}:{}", now_micros / 60_000_000)],
            why: serde_json::Value::Null,
            log: None,
        }
    }

    /// What identifies "the same alert" for deduplication: tenant, rule, host and object.
    pub fn dedup_key(&self) -> String {
        format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.tenant,
            self.rule.id,
            self.endpoint.name,
            self.object.to_lowercase()
        )
    }
}

/// The endpoint and file details of an event.
pub fn endpoint_and_file(rec: &Record) -> (Endpoint, FileDetails, String) {
    let s = |c: &str| crate::fields::column_index(c).and_then(|i| rec.cell(i).as_str()).map(str::to_owned);
    let i = |c: &str| match crate::fields::column_index(c).map(|i| rec.cell(i)) {
        Some(crate::Cell::Int(n)) => Some(*n),
        _ => None,
    };
    let b = |c: &str| match crate::fields::column_index(c).map(|i| rec.cell(i)) {
        Some(crate::Cell::Bool(v)) => Some(*v),
        _ => None,
    };
    let ip = match crate::fields::column_index("host_ip").map(|i| rec.cell(i)) {
        Some(crate::Cell::List(l)) => l.clone(),
        _ => Vec::new(),
    };
    let account = match (s("user_domain"), s("user_name")) {
        (Some(d), Some(u)) => Some(format!("{d}\\{u}")),
        (None, Some(u)) => Some(u),
        _ => None,
    };
    let endpoint = Endpoint {
        name: rec.host().to_owned(),
        ip,
        group: rec.cell(col::HOST_GROUP).as_str().map(str::to_owned),
        account,
    };
    // The file: the one written or renamed, else the process image.
    let file = if let Some(path) = s("file_path") {
        FileDetails {
            name: s("file_name").or_else(|| path.rsplit(['\\', '/']).next().map(str::to_owned)),
            path: Some(path),
            size: i("file_size"),
            signed: b("file_signed"),
            parent_process: s("process_executable"),
            md5: s("file_hash_md5"),
            sha1: s("file_hash_sha1"),
            sha256: s("file_hash_sha256"),
        }
    } else {
        FileDetails {
            name: s("process_name"),
            path: s("process_executable"),
            size: None,
            signed: None,
            parent_process: s("parent_executable"),
            md5: s("process_hash_md5"),
            sha1: s("process_hash_sha1"),
            sha256: s("process_hash_sha256"),
        }
    };
    let object = s("process_executable")
        .or_else(|| s("file_path"))
        .or_else(|| s("url_full"))
        .or_else(|| s("user_name"))
        .unwrap_or_else(|| rec.host().to_owned());
    (endpoint, file, object)
}
