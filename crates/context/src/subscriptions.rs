//! Subscriptions (CIM 009 §5.8) and notifications over HTTP and MQTT. A change to an entity is
//! matched against the tenant's active subscriptions (entities, watchedAttributes, q, geoQ,
//! throttling, expiry) after it commits; each notification is sent with retries and back-off, and its
//! fate is counted on the subscription (`timesSent`, `timesFailed`, `lastSuccess`,
//! `lastFailure`, `status`), so a notification is never lost without a trace.
//!
//! Subscriptions to context source registrations (§5.11) are the same resource about
//! registrations: they hear of registrations that newly match, changed or no longer match
//! (`ContextSourceNotification` with its `triggerReason`), and at once of those matching when
//! they are made or changed. A subscription hears only of what its department may read: its own
//! entities and registrations and open data, or everything when a platform admin made it.

mod body;

use crate::geoquery::GeoQuery;
use crate::jsonld::{CORE_CONTEXT_URL, CORE_LINK, Context, JSON_LD};
use crate::model::{self, Entity, Format, RenderOptions};
use crate::{errors, query};
use serde_json::{Map, Value, json};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use yunnao_core::Problem;
use yunnao_store::{Db, DbResultExt, sqlx};

pub use body::SubscriptionBody;

/// Deliveries in flight at once (a slow receiver holds one slot, not the broker).
const CONCURRENT_DELIVERIES: usize = 64;
/// Attempts per notification, with back-off doubling from 500 ms.
const ATTEMPTS: u32 = 4;
/// The shortest `timeInterval` served (shorter ones are stretched to it).
const MIN_INTERVAL_MS: i64 = 1_000;

/// What a subscription is about: entities (clause 5.8) or context source registrations
/// (clause 5.11, `/csourceSubscriptions`). One table holds both, told apart by `about`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum About {
    Entities,
    Registrations,
}

impl About {
    /// The value of the `about` column.
    pub fn column(self) -> &'static str {
        match self {
            About::Entities => "entities",
            About::Registrations => "registrations",
        }
    }

    fn from_column(text: &str) -> Self {
        if text == "registrations" {
            About::Registrations
        } else {
            About::Entities
        }
    }
}

/// Whose a changed entity or registration is: a subscription hears of it only when its
/// department may read it.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub owner: &'a str,
    pub public: bool,
}

impl<'a> Holder<'a> {
    /// A new entity's (not open data until marked so).
    pub fn new_entity(owner: &'a str) -> Self {
        Self {
            owner,
            public: false,
        }
    }
}

/// A subscription as stored: the client's JSON (attribute and type names expanded) plus what
/// the broker derives from it.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub tenant: String,
    pub id: String,
    pub owner: String,
    pub about: About,
    /// Made by a platform admin (or with authentication off): hears of every department's
    /// entities and registrations, not only its own and open data.
    pub sees_all: bool,
    /// The stored definition (expanded names).
    pub definition: Value,
    pub active: bool,
    pub expires_at_ms: Option<i64>,
    pub throttling_ms: i64,
    /// Expanded types and id selectors of `entities`.
    selectors: Vec<(Option<String>, Option<String>, Option<regex::Regex>)>,
    watched: Vec<String>,
    q: Option<query::Expr>,
    geo: Option<GeoQuery>,
    /// The context the client spoke: `q` is read and notifications are compacted with it.
    context: Context,
    /// Where notifications go, parsed from `notification.endpoint`.
    target: Endpoint,
    /// `notificationTrigger`; `None`: the default (attributes created or updated).
    triggers: Option<Vec<String>>,
    /// `notification.showChanges`: changed attributes carry their previous value.
    show_changes: bool,
    /// `timeInterval`: notified of everything matching every so often, not of changes.
    time_interval_ms: Option<i64>,
    /// `temporalQ` of a subscription to registrations: the time property (`observedAt`,
    /// `createdAt` or `modifiedAt`) and the range its registration interval must meet.
    temporal: Option<(String, crate::temporal::TimeRange)>,
}

/// What happened to an entity, for the notification triggers (Table 5.2.12-1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    Created,
    Updated,
    /// Attributes removed from an entity.
    AttributesDeleted,
    /// The entity deleted.
    EntityDeleted,
}

/// The notification triggers of Table 5.2.12-1.
const TRIGGERS: &[&str] = &[
    "entityCreated",
    "entityUpdated",
    "entityDeleted",
    "attributeCreated",
    "attributeUpdated",
    "attributeDeleted",
];

impl Subscription {
    /// Parses a client's subscription (create, or the merged result of an update).
    pub fn parse(
        tenant: &str,
        owner: &str,
        about: About,
        body: &Value,
        context: &Context,
    ) -> Result<Self, Problem> {
        // On the raw value: `"type": null` is present and wrong, not absent.
        if body.get("type").is_some_and(|t| t != "Subscription") {
            return Err(errors::bad_request("type must be \"Subscription\""));
        }
        let body = SubscriptionBody::read(body)?;
        let id = match body.id {
            Some(id) => {
                model::check_entity_id(&id)?;
                id
            }
            None => format!("urn:ngsi-ld:Subscription:{}", yunnao_core::new_id()),
        };
        let time_interval_ms = match &body.time_interval {
            None => None,
            Some(v) => {
                let seconds = v
                    .as_f64()
                    .filter(|s| *s > 0.0 && s.is_finite())
                    .ok_or_else(|| {
                        errors::bad_request("timeInterval is a positive number of seconds")
                    })?;
                Some(((seconds * 1000.0) as i64).max(MIN_INTERVAL_MS))
            }
        };
        let mut selectors = Vec::new();
        let mut entities_out = Vec::new();
        if let Some(list) = &body.entities {
            if list.is_empty() {
                return Err(errors::bad_request("entities must be a non-empty array"));
            }
            for item in list {
                let type_name = item
                    .kind
                    .as_deref()
                    .ok_or_else(|| errors::bad_request("each entities item needs a type"))?;
                let type_iri = context.expand(type_name);
                let pattern = match &item.id_pattern {
                    Some(p) => Some(
                        regex::Regex::new(p)
                            .map_err(|e| errors::bad_request(format!("idPattern: {e}")))?,
                    ),
                    None => None,
                };
                let mut out = Map::new();
                out.insert("type".into(), type_iri.clone().into());
                if let Some(id) = &item.id {
                    out.insert("id".into(), id.clone().into());
                }
                if let Some(p) = &pattern {
                    out.insert("idPattern".into(), p.as_str().into());
                }
                entities_out.push(Value::Object(out));
                selectors.push((Some(type_iri), item.id.clone(), pattern));
            }
        }
        let watched: Vec<String> = match &body.watched_attributes {
            None => Vec::new(),
            Some(names) if names.is_empty() => {
                return Err(errors::bad_request(
                    "watchedAttributes must be a non-empty array",
                ));
            }
            Some(names) => names.iter().map(|n| context.expand(n)).collect(),
        };
        if selectors.is_empty() && watched.is_empty() {
            return Err(errors::bad_request(
                "a subscription needs entities or watchedAttributes",
            ));
        }
        if time_interval_ms.is_some() && !watched.is_empty() {
            return Err(errors::bad_request(
                "timeInterval and watchedAttributes exclude each other: a periodic subscription \
                 is notified of what matches, not of changes",
            ));
        }
        let q = body
            .q
            .as_deref()
            .map(|q| query::parse(q, context))
            .transpose()?;
        let geo = match &body.geo_q {
            None => None,
            Some(g) => {
                let coordinates = match &g.coordinates {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => return Err(errors::bad_request("geoQ needs coordinates")),
                };
                Some(GeoQuery::parse(
                    g.georel
                        .as_deref()
                        .ok_or_else(|| errors::bad_request("geoQ needs georel"))?,
                    g.geometry
                        .as_deref()
                        .ok_or_else(|| errors::bad_request("geoQ needs geometry"))?,
                    &coordinates,
                    context.expand(g.geoproperty.as_deref().unwrap_or("location")),
                )?)
            }
        };
        let notification = body
            .notification
            .as_ref()
            .ok_or_else(|| errors::bad_request("a subscription needs a notification"))?;
        let endpoint_params = notification.endpoint.as_ref();
        let endpoint = endpoint_params
            .and_then(|e| e.uri.as_deref())
            .ok_or_else(|| errors::bad_request("notification.endpoint.uri is required"))?;
        let notifier_info = endpoint_params.and_then(|e| e.notifier_info.clone());
        let target = Endpoint::parse(endpoint, notifier_info.as_ref())?;
        let format = notification.format.as_deref().unwrap_or("normalized");
        if !matches!(
            format,
            "normalized" | "keyValues" | "simplified" | "concise"
        ) {
            return Err(errors::bad_request(format!(
                "notification format {format:?} is not normalized, keyValues or concise"
            )));
        }
        let attributes: Vec<String> = notification
            .attributes
            .iter()
            .flatten()
            .map(|n| context.expand(n))
            .collect();
        let show_changes = notification.show_changes.unwrap_or(false);
        let expires_at_ms = match &body.expires_at {
            None => None,
            Some(v) => Some(
                yunnao_core::time::parse_rfc3339_ms(v)
                    .ok_or_else(|| errors::bad_request("expiresAt must be a date-time"))?,
            ),
        };
        let throttling_ms = match &body.throttling {
            None => 0,
            Some(v) => {
                let seconds = v
                    .as_f64()
                    .filter(|s| *s >= 0.0 && s.is_finite())
                    .ok_or_else(|| errors::bad_request("throttling is a number of seconds"))?;
                (seconds * 1000.0) as i64
            }
        };
        if time_interval_ms.is_some() && throttling_ms > 0 {
            return Err(errors::bad_request(
                "timeInterval and throttling exclude each other",
            ));
        }
        let active = body.is_active.unwrap_or(true);
        if let Some(csf) = &body.csf {
            crate::query::check_csf(csf)?;
        }
        let triggers = match &body.notification_trigger {
            None => None,
            Some(_) if about == About::Registrations => {
                return Err(errors::bad_request(
                    "notificationTrigger is for subscriptions to entities; subscriptions to registrations hear of every change",
                ));
            }
            Some(items) if items.is_empty() => {
                return Err(errors::bad_request(
                    "notificationTrigger is a non-empty array",
                ));
            }
            Some(items) => {
                if let Some(unknown) = items.iter().find(|t| !TRIGGERS.contains(&t.as_str())) {
                    return Err(errors::bad_request(format!(
                        "notificationTrigger {unknown:?}: one of {}",
                        TRIGGERS.join(", ")
                    )));
                }
                Some(items.clone())
            }
        };
        let temporal = match &body.temporal_q {
            Some(temporal_q) if about == About::Registrations => {
                let property = temporal_q.timeproperty.as_deref().unwrap_or("observedAt");
                if !matches!(property, "observedAt" | "createdAt" | "modifiedAt") {
                    return Err(errors::bad_request(format!(
                        "temporalQ.timeproperty {property:?} is not observedAt, createdAt or modifiedAt"
                    )));
                }
                let timerel = temporal_q
                    .timerel
                    .as_deref()
                    .ok_or_else(|| errors::bad_request("temporalQ needs timerel"))?;
                let range = crate::temporal::TimeRange::parse(
                    Some(timerel),
                    temporal_q.time_at.as_deref(),
                    temporal_q.end_time_at.as_deref(),
                )?;
                Some((property.to_owned(), range))
            }
            _ => None,
        };
        let mut definition = Map::new();
        definition.insert("id".into(), id.clone().into());
        definition.insert("type".into(), "Subscription".into());
        if let Some(name) = &body.subscription_name {
            definition.insert("subscriptionName".into(), name.clone().into());
        }
        if let Some(description) = &body.description {
            definition.insert("description".into(), description.clone().into());
        }
        if !entities_out.is_empty() {
            definition.insert("entities".into(), Value::Array(entities_out));
        }
        if !watched.is_empty() {
            definition.insert("watchedAttributes".into(), json!(watched));
        }
        if let Some(q) = &body.q {
            definition.insert("q".into(), q.clone().into());
        }
        if let Some(g) = &body.geo_q {
            definition.insert("geoQ".into(), json!(g));
        }
        if let Some(csf) = &body.csf {
            definition.insert("csf".into(), csf.clone().into());
        }
        if temporal.is_some()
            && let Some(temporal_q) = &body.temporal_q
        {
            definition.insert("temporalQ".into(), json!(temporal_q));
        }
        if let Some(triggers) = &triggers {
            definition.insert("notificationTrigger".into(), json!(triggers));
        }
        let accept = endpoint_params
            .and_then(|e| e.accept.as_deref())
            .unwrap_or("application/json");
        definition.insert(
            "notification".into(),
            json!({"attributes": attributes, "format": format,
                   "endpoint": {"uri": endpoint, "accept": accept}}),
        );
        if let Some(info) = notifier_info {
            definition["notification"]["endpoint"]["notifierInfo"] = info;
        }
        if show_changes {
            definition["notification"]["showChanges"] = true.into();
        }
        if let Some(v) = &body.expires_at {
            definition.insert("expiresAt".into(), v.clone().into());
        }
        if time_interval_ms.is_some()
            && let Some(v) = &body.time_interval
        {
            definition.insert("timeInterval".into(), v.clone().into());
        }
        if throttling_ms > 0
            && let Some(v) = &body.throttling
        {
            definition.insert("throttling".into(), v.clone().into());
        }
        definition.insert("isActive".into(), active.into());
        if let Some(source) = &context.source {
            definition.insert("jsonldContext".into(), source.clone());
        }
        Ok(Self {
            tenant: tenant.to_owned(),
            id,
            owner: owner.to_owned(),
            about,
            sees_all: false,
            definition: Value::Object(definition),
            active,
            expires_at_ms,
            throttling_ms,
            selectors,
            watched,
            q,
            geo,
            context: context.clone(),
            target,
            triggers,
            show_changes,
            temporal,
            time_interval_ms,
        })
    }

    /// Active and not expired.
    fn live(&self, now_ms: i64) -> bool {
        self.active && self.expires_at_ms.is_none_or(|at| at > now_ms)
    }

    /// May this subscription's department read what `holder` holds?
    fn may_hear_of(&self, holder: Holder) -> bool {
        self.sees_all || holder.public || holder.owner == self.owner
    }

    /// Does this kind of change trigger a notification? A new entity's attributes are
    /// created; a change creates or updates attributes; a deleted entity's attributes are
    /// deleted too. Without triggers: attributes created or updated.
    fn fires_on(&self, change: Change) -> bool {
        let wanted: &[&str] = match change {
            Change::Created => &["entityCreated", "attributeCreated"],
            Change::Updated => &["entityUpdated", "attributeUpdated", "attributeCreated"],
            Change::AttributesDeleted => &["attributeDeleted"],
            Change::EntityDeleted => &["entityDeleted", "attributeDeleted"],
        };
        match &self.triggers {
            Some(triggers) => triggers.iter().any(|t| wanted.contains(&t.as_str())),
            None => matches!(change, Change::Created | Change::Updated),
        }
    }

    fn triggered_by(&self, trigger: &str) -> bool {
        self.triggers
            .as_ref()
            .is_some_and(|triggers| triggers.iter().any(|t| t == trigger))
    }

    /// Clause 5.8.1.4: a new expiry is not in the past.
    pub fn check_not_expired(&self) -> Result<(), Problem> {
        model::not_in_past(self.expires_at_ms)
    }

    /// Does a change of `entity` (its `changed` attributes) concern this subscription?
    pub fn matches(
        &self,
        entity: &Entity,
        holder: Holder,
        changed: &[String],
        now_ms: i64,
    ) -> bool {
        if self.about != About::Entities
            || self.time_interval_ms.is_some()
            || !self.live(now_ms)
            || !self.may_hear_of(holder)
        {
            return false;
        }
        let watched = self.watched.is_empty() || self.watched.iter().any(|w| changed.contains(w));
        watched && self.selects(entity)
    }

    /// The subscription's `q`, when it tests linked entities (`rel{attr}`).
    fn linked_q(&self) -> Option<&query::Expr> {
        self.q.as_ref().filter(|q| q.link_depth() > 0)
    }

    /// Is `entity` one this subscription selects (entities, q, geoQ)?
    fn selects(&self, entity: &Entity) -> bool {
        let selected = self.selectors.is_empty()
            || self.selectors.iter().any(|(type_iri, id, pattern)| {
                type_iri.as_ref().is_none_or(|t| entity.types.contains(t))
                    && id.as_ref().is_none_or(|i| *i == entity.id)
                    && pattern.as_ref().is_none_or(|p| p.is_match(&entity.id))
            });
        // A q on linked entities is tested once they are read ([`Notifier::notify`]).
        selected
            && self
                .q
                .as_ref()
                .is_none_or(|q| q.link_depth() > 0 || q.matches(entity))
            && self.geo.as_ref().is_none_or(|g| {
                entity
                    .attrs
                    .get(&g.property)
                    .and_then(|a| a.get("value"))
                    .and_then(|v| model::geometry(v).ok())
                    .is_some_and(|geometry| g.matches(&geometry))
            })
    }

    /// What of a registration (its stored definition, names expanded) this subscription to
    /// registrations covers: the registration with only the RegistrationInfo elements that
    /// match (clause 5.11.7), or `None` when it does not match.
    fn covered(&self, registration: &Value, now_ms: i64) -> Option<Value> {
        let at = |v: &Value| v.as_str().and_then(yunnao_core::time::parse_rfc3339_ms);
        if at(&registration["expiresAt"]).is_some_and(|expiry| expiry <= now_ms) {
            return None;
        }
        let information: Vec<Value> = registration["information"]
            .as_array()?
            .iter()
            .filter(|info| self.covers_information(info))
            .cloned()
            .collect();
        if information.is_empty() {
            return None;
        }
        if let Some(geo) = &self.geo {
            // Registrations hold their geometries as GeoJSON members, under the names given.
            let member = self.context.compact(&geo.property);
            let geometry = model::geometry(registration.get(&member)?).ok()?;
            if !geo.matches(&geometry) {
                return None;
            }
        }
        if let Some((property, range)) = &self.temporal {
            let interval = registration.get(if property == "observedAt" {
                "observationInterval"
            } else {
                "managementInterval"
            })?;
            let start = at(&interval["startAt"])?;
            let end = at(&interval["endAt"]);
            let meets = range.to.is_none_or(|to| start < to)
                && range
                    .from
                    .is_none_or(|from| end.is_none_or(|end| end >= from));
            if !meets {
                return None;
            }
        }
        if let Some(q) = &self.q
            && !q.matches(&registration_properties(registration, &self.context))
        {
            return None;
        }
        let mut shown = registration.clone();
        shown["information"] = Value::Array(information);
        Some(shown)
    }

    /// The registrations (owner, stored definition) this subscription to registrations may
    /// hear of and matches now, rendered for it.
    fn covered_registrations(&self, registrations: &[(String, Value)], now_ms: i64) -> Vec<Value> {
        registrations
            .iter()
            .filter(|(owner, _)| {
                self.may_hear_of(Holder {
                    owner,
                    public: false,
                })
            })
            .filter_map(|(_, definition)| self.covered(definition, now_ms))
            .map(|shown| crate::registrations::render(&shown, &self.context))
            .collect()
    }

    /// Does one RegistrationInfo cover an entity this subscription selects and one of its
    /// watched attributes?
    fn covers_information(&self, info: &Value) -> bool {
        if self.selectors.is_empty() {
            return crate::registrations::covers(info, (&[], &[], None), &self.watched);
        }
        self.selectors.iter().any(|(type_iri, id, pattern)| {
            crate::registrations::covers(
                info,
                (type_iri.as_slice(), id.as_slice(), pattern.as_ref()),
                &self.watched,
            )
        })
    }

    fn endpoint(&self) -> String {
        self.definition["notification"]["endpoint"]["uri"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn render_options(&self) -> RenderOptions {
        let notification = &self.definition["notification"];
        let attrs: Vec<String> = notification["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        RenderOptions {
            format: match notification["format"].as_str() {
                Some("keyValues" | "simplified") => Format::KeyValues,
                Some("concise") => Format::Concise,
                _ => Format::Normalized,
            },
            sys_attrs: false,
            attrs: (!attrs.is_empty()).then_some(attrs),
            ..RenderOptions::default()
        }
    }
}

/// `showChanges` (clause 5.8.1): each changed attribute shown with what it held before, in the
/// previous member of its type (`previousValue`, `previousObject`, …); an attribute with
/// several instances, per `datasetId`.
fn show_previous(data: &mut Value, previous: &[(String, Value)], context: &Context) {
    for (name, old) in previous {
        let Some(shown) = data.get_mut(context.compact(name)) else {
            continue;
        };
        let old_instances: Vec<&Value> = match old {
            Value::Array(instances) => instances.iter().collect(),
            one => vec![one],
        };
        let shown_instances: Vec<&mut Value> = match shown {
            Value::Array(instances) => instances.iter_mut().collect(),
            one => vec![one],
        };
        for instance in shown_instances {
            let dataset = instance.get("datasetId").cloned();
            let Some(before) = old_instances
                .iter()
                .find(|o| o.get("datasetId").cloned() == dataset)
            else {
                continue;
            };
            let kind = before
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("Property");
            let member = model::value_member(kind);
            if let Some(value) = before.get(member)
                && instance.get(member) != Some(value)
            {
                let mut name = String::from("previous");
                name.push_str(&member[..1].to_ascii_uppercase());
                name.push_str(&member[1..]);
                instance[name] = value.clone();
            }
        }
    }
}

/// Members of a registration that are not defined by Table 5.2.9-1: the properties a
/// subscription's `q` is matched against (clause 5.11.7).
pub(crate) fn registration_properties(registration: &Value, context: &Context) -> Entity {
    registration_as_entity(registration, context, false)
}

/// A registration as an entity to filter on: its own members (with `everything`, the defined
/// ones too, as a context source filter reads them — `endpoint`, `mode`, …), and its scope.
pub(crate) fn registration_as_entity(
    registration: &Value,
    context: &Context,
    everything: bool,
) -> Entity {
    const DEFINED: &[&str] = &[
        "id",
        "type",
        "registrationName",
        "description",
        "information",
        "tenant",
        "observationInterval",
        "managementInterval",
        "location",
        "observationSpace",
        "operationSpace",
        "expiresAt",
        "endpoint",
        "contextSourceInfo",
        "scope",
        "mode",
        "operations",
        "refreshRate",
        "management",
        "status",
        "createdAt",
        "modifiedAt",
    ];
    let attrs = registration
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| {
            if everything {
                !matches!(name.as_str(), "information" | "@context")
            } else {
                !DEFINED.contains(&name.as_str())
            }
        })
        .map(|(name, value)| {
            let attribute = match value {
                Value::Object(o) if o.contains_key("type") => value.clone(),
                plain => json!({"type": "Property", "value": plain}),
            };
            (context.expand(name), attribute)
        })
        .collect();
    Entity {
        id: registration["id"].as_str().unwrap_or_default().to_owned(),
        types: Vec::new(),
        attrs,
        created_at: String::new(),
        modified_at: String::new(),
        scope: registration.get("scope").cloned(),
    }
}

/// A deleted attribute as notifications show it: per deleted instance its type, its
/// `datasetId` if it had one, and the NGSI-LD Null as its value.
fn deleted_attribute(old: &Value) -> Value {
    let deleted = |instance: &Value| model::deleted_instance(instance, "");
    match old {
        Value::Array(instances) if instances.len() == 1 => deleted(&instances[0]),
        Value::Array(instances) => Value::Array(instances.iter().map(deleted).collect()),
        one => deleted(one),
    }
}

pub type SubscriptionRow = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
);

/// The subscriptions of every tenant, kept in memory for matching (reloaded after each change
/// through the API, and every few seconds for changes made on other nodes).
#[derive(Clone)]
pub struct Notifier {
    db: Db,
    subscriptions: Arc<RwLock<Vec<Arc<Subscription>>>>,
    last_sent: Arc<RwLock<std::collections::HashMap<(String, String), i64>>>,
    /// When each periodic subscription is next due on this node.
    periodic_due: Arc<RwLock<std::collections::HashMap<(String, String), i64>>>,
    client: reqwest::Client,
    slots: Arc<tokio::sync::Semaphore>,
    contexts: Arc<crate::jsonld::RemoteContexts>,
}

impl Notifier {
    pub fn new(db: Db, contexts: Arc<crate::jsonld::RemoteContexts>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            db,
            subscriptions: Arc::default(),
            last_sent: Arc::default(),
            periodic_due: Arc::default(),
            client,
            slots: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DELIVERIES)),
            contexts,
        }
    }

    /// Reads every subscription from the database.
    pub async fn reload(&self) -> Result<(), Problem> {
        let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT tenant, owner_department, about, definition, sees_all FROM ngsi_subscriptions",
        )
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let mut all = Vec::new();
        for (tenant, owner, about, definition, sees_all) in rows {
            let definition: Value =
                serde_json::from_str(&definition).map_err(|e| Problem::internal(e.to_string()))?;
            // Stored definitions hold expanded names, and the client's context for `q`.
            let context = match definition.get("jsonldContext") {
                Some(source) => self.contexts.resolve(source).await.unwrap_or_default(),
                None => Context::core(),
            };
            let about = About::from_column(&about);
            match Subscription::parse(&tenant, &owner, about, &definition, &context) {
                Ok(mut s) => {
                    s.sees_all = sees_all != 0;
                    all.push(Arc::new(s));
                }
                Err(problem) => tracing::error!(%problem, "stored subscription unreadable"),
            }
        }
        *self
            .subscriptions
            .write()
            .unwrap_or_else(|p| p.into_inner()) = all;
        Ok(())
    }

    /// Queues the notifications a committed change causes: `changed` attributes, and the
    /// `previous` content of those that existed (shown to subscriptions with `showChanges`).
    pub fn changed(
        &self,
        tenant: &str,
        entity: &Entity,
        holder: Holder,
        changed: &[String],
        previous: &[(String, Value)],
    ) {
        self.notify(
            tenant,
            (entity, entity),
            holder,
            (changed, previous),
            Change::Updated,
        );
    }

    /// A new entity (all its attributes created).
    pub fn created(&self, tenant: &str, entity: &Entity, holder: Holder) {
        let all: Vec<String> = entity.attrs.keys().cloned().collect();
        self.notify(
            tenant,
            (entity, entity),
            holder,
            (&all, &[]),
            Change::Created,
        );
    }

    /// Attributes removed from `entity` (as it is now): they are shown with the NGSI-LD Null
    /// as their value (clause 5.8.6).
    pub fn removed(
        &self,
        tenant: &str,
        entity: &Entity,
        holder: Holder,
        removed: &[(String, Value)],
    ) {
        let mut shown = entity.clone();
        let names: Vec<String> = removed.iter().map(|(name, _)| name.clone()).collect();
        for (name, old) in removed {
            shown.attrs.insert(name.clone(), deleted_attribute(old));
        }
        self.notify(
            tenant,
            (entity, &shown),
            holder,
            (&names, &[]),
            Change::AttributesDeleted,
        );
    }

    /// A deleted entity (as it was): shown with `deletedAt`, and with its attributes as the
    /// NGSI-LD Null to subscriptions to deleted attributes.
    pub fn deleted(&self, tenant: &str, entity: &Entity, holder: Holder) {
        let names: Vec<String> = entity.attrs.keys().cloned().collect();
        let mut shown = entity.clone();
        for attribute in shown.attrs.values_mut() {
            *attribute = deleted_attribute(attribute);
        }
        self.notify(
            tenant,
            (entity, &shown),
            holder,
            (&names, &[]),
            Change::EntityDeleted,
        );
    }

    /// The tenant's subscriptions that `keep` keeps.
    fn select(&self, keep: impl Fn(&Subscription) -> bool) -> Vec<Arc<Subscription>> {
        self.subscriptions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| keep(s))
            .cloned()
            .collect()
    }

    /// Is `subscription` within its throttling interval? If not, this counts as a sending.
    fn throttled(&self, subscription: &Subscription, now: i64) -> bool {
        if subscription.throttling_ms <= 0 {
            return false;
        }
        let key = (subscription.tenant.clone(), subscription.id.clone());
        let mut last = self.last_sent.write().unwrap_or_else(|p| p.into_inner());
        if last
            .get(&key)
            .is_some_and(|at| now - at < subscription.throttling_ms)
        {
            return true;
        }
        last.insert(key, now);
        false
    }

    /// Delivers `body` in the background (one of the delivery slots).
    fn send(&self, subscription: Arc<Subscription>, body: Value) {
        let notifier = self.clone();
        tokio::spawn(async move {
            let Ok(_slot) = notifier.slots.clone().acquire_owned().await else {
                return;
            };
            notifier.deliver(&subscription, body).await;
        });
    }

    /// A committed change of a registration (`before` and `after` its stored definitions;
    /// `None`: it did not exist, or no longer does): each subscription to registrations it
    /// concerns hears that it newly matches, was updated, or no longer matches.
    pub fn registration_changed(
        &self,
        tenant: &str,
        owner: &str,
        before: Option<&Value>,
        after: Option<&Value>,
    ) {
        let now = yunnao_core::time::now_ms();
        let holder = Holder {
            owner,
            public: false,
        };
        let concerned = self.select(|s| {
            s.tenant == tenant
                && s.about == About::Registrations
                && s.time_interval_ms.is_none()
                && s.live(now)
                && s.may_hear_of(holder)
        });
        for subscription in concerned {
            let was = before.and_then(|d| subscription.covered(d, now));
            let is = after.and_then(|d| subscription.covered(d, now));
            let (reason, shown) = match (was, is) {
                (None, Some(shown)) => ("newlyMatching", shown),
                (Some(_), Some(shown)) => ("updated", shown),
                // What it is now, or what it was when it is gone.
                (Some(old), None) => ("noLongerMatching", after.cloned().unwrap_or(old)),
                (None, None) => continue,
            };
            if self.throttled(&subscription, now) {
                continue;
            }
            let data = vec![crate::registrations::render(&shown, &subscription.context)];
            let body = registration_notification(&subscription, reason, data, now);
            self.send(subscription, body);
        }
    }

    /// The first notification of a subscription to registrations, made or changed: every
    /// registration (owner, stored definition) it matches now, as newly matching.
    pub fn matching_now(&self, subscription: Subscription, registrations: &[(String, Value)]) {
        let now = yunnao_core::time::now_ms();
        // Periodic ones hear of them at their first interval, which is due at once.
        if subscription.about != About::Registrations
            || subscription.time_interval_ms.is_some()
            || !subscription.live(now)
        {
            return;
        }
        let data = subscription.covered_registrations(registrations, now);
        if data.is_empty() {
            return;
        }
        let body = registration_notification(&subscription, "newlyMatching", data, now);
        self.send(Arc::new(subscription), body);
    }

    /// Notifies the subscriptions that `change` (of the attributes `changed`; `previous`: the
    /// content before of those that existed) concerns: they are matched against `entity` as
    /// it is (or was, when deleted), and are sent `shown`.
    fn notify(
        &self,
        tenant: &str,
        (entity, shown): (&Entity, &Entity),
        holder: Holder,
        (changed, previous): (&[String], &[(String, Value)]),
        change: Change,
    ) {
        let now = yunnao_core::time::now_ms();
        let matching = self.select(|s| {
            s.tenant == tenant && s.fires_on(change) && s.matches(entity, holder, changed, now)
        });
        for subscription in matching {
            if subscription.linked_q().is_some() {
                // Its q reads linked entities: tested in the background once they are read.
                let notifier = self.clone();
                let (entity, shown) = (entity.clone(), shown.clone());
                let previous = previous.to_vec();
                tokio::spawn(async move {
                    let Some(q) = subscription.linked_q() else {
                        return;
                    };
                    let links = query::resolve_links(q, &entity, |id| {
                        notifier.linked_entity(&subscription, id)
                    })
                    .await;
                    if q.matches_in(&entity, &links) {
                        notifier.dispatch(subscription.clone(), &shown, (change, &previous), now);
                    }
                });
                continue;
            }
            self.dispatch(subscription, shown, (change, previous), now);
        }
    }

    /// Entity `id` of the subscription's tenant, for its q on linked entities: when its
    /// department may read it.
    async fn linked_entity(&self, subscription: &Subscription, id: String) -> Option<Entity> {
        let row: Option<crate::Row> = sqlx::query_as(crate::SELECT_BY_ID)
            .bind(subscription.tenant.clone())
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .ok()?;
        let stored = crate::from_row(row?).ok()?;
        subscription
            .may_hear_of(Holder {
                owner: &stored.owner,
                public: stored.public,
            })
            .then_some(stored.entity)
    }

    /// Renders and sends one subscription's notification of a change (unless throttled).
    fn dispatch(
        &self,
        subscription: Arc<Subscription>,
        shown: &Entity,
        (change, previous): (Change, &[(String, Value)]),
        now: i64,
    ) {
        if self.throttled(&subscription, now) {
            return;
        }
        let options = subscription.render_options();
        let mut data =
            if change == Change::EntityDeleted && !subscription.triggered_by("attributeDeleted") {
                // entityDeleted: the entity's id and type, and when it went.
                let bare = Entity {
                    attrs: Map::new(),
                    ..shown.clone()
                };
                model::render(&bare, &subscription.context, &options)
            } else {
                model::render(shown, &subscription.context, &options)
            };
        if change == Change::EntityDeleted {
            data["deletedAt"] = yunnao_core::time::rfc3339_ms(now).into();
        }
        if subscription.show_changes && options.format == Format::Normalized {
            show_previous(&mut data, previous, &subscription.context);
        }
        let body = json!({
            "id": format!("urn:ngsi-ld:Notification:{}", yunnao_core::new_id()),
            "type": "Notification",
            "subscriptionId": subscription.id,
            "notifiedAt": yunnao_core::time::rfc3339_ms(now),
            "data": [data],
        });
        self.send(subscription, body);
    }

    async fn deliver(&self, subscription: &Subscription, body: Value) {
        let endpoint = subscription.endpoint();
        let ld = subscription.definition["notification"]["endpoint"]["accept"] == JSON_LD;
        let mut body = body;
        if ld && let Some(items) = body["data"].as_array_mut() {
            for item in items {
                item["@context"] = CORE_CONTEXT_URL.into();
            }
        }
        let mut delay = Duration::from_millis(500);
        let mut last_error = String::new();
        for attempt in 1..=ATTEMPTS {
            let outcome = match &subscription.target {
                Endpoint::Http => {
                    let mut request = self.client.post(&endpoint).body(body.to_string());
                    request = if ld {
                        request.header("content-type", JSON_LD)
                    } else {
                        request
                            .header("content-type", "application/json")
                            .header("link", CORE_LINK)
                    };
                    match request.send().await {
                        Ok(response) if response.status().is_success() => Ok(()),
                        Ok(response) => Err(format!("the endpoint answered {}", response.status())),
                        Err(error) => Err(format!("not delivered: {error}")),
                    }
                }
                Endpoint::Mqtt(target) => {
                    // The MQTT binding: the HTTP headers travel as `metadata` beside the body.
                    let mut metadata =
                        json!({"Content-Type": if ld { JSON_LD } else { "application/json" }});
                    if !ld {
                        metadata["Link"] = CORE_LINK.into();
                    }
                    let message = json!({"metadata": metadata, "body": body});
                    target.publish(message.to_string().into_bytes()).await
                }
            };
            match outcome {
                Ok(()) => {
                    self.record(subscription, true, "").await;
                    return;
                }
                Err(error) => last_error = error,
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        tracing::warn!(subscription = %subscription.id, %endpoint, error = %last_error, "notification failed after retries");
        self.record(subscription, false, &last_error).await;
    }

    async fn record(&self, subscription: &Subscription, success: bool, error: &str) {
        let now = yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms());
        let sql = if success {
            "UPDATE ngsi_subscriptions SET times_sent = times_sent + 1, last_notification = $3, last_success = $3, \
             delivery_status = 'ok' WHERE tenant = $1 AND id = $2"
        } else {
            "UPDATE ngsi_subscriptions SET times_sent = times_sent + 1, times_failed = times_failed + 1, \
             last_notification = $3, last_failure = $3, delivery_status = 'failed', last_error = $4 \
             WHERE tenant = $1 AND id = $2"
        };
        let result = async {
            let mut tx = self.db.begin_write().await?;
            sqlx::query(sql)
                .bind(&subscription.tenant)
                .bind(&subscription.id)
                .bind(&now)
                .bind(error)
                .execute(&mut **tx)
                .await
                .db()?;
            tx.commit().await?;
            Ok::<(), Problem>(())
        }
        .await;
        if let Err(problem) = result {
            tracing::error!(%problem, "notification outcome not recorded");
        }
    }
}

/// A `ContextSourceNotification` (clause 5.3.2) of registrations.
fn registration_notification(
    subscription: &Subscription,
    reason: &str,
    data: Vec<Value>,
    now: i64,
) -> Value {
    json!({
        "id": format!("urn:ngsi-ld:Notification:{}", yunnao_core::new_id()),
        "type": "ContextSourceNotification",
        "subscriptionId": subscription.id,
        "notifiedAt": yunnao_core::time::rfc3339_ms(now),
        "data": data,
        "triggerReason": reason,
    })
}

const COLUMNS: &str = "tenant, id, owner_department, definition, times_sent, times_failed, created_at_ms, \
    last_notification, last_success, last_failure, delivery_status, sees_all";

/// A subscription as the API shows it: the definition compacted, with its counters.
pub fn render(row: &SubscriptionRow, context: &Context) -> Value {
    let (
        _,
        _,
        _,
        definition,
        sent,
        failed,
        _,
        last_notification,
        last_success,
        last_failure,
        status,
        _,
    ) = row;
    let mut value: Value = serde_json::from_str(definition).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("jsonldContext");
    }
    let compact_list = |v: &mut Value| {
        if let Some(items) = v.as_array_mut() {
            for item in items {
                if let Some(name) = item.as_str() {
                    *item = context.compact(name).into();
                }
            }
        }
    };
    if let Some(entities) = value.get_mut("entities").and_then(Value::as_array_mut) {
        for e in entities {
            if let Some(t) = e.get("type").and_then(Value::as_str).map(str::to_owned) {
                e["type"] = context.compact(&t).into();
            }
        }
    }
    if let Some(w) = value.get_mut("watchedAttributes") {
        compact_list(w);
    }
    if let Some(a) = value
        .get_mut("notification")
        .and_then(|n| n.get_mut("attributes"))
    {
        compact_list(a);
    }
    let active = value["isActive"].as_bool().unwrap_or(true);
    let expired = value["expiresAt"]
        .as_str()
        .and_then(yunnao_core::time::parse_rfc3339_ms)
        .is_some_and(|at| at <= yunnao_core::time::now_ms());
    value["status"] = if expired {
        "expired"
    } else if active {
        "active"
    } else {
        "paused"
    }
    .into();
    let n = &mut value["notification"];
    n["timesSent"] = (*sent).into();
    n["timesFailed"] = (*failed).into();
    n["status"] = status.clone().into();
    for (key, v) in [
        ("lastNotification", last_notification),
        ("lastSuccess", last_success),
        ("lastFailure", last_failure),
    ] {
        if let Some(v) = v {
            n[key] = v.clone().into();
        }
    }
    value
}

impl crate::ContextBroker {
    /// Sends the notifications of the periodic subscriptions (`timeInterval`) that are due:
    /// each tells of everything it matches now (nothing is sent when nothing matches). The
    /// first is due as soon as the subscription is made. One node sends each interval: it
    /// claims it in the database first, so a cluster does not send it once per node.
    pub(crate) async fn notify_periodically(&self) -> Result<(), Problem> {
        let now = yunnao_core::time::now_ms();
        let periodic = self
            .notifier
            .select(|s| s.time_interval_ms.is_some() && s.live(now));
        self.notifier
            .periodic_due
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(tenant, id), _| periodic.iter().any(|s| s.tenant == *tenant && s.id == *id));
        for subscription in periodic {
            let Some(interval) = subscription.time_interval_ms else {
                continue;
            };
            let key = (subscription.tenant.clone(), subscription.id.clone());
            let first = {
                let mut due = self
                    .notifier
                    .periodic_due
                    .write()
                    .unwrap_or_else(|p| p.into_inner());
                let first = !due.contains_key(&key);
                if due.get(&key).is_some_and(|at| *at > now) {
                    continue;
                }
                due.insert(key, now + interval);
                first
            };
            if !self.claim_interval(&subscription, now, interval).await? {
                continue;
            }
            let body = match subscription.about {
                About::Entities => {
                    let data = self.selected_by(&subscription).await?;
                    if data.is_empty() {
                        continue;
                    }
                    json!({
                        "id": format!("urn:ngsi-ld:Notification:{}", yunnao_core::new_id()),
                        "type": "Notification",
                        "subscriptionId": subscription.id,
                        "notifiedAt": yunnao_core::time::rfc3339_ms(now),
                        "data": data,
                    })
                }
                About::Registrations => {
                    let registrations: Vec<(String, Value)> =
                        crate::registrations::list(&self.db, &subscription.tenant)
                            .await?
                            .iter()
                            .map(|row| (row.0.clone(), crate::registrations::definition(row)))
                            .collect();
                    let data = subscription.covered_registrations(&registrations, now);
                    if data.is_empty() {
                        continue;
                    }
                    let reason = if first { "newlyMatching" } else { "updated" };
                    registration_notification(&subscription, reason, data, now)
                }
            };
            self.notifier.send(subscription, body);
        }
        Ok(())
    }

    /// Claims this interval of a periodic subscription for this node: false when it was
    /// notified less than an interval ago (by another node).
    async fn claim_interval(
        &self,
        subscription: &Subscription,
        now: i64,
        interval: i64,
    ) -> Result<bool, Problem> {
        let mut tx = self.db.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE ngsi_subscriptions SET periodic_at_ms = $3 WHERE tenant = $1 AND id = $2 \
             AND (periodic_at_ms IS NULL OR periodic_at_ms <= $4)",
        )
        .bind(&subscription.tenant)
        .bind(&subscription.id)
        .bind(now)
        // A little slack: this node's ticks and another's need not line up.
        .bind(now - interval + 500)
        .execute(&mut **tx)
        .await
        .db()?;
        tx.commit().await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// The entities a periodic subscription selects now, as its notifications show them: only
    /// those its department may read.
    async fn selected_by(&self, subscription: &Subscription) -> Result<Vec<Value>, Problem> {
        let viewer = if subscription.sees_all {
            crate::Viewer::All
        } else {
            crate::Viewer::Department(subscription.owner.clone())
        };
        let selection = crate::Selection {
            types: subscription
                .selectors
                .iter()
                .filter_map(|(type_iri, _, _)| type_iri.clone())
                .collect(),
            ..crate::Selection::default()
        };
        let options = subscription.render_options();
        let mut shown = Vec::new();
        for stored in self
            .select(&subscription.tenant, &viewer, &selection, false)
            .await?
            .entities
            .iter()
            .filter(|stored| subscription.selects(&stored.entity))
        {
            if let Some(q) = subscription.linked_q() {
                let links = query::resolve_links(q, &stored.entity, |id| {
                    let viewer = viewer.clone();
                    async move {
                        self.get(&subscription.tenant, &id, &viewer)
                            .await
                            .ok()
                            .flatten()
                            .map(|found| found.entity.clone())
                    }
                })
                .await;
                if !q.matches_in(&stored.entity, &links) {
                    continue;
                }
            }
            shown.push(model::render(
                &stored.entity,
                &subscription.context,
                &options,
            ));
        }
        Ok(shown)
    }

    pub async fn create_subscription(&self, subscription: &Subscription) -> Result<(), Problem> {
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO ngsi_subscriptions (tenant, id, owner_department, definition, times_sent, times_failed, created_at_ms, delivery_status, about, sees_all) \
             VALUES ($1, $2, $3, $4, 0, 0, $5, 'ok', $6, $7) ON CONFLICT (tenant, id) DO NOTHING",
        )
        .bind(&subscription.tenant)
        .bind(&subscription.id)
        .bind(&subscription.owner)
        .bind(subscription.definition.to_string())
        .bind(yunnao_core::time::now_ms())
        .bind(subscription.about.column())
        .bind(i64::from(subscription.sees_all))
        .execute(&mut **tx)
        .await
        .db()?;
        if inserted.rows_affected() == 0 {
            return Err(errors::already_exists(format!(
                "subscription {} exists",
                subscription.id
            )));
        }
        tx.commit().await?;
        self.notifier.reload().await
    }

    pub async fn subscription(
        &self,
        tenant: &str,
        id: &str,
        about: About,
    ) -> Result<Option<SubscriptionRow>, Problem> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM ngsi_subscriptions WHERE tenant = $1 AND id = $2 AND about = $3"
        )))
        .bind(tenant)
        .bind(id)
        .bind(about.column())
        .fetch_optional(self.db.pool())
        .await
        .db()
    }

    pub async fn subscriptions(
        &self,
        tenant: &str,
        owner: Option<&str>,
        about: About,
    ) -> Result<Vec<SubscriptionRow>, Problem> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM ngsi_subscriptions WHERE tenant = $1 AND ($2 = '' OR owner_department = $2) AND about = $3 ORDER BY created_at_ms, id"
        )))
        .bind(tenant)
        .bind(owner.unwrap_or_default())
        .bind(about.column())
        .fetch_all(self.db.pool())
        .await
        .db()
    }

    pub async fn replace_subscription(&self, subscription: &Subscription) -> Result<(), Problem> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE ngsi_subscriptions SET definition = $3 WHERE tenant = $1 AND id = $2")
            .bind(&subscription.tenant)
            .bind(&subscription.id)
            .bind(subscription.definition.to_string())
            .execute(&mut **tx)
            .await
            .db()?;
        tx.commit().await?;
        self.notifier.reload().await
    }

    pub async fn delete_subscription(&self, tenant: &str, id: &str) -> Result<(), Problem> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM ngsi_subscriptions WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?;
        tx.commit().await?;
        self.notifier.reload().await
    }
}

pub fn owner_of(row: &SubscriptionRow) -> &str {
    &row.2
}

/// Does the stored subscription hear of every department's data?
pub fn sees_all(row: &SubscriptionRow) -> bool {
    row.11 != 0
}

pub fn definition_of(row: &SubscriptionRow) -> Value {
    serde_json::from_str(&row.3).unwrap_or(Value::Null)
}

/// Where a subscription's notifications go.
#[derive(Debug, Clone)]
enum Endpoint {
    Http,
    Mqtt(MqttTarget),
}

/// An `mqtt://[user:password@]host[:port]/topic` endpoint (CIM 009's MQTT binding, MQTT 3.1.1)
/// with its `notifierInfo` (`MQTT-QoS` 0, 1 or 2; `MQTT-Version` mqtt3.1.1).
#[derive(Debug, Clone)]
struct MqttTarget {
    host: String,
    port: u16,
    topic: String,
    credentials: Option<(String, String)>,
    qos: rumqttc::QoS,
}

impl Endpoint {
    fn parse(uri: &str, notifier_info: Option<&Value>) -> Result<Self, Problem> {
        let url = reqwest::Url::parse(uri).map_err(|e| {
            errors::bad_request(format!("notification endpoint {uri:?} is not a URL: {e}"))
        })?;
        match url.scheme() {
            "http" | "https" => Ok(Endpoint::Http),
            "mqtt" => {
                let host = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| errors::bad_request(format!("{uri:?} names no MQTT broker")))?
                    .to_owned();
                let topic = url.path().trim_start_matches('/').to_owned();
                if topic.is_empty() || topic.contains(['+', '#']) {
                    return Err(errors::bad_request(format!(
                        "{uri:?}: give the topic as the path (mqtt://broker:1883/some/topic), without wildcards"
                    )));
                }
                let credentials = (!url.username().is_empty()).then(|| {
                    (
                        url.username().to_owned(),
                        url.password().unwrap_or_default().to_owned(),
                    )
                });
                let mut qos = rumqttc::QoS::AtMostOnce;
                let entries = match notifier_info {
                    None => Vec::new(),
                    Some(Value::Array(entries)) => entries.clone(),
                    Some(_) => {
                        return Err(errors::bad_request(
                            "notifierInfo is a list of {\"key\": …, \"value\": …}",
                        ));
                    }
                };
                for entry in entries {
                    let key = entry.get("key").and_then(Value::as_str).unwrap_or_default();
                    let value = entry
                        .get("value")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    match (key, value) {
                        ("MQTT-QoS", "0") => qos = rumqttc::QoS::AtMostOnce,
                        ("MQTT-QoS", "1") => qos = rumqttc::QoS::AtLeastOnce,
                        ("MQTT-QoS", "2") => qos = rumqttc::QoS::ExactlyOnce,
                        ("MQTT-Version", "mqtt3.1.1") => {}
                        ("MQTT-QoS", other) => {
                            return Err(errors::bad_request(format!(
                                "MQTT-QoS {other:?} is not 0, 1 or 2"
                            )));
                        }
                        ("MQTT-Version", other) => {
                            return Err(errors::bad_request(format!(
                                "MQTT-Version {other:?} is not supported: use mqtt3.1.1"
                            )));
                        }
                        _ => {}
                    }
                }
                Ok(Endpoint::Mqtt(MqttTarget {
                    host,
                    port: url.port().unwrap_or(1883),
                    topic,
                    credentials,
                    qos,
                }))
            }
            "mqtts" => Err(errors::bad_request(format!(
                "{uri:?}: MQTT over TLS (mqtts) is not supported yet; use mqtt:// or https://"
            ))),
            other => Err(errors::bad_request(format!(
                "notification endpoint {uri:?}: {other} is not http, https or mqtt"
            ))),
        }
    }
}

impl MqttTarget {
    /// Publishes one message on its own connection; done when the broker has it as the QoS
    /// promises (PUBACK for 1, PUBCOMP for 2, written for 0).
    async fn publish(&self, payload: Vec<u8>) -> Result<(), String> {
        use rumqttc::{Event, Outgoing, Packet, QoS};
        let mut options = rumqttc::MqttOptions::new(
            format!("yunnao-notify-{}", yunnao_core::new_id()),
            self.host.clone(),
            self.port,
        );
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(16 << 20, 16 << 20);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        let (client, mut events) = rumqttc::AsyncClient::new(options, 4);
        client
            .publish(self.topic.clone(), self.qos, false, payload)
            .await
            .map_err(|e| format!("not published: {e}"))?;
        let qos = self.qos;
        let delivered = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) if qos == QoS::AtLeastOnce => {
                        return Ok(());
                    }
                    Ok(Event::Incoming(Packet::PubComp(_))) if qos == QoS::ExactlyOnce => {
                        return Ok(());
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(_))) if qos == QoS::AtMostOnce => {
                        return Ok(());
                    }
                    Ok(_) => {}
                    Err(error) => {
                        return Err(format!(
                            "not delivered to the MQTT broker {}:{}: {error}",
                            self.host, self.port
                        ));
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the MQTT broker {}:{} did not take the message within 10 s",
                self.host, self.port
            ))
        });
        // Say goodbye (best effort): the broker then drops the session at once.
        if client.disconnect().await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(200), events.poll()).await;
        }
        delivered
    }
}
