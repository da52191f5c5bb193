//! # correlate: detection and correlation
//!
//! [`sigma`]: Sigma detection rules compiled into matchers over Cordon's events (issue 3), used by the
//! agent and by ingest.
//!
//! Its place in the data flow is fixed now: it reads committed events (`schemas::Record`) and will
//! keep the entity graph (hosts, processes, users, addresses, domains, files) that links hosts through
//! network flows and process chains, and stitch alerts into incidents. It depends only on `schemas`;
//! `store` and `api` call into it, never the other way round. The graph itself is not built yet.

pub mod graph;
pub mod incident;
pub mod sigma;

/// The ECS event kinds that carry cross-host links (network flows and logons), the correlator's input.
pub const LINKING_KINDS: &[&str] = &["network", "web", "authentication"];
