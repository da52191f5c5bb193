//! Where a tagger's rules come from: Cordon's embedded pack plus the operator's Sigma files (a
//! directory of SigmaHQ rules, the team's own), loaded at ingest and sent to agents. Rules the
//! engine cannot run are refused one by one with the reason; the rest load.

use super::correlation::{Correlation, resolve};
use super::pipeline::Pipeline;
use super::rule::{Loaded, Rule, RuleError, load_any};
use super::tagger::{CORDON_RULES, Tagger};
use schemas::policy::Policy;
use std::sync::Arc;

/// The digest of a rule set: FNV-1a over the names and texts of Cordon's pack and then of the
/// operator's rule `files`. Agents and the server compare theirs.
pub fn rules_digest(files: &[RuleFile]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let pack = CORDON_RULES.iter().map(|(n, t)| (*n, *t));
    for (name, text) in pack.chain(files.iter().map(|f| (f.name.as_str(), f.text.as_str()))) {
        for b in name.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// One of the operator's rule files (Sigma YAML), as the server loads it and sends it to agents.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleFile {
    /// Its name (the path it was read from, relative to the configured directory).
    pub name: String,
    /// Its text.
    pub text: String,
}

/// A rule the engine refused, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Refusal {
    /// The file it came from.
    pub file: String,
    /// Its id or title.
    pub rule: String,
    /// The class of reason (`modifier`, `condition`, `regex`, `correlation`, `yaml`...).
    pub class: &'static str,
    /// The reason.
    pub reason: String,
}

/// Where a tagger's rules came from: Cordon's pack plus the operator's files.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// [`rules_digest`] of the pack and `files`.
    pub digest: String,
    /// The operator's rule files.
    pub files: Vec<RuleFile>,
    /// Rules (detection and correlation) loaded from `files`.
    pub loaded: usize,
    /// Rules in `files` the engine refused.
    pub refused: Vec<Refusal>,
}

/// The Sigma files (`.yml`, `.yaml`) at `paths`: a file as itself, a directory walked in full.
/// Each is named by its path relative to the directory given (prefixed with the directory's own
/// name), and the list is sorted by name so the digest does not depend on the walk's order.
pub fn read_rule_files(paths: &[std::path::PathBuf]) -> std::io::Result<Vec<RuleFile>> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let p = entry?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for root in paths {
        let base = root.parent().unwrap_or(root);
        let mut found = Vec::new();
        if root.is_dir() {
            walk(root, &mut found)?;
        } else {
            found.push(root.clone());
        }
        for p in found {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            let name = p.strip_prefix(base).unwrap_or(&p).to_string_lossy().replace('\\', "/");
            files.push(RuleFile { name, text });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

impl Tagger {
    /// Cordon's pack plus the operator's rule `files` (Sigma YAML, mapped by Cordon's ECS
    /// pipeline) under `policy`. A rule in `files` the engine cannot run, or a correlation whose
    /// references are not loaded, is refused with the reason ([`Tagger::sources`]) and the rest
    /// load; only a pack that does not compile is an error.
    pub fn with_rule_files(files: Vec<RuleFile>, policy: Policy) -> Result<Self, RuleError> {
        let pipeline = Pipeline::cordon_ecs();
        // Every loaded document with the operator's file it came from (`None`: the pack).
        let mut loaded: Vec<(Loaded, Option<&str>)> = Vec::new();
        for (_, text) in CORDON_RULES {
            for r in load_any(text, &pipeline) {
                loaded.push((r?, None));
            }
        }
        let mut refused = Vec::new();
        for f in &files {
            for r in load_any(&f.text, &pipeline) {
                match r {
                    Ok(l) => loaded.push((l, Some(f.name.as_str()))),
                    Err(e) => refused.push(Refusal {
                        file: f.name.clone(),
                        rule: e.rule,
                        class: e.class,
                        reason: e.reason,
                    }),
                }
            }
        }
        let mut from_files = 0;
        let mut rules: Vec<Rule> = Vec::new();
        let mut corrs: Vec<(Correlation, Option<&str>)> = Vec::new();
        for (l, origin) in loaded {
            from_files += usize::from(origin.is_some());
            match l {
                Loaded::Rule(r) => rules.push(r),
                Loaded::Correlation(c) => corrs.push((c, origin)),
            }
        }
        // A correlation whose references are not loaded is refused alone (the pack's always
        // resolve); references are checked before the matcher is built, so it is built once.
        while let Err(e) = resolve(&rules, corrs.iter().map(|(c, _)| c.clone()).collect(), &pipeline) {
            let culprit = corrs.iter().position(|(c, origin)| {
                origin.is_some() && [c.id.as_str(), c.title.as_str()].contains(&e.rule.as_str())
            });
            let Some(i) = culprit else { return Err(e) };
            let (_, origin) = corrs.remove(i);
            from_files -= 1;
            let file = origin.unwrap_or_default().to_owned();
            refused.push(Refusal { file, rule: e.rule, class: e.class, reason: e.reason });
        }
        let kept =
            rules.into_iter().map(Loaded::Rule).chain(corrs.into_iter().map(|(c, _)| Loaded::Correlation(c)));
        let mut tagger = Self::build(kept.collect(), &pipeline, policy)?;
        let sources = Sources { digest: rules_digest(&files), loaded: from_files, refused, files };
        tagger.sources = Arc::new(sources);
        Ok(tagger)
    }
}

/// The rule set in use, shared by ingest and the API and replaced whole when the operator's files
/// are reloaded.
#[derive(Debug, Default)]
pub struct CurrentRules(std::sync::RwLock<Option<Arc<Tagger>>>);

impl CurrentRules {
    /// A cell holding `t`.
    pub fn new(t: Option<Arc<Tagger>>) -> Self {
        Self(std::sync::RwLock::new(t))
    }

    /// The rules in use now.
    pub fn get(&self) -> Option<Arc<Tagger>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the rules.
    pub fn set(&self, t: Arc<Tagger>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }
}
