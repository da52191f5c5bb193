//! The field table as a tree of key segments, for the decoder's walk: from the node of the object
//! being read, a key (a plain name, or a flat dotted path) leads to a field, to a deeper node (an
//! object to descend into), or to nothing Cordon knows. Each segment is one probe of a small table
//! (`Probe`), instead of building the full dotted path and hashing it for every key.

use crate::fields::FIELDS;
use std::collections::HashMap;
use std::sync::OnceLock;

/// A node of the tree; the root (the line's top object) is [`ROOT`].
pub(super) type Node = u32;

/// The top object's node.
pub(super) const ROOT: Node = 0;

/// Where a key leads: a field, a deeper node, or both (a field wins, as the table has it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Slot {
    pub field: Option<usize>,
    pub node: Option<Node>,
}

/// One node's segments while the tree is built.
type Table = HashMap<&'static str, Slot, crate::hash::FnvBuild>;

/// The tree: one [`Probe`] table of segments per node.
pub(super) struct Tree {
    nodes: Vec<Probe>,
}

impl Tree {
    fn build() -> Self {
        let mut nodes = vec![Table::default()];
        for (i, def) in FIELDS.iter().enumerate() {
            let mut node = ROOT;
            let mut segs = def.path.split('.').peekable();
            while let Some(seg) = segs.next() {
                if segs.peek().is_none() {
                    nodes[node as usize].entry(seg).or_default().field.get_or_insert(i);
                } else {
                    node = child(&mut nodes, node, seg);
                }
            }
        }
        Tree { nodes: nodes.iter().map(Probe::new).collect() }
    }

    /// Where `key` leads from `node`; a dotted key is followed segment by segment.
    pub(super) fn resolve(&self, node: Node, key: &str) -> Option<Slot> {
        // Most keys are one segment: one probe. No segment holds a dot, so a dotted key misses it.
        let table = &self.nodes[node as usize];
        if let Some(slot) = table.get(key) {
            return Some(slot);
        }
        if !key.contains('.') {
            return None;
        }
        let mut segs = key.split('.');
        let mut slot = table.get(segs.next()?)?;
        for seg in segs {
            slot = self.nodes[slot.node? as usize].get(seg)?;
        }
        Some(slot)
    }
}

/// The node under `seg` of `node`, made if missing.
fn child(nodes: &mut Vec<Table>, node: Node, seg: &'static str) -> Node {
    if let Some(n) = nodes[node as usize].get(seg).and_then(|s| s.node) {
        return n;
    }
    let n = nodes.len() as Node;
    nodes.push(Table::default());
    nodes[node as usize].entry(seg).or_default().node = Some(n);
    n
}

/// A node's segments, open-addressed in a table at most a quarter full and hashed from the key's
/// length and its first and last bytes (a few instructions, where hashing every byte cost more than
/// the rest of the lookup); a hit compares the whole key.
struct Probe {
    slots: Box<[Option<(&'static str, Slot)>]>,
    mask: usize,
}

impl Probe {
    fn new(table: &Table) -> Self {
        let size = (table.len() * 4).next_power_of_two().max(8);
        let mut p = Probe { slots: vec![None; size].into_boxed_slice(), mask: size - 1 };
        for (&seg, &slot) in table {
            let mut at = p.home(seg.as_bytes());
            while p.slots[at].is_some() {
                at = (at + 1) & p.mask;
            }
            p.slots[at] = Some((seg, slot));
        }
        p
    }

    fn home(&self, key: &[u8]) -> usize {
        let (first, last) = match key {
            [] => (0, 0),
            [f, .., l] => (*f, *l),
            [only] => (*only, *only),
        };
        let h = (key.len() as u32).wrapping_mul(0x9E37_79B1)
            ^ u32::from(first).wrapping_mul(0x85EB_CA6B)
            ^ u32::from(last).wrapping_mul(0xC2B2_AE35);
        (h ^ (h >> 15)) as usize & self.mask
    }

    fn get(&self, key: &str) -> Option<Slot> {
        let mut at = self.home(key.as_bytes());
        loop {
            match &self.slots[at] {
                None => return None,
                Some((seg, slot)) if *seg == key => return Some(*slot),
                Some(_) => at = (at + 1) & self.mask,
            }
        }
    }
}

/// The tree of [`FIELDS`], built once.
pub(super) fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(Tree::build)
}

#[cfg(test)]
mod tests {
    use super::{ROOT, tree};
    use crate::fields::{FIELDS, column_index};

    #[test]
    fn every_path_resolves_to_its_field_nested_or_dotted_and_nothing_else_does() {
        let t = tree();
        for (i, def) in FIELDS.iter().enumerate() {
            assert_eq!(t.resolve(ROOT, def.path).and_then(|s| s.field), Some(i), "{}", def.path);
            // Nested: each segment from the node the previous one led to.
            let mut node = ROOT;
            let segs: Vec<&str> = def.path.split('.').collect();
            for seg in &segs[..segs.len() - 1] {
                node = t.resolve(node, seg).and_then(|s| s.node).expect(def.path);
            }
            assert_eq!(t.resolve(node, segs[segs.len() - 1]).and_then(|s| s.field), Some(i));
        }
        let pid = column_index("process_pid").unwrap();
        let process = t.resolve(ROOT, "process").unwrap();
        assert_eq!((process.field, process.node.is_some()), (None, true));
        assert_eq!(t.resolve(process.node.unwrap(), "pid").and_then(|s| s.field), Some(pid));
        // Keys that share a segment's length and first and last bytes must still miss.
        for unknown in [
            "",
            ".",
            "process.",
            "process..pid",
            "nope",
            "process.nope",
            "process.pid.x",
            "pad",
            "process.pad",
            "hXst.name",
            "host.nXme",
            "p",
            "process.p\u{e9}d",
        ] {
            assert_eq!(t.resolve(ROOT, unknown).and_then(|s| s.field), None, "{unknown:?}");
        }
        assert!(t.resolve(ROOT, "process.nope").is_none());
    }
}
