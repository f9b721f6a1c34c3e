//! Temporal representation: history queries and aggregation, and writes of temporal instances (clauses 5.6.11–5.6.16, 5.7.4).

use super::NgsiResult;
use super::{entities::*, map_use::*, query::*, request::*};
use crate::jsonld::Context;
use crate::model::{self, RenderOptions};
use crate::temporal::Scope;
use crate::{ContextBroker, Stored, errors};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// What a temporal request asks for, parsed.
pub(super) struct TemporalRequest {
    pub(super) range: crate::temporal::TimeRange,
    /// `timeproperty`: which time `timerel` and `lastN` go by.
    pub(super) property: crate::temporal::TimeProperty,
    pub(super) last_n: Option<i64>,
    /// `temporalValues`: `[[value, time], …]` per attribute.
    pub(super) simplified: bool,
    /// `aggregatedValues`: the methods and the period.
    pub(super) aggregation: Option<(Vec<String>, i64)>,
    pub(super) options: RenderOptions,
}

pub(super) fn temporal_request(
    params: &HashMap<String, String>,
    context: &Context,
) -> NgsiResult<TemporalRequest> {
    let range = crate::temporal::TimeRange::parse(
        params.get("timerel").map(String::as_str),
        params.get("timeAt").map(String::as_str),
        params.get("endTimeAt").map(String::as_str),
    )?;
    let property =
        crate::temporal::TimeProperty::parse(params.get("timeproperty").map(String::as_str))?;
    let last_n = params
        .get("lastN")
        .map(|n| {
            n.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| errors::bad_request("lastN must be a positive integer"))
        })
        .transpose()?;
    // Clause 6.3.12: format, when given, takes precedence over the options.
    let asked = |name: &str| match params.get("format") {
        Some(format) => format == name,
        None => has_option(params, name),
    };
    let simplified = asked("temporalValues");
    let aggregated = asked("aggregatedValues");
    let aggregation = if aggregated {
        if property != crate::temporal::TimeProperty::ObservedAt {
            return Err(errors::bad_request(format!(
                "aggregatedValues are periods of observedAt; timeproperty {} cannot be aggregated",
                property.member()
            )));
        }
        let methods: Vec<String> = params
            .get("aggrMethods")
            .ok_or_else(|| errors::bad_request("aggregatedValues needs aggrMethods"))?
            .split(',')
            .map(|m| m.trim().to_owned())
            .collect();
        if let Some(bad) = methods
            .iter()
            .find(|m| !crate::temporal::AGGREGATIONS.contains(&m.as_str()))
        {
            return Err(errors::bad_request(format!(
                "aggrMethods: {bad:?} is not one of {}",
                crate::temporal::AGGREGATIONS.join(", ")
            )));
        }
        let period = crate::temporal::duration_ms(
            params
                .get("aggrPeriodDuration")
                .map_or("P0D", String::as_str),
        )
        .map_err(|problem| {
            errors::bad_request(format!(
                "aggrPeriodDuration: {}",
                problem.detail.as_deref().unwrap_or("not a duration")
            ))
        })?;
        Some((methods, period))
    } else {
        None
    };
    let mut plain = params.clone();
    plain.remove("options");
    plain.remove("format");
    let mut options = render_options(&plain, context)?;
    options.sys_attrs = has_option(params, "sysAttrs");
    Ok(TemporalRequest {
        range,
        property,
        last_n,
        simplified,
        aggregation,
        options,
    })
}

pub(super) async fn temporal_body(
    broker: &ContextBroker,
    request: &Request,
    stored: &Stored,
    temporal: &TemporalRequest,
) -> NgsiResult<Value> {
    let c = &request.context;
    let entity = &stored.entity;
    let mut out = model::render_head(entity, c);
    for member in ["id", "type"] {
        if !temporal.options.shows_member(member) {
            out.remove(member);
        }
    }
    let omitted: Vec<String> = temporal.options.omit.iter().map(|o| c.expand(o)).collect();
    let deletions = temporal.property == crate::temporal::TimeProperty::DeletedAt;
    // Attributes deleted since still have their history; deletions are shown only for
    // `deletedAt`, and then only they.
    let mut names: Vec<String> = if deletions {
        Vec::new()
    } else {
        entity.attrs.keys().cloned().collect()
    };
    let kept = crate::temporal::attribute_names(
        &broker.db,
        &request.tenant,
        &entity.id,
        temporal.property,
    )
    .await?;
    for name in kept {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in &names {
        if let Some(wanted) = &temporal.options.attrs
            && !wanted.contains(name)
        {
            continue;
        }
        if omitted.contains(name) {
            continue;
        }
        let instances = if temporal.aggregation.is_some() {
            Vec::new()
        } else {
            crate::temporal::instances(
                &broker.db,
                &request.tenant,
                &entity.id,
                name,
                (temporal.range, temporal.property),
                temporal.last_n,
            )
            .await?
        };
        // The type the attribute has now, else (deleted since) the one its instances had.
        let kind = entity
            .attrs
            .get(name)
            .or_else(|| instances.last())
            .and_then(|a| {
                a.get("type")
                    .or_else(|| a.get(0).and_then(|i| i.get("type")))
            })
            .and_then(Value::as_str)
            .unwrap_or("Property")
            .to_owned();
        let rendered = if let Some((methods, period)) = &temporal.aggregation {
            let mut aggregated = crate::temporal::aggregate(
                &broker.db,
                &request.tenant,
                &entity.id,
                name,
                temporal.range,
                *period,
                methods,
            )
            .await?;
            aggregated.insert("type".into(), kind.into());
            Value::Object(aggregated)
        } else {
            if deletions && instances.is_empty() {
                continue;
            }
            if temporal.simplified {
                let time = temporal.property;
                let values: Vec<Value> = instances
                    .iter()
                    .map(|i| {
                        let at = time.stamp(i).cloned().unwrap_or(Value::Null);
                        Value::Array(vec![model::simplified_value(&kind, i, c), at])
                    })
                    .collect();
                serde_json::json!({"type": kind, simplified_pairs(&kind): values})
            } else {
                Value::Array(
                    instances
                        .iter()
                        .map(|i| model::render_attribute(i, c, &temporal.options))
                        .collect(),
                )
            }
        };
        out.insert(c.compact(name), rendered);
    }
    Ok(Value::Object(out))
}

/// Clause 4.5.9: the member of an attribute type's simplified temporal representation that
/// holds its `[value, time]` pairs.
pub(super) fn simplified_pairs(kind: &str) -> &'static str {
    match kind {
        "Relationship" => "objects",
        "LanguageProperty" => "languageMaps",
        "JsonProperty" => "jsons",
        "VocabProperty" => "vocabs",
        "ListProperty" => "valueLists",
        "ListRelationship" => "objectLists",
        _ => "values",
    }
}

/// The temporal evolution of one entity: every value of its attributes in the time range
/// (`timerel`, `timeAt`, `endTimeAt`), the last N, simplified (`temporalValues`) or aggregated
/// per period (`aggregatedValues`, `aggrMethods`, `aggrPeriodDuration`).
#[utoipa::path(get, path = "/ngsi-ld/v1/temporal/entities/{entityId}", tag = "ngsi-ld",
    params(("entityId" = String, Path)), responses((status = 200), (status = 400), (status = 404)))]
pub(super) async fn temporal_entity(ngsi: Ngsi, Path(id): Path<String>) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    model::check_entity_id(&id)?;
    let params = params_of(raw, &[RENDER_PARAMS, TEMPORAL_PARAMS, &["type"]])?;
    let temporal = temporal_request(&params, &request.context)?;
    let map = map_use(&broker, &request, &headers, &params).await?;
    let stored = broker
        .get(&request.tenant, &id, &request.viewer)
        .await?
        .ok_or_else(|| errors::not_found(format!("there is no entity {id}")))?;
    let body = temporal_body(&broker, &request, &stored, &temporal).await?;
    nothing_left(&body, &id)?;
    let answer = Ok(request.respond(StatusCode::OK, body, &mut HeaderMap::new()));
    let origins = vec![crate::entity_maps::HERE.to_owned()];
    with_map(&broker, &request, answer, map, (&id, origins)).await
}

/// Temporal evolution of the entities a query selects (the query parameters of
/// `GET /entities`, plus the temporal ones).
#[utoipa::path(get, path = "/ngsi-ld/v1/temporal/entities", tag = "ngsi-ld",
    responses((status = 200), (status = 400)))]
pub(super) async fn temporal_query(ngsi: Ngsi) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    let params = params_of(raw, &[RENDER_PARAMS, QUERY_PARAMS, TEMPORAL_PARAMS])?;
    let map = map_use(&broker, &request, &headers, &params).await?;
    temporal_selection(&broker, &request, params, (map, None)).await
}

/// The same temporal query as a body: an NGSI-LD Query with its `temporalQ` (`timerel`,
/// `timeAt`, `endTimeAt`, `timeproperty`); `lastN`, aggregation, `limit`, `options` may stay
/// in the URL.
#[utoipa::path(post, path = "/ngsi-ld/v1/temporal/entityOperations/query", tag = "ngsi-ld",
    request_body(content = Object, description = "an NGSI-LD Query with temporalQ"),
    responses((status = 200), (status = 400)))]
pub(super) async fn temporal_query_post(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.require_tenant(&broker).await?;
    let mut params = query_map(raw)?;
    query_body_params(&value, &mut params)?;
    if let Some(temporal) = value.get("temporalQ") {
        let Value::Object(members) = temporal else {
            return Err(errors::bad_request("temporalQ must be a JSON object"));
        };
        for key in ["timerel", "timeAt", "endTimeAt", "timeproperty", "lastN"] {
            match members.get(key) {
                Some(Value::String(text)) => {
                    params.insert(key.into(), text.clone());
                }
                Some(Value::Number(number)) => {
                    params.insert(key.into(), number.to_string());
                }
                Some(other) => {
                    return Err(errors::bad_request(format!(
                        "temporalQ.{key} must be a string, not {other}"
                    )));
                }
                None => {}
            }
        }
        // Table 5.2.21-1: a TemporalQuery may carry the aggregation itself.
        if members.contains_key("aggrMethods") || members.contains_key("aggrPeriodDuration") {
            aggregation_params("temporalQ", temporal, &mut params)?;
        }
    }
    if let Some(aggregation) = value.get("aggrParams") {
        aggregation_params("aggrParams", aggregation, &mut params)?;
    }
    let map = map_use(&broker, &request, &headers, &params).await?;
    temporal_selection(&broker, &request, params, (map, None)).await
}

/// A Query's `aggrParams` (clause 5.2.44) or a TemporalQuery's aggregation members (clause
/// 5.2.21): `aggrMethods` (a list; in a TemporalQuery also one comma-separated string) and
/// `aggrPeriodDuration`, as the URL parameters of the same aggregation; asks for the
/// aggregated representation unless the URL chose another. `member` names the object in
/// errors.
pub(super) fn aggregation_params(
    member: &str,
    value: &Value,
    params: &mut HashMap<String, String>,
) -> NgsiResult<()> {
    let Value::Object(members) = value else {
        return Err(errors::bad_request(format!(
            "{member} must be a JSON object"
        )));
    };
    let methods = match members.get("aggrMethods") {
        Some(Value::Array(methods)) if !methods.is_empty() => methods
            .iter()
            .map(|m| m.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>(),
        // TemporalQuery's is a comma-separated string too (Table 5.2.21-1); aggrParams' a list.
        Some(Value::String(listed)) if member == "temporalQ" && !listed.trim().is_empty() => {
            Some(listed.split(',').map(|m| m.trim().to_owned()).collect())
        }
        _ => None,
    }
    .ok_or_else(|| {
        errors::bad_request(format!(
            "{member}.aggrMethods must be a list of aggregation method names"
        ))
    })?;
    params.insert("aggrMethods".into(), methods.join(","));
    match members.get("aggrPeriodDuration") {
        Some(Value::String(duration)) => {
            params.insert("aggrPeriodDuration".into(), duration.clone());
        }
        Some(other) => {
            return Err(errors::bad_request(format!(
                "{member}.aggrPeriodDuration must be a duration string, not {other}"
            )));
        }
        None => {}
    }
    if !params.contains_key("format") && !has_option(params, "temporalValues") {
        params.insert("format".into(), "aggregatedValues".into());
    }
    Ok(())
}

/// The temporal evolution of the entities that `params` (entity and temporal query
/// parameters) select.
pub(super) async fn temporal_selection(
    broker: &ContextBroker,
    request: &Request,
    params: HashMap<String, String>,
    (map, map_only): (MapUse, Option<i64>),
) -> NgsiResult<Response> {
    let temporal = temporal_request(&params, &request.context)?;
    let mut selecting = params.clone();
    // `attrs` picks the attributes shown here, not the entities.
    selecting.remove("attrs");
    if !["type", "id", "idPattern", "q", "georel"]
        .iter()
        .any(|k| selecting.contains_key(*k))
    {
        return Err(errors::bad_request(
            "a temporal query needs at least one of type, id, idPattern, q or a geo-query",
        ));
    }
    if params
        .get("orderBy")
        .is_some_and(|o| o.split(';').next() != Some("id"))
    {
        return Err(errors::bad_request(
            "a temporal query is ordered by id only (clause 5.7.4.4)",
        ));
    }
    // Clause 5.7.4.4: q is matched by the attribute instances in the time range, not by the
    // entity as it is now.
    let expand_values = selecting.remove("expandValues");
    let q = selecting
        .remove("q")
        .map(|q| crate::query::parse_expanding(&q, expand_values.as_deref(), &request.context))
        .transpose()?;
    if q.as_ref().is_some_and(|q| q.link_depth() > 0) {
        return Err(errors::bad_request(
            "q on attributes of linked entities ({…}) is not offered in temporal queries",
        ));
    }
    if q.is_some()
        && !selecting
            .keys()
            .any(|k| ["type", "id", "idPattern", "georel"].contains(&k.as_str()))
    {
        selecting.insert("idPattern".into(), ".*".into());
    }
    let mut query = entity_query(&selecting, &request.context, broker.config.max_limit)?;
    let (offset, limit) = (query.offset, query.limit);
    let mut headers = HeaderMap::new();
    // A live EntityMap fixes the set (clause 5.5.14); one asked for holds every match.
    let nothing = match &map {
        MapUse::Use(map) => {
            map_header(map, &mut headers);
            restrict_to_map(&mut query.selection.ids, map)
        }
        _ => false,
    };
    let all = matches!(map, MapUse::Create);
    let mut matching: Vec<Stored> = Vec::new();
    if !nothing {
        let selected = broker
            .select(&request.tenant, &request.viewer, &query.selection, false)
            .await?;
        for stored in selected.entities.into_iter().filter(|s| query.keeps(s)) {
            if let Some(q) = &q
                && !windowed_matches(broker, request, &stored, q, &temporal).await?
            {
                continue;
            }
            matching.push(stored);
            if !all && matching.len() >= offset + limit {
                break;
            }
        }
    }
    let mut status = StatusCode::OK;
    if all {
        let lifetime = map_only.unwrap_or(crate::entity_maps::DEFAULT_LIFETIME_MS);
        let made = make_map(broker, request, &matching, &HashMap::new(), lifetime).await?;
        map_header(&made, &mut headers);
        if map_only.is_some() {
            return Ok(request.respond(StatusCode::CREATED, made.render(), &mut headers));
        }
        status = StatusCode::CREATED;
    }
    let matching: Vec<Stored> = matching.into_iter().skip(offset).take(limit).collect();
    let mut bodies = Vec::new();
    for stored in &matching {
        bodies.push(temporal_body(broker, request, stored, &temporal).await?);
    }
    Ok(request.respond(status, Value::Array(bodies), &mut headers))
}

/// Does `q` hold for the entity's attribute instances in the request's time range (each
/// attribute q names, with all its instances there)?
pub(super) async fn windowed_matches(
    broker: &ContextBroker,
    request: &Request,
    stored: &Stored,
    q: &crate::query::Expr,
    temporal: &TemporalRequest,
) -> NgsiResult<bool> {
    let mut windowed = stored.entity.clone();
    windowed.attrs.clear();
    for name in q.attributes() {
        if windowed.attrs.contains_key(name) {
            continue;
        }
        let instances = crate::temporal::instances(
            &broker.db,
            &request.tenant,
            &stored.entity.id,
            name,
            (temporal.range, temporal.property),
            None,
        )
        .await?;
        if !instances.is_empty() {
            windowed
                .attrs
                .insert(name.to_owned(), Value::Array(instances));
        }
    }
    Ok(q.matches(&windowed))
}

/// When an attribute instance was observed, for ordering instances (unknown: earliest).
pub(super) fn instance_time(instance: &Value) -> i64 {
    crate::temporal::observed_ms(instance).unwrap_or(i64::MIN)
}

/// Per attribute, its newest instance of each dataset (one instance, or an array of them).
pub(super) fn newest_instances(attrs: &Map<String, Value>) -> Map<String, Value> {
    let mut newest = Map::new();
    for (name, value) in attrs {
        let mut per_dataset: Vec<&Value> = Vec::new();
        for instance in value
            .as_array()
            .map_or_else(|| vec![value], |a| a.iter().collect())
        {
            match per_dataset.iter_mut().find(|kept| {
                crate::temporal::dataset_of(kept) == crate::temporal::dataset_of(instance)
            }) {
                Some(kept) if instance_time(instance) >= instance_time(kept) => *kept = instance,
                Some(_) => {}
                None => per_dataset.push(instance),
            }
        }
        let attribute = match per_dataset.as_slice() {
            [one] => (*one).clone(),
            many => Value::Array(many.iter().map(|i| (*i).clone()).collect()),
        };
        newest.insert(name.clone(), attribute);
    }
    newest
}

/// The attribute without its deleted instances (value the NGSI-LD Null, clause 4.5.7); None
/// when nothing is left.
pub(super) fn without_deleted(attribute: Value) -> Option<Value> {
    let deleted = |i: &Value| i.get("value").and_then(Value::as_str) == Some(model::NGSI_LD_NULL);
    match attribute {
        Value::Array(instances) => {
            let mut kept: Vec<Value> = instances.into_iter().filter(|i| !deleted(i)).collect();
            match kept.len() {
                0 => None,
                1 => kept.pop(),
                _ => Some(Value::Array(kept)),
            }
        }
        one => (!deleted(&one)).then_some(one),
    }
}

/// The attribute `current` becomes with `candidate` (one instance) if the candidate is newer
/// than the current instance of its dataset (or there is none); None if it is not.
pub(super) fn with_newer(current: Option<&Value>, candidate: &Value) -> Option<Value> {
    let dataset = crate::temporal::dataset_of(candidate);
    match current {
        None => Some(candidate.clone()),
        Some(Value::Array(instances)) => {
            let mut instances = instances.clone();
            match instances
                .iter()
                .position(|i| crate::temporal::dataset_of(i) == dataset)
            {
                Some(at) if instance_time(candidate) > instance_time(&instances[at]) => {
                    instances[at] = candidate.clone();
                }
                Some(_) => return None,
                None => instances.push(candidate.clone()),
            }
            Some(Value::Array(instances))
        }
        Some(one) if crate::temporal::dataset_of(one) != dataset => {
            Some(Value::Array(vec![one.clone(), candidate.clone()]))
        }
        Some(one) => (instance_time(candidate) > instance_time(one)).then(|| candidate.clone()),
    }
}

/// Adds `instances` (per attribute, instances) to entity `id`'s history; the entity's current
/// value of an attribute then follows the newest instance of each dataset.
pub(super) async fn add_instances(
    broker: &ContextBroker,
    request: &Request,
    id: &str,
    instances: &Map<String, Value>,
    types: &[String],
) -> NgsiResult<()> {
    let stored = broker
        .add_history(&request.tenant, id, &request.viewer, instances, |stored| {
            request.may_change(broker, stored)
        })
        .await?;
    let newest = newest_instances(instances);
    let newer = |stored: &Stored| -> Vec<(String, Value)> {
        let mut changes = Vec::new();
        for (name, attribute) in &newest {
            let mut current = stored.entity.attrs.get(name).cloned();
            let mut changed = false;
            for candidate in attribute
                .as_array()
                .map_or_else(|| vec![attribute], |a| a.iter().collect())
            {
                if let Some(next) = with_newer(current.as_ref(), candidate) {
                    current = Some(next);
                    changed = true;
                }
            }
            if let (true, Some(current)) = (changed, current) {
                changes.push((name.clone(), current));
            }
        }
        changes
    };
    let new_type = types.iter().any(|t| !stored.entity.types.contains(t));
    if newer(&stored).is_empty() && !new_type {
        return Ok(());
    }
    let stamp = now();
    broker
        .modify(
            &request.tenant,
            id,
            &request.viewer,
            // The request's own audit record (the handler's note) covers this change too.
            None,
            |stored| {
                request.may_change(broker, stored)?;
                // Clause 5.6.11.4: new entity type names join the entity's.
                stored.entity.add_types(types);
                for (name, attribute) in newer(stored) {
                    match without_deleted(attribute) {
                        Some(attribute) => stored.entity.attrs.insert(name, attribute),
                        None => stored.entity.attrs.remove(&name),
                    };
                }
                stored.entity.modified_at = stamp.clone();
                Ok(())
            },
        )
        .await?;
    Ok(())
}

/// Create or add to the temporal representation of an entity (clause 5.6.11): an entity whose
/// attributes are arrays of instances, each with its `observedAt`. A new entity is created
/// from the newest instances (201); an existing one gets the instances added to its history
/// (204). Either way the entity's current values follow the newest instances.
#[utoipa::path(post, path = "/ngsi-ld/v1/temporal/entities", tag = "ngsi-ld",
    request_body(content = Object, description = "an entity in the temporal representation"),
    responses((status = 201), (status = 204), (status = 400)))]
pub(super) async fn create_temporal(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    params_of(raw, &[CREATE_PARAMS])?;
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    let owner = request.writer(&broker)?;
    let entity = model::parse_temporal_entity(value, &request.context, &now())?;
    let current = model::Entity {
        id: entity.id.clone(),
        types: entity.types.clone(),
        attrs: newest_instances(&entity.attrs)
            .into_iter()
            .filter_map(|(name, attribute)| without_deleted(attribute).map(|a| (name, a)))
            .collect(),
        created_at: entity.created_at.clone(),
        modified_at: entity.modified_at.clone(),
        scope: entity.scope.clone(),
    };
    let created = match broker.create(&request.tenant, &current, &owner).await {
        Ok(()) => true,
        Err(problem) if problem.type_uri.ends_with("AlreadyExists") => false,
        Err(problem) => return Err(problem),
    };
    add_instances(&broker, &request, &entity.id, &entity.attrs, &entity.types).await?;
    let note = audit("ngsi.temporal.create", &request.tenant, &entity.id);
    if !created {
        return Ok((StatusCode::NO_CONTENT, note).into_response());
    }
    let mut response = (StatusCode::CREATED, note).into_response();
    if let Ok(value) =
        HeaderValue::from_str(&format!("/ngsi-ld/v1/temporal/entities/{}", entity.id))
    {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Add attribute instances to an entity's temporal representation (clause 5.6.12): 204.
#[utoipa::path(post, path = "/ngsi-ld/v1/temporal/entities/{entityId}/attrs", tag = "ngsi-ld",
    params(("entityId" = String, Path)), request_body(content = Object),
    responses((status = 204), (status = 400), (status = 404)))]
pub(super) async fn add_temporal_attributes(
    ngsi: Ngsi,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (broker, _, _, request, value, _) = ngsi.write_request(&body).await?;
    model::check_entity_id(&id)?;
    let Value::Object(object) = value else {
        return Err(errors::bad_request("attributes must be a JSON object"));
    };
    let attrs = model::parse_temporal_attributes(object, &request.context, &now())?;
    add_instances(&broker, &request, &id, &attrs, &[]).await?;
    Ok((
        StatusCode::NO_CONTENT,
        audit("ngsi.temporal.append", &request.tenant, &id),
    )
        .into_response())
}

/// Delete an entity with its temporal representation (clause 5.6.16): 204.
#[utoipa::path(delete, path = "/ngsi-ld/v1/temporal/entities/{entityId}", tag = "ngsi-ld",
    params(("entityId" = String, Path)), responses((status = 204), (status = 404)))]
pub(super) async fn delete_temporal(ngsi: Ngsi, Path(id): Path<String>) -> NgsiResult<Response> {
    let (broker, principal, headers, _) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    model::check_entity_id(&id)?;
    let allowed = |stored: &Stored| request.may_change(&broker, stored);
    broker
        .delete_history(
            &request.tenant,
            &id,
            &request.viewer,
            Scope::Entity,
            allowed,
        )
        .await?;
    broker
        .delete(&request.tenant, &id, &request.viewer, allowed)
        .await?;
    Ok((
        StatusCode::NO_CONTENT,
        audit("ngsi.temporal.delete", &request.tenant, &id),
    )
        .into_response())
}

/// Delete an attribute's history (clause 5.6.13): its default instances, those of
/// `datasetId`, or all (`deleteAll=true`): 204; 404 when there were none.
#[utoipa::path(delete, path = "/ngsi-ld/v1/temporal/entities/{entityId}/attrs/{attrId}", tag = "ngsi-ld",
    params(("entityId" = String, Path), ("attrId" = String, Path)),
    responses((status = 204), (status = 404)))]
pub(super) async fn delete_temporal_attribute(
    ngsi: Ngsi,
    Path((id, attr)): Path<(String, String)>,
) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    model::check_entity_id(&id)?;
    let params = query_map(raw)?;
    let all = flag(&params, "deleteAll")?;
    let name = request.context.expand(&attr);
    let dataset = params.get("datasetId").map_or("@none", String::as_str);
    let scope = Scope::Attribute {
        attr: &name,
        dataset: (!all).then_some(dataset),
    };
    let deleted = broker
        .delete_history(&request.tenant, &id, &request.viewer, scope, |stored| {
            request.may_change(&broker, stored)
        })
        .await?;
    if deleted == 0 {
        return Err(errors::not_found(format!(
            "entity {id} has no history of {attr}"
        )));
    }
    Ok((
        StatusCode::NO_CONTENT,
        audit("ngsi.temporal.attr.delete", &request.tenant, &id),
    )
        .into_response())
}

/// The time and dataset an `instanceId` from this broker names.
pub(super) fn instance_key(instance: &str) -> NgsiResult<(i64, String)> {
    crate::temporal::parse_instance_id(instance).ok_or_else(|| {
        errors::bad_request(format!(
            "{instance:?} is not an instanceId this broker gave"
        ))
    })
}

/// Modify one attribute instance in the history (clause 5.6.14), named by its `instanceId`:
/// the fragment's members replace the instance's; its time and dataset stay. 204; 404 when
/// there is none.
#[utoipa::path(patch, path = "/ngsi-ld/v1/temporal/entities/{entityId}/attrs/{attrId}/{instanceId}", tag = "ngsi-ld",
    params(("entityId" = String, Path), ("attrId" = String, Path), ("instanceId" = String, Path)),
    request_body(content = Object), responses((status = 204), (status = 400), (status = 404)))]
pub(super) async fn modify_temporal_instance(
    ngsi: Ngsi,
    Path((id, attr, instance)): Path<(String, String, String)>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (broker, _, _, request, value, _) = ngsi.write_request(&body).await?;
    model::check_entity_id(&id)?;
    let (at_ms, dataset) = instance_key(&instance)?;
    let Value::Object(mut fragment) = value else {
        return Err(errors::bad_request(
            "the instance fragment must be a JSON object",
        ));
    };
    fragment.remove("@context");
    fragment.remove("instanceId");
    let parsed = model::parse_attribute(&attr, Value::Object(fragment), &request.context, &now())?;
    let name = request.context.expand(&attr);
    broker
        .modify_history_instance(
            &request.tenant,
            &id,
            &request.viewer,
            (&name, &dataset, at_ms),
            |stored| {
                let (Value::Object(mut merged), Value::Object(given)) = (stored, parsed) else {
                    return Err(errors::bad_request("an instance is a JSON object"));
                };
                for key in ["observedAt", "datasetId"] {
                    if let Some(new) = given.get(key)
                        && merged.get(key) != Some(new)
                    {
                        return Err(errors::bad_request(format!(
                            "an instance keeps its {key}: delete it and add another"
                        )));
                    }
                }
                for (key, value) in given {
                    if !matches!(key.as_str(), "createdAt" | "modifiedAt") {
                        merged.insert(key, value);
                    }
                }
                Ok(Value::Object(merged))
            },
            |stored| request.may_change(&broker, stored),
        )
        .await?;
    Ok((
        StatusCode::NO_CONTENT,
        audit("ngsi.temporal.instance.modify", &request.tenant, &id),
    )
        .into_response())
}

/// Delete one attribute instance from the history (clause 5.6.15), named by its
/// `instanceId`: 204; 404 when there is none.
#[utoipa::path(delete, path = "/ngsi-ld/v1/temporal/entities/{entityId}/attrs/{attrId}/{instanceId}", tag = "ngsi-ld",
    params(("entityId" = String, Path), ("attrId" = String, Path), ("instanceId" = String, Path)),
    responses((status = 204), (status = 400), (status = 404)))]
pub(super) async fn delete_temporal_instance(
    ngsi: Ngsi,
    Path((id, attr, instance)): Path<(String, String, String)>,
) -> NgsiResult<Response> {
    let (broker, principal, headers, _) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    model::check_entity_id(&id)?;
    let (at_ms, dataset) = instance_key(&instance)?;
    let name = request.context.expand(&attr);
    let scope = Scope::Instance {
        attr: &name,
        dataset: &dataset,
        at_ms,
    };
    let deleted = broker
        .delete_history(&request.tenant, &id, &request.viewer, scope, |stored| {
            request.may_change(&broker, stored)
        })
        .await?;
    if deleted == 0 {
        return Err(errors::not_found(format!(
            "entity {id} has no instance {instance} of {attr}"
        )));
    }
    Ok((
        StatusCode::NO_CONTENT,
        audit("ngsi.temporal.instance.delete", &request.tenant, &id),
    )
        .into_response())
}
