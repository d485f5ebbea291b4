//! Rating aggregates kept in memory, keyed by article id, invalidated exactly on write.
//!
//! The cache holds whatever the edge wants to answer with (pre-serialised bodies and
//! their ETags, see `routes::ratings::CachedAggregate`); it knows nothing of HTTP.
//!
//! Never stale after a write through this instance: every shard has a generation
//! counter. A reader that misses takes a [`Ticket`] (the shard's generation) *before* it
//! reads the database, and its [`fill`](AggregateCache::fill) is accepted only while the
//! generation is unchanged. A writer calls [`invalidate`](AggregateCache::invalidate)
//! after its transaction committed, which removes the entry and bumps the generation. So
//! a read that began before the commit can never put the pre-commit value back, and a
//! read that begins after the invalidation sees the committed rows.
//!
//! Writes through other instances (PostgreSQL deployments run several) cannot reach this
//! cache, so entries also expire: an entry is at most `ttl` older than the start of the
//! database read that produced it. The cache is bounded to `entries` values; a full
//! shard drops its oldest entry. Zero entries or a zero TTL turns it off.
//!
//! Hot entries are also kept per worker thread ([`WorkerCopies`], read through
//! [`get_copy`](AggregateCache::get_copy)): a copy sharing no memory with the shared
//! entry, served while its shard's generation, readable without the lock, is the one
//! it was copied at. The shared map's lock and the reference counts of a shared value
//! are written by every hit, and two cores hitting the same hot article then pass
//! those cache lines back and forth on every request; a worker's own copy is only
//! read, and the generation only changes when something is invalidated.

use std::{
    cell::RefCell,
    collections::HashMap,
    hash::BuildHasher,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

/// Shards (each a mutex around a map): enough that workers rarely meet on one lock.
const SHARDS: usize = 32;

/// Per-article values of type `V`, shared behind `Arc` so a hit clones a pointer only.
pub struct AggregateCache<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    /// Entries per shard; `shards.len() * per_shard` never exceeds the configured bound.
    per_shard: usize,
    ttl: Duration,
    /// foldhash (as actix-http uses): seeded per process, several times faster than
    /// SipHash on short ids, and a shard holds a bounded number of entries anyway.
    hasher: foldhash::fast::RandomState,
    /// Bumped by every invalidation, of any id (see [`AggregateCache::version`]).
    version: AtomicU64,
    /// Each shard's generation, written under its lock, read without it by
    /// [`get_copy`](AggregateCache::get_copy).
    generations: Box<[Generation]>,
}

/// A shard's generation on cache lines of its own, so invalidating one shard does not
/// disturb the readers of its neighbours.
#[derive(Default)]
#[repr(align(128))]
struct Generation(AtomicU64);

/// A value that can be copied into memory that shares nothing with the original, not
/// even a reference count (see [`WorkerCopies`]).
pub trait WorkerCopy {
    fn worker_copy(&self) -> Self;
}

/// One worker thread's copies of the entries it serves from an [`AggregateCache`], at
/// most `capacity` of them. Built per worker (it is not `Send`).
pub struct WorkerCopies<V> {
    entries: RefCell<HashMap<Box<str>, Copied<V>, foldhash::fast::RandomState>>,
    capacity: usize,
}

struct Copied<V> {
    value: Rc<V>,
    shard: usize,
    /// The shard's generation when the shared entry was copied.
    generation: u64,
    expires: Instant,
}

impl<V> WorkerCopies<V> {
    pub fn new(capacity: usize) -> Self {
        WorkerCopies {
            entries: RefCell::default(),
            capacity,
        }
    }
}

struct Shard<V> {
    map: HashMap<Box<str>, Slot<V>, foldhash::fast::RandomState>,
    /// Bumped by every invalidation in this shard; fills taken before are refused.
    generation: u64,
}

struct Slot<V> {
    value: Arc<V>,
    expires: Instant,
}

/// Permission to fill one id's entry, valid only while nothing in its shard was
/// invalidated since it was taken. Take it before reading the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    shard: usize,
    generation: u64,
    taken: Instant,
}

impl<V> AggregateCache<V> {
    /// A cache of at most `entries` values, each kept at most `ttl`. Either being zero
    /// turns the cache off: every lookup misses and fills are dropped.
    pub fn new(entries: usize, ttl: Duration) -> Self {
        let (shards, per_shard) = if entries == 0 || ttl.is_zero() {
            (0, 0)
        } else {
            // Fewer shards than SHARDS for tiny bounds, so the bound holds exactly.
            let shards = entries.min(SHARDS);
            (shards, entries / shards)
        };
        AggregateCache {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::default(),
                        generation: 0,
                    })
                })
                .collect(),
            per_shard,
            ttl,
            hasher: foldhash::fast::RandomState::default(),
            version: AtomicU64::new(0),
            generations: (0..shards).map(|_| Generation::default()).collect(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.shards.is_empty()
    }

    /// How many values are held (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_of(&self, id: &str) -> usize {
        // Only called when enabled (at least one shard).
        (self.hasher.hash_one(id) % self.shards.len() as u64) as usize
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard<V>> {
        // A panic while holding the lock cannot leave a map half-updated in a way that
        // matters here (every operation is one insert or remove), so poisoning is ignored.
        self.shards[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The live value for `id`, or on a miss the ticket to fill it with after reading the
    /// database. A disabled cache always misses.
    pub fn get(&self, id: &str) -> Result<Arc<V>, Ticket> {
        self.get_until(id).map(|(value, _)| value)
    }

    /// As [`get`](Self::get), with the instant the value stops being served (for
    /// something built from several values, which must not outlive any of them).
    pub fn get_until(&self, id: &str) -> Result<(Arc<V>, Instant), Ticket> {
        let now = Instant::now();
        if !self.is_enabled() {
            return Err(Ticket {
                shard: usize::MAX,
                generation: 0,
                taken: now,
            });
        }
        let shard = self.shard_of(id);
        let mut s = self.lock(shard);
        match s.map.get(id) {
            Some(slot) if slot.expires > now => return Ok((slot.value.clone(), slot.expires)),
            Some(_) => {
                s.map.remove(id);
            }
            None => {}
        }
        Err(Ticket {
            shard,
            generation: s.generation,
            taken: now,
        })
    }

    /// Stores `value` for `id` unless something in its shard was invalidated since
    /// `ticket` was taken (then the value may predate a commit and is dropped). Returns
    /// whether it was stored.
    pub fn fill(&self, ticket: Ticket, id: &str, value: Arc<V>) -> bool {
        self.fill_until(ticket, id, value, None)
    }

    /// As [`fill`](Self::fill), but served no later than `not_after` either.
    pub fn fill_until(
        &self,
        ticket: Ticket,
        id: &str,
        value: Arc<V>,
        not_after: Option<Instant>,
    ) -> bool {
        if !self.is_enabled() || ticket.shard != self.shard_of(id) {
            return false;
        }
        // Counted from the ticket, i.e. from before the database read.
        let Some(expires) = ticket.taken.checked_add(self.ttl) else {
            return false;
        };
        let expires = not_after.map_or(expires, |t| t.min(expires));
        if expires <= Instant::now() {
            return false;
        }
        let mut s = self.lock(ticket.shard);
        if s.generation != ticket.generation {
            return false;
        }
        if s.map.len() >= self.per_shard && !s.map.contains_key(id) {
            // Full: drop the entry that will expire first, i.e. the oldest.
            if let Some(oldest) = s
                .map
                .iter()
                .min_by_key(|(_, slot)| slot.expires)
                .map(|(k, _)| k.clone())
            {
                s.map.remove(&oldest);
            }
        }
        s.map.insert(id.into(), Slot { value, expires });
        true
    }

    /// A number that changes at every [`invalidate`](Self::invalidate), of any id: a
    /// value built from several entries after reading version `v` is current while the
    /// version is still `v`.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// Forgets `id` and refuses every fill whose ticket was taken before now. Call it
    /// after the write that changed the article's rating has committed.
    pub fn invalidate(&self, id: &str) {
        // Also when disabled: what is built from this cache's values elsewhere (the
        // batch bodies of `routes::ratings::batch`) is keyed by the version.
        self.version.fetch_add(1, Ordering::SeqCst);
        if !self.is_enabled() {
            return;
        }
        let shard = self.shard_of(id);
        let mut s = self.lock(shard);
        s.map.remove(id);
        s.generation = s.generation.wrapping_add(1);
        // Under the lock, so the published generations only ever grow.
        self.generations[shard]
            .0
            .store(s.generation, Ordering::Release);
    }

    /// As [`get_until`](Self::get_until), served from this worker's `copies` when it
    /// holds a live copy made at the shard's current generation; otherwise from the
    /// shared map, whose live value is then copied into `copies`.
    pub fn get_copy(&self, copies: &WorkerCopies<V>, id: &str) -> Result<(Rc<V>, Instant), Ticket>
    where
        V: WorkerCopy,
    {
        let now = Instant::now();
        if !self.is_enabled() || copies.capacity == 0 {
            return self
                .get_until(id)
                .map(|(v, until)| (Rc::new(v.worker_copy()), until));
        }
        let shard = self.shard_of(id);
        let current = self.generations[shard].0.load(Ordering::Acquire);
        let mut entries = copies.entries.borrow_mut();
        if let Some(c) = entries.get(id) {
            if c.generation == current && c.expires > now {
                return Ok((c.value.clone(), c.expires));
            }
        }
        let (shared, expires, generation) = {
            let mut s = self.lock(shard);
            match s.map.get(id) {
                Some(slot) if slot.expires > now => {
                    (slot.value.clone(), slot.expires, s.generation)
                }
                found => {
                    if found.is_some() {
                        s.map.remove(id);
                    }
                    return Err(Ticket {
                        shard,
                        generation: s.generation,
                        taken: now,
                    });
                }
            }
        };
        let value = Rc::new(shared.worker_copy());
        if entries.len() >= copies.capacity && !entries.contains_key(id) {
            // Full: keep the copies still current; if all are, start over.
            entries.retain(|_, c| {
                c.expires > now
                    && c.generation == self.generations[c.shard].0.load(Ordering::Acquire)
            });
            if entries.len() >= copies.capacity {
                entries.clear();
            }
        }
        entries.insert(
            id.into(),
            Copied {
                value: value.clone(),
                shard,
                generation,
                expires,
            },
        );
        Ok((value, expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    fn cache(entries: usize, ttl: Duration) -> AggregateCache<u32> {
        AggregateCache::new(entries, ttl)
    }

    fn ticket(c: &AggregateCache<u32>, id: &str) -> Ticket {
        c.get(id).expect_err("a miss")
    }

    #[test]
    fn every_invalidation_moves_the_version_and_fills_can_be_cut_short() {
        let c = cache(100, LONG);
        let v = c.version();
        c.invalidate("a");
        assert_ne!(c.version(), v);
        let v = c.version();
        c.invalidate("never-cached");
        assert_ne!(c.version(), v, "any id, cached or not");
        let off = cache(0, LONG);
        let v = off.version();
        off.invalidate("a");
        assert_ne!(off.version(), v, "also when the cache is off");

        let soon = Instant::now() + Duration::from_millis(30);
        assert!(c.fill_until(ticket(&c, "b"), "b", Arc::new(2), Some(soon)));
        let (value, until) = c.get_until("b").unwrap();
        assert_eq!((*value, until), (2, soon));
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.get("b").is_err(), "not served past its bound");
    }

    impl WorkerCopy for u32 {
        fn worker_copy(&self) -> Self {
            *self
        }
    }

    #[test]
    fn a_workers_copy_is_served_until_its_shard_moves_on() {
        let c = cache(100, LONG);
        let (a, b) = (WorkerCopies::new(10), WorkerCopies::new(10));
        let t = c.get_copy(&a, "x").expect_err("nothing yet");
        assert!(c.fill(t, "x", Arc::new(1)));
        assert_eq!(*c.get_copy(&a, "x").unwrap().0, 1);
        assert_eq!(*c.get_copy(&b, "x").unwrap().0, 1);
        assert_eq!(a.entries.borrow().len(), 1, "a copy is kept");
        // Invalidated: neither worker's copy is served, though both still hold one.
        c.invalidate("x");
        assert!(c.get_copy(&a, "x").is_err());
        assert!(c.get_copy(&b, "x").is_err());
        let t = c.get_copy(&a, "x").unwrap_err();
        assert!(c.fill(t, "x", Arc::new(2)));
        assert_eq!(*c.get_copy(&a, "x").unwrap().0, 2);
        assert_eq!(*c.get_copy(&b, "x").unwrap().0, 2);
        // A fill taken before an invalidation is refused, for copies as for the map.
        let t = c.get_copy(&a, "y").unwrap_err();
        c.invalidate("y");
        assert!(!c.fill(t, "y", Arc::new(9)));
        assert!(c.get_copy(&a, "y").is_err());
    }

    #[test]
    fn a_workers_copy_expires_with_the_entry_and_copies_stay_bounded() {
        let c = cache(100, Duration::from_millis(30));
        let a = WorkerCopies::new(3);
        let t = c.get_copy(&a, "x").unwrap_err();
        assert!(c.fill(t, "x", Arc::new(1)));
        assert!(c.get_copy(&a, "x").is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            c.get_copy(&a, "x").is_err(),
            "not served past its entry's TTL"
        );

        let c = cache(100, LONG);
        for (i, id) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            let t = c.get_copy(&a, id).unwrap_err();
            assert!(c.fill(t, id, Arc::new(i as u32)));
            assert_eq!(*c.get_copy(&a, id).unwrap().0, i as u32);
            assert!(a.entries.borrow().len() <= 3);
        }
        let off = WorkerCopies::new(0);
        assert_eq!(
            *c.get_copy(&off, "e").unwrap().0,
            4,
            "no copies kept: the map's value"
        );
        assert!(off.entries.borrow().is_empty());
    }

    #[test]
    fn a_fill_is_served_until_invalidated() {
        let c = cache(100, LONG);
        let t = ticket(&c, "a");
        assert!(c.fill(t, "a", Arc::new(1)));
        assert_eq!(*c.get("a").unwrap(), 1);
        c.invalidate("a");
        assert!(c.get("a").is_err(), "gone after invalidation");
    }

    #[test]
    fn a_fill_whose_ticket_predates_an_invalidation_is_refused() {
        let c = cache(100, LONG);
        // A reader misses and starts reading the database …
        let t = ticket(&c, "a");
        // … a writer commits and invalidates …
        c.invalidate("a");
        // … and the reader's (possibly pre-commit) value must not be stored.
        assert!(!c.fill(t, "a", Arc::new(1)));
        assert!(c.get("a").is_err());
        // A reader starting after the invalidation fills normally.
        let t = ticket(&c, "a");
        assert!(c.fill(t, "a", Arc::new(2)));
        assert_eq!(*c.get("a").unwrap(), 2);
    }

    #[test]
    fn an_invalidation_after_the_fill_removes_it() {
        let c = cache(100, LONG);
        let t = ticket(&c, "a");
        assert!(c.fill(t, "a", Arc::new(1)));
        c.invalidate("a");
        assert!(c.get("a").is_err());
        assert!(c.is_empty());
    }

    #[test]
    fn invalidating_another_id_never_lets_a_stale_fill_in() {
        // Generations are per shard: an invalidation of any id in the shard may refuse
        // a fill (costing one more miss), but never lets a stale one through.
        let c = cache(1, LONG); // one shard
        let t = ticket(&c, "a");
        c.invalidate("b");
        assert!(!c.fill(t, "a", Arc::new(1)));
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let ttl = Duration::from_millis(30);
        let c = cache(100, ttl);
        let t = ticket(&c, "a");
        assert!(c.fill(t, "a", Arc::new(1)), "stored");
        std::thread::sleep(ttl * 2);
        assert!(c.get("a").is_err(), "expired");
        assert!(c.is_empty(), "an expired entry is dropped when met");
    }

    #[test]
    fn a_ticket_older_than_the_ttl_fills_nothing() {
        let ttl = Duration::from_millis(20);
        let c = cache(100, ttl);
        let t = ticket(&c, "a");
        std::thread::sleep(ttl * 2);
        assert!(!c.fill(t, "a", Arc::new(1)), "would be born expired");
    }

    #[test]
    fn the_number_of_entries_is_bounded() {
        for bound in [1, 5, 31, 32, 33, 100, 1000] {
            let c = cache(bound, LONG);
            for i in 0..bound * 4 + 50 {
                let id = format!("article-{i}");
                let t = ticket(&c, &id);
                assert!(c.fill(t, &id, Arc::new(i as u32)), "fill {id}");
                assert!(c.len() <= bound, "{} entries with bound {bound}", c.len());
                assert_eq!(*c.get(&id).unwrap(), i as u32, "the newest stays");
            }
            assert!(c.len() >= bound / 2, "bound {bound} is mostly used");
        }
    }

    #[test]
    fn two_fills_of_the_same_id_in_a_full_shard_evict_nothing() {
        // Two readers missed together; both fill.
        let c = cache(1, LONG);
        let (t1, t2) = (ticket(&c, "a"), ticket(&c, "a"));
        assert!(c.fill(t1, "a", Arc::new(1)));
        assert!(c.fill(t2, "a", Arc::new(2)));
        assert_eq!(c.len(), 1);
        assert_eq!(*c.get("a").unwrap(), 2);
    }

    #[test]
    fn zero_entries_or_zero_ttl_disable_the_cache() {
        for c in [cache(0, LONG), cache(100, Duration::ZERO)] {
            assert!(!c.is_enabled());
            let t = ticket(&c, "a");
            assert!(!c.fill(t, "a", Arc::new(1)));
            assert!(c.get("a").is_err());
            c.invalidate("a");
            assert_eq!(c.len(), 0);
        }
    }

    #[test]
    fn concurrent_readers_never_keep_a_value_older_than_the_last_invalidation() {
        // The database is a counter; a writer bumps it then invalidates. Readers read it
        // between taking a ticket and filling. After each write, any value served must
        // be at least the written one.
        use std::sync::atomic::{AtomicU32, Ordering};
        let c = Arc::new(cache(8, LONG));
        let db = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (c, db, stop) = (c.clone(), db.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Err(t) = c.get("a") {
                            let v = db.load(Ordering::SeqCst);
                            std::thread::yield_now();
                            c.fill(t, "a", Arc::new(v));
                        }
                    }
                })
            })
            .collect();
        for n in 1..=500u32 {
            db.store(n, Ordering::SeqCst);
            c.invalidate("a");
            // Look a few times, letting readers' fills land in between.
            for _ in 0..3 {
                if let Ok(v) = c.get("a") {
                    assert!(*v >= n, "served {v} after writing {n}");
                }
                std::thread::yield_now();
            }
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
    }
}
