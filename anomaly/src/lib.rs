//! # anomaly: login-frequency baselines (issue 5)
//!
//! Its place in the data flow is fixed now: it reads hourly login counts per host from the lake and
//! will fit per-host forecasts (augurs) and fleet bands, flagging hours that leave both. It depends
//! only on `schemas`; the server schedules it. The models are not built yet.

/// The event kind whose counts the baselines model.
pub const LOGIN_KIND: &str = "authentication";
