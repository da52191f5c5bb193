//! Identifier newtypes. Tenant and agent ids travel as NATS subject tokens, so they are restricted to
//! `[A-Za-z0-9_-]`, 1 to 64 characters; free-form names (host names) are hints and never identifiers.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty.
    #[error("{what} is empty")]
    Empty {
        /// Which identifier.
        what: &'static str,
    },
    /// Too long.
    #[error("{what} is longer than 64 characters")]
    TooLong {
        /// Which identifier.
        what: &'static str,
    },
    /// A character outside `[A-Za-z0-9_-]`.
    #[error("{what} contains {ch:?}; only letters, digits, '_' and '-' are allowed")]
    BadChar {
        /// Which identifier.
        what: &'static str,
        /// The offending character.
        ch: char,
    },
}

fn check_token(what: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { what });
    }
    if s.len() > 64 {
        return Err(IdError::TooLong { what });
    }
    match s.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        Some(ch) => Err(IdError::BadChar { what, ch }),
        None => Ok(()),
    }
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_token($what, &s)?;
                Ok(Self(s))
            }
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

token_id!(
    /// A tenant: one organisation's isolated slice of the fleet.
    TenantId,
    "tenant id"
);
token_id!(
    /// An agent: one sensor instance, the identity behind one channel.
    AgentId,
    "agent id"
);

impl TenantId {
    /// The tenant used when none is configured.
    pub fn default_tenant() -> Self {
        Self("default".to_owned())
    }
}

/// Turns any host name into a valid subject token: characters outside `[A-Za-z0-9_-]` become `_`,
/// and the result is cut to 64 bytes. `Web服务器-北机房` and `web01.corp.example` both become tokens.
pub fn sanitize_token(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .take(64)
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_validate() {
        assert!(AgentId::new("web-north_01").is_ok());
        assert_eq!(AgentId::new("a.b"), Err(IdError::BadChar { what: "agent id", ch: '.' }));
        assert_eq!(TenantId::new(""), Err(IdError::Empty { what: "tenant id" }));
        assert!(TenantId::new("x".repeat(65)).is_err());
        assert!(serde_json::from_str::<AgentId>("\"a>b\"").is_err());
    }

    #[test]
    fn sanitize_makes_valid_tokens() {
        for name in ["Web服务器-北机房", "web01.corp.example", "a b*c>", ""] {
            let t = sanitize_token(name);
            assert!(AgentId::new(t.clone()).is_ok(), "{name} -> {t}");
        }
        assert_eq!(sanitize_token("web01.corp"), "web01_corp");
    }
}
