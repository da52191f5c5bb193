//! B7: login baselines. 2,000 simulated hosts x 672 hourly login counts (four weeks, the fleet
//! simulator's daily and weekly shape): every host's MSTL(24, 168) + AutoETS fit and 24-hour forecast
//! with its interval (99.9%) on two threads (the server's bounded pool), then the time to score every host
//! for one hour (its expectation looked up and the two-condition rule applied). The same series go to
//! statsforecast's MSTL(season_length=[24, 168], trend_forecaster=AutoETS(model="ZZN")) with
//! n_jobs=2 (`tests/bench/b7_statsforecast.py`), after a warm-up fit that compiles its numba code.

use crate::cpu_seconds;
use anomaly::bands::FleetBand;
use anomaly::detect::{Basis, Expected, Measure, above};
use anomaly::forecast::ForecastConfig;
use fixtures::logins::{LoginFleet, LoginSimConfig};
use std::io::Write;
use std::time::Instant;

/// Runs B7 for `hosts` hosts; `peer` is the Python that runs statsforecast.
pub(crate) fn b7(hosts: usize, reps: usize, peer: Option<&str>) -> anyhow::Result<()> {
    let f = LoginFleet::generate(&LoginSimConfig {
        hosts,
        days: 29,
        seed: 7,
        first_weekday: 0,
        anomalies_per_kind: 0,
    });
    let train = 672;
    let series: Vec<&[u32]> = f.success.iter().map(|s| &s[..train]).collect();
    let cfg = ForecastConfig { horizon_hours: 24, ..ForecastConfig::default() };
    let threads = 2;
    let mut walls = Vec::new();
    let mut fits = Vec::new();
    for _ in 0..reps.max(1) {
        let (t, c) = (Instant::now(), cpu_seconds());
        fits = anomaly::pool::forecast_all(&series, &cfg, threads);
        walls.push((t.elapsed().as_secs_f64(), cpu_seconds() - c));
    }
    let failed = fits.iter().filter(|r| r.is_err()).count();
    walls.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (wall, cpu) = walls[walls.len() / 2];
    println!(
        "  cordon refit: {hosts} hosts x {train} h, {threads} threads: {wall:.2} s wall, {cpu:.2} CPU-s ({:.1} ms per fit per core); {failed} fits failed",
        1000.0 * cpu / hosts as f64
    );
    // Coverage of the next day's real values, as a sanity check on the intervals.
    let (mut inside, mut total) = (0usize, 0usize);
    for (h, r) in fits.iter().enumerate() {
        if let Ok(v) = r {
            for (k, hf) in v.iter().enumerate() {
                let x = f64::from(f.success[h][train + k]);
                total += 1;
                inside += usize::from(hf.lower <= x && x <= hf.upper);
            }
        }
    }
    println!(
        "  99% intervals hold {:.1}% of the next day's real hours",
        100.0 * inside as f64 / total.max(1) as f64
    );
    // Scoring: every host's running count for hour `train` against its forecast and the band.
    let band = FleetBand::compute(series.iter().copied(), 0);
    let expected: Vec<Expected> = fits
        .iter()
        .map(|r| match r {
            Ok(v) => Expected { own: v[0], fleet: band.at(train), basis: Basis::Forecast },
            Err(_) => Expected::from_band(band.at(train)),
        })
        .collect();
    let mut score_times = Vec::new();
    let mut flagged = 0;
    for _ in 0..20 {
        let t = Instant::now();
        flagged = 0;
        for (h, e) in expected.iter().enumerate() {
            flagged += usize::from(above(Measure::Logins, f.success[h][train], e).is_some());
        }
        score_times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    score_times.sort_by(f64::total_cmp);
    println!(
        "  cordon scoring all {hosts} hosts for one hour: {:.3} ms (median of 20); {flagged} flagged",
        score_times[10]
    );
    if let Some(python) = peer {
        let dir = std::env::temp_dir().join(format!("cordon-b7-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let csv = dir.join("series.csv");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv)?);
        writeln!(w, "unique_id,ds,y")?;
        for (h, s) in series.iter().enumerate() {
            for (t, v) in s.iter().enumerate() {
                writeln!(w, "h{h},{t},{v}")?;
            }
        }
        w.flush()?;
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/b7_statsforecast.py");
        let out =
            std::process::Command::new(python).arg(script).arg(&csv).arg(threads.to_string()).output()?;
        std::fs::remove_dir_all(&dir).ok();
        anyhow::ensure!(
            out.status.success(),
            "statsforecast peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        if let Some(peer_wall) = text
            .lines()
            .find_map(|l| l.strip_prefix("  statsforecast refit wall s: "))
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            println!("  ratio: cordon is {:.1}x statsforecast on wall time", peer_wall / wall);
        }
    }
    Ok(())
}
