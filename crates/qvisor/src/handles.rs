//! Handle tables of the host services (hostfs files, hostnet sockets).
//! Handles are `generation << 32 | index`: never 0 (generations start at 1),
//! and a closed slot that is reused gets a new generation, so a stale handle
//! is refused (EBADF) instead of reaching another file or socket. Entries are
//! shared (`Arc`) so an operation keeps its descriptor alive even if another
//! vCPU closes the handle meanwhile; the table lock is held only to look up,
//! insert or remove.
//!
//! Pure logic, generic over the entry, for unit tests.

use std::sync::Arc;

/// A handle as the guest sees it.
pub type Handle = u64;

struct Slot<T> {
    generation: u32,
    entry: Option<Arc<T>>,
}

/// A bounded table of shared entries.
pub struct Table<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    live: usize,
    limit: usize,
}

/// The table is full (the guest gets EMFILE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<T> Table<T> {
    /// An empty table holding at most `limit` entries.
    pub fn new(limit: usize) -> Table<T> {
        Table { slots: Vec::new(), free: Vec::new(), live: 0, limit: limit.min(u32::MAX as usize) }
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// True when another entry fits.
    pub fn has_room(&self) -> bool {
        self.live < self.limit
    }

    /// Inserts an entry; returns its handle.
    pub fn insert(&mut self, entry: Arc<T>) -> Result<Handle, Full> {
        if !self.has_room() {
            return Err(Full);
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { generation: 0, entry: None });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        // Generations never take the value 0, also after wrapping around.
        slot.generation = slot.generation.wrapping_add(1).max(1);
        slot.entry = Some(entry);
        self.live += 1;
        Ok(((slot.generation as u64) << 32) | index as u64)
    }

    fn slot_index(&self, h: Handle) -> Option<usize> {
        let i = (h & 0xffff_ffff) as usize;
        let s = self.slots.get(i)?;
        (s.generation as u64 == h >> 32 && s.entry.is_some()).then_some(i)
    }

    /// The entry behind a live handle.
    pub fn get(&self, h: Handle) -> Option<Arc<T>> {
        self.slot_index(h).and_then(|i| self.slots[i].entry.clone())
    }

    /// Removes a live handle's entry.
    pub fn remove(&mut self, h: Handle) -> Option<Arc<T>> {
        let i = self.slot_index(h)?;
        let e = self.slots[i].entry.take();
        self.free.push(i as u32);
        self.live -= 1;
        e
    }

    /// Removes every entry (sandbox shutdown).
    pub fn drain(&mut self) -> Vec<Arc<T>> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(e) = s.entry.take() {
                out.push(e);
                self.free.push(i as u32);
            }
        }
        self.live = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_nonzero_unique_and_stale_ones_are_refused() {
        let mut t = Table::new(2);
        let a = t.insert(Arc::new(1)).unwrap();
        let b = t.insert(Arc::new(2)).unwrap();
        assert!(a != 0 && b != 0 && a != b);
        assert_eq!(t.insert(Arc::new(3)), Err(Full));
        assert_eq!(t.len(), 2);
        assert_eq!(*t.remove(a).unwrap(), 1);
        assert!(t.remove(a).is_none(), "double close");
        let c = t.insert(Arc::new(4)).unwrap();
        assert_eq!(c & 0xffff_ffff, a & 0xffff_ffff, "slot reused");
        assert_ne!(c, a, "with a new generation");
        assert!(t.get(a).is_none(), "the stale handle reaches nothing");
        assert_eq!(*t.get(c).unwrap(), 4);
        assert!(t.get(0).is_none());
        assert!(t.get(u64::MAX).is_none());
        assert!(t.get(b | (7 << 32)).is_none(), "wrong generation");
    }

    #[test]
    fn entries_outlive_removal_while_in_use() {
        let mut t = Table::new(4);
        let h = t.insert(Arc::new(String::from("fd"))).unwrap();
        let held = t.get(h).unwrap();
        t.remove(h);
        assert_eq!(held.as_str(), "fd");
        assert!(t.is_empty());
    }

    #[test]
    fn handles_are_generational_and_bounded() {
        let mut t = Table::new(2);
        let a = t.insert(Arc::new("a")).unwrap();
        let b = t.insert(Arc::new("b")).unwrap();
        assert_ne!(a, 0);
        assert_eq!(t.insert(Arc::new("c")), Err(Full));
        assert_eq!(*t.get(a).unwrap(), "a");
        assert_eq!(*t.remove(a).unwrap(), "a");
        assert!(t.get(a).is_none(), "closed handle");
        assert!(t.remove(a).is_none(), "double close");
        let c = t.insert(Arc::new("c")).unwrap();
        assert_eq!(c & 0xffff_ffff, a & 0xffff_ffff, "slot reused");
        assert_ne!(c, a, "with a new generation");
        assert!(t.get(a).is_none(), "the stale handle does not reach the new entry");
        assert_eq!(*t.get(c).unwrap(), "c");
        assert!(t.get(u64::MAX).is_none());
        assert!(t.get(b & 0xffff_ffff).is_none(), "generation 0 is never valid");
        assert_eq!(t.len(), 2);
        assert_eq!(t.drain().len(), 2);
        assert!(t.is_empty());
        assert!(t.get(b).is_none());
    }
}
