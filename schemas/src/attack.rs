//! The MITRE ATT&CK Enterprise catalog, embedded: tactics in kill-chain order, techniques and
//! sub-techniques with their names, parents, tactics and platforms.
//!
//! The table (`schemas/attack/enterprise-attack.tsv`) is generated from MITRE's STIX bundle by
//! `schemas/attack/generate.py`; revoked and deprecated objects are left out. © 2025 The MITRE
//! Corporation. This work is reproduced and distributed with the permission of The MITRE Corporation
//! (license: `LICENSES/MITRE-ATTACK.txt`).
//!
//! Sigma rules tag techniques as `attack.t1059.001` and tactics as `attack.execution`; [`parse_tag`]
//! reads both, and [`Catalog::resolve`] says whether an id exists. The catalog also knows the v19 ids
//! and tactics that replaced v18 ones ([`crosswalk`]): the matrix stays v18's, every lookup takes both.

pub mod crosswalk;

use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("../attack/enterprise-attack.tsv");

/// A tactic (a column of the matrix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tactic {
    /// `TA0002`.
    pub id: &'static str,
    /// `execution`, as Sigma tags and STIX kill-chain phases spell it.
    pub shortname: &'static str,
    /// `Execution`.
    pub name: &'static str,
    /// Position in the kill chain (0 = reconnaissance).
    pub order: usize,
}

/// A technique or sub-technique.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Technique {
    /// `T1059` or `T1059.001`.
    pub id: &'static str,
    /// `PowerShell`.
    pub name: &'static str,
    /// The parent technique of a sub-technique.
    pub parent: Option<&'static str>,
    /// Tactic shortnames.
    pub tactics: Vec<&'static str>,
    /// `Windows`, `Linux`, `macOS`...
    pub platforms: Vec<&'static str>,
}

impl Technique {
    /// True for `Txxxx.yyy`.
    pub fn is_subtechnique(&self) -> bool {
        self.parent.is_some()
    }
}

/// The whole catalog.
#[derive(Debug)]
pub struct Catalog {
    tactics: Vec<Tactic>,
    techniques: Vec<Technique>,
    by_id: HashMap<&'static str, usize>,
    /// v19's Stealth and Defense Impairment, in Defense Evasion's place in the kill chain.
    v19_tactics: Vec<Tactic>,
    /// v19's renumbered techniques, described from their v18 predecessors.
    v19: Vec<Technique>,
}

/// A parsed ATT&CK tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tag {
    /// A technique or sub-technique id, upper-cased (`T1059.001`).
    Technique(String),
    /// A tactic shortname (`execution`).
    Tactic(String),
    /// A group or software id (`G0016`, `S0154`): valid ATT&CK, not a behaviour.
    Other(String),
}

/// Reads a Sigma-style tag (`attack.t1059.001`, `attack.execution`, `attack.g0016`); `None` for tags of
/// other namespaces (`cve.2021-44228`, `detection.threat-hunting`).
pub fn parse_tag(tag: &str) -> Option<Tag> {
    let rest = tag.trim().strip_prefix("attack.")?;
    let upper = rest.to_ascii_uppercase();
    if upper.strip_prefix("DS").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) {
        return Some(Tag::Other(upper)); // a data source (DS0005)
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut parts = upper.get(1..).unwrap_or_default().splitn(2, '.');
    let head = parts.next().unwrap_or_default();
    // A technique id whose `t` was left out (`attack.1136.001`, as some rule sets write it).
    let (bare_head, bare_sub) = upper.split_once('.').unwrap_or((&upper, ""));
    if bare_head.len() == 4
        && digits(bare_head)
        && (bare_sub.is_empty() || (bare_sub.len() == 3 && digits(bare_sub)))
    {
        return Some(Tag::Technique(format!("T{upper}")));
    }
    match upper.as_bytes().first() {
        Some(b'T') if digits(head) && parts.next().is_none_or(digits) => Some(Tag::Technique(upper)),
        Some(b'G' | b'S' | b'M' | b'C' | b'D') if digits(head) => Some(Tag::Other(upper)),
        _ => Some(Tag::Tactic(rest.to_ascii_lowercase().replace('_', "-"))),
    }
}

/// The embedded catalog.
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::parse(TABLE))
}

impl Catalog {
    fn parse(text: &'static str) -> Self {
        let mut tactics = Vec::new();
        let mut techniques = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let cols: Vec<&'static str> = line.split('\t').collect();
            match cols.as_slice() {
                ["tactic", id, short, name] => {
                    tactics.push(Tactic { id, shortname: short, name, order: tactics.len() });
                }
                ["technique", id, name, parent, tactics_col, platforms] => techniques.push(Technique {
                    id,
                    name,
                    parent: (!parent.is_empty()).then_some(*parent),
                    tactics: tactics_col.split(',').filter(|s| !s.is_empty()).collect(),
                    platforms: platforms.split(',').filter(|s| !s.is_empty()).collect(),
                }),
                _ => panic!("malformed line in the embedded ATT&CK table: {line:?}"),
            }
        }
        let by_id = techniques.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
        let mut c = Self { tactics, techniques, by_id, v19_tactics: Vec::new(), v19: Vec::new() };
        c.add_v19();
        c
    }

    /// The v19 tactics and techniques of the crosswalk: a technique takes its predecessor's
    /// platforms, and its tactics with Defense Evasion's successors beside it.
    fn add_v19(&mut self) {
        let cw = crosswalk::crosswalk();
        for t in cw.tactics() {
            let order = self.tactic(t.splits).map_or(usize::MAX, |s| s.order);
            self.v19_tactics.push(Tactic { id: t.id, shortname: t.shortname, name: t.name, order });
        }
        for id in cw.v19_ids() {
            let Some(pred) = cw.predecessor(id).and_then(|p| self.technique(p)).cloned() else { continue };
            let mut tactics = pred.tactics.clone();
            tactics.extend(cw.v19_tactics(pred.id).into_iter().flatten());
            let name = match cw.name(id) {
                "" => pred.name,
                n => n,
            };
            let parent = id.split_once('.').map(|(p, _)| p);
            self.v19.push(Technique { id, name, parent, tactics, platforms: pred.platforms });
        }
    }

    /// Tactics in kill-chain order.
    pub fn tactics(&self) -> &[Tactic] {
        &self.tactics
    }

    /// Techniques and sub-techniques, by id.
    pub fn techniques(&self) -> &[Technique] {
        &self.techniques
    }

    /// A technique or sub-technique by id (`T1059.001`; case-insensitive).
    pub fn technique(&self, id: &str) -> Option<&Technique> {
        let id = id.to_ascii_uppercase();
        match self.by_id.get(id.as_str()) {
            Some(&i) => Some(&self.techniques[i]),
            None => self.v19.iter().find(|t| t.id == id),
        }
    }

    /// A tactic by shortname (`credential-access`), id (`TA0006`) or name (`Credential Access`).
    pub fn tactic(&self, key: &str) -> Option<&Tactic> {
        let k = key.trim();
        let is = |t: &&Tactic| {
            t.shortname.eq_ignore_ascii_case(k)
                || t.id.eq_ignore_ascii_case(k)
                || t.name.eq_ignore_ascii_case(k)
                || t.shortname.replace('-', "_").eq_ignore_ascii_case(k)
        };
        self.tactics.iter().find(is).or_else(|| self.v19_tactics.iter().find(is))
    }

    /// The tactics of a technique; a sub-technique inherits its parent's when it lists none.
    pub fn tactics_of(&self, id: &str) -> Vec<&Tactic> {
        let Some(t) = self.technique(id) else { return Vec::new() };
        let names = match (t.tactics.is_empty(), t.parent.and_then(|p| self.technique(p))) {
            (true, Some(parent)) => &parent.tactics,
            _ => &t.tactics,
        };
        names.iter().filter_map(|n| self.tactic(n)).collect()
    }

    /// Whether a parsed tag names something the catalog knows.
    pub fn resolve(&self, tag: &Tag) -> bool {
        match tag {
            Tag::Technique(id) => self.technique(id).is_some(),
            Tag::Tactic(name) => self.tactic(name).is_some(),
            Tag::Other(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v18_catalog_has_its_published_counts() {
        // ATT&CK Enterprise v18 as MITRE publishes it: 14 tactics, 216 techniques, 475 sub-techniques.
        let c = catalog();
        assert_eq!(c.tactics().len(), 14);
        assert_eq!(c.techniques().iter().filter(|t| !t.is_subtechnique()).count(), 216);
        assert_eq!(c.techniques().iter().filter(|t| t.is_subtechnique()).count(), 475);
        let order: Vec<&str> = c.tactics().iter().map(|t| t.shortname).collect();
        assert_eq!(order.first(), Some(&"reconnaissance"));
        assert_eq!(order.last(), Some(&"impact"));
        let pos = |s: &str| order.iter().position(|o| *o == s).unwrap();
        assert!(
            pos("initial-access") < pos("execution") && pos("lateral-movement") < pos("command-and-control")
        );
        // Every sub-technique's parent exists, and every tactic a technique names is a tactic.
        for t in c.techniques() {
            if let Some(p) = t.parent {
                assert!(c.technique(p).is_some_and(|p| !p.is_subtechnique()), "{}", t.id);
                assert!(t.id.starts_with(p), "{}", t.id);
            }
            assert!(!c.tactics_of(t.id).is_empty(), "{} has no tactic", t.id);
        }
    }

    #[test]
    fn lookups_the_scenario_needs() {
        let c = catalog();
        assert_eq!(c.technique("T1486").map(|t| t.name), Some("Data Encrypted for Impact"));
        assert_eq!(c.technique("t1059.001").map(|t| t.name), Some("PowerShell"));
        assert_eq!(c.technique("T1059.001").and_then(|t| t.parent), Some("T1059"));
        assert_eq!(c.technique("T1190").map(|t| t.tactics.clone()), Some(vec!["initial-access"]));
        assert_eq!(c.tactic("TA0040").map(|t| t.shortname), Some("impact"));
        assert_eq!(c.tactic("Credential Access").map(|t| t.id), Some("TA0006"));
        assert_eq!(c.tactics_of("T1105").iter().map(|t| t.id).collect::<Vec<_>>(), vec!["TA0011"]);
        assert!(c.technique("T9999").is_none());
    }

    #[test]
    fn v19_ids_and_tactics_resolve_beside_v18() {
        let c = catalog();
        assert!(c.resolve(&parse_tag("attack.t1685").unwrap()));
        assert!(c.resolve(&parse_tag("attack.t1686.003").unwrap()));
        assert!(c.resolve(&parse_tag("attack.stealth").unwrap()));
        assert!(c.resolve(&parse_tag("attack.defense-impairment").unwrap()));
        let t = c.technique("t1685.005").unwrap();
        assert_eq!((t.name, t.parent), ("Clear Windows Event Logs", Some("T1685")));
        assert!(t.platforms.contains(&"Windows"));
        let tactics: Vec<&str> = c.tactics_of("T1685.005").iter().map(|t| t.shortname).collect();
        assert_eq!(tactics, ["defense-evasion", "defense-impairment"], "both versions' tactics");
        // The matrix stays v18's.
        assert!(c.techniques().iter().all(|t| t.id != "T1685"));
        assert_eq!(c.tactics().len(), 14);
        assert_eq!(
            c.tactic("defense-impairment").map(|t| t.order),
            c.tactic("defense-evasion").map(|t| t.order)
        );
    }

    #[test]
    fn sigma_tags_parse_and_resolve() {
        let c = catalog();
        assert_eq!(parse_tag("attack.t1059.001"), Some(Tag::Technique("T1059.001".into())));
        assert_eq!(parse_tag("attack.execution"), Some(Tag::Tactic("execution".into())));
        assert_eq!(parse_tag("attack.credential_access"), Some(Tag::Tactic("credential-access".into())));
        assert_eq!(parse_tag("attack.g0016"), Some(Tag::Other("G0016".into())));
        assert_eq!(parse_tag("attack.ds0005"), Some(Tag::Other("DS0005".into())));
        // A technique id written without its `t`.
        assert_eq!(parse_tag("attack.1136.001"), Some(Tag::Technique("T1136.001".into())));
        assert_eq!(parse_tag("attack.11136.001"), Some(Tag::Tactic("11136.001".into())));
        assert_eq!(parse_tag("cve.2021-44228"), None);
        assert!(c.resolve(&parse_tag("attack.t1486").unwrap()));
        assert!(c.resolve(&parse_tag("attack.defense-evasion").unwrap()));
        assert!(!c.resolve(&parse_tag("attack.t1999").unwrap()), "unknown technique ids are reported");
        assert!(!c.resolve(&parse_tag("attack.t1059.999").unwrap()));
        assert!(!c.resolve(&parse_tag("attack.no-such-tactic").unwrap()));
    }
}
