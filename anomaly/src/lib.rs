//! # anomaly: login-frequency baselines (issue 5)
//!
//! [`series`]: hourly login series per host (successes, failures, successes by logon type), built from
//! the lake's counts (`store::Store::login_counts`, DataFusion) with every hour present.
//! [`bands`]: fleet bands per hour of the week, robust to the outliers they are meant to find.
//! Per-host forecasts (augurs) and the two-condition rule build on them (not yet). It depends only
//! on `schemas`; the API and the server call it.

pub mod bands;
pub mod series;

/// The event kind whose counts the baselines model.
pub const LOGIN_KIND: &str = "authentication";
