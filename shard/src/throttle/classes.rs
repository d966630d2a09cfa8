//! [`ReadyClasses`]: the ready messages of one fairness key, one FIFO per distinct
//! throttle-key set ("class"). Each FIFO is in pending order; the key's next message is the
//! oldest head among the classes whose throttle keys all have a token, so a throttled
//! message never blocks later messages with other (or no) throttle keys, and messages with
//! the same throttle keys keep their relative order (decisions.md). Classes are few per key
//! (an empty one is dropped), so a pick is a scan of a handful of heads.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::ids::ThrottleKey;
use crate::slab::SlabRef;
use crate::storage::keys::PendingOrder;

/// One throttle-key set's FIFO.
#[derive(Clone, Debug)]
pub struct Class {
    /// The throttle keys every message of the class carries.
    pub keys: Arc<[ThrottleKey]>,
    /// Messages in pending order.
    pub fifo: VecDeque<(PendingOrder, SlabRef)>,
}

/// The ready messages of a fairness key.
#[derive(Clone, Debug, Default)]
pub struct ReadyClasses {
    classes: Vec<Class>,
    len: usize,
}

fn same(a: &Arc<[ThrottleKey]>, b: &Arc<[ThrottleKey]>) -> bool {
    Arc::ptr_eq(a, b) || a[..] == b[..]
}

impl ReadyClasses {
    /// Appends a message (callers push in pending order per class).
    pub fn push_back(&mut self, keys: &Arc<[ThrottleKey]>, order: PendingOrder, r: SlabRef) {
        self.len += 1;
        if let Some(class) = self.classes.iter_mut().find(|c| same(&c.keys, keys)) {
            class.fifo.push_back((order, r));
            return;
        }
        let mut fifo = VecDeque::new();
        fifo.push_back((order, r));
        self.classes.push(Class {
            keys: keys.clone(),
            fifo,
        });
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The classes.
    pub fn classes(&self) -> &[Class] {
        &self.classes
    }

    /// The oldest head regardless of throttling.
    pub fn front(&self) -> Option<SlabRef> {
        self.classes
            .iter()
            .filter_map(|c| c.fifo.front())
            .min_by_key(|(order, _)| *order)
            .map(|(_, r)| *r)
    }

    /// Removes `r`, which must be the head of its class. Returns false if it is not a head.
    pub fn take_head(&mut self, r: SlabRef) -> bool {
        let Some(pos) = self
            .classes
            .iter()
            .position(|c| c.fifo.front().is_some_and(|(_, x)| *x == r))
        else {
            return false;
        };
        let Some(class) = self.classes.get_mut(pos) else {
            return false;
        };
        class.fifo.pop_front();
        if class.fifo.is_empty() {
            self.classes.swap_remove(pos);
        }
        self.len -= 1;
        true
    }

    /// Every message, in pending order (inspection; allocates).
    pub fn iter_ordered(&self) -> Vec<SlabRef> {
        let mut all: Vec<_> = self
            .classes
            .iter()
            .flat_map(|c| c.fifo.iter().copied())
            .collect();
        all.sort_unstable_by_key(|(order, _)| *order);
        all.into_iter().map(|(_, r)| r).collect()
    }

    /// Keeps the messages for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(SlabRef) -> bool) {
        for class in &mut self.classes {
            class.fifo.retain(|(_, r)| keep(*r));
        }
        self.classes.retain(|c| !c.fifo.is_empty());
        self.len = self.classes.iter().map(|c| c.fifo.len()).sum();
    }
}
