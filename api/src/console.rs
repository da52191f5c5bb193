//! The analyst's console: static files served on the API's listener (ADR 0008).
//!
//! The files under `console/web` are built into the binary; `--ui-dir` serves them from a directory
//! instead, for development. Every path that is not an asset, the API, health or metrics answers
//! with the console's page, so each screen has a URL of its own (`/alerts`, `/incidents/7`). Every
//! response carries a Content-Security-Policy that allows only the server's own scripts, styles and
//! connections: no inline script runs, so markup that reaches the page in event data cannot run even
//! if it were ever rendered as markup (the console renders all event data as text).

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::path::PathBuf;
use std::sync::Arc;

/// The console's files, built in: (path under `console/web`, bytes).
static FILES: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../console/web/index.html")),
    ("assets/app.css", include_bytes!("../../console/web/assets/app.css")),
    ("assets/app.js", include_bytes!("../../console/web/assets/app.js")),
    ("assets/alert.js", include_bytes!("../../console/web/assets/alert.js")),
    ("assets/anomalies.js", include_bytes!("../../console/web/assets/anomalies.js")),
    ("assets/api.js", include_bytes!("../../console/web/assets/api.js")),
    ("assets/chart.js", include_bytes!("../../console/web/assets/chart.js")),
    ("assets/detection.js", include_bytes!("../../console/web/assets/detection.js")),
    ("assets/dom.js", include_bytes!("../../console/web/assets/dom.js")),
    ("assets/event.js", include_bytes!("../../console/web/assets/event.js")),
    ("assets/fleet.js", include_bytes!("../../console/web/assets/fleet.js")),
    ("assets/graph.js", include_bytes!("../../console/web/assets/graph.js")),
    ("assets/host.js", include_bytes!("../../console/web/assets/host.js")),
    ("assets/hunt.js", include_bytes!("../../console/web/assets/hunt.js")),
    ("assets/incidents.js", include_bytes!("../../console/web/assets/incidents.js")),
    ("assets/queue.js", include_bytes!("../../console/web/assets/queue.js")),
    ("assets/response.js", include_bytes!("../../console/web/assets/response.js")),
    ("assets/signin.js", include_bytes!("../../console/web/assets/signin.js")),
];

/// Total size of the built-in files the console may reach (the bundle budget, checked by a test).
pub const BUDGET_BYTES: usize = 256 * 1024;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where the files come from.
#[derive(Clone, Debug)]
enum Source {
    BuiltIn,
    Dir(PathBuf),
}

/// The console's routes: `/assets/...` and every other page path.
pub fn router(ui_dir: Option<PathBuf>) -> Router {
    let source = Arc::new(ui_dir.map_or(Source::BuiltIn, Source::Dir));
    Router::new().route("/assets/{*file}", get(asset)).fallback(get(page)).with_state(source)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// The bytes of `path` (relative, `/`-separated) from the source; `None` when there is no such file.
async fn read(source: &Source, path: &str) -> Option<Vec<u8>> {
    if path.split('/').any(|part| part.is_empty() || part == "." || part == ".." || part.contains('\\')) {
        return None;
    }
    match source {
        Source::BuiltIn => FILES.iter().find(|(p, _)| *p == path).map(|(_, b)| b.to_vec()),
        Source::Dir(dir) => tokio::fs::read(dir.join(path)).await.ok(),
    }
}

fn respond(path: &str, bytes: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn asset(State(source): State<Arc<Source>>, Path(file): Path<String>) -> Response {
    let path = format!("assets/{file}");
    match read(&source, &path).await {
        Some(bytes) => respond(&path, bytes),
        None => (StatusCode::NOT_FOUND, "no such console file").into_response(),
    }
}

/// Any other path: the console's page, which routes on the client. API paths that reached here
/// have no route and get the API's JSON 404.
async fn page(State(source): State<Arc<Source>>, uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        let body = serde_json::json!({"error": {"code": "not_found", "message": format!("no route {}", uri.path())}});
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    match read(&source, "index.html").await {
        Some(bytes) => respond("index.html", bytes),
        None => (StatusCode::NOT_FOUND, "the console's index.html is missing from --ui-dir").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../console/web")
    }

    fn files_under(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_under(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }

    #[test]
    fn every_console_file_is_built_in_and_within_budget() {
        let mut on_disk = Vec::new();
        files_under(&web_dir(), &web_dir(), &mut on_disk);
        on_disk.sort();
        let mut built: Vec<String> = FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
        built.sort();
        assert_eq!(built, on_disk, "console/web and the built-in list differ: add the file to FILES");
        let total: usize = FILES.iter().map(|(_, b)| b.len()).sum();
        assert!(total <= BUDGET_BYTES, "the console is {total} bytes, over its {BUDGET_BYTES}-byte budget");
    }

    #[tokio::test]
    async fn paths_that_leave_the_console_directory_are_refused() {
        let source = Source::Dir(web_dir());
        for bad in ["../Cargo.toml", "assets/../../Cargo.toml", "/etc/passwd", "assets//app.js", "a\\b"] {
            assert!(read(&source, bad).await.is_none(), "{bad} was served");
        }
        assert!(read(&source, "assets/app.js").await.is_some());
        assert!(read(&Source::BuiltIn, "assets/app.js").await.is_some());
    }
}
