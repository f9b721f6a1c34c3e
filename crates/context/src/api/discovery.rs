//! Discovery: types, attributes, the broker's own identity, and the platform's open-data switch (clauses 5.7.5–5.7.8, 5.15).

use super::NgsiResult;
use super::request::*;
use crate::jsonld::Context;
use crate::{ContextBroker, Selection, errors};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use yunnao_core::Problem;

/// Who this broker is (clause 5.15.1, v1.9): an alias per tenant (stable, and different for
/// every tenant and installation, so a federation can tell loops from its tenants), its uptime
/// and the time now.
#[utoipa::path(get, path = "/ngsi-ld/v1/info/sourceIdentity", tag = "ngsi-ld",
    responses((status = 200), (status = 404)))]
pub(super) async fn source_identity(ngsi: Ngsi) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    params_of(raw, &[&["local"]])?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    let installation = broker.identity.installation();
    let uptime = broker.started.elapsed().as_secs();
    let body = serde_json::json!({
        "id": format!("urn:ngsi-ld:ContextSourceIdentity:{installation}"),
        "type": "ContextSourceIdentity",
        "contextSourceAlias": source_alias(&broker, &request.tenant),
        "contextSourceUptime": format!("PT{uptime}S"),
        "contextSourceTimeAt": now(),
        "contextSourceExtras": {"software": "yunnao", "version": env!("CARGO_PKG_VERSION")},
    });
    Ok(request.respond(StatusCode::OK, body, &mut HeaderMap::new()))
}

/// What the visible entities of a tenant hold: per type, its entities and attribute names;
/// per attribute, its count, attribute types and entity types.
#[derive(Default)]
pub(super) struct Inventory {
    pub(super) types: std::collections::BTreeMap<
        String,
        (
            usize,
            std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        ),
    >,
    pub(super) attributes: std::collections::BTreeMap<
        String,
        (
            usize,
            std::collections::BTreeSet<String>,
            std::collections::BTreeSet<String>,
        ),
    >,
}

pub(super) async fn inventory(broker: &ContextBroker, request: &Request) -> NgsiResult<Inventory> {
    let selected = broker
        .select(
            &request.tenant,
            &request.viewer,
            &Selection::default(),
            false,
        )
        .await?;
    let mut inventory = Inventory::default();
    for s in &selected.entities {
        for type_iri in &s.entity.types {
            let entry = inventory.types.entry(type_iri.clone()).or_default();
            entry.0 += 1;
            for (name, attribute) in &s.entity.attrs {
                let kinds = entry.1.entry(name.clone()).or_default();
                kinds.extend(attribute_kinds(attribute));
            }
        }
        for (name, attribute) in &s.entity.attrs {
            let entry = inventory.attributes.entry(name.clone()).or_default();
            entry.0 += 1;
            entry.1.extend(attribute_kinds(attribute));
            entry.2.extend(s.entity.types.iter().cloned());
        }
    }
    Ok(inventory)
}

pub(super) fn attribute_kinds(attribute: &Value) -> Vec<String> {
    let one = |a: &Value| {
        a.get("type")
            .and_then(Value::as_str)
            .unwrap_or("Property")
            .to_owned()
    };
    match attribute {
        Value::Array(instances) => instances.iter().map(one).collect(),
        other => vec![one(other)],
    }
}

/// `details` of a discovery request, with its parameters.
pub(super) fn details(raw: Option<String>) -> NgsiResult<(bool, HashMap<String, String>)> {
    let params = params_of(raw, &[&["details", "local"]])?;
    Ok((flag(&params, "details")?, params))
}

/// The names (expanded) a discovery list holds here (`local`), and those the context sources
/// registered for the tenant list for `operation` at `path` (its `member`), with the warnings
/// of the sources left out.
pub(super) async fn discovered(
    broker: &ContextBroker,
    request: &Request,
    params: &HashMap<String, String>,
    local: impl Iterator<Item = String>,
    (operation, path, member): (&str, &str, &str),
) -> NgsiResult<(
    std::collections::BTreeSet<String>,
    Vec<crate::distributed::Warning>,
)> {
    let mut names: std::collections::BTreeSet<String> = local.collect();
    let mut warnings = Vec::new();
    if broker.sources.any(&request.tenant)
        && let Some(forward) = request.forward(broker, params)?
    {
        let (remote, left_out) = broker
            .sources
            .names(
                (&request.tenant, &request.viewer),
                (operation, path, member),
                (&request.context, &forward),
            )
            .await;
        names.extend(remote);
        warnings = left_out;
    }
    Ok((names, warnings))
}

pub(super) fn list_id(kind: &str) -> String {
    format!("urn:ngsi-ld:{kind}:{}", yunnao_core::new_id())
}

/// The entity types in use (`details=true`: with their attribute names).
#[utoipa::path(get, path = "/ngsi-ld/v1/types", tag = "ngsi-ld", responses((status = 200)))]
pub(super) async fn list_types(ngsi: Ngsi) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    let (detailed, params) = details(raw)?;
    let inventory = inventory(&broker, &request).await?;
    let c = &request.context;
    let mut warnings = Vec::new();
    let body = if detailed {
        Value::Array(
            inventory
                .types
                .iter()
                .map(|(iri, (_, attrs))| {
                    serde_json::json!({"id": iri, "type": "EntityType", "typeName": c.compact(iri),
                        "attributeNames": attrs.keys().map(|a| c.compact(a)).collect::<Vec<_>>()})
                })
                .collect(),
        )
    } else {
        // Clause 4.3.6: the types the context sources hold are listed too.
        let (names, left_out) = discovered(
            &broker,
            &request,
            &params,
            inventory.types.keys().cloned(),
            ("retrieveEntityTypes", "/types", "typeList"),
        )
        .await?;
        warnings = left_out;
        serde_json::json!({"id": list_id("EntityTypeList"), "type": "EntityTypeList",
            "typeList": names.iter().map(|t| c.compact(t)).collect::<Vec<_>>()})
    };
    Ok(with_warnings(
        Ok(request.respond(StatusCode::OK, body, &mut HeaderMap::new())),
        &warnings,
    ))
}

/// One entity type: how many entities, which attributes of which attribute types.
#[utoipa::path(get, path = "/ngsi-ld/v1/types/{type}", tag = "ngsi-ld",
    params(("type" = String, Path)), responses((status = 200), (status = 404)))]
pub(super) async fn type_info(ngsi: Ngsi, Path(type_name): Path<String>) -> NgsiResult<Response> {
    let (broker, principal, headers, _) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    let iri = request.context.expand(&type_name);
    let inventory = inventory(&broker, &request).await?;
    let c = &request.context;
    let (count, attrs) = inventory
        .types
        .get(&iri)
        .ok_or_else(|| errors::not_found(format!("no entity has type {type_name}")))?;
    let body = serde_json::json!({"id": iri, "type": "EntityTypeInfo", "typeName": c.compact(&iri),
        "entityCount": count,
        "attributeDetails": attrs.iter().map(|(a, kinds)| serde_json::json!({
            "id": a, "type": "Attribute", "attributeName": c.compact(a), "attributeTypes": kinds})).collect::<Vec<_>>()});
    Ok(request.respond(StatusCode::OK, body, &mut HeaderMap::new()))
}

/// The attribute names in use (`details=true`: with counts, attribute and entity types).
#[utoipa::path(get, path = "/ngsi-ld/v1/attributes", tag = "ngsi-ld", responses((status = 200)))]
pub(super) async fn list_attributes(ngsi: Ngsi) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    let (detailed, params) = details(raw)?;
    let inventory = inventory(&broker, &request).await?;
    let c = &request.context;
    let mut warnings = Vec::new();
    let body = if detailed {
        Value::Array(
            inventory
                .attributes
                .iter()
                .map(|(iri, entry)| attribute_body(iri, entry, c))
                .collect(),
        )
    } else {
        let (names, left_out) = discovered(
            &broker,
            &request,
            &params,
            inventory.attributes.keys().cloned(),
            ("retrieveAttrTypes", "/attributes", "attributeList"),
        )
        .await?;
        warnings = left_out;
        serde_json::json!({"id": list_id("AttributeList"), "type": "AttributeList",
            "attributeList": names.iter().map(|a| c.compact(a)).collect::<Vec<_>>()})
    };
    Ok(with_warnings(
        Ok(request.respond(StatusCode::OK, body, &mut HeaderMap::new())),
        &warnings,
    ))
}

pub(super) type AttributeEntry = (
    usize,
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
);

pub(super) fn attribute_body(
    iri: &str,
    (count, kinds, types): &AttributeEntry,
    c: &Context,
) -> Value {
    serde_json::json!({"id": iri, "type": "Attribute", "attributeName": c.compact(iri),
        "attributeCount": count, "attributeTypes": kinds,
        "typeNames": types.iter().map(|t| c.compact(t)).collect::<Vec<_>>()})
}

#[utoipa::path(get, path = "/ngsi-ld/v1/attributes/{attrId}", tag = "ngsi-ld",
    params(("attrId" = String, Path)), responses((status = 200), (status = 404)))]
pub(super) async fn attribute_info(ngsi: Ngsi, Path(attr): Path<String>) -> NgsiResult<Response> {
    let (broker, principal, headers, _) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    let iri = request.context.expand(&attr);
    let inventory = inventory(&broker, &request).await?;
    let entry = inventory
        .attributes
        .get(&iri)
        .ok_or_else(|| errors::not_found(format!("no entity has attribute {attr}")))?;
    let body = attribute_body(&iri, entry, &request.context);
    Ok(request.respond(StatusCode::OK, body, &mut HeaderMap::new()))
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenData {
    /// true: anyone may read the entity, without a credential (开放数据).
    pub open: bool,
}

/// A platform extension beside the NGSI-LD API: the owning department (its admin) or a platform
/// admin publishes an entity as open data, or withdraws it. Tenant from `NGSILD-Tenant`.
#[utoipa::path(put, path = "/api/v1/context/entities/{entityId}/open-data", tag = "ngsi-ld",
    params(("entityId" = String, Path)), request_body = OpenData,
    responses((status = 204), (status = 403), (status = 404)))]
pub(super) async fn set_open_data(
    ngsi: Ngsi,
    Path(id): Path<String>,
    yunnao_http::ApiJson(body): yunnao_http::ApiJson<OpenData>,
) -> NgsiResult<Response> {
    let (broker, principal, headers, _) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    let principal = request
        .principal
        .as_ref()
        .ok_or_else(|| Problem::unauthorized("sign in first"))?;
    let stored = broker
        .get(&request.tenant, &id, &request.viewer)
        .await?
        .ok_or_else(|| errors::not_found(format!("there is no entity {id}")))?;
    if !principal.can_manage(&stored.owner) {
        return Err(Problem::forbidden(format!(
            "only an admin of {:?} or a platform admin publishes {id}",
            stored.owner
        )));
    }
    broker.set_open(&request.tenant, &id, body.open).await?;
    let action = if body.open {
        "ngsi.entity.open"
    } else {
        "ngsi.entity.close"
    };
    Ok((StatusCode::NO_CONTENT, audit(action, &request.tenant, &id)).into_response())
}
