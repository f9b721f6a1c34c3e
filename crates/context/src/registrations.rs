//! Context source registrations (clause 5.9): what other systems hold, kept so clients can
//! discover them (`/csourceRegistrations`); retrievals and queries ask the sources they cover
//! (`distributed`).

use crate::jsonld::Context;
use crate::{errors, model};
use serde_json::{Map, Value};
use yunnao_core::Problem;

/// The registration modes of Table 5.2.9-1.
const MODES: &[&str] = &["inclusive", "exclusive", "redirect", "auxiliary"];

/// A registration as stored: every name expanded, ready for the table.
pub struct Registration {
    pub id: String,
    pub definition: Value,
    pub expires_at_ms: Option<i64>,
}

/// The operations an auxiliary registration may name: it only answers reads (clause 4.3.6.2).
const AUXILIARY_OPERATIONS: &[&str] = &[
    "retrieveOps",
    "retrieveEntity",
    "queryEntity",
    "queryBatch",
    "retrieveTemporal",
    "queryTemporal",
    "retrieveEntityTypes",
    "retrieveEntityTypeDetails",
    "retrieveEntityTypeInfo",
    "retrieveAttrTypes",
    "retrieveAttrTypeDetails",
    "retrieveAttrTypeInfo",
];

/// RegistrationManagementInfo (clause 5.2.34): `cacheDuration` a duration, `cooldown` and
/// `timeout` (ms) above 0, `localOnly` true or false.
fn check_management(management: &Value) -> Result<(), Problem> {
    let object = management
        .as_object()
        .ok_or_else(|| errors::bad_request("management is a RegistrationManagementInfo object"))?;
    if let Some(duration) = object.get("cacheDuration") {
        crate::temporal::duration_ms(duration.as_str().unwrap_or_default())?;
    }
    for key in ["cooldown", "timeout"] {
        if object
            .get(key)
            .is_some_and(|v| v.as_f64().is_none_or(|n| n <= 0.0))
        {
            return Err(errors::bad_request(format!(
                "management.{key} is a number above 0 (milliseconds)"
            )));
        }
    }
    if object.get("localOnly").is_some_and(|l| !l.is_boolean()) {
        return Err(errors::bad_request("management.localOnly is true or false"));
    }
    Ok(())
}

/// What a registration's mode requires (clauses 4.3.6.2, 4.3.6.3): an auxiliary one names
/// read operations only; an exclusive one names single entities by id, and their attributes.
fn check_mode(
    mode: Option<&str>,
    object: &Map<String, Value>,
    information: &[Value],
) -> Result<(), Problem> {
    match mode {
        Some("auxiliary") => {
            let writes = object
                .get("operations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find(|op| !AUXILIARY_OPERATIONS.contains(op));
            if let Some(op) = writes {
                return Err(errors::bad_request(format!(
                    "an auxiliary registration only answers reads: {op} is not one of {}",
                    AUXILIARY_OPERATIONS.join(", ")
                )));
            }
        }
        Some("exclusive") => {
            for info in information {
                let single = info["entities"].as_array().is_some_and(|entities| {
                    entities
                        .iter()
                        .all(|e| e.get("id").is_some() && e.get("idPattern").is_none())
                });
                let named = ["propertyNames", "relationshipNames"]
                    .iter()
                    .any(|k| info[*k].as_array().is_some_and(|n| !n.is_empty()));
                if !single || !named {
                    return Err(errors::bad_request(
                        "an exclusive registration names single entities by id (no idPattern, \
                         no whole type) and their attributes (clause 4.3.6.3)",
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The (entity selector, attribute names; none: all) pairs of a stored registration.
pub fn claims(definition: &Value) -> Vec<(&Value, Vec<&str>)> {
    definition["information"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|info| {
            let names: Vec<&str> = ["propertyNames", "relationshipNames"]
                .iter()
                .flat_map(|k| info[*k].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            info["entities"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |selector| (selector, names.clone()))
        })
        .collect()
}

/// Can two entity selectors (`id`, `idPattern`, `type`) select the same entity?
pub fn selectors_meet(a: &Value, b: &Value) -> bool {
    let types = |s: &Value| -> Vec<String> {
        match &s["type"] {
            Value::String(t) => vec![t.clone()],
            Value::Array(ts) => ts
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    let (ta, tb) = (types(a), types(b));
    if !ta.iter().any(|t| tb.contains(t)) {
        return false;
    }
    let fits = |s: &Value, id: &str| {
        s["id"].as_str().is_none_or(|own| own == id)
            && s["idPattern"]
                .as_str()
                .and_then(|p| regex::Regex::new(p).ok())
                .is_none_or(|p| p.is_match(id))
    };
    match (a["id"].as_str(), b["id"].as_str()) {
        (Some(x), Some(y)) => x == y,
        (Some(x), None) => fits(b, x),
        (None, Some(y)) => fits(a, y),
        // Patterns or whole types on both sides: they may meet.
        (None, None) => true,
    }
}

impl Registration {
    /// Checks a registration (Table 5.2.9-1) and expands its type and attribute names.
    pub fn parse(body: &Value, context: &Context) -> Result<Self, Problem> {
        let object = body
            .as_object()
            .ok_or_else(|| errors::bad_request("a registration is a JSON object"))?;
        if object
            .get("type")
            .is_some_and(|t| t != "ContextSourceRegistration")
        {
            return Err(errors::bad_request(
                "type must be \"ContextSourceRegistration\"",
            ));
        }
        let id = match object.get("id") {
            Some(Value::String(id)) => {
                model::check_entity_id(id)?;
                id.clone()
            }
            Some(_) => return Err(errors::bad_request("id must be a URI")),
            None => format!(
                "urn:ngsi-ld:ContextSourceRegistration:{}",
                yunnao_core::new_id()
            ),
        };
        if !object
            .get("endpoint")
            .and_then(Value::as_str)
            .is_some_and(|e| e.contains("://"))
        {
            return Err(errors::bad_request("a registration needs an endpoint URI"));
        }
        let information = match object.get("information") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            _ => {
                return Err(errors::bad_request(
                    "information is a non-empty array of RegistrationInfo",
                ));
            }
        };
        let mut expanded_information = Vec::new();
        for info in information {
            expanded_information.push(expand_information(info, context)?);
        }
        if let Some(mode) = object.get("mode")
            && !mode.as_str().is_some_and(|m| MODES.contains(&m))
        {
            return Err(errors::bad_request(format!(
                "mode is one of {}",
                MODES.join(", ")
            )));
        }
        if object
            .get("operations")
            .is_some_and(|o| !o.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        {
            return Err(errors::bad_request("operations is an array of names"));
        }
        let expires_at_ms = match object.get("expiresAt") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(yunnao_core::time::parse_rfc3339_ms)
                    .ok_or_else(|| errors::bad_request("expiresAt must be a date-time"))?,
            ),
        };
        for geo in ["location", "observationSpace", "operationSpace"] {
            if let Some(value) = object.get(geo) {
                model::geometry(value)
                    .map_err(|reason| errors::bad_request(format!("{geo}: {reason}")))?;
            }
        }
        if let Some(scope) = object.get("scope") {
            model::check_scope(scope)?;
        }
        if let Some(management) = object.get("management") {
            check_management(management)?;
        }
        check_mode(
            object.get("mode").and_then(Value::as_str),
            object,
            &expanded_information,
        )?;
        // Table 5.2.9-1: contextSourceInfo is an array of KeyValuePair (clause 5.2.35).
        if object.get("contextSourceInfo").is_some_and(|info| {
            !info.as_array().is_some_and(|pairs| {
                pairs.iter().all(|pair| {
                    pair.as_object().is_some_and(|p| {
                        p.len() == 2
                            && p.get("key").is_some_and(Value::is_string)
                            && p.get("value").is_some_and(Value::is_string)
                    })
                })
            })
        }) {
            return Err(errors::bad_request(
                "contextSourceInfo is an array of {\"key\": …, \"value\": …} strings",
            ));
        }
        if object.get("localOnly").is_some_and(|l| !l.is_boolean()) {
            return Err(errors::bad_request("localOnly is true or false"));
        }
        let mut definition: Map<String, Value> = object
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "@context" | "status" | "createdAt" | "modifiedAt"
                )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        definition.insert("id".into(), id.clone().into());
        definition.insert("type".into(), "ContextSourceRegistration".into());
        definition.insert("information".into(), Value::Array(expanded_information));
        Ok(Self {
            id,
            definition: Value::Object(definition),
            expires_at_ms,
        })
    }

    /// Clause 5.9.2.4: a new expiry is not in the past.
    pub fn check_not_expired(&self) -> Result<(), Problem> {
        model::not_in_past(self.expires_at_ms)
    }
}

/// One RegistrationInfo (Table 5.2.10-1): entities (each with a type), propertyNames and
/// relationshipNames, their names expanded.
fn expand_information(info: &Value, context: &Context) -> Result<Value, Problem> {
    let object = info
        .as_object()
        .ok_or_else(|| errors::bad_request("each RegistrationInfo is an object"))?;
    let mut out = Map::new();
    if let Some(entities) = object.get("entities") {
        let entities = entities
            .as_array()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| errors::bad_request("entities is a non-empty array"))?;
        let mut expanded = Vec::new();
        for entity in entities {
            let mut selector = entity
                .as_object()
                .cloned()
                .ok_or_else(|| errors::bad_request("each entity selector is an object"))?;
            let types = selector
                .get("type")
                .ok_or_else(|| errors::bad_request("each entity selector needs a type"))?;
            let types = model::parse_types(types, context)?;
            selector.insert(
                "type".into(),
                match types.as_slice() {
                    [one] => one.clone().into(),
                    many => Value::Array(many.iter().cloned().map(Value::from).collect()),
                },
            );
            if let Some(id) = selector.get("id") {
                model::check_entity_id(id.as_str().unwrap_or_default())?;
            }
            if let Some(pattern) = selector.get("idPattern") {
                regex::Regex::new(pattern.as_str().unwrap_or_default())
                    .map_err(|e| errors::bad_request(format!("idPattern: {e}")))?;
            }
            expanded.push(Value::Object(selector));
        }
        out.insert("entities".into(), Value::Array(expanded));
    }
    for key in ["propertyNames", "relationshipNames"] {
        if let Some(names) = object.get(key) {
            let names = names
                .as_array()
                .filter(|n| n.iter().all(Value::is_string))
                .ok_or_else(|| errors::bad_request(format!("{key} is an array of names")))?;
            out.insert(
                key.into(),
                Value::Array(
                    names
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|n| Value::from(context.expand(n)))
                        .collect(),
                ),
            );
        }
    }
    if out.is_empty() {
        return Err(errors::bad_request(
            "a RegistrationInfo names entities, propertyNames or relationshipNames",
        ));
    }
    Ok(Value::Object(out))
}

/// A stored registration compacted with `context`, with its status.
pub fn render(definition: &Value, context: &Context) -> Value {
    let mut out = definition.clone();
    if let Some(information) = out.get_mut("information").and_then(Value::as_array_mut) {
        for info in information {
            if let Some(entities) = info.get_mut("entities").and_then(Value::as_array_mut) {
                for entity in entities {
                    if let Some(types) = entity.get_mut("type") {
                        let compacted = match &*types {
                            Value::Array(many) => Value::Array(
                                many.iter()
                                    .filter_map(Value::as_str)
                                    .map(|t| Value::from(context.compact(t)))
                                    .collect(),
                            ),
                            Value::String(one) => context.compact(one).into(),
                            other => other.clone(),
                        };
                        *types = compacted;
                    }
                }
            }
            for key in ["propertyNames", "relationshipNames"] {
                if let Some(names) = info.get_mut(key).and_then(Value::as_array_mut) {
                    for name in names {
                        if let Some(text) = name.as_str() {
                            *name = context.compact(text).into();
                        }
                    }
                }
            }
        }
    }
    let expired = out["expiresAt"]
        .as_str()
        .and_then(yunnao_core::time::parse_rfc3339_ms)
        .is_some_and(|at| at <= yunnao_core::time::now_ms());
    out["status"] = if expired { "expired" } else { "active" }.into();
    out
}

/// Does the registration cover what a discovery query asks: one of the entity types (expanded;
/// all when empty), the id or id pattern, and one of the attributes (all when empty)?
pub fn matches(
    definition: &Value,
    types: &[String],
    ids: &[String],
    pattern: Option<&regex::Regex>,
    attrs: &[String],
) -> bool {
    definition["information"]
        .as_array()
        .is_some_and(|information| {
            information
                .iter()
                .any(|info| covers(info, (types, ids, pattern), attrs))
        })
}

/// Does one RegistrationInfo (Table 5.2.10-1, names expanded) cover an entity of one of `types`
/// (any when empty) with one of `ids` (any when empty) or an id `pattern` matches, and one of
/// `attrs` (any when empty)? Without `entities` it covers every entity; without
/// `propertyNames` and `relationshipNames`, every attribute. A registered id pattern and an
/// asked one are taken to overlap. Discovery, forwarding and subscriptions to registrations
/// all match with this.
pub fn covers(
    info: &Value,
    (types, ids, pattern): (&[String], &[String], Option<&regex::Regex>),
    attrs: &[String],
) -> bool {
    let entities_covered = info["entities"].as_array().is_none_or(|registered| {
        registered.iter().any(|entity| {
            let own_types: Vec<&str> = match &entity["type"] {
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                one => one.as_str().into_iter().collect(),
            };
            let own_id = entity["id"].as_str();
            let own_pattern = entity["idPattern"]
                .as_str()
                .and_then(|p| regex::Regex::new(p).ok());
            (types.is_empty() || types.iter().any(|t| own_types.contains(&t.as_str())))
                && (ids.is_empty()
                    || ids.iter().any(|id| {
                        own_id.is_none_or(|own| own == id)
                            && own_pattern.as_ref().is_none_or(|p| p.is_match(id))
                    }))
                && pattern.is_none_or(|p| own_id.is_none_or(|own| p.is_match(own)))
        })
    });
    let names: Vec<&str> = ["propertyNames", "relationshipNames"]
        .iter()
        .flat_map(|key| info[*key].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let attrs_covered =
        attrs.is_empty() || names.is_empty() || attrs.iter().any(|a| names.contains(&a.as_str()));
    entities_covered && attrs_covered
}

/// A stored registration: its owning department and definition.
pub type Row = (String, String);

pub async fn insert(
    db: &yunnao_store::Db,
    tenant: &str,
    owner: &str,
    registration: &Registration,
) -> Result<(), Problem> {
    use yunnao_store::{DbResultExt, sqlx};
    let mut tx = db.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO ngsi_registrations (tenant, id, owner_department, definition, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, id) DO NOTHING",
    )
    .bind(tenant.to_owned())
    .bind(registration.id.clone())
    .bind(owner.to_owned())
    .bind(registration.definition.to_string())
    .bind(yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms()))
    .execute(&mut **tx)
    .await
    .db()?;
    if inserted.rows_affected() == 0 {
        return Err(errors::already_exists(format!(
            "registration {} exists",
            registration.id
        )));
    }
    tx.commit().await?;
    Ok(())
}

pub async fn replace(
    db: &yunnao_store::Db,
    tenant: &str,
    registration: &Registration,
) -> Result<(), Problem> {
    use yunnao_store::{DbResultExt, sqlx};
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE ngsi_registrations SET definition = $3 WHERE tenant = $1 AND id = $2")
        .bind(tenant.to_owned())
        .bind(registration.id.clone())
        .bind(registration.definition.to_string())
        .execute(&mut **tx)
        .await
        .db()?;
    tx.commit().await?;
    Ok(())
}

pub async fn get(db: &yunnao_store::Db, tenant: &str, id: &str) -> Result<Option<Row>, Problem> {
    use yunnao_store::{DbResultExt, sqlx};
    sqlx::query_as(
        "SELECT owner_department, definition FROM ngsi_registrations WHERE tenant = $1 AND id = $2",
    )
    .bind(tenant.to_owned())
    .bind(id.to_owned())
    .fetch_optional(db.pool())
    .await
    .db()
}

pub async fn list(db: &yunnao_store::Db, tenant: &str) -> Result<Vec<Row>, Problem> {
    use yunnao_store::{DbResultExt, sqlx};
    sqlx::query_as(
        "SELECT owner_department, definition FROM ngsi_registrations WHERE tenant = $1 ORDER BY id",
    )
    .bind(tenant.to_owned())
    .fetch_all(db.pool())
    .await
    .db()
}

pub async fn delete(db: &yunnao_store::Db, tenant: &str, id: &str) -> Result<(), Problem> {
    use yunnao_store::{DbResultExt, sqlx};
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM ngsi_registrations WHERE tenant = $1 AND id = $2")
        .bind(tenant.to_owned())
        .bind(id.to_owned())
        .execute(&mut **tx)
        .await
        .db()?;
    tx.commit().await?;
    Ok(())
}

/// The definition of a stored row.
pub fn definition(row: &Row) -> Value {
    serde_json::from_str(&row.1).unwrap_or(Value::Null)
}
