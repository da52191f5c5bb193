//! A host's login chart, typed (`GET /api/v1/hosts/{host}/logins`): its hourly series, its own
//! forecast per measure, its group's fleet band, and ingest's running counts.

use anomaly::detect::Measure;
use anomaly::forecast::HourForecast;
use anomaly::live::TenantModels;
use anomaly::series::{HOUR, LoginSeries};
use serde::Serialize;
use std::collections::BTreeMap;

/// One measure's forecast: the host's own, or why the fleet band judges it instead.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(tag = "basis", rename_all = "snake_case")]
pub(crate) enum MeasureForecast {
    /// The host's own forecast, one entry per hour from the models' start.
    Forecast { hours: Vec<HourForecast> },
    /// No forecast of its own.
    FleetBand { reason: String },
}

/// The host's forecasts.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Forecasts {
    /// The first forecast hour.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    start: i64,
    /// When the models were fitted.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    fitted_at: i64,
    /// Hours of history the host had.
    history_hours: usize,
    /// Per measure (`logins`, `failures`, `interactive`).
    #[serde(flatten)]
    measures: BTreeMap<String, MeasureForecast>,
}

/// No models fitted yet.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct NotFitted {
    note: String,
}

/// The host's forecasts, or a note saying there are none yet.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum ForecastAnswer {
    Fitted(Forecasts),
    NotFitted(NotFitted),
}

/// The host group's fleet band over the chart's hours.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct FleetBandAnswer {
    /// The host's group.
    group: String,
    /// What each hour's pair holds: `["median", "upper"]`.
    columns: [&'static str; 2],
    /// The quantile `upper` is.
    quantile: Option<f64>,
    /// Per measure, one `[median, upper]` per hour of the series.
    measures: BTreeMap<String, Vec<[f64; 2]>>,
}

/// One hour of ingest's running counts: what the live rule compares.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct RunningHour {
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    hour: i64,
    logins: u32,
    failures: u32,
    interactive: u32,
}

/// `GET /api/v1/hosts/{host}/logins`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct LoginsAnswer {
    host: String,
    /// The series' first hour.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    from: i64,
    /// Hours in the series.
    hours: usize,
    series: LoginSeries,
    forecast: ForecastAnswer,
    fleet_band: Option<FleetBandAnswer>,
    running: Vec<RunningHour>,
}

impl LoginsAnswer {
    /// The answer for `series`, judged by the tenant's models (if fitted), with ingest's running
    /// counts `(hour, [logins, failures, interactive])`.
    pub(crate) fn new(
        host: String,
        series: LoginSeries,
        models: Option<&TenantModels>,
        running: Vec<(i64, [u32; 3])>,
    ) -> Self {
        let (forecast, fleet_band) = match models {
            Some(m) => (ForecastAnswer::Fitted(forecasts(m, &host)), fleet_band(m, &host, series.start, series.len())),
            None => (
                ForecastAnswer::NotFitted(NotFitted {
                    note: "no baselines fitted yet for this tenant: they are fitted at start, nightly, and on POST /api/v1/baselines/refit".into(),
                }),
                None,
            ),
        };
        let running = running
            .into_iter()
            .map(|(hour, n)| RunningHour { hour, logins: n[0], failures: n[1], interactive: n[2] })
            .collect();
        LoginsAnswer { host, from: series.start, hours: series.len(), series, forecast, fleet_band, running }
    }
}

/// The host's forecast per measure (hours from the models' start).
fn forecasts(m: &TenantModels, host: &str) -> Forecasts {
    let model = m.hosts.get(host);
    let measures = Measure::ALL
        .into_iter()
        .map(|measure| {
            let f = match model.and_then(|x| x.forecasts.get(&measure)) {
                Some(Ok(v)) => MeasureForecast::Forecast { hours: v.clone() },
                Some(Err(why)) => MeasureForecast::FleetBand { reason: why.clone() },
                None => MeasureForecast::FleetBand { reason: "no history in the fitted window".into() },
            };
            (measure.as_str().to_owned(), f)
        })
        .collect();
    Forecasts {
        start: m.start,
        fitted_at: m.fitted_at,
        history_hours: model.map_or(0, |x| x.history_hours),
        measures,
    }
}

/// The host's group's fleet band over the `len` hours from `start`.
fn fleet_band(m: &TenantModels, host: &str, start: i64, len: usize) -> Option<FleetBandAnswer> {
    let group = m.hosts.get(host)?.group.clone();
    let measures = Measure::ALL
        .into_iter()
        .filter_map(|measure| {
            let band = m.bands.get(&(group.clone(), measure))?;
            let hours = (0..len as i64)
                .map(|k| {
                    let b = band.at(anomaly::live::hour_of_week(start + k * HOUR));
                    [b.median, b.upper]
                })
                .collect();
            Some((measure.as_str().to_owned(), hours))
        })
        .collect();
    let quantile = m.bands.get(&(group.clone(), Measure::Logins)).map(|b| b.quantile);
    Some(FleetBandAnswer { group, columns: ["median", "upper"], quantile, measures })
}
