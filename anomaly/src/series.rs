//! Hourly login series: a host's successful and failed logins per hour, and its successes by logon
//! type, every hour of the range present (hours without logins are zeros, not gaps: a host that
//! goes silent is a signal).

use std::collections::BTreeMap;

/// An hour in microseconds, the series' step.
pub const HOUR: i64 = 3_600_000_000;

/// One host's hourly login counts over `[start, start + len hours)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct LoginSeries {
    /// Host name.
    pub host: String,
    /// Start of the first hour (microseconds, UTC, on the hour; RFC 3339 outside).
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub start: i64,
    /// Successful logins per hour.
    pub success: Vec<u32>,
    /// Failed logins per hour.
    pub failure: Vec<u32>,
    /// Successful logins per hour by logon type (`2` interactive, `3` network, `10` remote
    /// interactive...; `""` where the source gave none).
    pub by_type: BTreeMap<String, Vec<u32>>,
}

/// The hour containing `t` (microseconds).
pub fn hour_floor(t: i64) -> i64 {
    t.div_euclid(HOUR) * HOUR
}

impl LoginSeries {
    /// Builds the series of every host named in `counts` — `(host, hour start, outcome, logon type,
    /// n)` rows, as `store::Store::login_counts` returns them — over the hours of `[from, to)`.
    /// Rows outside the range are ignored; outcomes other than success and failure are not logins.
    pub fn from_counts(
        counts: &[(String, i64, String, String, u64)],
        from: i64,
        to: i64,
    ) -> Vec<LoginSeries> {
        let start = hour_floor(from);
        let len = usize::try_from((hour_floor(to.saturating_sub(1)) - start) / HOUR + 1).unwrap_or(0);
        let mut by_host: BTreeMap<&str, LoginSeries> = BTreeMap::new();
        for (host, hour, outcome, kind, n) in counts {
            let Ok(i) = usize::try_from((hour_floor(*hour) - start) / HOUR) else { continue };
            if *hour < start || i >= len {
                continue;
            }
            let s = by_host.entry(host.as_str()).or_insert_with(|| LoginSeries {
                host: host.clone(),
                start,
                success: vec![0; len],
                failure: vec![0; len],
                by_type: BTreeMap::new(),
            });
            let n = u32::try_from(*n).unwrap_or(u32::MAX);
            match outcome.as_str() {
                "success" => {
                    s.success[i] += n;
                    s.by_type.entry(kind.clone()).or_insert_with(|| vec![0; len])[i] += n;
                }
                "failure" => s.failure[i] += n,
                _ => {}
            }
        }
        by_host.into_values().collect()
    }

    /// An empty series (a host with no logins in the range).
    pub fn empty(host: &str, from: i64, to: i64) -> LoginSeries {
        let start = hour_floor(from);
        let len = usize::try_from((hour_floor(to.saturating_sub(1)) - start) / HOUR + 1).unwrap_or(0);
        LoginSeries {
            host: host.to_owned(),
            start,
            success: vec![0; len],
            failure: vec![0; len],
            by_type: BTreeMap::new(),
        }
    }

    /// Hours in the series.
    pub fn len(&self) -> usize {
        self.success.len()
    }

    /// No hours.
    pub fn is_empty(&self) -> bool {
        self.success.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_without_logins_are_zeros_and_outcomes_and_types_are_apart() {
        let t0 = 1_700_000_000_000_000 / HOUR * HOUR;
        let row = |h: &str, k: i64, o: &str, ty: &str, n: u64| {
            (h.to_owned(), t0 + k * HOUR, o.to_owned(), ty.to_owned(), n)
        };
        let counts = vec![
            row("a", 0, "success", "2", 3),
            row("a", 0, "success", "3", 4),
            row("a", 2, "failure", "3", 9),
            row("b", 1, "success", "", 1),
            row("a", 5, "success", "2", 100), // outside the range
            row("a", 1, "unknown", "2", 7),   // not a login outcome
        ];
        let s = LoginSeries::from_counts(&counts, t0 + 10, t0 + 3 * HOUR);
        assert_eq!(s.len(), 2);
        let a = &s[0];
        assert_eq!((a.host.as_str(), a.start), ("a", t0));
        assert_eq!(a.success, vec![7, 0, 0]);
        assert_eq!(a.failure, vec![0, 0, 9]);
        assert_eq!(a.by_type["2"], vec![3, 0, 0]);
        assert_eq!(a.by_type["3"], vec![4, 0, 0]);
        assert_eq!(s[1].success, vec![0, 1, 0]);
        let e = LoginSeries::empty("c", t0, t0 + 2 * HOUR);
        assert_eq!((e.success.len(), e.failure.iter().sum::<u32>()), (2, 0));
    }
}
