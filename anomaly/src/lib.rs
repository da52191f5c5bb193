//! # anomaly: login-frequency baselines (issue 5)
//!
//! [`series`]: hourly login series per host (successes, failures, successes by logon type), built from
//! the lake's counts (`store::Store::login_counts`, DataFusion) with every hour present.
//! [`bands`]: fleet bands per hour of the week, robust to the outliers they are meant to find.
//! [`forecast`]: per-host forecasts (augurs MSTL with daily and weekly periods and an ETS trend) with
//! prediction intervals, fitted on a bounded pool ([`pool`]).
//! [`detect`]: the two-condition rule (outside the host's own interval *and* the fleet band) and
//! silence.
//! [`history`]: hours older than the live counts keep (a replayed log, a late spool), judged day by
//! day against the host's own history before them, never against the wall clock.
//! [`live`]: the fitted models per tenant and each host's running counts, checked as events arrive.
//! [`report`]: anomaly reports (ranking, SVG charts, fleet summary, changes; JSON, HTML, CSV).
//! It depends only on `schemas`; ingest, the API and the server call it.

pub mod alert;
pub mod bands;
pub mod cron;
pub mod detect;
pub mod forecast;
pub mod history;
pub mod live;
pub mod pool;
pub mod report;
pub mod series;

/// The event kind whose counts the baselines model.
pub const LOGIN_KIND: &str = "authentication";
