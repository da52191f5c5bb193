//! Sigma detection: rules compiled once into matchers that run on Cordon's events (at the agent and
//! at ingest) and on flat Sigma-named events (EVTX records, conformance tests).
//!
//! - [`rule`]: loading a rule (metadata, ATT&CK tags checked against the catalog, logsource,
//!   selections, condition); anything the engine cannot run is refused with the reason and a class.
//! - [`value`]: value matchers and the modifiers (`contains`, `startswith`, `endswith`, `all`, `re`
//!   with `i`/`m`/`s`, `cidr`, `base64`, `base64offset`, `wide`/`utf16*`, `windash`, `exists`,
//!   `fieldref`, `gt`/`gte`/`lt`/`lte`, `cased`); wildcards; case-insensitive by default.
//! - [`correlation`] and [`stream`]: correlation rules (`event_count`, `value_count`, `temporal`,
//!   `temporal_ordered`) evaluated over the stream of matched events.
//! - [`condition`]: `and`/`or`/`not`, parentheses, `1 of`/`all of`/`N of` with patterns and `them`.
//! - [`ruleset`] and [`prefilter`]: many rules per event, grouped by logsource, with only the rules
//!   whose necessary literals occur in the event (one Aho-Corasick scan per field) evaluated.
//! - [`tagger`]: a tenant's rules under its policy, tagging events; [`outcome`]: what a
//!   detection leads to (the uniform alert, the terminate command for a blocked start).
//! - The field and logsource mapping to Cordon's ECS fields is data: `pipelines/cordon-ecs.yml`.
//!
//! Regexes are built by the `regex` crate (linear time) under a size cap; patterns it cannot build
//! are refused at load time.

mod condition;
pub mod correlation;
pub mod event;
mod outcome;
pub mod pipeline;
mod prefilter;
pub mod rule;
pub mod ruleset;
mod selection;
pub mod sources;
pub mod stream;
pub mod tagger;
mod value;
pub mod yaml;

pub use correlation::Correlation;
pub use event::{Event, Field, FlatEvent, RecordEvent, Val};
pub use pipeline::Pipeline;
pub use rule::{Level, Loaded, Logsource, Matched, Rule, RuleError, load, load_any};
pub use ruleset::{PrefilterStats, RuleSet};
pub use sources::{CurrentRules, Refusal, RuleFile, Sources, read_rule_files, rules_digest};
pub use stream::{Correlator, Fire};
pub use tagger::{CORDON_RULES, Detection, Tagger};

#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
