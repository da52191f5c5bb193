//! The graph's text, stored once. A fleet repeats the same few thousand host names, process names,
//! executables, command lines, hashes and users across millions of nodes; each node held its own
//! copies, and most of the graph's build time went to allocating them and to the kernel zeroing
//! the pages they filled. [`Text`] is a shared string (an `Arc<str>`): [`Interner::get`] hands out
//! one per distinct value, and a key or an event id that is unique is made once ([`Text::new`]) and
//! shared by the map, the node and every edge that cites it. [`Interner::sweep`] forgets values no
//! node or edge holds any more, after an eviction.

use serde::Serialize;
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A shared, immutable string: cloning it copies a pointer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(Arc<str>);

impl Text {
    /// A value of its own (not shared with equal values made elsewhere).
    pub fn new(s: &str) -> Self {
        Self(Arc::from(s))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, o: &str) -> bool {
        &*self.0 == o
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, o: &&str) -> bool {
        &*self.0 == *o
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl schemars::JsonSchema for Text {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        String::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

/// The texts as owned strings (for answers that outlive the graph's lock).
pub fn to_strings(v: &[Text]) -> Vec<String> {
    v.iter().map(|t| t.as_str().to_owned()).collect()
}

/// One [`Text`] per distinct value.
#[derive(Debug, Default)]
pub struct Interner {
    set: super::SeededSet<Text>,
}

impl Interner {
    /// The shared text equal to `s`.
    pub fn get(&mut self, s: &str) -> Text {
        if let Some(t) = self.set.get(s) {
            return t.clone();
        }
        let t = Text::new(s);
        self.set.insert(t.clone());
        t
    }

    /// Forgets values nothing else holds.
    pub fn sweep(&mut self) {
        self.set.retain(|t| Arc::strong_count(&t.0) > 1);
    }

    /// Distinct values held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// None held.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_allocation_until_nothing_holds_them() {
        let mut i = Interner::default();
        let a = i.get("powershell.exe");
        let b = i.get("powershell.exe");
        assert!(Arc::ptr_eq(&a.0, &b.0), "one allocation for equal values");
        assert_eq!(i.get("cmd.exe"), "cmd.exe");
        assert_eq!(i.len(), 2);
        i.sweep();
        assert_eq!(i.len(), 1, "cmd.exe had no holder left, powershell.exe has two");
        drop((a, b));
        i.sweep();
        assert!(i.is_empty());
    }

    #[test]
    fn serialises_and_compares_as_its_string() {
        let t = Text::new("10.0.0.5");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"10.0.0.5\"");
        assert!(t == "10.0.0.5" && &*t == "10.0.0.5");
        let m: std::collections::HashMap<Text, u8> = [(t.clone(), 1)].into();
        assert_eq!(m.get("10.0.0.5"), Some(&1), "found by &str");
    }
}
