//! Rendering: a host's SVG chart, the report as an HTML page, its anomalies as CSV.

use super::{ChartPoint, HOUR, Report};
use std::collections::BTreeSet;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Chart geometry: size and the margins the axes are drawn in.
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    bottom: f64,
    top_pad: f64,
    t0: i64,
    t1: i64,
    max: f64,
}

impl Frame {
    fn x(&self, t: i64) -> f64 {
        self.left + (self.w - self.left - 10.0) * (t - self.t0) as f64 / (self.t1 - self.t0) as f64
    }
    fn y(&self, v: f64) -> f64 {
        self.h - self.bottom - (self.h - self.bottom - self.top_pad) * v / self.max
    }
}

/// The points split where hours are missing: each run is consecutive hours, so a gap in the series
/// is drawn as a gap, never as a line across it.
fn runs(points: &[ChartPoint]) -> Vec<&[ChartPoint]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=points.len() {
        if i == points.len() || points[i].hour - points[i - 1].hour != HOUR {
            out.push(&points[start..i]);
            start = i;
        }
    }
    out
}

/// A polyline through `(t, v)` pairs.
fn polyline(f: &Frame, pts: impl Iterator<Item = (i64, f64)>, style: &str) -> String {
    let xy: Vec<String> = pts.map(|(t, v)| format!("{:.1},{:.1}", f.x(t), f.y(v))).collect();
    format!("<polyline points=\"{}\" fill=\"none\" {style}/>", xy.join(" "))
}

/// The axes: counts on the left (0, half, top), dates (UTC midnights) along the bottom.
fn axes(f: &Frame) -> String {
    let mut o = String::new();
    let (x0, x1, yb) = (f.left, f.w - 10.0, f.h - f.bottom);
    let _ = write!(
        o,
        "<g stroke=\"#999\"><line x1=\"{x0}\" y1=\"{yb}\" x2=\"{x1}\" y2=\"{yb}\"/><line x1=\"{x0}\" y1=\"{}\" x2=\"{x0}\" y2=\"{yb}\"/></g>",
        f.top_pad
    );
    o.push_str("<g font-size=\"10\" font-family=\"sans-serif\" fill=\"#555\">");
    for v in [0.0, (f.max / 2.0).round(), f.max] {
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>",
            x0 - 4.0,
            f.y(v) + 3.0
        );
    }
    let day = 24 * HOUR;
    let mut t = (f.t0 + day - 1).div_euclid(day) * day;
    let step = day * ((f.t1 - f.t0) / day / 8 + 1);
    while t <= f.t1 {
        let x = f.x(t);
        let _ = write!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{yb}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#999\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            yb + 4.0,
            yb + 15.0,
            &schemas::time::format_micros(t)[5..10]
        );
        t += step;
    }
    o.push_str("</g>");
    o
}

/// What each mark means, drawn inside the chart so an exported image keeps it.
fn legend(f: &Frame) -> String {
    let items = [
        ("<rect width=\"12\" height=\"8\" fill=\"#cfe3f7\"/>", "forecast interval"),
        ("<line x2=\"12\" y1=\"4\" y2=\"4\" stroke=\"#3b7dd8\" stroke-dasharray=\"4 3\"/>", "expected"),
        (
            "<line x2=\"12\" y1=\"4\" y2=\"4\" stroke=\"#888\" stroke-dasharray=\"1 3\"/>",
            "fleet band (upper)",
        ),
        ("<line x2=\"12\" y1=\"4\" y2=\"4\" stroke=\"#c0392b\" stroke-width=\"1.5\"/>", "actual"),
        ("<circle cx=\"6\" cy=\"4\" r=\"3\" fill=\"#c0392b\"/>", "past both"),
    ];
    let mut o = String::from("<g font-size=\"10\" font-family=\"sans-serif\">");
    let mut x = f.left;
    for (mark, label) in items {
        let _ = write!(
            o,
            "<g transform=\"translate({x:.0} {:.0})\">{mark}<text x=\"16\" y=\"8\">{label}</text></g>",
            f.h - 12.0
        );
        x += 30.0 + 5.5 * label.len() as f64;
    }
    o.push_str("</g>");
    o
}

/// A host's chart: the forecast band (shaded), the expected count (dashed), the fleet band's upper
/// bound (dotted) and the actual counts (solid, dots where past both bounds), with axes, dates and a
/// legend; missing hours are gaps.
pub fn svg(host: &str, points: &[ChartPoint]) -> String {
    let (w, h) = (640.0, 200.0);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"logins of {}\">",
        esc(host)
    );
    if points.is_empty() {
        out.push_str("<text x=\"10\" y=\"20\">no series</text></svg>");
        return out;
    }
    let max = points
        .iter()
        .map(|p| p.observed.max(p.expected.map_or(0.0, |e| e.2)).max(p.fleet_upper.unwrap_or(0.0)))
        .fold(1.0, f64::max)
        .ceil();
    let (t0, t1) = (points[0].hour, points[points.len() - 1].hour.max(points[0].hour + HOUR));
    let f = Frame { w, h, left: 36.0, bottom: 40.0, top_pad: 20.0, t0, t1, max };
    out.push_str(&axes(&f));
    for run in runs(points) {
        let band: Vec<&ChartPoint> = run.iter().filter(|p| p.expected.is_some()).collect();
        if !band.is_empty() {
            let upper = band.iter().map(|p| (p.hour, p.expected.map_or(0.0, |e| e.2)));
            let lower = band.iter().rev().map(|p| (p.hour, p.expected.map_or(0.0, |e| e.1)));
            let poly: Vec<String> =
                upper.chain(lower).map(|(t, v)| format!("{:.1},{:.1}", f.x(t), f.y(v))).collect();
            let _ = write!(out, "<polygon points=\"{}\" fill=\"#cfe3f7\" stroke=\"none\"/>", poly.join(" "));
            let expected = band.iter().map(|p| (p.hour, p.expected.map_or(0.0, |e| e.0)));
            out.push_str(&polyline(&f, expected, "stroke=\"#3b7dd8\" stroke-dasharray=\"4 3\""));
        }
        let fleet: Vec<(i64, f64)> = run.iter().filter_map(|p| p.fleet_upper.map(|v| (p.hour, v))).collect();
        if !fleet.is_empty() {
            out.push_str(&polyline(&f, fleet.into_iter(), "stroke=\"#888\" stroke-dasharray=\"1 3\""));
        }
        let actual = run.iter().map(|p| (p.hour, p.observed));
        out.push_str(&polyline(&f, actual, "class=\"actual\" stroke=\"#c0392b\" stroke-width=\"1.5\""));
    }
    for p in points {
        let past =
            p.expected.is_some_and(|e| p.observed > e.2) && p.fleet_upper.is_some_and(|v| p.observed > v);
        if past {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#c0392b\"/>",
                f.x(p.hour),
                f.y(p.observed)
            );
        }
    }
    out.push_str(&legend(&f));
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"12\" font-size=\"11\" font-family=\"sans-serif\">{} · logins per hour, UTC, {} to {}</text></svg>",
        f.left,
        esc(host),
        &schemas::time::format_micros(t0)[..16],
        &schemas::time::format_micros(t1)[..16]
    );
    out
}

/// The report as a self-contained HTML page (charts inline).
pub fn to_html(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Cordon anomaly report {}</title>\
         <style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}}\
         .l5,.l4{{color:#b00;font-weight:bold}}</style></head><body>",
        esc(&r.id)
    );
    let _ = write!(
        o,
        "<h1>Login anomalies: {} to {}</h1><p>Tenant {}, report {} ({}), generated {}.</p>",
        esc(&r.from),
        esc(&r.to),
        esc(&r.tenant),
        esc(&r.id),
        esc(&r.name),
        esc(&r.generated)
    );
    let f = &r.fleet;
    let _ = write!(
        o,
        "<h2>Fleet</h2><p>{} hosts logged in {} times and failed {} times; {} anomalies on {} hosts.</p>",
        f.hosts,
        f.logins,
        f.failures,
        r.anomalies.len(),
        r.anomalies.iter().map(|a| &a.host).collect::<BTreeSet<_>>().len()
    );
    o.push_str("<table><tr><th>group</th><th>hosts</th><th>logins</th><th>failures</th><th>anomalous hosts</th></tr>");
    for (g, s) in &f.groups {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(if g.is_empty() { "(none)" } else { g }),
            s.hosts,
            s.logins,
            s.failures,
            s.anomalous_hosts
        );
    }
    o.push_str("</table>");
    let c = &r.changes;
    let _ = write!(
        o,
        "<h2>Since the previous report</h2><p>{}: {} anomalies then, {} now. New: {}. Quiet again: {}. Still anomalous: {}.</p>",
        c.previous.as_deref().map_or("none (the first of this schedule)".to_owned(), esc),
        c.anomalies_before,
        c.anomalies_now,
        esc(&list(&c.new_hosts)),
        esc(&list(&c.quiet_again)),
        esc(&list(&c.still_anomalous))
    );
    o.push_str("<h2>Anomalies, most severe first</h2><table><tr><th>level</th><th>host</th><th>group</th><th>hour</th><th>what</th><th>handling</th></tr>");
    for a in &r.anomalies {
        let host = match r.hosts.iter().position(|h| h.host == a.host) {
            Some(i) => format!("<a href=\"#chart-{i}\">{}</a>", esc(&a.host)),
            None => esc(&a.host),
        };
        let _ = write!(
            o,
            "<tr><td class=\"l{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.level,
            a.level,
            host,
            esc(a.group.as_deref().unwrap_or("")),
            esc(&a.at),
            esc(&a.explanation),
            esc(&a.handling)
        );
    }
    o.push_str("</table><h2>Hosts</h2><p>Shaded: the host's forecast interval; dashed: expected; dotted: the fleet band's upper bound; red: actual (dots: past both). Missing hours are gaps.</p>");
    for (i, h) in r.hosts.iter().enumerate() {
        let _ = write!(
            o,
            "<h3 id=\"chart-{i}\">{} ({}), {} anomalies, level {}</h3>{}",
            esc(&h.host),
            esc(h.group.as_deref().unwrap_or("no group")),
            h.anomalies,
            h.max_level,
            h.svg
        );
    }
    o.push_str("</body></html>");
    o
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "none".to_owned() } else { v.join(", ") }
}

/// One CSV cell. Text a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab
/// or a carriage return: host names and explanations come from event data) gets a leading `'`, so it
/// opens as text (OWASP's CSV injection advice).
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// The report's anomalies as CSV, most severe first.
pub fn to_csv(r: &Report) -> String {
    let mut o = String::from(
        "rank,level,host,group,hour,measure,direction,observed,ratio,explanation,handling,alert\n",
    );
    for (i, a) in r.anomalies.iter().enumerate() {
        let fields = [
            (i + 1).to_string(),
            a.level.to_string(),
            csv_field(&a.host),
            csv_field(a.group.as_deref().unwrap_or("")),
            a.at.clone(),
            a.measure.clone(),
            a.direction.clone(),
            a.observed.to_string(),
            a.ratio.to_string(),
            csv_field(&a.explanation),
            a.handling.clone(),
            a.alert.clone(),
        ];
        o.push_str(&fields.join(","));
        o.push('\n');
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(hour: i64, observed: f64) -> ChartPoint {
        ChartPoint { hour, observed, expected: Some((2.0, 0.0, 5.0)), fleet_upper: Some(8.0) }
    }

    /// Two days with a day missing between them: two runs, each drawn on its own (no line across
    /// the gap), under axes with the dates and a legend.
    #[test]
    fn a_gap_in_the_series_is_a_gap_in_the_chart() {
        let day = 24 * HOUR;
        let t0 = 1_700_006_400_000_000; // 2023-11-15T00:00Z
        let mut points: Vec<ChartPoint> = (0..24).map(|k| point(t0 + k * HOUR, 1.0)).collect();
        points.extend((0..24).map(|k| point(t0 + 2 * day + k * HOUR, if k == 9 { 40.0 } else { 1.0 })));
        assert_eq!(runs(&points).iter().map(|r| r.len()).collect::<Vec<_>>(), [24, 24]);
        let svg = svg("ws-1", &points);
        assert_eq!(svg.matches("class=\"actual\"").count(), 2, "one line per run: {svg}");
        assert_eq!(svg.matches("<polygon").count(), 2, "one forecast band per run");
        for date in ["11-15", "11-16", "11-17"] {
            assert!(svg.contains(&format!(">{date}</text>")), "date tick {date}: {svg}");
        }
        assert!(svg.contains(">40</text>") && svg.contains(">0</text>"), "count axis: {svg}");
        for label in ["forecast interval", "expected", "fleet band (upper)", "actual", "past both"] {
            assert!(svg.contains(&format!(">{label}</text>")), "legend {label}");
        }
        assert_eq!(svg.matches("<circle").count(), 2, "the 40 is marked (and the legend's dot)");
        let unbroken: Vec<ChartPoint> = (0..48).map(|k| point(t0 + k * HOUR, 1.0)).collect();
        assert_eq!(runs(&unbroken).len(), 1);
    }
}
