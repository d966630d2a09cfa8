//! A generational slab: dense storage with stable `u32` indices and stale-reference
//! detection, used for queues, fairness keys and messages so that indices (not strings or
//! ids) link the in-memory indexes together.

/// A reference into a [`Slab`]: index plus generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlabRef {
    /// Position.
    pub idx: u32,
    /// Generation the entry had when referenced.
    pub gen_no: u32,
}

#[derive(Clone, Debug)]
struct Entry<T> {
    gen_no: u32,
    value: Option<T>,
}

/// The slab.
#[derive(Clone, Debug)]
pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value`, returning its reference.
    pub fn insert(&mut self, value: T) -> SlabRef {
        self.len += 1;
        if let Some(idx) = self.free.pop()
            && let Some(entry) = self.entries.get_mut(idx as usize)
        {
            entry.gen_no = entry.gen_no.wrapping_add(1);
            entry.value = Some(value);
            return SlabRef {
                idx,
                gen_no: entry.gen_no,
            };
        }
        let idx = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.entries.push(Entry {
            gen_no: 0,
            value: Some(value),
        });
        SlabRef { idx, gen_no: 0 }
    }

    /// Removes and returns the referenced value (if the reference is current).
    pub fn remove(&mut self, r: SlabRef) -> Option<T> {
        let entry = self.entries.get_mut(r.idx as usize)?;
        if entry.gen_no != r.gen_no {
            return None;
        }
        let value = entry.value.take()?;
        self.free.push(r.idx);
        self.len -= 1;
        Some(value)
    }

    /// The referenced value, if current.
    pub fn get(&self, r: SlabRef) -> Option<&T> {
        let entry = self.entries.get(r.idx as usize)?;
        if entry.gen_no != r.gen_no {
            return None;
        }
        entry.value.as_ref()
    }

    /// The referenced value, if current.
    pub fn get_mut(&mut self, r: SlabRef) -> Option<&mut T> {
        let entry = self.entries.get_mut(r.idx as usize)?;
        if entry.gen_no != r.gen_no {
            return None;
        }
        entry.value.as_mut()
    }

    /// The value at `idx` whatever its generation.
    pub fn get_idx_mut(&mut self, idx: u32) -> Option<&mut T> {
        self.entries.get_mut(idx as usize)?.value.as_mut()
    }

    /// Removes the value at `idx` whatever its generation.
    pub fn remove_idx(&mut self, idx: u32) -> Option<T> {
        let entry = self.entries.get_mut(idx as usize)?;
        let value = entry.value.take()?;
        self.free.push(idx);
        self.len -= 1;
        Some(value)
    }

    /// The value at `idx` whatever its generation.
    pub fn get_idx(&self, idx: u32) -> Option<&T> {
        self.entries.get(idx as usize)?.value.as_ref()
    }

    /// Number of stored values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every stored value with its reference, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (SlabRef, &T)> {
        self.entries.iter().enumerate().filter_map(|(idx, entry)| {
            let value = entry.value.as_ref()?;
            Some((
                SlabRef {
                    idx: idx as u32,
                    gen_no: entry.gen_no,
                },
                value,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_references_miss() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b");
        assert_eq!(a.idx, b.idx);
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.len(), 1);
    }
}
