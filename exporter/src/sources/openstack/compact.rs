//! Compact forms of what the source keeps per server: server ids as 16 bytes when they are
//! canonical UUIDs; interned strings and metadata maps of the accounting (one copy each,
//! referred to by a dense `u32` index that the state file uses as well); shared values of the
//! server table (one copy each, held by `Arc`).
//!
//! Invariants: a [`ServerId`] orders exactly as the id's text (so sums over servers in id
//! order stay bit-identical to sums over the text ids); an [`Interner`] never renumbers, so an
//! index written to the state log stays valid until the next snapshot; [`Shared`] only hands
//! out copies equal to what it was given.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::hash::Hash;
use std::sync::Arc;

/// A server id: a canonical lower-case UUID as its 16 bytes, any other text as itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerId {
    Uuid([u8; 16]),
    Other(Box<str>),
}

impl ServerId {
    /// The compact form of `text`; only the exact canonical form (`8-4-4-4-12`, lower-case
    /// hex) becomes bytes, so [`ServerId::to_text`] gives back exactly `text`.
    pub fn new(text: &str) -> Self {
        match uuid::Uuid::try_parse(text) {
            Ok(u) if canonical(&u) == text.as_bytes() => Self::Uuid(*u.as_bytes()),
            _ => Self::Other(text.into()),
        }
    }

    /// The id as Nova wrote it.
    pub fn to_text(&self) -> String {
        match self {
            Self::Uuid(b) => uuid::Uuid::from_bytes(*b).hyphenated().to_string(),
            Self::Other(s) => s.to_string(),
        }
    }

    /// How the id orders against an id's text: as [`ServerId::to_text`] would, without
    /// writing it on the heap.
    pub fn cmp_text(&self, text: &str) -> Ordering {
        match self {
            Self::Uuid(b) => canonical(&uuid::Uuid::from_bytes(*b))
                .as_slice()
                .cmp(text.as_bytes()),
            Self::Other(s) => s.as_ref().cmp(text),
        }
    }
}

fn canonical(u: &uuid::Uuid) -> [u8; 36] {
    let mut buf = [0u8; 36];
    u.hyphenated().encode_lower(&mut buf);
    buf
}

impl Ord for ServerId {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            // Big-endian bytes of lower-case canonical UUIDs order as their text, and as
            // the big-endian number they make (one comparison instead of a byte loop).
            (Self::Uuid(a), Self::Uuid(b)) => u128::from_be_bytes(*a).cmp(&u128::from_be_bytes(*b)),
            (Self::Other(a), Self::Other(b)) => a.cmp(b),
            (Self::Uuid(a), Self::Other(b)) => canonical(&uuid::Uuid::from_bytes(*a))
                .as_slice()
                .cmp(b.as_bytes()),
            (Self::Other(a), Self::Uuid(b)) => a
                .as_bytes()
                .cmp(canonical(&uuid::Uuid::from_bytes(*b)).as_slice()),
        }
    }
}

impl PartialOrd for ServerId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A server's metadata as Nova lists it.
pub type Metadata = BTreeMap<String, String>;

/// One copy of each distinct value, numbered in order of arrival.
#[derive(Debug)]
pub struct Interner<T: ?Sized + Eq + Hash> {
    values: Vec<Arc<T>>,
    lookup: HashMap<Arc<T>, u32>,
}

impl<T: ?Sized + Eq + Hash> Default for Interner<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            lookup: HashMap::new(),
        }
    }
}

impl<T: ?Sized + Eq + Hash> Clone for Interner<T> {
    fn clone(&self) -> Self {
        Self {
            values: self.values.clone(),
            lookup: self.lookup.clone(),
        }
    }
}

impl<T: ?Sized + Eq + Hash> PartialEq for Interner<T> {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl<T: ?Sized + Eq + Hash> Interner<T> {
    /// The index of `value`; `make` copies it when it is new.
    pub fn intern(&mut self, value: &T, make: impl FnOnce(&T) -> Arc<T>) -> u32 {
        match self.lookup.get(value) {
            Some(&i) => i,
            None => self.push(make(value)),
        }
    }

    /// Adds `value` (if new) as the next index: a state file lists values in index order.
    pub fn push(&mut self, value: Arc<T>) -> u32 {
        if let Some(&i) = self.lookup.get(&*value) {
            return i;
        }
        let i = u32::try_from(self.values.len()).expect("fewer than 2^32 distinct values");
        self.values.push(Arc::clone(&value));
        self.lookup.insert(value, i);
        i
    }

    /// The index of `value`, if known.
    pub fn find(&self, value: &T) -> Option<u32> {
        self.lookup.get(value).copied()
    }

    /// The value at `index`.
    pub fn get(&self, index: u32) -> Option<&T> {
        self.values.get(index as usize).map(|v| &**v)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Values in index order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.values.iter().map(|v| &**v)
    }
}

/// One copy of each distinct value, shared by `Arc`; values no one else holds any more can be
/// forgotten ([`Shared::forget_unused`]).
#[derive(Debug)]
pub struct Shared<T: ?Sized + Eq + Hash> {
    values: HashSet<Arc<T>>,
}

impl<T: ?Sized + Eq + Hash> Default for Shared<T> {
    fn default() -> Self {
        Self {
            values: HashSet::new(),
        }
    }
}

impl<T: ?Sized + Eq + Hash> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self {
            values: self.values.clone(),
        }
    }
}

impl<T: ?Sized + Eq + Hash> Shared<T> {
    /// The shared copy of `value`; `make` copies it when it is new.
    pub fn get(&mut self, value: &T, make: impl FnOnce(&T) -> Arc<T>) -> Arc<T> {
        if let Some(v) = self.values.get(value) {
            return Arc::clone(v);
        }
        let v = make(value);
        self.values.insert(Arc::clone(&v));
        v
    }

    /// Replaces `value` by the shared copy of what it holds (it becomes the shared copy when
    /// it is new).
    pub fn adopt(&mut self, value: &mut Arc<T>) {
        match self.values.get(&**value) {
            Some(v) => {
                if !Arc::ptr_eq(v, value) {
                    *value = Arc::clone(v);
                }
            }
            None => {
                self.values.insert(Arc::clone(value));
            }
        }
    }

    /// Forgets the values only this set holds.
    pub fn forget_unused(&mut self) {
        self.values.retain(|v| Arc::strong_count(v) > 1);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_order_as_their_text() {
        let texts = [
            "0b4f8c2e-1111-4a2b-9c3d-000000000001",
            "0b4f8c2e-1111-4a2b-9c3d-00000000000f",
            "0b4f8c2e-1111-4a2b-9c3d-100000000000",
            "8b4f8c2e-1111-4a2b-9c3d-000000000001",
            "f0000000-0000-4000-8000-000000000000",
            "0B4F8C2E-1111-4A2B-9C3D-000000000001",
            "0b4f8c2e11114a2b9c3d000000000001",
            "a",
            "s1",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "0b4f8c2e-1111-4a2b-9c3d-00000000000",
            "",
        ];
        for a in texts {
            let ida = ServerId::new(a);
            assert_eq!(ida.to_text(), a);
            for b in texts {
                assert_eq!(ida.cmp(&ServerId::new(b)), a.cmp(b), "{a} vs {b}");
                assert_eq!(ida.cmp_text(b), a.cmp(b), "{a} vs text {b}");
            }
        }
        assert!(matches!(ServerId::new(texts[0]), ServerId::Uuid(_)));
        assert!(matches!(ServerId::new(texts[5]), ServerId::Other(_)));
        assert!(matches!(ServerId::new(texts[6]), ServerId::Other(_)));
        assert!(matches!(ServerId::new(texts[4]), ServerId::Uuid(_)));
    }

    #[test]
    fn interning_keeps_one_copy_and_its_index() {
        let mut names: Interner<str> = Interner::default();
        assert_eq!(names.intern("a", |s: &str| Arc::from(s)), 0);
        assert_eq!(names.intern("b", |s: &str| Arc::from(s)), 1);
        assert_eq!(names.intern("a", |s: &str| Arc::from(s)), 0);
        assert_eq!(names.len(), 2);
        assert_eq!(names.get(1), Some("b"));
        assert_eq!(names.find("c"), None);
    }

    #[test]
    fn shared_values_are_one_copy_until_no_one_holds_them() {
        let mut shared: Shared<str> = Shared::default();
        let a = shared.get("a", |v: &str| Arc::from(v));
        let again = shared.get("a", |_| unreachable!("'a' is known"));
        assert!(Arc::ptr_eq(&a, &again));
        let mut other: Arc<str> = Arc::from("a");
        shared.adopt(&mut other);
        assert!(
            Arc::ptr_eq(&a, &other),
            "an equal value becomes the shared copy"
        );
        let mut new: Arc<str> = Arc::from("b");
        let kept = Arc::clone(&new);
        shared.adopt(&mut new);
        assert!(Arc::ptr_eq(&kept, &new), "a new value is shared as it is");
        assert_eq!(shared.len(), 2);
        drop((a, again, other));
        shared.forget_unused();
        assert_eq!(shared.len(), 1, "'a' is held by no one, 'b' still is");
        drop((new, kept));
        shared.forget_unused();
        assert!(shared.is_empty());
    }
}
