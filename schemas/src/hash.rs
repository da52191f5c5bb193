//! FNV-1a for short keys looked up by value (field names, path segments), where SipHash costs more
//! than the lookup saves. Not for keys an attacker chooses in bulk.

use std::hash::{BuildHasherDefault, Hasher};

/// The FNV-1a hasher.
#[derive(Debug, Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A `HashMap`'s hasher builder with [`Fnv`].
pub type FnvBuild = BuildHasherDefault<Fnv>;
