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
    /// Writes under way per stripe, from before their COMMIT until they forgot their entity:
    /// while one is, a reader may already see its change in the database, so nothing it read
    /// before may be kept.
    in_flight: [AtomicU64; STRIPES],
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
            in_flight: std::array::from_fn(|_| AtomicU64::new(0)),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn index(&self, tenant: &str, id: &str) -> usize {
        self.hasher.hash_one(KeyRef(tenant, id)) as usize % STRIPES
    }

    fn stripe(&self, tenant: &str, id: &str) -> &AtomicU64 {
        &self.epochs[self.index(tenant, id)]
    }

    /// A write of entity `id` begins (before its COMMIT): until the returned guard is dropped,
    /// no read of the entity's stripe is kept. `Writing::committed` forgets the entity.
    pub(crate) fn writing(self: &Arc<Self>, tenant: &str, id: &str) -> Writing {
        let stripe = self.index(tenant, id);
        self.in_flight[stripe].fetch_add(1, Ordering::SeqCst);
        Writing {
            cache: self.clone(),
            stripe,
            tenant: tenant.to_owned(),
            id: id.to_owned(),
        }
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
        let index = self.index(tenant, id);
        let (stripe, in_flight) = (&self.epochs[index], &self.in_flight[index]);
        let current =
            || stripe.load(Ordering::SeqCst) == ticket.0 && in_flight.load(Ordering::SeqCst) == 0;
        if !current() {
            return;
        }
        let cached = Cached {
            entity: entity.clone(),
            weight: (text_bytes as u64 * 4).max(1024),
        };
        self.entries
            .insert((tenant.to_owned(), id.to_owned()), cached);
        // A write that began after the check above would leave the old version behind
        // (another reader may see its change already): look again.
        if !current() {
            self.entries.remove(&KeyRef(tenant, id));
        }
    }

    /// Drops entity `id` of `tenant`; called after a write to it committed.
    pub(crate) fn forget(&self, tenant: &str, id: &str) {
        self.stripe(tenant, id).fetch_add(1, Ordering::SeqCst);
        self.entries.remove(&KeyRef(tenant, id));
    }
}

/// A write of one entity under way (see [`EntityCache::writing`]).
pub(crate) struct Writing {
    cache: Arc<EntityCache>,
    stripe: usize,
    tenant: String,
    id: String,
}

impl Writing {
    /// The write committed: the entity is forgotten, then (as the guard drops) its stripe may
    /// be cached again.
    pub(crate) fn committed(self) {
        self.cache.forget(&self.tenant, &self.id);
    }
}

impl Drop for Writing {
    /// Also when the write rolled back or was abandoned (its after-commit work dropped).
    fn drop(&mut self) {
        self.cache.in_flight[self.stripe].fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Entity;

    fn entity(value: i64) -> Arc<Retrieved> {
        Arc::new(Retrieved::new(crate::Stored {
            entity: Entity {
                id: "urn:ngsi-ld:T:1".into(),
                types: vec!["urn:t".into()],
                attrs: serde_json::json!({"urn:count": {"type": "Property", "value": value}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                created_at: String::new(),
                modified_at: String::new(),
                scope: None,
            },
            owner: "transport".into(),
            public: false,
        }))
    }

    fn cached_count(cache: &EntityCache) -> Option<i64> {
        cache
            .get("city", "urn:ngsi-ld:T:1")
            .and_then(|e| e.entity.attrs["urn:count"]["value"].as_i64())
    }

    /// A read is kept only if no write of its entity's stripe began or ended since the reader
    /// took its ticket: while a write is under way, readers may already see its change in the
    /// database, and an older read kept then would make them see the entity go back.
    #[test]
    fn reads_from_before_or_during_a_write_are_not_kept() {
        let cache = Arc::new(EntityCache::new(1 << 20));
        // Read before the write began, kept after it began: dropped.
        let ticket = cache.ticket("city", "urn:ngsi-ld:T:1");
        let writing = cache.writing("city", "urn:ngsi-ld:T:1");
        cache.fill("city", ticket, &entity(4), 100);
        assert_eq!(cached_count(&cache), None);
        // A read during the write, even of the new value: not kept either.
        let ticket = cache.ticket("city", "urn:ngsi-ld:T:1");
        cache.fill("city", ticket, &entity(5), 100);
        assert_eq!(cached_count(&cache), None);
        writing.committed();
        // After the write: kept.
        let ticket = cache.ticket("city", "urn:ngsi-ld:T:1");
        cache.fill("city", ticket, &entity(5), 100);
        assert_eq!(cached_count(&cache), Some(5));
        // A write that is abandoned (its after-commit work dropped) blocks nothing afterwards,
        // and a kept copy stays (nothing changed).
        drop(cache.writing("city", "urn:ngsi-ld:T:1"));
        assert_eq!(cached_count(&cache), Some(5));
        let ticket = cache.ticket("city", "urn:ngsi-ld:T:1");
        cache.forget("city", "urn:ngsi-ld:T:1");
        cache.fill("city", ticket, &entity(5), 100);
        assert_eq!(
            cached_count(&cache),
            None,
            "a ticket from before a forget is stale"
        );
    }
}
