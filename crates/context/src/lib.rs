//! The city information model: an NGSI-LD context broker (ETSI GS CIM 009) on the platform's
//! storage, identity and audit. Entities belong to the department that created them; a
//! department reads its own and the city's open data, a platform admin reads all.

pub mod api;
mod cache;
pub mod city;
pub mod distributed;
pub mod entity_maps;
pub mod errors;
pub mod geoquery;
pub mod jsonld;
pub mod linked;
mod migrations;
pub mod model;
mod negotiation;
pub use negotiation::ngsi_path_ids;
pub mod query;
pub mod registrations;
pub mod subscriptions;
pub mod temporal;

pub use migrations::MIGRATIONS;

use model::Entity;
use serde_json::{Map, Value};
use yunnao_core::Problem;
use yunnao_identity::{AuditEntry, Identity};
use yunnao_store::{Arg, Db, DbResultExt, Write, sqlx};

#[derive(Debug, Clone)]
pub struct ContextConfig {
    /// Authentication on `/ngsi-ld/v1` (on by default; off only behind a policy-enforcement
    /// proxy or for conformance suites).
    pub auth: bool,
    /// The tenant used when a request names none: the city.
    pub default_tenant: String,
    /// Largest page (`limit`).
    pub max_limit: usize,
    /// URL prefixes remote user @contexts may be fetched from (nothing else is fetched).
    pub context_allow: Vec<String>,
    /// Memory for recently read entities, kept parsed for retrievals by id (SQLite only, where
    /// this broker is the only writer); 0 turns the cache off.
    pub entity_cache_bytes: u64,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            auth: true,
            default_tenant: "city".into(),
            max_limit: 100_000,
            context_allow: Vec::new(),
            entity_cache_bytes: 160 << 20,
        }
    }
}

/// The broker: cheap to clone (axum clones the state for every request), one shared
/// [`BrokerParts`] behind it.
#[derive(Clone)]
pub struct ContextBroker(std::sync::Arc<BrokerParts>);

impl std::ops::Deref for ContextBroker {
    type Target = BrokerParts;
    fn deref(&self) -> &BrokerParts {
        &self.0
    }
}

pub struct BrokerParts {
    pub db: Db,
    pub identity: Identity,
    pub config: ContextConfig,
    pub notifier: subscriptions::Notifier,
    /// Registered context sources, for the operations forwarded to them.
    pub sources: distributed::Sources,
    pub contexts: std::sync::Arc<jsonld::RemoteContexts>,
    /// `None` on PostgreSQL: other nodes write to the same entities.
    cache: Option<std::sync::Arc<cache::EntityCache>>,
    /// When this broker started (its uptime in `/info/sourceIdentity`).
    pub started: std::time::Instant,
}

/// Who is reading: decides which entities exist for the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Viewer {
    /// Platform admins, and everyone when authentication is off.
    All,
    Department(String),
    /// No credential: open data only.
    Public,
}

impl Viewer {
    /// Does `stored` exist for this viewer? (What [`ContextBroker::visibility`] asks the
    /// database.)
    pub fn sees(&self, stored: &Stored) -> bool {
        match self {
            Viewer::All => true,
            Viewer::Department(department) => stored.public || stored.owner == *department,
            Viewer::Public => stored.public,
        }
    }
}

/// A stored entity with its owner.
#[derive(Debug, Clone)]
pub struct Stored {
    pub entity: Entity,
    pub owner: String,
    pub public: bool,
}

impl Stored {
    /// Whose it is, for the subscriptions that may hear of it.
    pub fn holder(&self) -> subscriptions::Holder<'_> {
        subscriptions::Holder {
            owner: &self.owner,
            public: self.public,
        }
    }
}

/// An entity as [`ContextBroker::get`] returns it, with the answers to the plain retrievals of
/// it (core context, whole entity, one per format) made once while it stays cached.
#[derive(Debug)]
pub struct Retrieved {
    pub stored: Stored,
    bodies: [std::sync::OnceLock<axum::body::Bytes>; 3],
}

impl std::ops::Deref for Retrieved {
    type Target = Stored;
    fn deref(&self) -> &Stored {
        &self.stored
    }
}

impl Retrieved {
    fn new(stored: Stored) -> Self {
        Self {
            stored,
            bodies: Default::default(),
        }
    }

    /// The answer in `format`, made by `make` the first time.
    pub fn body(
        &self,
        format: model::Format,
        make: impl FnOnce() -> Result<Vec<u8>, Problem>,
    ) -> Result<axum::body::Bytes, Problem> {
        let slot = &self.bodies[format as usize];
        if let Some(body) = slot.get() {
            return Ok(body.clone());
        }
        let body = axum::body::Bytes::from(make()?);
        Ok(slot.get_or_init(|| body).clone())
    }
}

/// Which entities a query reads from storage; the rest of the query runs on them in memory.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// Expanded types; any of them.
    pub types: Vec<String>,
    pub ids: Vec<String>,
    /// (min lon, min lat, max lon, max lat) the entity's location must intersect.
    pub bbox: Option<(f64, f64, f64, f64)>,
    /// Pagination done by the database when nothing else filters in memory.
    pub page: Option<(usize, usize)>,
    /// Pagination done by the database if `conditions` decide every candidate (a complete
    /// [`query::Prefilter`]); otherwise every candidate is read for the exact evaluation.
    pub page_if_decided: Option<(usize, usize)>,
    /// Further conditions (`?` placeholders with their values), e.g. a `q` pre-filter.
    pub conditions: Vec<(String, Vec<Arg<'static>>)>,
}

/// What [`ContextBroker::select`] read.
#[derive(Debug)]
pub struct Selected {
    pub entities: Vec<Stored>,
    /// The database paged (and counted, when asked): `entities` is the page.
    pub paged: bool,
    /// How many there are, when the database counted.
    pub total: Option<i64>,
}

/// The columns of a [`Row`].
macro_rules! columns {
    () => {
        "id, types, attrs, created_at, modified_at, owner_department, public"
    };
}
const COLUMNS: &str = columns!();
/// An entity by tenant and id, whoever may see it.
pub(crate) const SELECT_BY_ID: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM ngsi_entities WHERE tenant = $1 AND id = $2"
);

pub(crate) type Row = (String, String, String, String, String, String, i64);

pub(crate) fn from_row(row: Row) -> Result<Stored, Problem> {
    let (id, types, attrs, created_at, modified_at, owner, public) = row;
    let types: Vec<String> =
        serde_json::from_str(&types).map_err(|e| Problem::internal(format!("entity {id}: {e}")))?;
    let mut attrs: Map<String, Value> =
        serde_json::from_str(&attrs).map_err(|e| Problem::internal(format!("entity {id}: {e}")))?;
    let scope = attrs.remove(model::SCOPE_KEY);
    Ok(Stored {
        entity: Entity {
            id,
            types,
            attrs,
            created_at,
            modified_at,
            scope,
        },
        owner,
        public: public != 0,
    })
}

fn json(value: &impl serde::Serialize) -> Result<String, Problem> {
    serde_json::to_string(value).map_err(|e| Problem::internal(e.to_string()))
}

/// The stored form of an entity's attributes: with its scope, if it has one.
fn stored_attrs(entity: &Entity) -> Result<String, Problem> {
    match &entity.scope {
        None => json(&entity.attrs),
        Some(scope) => {
            let mut attrs = entity.attrs.clone();
            attrs.insert(model::SCOPE_KEY.into(), scope.clone());
            json(&attrs)
        }
    }
}

fn bbox_of(entity: &Entity) -> Option<(f64, f64, f64, f64)> {
    use geo::BoundingRect;
    let rect = entity.location()?.bounding_rect()?;
    Some((rect.min().x, rect.min().y, rect.max().x, rect.max().y))
}

impl ContextBroker {
    /// The broker, with its subscriptions loaded; other nodes' subscription changes are picked
    /// up every 5 s.
    pub async fn start(db: Db, identity: Identity, config: ContextConfig) -> Result<Self, Problem> {
        let contexts = std::sync::Arc::new(jsonld::RemoteContexts::new(
            config.context_allow.clone(),
            Some(db.clone()),
        ));
        let notifier = subscriptions::Notifier::new(db.clone(), contexts.clone());
        notifier.reload().await?;
        let sources = distributed::Sources::new(db.clone());
        sources.reload().await?;
        let (reloader, sources_reloader) = (notifier.clone(), sources.clone());
        tokio::spawn(async move {
            let period = std::time::Duration::from_secs(5);
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                interval.tick().await;
                if let Err(problem) = reloader.reload().await {
                    tracing::error!(%problem, "subscription reload failed");
                }
                if let Err(problem) = sources_reloader.reload().await {
                    tracing::error!(%problem, "registration reload failed");
                }
            }
        });
        let cache = (db.dialect().embedded() && config.entity_cache_bytes > 0)
            .then(|| std::sync::Arc::new(cache::EntityCache::new(config.entity_cache_bytes)));
        let broker = Self(std::sync::Arc::new(BrokerParts {
            db,
            identity,
            config,
            notifier,
            sources,
            contexts,
            cache,
            started: std::time::Instant::now(),
        }));
        // Periodic subscriptions, checked every second while the broker lives.
        let parts = std::sync::Arc::downgrade(&broker.0);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                interval.tick().await;
                let Some(parts) = parts.upgrade() else {
                    break;
                };
                if let Err(problem) = Self(parts).notify_periodically().await {
                    tracing::error!(%problem, "periodic notifications failed");
                }
            }
        });
        Ok(broker)
    }

    pub async fn tenant_exists(&self, tenant: &str) -> Result<bool, Problem> {
        if tenant == self.config.default_tenant {
            return Ok(true);
        }
        let found: Option<String> =
            sqlx::query_scalar("SELECT name FROM ngsi_tenants WHERE name = $1")
                .bind(tenant)
                .fetch_optional(self.db.pool())
                .await
                .db()?;
        Ok(found.is_some())
    }

    fn visibility(viewer: &Viewer, first_param: usize) -> (String, Option<String>) {
        match viewer {
            Viewer::All => (String::new(), None),
            Viewer::Department(department) => (
                format!(" AND (owner_department = ${first_param} OR public = 1)"),
                Some(department.clone()),
            ),
            Viewer::Public => (" AND public = 1".into(), None),
        }
    }

    /// One entity, if it exists for this viewer.
    pub async fn get(
        &self,
        tenant: &str,
        id: &str,
        viewer: &Viewer,
    ) -> Result<Option<std::sync::Arc<Retrieved>>, Problem> {
        let Some(cache) = &self.cache else {
            let (visible, department) = Self::visibility(viewer, 3);
            let sql = format!(
                "SELECT {COLUMNS} FROM ngsi_entities WHERE tenant = $1 AND id = $2{visible}"
            );
            let mut params = vec![tenant, id];
            if let Some(department) = &department {
                params.push(department);
            }
            let row = self.read_row(&sql, &params).await?;
            return Ok(row
                .map(from_row)
                .transpose()?
                .map(|stored| std::sync::Arc::new(Retrieved::new(stored))));
        };
        if let Some(entity) = cache.get(tenant, id) {
            return Ok(viewer.sees(&entity).then_some(entity));
        }
        let ticket = cache.ticket(tenant, id);
        let Some(row) = self.read_row(SELECT_BY_ID, &[tenant, id]).await? else {
            return Ok(None);
        };
        let text_bytes = row.1.len() + row.2.len();
        let entity = std::sync::Arc::new(Retrieved::new(from_row(row)?));
        cache.fill(tenant, ticket, &entity, text_bytes);
        Ok(viewer.sees(&entity).then_some(entity))
    }

    /// The row `sql` selects, read outside any write (in place on SQLite: see
    /// [`Db::fetch_optional`]).
    async fn read_row(&self, sql: &str, params: &[&str]) -> Result<Option<Row>, Problem> {
        let args: Vec<Arg> = params.iter().map(|p| Arg::text(*p)).collect();
        self.db.fetch_optional(sql, &args).await
    }

    /// After `tx` commits, no cached copy of entity `id` is left, and none read while it was
    /// under way is kept (see [`cache`]).
    fn forget_after_commit(&self, tx: &mut Write, tenant: &str, id: &str) {
        if let Some(cache) = &self.cache {
            let writing = cache.writing(tenant, id);
            tx.after_commit(Box::new(move || writing.committed()));
        }
    }

    /// Stores a new entity; AlreadyExists when the id is taken in this tenant.
    pub async fn create(&self, tenant: &str, entity: &Entity, owner: &str) -> Result<(), Problem> {
        let mut tx = self.db.begin_fast_write().await?;
        ensure_tenant(&mut tx, tenant).await?;
        if !insert_row(&mut tx, tenant, entity, owner, false).await? {
            return Err(errors::already_exists(format!(
                "entity {} exists",
                entity.id
            )));
        }
        tx.commit().await?;
        self.notifier
            .created(tenant, entity, subscriptions::Holder::new_entity(owner));
        Ok(())
    }

    /// Stores new entities in one transaction (batch create): each is created or AlreadyExists
    /// on its own; a storage failure fails them all.
    pub async fn create_many(
        &self,
        tenant: &str,
        entities: &[Entity],
        owner: &str,
    ) -> Result<Vec<Result<(), Problem>>, Problem> {
        let mut tx = self.db.begin_fast_write().await?;
        ensure_tenant(&mut tx, tenant).await?;
        let mut outcomes = Vec::with_capacity(entities.len());
        for entity in entities {
            tx.pause().await;
            outcomes.push(
                if insert_row(&mut tx, tenant, entity, owner, false).await? {
                    Ok(())
                } else {
                    Err(errors::already_exists(format!(
                        "entity {} exists",
                        entity.id
                    )))
                },
            );
        }
        tx.commit().await?;
        for (entity, outcome) in entities.iter().zip(&outcomes) {
            if outcome.is_ok() {
                self.notifier
                    .created(tenant, entity, subscriptions::Holder::new_entity(owner));
            }
        }
        Ok(outcomes)
    }

    /// Inserts entities that do not exist yet, in one transaction; returns how many were new.
    pub async fn seed(
        &self,
        tenant: &str,
        entities: &[Entity],
        owner: &str,
        public: bool,
    ) -> Result<u64, Problem> {
        let mut tx = self.db.begin_fast_write().await?;
        ensure_tenant(&mut tx, tenant).await?;
        let mut added = 0;
        for entity in entities {
            tx.pause().await;
            if insert_row(&mut tx, tenant, entity, owner, public).await? {
                added += 1;
            }
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Creates or merges many entities in one transaction (the mirror of the sensing hub):
    /// the attributes given replace the stored ones of the same name, others stay. Each item
    /// names its owning department, used when the entity is new.
    pub async fn merge_many(
        &self,
        tenant: &str,
        items: &[(Entity, String)],
    ) -> Result<(), Problem> {
        let mut tx = self.db.begin_fast_write().await?;
        ensure_tenant(&mut tx, tenant).await?;
        let lock = self.db.dialect().for_update();
        let select =
            format!("SELECT {COLUMNS} FROM ngsi_entities WHERE tenant = $1 AND id = $2{lock}");
        let mut changes = Vec::new();
        for (entity, owner) in items {
            tx.pause().await;
            let row = fetch_in(&mut tx, &select, &[tenant, &entity.id]).await?;
            match row {
                None => {
                    insert_row(&mut tx, tenant, entity, owner, false).await?;
                    let created = Changed {
                        written: entity.attrs.keys().cloned().collect(),
                        ..Changed::default()
                    };
                    let stored = Stored {
                        entity: entity.clone(),
                        owner: owner.clone(),
                        public: false,
                    };
                    changes.push((stored, created));
                }
                Some(row) => {
                    let mut stored = from_row(row)?;
                    let before = stored.entity.attrs.clone();
                    let scope = stored.entity.scope.clone();
                    for (name, attribute) in &entity.attrs {
                        stored.entity.put_attribute(name.clone(), attribute.clone());
                    }
                    stored.entity.modified_at = entity.modified_at.clone();
                    let changed = update_row(
                        &mut tx,
                        tenant,
                        (&before, scope.as_ref()),
                        &stored.entity,
                        false,
                    )
                    .await?;
                    self.forget_after_commit(&mut tx, tenant, &entity.id);
                    changes.push((stored, changed));
                }
            }
        }
        tx.commit().await?;
        for (stored, changed) in changes {
            self.notify_changes(tenant, &stored, &changed);
        }
        Ok(())
    }

    /// Marks an entity as open data (readable without a credential) or not.
    pub async fn set_open(&self, tenant: &str, id: &str, open: bool) -> Result<bool, Problem> {
        let mut tx = self.db.begin_fast_write().await?;
        let updated = tx
            .execute(
                "UPDATE ngsi_entities SET public = $3 WHERE tenant = $1 AND id = $2",
                &[Arg::text(tenant), Arg::text(id), Arg::Int(i64::from(open))],
            )
            .await?;
        self.forget_after_commit(&mut tx, tenant, id);
        tx.commit().await?;
        Ok(updated > 0)
    }

    /// Reads, changes and writes one entity in one transaction (append, update, merge,
    /// replace, attribute delete). `change` sees the stored entity and may refuse. The audit
    /// record of a change that succeeds is appended in the same transaction.
    pub async fn modify(
        &self,
        tenant: &str,
        id: &str,
        viewer: &Viewer,
        audit: Option<&AuditEntry>,
        change: impl FnOnce(&mut Stored) -> Result<(), Problem>,
    ) -> Result<Stored, Problem> {
        let mut tx = self.db.begin_fast_write().await?;
        let (stored, changed) = self
            .modify_in(&mut tx, tenant, id, viewer, change)
            .await??;
        if let Some(entry) = audit {
            self.identity.audit_in(&mut tx, entry.clone()).await?;
        }
        tx.commit().await?;
        self.notify_changes(tenant, &stored, &changed);
        Ok(stored)
    }

    /// Like [`modify`](Self::modify) for many entities in one transaction (batch update):
    /// each entity's outcome is its own (missing or refused ones are left as they are), a
    /// storage failure fails them all. One commit instead of one per entity.
    pub async fn modify_many(
        &self,
        tenant: &str,
        ids: &[String],
        viewer: &Viewer,
        mut change: impl FnMut(usize, &mut Stored) -> Result<(), Problem>,
    ) -> Result<Vec<Result<(), Problem>>, Problem> {
        let mut tx = self.db.begin_fast_write().await?;
        let mut outcomes = Vec::with_capacity(ids.len());
        let mut changes = Vec::new();
        for (index, id) in ids.iter().enumerate() {
            tx.pause().await;
            match self
                .modify_in(&mut tx, tenant, id, viewer, |stored| change(index, stored))
                .await?
            {
                Ok((stored, changed)) => {
                    if !changed.is_empty() {
                        changes.push((stored, changed));
                    }
                    outcomes.push(Ok(()));
                }
                Err(problem) => outcomes.push(Err(problem)),
            }
        }
        tx.commit().await?;
        for (stored, changed) in changes {
            self.notify_changes(tenant, &stored, &changed);
        }
        Ok(outcomes)
    }

    /// Notifies a committed change: `changed` holds the attributes created or updated, and
    /// those removed (see [`update_row`]).
    fn notify_changes(&self, tenant: &str, stored: &Stored, changed: &Changed) {
        let holder = stored.holder();
        if !changed.written.is_empty() {
            self.notifier.changed(
                tenant,
                &stored.entity,
                holder,
                &changed.written,
                &changed.previous,
            );
        }
        if !changed.removed.is_empty() {
            self.notifier
                .removed(tenant, &stored.entity, holder, &changed.removed);
        }
    }

    /// One entity's read, change and write inside `tx`. The outer error is a storage failure
    /// (the transaction is lost); the inner one is this entity's (missing, or refused by
    /// `change`, with nothing written).
    async fn modify_in(
        &self,
        tx: &mut Write,
        tenant: &str,
        id: &str,
        viewer: &Viewer,
        change: impl FnOnce(&mut Stored) -> Result<(), Problem>,
    ) -> Result<Result<(Stored, Changed), Problem>, Problem> {
        let (visible, department) = Self::visibility(viewer, 3);
        let lock = self.db.dialect().for_update();
        let sql = format!(
            "SELECT {COLUMNS} FROM ngsi_entities WHERE tenant = $1 AND id = $2{visible}{lock}"
        );
        let mut params = vec![tenant, id];
        if let Some(department) = &department {
            params.push(department);
        }
        let row = fetch_in(tx, &sql, &params).await?;
        let mut stored = match row {
            Some(row) => from_row(row)?,
            None => return Ok(Err(errors::not_found(format!("there is no entity {id}")))),
        };
        let before = stored.entity.attrs.clone();
        let scope_before = stored.entity.scope.clone();
        let types_before = stored.entity.types.clone();
        if let Err(problem) = change(&mut stored) {
            return Ok(Err(problem));
        }
        let types_changed = types_before != stored.entity.types;
        let changed = update_row(
            tx,
            tenant,
            (&before, scope_before.as_ref()),
            &stored.entity,
            types_changed,
        )
        .await?;
        self.forget_after_commit(tx, tenant, id);
        Ok(Ok((stored, changed)))
    }

    /// The entity, if the viewer can see it (else ResourceNotFound) and `allowed` lets them
    /// change it.
    async fn permitted(
        &self,
        tenant: &str,
        id: &str,
        viewer: &Viewer,
        allowed: impl FnOnce(&Stored) -> Result<(), Problem>,
    ) -> Result<std::sync::Arc<Retrieved>, Problem> {
        let stored = self
            .get(tenant, id, viewer)
            .await?
            .ok_or_else(|| errors::not_found(format!("there is no entity {id}")))?;
        allowed(&stored)?;
        Ok(stored)
    }

    /// Adds attribute instances to the history of an entity the viewer can see (temporal
    /// provision; `instances`: per attribute, an array of instances); `allowed` decides
    /// whether they may. The entity's current values are not changed here: it is returned as
    /// it stands.
    pub async fn add_history(
        &self,
        tenant: &str,
        id: &str,
        viewer: &Viewer,
        instances: &Map<String, Value>,
        allowed: impl FnOnce(&Stored) -> Result<(), Problem>,
    ) -> Result<std::sync::Arc<Retrieved>, Problem> {
        let stored = self.permitted(tenant, id, viewer, allowed).await?;
        let mut tx = self.db.begin_fast_write().await?;
        hold_history(&mut tx, tenant, id).await?;
        temporal::record_attrs(&mut tx, tenant, id, None, instances).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Changes one instance in the history of an entity the viewer can see: `change` gets
    /// the stored instance and gives its new content (ResourceNotFound when there is none);
    /// `allowed` decides whether the viewer may.
    pub async fn modify_history_instance(
        &self,
        tenant: &str,
        id: &str,
        viewer: &Viewer,
        (attr, dataset, at_ms): (&str, &str, i64),
        change: impl FnOnce(Value) -> Result<Value, Problem>,
        allowed: impl FnOnce(&Stored) -> Result<(), Problem>,
    ) -> Result<(), Problem> {
        self.permitted(tenant, id, viewer, allowed).await?;
        let missing = || errors::not_found(format!("entity {id} has no such instance of {attr}"));
        let instance = temporal::stored_instance(&self.db, tenant, id, attr, dataset, at_ms)
            .await?
            .ok_or_else(missing)?;
        let instance = change(instance)?;
        let mut tx = self.db.begin_fast_write().await?;
        hold_history(&mut tx, tenant, id).await?;
        if !temporal::replace_instance(&mut tx, tenant, id, (attr, dataset, at_ms), &instance)
            .await?
        {
            return Err(missing());
        }
        tx.commit().await
    }

    /// Deletes the `scope` of the history of an entity the viewer can see;
    /// `allowed` decides whether they may. The number of instances deleted.
    pub async fn delete_history(
        &self,
        tenant: &str,
        id: &str,
        viewer: &Viewer,
        scope: temporal::Scope<'_>,
        allowed: impl FnOnce(&Stored) -> Result<(), Problem>,
    ) -> Result<u64, Problem> {
        self.permitted(tenant, id, viewer, allowed).await?;
        let mut tx = self.db.begin_fast_write().await?;
        hold_history(&mut tx, tenant, id).await?;
        let deleted = temporal::delete_rows(&mut tx, tenant, id, scope).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Deletes an entity the viewer can see; `allowed` decides whether they may.
    pub async fn delete(
        &self,
        tenant: &str,
        id: &str,
        viewer: &Viewer,
        allowed: impl FnOnce(&Stored) -> Result<(), Problem>,
    ) -> Result<(), Problem> {
        let deleted = self.permitted(tenant, id, viewer, allowed).await?;
        let mut tx = self.db.begin_fast_write().await?;
        unindex_location(&mut tx, tenant, id).await?;
        for sql in [
            "DELETE FROM ngsi_entity_types WHERE tenant = $1 AND id = $2",
            "DELETE FROM ngsi_entities WHERE tenant = $1 AND id = $2",
        ] {
            tx.execute(sql, &[Arg::text(tenant), Arg::text(id)]).await?;
        }
        self.forget_after_commit(&mut tx, tenant, id);
        tx.commit().await?;
        self.notifier
            .deleted(tenant, &deleted.entity, deleted.holder());
        Ok(())
    }

    /// Entities of the selection visible to `viewer`, ordered by id (see [`Selected`]).
    pub async fn select<'a>(
        &self,
        tenant: &'a str,
        viewer: &'a Viewer,
        selection: &'a Selection,
        count: bool,
    ) -> Result<Selected, Problem> {
        let mut conditions = String::from("tenant = $1");
        let mut from = "ngsi_entities";
        let mut binds: Vec<Arg> = vec![Arg::text(tenant)];
        let param = |binds: &mut Vec<Arg<'a>>, value: Arg<'a>| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if !selection.types.is_empty() {
            let list: Vec<String> = selection
                .types
                .iter()
                .map(|t| param(&mut binds, Arg::text(t.as_str())))
                .collect();
            if selection.bbox.is_some() {
                // Geo queries start from the spatial index: each candidate's type is then one
                // lookup, instead of listing every entity of the type first.
                conditions.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM ngsi_entity_types t WHERE t.tenant = $1 \
                     AND t.type_iri IN ({}) AND t.id = ngsi_entities.id)",
                    list.join(",")
                ));
            } else {
                conditions.push_str(&format!(
                    " AND id IN (SELECT id FROM ngsi_entity_types WHERE tenant = $1 AND type_iri IN ({}))",
                    list.join(",")
                ));
            }
        }
        if !selection.ids.is_empty() {
            let list: Vec<String> = selection
                .ids
                .iter()
                .map(|i| param(&mut binds, Arg::text(i.as_str())))
                .collect();
            conditions.push_str(&format!(" AND id IN ({})", list.join(",")));
        }
        if let Some((min_lon, min_lat, max_lon, max_lat)) = selection.bbox {
            let a = param(&mut binds, Arg::Number(max_lon));
            let b = param(&mut binds, Arg::Number(min_lon));
            let c = param(&mut binds, Arg::Number(max_lat));
            let d = param(&mut binds, Arg::Number(min_lat));
            conditions.push_str(&format!(
                " AND min_lon <= {a} AND max_lon >= {b} AND min_lat <= {c} AND max_lat >= {d}"
            ));
            // The spatial index narrows to the boxes near the query's (see migration 5). On
            // SQLite the R*Tree leads the join (CROSS JOIN fixes the order; without statistics
            // the planner would rather walk the type index or one side of the location index).
            if self.db.dialect().spatial_index_by_hand() {
                from = "ngsi_entities_rtree CROSS JOIN ngsi_entities \
                        ON ngsi_entities.rowid = ngsi_entities_rtree.entity_rowid";
                conditions.push_str(&format!(
                    " AND west <= {a} AND east >= {b} AND south <= {c} AND north >= {d}"
                ));
            } else {
                conditions.push_str(&format!(
                    " AND box(point(min_lon, min_lat), point(max_lon, max_lat)) && box(point({b}, {d}), point({a}, {c}))"
                ));
            }
        }
        let bound = |binds: &mut Vec<Arg<'a>>, condition: &str, values: &'a [Arg<'static>]| {
            let mut values = values.iter();
            let mut sql = String::new();
            for (i, piece) in condition.split('?').enumerate() {
                if i > 0 {
                    let value = match values.next() {
                        Some(value) => value.clone(),
                        None => return Err(Problem::internal("a condition lacks a value")),
                    };
                    sql.push_str(&param(binds, value));
                }
                sql.push_str(piece);
            }
            Ok(sql)
        };
        for (condition, values) in &selection.conditions {
            conditions.push_str(" AND ");
            conditions.push_str(&bound(&mut binds, condition, values)?);
        }
        match viewer {
            Viewer::All => {}
            Viewer::Department(department) => {
                let p = param(&mut binds, Arg::text(department.as_str()));
                conditions.push_str(&format!(" AND (owner_department = {p} OR public = 1)"));
            }
            Viewer::Public => conditions.push_str(" AND public = 1"),
        }
        let mut page = selection.page;
        let mut total = None;
        if let (None, Some(decided_page)) = (page, selection.page_if_decided) {
            // One pass over the candidates: how many, and how many a condition left undecided
            // (2). With none undecided the conditions are the exact test: the database pages.
            let mut pair_binds = binds.clone();
            let mut undecided = Vec::new();
            for (condition, values) in &selection.conditions {
                undecided.push(format!(
                    "{} = 2",
                    bound(&mut pair_binds, condition, values)?
                ));
            }
            let undecided = if undecided.is_empty() {
                "0".to_owned()
            } else {
                undecided.join(" OR ")
            };
            let sql = format!(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN {undecided} THEN 1 ELSE 0 END), 0) \
                 FROM {from} WHERE {conditions}"
            );
            let (candidates, undecided): (i64, i64) = self.db.fetch_one(&sql, &pair_binds).await?;
            if undecided == 0 {
                page = Some(decided_page);
                total = Some(candidates);
            }
        }
        if let (Some(_), true, None) = (page, count, total) {
            let sql = format!("SELECT COUNT(*) FROM {from} WHERE {conditions}");
            let (count,): (i64,) = self.db.fetch_one(&sql, &binds).await?;
            total = Some(count);
        }
        let mut sql = format!("SELECT {COLUMNS} FROM {from} WHERE {conditions} ORDER BY id");
        if let Some((offset, limit)) = page {
            sql.push_str(&format!(" LIMIT {limit} OFFSET {offset}"));
        }
        let rows: Vec<Row> = self.db.fetch_all(&sql, &binds).await?;
        let entities = rows.into_iter().map(from_row).collect::<Result<_, _>>()?;
        Ok(Selected {
            entities,
            paged: page.is_some(),
            total: total.filter(|_| count),
        })
    }
}

/// The row `sql` selects, read inside the write transaction.
async fn fetch_in(tx: &mut Write, sql: &str, params: &[&str]) -> Result<Option<Row>, Problem> {
    let args: Vec<Arg> = params.iter().map(|p| Arg::text(*p)).collect();
    tx.fetch_optional(sql, &args).await
}

async fn ensure_tenant(tx: &mut Write, tenant: &str) -> Result<(), Problem> {
    tx.execute(
        "INSERT INTO ngsi_tenants (name, created_at_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[Arg::text(tenant), Arg::Int(yunnao_core::time::now_ms())],
    )
    .await?;
    Ok(())
}

/// Inserts a new entity with its types and first history; false when the id is taken.
async fn insert_row(
    tx: &mut Write,
    tenant: &str,
    entity: &Entity,
    owner: &str,
    public: bool,
) -> Result<bool, Problem> {
    let bbox = bbox_of(entity);
    let inserted = tx
        .execute(
            "INSERT INTO ngsi_entities (tenant, id, types, attrs, created_at, modified_at, owner_department, public, \
             min_lon, min_lat, max_lon, max_lat) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CAST($9 AS DOUBLE PRECISION), \
             CAST($10 AS DOUBLE PRECISION), CAST($11 AS DOUBLE PRECISION), CAST($12 AS DOUBLE PRECISION)) \
             ON CONFLICT (tenant, id) DO NOTHING",
            &[
                Arg::text(tenant),
                Arg::text(&entity.id),
                Arg::text(&json(&entity.types)?),
                Arg::text(&stored_attrs(entity)?),
                Arg::text(&entity.created_at),
                Arg::text(&entity.modified_at),
                Arg::text(owner),
                Arg::Int(i64::from(public)),
                Arg::Real(bbox.map(|b| b.0)),
                Arg::Real(bbox.map(|b| b.1)),
                Arg::Real(bbox.map(|b| b.2)),
                Arg::Real(bbox.map(|b| b.3)),
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    if bbox.is_some() {
        index_location(tx, tenant, &entity.id).await?;
    }
    write_types(tx, tenant, entity).await?;
    temporal::record(tx, tenant, None, entity).await?;
    Ok(true)
}

/// What a change did to an entity's attributes.
#[derive(Debug, Default)]
pub struct Changed {
    /// Attributes created or whose content changed.
    pub written: Vec<String>,
    /// Attributes removed, as they were.
    pub removed: Vec<(String, Value)>,
    /// Attributes of `written` that existed, as they were (`showChanges`).
    pub previous: Vec<(String, Value)>,
}

impl Changed {
    fn is_empty(&self) -> bool {
        self.written.is_empty() && self.removed.is_empty()
    }
}

/// Writes a changed entity, its history and (when they changed) its types; returns what
/// changed.
async fn update_row(
    tx: &mut Write,
    tenant: &str,
    (before, scope_before): (&Map<String, Value>, Option<&Value>),
    entity: &Entity,
    types_changed: bool,
) -> Result<Changed, Problem> {
    temporal::record(tx, tenant, Some((before, scope_before)), entity).await?;
    let types = json(&entity.types)?;
    let attrs = stored_attrs(entity)?;
    let mut args = vec![
        Arg::text(tenant),
        Arg::text(&entity.id),
        Arg::text(&types),
        Arg::text(&attrs),
        Arg::text(&entity.modified_at),
    ];
    // The bounding box is written only when the location changed: rewriting the same values
    // still moves the entity's entry in the location index (an extra page per commit).
    let location_changed = before.get(model::LOCATION) != entity.attrs.get(model::LOCATION);
    let sql = if location_changed {
        let bbox = bbox_of(entity);
        args.extend([
            Arg::Real(bbox.map(|b| b.0)),
            Arg::Real(bbox.map(|b| b.1)),
            Arg::Real(bbox.map(|b| b.2)),
            Arg::Real(bbox.map(|b| b.3)),
        ]);
        "UPDATE ngsi_entities SET types = $3, attrs = $4, modified_at = $5, \
         min_lon = CAST($6 AS DOUBLE PRECISION), min_lat = CAST($7 AS DOUBLE PRECISION), \
         max_lon = CAST($8 AS DOUBLE PRECISION), max_lat = CAST($9 AS DOUBLE PRECISION) WHERE tenant = $1 AND id = $2"
    } else {
        "UPDATE ngsi_entities SET types = $3, attrs = $4, modified_at = $5 WHERE tenant = $1 AND id = $2"
    };
    tx.execute(sql, &args).await?;
    if location_changed {
        unindex_location(tx, tenant, &entity.id).await?;
        index_location(tx, tenant, &entity.id).await?;
    }
    if types_changed {
        tx.execute(
            "DELETE FROM ngsi_entity_types WHERE tenant = $1 AND id = $2",
            &[Arg::text(tenant), Arg::text(&entity.id)],
        )
        .await?;
        write_types(tx, tenant, entity).await?;
    }
    let mut changed = Changed::default();
    for (name, value) in &entity.attrs {
        match before.get(name) {
            None => changed.written.push(name.clone()),
            Some(old) if !temporal::same_content(old, value) => {
                // Instances (datasetIds) gone while the others stay as they were: a deletion of
                // those instances, not an update of the attribute.
                match instances_removed(old, value) {
                    Some(gone) => changed.removed.push((name.clone(), gone)),
                    None => {
                        changed.written.push(name.clone());
                        changed.previous.push((name.clone(), old.clone()));
                    }
                }
            }
            Some(_) => {}
        }
    }
    changed.removed.extend(
        before
            .iter()
            .filter(|(name, _)| !entity.attrs.contains_key(*name))
            .map(|(name, old)| (name.clone(), old.clone())),
    );
    let at = &entity.modified_at;
    if !changed.removed.is_empty() {
        temporal::record_deletions(tx, tenant, &entity.id, &changed.removed, at).await?;
    }
    if let (Some(old), None) = (scope_before, &entity.scope) {
        let scope = [(temporal::SCOPE.to_owned(), old.clone())];
        temporal::record_deletions(tx, tenant, &entity.id, &scope, at).await?;
    }
    Ok(changed)
}

/// When `after` is `before` with some of its instances (by `datasetId`) taken out and the rest
/// unchanged: those instances.
fn instances_removed(before: &Value, after: &Value) -> Option<Value> {
    // One instance before: nothing can be left beside it (the common case, no work).
    let Value::Array(before) = before else {
        return None;
    };
    let after: Vec<&Value> = match after {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let dataset = |v: &Value| v.get("datasetId").cloned();
    let (kept, gone): (Vec<&Value>, Vec<&Value>) = before
        .iter()
        .partition(|b| after.iter().any(|a| dataset(a) == dataset(b)));
    let rest_unchanged = kept.len() == after.len()
        && kept
            .iter()
            .zip(&after)
            .all(|(k, a)| temporal::same_content(k, a));
    (!gone.is_empty() && rest_unchanged).then(|| Value::Array(gone.into_iter().cloned().collect()))
}

/// On PostgreSQL, holds entity `id`'s row until `tx` ends, as changes of the entity do: writers
/// of its history take turns, since each reads an attribute's open hour before writing (see
/// [`temporal::record_attrs`]). SQLite's one writer already makes them take turns.
async fn hold_history(tx: &mut Write, tenant: &str, id: &str) -> Result<(), Problem> {
    if tx.dialect().concurrent_writers() {
        tx.execute(
            "SELECT 1 FROM ngsi_entities WHERE tenant = $1 AND id = $2 FOR UPDATE",
            &[Arg::text(tenant), Arg::text(id)],
        )
        .await?;
    }
    Ok(())
}

/// Puts the entity's stored bounding box (if any) into SQLite's spatial index; PostgreSQL's
/// index follows the columns by itself.
async fn index_location(tx: &mut Write, tenant: &str, id: &str) -> Result<(), Problem> {
    if tx.dialect().spatial_index_by_hand() {
        tx.execute(
            "INSERT INTO ngsi_entities_rtree (entity_rowid, west, east, south, north) \
             SELECT rowid, min_lon, max_lon, min_lat, max_lat FROM ngsi_entities \
             WHERE tenant = $1 AND id = $2 AND min_lon IS NOT NULL",
            &[Arg::text(tenant), Arg::text(id)],
        )
        .await?;
    }
    Ok(())
}

/// Takes the entity out of SQLite's spatial index (before its row changes or goes).
async fn unindex_location(tx: &mut Write, tenant: &str, id: &str) -> Result<(), Problem> {
    if tx.dialect().spatial_index_by_hand() {
        tx.execute(
            "DELETE FROM ngsi_entities_rtree \
             WHERE entity_rowid = (SELECT rowid FROM ngsi_entities WHERE tenant = $1 AND id = $2)",
            &[Arg::text(tenant), Arg::text(id)],
        )
        .await?;
    }
    Ok(())
}

async fn write_types(tx: &mut Write, tenant: &str, entity: &Entity) -> Result<(), Problem> {
    for type_iri in &entity.types {
        tx.execute(
            "INSERT INTO ngsi_entity_types (tenant, type_iri, id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[Arg::text(tenant), Arg::text(type_iri), Arg::text(&entity.id)],
        )
        .await?;
    }
    Ok(())
}
