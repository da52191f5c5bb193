//! Schedules in cron syntax (UTC): `minute hour day-of-month month day-of-week`, each field `*`, a
//! number, a range `a-b`, a list `a,b,c` and a step `*/n` or `a-b/n`; day of week 0-7 (0 and 7 are
//! Sunday). When both day fields are restricted a day matching either runs, as in Vixie cron. Also
//! `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    day_any: bool,
    weekday_any: bool,
}

/// A schedule that does not parse, with where and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad schedule {text:?}: {reason}")]
pub struct CronError {
    /// The schedule.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

fn field(text: &str, name: &str, lo: u32, hi: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let any = text == "*";
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s.parse().map_err(|_| format!("{name}: step {s:?} is not a number"))?;
                if s == 0 {
                    return Err(format!("{name}: a step of 0"));
                }
                (r, s)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let p = |x: &str| x.parse::<u32>().map_err(|_| format!("{name}: {x:?} is not a number"));
            (p(a)?, p(b)?)
        } else {
            let v = range.parse::<u32>().map_err(|_| format!("{name}: {range:?} is not a number"))?;
            (v, if part.contains('/') { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{name}: {range:?} is outside {lo}-{hi}"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, any))
}

impl Cron {
    /// Parses a schedule.
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let err = |reason: String| CronError { text: text.to_owned(), reason };
        let expanded = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            t => t,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(err(format!("{} fields; five are needed (minute hour day month weekday)", f.len())));
        }
        let (minutes, _) = field(f[0], "minute", 0, 59).map_err(err)?;
        let (hours, _) = field(f[1], "hour", 0, 23).map_err(err)?;
        let (days, day_any) = field(f[2], "day of month", 1, 31).map_err(err)?;
        let (months, _) = field(f[3], "month", 1, 12).map_err(err)?;
        let (mut weekdays, weekday_any) = field(f[4], "day of week", 0, 7).map_err(err)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Cron {
            text: text.to_owned(),
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            day_any,
            weekday_any,
        })
    }

    /// The schedule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, t: &DateTime<Utc>) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().num_days_from_sunday()) != 0;
        match (self.day_any, self.weekday_any) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The first time after `after` (microseconds, UTC) the schedule fires; `None` if it never does
    /// within five years (`0 0 31 2 *`).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = DateTime::<Utc>::from_timestamp_micros(after)?;
        // The next whole minute.
        let mut t = start.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = start + Duration::days(366 * 5);
        while t < limit {
            if self.months & (1 << t.month()) == 0 || !self.day_matches(&t) {
                t = (t + Duration::days(1)).with_hour(0)?.with_minute(0)?;
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = (t + Duration::hours(1)).with_minute(0)?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t += Duration::minutes(1);
                continue;
            }
            return Some(t.timestamp_micros());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        schemas::time::parse_rfc3339_micros(s).unwrap()
    }

    fn next(c: &str, after: &str) -> String {
        schemas::time::format_micros(Cron::parse(c).unwrap().next_after(at(after)).unwrap())
    }

    #[test]
    fn schedules_fire_when_they_say() {
        assert_eq!(next("0 2 * * *", "2026-11-24T03:00:00Z"), "2026-11-25T02:00:00.000000Z");
        assert_eq!(next("0 2 * * *", "2026-11-24T01:59:30Z"), "2026-11-24T02:00:00.000000Z");
        assert_eq!(next("*/15 * * * *", "2026-11-24T03:01:00Z"), "2026-11-24T03:15:00.000000Z");
        // Mondays at 07:30 (2026-11-24 is a Tuesday).
        assert_eq!(next("30 7 * * 1", "2026-11-24T08:00:00Z"), "2026-11-30T07:30:00.000000Z");
        assert_eq!(next("0 0 * * 7", "2026-11-24T08:00:00Z"), "2026-11-29T00:00:00.000000Z");
        assert_eq!(next("@monthly", "2026-11-24T08:00:00Z"), "2026-12-01T00:00:00.000000Z");
        assert_eq!(next("0 9-17/4 * * 1-5", "2026-11-24T10:00:00Z"), "2026-11-24T13:00:00.000000Z");
        // Either day field, as in Vixie cron: the 1st or any Friday.
        assert_eq!(next("0 0 1 * 5", "2026-11-24T08:00:00Z"), "2026-11-27T00:00:00.000000Z");
        assert_eq!(Cron::parse("0 0 31 2 *").unwrap().next_after(at("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let e = |c: &str| Cron::parse(c).unwrap_err().reason;
        assert_eq!(e("0 2 * *"), "4 fields; five are needed (minute hour day month weekday)");
        assert_eq!(e("61 * * * *"), "minute: \"61\" is outside 0-59");
        assert_eq!(e("0 x * * *"), "hour: \"x\" is not a number");
        assert_eq!(e("*/0 * * * *"), "minute: a step of 0");
    }
}
