//! Attributes of an entity: append, update, partial update, replace, delete (clauses 5.6.2, 5.6.3, 5.6.5, 5.6.19).

use super::NgsiResult;
use super::{entities::*, forward::*, request::*};
use crate::errors;
use crate::model::{self};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;

use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::collections::HashMap;
use yunnao_identity::AuditNote;

/// Append attributes (existing ones are overwritten unless `options=noOverwrite`): 204 or 207.
#[utoipa::path(post, path = "/ngsi-ld/v1/entities/{entityId}/attrs", tag = "ngsi-ld",
    params(("entityId" = String, Path)),
    request_body(content = Object), responses((status = 204), (status = 207), (status = 404)))]
pub(super) async fn append_attributes(
    ngsi: Ngsi,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (broker, headers, raw, request, value, _) = ngsi.write_request(&body).await?;
    let params = query_map(raw)?;
    let no_overwrite = has_option(&params, "noOverwrite");
    let types = TypeSelector::read(&params, &request.context);
    let path = format!("/entities/{id}/attrs");
    let mut shared = share_attribute_write(
        &broker,
        &request,
        &params,
        ("appendAttrs", reqwest::Method::POST, &path),
        &id,
        value,
    )
    .await?;
    let Some(value) = shared.local.take() else {
        return Ok(shared.answered_by_sources(&request.context));
    };
    let Value::Object(mut object) = value else {
        return Err(errors::bad_request("attributes must be a JSON object"));
    };
    let scope = take_scope(&mut object, false)?.flatten();
    let stamp = now();
    let attrs = model::parse_attributes(object, &request.context, &stamp)?;
    let mut updated = Vec::new();
    let mut not_updated = Vec::new();
    broker
        .modify(
            &request.tenant,
            &id,
            &request.viewer,
            Some(&request.audit_entry(&headers, "ngsi.attrs.append", &id)),
            |stored| {
                types.check(stored)?;
                request.may_change(&broker, stored)?;
                if let Some(scope) = &scope {
                    stored.entity.add_scope(scope);
                }
                for (name, attribute) in attrs {
                    if no_overwrite && stored.entity.attrs.contains_key(&name) {
                        not_updated.push((
                            name,
                            "the attribute exists and noOverwrite was given".to_owned(),
                        ));
                        continue;
                    }
                    stored.entity.put_attribute(name.clone(), attribute);
                    updated.push(name);
                }
                stored.entity.modified_at = stamp.clone();
                Ok(())
            },
        )
        .await?;
    Ok(attributes_outcome(updated, not_updated, &shared, &request))
}

/// Update existing attributes; ones the entity lacks are reported (207), not added.
#[utoipa::path(patch, path = "/ngsi-ld/v1/entities/{entityId}/attrs", tag = "ngsi-ld",
    params(("entityId" = String, Path)),
    request_body(content = Object), responses((status = 204), (status = 207), (status = 404)))]
pub(super) async fn update_attributes(
    ngsi: Ngsi,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (broker, headers, raw, request, value, _) = ngsi.write_request(&body).await?;
    let params = query_map(raw)?;
    let types = TypeSelector::read(&params, &request.context);
    let path = format!("/entities/{id}/attrs");
    let mut shared = share_attribute_write(
        &broker,
        &request,
        &params,
        ("updateAttrs", reqwest::Method::PATCH, &path),
        &id,
        value,
    )
    .await?;
    let Some(value) = shared.local.take() else {
        return Ok(shared.answered_by_sources(&request.context));
    };
    let Value::Object(mut object) = value else {
        return Err(errors::bad_request("attributes must be a JSON object"));
    };
    let scope = take_scope(&mut object, true)?;
    // Clause 5.5.8: an attribute given as the NGSI-LD Null is deleted.
    let deleted = take_removals(&mut object, &request.context);
    let stamp = now();
    let attrs = model::parse_attributes(object, &request.context, &stamp)?;
    let mut updated = Vec::new();
    let mut not_updated = Vec::new();
    broker
        .modify(
            &request.tenant,
            &id,
            &request.viewer,
            Some(&request.audit_entry(&headers, "ngsi.attrs.update", &id)),
            |stored| {
                types.check(stored)?;
                request.may_change(&broker, stored)?;
                if let Some(scope) = &scope {
                    stored.entity.scope = scope.clone();
                }
                for removal in &deleted {
                    let name = removal.0.clone();
                    if remove_instance(stored, removal) {
                        if !updated.contains(&name) {
                            updated.push(name);
                        }
                    } else {
                        not_updated.push((name, "the entity has no such attribute".to_owned()));
                    }
                }
                for (name, attribute) in attrs {
                    if !stored.entity.attrs.contains_key(&name) {
                        not_updated.push((name, "the entity has no such attribute".to_owned()));
                        continue;
                    }
                    stored.entity.put_instances(name.clone(), attribute);
                    updated.push(name);
                }
                stored.entity.modified_at = stamp.clone();
                Ok(())
            },
        )
        .await?;
    Ok(attributes_outcome(updated, not_updated, &shared, &request))
}

/// Partial attribute update: the given members replace the stored ones, others are kept.
#[utoipa::path(patch, path = "/ngsi-ld/v1/entities/{entityId}/attrs/{attrId}", tag = "ngsi-ld",
    params(("entityId" = String, Path), ("attrId" = String, Path)),
    request_body(content = Object),
    responses((status = 204), (status = 400), (status = 404)))]
pub(super) async fn partial_attribute_update(
    ngsi: Ngsi,
    Path((id, attr)): Path<(String, String)>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (broker, headers, raw, request, value, _) = ngsi.write_request(&body).await?;
    let params = query_map(raw)?;
    let path = format!("/entities/{id}/attrs/{attr}");
    let shared = share_one_attribute(
        &broker,
        &request,
        &params,
        ("updateAttrs", reqwest::Method::PATCH, &path),
        (&id, &request.context.expand(&attr)),
        Some(&value),
    )
    .await?;
    if shared.local.is_none() {
        return Ok(shared.answered_by_sources(&request.context));
    }
    let Value::Object(mut fragment) = value else {
        return Err(errors::bad_request(
            "the attribute fragment must be a JSON object",
        ));
    };
    fragment.remove("@context");
    if attr == "scope" {
        return Err(errors::bad_request(
            "scope cannot be partially updated (clause 5.6.4): update or merge the entity",
        ));
    }
    if fragment.get("datasetId").is_some_and(model::removes) {
        return Err(errors::bad_request(
            "a datasetId cannot be removed with the NGSI-LD Null (clause 5.5.8)",
        ));
    }
    let types = TypeSelector::read(&params, &request.context);
    let name = request.context.expand(&attr);
    let stamp = now();
    // A fragment that is its type's NGSI-LD Null deletes the attribute (clause 5.6.4).
    let deletes = model::removes(&Value::Object(fragment.clone()));
    let dataset = fragment
        .get("datasetId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    broker
        .modify(
            &request.tenant,
            &id,
            &request.viewer,
            Some(&request.audit_entry(&headers, "ngsi.attr.update", &id)),
            |stored| {
                types.check(stored)?;
                request.may_change(&broker, stored)?;
                if deletes {
                    if !stored
                        .entity
                        .remove_instances(&name, dataset.as_deref(), false)
                    {
                        return Err(errors::not_found(format!(
                            "entity {id} has no attribute {attr}"
                        )));
                    }
                    stored.entity.modified_at = stamp.clone();
                    return Ok(());
                }
                let Some(Value::Object(existing)) = stored.entity.attrs.get(&name) else {
                    return Err(errors::not_found(format!(
                        "entity {id} has no attribute {attr}"
                    )));
                };
                let mut merged: Map<String, Value> = existing.clone();
                merged.remove("createdAt");
                merged.remove("modifiedAt");
                // Sub-attributes in the stored form are expanded; compact them back so the
                // merged attribute parses like a client's.
                let mut compacted = Map::new();
                for (member, value) in merged {
                    compacted.insert(request.context.compact(&member), value);
                }
                for (member, value) in fragment {
                    // The NGSI-LD Null removes a sub-attribute (clause 5.2.1).
                    if model::removes(&value) {
                        compacted.remove(&member);
                    } else {
                        compacted.insert(member, value);
                    }
                }
                let attribute = model::parse_attribute(
                    &attr,
                    Value::Object(compacted),
                    &request.context,
                    &stamp,
                )?;
                stored.entity.put_attribute(name.clone(), attribute);
                stored.entity.modified_at = stamp.clone();
                Ok(())
            },
        )
        .await?;
    Ok(shared.write_outcome(&request))
}

/// Replace one attribute (v1.8): 204; 404 when the entity or the attribute is missing.
#[utoipa::path(put, path = "/ngsi-ld/v1/entities/{entityId}/attrs/{attrId}", tag = "ngsi-ld",
    params(("entityId" = String, Path), ("attrId" = String, Path)),
    request_body(content = Object),
    responses((status = 204), (status = 400), (status = 404)))]
pub(super) async fn replace_attribute(
    ngsi: Ngsi,
    Path((id, attr)): Path<(String, String)>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (broker, headers, _, request, mut value, _) = ngsi.write_request(&body).await?;
    let path = format!("/entities/{id}/attrs/{attr}");
    let shared = share_one_attribute(
        &broker,
        &request,
        &HashMap::new(),
        ("replaceAttrs", reqwest::Method::PUT, &path),
        (&id, &request.context.expand(&attr)),
        Some(&value),
    )
    .await?;
    if shared.local.is_none() {
        return Ok(shared.answered_by_sources(&request.context));
    }
    if let Value::Object(object) = &mut value {
        object.remove("@context");
    }
    let name = request.context.expand(&attr);
    let stamp = now();
    let attribute = model::parse_attribute(&attr, value, &request.context, &stamp)?;
    broker
        .modify(
            &request.tenant,
            &id,
            &request.viewer,
            Some(&request.audit_entry(&headers, "ngsi.attr.replace", &id)),
            |stored| {
                request.may_change(&broker, stored)?;
                if !stored.entity.attrs.contains_key(&name) {
                    return Err(errors::not_found(format!(
                        "entity {id} has no attribute {attr}"
                    )));
                }
                stored.entity.put_attribute(name.clone(), attribute);
                stored.entity.modified_at = stamp.clone();
                Ok(())
            },
        )
        .await?;
    Ok(shared.write_outcome(&request))
}

#[utoipa::path(delete, path = "/ngsi-ld/v1/entities/{entityId}/attrs/{attrId}", tag = "ngsi-ld",
    params(("entityId" = String, Path), ("attrId" = String, Path)),
    responses((status = 204), (status = 404)))]
pub(super) async fn delete_attribute(
    ngsi: Ngsi,
    Path((id, attr)): Path<(String, String)>,
) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let params = params_of(raw, &[&["type", "datasetId", "deleteAll", "local"]])?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    request.writer(&broker)?;
    let types = TypeSelector::read(&params, &request.context);
    let dataset = params.get("datasetId").map(String::as_str);
    let all = flag(&params, "deleteAll")?;
    let name = request.context.expand(&attr);
    let mut path = format!("/entities/{id}/attrs/{attr}");
    if let Some(dataset) = dataset {
        path.push_str(&format!("?datasetId={dataset}"));
    } else if all {
        path.push_str("?deleteAll=true");
    }
    let shared = share_one_attribute(
        &broker,
        &request,
        &params,
        ("deleteAttrs", reqwest::Method::DELETE, &path),
        (&id, &name),
        None,
    )
    .await?;
    if shared.local.is_none() {
        return Ok(shared.answered_by_sources(&request.context));
    }
    let stamp = now();
    broker
        .modify(
            &request.tenant,
            &id,
            &request.viewer,
            Some(&request.audit_entry(&headers, "ngsi.attr.delete", &id)),
            |stored| {
                types.check(stored)?;
                request.may_change(&broker, stored)?;
                let removed = if attr == "scope" {
                    stored.entity.scope.take().is_some()
                } else {
                    stored.entity.remove_instances(&name, dataset, all)
                };
                if !removed {
                    return Err(errors::not_found(format!(
                        "entity {id} has no attribute {attr}{}",
                        dataset
                            .map(|d| format!(" with datasetId {d}"))
                            .unwrap_or_default()
                    )));
                }
                stored.entity.modified_at = stamp.clone();
                Ok(())
            },
        )
        .await?;
    Ok(shared.write_outcome(&request))
}

/// 204, or 207 with what this broker and the sources did not update (the change itself was
/// audited in its own transaction).
pub(super) fn attributes_outcome(
    mut updated: Vec<String>,
    mut not_updated: Vec<(String, String)>,
    shared: &Shared,
    request: &Request,
) -> Response {
    updated.extend(shared.sent_ok.iter().cloned());
    not_updated.extend(shared.not_updated());
    (
        Extension(AuditNote::recorded()),
        partial(updated, not_updated, &request.context),
    )
        .into_response()
}
