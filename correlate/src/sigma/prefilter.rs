//! The literal prefilter: for each rule, a set of literals one of which must occur in a given field
//! (or, for keyword searches, in any string) whenever the rule can fire. A rule set scans each event's
//! fields once with one Aho-Corasick automaton per field and evaluates only the rules whose literals
//! occurred, plus the rules that have no such set (a `not`-only condition, numbers, `exists`,
//! regexes).
//!
//! The derivation is conservative by construction: a selection's literals are those of one of its
//! field tests (all must hold, so any one is necessary); a list of alternatives needs the union of
//! theirs; `not` needs nothing. The matcher tests case-insensitively (ASCII, and the lower-cased form
//! of non-ASCII text), which is a superset of both the cased and uncased tests.

use super::condition::Cond;
use super::rule::{Rule, Selection};
use super::value::ValueTest;

/// Where a needed literal must occur.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Place {
    /// One of the rule's fields (an index into its field table).
    Field(usize),
    /// Any string of the event (keyword searches).
    Anywhere,
}

/// Where in a text a needed literal must sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Anchor {
    /// The whole text (an exact value).
    Whole,
    /// At its start.
    Start,
    /// At its end.
    End,
    /// Anywhere.
    Anywhere,
}

impl Anchor {
    /// Whether a literal found at `start..end` of a text `len` bytes long sits where it must.
    pub(super) fn holds(self, start: usize, end: usize, len: usize) -> bool {
        match self {
            Anchor::Whole => start == 0 && end == len,
            Anchor::Start => start == 0,
            Anchor::End => end == len,
            Anchor::Anywhere => true,
        }
    }
}

/// At least one of these literals occurs in its place, anchored as given, whenever the rule fires.
pub(super) type Needs = Vec<(Place, String, Anchor)>;

/// The rule's needs, or `None` when it can fire without any literal being present.
pub(super) fn needs(rule: &Rule) -> Option<Needs> {
    let sels: Vec<Option<Needs>> = rule.selections.iter().map(selection).collect();
    condition(&rule.condition, &sels)
}

fn condition(c: &Cond, sels: &[Option<Needs>]) -> Option<Needs> {
    match c {
        Cond::Sel(i) => sels.get(*i).cloned().flatten(),
        Cond::Not(_) => None,
        Cond::And(cs) => best(cs.iter().map(|c| condition(c, sels))),
        // `N of` needs at least one of them, like `or`.
        Cond::Or(cs) | Cond::AtLeast(_, cs) => union(cs.iter().map(|c| condition(c, sels))),
    }
}

fn selection(s: &Selection) -> Option<Needs> {
    match s {
        Selection::All(tests) => best(tests.iter().map(|(f, t)| test(Place::Field(*f), t))),
        Selection::Any(subs) => union(subs.iter().map(selection)),
        Selection::Keywords(t) => test(Place::Anywhere, t),
    }
}

fn test(place: Place, t: &ValueTest) -> Option<Needs> {
    let (groups, all) = match t {
        ValueTest::Text { groups, all, .. } => (groups, all),
        // A text equal to a non-negative integer as a number holds its decimal digits (leading
        // zeros, a sign and spaces aside); `-05` equals -5 without holding "-5".
        ValueTest::Int(n) if *n >= 0 => return Some(vec![(place, n.to_string(), Anchor::Anywhere)]),
        ValueTest::Bool(b) => return Some(vec![(place, b.to_string(), Anchor::Anywhere)]),
        _ => return None,
    };
    // One group (a Sigma value) matches when any of its patterns does: the union of their literals.
    let group = |g: &Vec<super::value::Pattern>| {
        g.iter()
            .map(|p| p.literal().map(|(l, a)| vec![(place, l.to_owned(), a)]))
            .collect::<Option<Vec<_>>>()
            .map(|v| {
                let mut v: Needs = v.into_iter().flatten().collect();
                v.sort_unstable();
                v.dedup();
                v
            })
    };
    if *all { best(groups.iter().map(group)) } else { union(groups.iter().map(group)) }
}

/// Every alternative is needed (any one may be the one that holds); `None` if any has no literal.
fn union(parts: impl Iterator<Item = Option<Needs>>) -> Option<Needs> {
    let mut out = Needs::new();
    for p in parts {
        out.extend(p?);
    }
    if out.is_empty() {
        return None;
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// Of several necessary conditions, the most selective: the longest shortest literal (up to 8
/// characters, past which any literal is rare), then the fewest alternatives.
fn best(parts: impl Iterator<Item = Option<Needs>>) -> Option<Needs> {
    let score = |n: &Needs| {
        let shortest = n.iter().map(|(_, l, _)| l.len()).min().unwrap_or(0).min(8);
        (shortest, std::cmp::Reverse(n.len()))
    };
    parts.flatten().filter(|n| !n.is_empty()).max_by_key(score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigma::{Pipeline, load};

    fn rule(detection: &str) -> Rule {
        let text = format!(
            "title: t\nid: x\nlogsource: {{product: windows, category: process_creation}}\ndetection:\n{detection}"
        );
        load(&text, &Pipeline::cordon_ecs()).remove(0).unwrap()
    }

    fn lits(r: &Rule) -> Option<Vec<String>> {
        needs(r).map(|n| n.into_iter().map(|(_, l, _)| l).collect())
    }

    #[test]
    fn and_takes_the_most_selective_test_and_or_takes_every_alternative() {
        let r = rule(
            "  sel:\n    Image|endswith: '\\cmd.exe'\n    CommandLine|contains: '/c'\n  condition: sel\n",
        );
        assert_eq!(lits(&r), Some(vec!["\\cmd.exe".to_owned()]));
        let r = rule(
            "  a:\n    Image|endswith: ['\\powershell.exe', '\\pwsh.exe']\n  b:\n    CommandLine|contains: 'mimikatz'\n  condition: a or b\n",
        );
        assert_eq!(
            lits(&r),
            Some(vec!["\\powershell.exe".to_owned(), "\\pwsh.exe".to_owned(), "mimikatz".to_owned()])
        );
    }

    #[test]
    fn rules_that_can_fire_without_a_literal_have_no_needs() {
        // A negation only, a number, a regex, an `exists`: each can hold with no literal present.
        for d in [
            "  f:\n    Image|endswith: '\\cmd.exe'\n  condition: not f\n",
            "  s:\n    ProcessId: -5\n  condition: s\n",
            "  s:\n    ProcessId|gt: 4\n  condition: s\n",
            "  s:\n    CommandLine|re: 'a.*b'\n  condition: s\n",
            "  s:\n    CommandLine|exists: true\n  condition: s\n",
            "  a:\n    Image|endswith: '\\cmd.exe'\n  b:\n    ProcessId|gt: 4\n  condition: a or b\n",
        ] {
            assert_eq!(lits(&rule(d)), None, "{d}");
        }
        // `and` with one literal test is still filtered on it.
        let r =
            rule("  a:\n    Image|endswith: '\\cmd.exe'\n  b:\n    ProcessId|gt: 4\n  condition: a and b\n");
        assert_eq!(lits(&r), Some(vec!["\\cmd.exe".to_owned()]));
    }

    #[test]
    fn integers_and_booleans_are_keyed_on_their_text() {
        let r = rule("  s:\n    EventID: 4625\n    LogonType: 3\n  condition: s\n");
        assert_eq!(lits(&r), Some(vec!["4625".to_owned()]));
    }

    #[test]
    fn keywords_and_all_values() {
        let r = rule("  keywords:\n    - 'jndi:ldap'\n    - 'jndi:rmi'\n  condition: keywords\n");
        let n = needs(&r).unwrap();
        assert!(n.iter().all(|(p, _, a)| *p == Place::Anywhere && *a == Anchor::Anywhere) && n.len() == 2);
        let r = rule("  s:\n    CommandLine|contains|all: ['-nop', 'hidden']\n  condition: s\n");
        assert_eq!(lits(&r), Some(vec!["hidden".to_owned()]), "`all`: any one value is necessary");
    }
}
