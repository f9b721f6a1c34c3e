//! Recently read entities, kept parsed so a retrieval by id skips the database and the JSON
//! parse. Only for a broker that is its database's only writer (a SQLite file or memory
//! database: one process); on PostgreSQL other nodes write too and nothing is cached.
//!
//! Invariant: a cached entity is never older than the last committed write that this broker
//! acknowledged: every write to an entity has [`EntityCache::forget`] run when its transaction
//! commits, by whoever commits it (`Write::after_commit`), before the write is acknowledged. A
//! reader that loaded an entity while a write to it committed may insert the old version, but
//! it notices the write's epoch and takes the version out again ([`EntityCache::fill`]).

use crate::Retrieved;
use quick_cache::{Equivalent, Weighter};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Epoch stripes: a write bumps one, so readers of other entities keep filling the cache.
const STRIPES: usize = 64;

#[derive(Clone)]
struct ByteWeight;

impl Weighter<(String, String), Cached> for ByteWeight {
    fn weight(&self, _key: &(String, String), value: &Cached) -> u64 {
        value.weight
    }
}

#[derive(Clone)]
struct Cached {
    entity: Arc<Retrieved>,
    /// About what the parsed entity holds in memory.
    weight: u64,
}

/// A borrowed key that hashes and compares like the owned `(tenant, id)`.
#[derive(Hash)]
struct KeyRef<'a>(&'a str, &'a str);

impl Equivalent<(String, String)> for KeyRef<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

pub(crate) struct EntityCache {
    entries: quick_cache::sync::Cache<(String, String), Cached, ByteWeight>,
    epochs: [AtomicU64; STRIPES],
    hasher: std::hash::RandomState,
}

/// What a reader noted before it went to the database.
pub(crate) struct Ticket(u64);

impl EntityCache {
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        // Entities of a few hundred bytes of JSON are a few KiB parsed.
        let estimated_items = (capacity_bytes / 4096).max(16) as usize;
        Self {
            entries: quick_cache::sync::Cache::with_weighter(
                estimated_items,
                capacity_bytes,
                ByteWeight,
            ),
            epochs: std::array::from_fn(|_| AtomicU64::new(0)),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn stripe(&self, tenant: &str, id: &str) -> &AtomicU64 {
        &self.epochs[self.hasher.hash_one(KeyRef(tenant, id)) as usize % STRIPES]
    }

    pub(crate) fn get(&self, tenant: &str, id: &str) -> Option<Arc<Retrieved>> {
        self.entries
            .get(&KeyRef(tenant, id))
            .map(|cached| cached.entity)
    }

    /// Call before reading the entity from the database.
    pub(crate) fn ticket(&self, tenant: &str, id: &str) -> Ticket {
        Ticket(self.stripe(tenant, id).load(Ordering::SeqCst))
    }

    /// Keeps what was read under `ticket`, unless a write to it committed meanwhile.
    pub(crate) fn fill(
        &self,
        tenant: &str,
        ticket: Ticket,
        entity: &Arc<Retrieved>,
        text_bytes: usize,
    ) {
        let id = entity.entity.id.as_str();
        let stripe = self.stripe(tenant, id);
        if stripe.load(Ordering::SeqCst) != ticket.0 {
            return;
        }
        let cached = Cached {
            entity: entity.clone(),
            weight: (text_bytes as u64 * 4).max(1024),
        };
        self.entries
            .insert((tenant.to_owned(), id.to_owned()), cached);
        // A write that committed after the check above and forgot the entity before the
        // insert would leave the old version behind: look again.
        if stripe.load(Ordering::SeqCst) != ticket.0 {
            self.entries.remove(&KeyRef(tenant, id));
        }
    }

    /// Drops entity `id` of `tenant`; called after a write to it committed.
    pub(crate) fn forget(&self, tenant: &str, id: &str) {
        self.stripe(tenant, id).fetch_add(1, Ordering::SeqCst);
        self.entries.remove(&KeyRef(tenant, id));
    }
}
