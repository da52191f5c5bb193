//! Failpoints: named places in the commit protocol where a test can make the process die.
//!
//! `CORDON_FAILPOINTS="after_parquet=3,after_catalog=1"` aborts the process (no destructors, no
//! flushing: as close to `kill -9` as a process can do to itself) on the 3rd pass through
//! `after_parquet`, or the 1st through `after_catalog`. Unset, a failpoint costs one relaxed load.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    at: HashMap<String, u64>,
    hits: HashMap<String, AtomicU64>,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("CORDON_FAILPOINTS").ok()?;
            let at: HashMap<String, u64> = spec
                .split(',')
                .filter_map(|p| {
                    let (name, n) = p.split_once('=')?;
                    Some((name.trim().to_owned(), n.trim().parse().ok()?))
                })
                .collect();
            let hits = at.keys().map(|k| (k.clone(), AtomicU64::new(0))).collect();
            Some(Armed { at, hits })
        })
        .as_ref()
}

/// Passes through failpoint `name`; aborts the process if it is armed for this pass.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    let (Some(at), Some(hits)) = (a.at.get(name), a.hits.get(name)) else { return };
    if hits.fetch_add(1, Ordering::SeqCst) + 1 == *at {
        eprintln!("failpoint {name} reached: aborting");
        std::process::abort();
    }
}
