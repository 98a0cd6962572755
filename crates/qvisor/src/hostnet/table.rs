//! The per-sandbox handle table: host handles are `generation << 32 | index`
//! so a stale handle (closed, slot reused) is refused instead of reaching
//! another socket. Pure logic, generic over the entry for unit tests.

use std::sync::Arc;

/// Handles given to the guest. Never 0 (generations start at 1).
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

/// The table is full.
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

    fn slot(&self, h: Handle) -> Option<&Slot<T>> {
        let s = self.slots.get((h & 0xffff_ffff) as usize)?;
        (s.generation as u64 == h >> 32 && s.entry.is_some()).then_some(s)
    }

    /// The entry behind a live handle.
    pub fn get(&self, h: Handle) -> Option<Arc<T>> {
        self.slot(h).and_then(|s| s.entry.clone())
    }

    /// Removes a live handle's entry.
    pub fn remove(&mut self, h: Handle) -> Option<Arc<T>> {
        self.slot(h)?;
        let index = (h & 0xffff_ffff) as u32;
        let e = self.slots[index as usize].entry.take();
        self.free.push(index);
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
