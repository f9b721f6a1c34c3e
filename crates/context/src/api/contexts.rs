//! Hosted @contexts: add, list, serve, delete (clause 5.13).

use super::NgsiResult;
use super::request::*;
use crate::jsonld::JSON_LD;
use crate::{ContextBroker, errors};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use yunnao_identity::AuditNote;

/// The URL of hosted context `id`, as this request reached the broker.
pub(super) fn hosted_url(headers: &HeaderMap, id: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}{}{id}", crate::jsonld::HOSTED_PATH)
}

/// Host a user @context (clause 5.13.2): the body is a JSON-LD document `{"@context": …}`;
/// 201 with its URL in Location. A request that names that URL (Link header or `@context`)
/// gets the terms from the broker's own database, never from the network.
#[utoipa::path(post, path = "/ngsi-ld/v1/jsonldContexts", tag = "ngsi-ld",
    request_body(content = Object), responses((status = 201), (status = 400)))]
pub(super) async fn add_context(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    let (broker, principal, headers, _) = ngsi.parts();
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| errors::invalid_request(format!("the body is not JSON: {e}")))?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    let owner = request.writer(&broker)?;
    let Some(context) = value.get("@context") else {
        return Err(errors::bad_request(
            "the body is a JSON-LD document with an @context member",
        ));
    };
    // Refused now rather than when used: its terms must parse and what it names be there.
    broker.contexts.resolve(context).await?;
    let id = yunnao_core::new_id();
    let document = serde_json::json!({"@context": context}).to_string();
    crate::jsonld::host(&broker.db, &id, &document, &owner, &now()).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, hosted_url(&headers, &id))],
        Extension(AuditNote::new("ngsi.context.add", format!("context:{id}"))),
    )
        .into_response())
}

/// The @contexts the broker holds (clause 5.13.3): those it hosts and the remote ones it
/// fetched and kept, as URLs; `details=true` gives each one's `URL`, `localId`, `kind`
/// (`Hosted`, `Cached`) and `createdAt`; `kind` picks one kind.
#[utoipa::path(get, path = "/ngsi-ld/v1/jsonldContexts", tag = "ngsi-ld",
    responses((status = 200), (status = 400)))]
pub(super) async fn list_contexts(
    State(broker): State<ContextBroker>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
    let params = query_map(raw)?;
    let details = flag(&params, "details")?;
    let kind = params.get("kind").map(|k| k.to_ascii_lowercase());
    if let Some(kind) = &kind
        && !["hosted", "cached", "implicitlycreated"].contains(&kind.as_str())
    {
        return Err(errors::bad_request(format!(
            "kind is Hosted, Cached or ImplicitlyCreated, not {kind:?}"
        )));
    }
    let wants = |name: &str| kind.as_deref().is_none_or(|k| k == name);
    let mut entries = Vec::new();
    if wants("hosted") {
        let hosted = crate::jsonld::hosted(&broker.db).await?;
        for (id, created_at) in hosted {
            entries.push(
                serde_json::json!({"URL": hosted_url(&headers, &id), "localId": id,
                "kind": "Hosted", "createdAt": created_at}),
            );
        }
    }
    if wants("cached") {
        for url in broker.contexts.cached_urls() {
            entries.push(serde_json::json!({"URL": url, "kind": "Cached"}));
        }
    }
    if !details {
        entries = entries.iter().map(|e| e["URL"].clone()).collect();
    }
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Value::Array(entries).to_string(),
    )
        .into_response())
}

/// One @context: a hosted one by its id, or a kept remote one by its URL. Public, as
/// JSON-LD contexts are.
#[utoipa::path(get, path = "/ngsi-ld/v1/jsonldContexts/{contextId}", tag = "ngsi-ld",
    params(("contextId" = String, Path)), responses((status = 200), (status = 404)))]
pub(super) async fn serve_context(
    State(broker): State<ContextBroker>,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
    let document = match crate::jsonld::hosted_document(&broker.db, &id).await? {
        Some(document) => document,
        None => broker
            .contexts
            .cached(&id)
            .ok_or_else(|| errors::not_found(format!("there is no @context {id}")))?,
    };
    Ok(([(header::CONTENT_TYPE, JSON_LD)], document.to_string()).into_response())
}

/// Delete a hosted @context (its department or a platform admin), or drop a kept remote
/// one so it is fetched again when next named (`reload`): 204.
#[utoipa::path(delete, path = "/ngsi-ld/v1/jsonldContexts/{contextId}", tag = "ngsi-ld",
    params(("contextId" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
pub(super) async fn delete_context(ngsi: Ngsi, Path(id): Path<String>) -> NgsiResult<Response> {
    let (broker, principal, headers, _) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    let owner = crate::jsonld::hosted_owner(&broker.db, &id).await?;
    match owner {
        Some(owner) => {
            request.may_change_owned(&broker, &owner, &format!("@context {id}"))?;
            crate::jsonld::unhost(&broker.db, &id).await?;
        }
        None if broker.contexts.forget(&id) => {}
        None => return Err(errors::not_found(format!("there is no @context {id}"))),
    }
    Ok((
        StatusCode::NO_CONTENT,
        Extension(AuditNote::new(
            "ngsi.context.delete",
            format!("context:{id}"),
        )),
    )
        .into_response())
}
