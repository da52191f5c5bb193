//! Per-host forecasts: what a host's next hours should look like, with a prediction interval.
//!
//! The model is augurs' MSTL with daily and weekly periods (24 and 168 hours) and a non-seasonal
//! AutoETS model of what remains (trend plus remainder). Login counts are counts, so three things
//! are done around it:
//!
//! - **Variance.** A count's spread grows with its level (a busy hour varies by more logins than a
//!   quiet one), while MSTL+ETS gives one spread for every hour. The model is therefore fitted on the
//!   square root of the counts, where a Poisson count's spread is about constant, and its forecast and
//!   interval are squared back. The upper bound is never below the Poisson quantile of the point
//!   forecast, or of the host's own mean at that hour of the day where that is higher (a host that
//!   fails a login a few times a day has a point forecast near zero but not a rate of zero): no
//!   interval is tighter than counting noise.
//! - **Outliers in the history.** A brute-force burst last week must not teach the model that bursts
//!   are normal. Before fitting, each value is capped at its hour of the day's median plus six
//!   robust standard deviations (at least six logins).
//! - **Short histories.** MSTL needs two full weeks to see a weekly period; a host with less history
//!   has no forecast of its own ([`ForecastError::TooShort`]) and the caller falls back to its
//!   group's fleet band, saying so.

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::prelude::*;

/// Forecast settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastConfig {
    /// Hours of history a fit uses (the most recent ones): 4 weeks.
    pub history_hours: usize,
    /// Fewer hours than this and the host has no forecast of its own: 2 weeks, the least MSTL's
    /// weekly period can work with.
    pub min_history_hours: usize,
    /// Hours forecast ahead: 48 (a nightly refit that fails leaves the next day covered).
    pub horizon_hours: usize,
    /// The prediction interval's level: 0.999. Each host-hour is a test, and a fleet has thousands
    /// an hour: at 0.99 a thousand hosts would leave their intervals ten times an hour by chance.
    pub level: f64,
    /// The fleet bands' upper quantile: 0.999 ("fleet p99.9").
    pub fleet_quantile: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            history_hours: 672,
            min_history_hours: 336,
            horizon_hours: 48,
            level: 0.999,
            fleet_quantile: crate::bands::DEFAULT_QUANTILE,
        }
    }
}

/// One forecast hour.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct HourForecast {
    /// The expected count.
    pub point: f64,
    /// The interval's lower bound (never below zero).
    pub lower: f64,
    /// The interval's upper bound.
    pub upper: f64,
}

/// Why a series has no forecast.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ForecastError {
    /// Not enough history for the weekly period.
    #[error("{have} hours of history, {need} needed for a forecast of its own")]
    TooShort {
        /// Hours available.
        have: usize,
        /// Hours needed.
        need: usize,
    },
    /// The model failed (a degenerate series).
    #[error("model: {0}")]
    Model(String),
}

/// Periods of the seasonal components: a day and a week of hours.
const PERIODS: [usize; 2] = [24, 168];

/// Forecasts the `cfg.horizon_hours` after the end of `history` (hourly counts, oldest first; only
/// the last `cfg.history_hours` are used).
pub fn forecast(history: &[u32], cfg: &ForecastConfig) -> Result<Vec<HourForecast>, ForecastError> {
    let need = cfg.min_history_hours.max(2 * PERIODS[1]);
    let y = &history[history.len().saturating_sub(cfg.history_hours)..];
    if y.len() < need {
        return Err(ForecastError::TooShort { have: y.len(), need });
    }
    let capped = cap_outliers(y, PERIODS[0]);
    // The host's own rate per hour of the day: the floor under the interval where the model's point
    // is near zero but the host does log in now and then at that hour (failures: a few a day).
    let mut rate = [0.0f64; 24];
    for (p, r) in rate.iter_mut().enumerate() {
        let v: Vec<f64> = capped.iter().skip(p).step_by(PERIODS[0]).copied().collect();
        *r = v.iter().sum::<f64>() / v.len().max(1) as f64;
    }
    // A forecast hour's place in the day, counted (like `rate`) from the history's first value.
    let hod = |k: usize| (y.len() + k) % PERIODS[0];
    let z: Vec<f64> = capped.iter().map(|v| v.sqrt()).collect();
    let level = cfg.level.clamp(0.5, 0.9999);
    let horizon = cfg.horizon_hours.max(1);
    // A series that never changes (a host that never logs in) has nothing to model.
    if z.iter().all(|v| *v == z[0]) {
        let point = z[0] * z[0];
        return Ok(vec![
            HourForecast {
                point,
                lower: poisson_quantile(point, 1.0 - level) as f64,
                upper: poisson_quantile(point, level) as f64,
            };
            horizon
        ]);
    }
    let model = MSTLModel::new(PERIODS.to_vec(), AutoETS::non_seasonal().into_trend_model());
    let fitted = model.fit(&z).map_err(|e| ForecastError::Model(e.to_string()))?;
    let f = fitted.predict(horizon, level).map_err(|e| ForecastError::Model(e.to_string()))?;
    let Some(iv) = f.intervals else {
        return Err(ForecastError::Model("the model gave no prediction interval".into()));
    };
    let back = |v: f64| if v.is_finite() && v > 0.0 { v * v } else { 0.0 };
    Ok(f.point
        .iter()
        .zip(iv.lower.iter().zip(&iv.upper))
        .enumerate()
        .map(|(k, (p, (l, u)))| {
            let point = back(*p);
            let noise = point.max(rate[hod(k)]);
            HourForecast {
                point,
                lower: back(*l).min(poisson_quantile(point, 1.0 - level) as f64).min(point),
                upper: back(*u).max(poisson_quantile(noise, level) as f64).max(point),
            }
        })
        .collect())
}

/// Caps each value at its hour of the day's median plus six robust standard deviations (at least
/// six): the history a model learns from, with last week's burst taken out.
pub fn cap_outliers(y: &[u32], period: usize) -> Vec<f64> {
    let mut fence = vec![f64::INFINITY; period];
    for (p, f) in fence.iter_mut().enumerate() {
        let mut v: Vec<f64> = y.iter().skip(p).step_by(period).map(|x| f64::from(*x)).collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
        dev.sort_by(f64::total_cmp);
        let sd = 1.4826 * dev[dev.len() / 2];
        *f = median + 6.0 * sd.max(1.0);
    }
    y.iter().enumerate().map(|(i, x)| f64::from(*x).min(fence[i % period])).collect()
}

/// The smallest `k` with `P(X <= k) >= q` for `X ~ Poisson(mean)`.
pub fn poisson_quantile(mean: f64, q: f64) -> u32 {
    if mean.is_nan() || mean <= 0.0 {
        return 0;
    }
    if mean > 500.0 {
        // The normal approximation, far past where it matters.
        let z = normal_quantile(q);
        return (mean + z * mean.sqrt()).round().max(0.0) as u32;
    }
    let (mut k, mut p) = (0u32, (-mean).exp());
    let mut cdf = p;
    while cdf < q && k < 100_000 {
        k += 1;
        p *= mean / f64::from(k);
        cdf += p;
    }
    k
}

/// The standard normal quantile (Acklam's rational approximation; ample for interval bounds).
pub fn normal_quantile(q: f64) -> f64 {
    let q = q.clamp(1e-12, 1.0 - 1e-12);
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let tail = |r: f64| {
        (((((C[0] * r + C[1]) * r + C[2]) * r + C[3]) * r + C[4]) * r + C[5])
            / ((((D[0] * r + D[1]) * r + D[2]) * r + D[3]) * r + 1.0)
    };
    if q < 0.02425 {
        tail((-2.0 * q.ln()).sqrt())
    } else if q > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - q).ln()).sqrt())
    } else {
        let s = q - 0.5;
        let r = s * s;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * s
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixtures::logins::{LoginFleet, LoginSimConfig, Role};

    #[test]
    fn poisson_and_normal_quantiles() {
        assert_eq!(poisson_quantile(0.0, 0.99), 0);
        // P(X<=0 | 1) = .368, P(X<=3 | 1) = .981, P(X<=4 | 1) = .996.
        assert_eq!(poisson_quantile(1.0, 0.99), 4);
        assert_eq!(poisson_quantile(1.0, 0.3), 0);
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-4);
        assert!((normal_quantile(0.005) + 2.575829).abs() < 1e-4);
    }

    #[test]
    fn caps_a_burst_but_not_the_working_day() {
        let mut y: Vec<u32> = (0..24 * 28).map(|t| if (9..17).contains(&(t % 24)) { 5 } else { 0 }).collect();
        y[24 * 20 + 3] = 80;
        let c = cap_outliers(&y, 24);
        assert_eq!(c[24 * 20 + 3], 6.0);
        assert_eq!(c[24 * 20 + 10], 5.0);
    }

    #[test]
    fn short_histories_have_no_forecast_of_their_own() {
        let e = forecast(&[1; 100], &ForecastConfig::default()).unwrap_err();
        assert_eq!(e, ForecastError::TooShort { have: 100, need: 336 });
    }

    #[test]
    fn forecasts_follow_the_working_day_and_cover_what_follows() {
        let f = LoginFleet::generate(&LoginSimConfig {
            hosts: 40,
            days: 35,
            seed: 5,
            first_weekday: 0,
            anomalies_per_kind: 0,
        });
        let cfg = ForecastConfig::default();
        let train = 28 * 24; // Monday 00:00 of week 5 follows
        let (mut inside, mut total) = (0, 0);
        for (h, host) in f.hosts.iter().enumerate() {
            let fc = forecast(&f.success[h][..train], &cfg).unwrap();
            assert_eq!(fc.len(), 48);
            for (k, hf) in fc.iter().enumerate() {
                assert!(hf.lower <= hf.point && hf.point <= hf.upper && hf.lower >= 0.0, "{hf:?}");
                let actual = f64::from(f.success[h][train + k]);
                total += 1;
                inside += usize::from(hf.lower <= actual && actual <= hf.upper);
            }
            if host.role == Role::Workstation && f.working_day(train + 10) {
                // Monday's office hours are far busier than its night.
                let day: f64 = fc[8..17].iter().map(|x| x.point).sum();
                let night: f64 = fc[0..6].iter().map(|x| x.point).sum();
                assert!(day > 5.0 && day > 10.0 * night, "{}: day {day:.2} night {night:.2}", host.name);
            }
        }
        // A 99% interval: nearly every real hour falls inside it.
        assert!(inside as f64 >= 0.95 * total as f64, "{inside} of {total} inside");
    }
}
