//! Who may do what: API roles and the permissions they grant.
//!
//! Every API route names one [`Permission`] (the route table in `api`); a token carries one [`Role`];
//! [`Role::grants`] is the only place that decides. The roles follow a SOC's division of work:
//!
//! | role | may |
//! |---|---|
//! | `viewer` | read: events, search, SQL, alerts, incidents, hosts, agents, the policy, reports |
//! | `analyst` | a viewer who also handles alerts and incidents, runs reports and refits baselines |
//! | `responder` | an analyst who also asks for response actions |
//! | `rule_author` | a viewer who also changes the policy and the rules, previews them, reads dead letters |
//! | `admin` | everything of the tenant, and the audit log |
//! | `metrics` | `/metrics` only (a Prometheus scraper) |

use std::fmt;

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read the tenant's data.
    Read,
    /// Handle alerts and incidents; run reports and refits.
    Handle,
    /// Ask for response actions on endpoints.
    Respond,
    /// Change the policy and rules; preview them; read dead letters.
    Author,
    /// Read the audit log and administer the tenant.
    Admin,
    /// Scrape the process's metrics (no tenant's data).
    Metrics,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 6] = [
        Permission::Read,
        Permission::Handle,
        Permission::Respond,
        Permission::Author,
        Permission::Admin,
        Permission::Metrics,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Handle => "handle",
            Permission::Respond => "respond",
            Permission::Author => "author",
            Permission::Admin => "admin",
            Permission::Metrics => "metrics",
        }
    }
}

/// A token's role.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads and handles.
    Analyst,
    /// Reads, handles and responds.
    Responder,
    /// Reads and writes detection content.
    RuleAuthor,
    /// Everything of its tenant.
    Admin,
    /// Metrics only.
    Metrics,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] =
        [Role::Viewer, Role::Analyst, Role::Responder, Role::RuleAuthor, Role::Admin, Role::Metrics];

    /// Whether this role grants `p`.
    pub fn grants(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Viewer => p == P::Read,
            Role::Analyst => matches!(p, P::Read | P::Handle),
            Role::Responder => matches!(p, P::Read | P::Handle | P::Respond),
            Role::RuleAuthor => matches!(p, P::Read | P::Author),
            Role::Metrics => p == P::Metrics,
        }
    }

    /// Its name, as stored and as given to `--role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Responder => "responder",
            Role::RuleAuthor => "rule_author",
            Role::Admin => "admin",
            Role::Metrics => "metrics",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}: one of viewer, analyst, responder, rule_author, admin, metrics")]
pub struct UnknownRole(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_names_are_refused() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()).unwrap(), r);
        }
        assert!(Role::parse("root").unwrap_err().to_string().contains("rule_author"));
    }

    #[test]
    fn only_admins_read_the_audit_log_and_scrapers_read_nothing_else() {
        for r in Role::ALL {
            assert_eq!(r.grants(Permission::Admin), r == Role::Admin, "{r}");
        }
        assert!(Permission::ALL.iter().all(|p| Role::Metrics.grants(*p) == (*p == Permission::Metrics)));
        assert!(!Role::Viewer.grants(Permission::Handle));
        assert!(!Role::Analyst.grants(Permission::Author));
        assert!(!Role::RuleAuthor.grants(Permission::Handle));
        assert!(Role::Responder.grants(Permission::Respond) && !Role::Analyst.grants(Permission::Respond));
    }
}
