//! The requests a polled block driver has in flight, in submission order.
//!
//! A driver gives each request it may have outstanding a *slot* (its own
//! DMA page, PRP list or descriptors, and the identifier the device echoes
//! back), and uses the slots round-robin: request *k* goes in slot
//! *k mod slot_count*. The device may complete them in any order, but the
//! driver waits for them oldest first — which keeps "the first error" and
//! "where the transfer stopped" well defined — so a slot is free again
//! only once every older request is finished. That is a ring of slots:
//! the oldest's slot, and how many follow it.
//!
//! The virtio-blk and NVMe drivers keep their requests here; what a slot
//! holds (`T`) and how a request completes stay theirs ([`Pipeline`]).

/// Up to `N` requests in flight in a ring of `slot_count` slots.
pub(crate) struct InFlight<T, const N: usize> {
    /// The request in each slot, if any.
    requests: [Option<T>; N],
    /// How many slots are used (at most `N`).
    slot_count: usize,
    /// The slot of the oldest request in flight.
    oldest: usize,
    /// Requests in flight (in slots `oldest`, `oldest + 1`, ... mod count).
    len: usize,
}

impl<T: Copy, const N: usize> InFlight<T, N> {
    /// No request in flight; `slot_count` slots (at most `N`).
    pub(crate) fn new(slot_count: usize) -> Self {
        Self {
            requests: [None; N],
            slot_count: slot_count.min(N),
            oldest: 0,
            len: 0,
        }
    }

    /// Requests in flight at most.
    pub(crate) fn slot_count(&self) -> usize {
        self.slot_count
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether another request can be submitted without waiting.
    pub(crate) fn has_free_slot(&self) -> bool {
        self.len < self.slot_count
    }

    /// The slot the next request takes (None: every slot is taken).
    pub(crate) fn next_slot(&self) -> Option<usize> {
        self.has_free_slot()
            .then(|| (self.oldest + self.len) % self.slot_count)
    }

    /// Put `request` in the next slot; the slot (None: every slot is taken).
    pub(crate) fn push(&mut self, request: T) -> Option<usize> {
        let slot = self.next_slot()?;
        self.requests[slot] = Some(request);
        self.len += 1;
        Some(slot)
    }

    /// The oldest request in flight and its slot.
    pub(crate) fn oldest(&self) -> Option<(usize, T)> {
        if self.is_empty() {
            return None;
        }
        self.requests[self.oldest].map(|request| (self.oldest, request))
    }

    /// The request in `slot`, if one is in flight there.
    pub(crate) fn get(&self, slot: usize) -> Option<T> {
        self.requests.get(slot).copied().flatten()
    }

    /// The request in `slot`, if `slot` is one of those in flight now. A
    /// device naming any other slot is broken.
    pub(crate) fn in_flight_mut(&mut self, slot: usize) -> Option<&mut T> {
        let in_flight = slot < self.slot_count
            && (slot + self.slot_count - self.oldest) % self.slot_count < self.len;
        if !in_flight {
            return None;
        }
        self.requests.get_mut(slot)?.as_mut()
    }

    /// Free the oldest slot (nothing if none is in flight).
    pub(crate) fn retire_oldest(&mut self) {
        if self.is_empty() {
            return;
        }
        self.requests[self.oldest] = None;
        self.oldest = (self.oldest + 1) % self.slot_count;
        self.len -= 1;
    }
}

/// A driver that keeps requests in [`InFlight`] and finishes them oldest
/// first. It says how one request is submitted and how the oldest one is
/// waited for; finishing them all and moving a long transfer in chunks,
/// with the slots kept full, are the same for every such driver.
pub(crate) trait Pipeline {
    type Error;
    /// What a transfer does (read or write), as the driver names it.
    type Op: Copy;

    /// Whether no request is in flight.
    fn idle(&self) -> bool;

    /// Whether another request can be submitted without waiting.
    fn has_free_slot(&self) -> bool;

    /// Wait for the oldest request in flight, if any, and check its status.
    fn complete_oldest(&mut self) -> Result<(), Self::Error>;

    /// Submit one request of `len` bytes (at most one request's worth)
    /// between the disk at `offset` and memory at `phys`, without waiting.
    fn submit_chunk(
        &mut self,
        op: Self::Op,
        offset: u64,
        phys: u64,
        len: u64,
    ) -> Result<(), Self::Error>;

    /// Finish every request in flight, oldest first; the first error.
    fn complete_all(&mut self) -> Result<(), Self::Error> {
        let mut first = Ok(());
        while !self.idle() {
            let outcome = self.complete_oldest();
            if first.is_ok() {
                first = outcome;
            }
        }
        first
    }

    /// Move `len` bytes between the disk at `offset` and memory at `phys`
    /// in requests of at most `chunk_bytes`, as many in flight as there
    /// are slots; returns when all are done.
    fn transfer_chunks(
        &mut self,
        op: Self::Op,
        offset: u64,
        phys: u64,
        len: u64,
        chunk_bytes: u64,
    ) -> Result<(), Self::Error> {
        self.complete_all()?;
        let mut done = 0;
        let mut outcome = Ok(());
        while done < len && outcome.is_ok() {
            if !self.has_free_slot() {
                outcome = self.complete_oldest();
                continue;
            }
            let chunk = (len - done).min(chunk_bytes);
            outcome = self.submit_chunk(op, offset + done, phys + done, chunk);
            done += chunk;
        }
        // Requests after a failed one are still finished, so none is left
        // in flight for the caller's next wait.
        let rest = self.complete_all();
        outcome.and(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::InFlight;

    #[test]
    fn slots_are_used_round_robin_and_freed_oldest_first() {
        let mut ring: InFlight<u32, 4> = InFlight::new(3);
        assert_eq!(ring.slot_count(), 3);
        assert_eq!(ring.push(10), Some(0));
        assert_eq!(ring.push(11), Some(1));
        assert_eq!(ring.push(12), Some(2));
        assert!(!ring.has_free_slot());
        assert_eq!(ring.push(13), None);
        assert_eq!(ring.oldest(), Some((0, 10)));
        ring.retire_oldest();
        assert_eq!(ring.next_slot(), Some(0));
        assert_eq!(ring.push(13), Some(0));
        assert_eq!(ring.oldest(), Some((1, 11)));
        assert!(!ring.has_free_slot());
    }

    #[test]
    fn only_slots_in_flight_can_be_completed() {
        let mut ring: InFlight<u32, 4> = InFlight::new(4);
        ring.push(1);
        ring.push(2);
        ring.retire_oldest();
        // Slot 1 is in flight; slot 0 was retired, 2 and 3 never used, 7
        // does not exist.
        assert_eq!(ring.in_flight_mut(1).copied(), Some(2));
        for slot in [0, 2, 3, 7] {
            assert!(ring.in_flight_mut(slot).is_none(), "slot {slot}");
        }
    }

    #[test]
    fn slot_count_is_capped_and_an_empty_ring_retires_nothing() {
        let mut ring: InFlight<u8, 2> = InFlight::new(9);
        assert_eq!(ring.slot_count(), 2);
        ring.retire_oldest();
        assert!(ring.is_empty());
        assert_eq!(ring.oldest(), None);
    }
}
