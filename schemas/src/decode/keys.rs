//! The field table as a tree of key segments, for the decoder's walk: from the node of the object
//! being read, a key (a plain name, or a flat dotted path) leads to a field, to a deeper node (an
//! object to descend into), or to nothing Cordon knows. Each segment is one lookup in a small table
//! hashed with FNV-1a ([`crate::hash`]), instead of building the full dotted path and hashing it
//! for every key.

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

type Table = HashMap<&'static str, Slot, crate::hash::FnvBuild>;

/// The tree: one table of segments per node.
pub(super) struct Tree {
    nodes: Vec<Table>,
}

impl Tree {
    fn build() -> Self {
        let mut tree = Tree { nodes: vec![Table::default()] };
        for (i, def) in FIELDS.iter().enumerate() {
            let mut node = ROOT;
            let mut segs = def.path.split('.').peekable();
            while let Some(seg) = segs.next() {
                if segs.peek().is_none() {
                    tree.nodes[node as usize].entry(seg).or_default().field.get_or_insert(i);
                } else {
                    node = tree.child(node, seg);
                }
            }
        }
        tree
    }

    /// The node under `seg` of `node`, made if missing.
    fn child(&mut self, node: Node, seg: &'static str) -> Node {
        if let Some(n) = self.nodes[node as usize].get(seg).and_then(|s| s.node) {
            return n;
        }
        let n = self.nodes.len() as Node;
        self.nodes.push(Table::default());
        self.nodes[node as usize].entry(seg).or_default().node = Some(n);
        n
    }

    /// Where `key` leads from `node`; a dotted key is followed segment by segment.
    pub(super) fn resolve(&self, node: Node, key: &str) -> Option<Slot> {
        let mut segs = key.split('.');
        let mut slot = *self.nodes[node as usize].get(segs.next()?)?;
        for seg in segs {
            slot = *self.nodes[slot.node? as usize].get(seg)?;
        }
        Some(slot)
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
        for unknown in ["", ".", "process.", "process..pid", "nope", "process.nope", "process.pid.x"] {
            assert_eq!(t.resolve(ROOT, unknown).and_then(|s| s.field), None, "{unknown:?}");
        }
        assert!(t.resolve(ROOT, "process.nope").is_none());
    }
}
