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

use std::{
    collections::HashMap,
    hash::BuildHasher,
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
