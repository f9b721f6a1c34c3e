//! Entities: create, retrieve, replace, merge, delete (clauses 5.6.1, 5.6.4, 5.6.6, 5.6.17, 5.7.1).

use super::NgsiResult;
use super::{forward::*, map_use::*, request::*};
use crate::jsonld::Context;
use crate::linked::{Join, Linking};
use crate::model::{self, RenderOptions};
use crate::{ContextBroker, Stored, errors};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Create an entity (201 with its Location; 409 AlreadyExists).
#[utoipa::path(post, path = "/ngsi-ld/v1/entities", tag = "ngsi-ld",
    request_body(content = Object, description = "an NGSI-LD entity (normalized or concise)"),
    responses((status = 201), (status = 400), (status = 409), (status = 415)))]
pub(super) async fn create_entity(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let params = params_of(raw, &[CREATE_PARAMS])?;
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    let owner = request.writer(&broker)?;
    let stamp = now();
    let (entity, shared) = if broker.sources.any_for_writes(&request.tenant) {
        let parsed = model::parse_entity(value.clone(), &request.context, &stamp)?;
        if request.forward(&broker, &params)?.is_some()
            && let Some(source) = broker.sources.refusing(
                (&request.tenant, &request.viewer),
                "createEntity",
                (&parsed.id, &parsed.types),
            )
        {
            return Err(errors::conflict(format!(
                "entity {} is held by the context source of redirect registration {}, which does \
                 not offer createEntity",
                parsed.id,
                source.id()
            )));
        }
        let shared = share_write(
            &broker,
            &request,
            &params,
            ("createEntity", reqwest::Method::POST, "/entities"),
            (&parsed.id, &parsed.types),
            value,
        )
        .await?;
        // What the sources took is not created here (or nothing is, when one holds it all).
        let entity = match &shared.local {
            Some(local) if shared.forwarded => {
                model::parse_entity(local.clone(), &request.context, &stamp)?
            }
            _ => parsed,
        };
        (entity, shared)
    } else {
        let entity = model::parse_entity(value, &request.context, &stamp)?;
        (entity, Shared::alone(Value::Null))
    };
    if shared.local.is_some() {
        broker.create(&request.tenant, &entity, &owner).await?;
    }
    let location = format!("/ngsi-ld/v1/entities/{}", entity.id);
    let not_updated = shared.not_updated();
    let mut response = if not_updated.is_empty() {
        (
            StatusCode::CREATED,
            audit("ngsi.entity.create", &request.tenant, &entity.id),
        )
            .into_response()
    } else {
        (
            audit("ngsi.entity.create", &request.tenant, &entity.id),
            partial(
                entity.attrs.keys().cloned().collect(),
                not_updated,
                &request.context,
            ),
        )
            .into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Retrieve an entity (`attrs`, `options=keyValues|concise|sysAttrs`).
#[utoipa::path(get, path = "/ngsi-ld/v1/entities/{entityId}", tag = "ngsi-ld",
    params(("entityId" = String, Path)), responses((status = 200), (status = 404)))]
pub(super) async fn retrieve_entity(ngsi: Ngsi, Path(id): Path<String>) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    model::check_entity_id(&id)?;
    let params = params_of(raw, &[RENDER_PARAMS, &["type"]])?;
    request.geometry_property_needs_geo_json(&params)?;
    let options = render_options(&params, &request.context)?;
    let map = map_use(&broker, &request, &headers, &params).await?;
    let local = broker.get(&request.tenant, &id, &request.viewer).await?;
    let selector = TypeSelector::read(&params, &request.context);
    let linking = linking(&params)?;
    // Context sources registered for this entity are asked too (distributed retrieval).
    let known_types = match (&local, &selector.0) {
        (Some(local), _) => local.entity.types.as_slice(),
        (None, Some(types)) => types.as_slice(),
        (None, None) => &[],
    };
    let sources = broker.sources.for_entity(
        &request.tenant,
        &request.viewer,
        (&id, known_types),
        options.attrs.as_deref().unwrap_or_default(),
    );
    let mut origins: Vec<String> = Vec::new();
    if local.is_some() {
        origins.push(crate::entity_maps::HERE.to_owned());
    }
    if !sources.is_empty()
        && let Some(forward) = request.forward(&broker, &params)?
    {
        let (copies, warnings) = broker
            .sources
            .entities_by_id(
                &sources,
                (&id, known_types),
                options.attrs.as_deref().unwrap_or_default(),
                (&request.context, &forward),
            )
            .await;
        let mut copies = copies.into_iter().map(|(registration, copy)| {
            if !origins.contains(&registration) {
                origins.push(registration);
            }
            copy
        });
        let first = match &local {
            Some(local) => Some(local.entity.clone()),
            None => copies.next(),
        };
        let answer = match first {
            Some(mut merged) => {
                for copy in copies {
                    crate::distributed::merge(&mut merged, copy);
                }
                let stored = Stored {
                    entity: merged,
                    owner: String::new(),
                    public: false,
                };
                match selector.check(&stored) {
                    Ok(()) => answer_entity(&broker, &request, &stored, &options, linking).await,
                    Err(problem) => Err(problem),
                }
            }
            None => Err(errors::not_found(format!("there is no entity {id}"))),
        };
        let answer = with_map(&broker, &request, answer, map, (&id, origins)).await;
        return Ok(with_warnings(answer, &warnings));
    }
    let stored = local.ok_or_else(|| errors::not_found(format!("there is no entity {id}")))?;
    selector.check(&stored)?;
    if linking.is_none() && request.plain() && options.whole() && matches!(map, MapUse::None) {
        // The same bytes for every such retrieval while the entity stays cached.
        let render = || model::render(&stored.entity, &request.context, &options);
        let body = stored.body(options.format, || to_json_bytes(&render()))?;
        return Ok(request.respond_json(StatusCode::OK, body, &mut HeaderMap::new()));
    }
    let answer = answer_entity(&broker, &request, &stored, &options, linking).await;
    with_map(&broker, &request, answer, map, (&id, origins)).await
}

/// A retrieval's answer with the EntityMap it asked for (clause 5.7.1.4): the live one it named,
/// or a new one holding entity `id` with where it came from.
pub(super) async fn with_map(
    broker: &ContextBroker,
    request: &Request,
    answer: NgsiResult<Response>,
    map: MapUse,
    (id, origins): (&str, Vec<String>),
) -> NgsiResult<Response> {
    let mut response = answer?;
    match map {
        MapUse::None => {}
        MapUse::Use(map) => map_header(&map, response.headers_mut()),
        MapUse::Create => {
            let entries = std::collections::BTreeMap::from([(id.to_owned(), origins)]);
            let made = crate::entity_maps::EntityMap::new(
                map_owner(request),
                entries,
                crate::entity_maps::DEFAULT_LIFETIME_MS,
            );
            crate::entity_maps::insert(&broker.db, &request.tenant, &made).await?;
            map_header(&made, response.headers_mut());
        }
    }
    Ok(response)
}

/// One entity as Retrieve Entity answers it, with what it links to when asked (`linking`).
pub(super) async fn answer_entity(
    broker: &ContextBroker,
    request: &Request,
    stored: &Stored,
    options: &RenderOptions,
    linking: Option<Linking>,
) -> NgsiResult<Response> {
    let body = match linking {
        Some(linking) => {
            let mut joined = request
                .render_linked(broker, &[&stored.entity], options, linking)
                .await?;
            // Flat: the entity and those it links to, as a list (a FeatureCollection in
            // GeoJSON).
            match linking.join {
                Join::Flat => request.collection(joined),
                Join::Inline => joined.pop().unwrap_or_default(),
            }
        }
        None => request.render(&stored.entity, options),
    };
    nothing_left(&body, &stored.entity.id)?;
    Ok(request.respond(StatusCode::OK, body, &mut HeaderMap::new()))
}

/// Replace an entity's type and attributes (CIM 009 v1.8 §5.6.?): 204.
#[utoipa::path(put, path = "/ngsi-ld/v1/entities/{entityId}", tag = "ngsi-ld",
    params(("entityId" = String, Path)),
    request_body(content = Object), responses((status = 204), (status = 400), (status = 404)))]
pub(super) async fn replace_entity(
    ngsi: Ngsi,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (broker, headers, _, request, mut value, _) = ngsi.write_request(&body).await?;
    if let Value::Object(object) = &mut value {
        match object.get("id") {
            Some(Value::String(given)) if *given != id => {
                return Err(errors::bad_request(format!(
                    "the body's id {given:?} differs from the path's {id:?}"
                )));
            }
            _ => {
                object.insert("id".into(), id.clone().into());
            }
        }
    }
    let path = format!("/entities/{id}");
    let mut shared = share_attribute_write(
        &broker,
        &request,
        &HashMap::new(),
        ("replaceEntity", reqwest::Method::PUT, &path),
        &id,
        value,
    )
    .await?;
    let Some(value) = shared.local.take() else {
        return Ok(shared.answered_by_sources(&request.context));
    };
    let replacement = model::parse_entity(value, &request.context, &now())?;
    broker
        .modify(
            &request.tenant,
            &id,
            &request.viewer,
            Some(&request.audit_entry(&headers, "ngsi.entity.replace", &id)),
            |stored| {
                request.may_change(&broker, stored)?;
                stored.entity.types = replacement.types;
                stored.entity.attrs = replacement.attrs;
                stored.entity.scope = replacement.scope;
                stored.entity.modified_at = replacement.modified_at;
                Ok(())
            },
        )
        .await?;
    Ok(shared.write_outcome(&request))
}

/// Merge a fragment into an entity (v1.8 merge-patch semantics: given attributes replace or
/// add; `"urn:ngsi-ld:null"` deletes): 204.
#[utoipa::path(patch, path = "/ngsi-ld/v1/entities/{entityId}", tag = "ngsi-ld",
    params(("entityId" = String, Path)),
    request_body(content = Object), responses((status = 204), (status = 400), (status = 404)))]
pub(super) async fn merge_entity(
    ngsi: Ngsi,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (broker, headers, _, request, value, _) = ngsi.write_request(&body).await?;
    let path = format!("/entities/{id}");
    let mut shared = share_attribute_write(
        &broker,
        &request,
        &HashMap::new(),
        ("mergeEntity", reqwest::Method::PATCH, &path),
        &id,
        value,
    )
    .await?;
    let Some(value) = shared.local.take() else {
        return Ok(shared.answered_by_sources(&request.context));
    };
    let Value::Object(object) = value else {
        return Err(errors::bad_request("the fragment must be a JSON object"));
    };
    if let Some(Value::String(given)) = object.get("id")
        && *given != id
    {
        return Err(errors::bad_request(format!(
            "the body's id {given:?} differs from the path's {id:?}"
        )));
    }
    let stamp = now();
    let merge = Merge::parse(object, &request.context, &stamp)?;
    broker
        .modify(
            &request.tenant,
            &id,
            &request.viewer,
            Some(&request.audit_entry(&headers, "ngsi.entity.merge", &id)),
            |stored| {
                request.may_change(&broker, stored)?;
                merge.apply(stored, &stamp);
                Ok(())
            },
        )
        .await?;
    Ok(shared.write_outcome(&request))
}

/// An attribute instance a merge or update deletes: the (expanded) name and the datasetId
/// of the instance (`None`: the default instance).
pub(super) type Removal = (String, Option<String>);

/// Takes the members of a merge or update fragment that are the NGSI-LD Null out of it (one
/// instance, or a list of instances all Null): the instances to delete (clause 5.5.8).
pub(super) fn take_removals(object: &mut Map<String, Value>, context: &Context) -> Vec<Removal> {
    let dataset = |instance: &Value| {
        instance
            .get("datasetId")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut deleted = Vec::new();
    object.retain(|name, value| {
        let instances: Vec<&Value> = match value {
            Value::Array(items) if !items.is_empty() && items.iter().all(model::removes) => {
                items.iter().collect()
            }
            Value::Array(_) => return true,
            one if model::removes(one) => vec![one],
            _ => return true,
        };
        for instance in instances {
            deleted.push((context.expand(name), dataset(instance)));
        }
        false
    });
    deleted
}

/// Deletes one instance a merge or update named; false when there was none.
pub(super) fn remove_instance(stored: &mut Stored, (name, dataset): &Removal) -> bool {
    stored
        .entity
        .remove_instances(name, dataset.as_deref(), false)
}

/// A fragment's `scope` member, validated: `Some(None)` for the NGSI-LD Null where it may
/// remove the scope (merge).
pub(super) fn take_scope(
    object: &mut Map<String, Value>,
    null_removes: bool,
) -> NgsiResult<Option<Option<Value>>> {
    match object.remove("scope") {
        None => Ok(None),
        Some(scope) if null_removes && model::removes(&scope) => Ok(Some(None)),
        Some(scope) => {
            model::check_scope(&scope)?;
            Ok(Some(Some(scope)))
        }
    }
}

/// A fragment to merge into an entity (clause 5.6.17): types to add, attributes that replace
/// or add, and attributes to delete (given as `"urn:ngsi-ld:null"`).
pub(super) struct Merge {
    pub(super) types: Option<Vec<String>>,
    /// A new scope, or (`Some(None)`) its removal.
    pub(super) scope: Option<Option<Value>>,
    pub(super) attrs: Map<String, Value>,
    pub(super) deleted: Vec<Removal>,
    /// Property values given as objects, as given: merged into the stored value (RFC 7396).
    pub(super) value_patches: HashMap<String, Value>,
}

impl Merge {
    pub(super) fn parse(
        mut object: Map<String, Value>,
        context: &Context,
        stamp: &str,
    ) -> NgsiResult<Self> {
        object.remove("@context");
        object.remove("id");
        let types = object
            .remove("type")
            .map(|t| model::parse_types(&t, context))
            .transpose()?;
        let scope = take_scope(&mut object, true)?;
        let deleted = take_removals(&mut object, context);
        let mut value_patches = HashMap::new();
        for (name, attribute) in object.iter_mut() {
            if let Some(value) = attribute.get_mut("value").filter(|v| v.is_object()) {
                let patch = std::mem::replace(value, Value::Null);
                *value = model::without_nulls(&patch);
                value_patches.insert(context.expand(name), patch);
            }
        }
        Ok(Self {
            types,
            scope,
            attrs: model::parse_attributes(object, context, stamp)?,
            deleted,
            value_patches,
        })
    }

    pub(super) fn apply(&self, stored: &mut Stored, stamp: &str) {
        if let Some(types) = &self.types {
            stored.entity.add_types(types);
        }
        if let Some(scope) = &self.scope {
            stored.entity.scope = scope.clone();
        }
        for (name, attribute) in &self.attrs {
            let mut attribute = attribute.clone();
            let stored_value = stored.entity.attrs.get(name).and_then(|a| a.get("value"));
            if let (Some(patch), Some(Value::Object(stored_value))) =
                (self.value_patches.get(name), stored_value)
                && let Some(value) = attribute.get_mut("value")
            {
                let mut merged = Value::Object(stored_value.clone());
                model::merge_patch(&mut merged, patch);
                *value = merged;
            }
            stored.entity.put_attribute(name.clone(), attribute);
        }
        for removal in &self.deleted {
            remove_instance(stored, removal);
        }
        stored.entity.modified_at = stamp.to_owned();
    }
}

#[utoipa::path(delete, path = "/ngsi-ld/v1/entities/{entityId}", tag = "ngsi-ld",
    params(("entityId" = String, Path)), responses((status = 204), (status = 404)))]
pub(super) async fn delete_entity(ngsi: Ngsi, Path(id): Path<String>) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let params = params_of(raw, &[&["type", "local"]])?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    model::check_entity_id(&id)?;
    let types = TypeSelector::read(&params, &request.context);
    let path = format!("/entities/{id}");
    let shared = share_attribute_write(
        &broker,
        &request,
        &params,
        ("deleteEntity", reqwest::Method::DELETE, &path),
        &id,
        Value::Null,
    )
    .await?;
    if shared.local.is_some() {
        let deleted = broker
            .delete(&request.tenant, &id, &request.viewer, |stored| {
                types.check(stored)?;
                request.may_change(&broker, stored)
            })
            .await;
        // Not here but deleted at a source: done.
        match deleted {
            Err(problem) if !(shared.forwarded && problem.status == 404) => {
                return Err(problem);
            }
            _ => {}
        }
    }
    if !shared.failed.is_empty() {
        let body = serde_json::json!({"notUpdated": shared.failed.iter().map(|(_, reason)| serde_json::json!({
            "attributeName": id, "reason": reason})).collect::<Vec<_>>()});
        return Ok((
            StatusCode::MULTI_STATUS,
            audit("ngsi.entity.delete", &request.tenant, &id),
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response());
    }
    Ok((
        StatusCode::NO_CONTENT,
        audit("ngsi.entity.delete", &request.tenant, &id),
    )
        .into_response())
}
