//! Rule sets: rules grouped by logsource for matching many rules against each event.

use super::event::Event;
use super::rule::Rule;

/// Rules grouped by logsource, so an event is tested once per distinct logsource and only the rules of
/// the logsources it belongs to run their detection.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// (gate key, indices of the rules with that gate).
    groups: Vec<(String, Vec<usize>)>,
}

impl RuleSet {
    /// Groups `rules` by their logsource conditions.
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let key = r.gate_key();
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        Self { rules, groups }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules that fire on `event`, in rule order within each logsource group.
    pub fn matching<'a>(&'a self, event: &dyn Event) -> Vec<&'a Rule> {
        self.matching_indices(event).into_iter().map(|i| &self.rules[i]).collect()
    }

    /// The indices of the rules that fire on `event`.
    pub fn matching_indices(&self, event: &dyn Event) -> Vec<usize> {
        let mut out = Vec::new();
        for (_, members) in &self.groups {
            if !self.rules[members[0]].gate_holds(event) {
                continue;
            }
            out.extend(members.iter().copied().filter(|&i| self.rules[i].detection_holds(event)));
        }
        out
    }
}
