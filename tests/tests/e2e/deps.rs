//! The dependency edges of ARCHITECTURE.md, checked from the manifests: `schemas` at the bottom, the
//! analysis crates independent of each other, the server binary at the top.

use std::collections::{BTreeMap, BTreeSet};

const CRATES: &[&str] = &[
    "schemas",
    "fixtures",
    "sensor-agent",
    "sqlite-cksum",
    "store",
    "ingest",
    "correlate",
    "anomaly",
    "api",
    "distsql",
    "cordon",
    "tests",
];

fn allowed(krate: &str) -> &'static [&'static str] {
    match krate {
        "schemas" => &[],
        "fixtures" => &["schemas"],
        "sensor-agent" => &["schemas", "fixtures", "correlate"],
        "sqlite-cksum" => &[],
        "store" => &["schemas", "sqlite-cksum"],
        "ingest" => &["schemas", "store", "correlate", "anomaly"],
        "correlate" => &["schemas"],
        "anomaly" => &["schemas"],
        "api" => &["schemas", "store", "ingest", "correlate", "anomaly"],
        "distsql" => &["store"],
        "cordon" | "tests" => CRATES,
        _ => &[],
    }
}

#[test]
fn dependency_edges_point_down() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for krate in CRATES {
        let text = std::fs::read_to_string(root.join(krate).join("Cargo.toml")).unwrap();
        let manifest: toml::Value = toml::from_str(&text).unwrap();
        let deps = manifest.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
        edges.insert(krate, deps.keys().filter(|d| CRATES.contains(&d.as_str())).cloned().collect());
        // The workspace lints forbid unsafe code; the VFS shim, a table of C callbacks, is the one
        // crate with lints of its own.
        let own_lints = *krate == "sqlite-cksum";
        assert_eq!(
            manifest["lints"].get("workspace").and_then(|w| w.as_bool()),
            (!own_lints).then_some(true),
            "{krate} must use the workspace lints"
        );
    }
    for (krate, deps) in &edges {
        for d in deps {
            assert!(
                allowed(krate).contains(&d.as_str()),
                "{krate} must not depend on {d} (see ARCHITECTURE.md)"
            );
        }
    }
    // schemas stays free of I/O runtimes.
    let schemas = std::fs::read_to_string(root.join("schemas/Cargo.toml")).unwrap();
    for heavy in ["tokio", "async-nats", "datafusion", "tantivy", "sqlx", "axum"] {
        assert!(!schemas.contains(&format!("{heavy} =")), "schemas must not depend on {heavy}");
    }
    // The distributed engine's gRPC stack stays in its own crate: the store builds without it.
    for krate in CRATES.iter().filter(|k| !["distsql", "cordon", "tests"].contains(k)) {
        let text = std::fs::read_to_string(root.join(krate).join("Cargo.toml")).unwrap();
        for grpc in ["datafusion-distributed", "tonic"] {
            assert!(!text.contains(&format!("{grpc} =")), "{krate} must not depend on {grpc}");
        }
    }
}
