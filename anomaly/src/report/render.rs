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

/// A host's chart: the forecast band (shaded), the expected count (dashed), the fleet band's upper
/// bound (dotted) and the actual counts (solid, dots where past both bounds).
pub fn svg(host: &str, points: &[ChartPoint]) -> String {
    let (w, h, pad) = (640.0, 160.0, 24.0);
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
    let top = points
        .iter()
        .map(|p| p.observed.max(p.expected.map_or(0.0, |e| e.2)).max(p.fleet_upper.unwrap_or(0.0)))
        .fold(1.0, f64::max);
    let (t0, t1) = (points[0].hour, points[points.len() - 1].hour.max(points[0].hour + HOUR));
    let x = |t: i64| pad + (w - 2.0 * pad) * (t - t0) as f64 / (t1 - t0) as f64;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / top;
    let band: Vec<&ChartPoint> = points.iter().filter(|p| p.expected.is_some()).collect();
    if !band.is_empty() {
        let mut poly = String::new();
        for p in &band {
            let _ = write!(poly, "{:.1},{:.1} ", x(p.hour), y(p.expected.map_or(0.0, |e| e.2)));
        }
        for p in band.iter().rev() {
            let _ = write!(poly, "{:.1},{:.1} ", x(p.hour), y(p.expected.map_or(0.0, |e| e.1)));
        }
        let _ = write!(out, "<polygon points=\"{}\" fill=\"#cfe3f7\" stroke=\"none\"/>", poly.trim_end());
        let line: Vec<String> = band
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.hour), y(p.expected.map_or(0.0, |e| e.0))))
            .collect();
        let _ = write!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#3b7dd8\" stroke-dasharray=\"4 3\"/>",
            line.join(" ")
        );
    }
    let fleet: Vec<String> = points
        .iter()
        .filter_map(|p| p.fleet_upper.map(|f| format!("{:.1},{:.1}", x(p.hour), y(f))))
        .collect();
    if !fleet.is_empty() {
        let _ = write!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#888\" stroke-dasharray=\"1 3\"/>",
            fleet.join(" ")
        );
    }
    let actual: Vec<String> =
        points.iter().map(|p| format!("{:.1},{:.1}", x(p.hour), y(p.observed))).collect();
    let _ = write!(
        out,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#c0392b\" stroke-width=\"1.5\"/>",
        actual.join(" ")
    );
    for p in points {
        let past =
            p.expected.is_some_and(|e| p.observed > e.2) && p.fleet_upper.is_some_and(|f| p.observed > f);
        if past {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#c0392b\"/>",
                x(p.hour),
                y(p.observed)
            );
        }
    }
    let _ = write!(
        out,
        "<text x=\"{pad}\" y=\"14\" font-size=\"11\" font-family=\"sans-serif\">{} · max {top:.0} · {} to {}</text></svg>",
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
        let _ = write!(
            o,
            "<tr><td class=\"l{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.level,
            a.level,
            esc(&a.host),
            esc(a.group.as_deref().unwrap_or("")),
            esc(&a.at),
            esc(&a.explanation),
            esc(&a.handling)
        );
    }
    o.push_str("</table><h2>Hosts</h2><p>Shaded: the host's forecast interval; dashed: expected; dotted: the fleet band's upper bound; red: actual (dots: past both).</p>");
    for h in &r.hosts {
        let _ = write!(
            o,
            "<h3>{} ({}), {} anomalies, level {}</h3>{}",
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
