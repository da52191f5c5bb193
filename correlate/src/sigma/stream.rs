//! Streaming evaluation of Sigma correlation rules.
//!
//! Every event a referenced rule matches becomes an entry in its group (the `group-by` values; an
//! event that lacks one of them is left out, as a SQL `GROUP BY` over it would not count it in any
//! group but its own). A group keeps its entries in event-time order. After an entry goes in, every
//! window of `timespan` (both ends inclusive) that ends at it or at a later entry and holds it is
//! tested, so events that arrive late, out of order or in another batch count the same as events in
//! order. When a window satisfies the rule the correlation fires with every event in the window as
//! evidence, and those entries are consumed: the next firing needs a fresh set of events.
//!
//! - `event_count`: distinct events in the window.
//! - `value_count`: distinct values (tuples, for several fields) in the window.
//! - `temporal`: distinct referenced rules matched in the window (all of them by default).
//! - `temporal_ordered`: the rules matched in the listed order within the window; every step is
//!   checked, and ties in time keep arrival order.
//!
//! Group-by applies to every type (the pitfall where temporal rules ignore it). A correlation that
//! fires feeds the correlations that reference it (chains), with its own group values.
//!
//! State is bounded: a group drops entries older than its newest minus the timespan (an event that
//! old is counted as late and left out), groups with nothing recent are pruned, and a group holds
//! at most [`MAX_ENTRIES`]. The engine is deterministic for a given order of events, and an event
//! seen twice (a redelivery, a replay after restart) is counted once.

use super::correlation::{Correlation, Kind};
use super::event::{Event, Field};
use super::rule::Level;
use std::collections::{HashMap, VecDeque};
use std::ops::RangeBounds;

/// The most entries one group keeps (the oldest go first, counted as dropped).
pub const MAX_ENTRIES: usize = 100_000;

/// Where a step of a correlation reads from.
#[derive(Clone, Debug)]
pub(super) enum Source {
    /// A detection rule (index in the rule set).
    Rule(usize),
    /// Another correlation (index in the correlation list).
    Correlation(usize),
}

/// How one group-by or value field is read for one step.
#[derive(Clone, Debug)]
pub(super) enum Pick {
    /// From the matched event.
    Field(Field),
    /// From the inner correlation's group values (index).
    Inner(usize),
}

/// A referenced rule with the fields read from its events.
#[derive(Clone, Debug)]
pub(super) struct Step {
    pub(super) source: Source,
    pub(super) group: Vec<Pick>,
    pub(super) values: Vec<Pick>,
}

/// A correlation with its references resolved.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The rule as written.
    pub rule: Correlation,
    /// Its level (the rule's, else the highest of the rules it references).
    pub level: Level,
    pub(super) steps: Vec<Step>,
}

/// A correlation that held.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Fire {
    /// Index of the correlation.
    #[serde(skip)]
    pub correlation: usize,
    /// The group: (`group-by` name, value).
    pub group: Vec<(String, String)>,
    /// Events (or distinct values, or distinct rules) counted.
    pub count: u64,
    /// Earliest event time in the window (µs).
    pub first: i64,
    /// Latest event time in the window (µs).
    pub last: i64,
    /// The ids of the events in the window.
    pub evidence: Vec<String>,
    /// Titles of the rules that matched in the window.
    pub rules: Vec<String>,
}

/// Counters for what the engine left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Matched events without one of the `group-by` (or `value_count`) fields.
    pub ungrouped: u64,
    /// Events older than their group's window.
    pub late: u64,
    /// Events already counted (redeliveries, replays).
    pub duplicates: u64,
    /// Entries dropped to keep a group under [`MAX_ENTRIES`].
    pub dropped: u64,
    /// Times a correlation fired.
    pub fired: u64,
}

#[derive(Clone, Debug)]
struct Entry {
    time: i64,
    step: usize,
    value: Option<String>,
    evidence: Vec<String>,
}

#[derive(Clone, Debug, Default)]
struct Group {
    /// In event-time order (ties in arrival order), none older than `newest` minus the timespan.
    entries: VecDeque<Entry>,
    /// Keys of the events counted, with their time. Keys older than the window are forgotten at
    /// least every half timespan: an event that old is late before it is looked up here.
    seen: HashMap<String, i64>,
    /// The horizon `seen` was last pruned to.
    seen_pruned: i64,
    newest: i64,
    /// How many entries hold each value (only `value_count` entries have one) and each step: a
    /// `value_count` or `temporal` window that holds the whole group is measured from these
    /// without going through it.
    values: HashMap<String, u32>,
    steps: HashMap<usize, u32>,
}

#[derive(Clone, Debug, Default)]
struct State {
    groups: HashMap<Vec<String>, Group>,
    newest: i64,
    inserts: u64,
}

/// The state of every correlation of one rule set over one stream of events (one tenant).
#[derive(Clone, Debug, Default)]
pub struct Correlator {
    states: Vec<State>,
    stats: Stats,
}

/// What a matched event or an inner firing brings to one correlation.
struct Input<'a> {
    time: i64,
    key: String,
    evidence: &'a [String],
    read: &'a dyn Fn(&Pick) -> Option<String>,
}

impl Correlator {
    /// Empty state for `n` correlations.
    pub fn new(n: usize) -> Self {
        Self { states: vec![State::default(); n], stats: Stats::default() }
    }

    /// What was left out so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Entries held over all groups (for the memory gauge).
    pub fn entries(&self) -> usize {
        self.states.iter().flat_map(|s| s.groups.values()).map(|g| g.entries.len()).sum()
    }

    /// Panics unless every group's tallies count exactly its entries' values and steps (tests).
    #[cfg(test)]
    pub(super) fn check_tallies(&self) {
        for g in self.states.iter().flat_map(|s| s.groups.values()) {
            let (mut values, mut steps) = (HashMap::new(), HashMap::new());
            for e in &g.entries {
                if let Some(v) = &e.value {
                    *values.entry(v.clone()).or_insert(0u32) += 1;
                }
                *steps.entry(e.step).or_insert(0u32) += 1;
            }
            assert_eq!((&g.values, &g.steps), (&values, &steps), "tallies against the entries");
            assert!(g.entries.iter().zip(g.entries.iter().skip(1)).all(|(a, b)| a.time <= b.time));
        }
    }

    /// Feeds one event that the detection rules `hits` (indices) matched; returns what fired.
    pub fn observe(
        &mut self,
        set: &[Resolved],
        routes: &Routes,
        event: &dyn Event,
        time: i64,
        event_id: &str,
        hits: &[usize],
    ) -> Vec<Fire> {
        if self.states.len() != set.len() {
            self.states.resize(set.len(), State::default());
        }
        let mut out = Vec::new();
        let evidence = [event_id.to_owned()];
        for &rule in hits {
            for &(c, step) in routes.by_rule.get(&rule).map(Vec::as_slice).unwrap_or_default() {
                let read = |p: &Pick| match p {
                    Pick::Field(f) => {
                        let mut s = None;
                        event.get(f).any_text(&mut |t| {
                            s = Some(t.to_owned());
                            true
                        });
                        s.filter(|s| !s.is_empty())
                    }
                    Pick::Inner(_) => None,
                };
                let input = Input { time, key: event_id.to_owned(), evidence: &evidence, read: &read };
                self.feed(set, routes, c, step, &input, &mut out);
            }
        }
        out
    }

    /// Feeds one step's input to correlation `c`; what fires goes to `out`, after what it fired
    /// in the correlations that reference it (chains).
    fn feed(
        &mut self,
        set: &[Resolved],
        routes: &Routes,
        c: usize,
        step: usize,
        input: &Input,
        out: &mut Vec<Fire>,
    ) {
        let corr = &set[c];
        let Some((group, value)) = self.keys(corr, step, input) else { return };
        let Some((count, window)) = self.record(c, corr, step, &group, value, input) else { return };
        self.stats.fired += 1;
        let fire = fire_of(routes, c, corr, &group, count, &window, input.time);
        self.chain(set, routes, &fire, &group, out);
        out.push(fire);
    }

    /// The input's group (and for value counts its value); `None`, counted, when it lacks a field.
    fn keys(&mut self, corr: &Resolved, step: usize, input: &Input) -> Option<(Vec<String>, Option<String>)> {
        let s = &corr.steps[step];
        let read_all =
            |picks: &[Pick]| picks.iter().map(|p| (input.read)(p)).collect::<Option<Vec<String>>>();
        let keys = read_all(&s.group).and_then(|group| match corr.rule.kind {
            Kind::ValueCount { .. } => read_all(&s.values).map(|v| (group, Some(v.join("\u{1f}")))),
            _ => Some((group, None)),
        });
        if keys.is_none() {
            self.stats.ungrouped += 1;
        }
        keys
    }

    /// Puts the input into its group's window (unless seen before or too late, both counted) and
    /// tests the windows that hold it; the count and the entries when one fired.
    fn record(
        &mut self,
        c: usize,
        corr: &Resolved,
        step: usize,
        group: &[String],
        value: Option<String>,
        input: &Input,
    ) -> Option<(u64, Vec<Entry>)> {
        let (span, kind) = (corr.rule.timespan, &corr.rule.kind);
        let state = &mut self.states[c];
        state.newest = state.newest.max(input.time);
        state.inserts += 1;
        if state.inserts.is_multiple_of(4096) {
            let horizon = state.newest.saturating_sub(span);
            state.groups.retain(|_, g| g.newest >= horizon);
        }
        if !state.groups.contains_key(group) {
            state.groups.insert(group.to_vec(), Group::default());
        }
        let g = state.groups.get_mut(group).expect("inserted above");
        if input.time < g.newest.saturating_sub(span) {
            self.stats.late += 1;
            return None;
        }
        // Counting types count an event once whichever of the rules matched it; temporal types
        // count it once per rule.
        let key = match kind {
            Kind::Temporal | Kind::TemporalOrdered => format!("{step}\u{1f}{}", input.key),
            _ => input.key.clone(),
        };
        if g.seen.contains_key(&key) {
            self.stats.duplicates += 1;
            return None;
        }
        g.seen.insert(key, input.time);
        g.advance(input.time, span);
        let entry = Entry { time: input.time, step, value, evidence: input.evidence.to_vec() };
        let mut at = Some(g.insert(entry));
        if g.entries.len() > MAX_ENTRIES {
            let excess = g.entries.len() - MAX_ENTRIES;
            g.forget(..excess);
            self.stats.dropped += excess as u64;
            at = at.and_then(|a| a.checked_sub(excess));
        }
        at.and_then(|at| evaluate(corr, g, at))
    }

    /// Feeds a fired correlation to the correlations that reference it, with its group values.
    fn chain(
        &mut self,
        set: &[Resolved],
        routes: &Routes,
        fire: &Fire,
        group: &[String],
        out: &mut Vec<Fire>,
    ) {
        let c = fire.correlation;
        for &(outer, step) in routes.by_correlation.get(c).map(Vec::as_slice).unwrap_or_default() {
            let read = |p: &Pick| match p {
                Pick::Inner(i) => group.get(*i).cloned(),
                Pick::Field(_) => None,
            };
            let inner = Input {
                time: fire.last,
                key: format!("{c}\u{1f}{}", fire.evidence.join(",")),
                evidence: &fire.evidence,
                read: &read,
            };
            self.feed(set, routes, outer, step, &inner, out);
        }
    }
}

/// What a fired window of correlation `c` reports: its events (each once) and the titles of the
/// rules they matched.
fn fire_of(
    routes: &Routes,
    c: usize,
    corr: &Resolved,
    group: &[String],
    count: u64,
    window: &[Entry],
    time: i64,
) -> Fire {
    let mut evidence = Vec::new();
    let mut rules = Vec::new();
    for e in window {
        for id in &e.evidence {
            if !evidence.contains(id) {
                evidence.push(id.clone());
            }
        }
        let title = &routes.titles[c][e.step];
        if !rules.contains(title) {
            rules.push(title.clone());
        }
    }
    Fire {
        correlation: c,
        group: corr.rule.group_by.iter().cloned().zip(group.iter().cloned()).collect(),
        count,
        first: window.first().map_or(time, |e| e.time),
        last: window.last().map_or(time, |e| e.time),
        evidence,
        rules,
    }
}

impl Group {
    /// Moves the group's newest time to `time` if later, and forgets the entries (and, every half
    /// timespan, the keys) that can no longer share a window with a new event.
    fn advance(&mut self, time: i64, span: i64) {
        self.newest = self.newest.max(time);
        let horizon = self.newest.saturating_sub(span);
        let cut = self.entries.partition_point(|e| e.time < horizon);
        self.forget(..cut);
        if horizon >= self.seen_pruned.saturating_add(span / 2) {
            self.seen.retain(|_, t| *t >= horizon);
            self.seen_pruned = horizon;
        }
    }

    /// Puts `e` after the entries no later than it; its position.
    fn insert(&mut self, e: Entry) -> usize {
        let at = self.entries.partition_point(|x| x.time <= e.time);
        if let Some(v) = &e.value {
            match self.values.get_mut(v.as_str()) {
                Some(n) => *n += 1,
                None => _ = self.values.insert(v.clone(), 1),
            }
        }
        *self.steps.entry(e.step).or_default() += 1;
        self.entries.insert(at, e);
        at
    }

    /// Removes and returns the entries in `range`.
    fn take(&mut self, range: impl RangeBounds<usize>) -> Vec<Entry> {
        let taken: Vec<Entry> = self.entries.drain(range).collect();
        for e in &taken {
            untally(&mut self.values, &mut self.steps, e);
        }
        taken
    }

    /// Removes the entries in `range` (expired or over the cap), without collecting them.
    fn forget(&mut self, range: impl RangeBounds<usize>) {
        for e in self.entries.drain(range) {
            untally(&mut self.values, &mut self.steps, &e);
        }
    }

    /// [`measure`] of the window `lo..=hi`, from the tallies when it is the whole group.
    fn measure(&self, corr: &Resolved, lo: usize, hi: usize) -> (u64, usize) {
        let whole = lo == 0 && hi + 1 == self.entries.len();
        match &corr.rule.kind {
            Kind::ValueCount { .. } if whole => (self.values.len() as u64, 0),
            Kind::Temporal if whole => (self.steps.len() as u64, 0),
            _ => measure(corr, self.entries.range(lo..=hi)),
        }
    }
}

/// Takes entry `e` out of a group's tallies.
fn untally(values: &mut HashMap<String, u32>, steps: &mut HashMap<usize, u32>, e: &Entry) {
    if let Some(v) = &e.value {
        uncount(values, v.as_str());
    }
    uncount(steps, &e.step);
}

/// One fewer entry holds `k`.
fn uncount<K: std::hash::Hash + Eq + std::borrow::Borrow<Q>, Q: std::hash::Hash + Eq + ?Sized>(
    tally: &mut HashMap<K, u32>,
    k: &Q,
) {
    if let Some(n) = tally.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            tally.remove(k);
        }
    }
}

/// Tests the windows that hold entry `at`; on success removes the window's entries and returns the
/// count and the entries.
fn evaluate(corr: &Resolved, g: &mut Group, at: usize) -> Option<(u64, Vec<Entry>)> {
    let span = corr.rule.timespan;
    let t = g.entries[at].time;
    let mut q = at;
    while q < g.entries.len() && g.entries[q].time <= t.saturating_add(span) {
        let end = g.entries[q].time;
        let lo = g.entries.partition_point(|e| e.time < end.saturating_sub(span));
        if lo <= at {
            let (n, start) = g.measure(corr, lo, q);
            if corr.rule.condition.holds(n) {
                return Some((n, g.take(lo + start..=q)));
            }
        }
        q += 1;
    }
    None
}

/// What the condition is tested on, for one window, and where the evidence starts in it (an
/// ordered chain starts at its first step; earlier entries are not part of it).
fn measure<'a>(corr: &Resolved, window: impl ExactSizeIterator<Item = &'a Entry>) -> (u64, usize) {
    match &corr.rule.kind {
        Kind::EventCount => (window.len() as u64, 0),
        Kind::ValueCount { .. } => {
            let mut v: Vec<&str> = window.filter_map(|e| e.value.as_deref()).collect();
            v.sort_unstable();
            v.dedup();
            (v.len() as u64, 0)
        }
        Kind::Temporal => {
            let mut steps: Vec<usize> = window.map(|e| e.step).collect();
            steps.sort_unstable();
            steps.dedup();
            (steps.len() as u64, 0)
        }
        Kind::TemporalOrdered => {
            // Steps in the listed order, each after the previous one (greedy earliest match).
            let (mut next, mut start) = (0, 0);
            for (i, e) in window.enumerate() {
                if next < corr.steps.len() && e.step == next {
                    if next == 0 {
                        start = i;
                    }
                    next += 1;
                }
            }
            (next as u64, start)
        }
    }
}

/// Which correlation steps each detection rule and each correlation feeds.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    /// Detection rule index -> (correlation, step).
    pub(super) by_rule: HashMap<usize, Vec<(usize, usize)>>,
    /// Correlation index -> (outer correlation, step).
    pub(super) by_correlation: Vec<Vec<(usize, usize)>>,
    /// Per correlation, per step: the title of the referenced rule.
    pub(super) titles: Vec<Vec<String>>,
}

impl Routes {
    /// Whether detection rule `i` feeds any correlation.
    pub fn feeds(&self, i: usize) -> bool {
        self.by_rule.contains_key(&i)
    }
}
