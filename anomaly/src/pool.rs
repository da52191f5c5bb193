//! A bounded pool for the fits: a fleet's forecasts are CPU work (tens of milliseconds a series), run
//! off the async runtime on a fixed number of threads so that ingest and the API keep theirs.

use crate::forecast::{ForecastConfig, ForecastError, HourForecast, forecast};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `f` over `0..n` on at most `threads` threads (at least one), returning the results in order.
pub fn map_bounded<T: Send>(n: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, n.max(1));
    let mut parts: Vec<Vec<(usize, T)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return out;
                        }
                        out.push((i, f(i)));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a fit thread panicked")).collect()
    });
    let mut all: Vec<(usize, T)> = parts.iter_mut().flat_map(std::mem::take).collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// Forecasts every series on a bounded pool.
pub fn forecast_all(
    series: &[&[u32]],
    cfg: &ForecastConfig,
    threads: usize,
) -> Vec<Result<Vec<HourForecast>, ForecastError>> {
    map_bounded(series.len(), threads, |i| forecast(series[i], cfg))
}

/// The threads a background fit may use by default: all but one core, at least one.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_whatever_the_threads() {
        for threads in [1, 2, 7] {
            let v = map_bounded(100, threads, |i| i * i);
            assert_eq!(v, (0..100).map(|i| i * i).collect::<Vec<_>>());
        }
        assert!(map_bounded(0, 4, |i| i).is_empty());
    }
}
