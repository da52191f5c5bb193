//! The route table: every route's method, path, permission, audit action and documentation. The
//! router, the access middleware and the OpenAPI document are all built from it.

use axum::http::Method;
use schemas::access::Permission;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Anyone (health only).
    Public,
    /// A valid token of the tenant whose role grants this permission.
    Needs(Permission),
}

/// A query or path parameter, for the OpenAPI document.
#[derive(Debug)]
pub struct Param {
    /// Name.
    pub name: &'static str,
    /// `query` or `path`.
    pub location: &'static str,
    /// What it does.
    pub doc: &'static str,
}

/// One route.
#[derive(Debug)]
pub struct RouteSpec {
    /// Method.
    pub method: Method,
    /// Path (axum syntax, `{name}` for parameters).
    pub path: &'static str,
    /// Access rule.
    pub access: Access,
    /// The audit chain's action for a call (every write and every export has one), or none.
    pub audit: Option<&'static str>,
    /// One-line summary.
    pub summary: &'static str,
    /// Parameters.
    pub params: &'static [Param],
    /// Request body, if any (a short description of the JSON).
    pub body: Option<&'static str>,
}

/// A route without parameters.
pub(crate) const fn route(
    method: Method,
    path: &'static str,
    access: Access,
    audit: Option<&'static str>,
    summary: &'static str,
    body: Option<&'static str>,
) -> RouteSpec {
    RouteSpec { method, path, access, audit, summary, params: &[], body }
}

pub(crate) const fn q(name: &'static str, doc: &'static str) -> Param {
    Param { name, location: "query", doc }
}

/// The route table: the single source of routing, access and documentation.
/// Every route: the core table here and the response routes ([`crate::table_response`]).
pub static ROUTES: std::sync::LazyLock<Vec<&'static RouteSpec>> =
    std::sync::LazyLock::new(|| CORE.iter().chain(crate::table_response::RESPONSE_ROUTES).collect());

static CORE: &[RouteSpec] = &[
    RouteSpec {
        method: Method::GET,
        path: "/healthz",
        access: Access::Public,
        audit: None,
        summary: "Liveness: the process is up.",
        params: &[],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/readyz",
        access: Access::Public,
        audit: None,
        summary: "Readiness: 200 once ingest consumes from JetStream, 503 while it starts.",
        params: &[],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/metrics",
        access: Access::Needs(Permission::Metrics),
        audit: None,
        summary: "Prometheus metrics (text format).",
        params: &[],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/openapi.json",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "This document.",
        params: &[],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/hosts",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "Hosts with first/last seen and event counts, most recently seen first.",
        params: &[q("limit", "page size, 1-1000 (default 100)"), q("offset", "rows to skip")],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/agents",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "Agents with their status (active, silent: heartbeats but no new events, dead: no heartbeats), last heartbeat, last activity and counters.",
        params: &[
            q("dead_secs", "no heartbeat for this long means dead (default 60)"),
            q("silent_secs", "no new events for this long means silent (default 900)"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/hosts/{host}/timeline",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "A host's investigation timeline.",
        params: &[
            Param { name: "host", location: "path", doc: "host name" },
            q("from", "start time, RFC 3339 or epoch milliseconds (inclusive)"),
            q("to", "end time (exclusive)"),
            q(
                "kinds",
                "comma-separated event kinds (process, network, file, registry, authentication, web, ...)",
            ),
            q("order", "desc (newest first, default) or asc"),
            q("limit", "page size, 1-1000 (default 100)"),
            q("cursor", "next_cursor of the previous page"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/search",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "Fleet-wide full-text search, newest first.",
        params: &[
            q(
                "q",
                "query: terms, \"phrases\", AND/OR/NOT, field:value on host, user, ip, hash, domain, kind, technique, text",
            ),
            q("literal", "true: q is a literal string (an IOC or pasted log text), not query syntax"),
            q("from", "start time (inclusive)"),
            q("to", "end time (exclusive)"),
            q("host", "only this host"),
            q("limit", "page size, 1-1000 (default 50)"),
            q("cursor", "next_cursor of the previous page"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/v1/iocs/sweep",
        access: Access::Needs(Permission::Read),
        audit: Some("ioc.sweep"),
        summary: "Bulk IOC sweep: per indicator, the hosts that saw it, first/last seen and counts.",
        params: &[],
        body: Some(
            "{\"iocs\": [\"hash|ip|domain|url|file name\", ...]} (defanged forms accepted; at most 5000)",
        ),
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/v1/sql",
        access: Access::Needs(Permission::Read),
        audit: Some("sql.query"),
        summary: "Read-only SQL over the events table (SELECT only; row, time and memory caps).",
        params: &[],
        body: Some("{\"sql\": \"SELECT ...\", \"max_rows\": 10000}"),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/policy",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "The tenant's ATT&CK policy (block / alert / record / off per tactic, technique and host group) with its version, author and reason, and how many endpoint techniques each tier covers.",
        params: &[],
        body: None,
    },
    RouteSpec {
        method: Method::PUT,
        path: "/api/v1/policy",
        access: Access::Needs(Permission::Author),
        audit: Some("policy.change"),
        summary: "Replace the tenant's policy: a new version, checked against the ATT&CK catalog, recorded with the caller and the reason; ingest applies it within a second.",
        params: &[],
        body: Some(
            "{\"policy\": {\"default\": \"record\", \"tactics\": {...}, \"techniques\": {\"T1486\": \"block\"}, \"groups\": {\"servers\": {...}}}, \"reason\": \"why\", \"base_version\": N}",
        ),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/anomalies",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "Login anomalies (alerts raised by the baselines: counts outside both the host's forecast interval and its group's fleet band, and silences), most recent first, each with its explanation and the series around it.",
        params: &[
            q("level", "at least this level, 1-5"),
            q("handling", "unhandled, handled or false_positive"),
            q("host", "host name"),
            q("from", "last seen at or after (RFC 3339)"),
            q("to", "last seen before"),
            q("limit", "at most this many (default 100, at most 1000)"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/reports",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "Anomaly reports (scheduled and on demand), newest first: id, schedule name, period, anomaly count.",
        params: &[q("limit", "at most this many (default 50)")],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/reports/{id}",
        access: Access::Needs(Permission::Read),
        audit: Some("report.export"),
        summary: "One report: the period's anomalies ranked by severity, per host a chart of actual vs forecast band (SVG), the fleet summary and what changed since the previous report of its schedule.",
        params: &[
            Param { name: "id", location: "path", doc: "report id" },
            q("format", "json (default), html (a page with the charts inline) or csv (the ranked anomalies)"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/v1/reports/run",
        access: Access::Needs(Permission::Handle),
        audit: Some("report.run"),
        summary: "Make (and store) a report now for any past period; answers with it in the format asked.",
        params: &[],
        body: Some(
            "{\"from\": \"RFC 3339\", \"to\": \"RFC 3339\", \"format\": \"json|html|csv\"} (default: the last 24 hours to the start of this hour)",
        ),
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/v1/baselines/refit",
        access: Access::Needs(Permission::Handle),
        audit: Some("baselines.refit"),
        summary: "Refit the tenant's login baselines now from the lake's last four weeks (the server also refits on its schedule, nightly by default); returns what was fitted.",
        params: &[],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/alerts",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "Alerts in the uniform format, most recent first (deduplicated: the same rule, host and object within an hour count as one).",
        params: &[
            q("level", "at least this level, 1-5"),
            q("status", "blocked or alerted"),
            q("handling", "unhandled, handled or false_positive"),
            q("host", "host name"),
            q("technique", "ATT&CK technique id (a technique also finds its sub-techniques)"),
            q("from", "last seen at or after, RFC 3339 or epoch milliseconds"),
            q("to", "last seen before"),
            q("limit", "page size, 1-1000 (default 100)"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/alerts/stream",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "Server-sent events: an `alerts` event whenever the tenant's alerts change (a new alert, a duplicate that bumped one, a handling change); the stream ends after 5 minutes and EventSource reconnects.",
        params: &[q("seconds", "end the stream after this many seconds, 1-300 (default 300)")],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/alerts/{id}",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "One alert with its evidence events (from the lake), why it fired, and the analysts' comments.",
        params: &[Param { name: "id", location: "path", doc: "alert id" }],
        body: None,
    },
    RouteSpec {
        method: Method::PATCH,
        path: "/api/v1/alerts/{id}",
        access: Access::Needs(Permission::Handle),
        audit: Some("alert.handle"),
        summary: "Set an alert's handling (unhandled, handled, false_positive) with a comment.",
        params: &[Param { name: "id", location: "path", doc: "alert id" }],
        body: Some("{\"handling\": \"handled|false_positive|unhandled\", \"comment\": \"...\"}"),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/incidents",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "Incidents (alerts the entity graph connects), most recent first; merged ones only with status=merged.",
        params: &[
            q("status", "open, investigating, contained, resolved, false_positive or merged"),
            q("severity", "at least this level (1-5)"),
            q("host", "involves this host"),
            q("technique", "has this technique or one of its sub-techniques"),
            q("alert", "holds this alert (its id): the incident an alert belongs to"),
            q("from", "last evidence at or after (RFC 3339 or epoch ms)"),
            q("to", "last evidence before"),
            q("limit", "at most this many (1-1000, default 100)"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/incidents/{id}",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "One incident: alerts in kill-chain order, root, attack path, why each alert joined, and the cross-host timeline of every evidence event.",
        params: &[Param { name: "id", location: "path", doc: "incident id" }],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/incidents/{id}/graph",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "An incident's graph: nodes (alerts, processes, hosts, files, domains, addresses) and edges with their times and evidence, ready to draw.",
        params: &[Param { name: "id", location: "path", doc: "incident id" }],
        body: None,
    },
    RouteSpec {
        method: Method::PATCH,
        path: "/api/v1/incidents/{id}",
        access: Access::Needs(Permission::Handle),
        audit: Some("incident.handle"),
        summary: "Set an incident's status and/or owner, with a comment.",
        params: &[Param { name: "id", location: "path", doc: "incident id" }],
        body: Some(
            "{\"status\": \"investigating|contained|resolved|false_positive|open\", \"owner\": \"...\", \"comment\": \"...\"}",
        ),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/hosts/{host}/process-tree",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "A host's process tree around a time or an event (processes nested by what started them).",
        params: &[
            Param { name: "host", location: "path", doc: "host name" },
            q("at", "the time to centre on (RFC 3339 or epoch ms)"),
            q("event", "or an event id to centre on (its process is returned as focus)"),
            q("window", "minutes either side (default 60)"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/hosts/{host}/logins",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "A host's hourly login series from the lake (successes, failures, successes by logon type; every hour present), its forecast with prediction intervals per measure (or why it has none and is judged on the fleet band), and its group's fleet band per hour.",
        params: &[
            Param { name: "host", location: "path", doc: "host name" },
            q("from", "first hour (default: seven days before to)"),
            q("to", "end, exclusive (default: the end of the current hour)"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/graph/paths",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "A time-respecting path between entities (each hop no earlier than the one before), with each hop's evidence.",
        params: &[
            q(
                "from",
                "start node: kind:key (process:<entity id>, host:<name>, ip:..., domain:..., file:<path>@<host>) or a host name",
            ),
            q("to", "target node, or external (default): the first external destination reached"),
            q("since", "paths start no earlier than this"),
            q("until", "and take no hop at or after this"),
            q("max_hops", "1-64 (default 16)"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/graph/neighbors",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "What an entity touched within N hops (either direction), by edges active in a time range.",
        params: &[
            q("node", "kind:key or a host name"),
            q("hops", "1-4 (default 1)"),
            q("from", "edges active at or after"),
            q("to", "edges active before"),
            q("limit", "at most this many nodes (default 500)"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/attack/coverage",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "The ATT&CK coverage matrix: per tactic and (sub-)technique, the rules that cover it, its policy tier, and the events tagged with it in the time range; plus the summary (covers X of Y endpoint techniques; A block, B alert, C record).",
        params: &[
            q("from", "start time, RFC 3339 or epoch milliseconds (default: 7 days ago)"),
            q("to", "end time (default: none)"),
            q("platform", "Windows (default), Linux or macOS: which techniques count as endpoint techniques"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/rules",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "The detection rules ingest runs and agents are sent: the digest, Cordon's pack, the operator's rule files (`--rules`), how many of their rules loaded, and every refused rule with its file, class and reason.",
        params: &[q("refused", "`false` leaves the list of refused rules out (counts only)")],
        body: None,
    },
    RouteSpec {
        method: Method::POST,
        path: "/api/v1/policy/preview",
        access: Access::Needs(Permission::Author),
        audit: Some("policy.preview"),
        summary: "What a policy would have done over the last N days: the stored events replayed through the rules under the current and the proposed policy, with alert and block counts per technique and per host.",
        params: &[],
        body: Some("{\"policy\": {...}, \"days\": 7}"),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/policy/versions",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "Every version of the tenant's policy, newest first, with who changed it and why; `shipped` is the default the first version changed.",
        params: &[],
        body: None,
    },
    route(
        Method::POST,
        "/api/v1/session",
        Access::Public,
        Some("session.start"),
        "Console sign-in: a token becomes a session (an HttpOnly, SameSite=Strict cookie, 12 h) and a CSRF token that every change made with the cookie must carry in X-CSRF-Token. Bad tokens count against the address's limit; sign-ins are audited (session.start).",
        Some("{\"token\": \"cdn_...\"}"),
    ),
    route(
        Method::GET,
        "/api/v1/session",
        Access::Needs(Permission::Read),
        None,
        "Who is calling (token, tenant, role); for a console session also its CSRF token and expiry.",
        None,
    ),
    route(
        Method::DELETE,
        "/api/v1/session",
        Access::Needs(Permission::Read),
        Some("session.end"),
        "Console sign-out: the session ends and its cookie is cleared (audited as session.end).",
        None,
    ),
    RouteSpec {
        method: Method::POST,
        path: "/api/v1/enroll",
        access: Access::Public,
        audit: Some("agent.enroll"),
        summary: "Enroll an agent: the enrollment token (cordon enroll-token create), the agent's own Ed25519 public key and its signature over both; returns the agent id (derived from the key), tenant, group and the server's signing key. Failed attempts are limited per address like bad tokens; every attempt is audited.",
        params: &[],
        body: Some(
            "{\"token\": \"cet_...\", \"public_key\": \"<64 hex>\", \"proof\": \"<128 hex>\", \"host\": \"name\"}",
        ),
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/agents/enrolled",
        access: Access::Needs(Permission::Read),
        audit: None,
        summary: "The tenant's enrolled agents: id, host, group, public key, when enrolled and revoked.",
        params: &[],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/audit",
        access: Access::Needs(Permission::Admin),
        audit: None,
        summary: "The tenant's rows of the audit chain, oldest first: who changed or exported what, when, and the outcome (each row hash-chained to the one before; `cordon audit verify` checks the whole chain).",
        params: &[
            q("after", "rows after this seq (the previous page's next_after)"),
            q("limit", "at most this many (default 100, at most 1000)"),
        ],
        body: None,
    },
    RouteSpec {
        method: Method::GET,
        path: "/api/v1/dead-letters",
        access: Access::Needs(Permission::Author),
        audit: None,
        summary: "Refused lines and messages, newest first, with their reason, the agent that sent them and the raw bytes (cut at 16 KiB): why a shipper's events are not arriving.",
        params: &[
            q("agent", "only this agent"),
            q(
                "reason",
                "only this reason code (bad_json, unknown_field, line_too_large, identity_mismatch, ...)",
            ),
            q("limit", "at most this many (default 100, at most 1000)"),
            q("cursor", "next_cursor of the previous page"),
        ],
        body: None,
    },
];
