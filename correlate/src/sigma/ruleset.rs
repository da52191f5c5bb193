//! Rule sets: many rules matched against each event, cheaply.
//!
//! - Rules are grouped by logsource (their pipeline conditions), so an event is tested once per
//!   distinct logsource and only the groups it belongs to go further. Conditions that are one exact
//!   text (a channel, an event id) are decided by one lookup per field and event.
//! - Within a group, each rule's necessary literals ([`super::prefilter`]) are compiled into one
//!   Aho-Corasick automaton per field, matched exactly on the ASCII-lower-cased text after a SIMD
//!   (Teddy) search has said whether any literal occurs at all. A literal from an exact value,
//!   prefix or suffix counts only where its pattern needs it. Only the rules whose literals
//!   occurred, plus those that have none, run their detection.
//! - An event that lists its fields is read once into slots (one per field name any rule reads),
//!   and rules read the slots instead of looking names up.

use super::event::{Event, Field, Val};
use super::prefilter::{self, Anchor, Place};
use super::rule::Rule;
use super::value::{Pattern, ValueTest};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

/// Rules grouped by logsource, with the literal prefilter.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// The fields the logsource conditions read, each read once per event for every group.
    gate_fields: Vec<Field>,
    /// The distinct logsource conditions: (index into `gate_fields`, test), each tested at most
    /// once per event however many groups share it.
    gate_tests: Vec<(usize, ValueTest)>,
    /// Per gate field: its lower-cased value -> the gate tests that value meets, for the tests
    /// that are one exact ASCII text (a channel, an event id); `exact[t]` marks those tests,
    /// decided by one lookup per event instead of a comparison each.
    gate_index: Vec<NameMap<Vec<usize>>>,
    exact: Vec<bool>,
    groups: Vec<Group>,
    /// Every field name a rule reads (its own and the pipeline's target) -> its slot: an event
    /// that lists its fields is read once into slots, and rules read the slots.
    slots: NameMap<u32>,
}

/// The rules of one logsource.
#[derive(Clone, Debug)]
struct Group {
    /// The logsource's conditions (indices into `gate_tests`).
    gate: Vec<usize>,
    /// Every rule of the group, in rule order.
    members: Vec<usize>,
    /// Rules with no necessary literal: always evaluated.
    always: Vec<usize>,
    /// One automaton per field (or over every string, for keywords).
    scans: Vec<Scan>,
}

/// Field name -> value, hashed with FNV-1a (field names are short; SipHash costs more than the
/// lookup saves).
type NameMap<V> = std::collections::HashMap<String, V, schemas::hash::FnvBuild>;

/// An event's fields by slot: each field a rule reads, looked up once per event (for events that
/// list their fields, [`Event::each_field`]); other reads go to the event.
struct Listed<'e> {
    event: &'e dyn Event,
    /// Slot -> 1 + index into `vals` (0: not in the event).
    at: Vec<u32>,
    vals: Vec<Val<'e>>,
}

impl<'e> Listed<'e> {
    fn new(slots: &NameMap<u32>, event: &'e dyn Event) -> Option<Self> {
        // Allocated at the first field, so an event that cannot list its fields costs nothing.
        let (mut at, mut vals) = (Vec::new(), Vec::new());
        let listed = event.each_field(&mut |name, value| {
            if let Some(&slot) = slots.get(name) {
                if at.is_empty() {
                    at = vec![0u32; slots.len()];
                }
                vals.push(value);
                at[slot as usize] = vals.len() as u32;
            }
        });
        if !listed {
            return None;
        }
        if at.is_empty() {
            at = vec![0u32; slots.len()];
        }
        Some(Self { event, at, vals })
    }
}

impl Event for Listed<'_> {
    fn get(&self, field: &Field) -> Val<'_> {
        let Some((own, target)) = field.slots else {
            return self.event.get(field);
        };
        // As the event itself reads: the rule's name first, then the target.
        match self.at[own as usize] {
            0 => match self.at[target as usize] {
                0 => Val::Missing,
                i => self.vals[i as usize - 1].clone(),
            },
            i => self.vals[i as usize - 1].clone(),
        }
    }

    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.event.any_string(f)
    }
}

thread_local! {
    /// A scan's text, lower-cased.
    static LOWER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The literals needed in one place by the rules of a group.
#[derive(Clone, Debug)]
struct Scan {
    /// The field (`None`: every string of the event).
    field: Option<Field>,
    automaton: AhoCorasick,
    /// A packed (Teddy) searcher for the same literals, when there are few enough of them: it finds
    /// whether any occurs several times faster than the automaton, which must find all of them.
    quick: Option<aho_corasick::packed::Searcher>,
    /// The shortest literal's length, in bytes.
    shortest: usize,
    /// Per literal (pattern id): the rules that need it, and where in the text.
    owners: Vec<Vec<(Anchor, usize)>>,
}

impl Scan {
    /// Adds the rules whose literals occur in `value` to `out`.
    fn hits_in(&self, value: &Val<'_>, out: &mut Vec<usize>) {
        value.any_text(&mut |s: &str| self.scan(s, out));
    }

    /// Adds the rules whose literals occur in `s` to `out`; returns false (to visit every text).
    fn scan(&self, s: &str, out: &mut Vec<usize>) -> bool {
        // A text shorter than every literal holds none (lower-casing keeps an ASCII text's length).
        if s.len() < self.shortest && s.is_ascii() {
            return false;
        }
        // The automaton holds the literals ASCII-lower-cased and matches exactly (which lets it use
        // its SIMD prefilters, which a case-insensitive automaton cannot); the text is lower-cased
        // the same way into a reused buffer.
        LOWER.with_borrow_mut(|buf| {
            buf.clear();
            buf.extend(s.bytes().map(|b| b.to_ascii_lowercase()));
            // Most texts hold none of the literals: a SIMD search for any of them rules those
            // out before the byte-at-a-time automaton runs.
            if self.quick.as_ref().is_some_and(|q| q.find(buf.as_slice()).is_none()) {
                return;
            }
            self.found(buf.as_slice(), out);
        });
        // Case-insensitive tests compare non-ASCII text in its lower-cased form.
        if !s.is_ascii() {
            self.found(s.to_lowercase().as_bytes(), out);
        }
        false
    }

    /// Adds the rules whose literals occur in `text`, where they must sit, to `out`.
    fn found(&self, text: &[u8], out: &mut Vec<usize>) {
        for m in self.automaton.find_overlapping_iter(text) {
            for &(anchor, rule) in &self.owners[m.pattern().as_usize()] {
                if anchor.holds(m.start(), m.end(), text.len()) {
                    out.push(rule);
                }
            }
        }
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
    pub fn new(mut rules: Vec<Rule>) -> Self {
        let mut slots = NameMap::<u32>::default();
        for r in rules.iter_mut().filter(|r| r.inapplicable.is_none()) {
            for f in &mut r.fields {
                let mut slot = |name: &str| {
                    let next = slots.len() as u32;
                    *slots.entry(name.to_owned()).or_insert(next)
                };
                f.slots = Some((slot(&f.sigma), slot(&f.target)));
            }
        }
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
        let mut gate_tests: Vec<(usize, ValueTest)> = Vec::new();
        let mut gate_keys: Vec<String> = Vec::new();
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
                        let key = format!("{slot} {t:?}");
                        gate_keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                            gate_keys.push(key);
                            gate_tests.push((slot, t.clone()));
                            gate_tests.len() - 1
                        })
                    })
                    .collect();
                Group::build(&rules, members, gate)
            })
            .collect();
        let mut gate_index = vec![NameMap::<Vec<usize>>::default(); gate_fields.len()];
        let mut exact = vec![false; gate_tests.len()];
        for (t, (slot, test)) in gate_tests.iter().enumerate() {
            if let ValueTest::Text { groups, all: false, cased: false, fast: None } = test {
                let texts: Option<Vec<&String>> = groups
                    .iter()
                    .flatten()
                    .map(|p| match p {
                        Pattern::Exact(x) if x.is_ascii() => Some(x),
                        _ => None,
                    })
                    .collect();
                if let Some(texts) = texts {
                    exact[t] = true;
                    for x in texts {
                        gate_index[*slot].entry(x.to_ascii_lowercase()).or_default().push(t);
                    }
                }
            }
        }
        Self { rules, gate_fields, gate_tests, gate_index, exact, groups, slots }
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
        self.each_candidate(event, &mut |i, event| {
            if self.rules[i].detection_holds(event) {
                out.push(i);
            }
        });
        out
    }

    /// The indices of the rules the prefilter lets through on `event` (a superset of those that
    /// fire): how selective the prefilter is.
    pub fn candidate_indices(&self, event: &dyn Event) -> Vec<usize> {
        let mut out = Vec::new();
        self.each_candidate(event, &mut |i, _| out.push(i));
        out
    }

    /// Calls `f` with each rule the prefilter lets through, in rule order within each group, and
    /// the event as rules should read it.
    fn each_candidate(&self, event: &dyn Event, f: &mut dyn FnMut(usize, &dyn Event)) {
        let listed = Listed::new(&self.slots, event);
        let event: &dyn Event = match &listed {
            Some(l) => l,
            None => event,
        };
        let mut candidates = Vec::new();
        let mut gate = self.gate(event);
        for g in &self.groups {
            if !g.gate.iter().all(|&t| gate(t)) {
                continue;
            }
            candidates.clear();
            candidates.extend_from_slice(&g.always);
            for s in &g.scans {
                s.hits(event, &mut candidates);
            }
            candidates.sort_unstable();
            candidates.dedup();
            for &i in &candidates {
                f(i, event);
            }
        }
    }

    /// The same answer as [`Self::matching_indices`] without the prefilter, and reading the event
    /// field by field: every rule of every logsource the event belongs to is evaluated. For
    /// checking the prefilter and the slots.
    pub fn matching_indices_unfiltered(&self, event: &dyn Event) -> Vec<usize> {
        let mut out = Vec::new();
        let mut gate = self.gate(event);
        for g in &self.groups {
            if g.gate.iter().all(|&t| gate(t)) {
                out.extend(g.members.iter().copied().filter(|&i| self.rules[i].detection_holds(event)));
            }
        }
        out
    }
}

impl RuleSet {
    /// The event's logsource conditions, each tested once when first asked.
    fn gate<'s>(&'s self, event: &'s dyn Event) -> impl FnMut(usize) -> bool + 's {
        let values: Vec<Val<'_>> = self.gate_fields.iter().map(|f| event.get(f)).collect();
        // Exact tests: false unless the field's value is one they name; non-ASCII text is left
        // to the tests themselves.
        let mut known: Vec<Option<bool>> = self.exact.iter().map(|&e| e.then_some(false)).collect();
        for (slot, v) in values.iter().enumerate() {
            v.any_text(&mut |text| {
                if !text.is_ascii() {
                    for (t, (s, _)) in self.gate_tests.iter().enumerate() {
                        if *s == slot && self.exact[t] {
                            known[t] = None;
                        }
                    }
                } else if let Some(ts) = self.gate_index[slot].get(text.to_ascii_lowercase().as_str()) {
                    for &t in ts {
                        known[t] = Some(true);
                    }
                }
                false
            });
        }
        move |t| {
            *known[t].get_or_insert_with(|| {
                let (slot, test) = &self.gate_tests[t];
                test.test(&values[*slot], &|_| None)
            })
        }
    }
}

impl Group {
    fn build(rules: &[Rule], members: Vec<usize>, gate: Vec<usize>) -> Self {
        let mut always = Vec::new();
        // (place, literal, anchor, rule), place as the field itself so rules share a scan.
        let mut keys: Vec<(Option<&Field>, String, Anchor, usize)> = Vec::new();
        for &i in &members {
            match prefilter::needs(&rules[i]) {
                None => always.push(i),
                Some(needs) => keys.extend(needs.into_iter().map(|(place, lit, anchor)| {
                    let field = match place {
                        Place::Field(f) => Some(&rules[i].fields[f]),
                        Place::Anywhere => None,
                    };
                    (field, lit.to_ascii_lowercase(), anchor, i)
                })),
            }
        }
        let mut places: Vec<Option<&Field>> = Vec::new();
        for (f, _, _, _) in &keys {
            if !places.contains(f) {
                places.push(*f);
            }
        }
        let mut scans = Vec::new();
        for place in places {
            let mut lits: Vec<String> = Vec::new();
            let mut owners: Vec<Vec<(Anchor, usize)>> = Vec::new();
            let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
            for (_, lit, anchor, rule) in keys.iter().filter(|(f, _, _, _)| *f == place) {
                let p = *index.entry(lit.as_str()).or_insert_with(|| {
                    lits.push(lit.clone());
                    owners.push(Vec::new());
                    lits.len() - 1
                });
                owners[p].push((*anchor, *rule));
            }
            for o in &mut owners {
                o.sort_unstable();
                o.dedup();
            }
            // A DFA: the fastest scan, and a group's literals are few enough for its memory.
            match AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&lits)
            {
                Ok(automaton) => {
                    let quick = aho_corasick::packed::Config::new().builder().extend(&lits).build();
                    let shortest = lits.iter().map(String::len).min().unwrap_or(0);
                    scans.push(Scan { field: place.cloned(), automaton, quick, shortest, owners })
                }
                // Too large to build: those rules are evaluated on every event instead.
                Err(_) => always.extend(owners.into_iter().flatten().map(|(_, rule)| rule)),
            }
        }
        always.sort_unstable();
        always.dedup();
        Self { gate, members, always, scans }
    }
}

#[cfg(test)]
#[path = "ruleset_tests.rs"]
mod tests;
