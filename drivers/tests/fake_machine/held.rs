//! The requests a fake device took from the driver and has not completed
//! yet, in the order taken — the part of "completes when notified, when
//! polled (in order or newest first), or when the test says" that is the
//! same for every device model. Each request is numbered as taken (0 for
//! the first), which is how tests name one to fail, lose or complete.

use std::cell::{Cell, Ref, RefCell};

/// When a device completes the requests it took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Completion {
    /// As soon as the driver submits them (virtio-blk: notifies; NVMe:
    /// rings the tail doorbell), in order.
    #[default]
    AtSubmit,
    /// All it holds, each time the driver polls for completions (virtio:
    /// reads the used ring's index; NVMe: reads the completion queue), in
    /// the order taken.
    WhenPolled,
    /// Like `WhenPolled`, newest first.
    WhenPolledNewestFirst,
    /// Only when the test calls `complete_held`.
    Held,
}

impl Completion {
    /// What a poll by the driver completes: everything held (newest first
    /// or not), or nothing (None).
    pub fn on_poll(self) -> Option<bool> {
        match self {
            Self::AtSubmit | Self::Held => None,
            Self::WhenPolled => Some(false),
            Self::WhenPolledNewestFirst => Some(true),
        }
    }
}

/// A request that carries the number it was taken under.
pub trait Numbered {
    fn seq(&self) -> u64;
}

/// Requests taken and not completed, oldest first.
pub struct Held<T> {
    requests: RefCell<Vec<T>>,
    /// Requests taken so far (the next sequence number).
    taken: Cell<u64>,
    /// Most requests held at once.
    most: Cell<usize>,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Self {
            requests: RefCell::default(),
            taken: Cell::new(0),
            most: Cell::new(0),
        }
    }
}

impl<T: Clone + Numbered> Held<T> {
    /// The number of the request being taken now.
    pub fn next_seq(&self) -> u64 {
        let seq = self.taken.get();
        self.taken.set(seq + 1);
        seq
    }

    pub fn push(&self, request: T) {
        let mut requests = self.requests.borrow_mut();
        requests.push(request);
        self.most.set(self.most.get().max(requests.len()));
    }

    /// The requests held now, oldest first.
    pub fn borrow(&self) -> Ref<'_, Vec<T>> {
        self.requests.borrow()
    }

    pub fn len(&self) -> usize {
        self.requests.borrow().len()
    }

    /// Most requests held at once so far.
    pub fn most(&self) -> usize {
        self.most.get()
    }

    /// The device reset: it forgets what it held.
    pub fn clear(&self) {
        self.requests.borrow_mut().clear();
    }

    /// Remove the requests at these positions (0: the oldest held now) and
    /// return them in this order.
    pub fn take_positions(&self, positions: &[usize]) -> Vec<T> {
        let chosen: Vec<T> = {
            let all = self.requests.borrow();
            positions.iter().map(|&i| all[i].clone()).collect()
        };
        self.requests
            .borrow_mut()
            .retain(|r| !chosen.iter().any(|c| c.seq() == r.seq()));
        chosen
    }

    /// Remove every request but the one numbered `lost` (which stays held
    /// for ever) and return them oldest or newest first.
    pub fn take_all_but(&self, lost: Option<u64>, newest_first: bool) -> Vec<T> {
        let mut ready = Vec::new();
        self.requests.borrow_mut().retain(|r| {
            if Some(r.seq()) == lost {
                true
            } else {
                ready.push(r.clone());
                false
            }
        });
        if newest_first {
            ready.reverse();
        }
        ready
    }
}
