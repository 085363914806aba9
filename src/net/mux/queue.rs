//! A stream's queue of frames, first in first out, holding its first frame in place: most
//! streams carry one request or one answer, and a `VecDeque` allocates at its first push.

use std::collections::VecDeque;

/// First in, first out; the front kept in place, the rest behind it.
#[derive(Debug)]
pub(super) struct Queue<T> {
    /// `None` only when `rest` is empty too.
    front: Option<T>,
    rest: VecDeque<T>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            front: None,
            rest: VecDeque::new(),
        }
    }
}

impl<T> Queue<T> {
    pub fn push_back(&mut self, item: T) {
        if self.front.is_none() {
            self.front = Some(item);
        } else {
            self.rest.push_back(item);
        }
    }

    pub fn pop_front(&mut self) -> Option<T> {
        let item = self.front.take()?;
        self.front = self.rest.pop_front();
        Some(item)
    }

    pub fn is_empty(&self) -> bool {
        self.front.is_none()
    }

    pub fn clear(&mut self) {
        self.front = None;
        self.rest.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_in_the_order_they_went_in_however_pushes_and_pops_interleave() {
        let mut queue = Queue::default();
        let mut model = VecDeque::new();
        let mut rng = crate::Rng::seeded(11);
        for i in 0..10_000u32 {
            if rng.below(3) == 0 {
                assert_eq!(queue.pop_front(), model.pop_front(), "pop {i}");
            } else {
                queue.push_back(i);
                model.push_back(i);
            }
            assert_eq!(queue.is_empty(), model.is_empty());
        }
        queue.clear();
        assert!(queue.is_empty() && queue.pop_front().is_none());
    }
}
