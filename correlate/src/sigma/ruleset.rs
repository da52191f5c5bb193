//! Rule sets: many rules matched against each event, cheaply.
//!
//! - Rules are grouped by logsource (their pipeline conditions), so an event is tested once per
//!   distinct logsource and only the groups it belongs to go further.
//! - Within a group, each rule's necessary literals ([`super::prefilter`]) are compiled into one
//!   Aho-Corasick automaton per field. An event's fields are scanned once, and only the rules whose
//!   literals occurred, plus those that have none, run their detection.

use super::event::{Event, Field, Val};
use super::prefilter::{self, Place};
use super::rule::Rule;
use super::value::ValueTest;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

/// Rules grouped by logsource, with the literal prefilter.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// The fields the logsource conditions read, each read once per event for every group.
    gate_fields: Vec<Field>,
    groups: Vec<Group>,
}

/// The rules of one logsource.
#[derive(Clone, Debug)]
struct Group {
    /// The logsource's conditions: (index into `gate_fields`, test).
    gate: Vec<(usize, ValueTest)>,
    /// Every rule of the group, in rule order.
    members: Vec<usize>,
    /// Rules with no necessary literal: always evaluated.
    always: Vec<usize>,
    /// One automaton per field (or over every string, for keywords).
    scans: Vec<Scan>,
    /// The field scans by the names an event may carry them under (the rule's name and the
    /// pipeline's target), for events that list their fields ([`Event::each_field`]).
    by_name: NameMap,
}

/// Field name -> scan indices, hashed with FNV-1a (field names are short; SipHash costs more than
/// the lookup saves).
type NameMap = std::collections::HashMap<String, Vec<usize>, std::hash::BuildHasherDefault<Fnv>>;

/// FNV-1a, for short keys.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// The literals needed in one place by the rules of a group.
#[derive(Clone, Debug)]
struct Scan {
    /// The field (`None`: every string of the event).
    field: Option<Field>,
    automaton: AhoCorasick,
    /// Per literal (pattern id): the rules that need it.
    owners: Vec<Vec<usize>>,
}

impl Scan {
    /// Adds the rules whose literals occur in `value` to `out`.
    fn hits_in(&self, value: &Val<'_>, out: &mut Vec<usize>) {
        value.any_text(&mut |s: &str| self.scan(s, out));
    }

    /// Adds the rules whose literals occur in `s` to `out`; returns false (to visit every text).
    fn scan(&self, s: &str, out: &mut Vec<usize>) -> bool {
        for m in self.automaton.find_overlapping_iter(s) {
            out.extend_from_slice(&self.owners[m.pattern().as_usize()]);
        }
        // Case-insensitive tests compare non-ASCII text in its lower-cased form.
        if !s.is_ascii() {
            for m in self.automaton.find_overlapping_iter(&s.to_lowercase()) {
                out.extend_from_slice(&self.owners[m.pattern().as_usize()]);
            }
        }
        false
    }

    /// Adds the rules whose literals occur in this place of `event` to `out`.
    fn hits(&self, event: &dyn Event, out: &mut Vec<usize>) {
        match &self.field {
            Some(f) => self.hits_in(&event.get(f), out),
            None => {
                event.any_string(&mut |s: &str| self.scan(s, out));
            }
        }
    }
}

/// How many rules the prefilter covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefilterStats {
    /// Rules evaluated only when one of their literals occurs.
    pub keyed: usize,
    /// Rules evaluated on every event of their logsource.
    pub always: usize,
    /// Distinct (logsource, field, literal) keys.
    pub literals: usize,
    /// Rules left out: their product is not one the pipeline's events come from.
    pub inapplicable: usize,
}

impl RuleSet {
    /// Groups `rules` by their logsource conditions and builds the prefilter.
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut keyed: Vec<(String, Vec<usize>)> = Vec::new();
        // Rules for products the pipeline's events never come from join no group.
        for (i, r) in rules.iter().enumerate().filter(|(_, r)| r.inapplicable.is_none()) {
            let key = r.gate_key();
            match keyed.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(i),
                None => keyed.push((key, vec![i])),
            }
        }
        let mut gate_fields: Vec<Field> = Vec::new();
        let groups = keyed
            .into_iter()
            .map(|(_, members)| {
                let first = &rules[members[0]];
                let gate = first
                    .gate
                    .iter()
                    .map(|(f, t)| {
                        let field = &first.fields[*f];
                        let slot = gate_fields.iter().position(|g| g == field).unwrap_or_else(|| {
                            gate_fields.push(field.clone());
                            gate_fields.len() - 1
                        });
                        (slot, t.clone())
                    })
                    .collect();
                Group::build(&rules, members, gate)
            })
            .collect();
        Self { rules, gate_fields, groups }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How many rules the prefilter covers.
    pub fn prefilter_stats(&self) -> PrefilterStats {
        let mut s = PrefilterStats {
            inapplicable: self.rules.iter().filter(|r| r.inapplicable.is_some()).count(),
            ..PrefilterStats::default()
        };
        for g in &self.groups {
            s.always += g.always.len();
            s.keyed += g.members.len() - g.always.len();
            s.literals += g.scans.iter().map(|sc| sc.owners.len()).sum::<usize>();
        }
        s
    }

    /// The rules that fire on `event`, in rule order within each logsource group.
    pub fn matching<'a>(&'a self, event: &dyn Event) -> Vec<&'a Rule> {
        self.matching_indices(event).into_iter().map(|i| &self.rules[i]).collect()
    }

    /// The indices of the rules that fire on `event`.
    pub fn matching_indices(&self, event: &dyn Event) -> Vec<usize> {
        let mut out = Vec::new();
        let mut candidates = Vec::new();
        let gate_values = self.gate_values(event);
        for g in &self.groups {
            if !g.gate_holds(&gate_values) {
                continue;
            }
            candidates.clear();
            candidates.extend_from_slice(&g.always);
            // Flat events list their fields: each present field goes to its scans, and absent
            // fields cost nothing. Others are looked up scan by scan.
            let listed = event.each_field(&mut |name, value| {
                for &i in g.by_name.get(name).map_or(&[][..], Vec::as_slice) {
                    g.scans[i].hits_in(&value, &mut candidates);
                }
            });
            for s in &g.scans {
                if !listed || s.field.is_none() {
                    s.hits(event, &mut candidates);
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
            out.extend(candidates.iter().copied().filter(|&i| self.rules[i].detection_holds(event)));
        }
        out
    }

    /// The same answer as [`Self::matching_indices`] without the prefilter: every rule of every
    /// logsource the event belongs to is evaluated. For checking the prefilter.
    pub fn matching_indices_unfiltered(&self, event: &dyn Event) -> Vec<usize> {
        let mut out = Vec::new();
        let gate_values = self.gate_values(event);
        for g in &self.groups {
            if g.gate_holds(&gate_values) {
                out.extend(g.members.iter().copied().filter(|&i| self.rules[i].detection_holds(event)));
            }
        }
        out
    }
}

impl RuleSet {
    fn gate_values<'e>(&self, event: &'e dyn Event) -> Vec<Val<'e>> {
        self.gate_fields.iter().map(|f| event.get(f)).collect()
    }
}

impl Group {
    fn gate_holds(&self, values: &[Val<'_>]) -> bool {
        self.gate.iter().all(|(slot, t)| t.test(&values[*slot], &|_| None))
    }

    fn build(rules: &[Rule], members: Vec<usize>, gate: Vec<(usize, ValueTest)>) -> Self {
        let mut always = Vec::new();
        // (place, literal, rule), place as the field itself so rules share a scan.
        let mut keys: Vec<(Option<&Field>, String, usize)> = Vec::new();
        for &i in &members {
            match prefilter::needs(&rules[i]) {
                None => always.push(i),
                Some(needs) => keys.extend(needs.into_iter().map(|(place, lit)| {
                    let field = match place {
                        Place::Field(f) => Some(&rules[i].fields[f]),
                        Place::Anywhere => None,
                    };
                    (field, lit.to_ascii_lowercase(), i)
                })),
            }
        }
        let mut places: Vec<Option<&Field>> = Vec::new();
        for (f, _, _) in &keys {
            if !places.contains(f) {
                places.push(*f);
            }
        }
        let mut scans = Vec::new();
        for place in places {
            let mut lits: Vec<String> = Vec::new();
            let mut owners: Vec<Vec<usize>> = Vec::new();
            let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
            for (_, lit, rule) in keys.iter().filter(|(f, _, _)| *f == place) {
                let p = *index.entry(lit.as_str()).or_insert_with(|| {
                    lits.push(lit.clone());
                    owners.push(Vec::new());
                    lits.len() - 1
                });
                owners[p].push(*rule);
            }
            for o in &mut owners {
                o.sort_unstable();
                o.dedup();
            }
            // A DFA: the fastest scan, and a group's literals are few enough for its memory.
            match AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&lits)
            {
                Ok(automaton) => scans.push(Scan { field: place.cloned(), automaton, owners }),
                // Too large to build: those rules are evaluated on every event instead.
                Err(_) => always.extend(owners.into_iter().flatten()),
            }
        }
        always.sort_unstable();
        always.dedup();
        let mut by_name = NameMap::default();
        for (i, scan) in scans.iter().enumerate() {
            if let Some(f) = &scan.field {
                by_name.entry(f.sigma.clone()).or_default().push(i);
                if f.target != f.sigma {
                    by_name.entry(f.target.clone()).or_default().push(i);
                }
            }
        }
        Self { gate, members, always, scans, by_name }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigma::{FlatEvent, Pipeline, load};
    use serde_json::json;

    fn rules() -> Vec<Rule> {
        let docs = [
            ("cmd", "  s:\n    Image|endswith: '\\cmd.exe'\n    CommandLine|contains: '/c'\n  condition: s"),
            ("enc", "  s:\n    CommandLine|contains|windash: '-enc'\n  condition: s"),
            ("b64", "  s:\n    CommandLine|base64offset|contains: 'http://'\n  condition: s"),
            ("kw", "  keywords:\n    - 'mimikatz'\n  condition: keywords"),
            ("not", "  f:\n    Image|endswith: '\\svchost.exe'\n  condition: not f"),
            ("uni", "  s:\n    CommandLine|contains: 'ÄRGER'\n  condition: s"),
            ("cased", "  s:\n    CommandLine|contains|cased: 'SeDebug'\n  condition: s"),
            ("glob", "  s:\n    TargetFilename: '*\\temp\\\\*.ps1'\n  condition: s"),
            ("num", "  s:\n    ProcessId|gt: 1000\n  condition: s"),
            ("pid", "  s:\n    ProcessId: 4242\n  condition: s"),
            ("zero", "  s:\n    ProcessId: 0\n  condition: s"),
            ("int", "  s:\n    EventID: 4688\n    NewProcessName|endswith: '\\whoami.exe'\n  condition: s"),
        ];
        // A rule for another product loads but never runs on Windows records.
        let linux = "title: lx\nid: lx\nlogsource: {product: linux, category: process_creation}\n\
                     detection:\n  s:\n    CommandLine|contains: 'whoami'\n  condition: s\n";
        let pipeline = Pipeline::windows_flat();
        docs.iter()
            .flat_map(|(id, d)| {
                let text = format!(
                    "title: {id}\nid: {id}\nlogsource: {{product: windows, category: process_creation}}\ndetection:\n{d}\n"
                );
                load(&text, &pipeline)
            })
            .chain(load(linux, &pipeline))
            .map(Result::unwrap)
            .collect()
    }

    fn ev(fields: serde_json::Value) -> FlatEvent {
        let mut m = json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1});
        m.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        FlatEvent(m.as_object().unwrap().clone())
    }

    #[test]
    fn the_prefilter_gives_the_same_matches_as_evaluating_every_rule() {
        let set = RuleSet::new(rules());
        let stats = set.prefilter_stats();
        assert_eq!((stats.keyed, stats.always), (10, 2), "`not` and `gt` rules cannot be keyed");
        assert_eq!(stats.inapplicable, 1, "the Linux rule");
        let lx = set.rules().iter().find(|r| r.id == "lx").unwrap();
        assert!(lx.inapplicable.as_deref().unwrap_or("").contains("\"linux\""), "{:?}", lx.inapplicable);
        let b64 = super::super::value::base64(b"xx http://evil/a.ps1");
        let cases = [
            (
                json!({"Image": "C:\\Windows\\System32\\CMD.EXE", "CommandLine": "cmd /c whoami"}),
                vec!["cmd", "not"],
            ),
            (
                json!({"Image": "C:\\x\\svchost.exe", "CommandLine": "powershell \u{2013}EnC abc"}),
                vec!["enc"],
            ),
            (
                json!({"Image": "C:\\x\\svchost.exe", "CommandLine": format!("powershell -e {b64}")}),
                vec!["b64"],
            ),
            (json!({"Image": "C:\\x\\svchost.exe", "User": "MIMIKATZ"}), vec!["kw"]),
            (json!({"Image": "C:\\x\\svchost.exe", "CommandLine": "echo ärger"}), vec!["uni"]),
            (json!({"Image": "C:\\x\\svchost.exe", "CommandLine": "x sedebug"}), vec![]),
            (json!({"Image": "C:\\x\\svchost.exe", "CommandLine": "x SeDebugPrivilege"}), vec!["cased"]),
            (
                json!({"Image": "C:\\x\\svchost.exe", "TargetFilename": "C:\\Users\\a\\TEMP\\x.PS1"}),
                vec!["glob"],
            ),
            (json!({"Image": "C:\\x\\svchost.exe", "ProcessId": 4242}), vec!["num", "pid"]),
            (json!({"Image": "C:\\x\\svchost.exe", "ProcessId": " 04242"}), vec!["num", "pid"]),
            (json!({"Image": "C:\\x\\svchost.exe", "ProcessId": "-0"}), vec!["zero"]),
        ];
        for (fields, want) in cases {
            let e = ev(fields.clone());
            let got: Vec<&str> = set.matching(&e).iter().map(|r| r.id.as_str()).collect();
            assert_eq!(got, want, "{fields}");
            assert_eq!(set.matching_indices(&e), set.matching_indices_unfiltered(&e), "{fields}");
        }
        // Another logsource's gate keeps every rule out.
        let other = FlatEvent(
            json!({"Channel": "Security", "EventID": 4688, "CommandLine": "mimikatz"})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert!(set.matching_indices(&other).is_empty());
    }
}
