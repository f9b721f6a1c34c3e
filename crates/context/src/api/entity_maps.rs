//! Entity maps: the ids a distributed query found, kept for paging (clause 5.14).

use super::NgsiResult;
use super::{map_use::*, query::*, request::*, temporal::*};
use crate::{ContextBroker, errors};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use yunnao_identity::AuditNote;

/// Make an EntityMap of a query (clause 5.14.4: `GET /entityMaps` with the query's
/// parameters, `entityMapLifetime` how long it lives): 201 with the map, named in
/// `NGSILD-EntityMap`.
#[utoipa::path(get, path = "/ngsi-ld/v1/entityMaps", tag = "ngsi-ld",
    responses((status = 201), (status = 400)))]
pub(super) async fn create_entity_map(ngsi: Ngsi) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    let params = params_of(
        raw,
        &[QUERY_PARAMS, &["attrs", "local", "entityMapLifetime"]],
    )?;
    let local = params.get("local").is_some_and(|l| l == "true");
    if !local
        && !["type", "attrs", "q", "georel"]
            .iter()
            .any(|k| params.contains_key(*k))
    {
        return Err(errors::bad_request(
            "the query is too wide for an EntityMap: give type, attrs, q, a geo-query or \
             local=true (clause 5.14.4.4)",
        ));
    }
    let lifetime = crate::entity_maps::lifetime_ms(params.get("entityMapLifetime"))?;
    let query = entity_query(&params, &request.context, broker.config.max_limit)?;
    let matched = matching_entities(&broker, &request, &query, &params, true).await?;
    let map = make_map(
        &broker,
        &request,
        &matched.entities,
        &matched.origins,
        lifetime,
    )
    .await?;
    let mut answer_headers = HeaderMap::new();
    map_header(&map, &mut answer_headers);
    let answer = request.respond(StatusCode::CREATED, map.render(), &mut answer_headers);
    Ok(with_warnings(Ok(answer), &matched.warnings))
}

/// Make an EntityMap of a temporal query (clause 5.14.4, `GET /temporal/entityMaps` with the
/// temporal query's parameters): 201 with the map, named in `NGSILD-EntityMap`.
#[utoipa::path(get, path = "/ngsi-ld/v1/temporal/entityMaps", tag = "ngsi-ld",
    responses((status = 201), (status = 400)))]
pub(super) async fn create_temporal_entity_map(ngsi: Ngsi) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    let params = params_of(
        raw,
        &[
            QUERY_PARAMS,
            TEMPORAL_PARAMS,
            &["attrs", "local", "entityMapLifetime"],
        ],
    )?;
    let lifetime = crate::entity_maps::lifetime_ms(params.get("entityMapLifetime"))?;
    temporal_selection(&broker, &request, params, (MapUse::Create, Some(lifetime))).await
}

/// Map `id`, when it is live and the caller's (else 404).
pub(super) async fn visible_map(
    broker: &ContextBroker,
    request: &Request,
    id: &str,
) -> NgsiResult<crate::entity_maps::EntityMap> {
    crate::entity_maps::get(&broker.db, &request.tenant, id)
        .await?
        .filter(|map| map_visible(request, map))
        .ok_or_else(|| errors::not_found(format!("there is no EntityMap {id} (or it expired)")))
}

/// Retrieve an EntityMap (clause 5.14.1).
#[utoipa::path(get, path = "/ngsi-ld/v1/entityMaps/{entityMapId}", tag = "ngsi-ld",
    params(("entityMapId" = String, Path)), responses((status = 200), (status = 404)))]
pub(super) async fn retrieve_entity_map(
    ngsi: Ngsi,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    params_of(raw, &[&["local"]])?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    let map = visible_map(&broker, &request, &id).await?;
    Ok(request.respond(StatusCode::OK, map.render(), &mut HeaderMap::new()))
}

/// Update an EntityMap (clause 5.14.2): a new `expiresAt`, in the future: 204.
#[utoipa::path(patch, path = "/ngsi-ld/v1/entityMaps/{entityMapId}", tag = "ngsi-ld",
    params(("entityMapId" = String, Path)), request_body(content = Object),
    responses((status = 204), (status = 400), (status = 404)))]
pub(super) async fn update_entity_map(
    ngsi: Ngsi,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (broker, principal, headers, _) = ngsi.parts();
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    visible_map(&broker, &request, &id).await?;
    let Value::Object(members) = &value else {
        return Err(errors::bad_request("the update must be a JSON object"));
    };
    if let Some(other) = members
        .keys()
        .find(|k| !matches!(k.as_str(), "expiresAt" | "@context" | "id" | "type"))
    {
        return Err(errors::bad_request(format!(
            "{other} cannot change: only expiresAt"
        )));
    }
    let at = members
        .get("expiresAt")
        .and_then(Value::as_str)
        .and_then(yunnao_core::time::parse_rfc3339_ms)
        .ok_or_else(|| errors::bad_request("expiresAt must be a date-time"))?;
    let now = yunnao_core::time::now_ms();
    if at <= now || at > now + crate::entity_maps::MAX_LIFETIME_MS {
        return Err(errors::bad_request(
            "expiresAt must be in the future, within a day",
        ));
    }
    crate::entity_maps::set_expiry(&broker.db, &request.tenant, &id, at).await?;
    Ok((
        StatusCode::NO_CONTENT,
        Extension(AuditNote::new(
            "ngsi.entitymap.update",
            format!("entitymap:{}/{id}", request.tenant),
        )),
    )
        .into_response())
}

/// Delete an EntityMap (clause 5.14.3): 204.
#[utoipa::path(delete, path = "/ngsi-ld/v1/entityMaps/{entityMapId}", tag = "ngsi-ld",
    params(("entityMapId" = String, Path)), responses((status = 204), (status = 404)))]
pub(super) async fn delete_entity_map(ngsi: Ngsi, Path(id): Path<String>) -> NgsiResult<Response> {
    let (broker, principal, headers, _) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    visible_map(&broker, &request, &id).await?;
    crate::entity_maps::delete(&broker.db, &request.tenant, &id).await?;
    Ok((
        StatusCode::NO_CONTENT,
        Extension(AuditNote::new(
            "ngsi.entitymap.delete",
            format!("entitymap:{}/{id}", request.tenant),
        )),
    )
        .into_response())
}
