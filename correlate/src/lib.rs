//! # correlate: detection and correlation
//!
//! - [`sigma`]: Sigma detection and correlation rules compiled into matchers over Cordon's events
//!   (issue 3), used by the agent and by ingest.
//! - [`graph`]: the entity graph (hosts, processes, users, addresses, domains, URLs, files) built from
//!   committed events, with cross-host links, time-respecting paths, neighbourhoods and process trees.
//! - [`incident`]: alerts the graph connects, stitched into incidents.
//!
//! It reads committed events (`schemas::Record`) and depends only on `schemas`; ingest and the API call
//! into it, never the other way round.

pub mod graph;
pub mod incident;
pub mod sigma;
