//! A small per-instance memory of recently answered `webhook-id`s.
//!
//! **An optimisation only.** Correctness never depends on it: the control plane's
//! claim (poll + ack) is atomic, so a duplicate delivery that does drain finds nothing
//! new or claims different items. The set lives in one execution environment (other
//! instances do not see it) and forgets the oldest id once full. An id is remembered
//! only after its delivery was answered 2xx by a drain that ended with an empty poll,
//! so a delivery whose drain stopped early (time budget, capacity, control-plane
//! outage) or failed on our side is drained again when it is repeated.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Default number of ids remembered.
pub const DEFAULT_CAPACITY: usize = 256;

/// Bounded set of recent ids, oldest evicted first.
#[derive(Debug)]
pub struct RecentIds {
    capacity: usize,
    inner: Mutex<(VecDeque<String>, HashSet<String>)>,
}

impl Default for RecentIds {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new((VecDeque::new(), HashSet::new())),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .contains(id)
    }

    /// Remember `id` (ids longer than 256 bytes are not remembered).
    pub fn insert(&self, id: &str) {
        if id.is_empty() || id.len() > 256 {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (order, set) = &mut *g;
        if !set.insert(id.to_owned()) {
            return;
        }
        order.push_back(id.to_owned());
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest() {
        let r = RecentIds::new(2);
        r.insert("a");
        r.insert("b");
        r.insert("a");
        assert!(r.contains("a") && r.contains("b"));
        r.insert("c");
        assert!(!r.contains("a"));
        assert!(r.contains("b") && r.contains("c"));
        r.insert("");
        assert!(!r.contains(""));
    }
}
