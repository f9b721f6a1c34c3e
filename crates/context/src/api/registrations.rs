//! Context source registrations: create, query, get, update, delete (clause 5.9).

use super::NgsiResult;
use super::{request::*, subscriptions::*};
use crate::model::{self};
use crate::{ContextBroker, Viewer, errors};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use yunnao_identity::AuditNote;

/// Register a context source (clause 5.9.2): 201 with its URL. Registrations are discovered,
/// and Retrieve Entity and Query Entities ask the sources they cover (see `distributed`).
#[utoipa::path(post, path = "/ngsi-ld/v1/csourceRegistrations", tag = "ngsi-ld",
    request_body(content = Object), responses((status = 201), (status = 400), (status = 409)))]
pub(super) async fn create_registration(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    params_of(raw, &[CREATE_PARAMS])?;
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    let owner = request.writer(&broker)?;
    let registration = crate::registrations::Registration::parse(&value, &request.context)?;
    registration.check_not_expired()?;
    check_registration_conflicts(&broker, &request, &registration.definition).await?;
    crate::registrations::insert(&broker.db, &request.tenant, &owner, &registration).await?;
    broker.sources.reload().await?;
    broker.notifier.registration_changed(
        &request.tenant,
        &owner,
        None,
        Some(&registration.definition),
    );
    let mut response = (
        StatusCode::CREATED,
        Extension(AuditNote::new(
            "ngsi.registration.create",
            format!("registration:{}/{}", request.tenant, registration.id),
        )),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!(
        "/ngsi-ld/v1/csourceRegistrations/{}",
        registration.id
    )) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Clauses 4.3.6.3 and 5.9.2.4: an exclusive or redirect registration may not claim what an
/// exclusive one already holds (the same entity and attribute), a redirect one may not cover
/// an entity the broker holds, nor an exclusive one an attribute the broker holds (Conflict).
pub(super) async fn check_registration_conflicts(
    broker: &ContextBroker,
    request: &Request,
    definition: &Value,
) -> NgsiResult<()> {
    let mode = definition["mode"].as_str().unwrap_or("inclusive");
    if !matches!(mode, "exclusive" | "redirect") {
        return Ok(());
    }
    let claims = crate::registrations::claims(definition);
    let names_meet =
        |a: &[&str], b: &[&str]| a.is_empty() || b.is_empty() || a.iter().any(|n| b.contains(n));
    for row in crate::registrations::list(&broker.db, &request.tenant).await? {
        let existing = crate::registrations::definition(&row);
        if existing["mode"] != "exclusive" || existing["id"] == definition["id"] {
            continue;
        }
        for (theirs, their_names) in crate::registrations::claims(&existing) {
            if claims.iter().any(|(mine, my_names)| {
                crate::registrations::selectors_meet(mine, theirs)
                    && names_meet(my_names, &their_names)
            }) {
                return Err(errors::conflict(format!(
                    "exclusive registration {} already holds these attributes of these entities",
                    existing["id"].as_str().unwrap_or_default()
                )));
            }
        }
    }
    for (selector, names) in &claims {
        let Some(id) = selector["id"].as_str() else {
            continue;
        };
        let Some(held) = broker.get(&request.tenant, id, &Viewer::All).await? else {
            continue;
        };
        let typed = match &selector["type"] {
            Value::String(t) => held.entity.types.contains(t),
            Value::Array(ts) => ts.iter().any(|t| {
                t.as_str()
                    .is_some_and(|t| held.entity.types.iter().any(|h| h == t))
            }),
            _ => true,
        };
        let conflict = typed
            && match mode {
                "redirect" => true,
                _ => names.iter().any(|n| held.entity.attrs.contains_key(*n)),
            };
        if conflict {
            return Err(errors::conflict(format!(
                "entity {id} is held here{}: a {mode} registration cannot claim it",
                if mode == "exclusive" {
                    " with some of these attributes"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(())
}

/// A registration the caller may see: its department's, or any for platform admins.
pub(super) async fn own_registration(
    broker: &ContextBroker,
    request: &Request,
    id: &str,
) -> NgsiResult<crate::registrations::Row> {
    let row = crate::registrations::get(&broker.db, &request.tenant, id)
        .await?
        .ok_or_else(|| errors::not_found(format!("there is no registration {id}")))?;
    if let Viewer::Department(department) = &request.viewer
        && row.0 != *department
    {
        return Err(errors::not_found(format!("there is no registration {id}")));
    }
    Ok(row)
}

#[utoipa::path(get, path = "/ngsi-ld/v1/csourceRegistrations/{registrationId}", tag = "ngsi-ld",
    params(("registrationId" = String, Path)), responses((status = 200), (status = 404)))]
pub(super) async fn get_registration(ngsi: Ngsi, Path(id): Path<String>) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    params_of(raw, &[&["local"]])?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    model::check_entity_id(&id)?;
    let row = own_registration(&broker, &request, &id).await?;
    let body =
        crate::registrations::render(&crate::registrations::definition(&row), &request.context);
    Ok(request.respond(StatusCode::OK, body, &mut HeaderMap::new()))
}

/// Discover registrations (clause 5.10.2): by entity type, id or idPattern and attribute.
#[utoipa::path(get, path = "/ngsi-ld/v1/csourceRegistrations", tag = "ngsi-ld",
    responses((status = 200), (status = 400)))]
pub(super) async fn query_registrations(ngsi: Ngsi) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let params = params_of(
        raw,
        &[
            QUERY_PARAMS,
            &[
                "attrs",
                "options",
                "local",
                "timeproperty",
                "timerel",
                "timeAt",
                "endTimeAt",
            ],
        ],
    )?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    let list = |key: &str| list_param(&params, key);
    let types: Vec<String> = list("type")
        .iter()
        .map(|t| request.context.expand(t))
        .collect();
    let ids = list("id");
    let attrs: Vec<String> = list("attrs")
        .iter()
        .map(|a| request.context.expand(a))
        .collect();
    let pattern = params
        .get("idPattern")
        .map(|p| regex::Regex::new(p).map_err(|e| errors::bad_request(format!("idPattern: {e}"))))
        .transpose()?;
    let csf = params
        .get("csf")
        .map(|csf| crate::query::parse_csf(csf, &request.context))
        .transpose()?;
    // Clause 5.10.2.4: scopeQ against the registration's scope, a geo-query against its
    // location (or observationSpace, operationSpace: `geoproperty`).
    let scope = params
        .get("scopeQ")
        .map(|q| model::ScopeQuery::parse(q))
        .transpose()?;
    let geo = geo_query(
        &params,
        params
            .get("geoproperty")
            .cloned()
            .unwrap_or_else(|| "location".into()),
    )?;
    let matching: Vec<Value> = crate::registrations::list(&broker.db, &request.tenant)
        .await?
        .iter()
        .filter(|row| match &request.viewer {
            Viewer::Department(department) => row.0 == *department,
            _ => true,
        })
        .map(crate::registrations::definition)
        .filter(|d| crate::registrations::matches(d, &types, &ids, pattern.as_ref(), &attrs))
        .filter(|d| {
            csf.as_ref().is_none_or(|csf| {
                csf.matches(&crate::subscriptions::registration_as_entity(
                    d,
                    &request.context,
                    true,
                ))
            })
        })
        .filter(|d| {
            scope.as_ref().is_none_or(|scope| {
                scope.matches(&crate::subscriptions::registration_as_entity(
                    d,
                    &request.context,
                    false,
                ))
            })
        })
        .filter(|d| {
            geo.as_ref().is_none_or(|geo| {
                d.get(&geo.property)
                    .and_then(|g| model::geometry(g).ok())
                    .is_some_and(|g| geo.matches(&g))
            })
        })
        .collect();
    list_page(
        &request,
        "/ngsi-ld/v1/csourceRegistrations",
        &params,
        &matching,
        |d| crate::registrations::render(d, &request.context),
    )
}

/// Update a registration (clause 5.9.3): the given members replace the stored ones: 204.
#[utoipa::path(patch, path = "/ngsi-ld/v1/csourceRegistrations/{registrationId}", tag = "ngsi-ld",
    params(("registrationId" = String, Path)), request_body(content = Object),
    responses((status = 204), (status = 400), (status = 404)))]
pub(super) async fn update_registration(
    ngsi: Ngsi,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (broker, _, _, request, value, _) = ngsi.write_request(&body).await?;
    model::check_entity_id(&id)?;
    let row = own_registration(&broker, &request, &id).await?;
    let Value::Object(changes) = value else {
        return Err(errors::bad_request("the update must be a JSON object"));
    };
    // The stored form compacted, so it reads like the client's, then the changes.
    let mut merged =
        crate::registrations::render(&crate::registrations::definition(&row), &request.context);
    for (key, value) in changes {
        match key.as_str() {
            "@context" => {}
            "id" if value != Value::String(id.clone()) => {
                return Err(errors::bad_request("a registration's id cannot change"));
            }
            _ => {
                merged[key] = value;
            }
        }
    }
    let registration = crate::registrations::Registration::parse(&merged, &request.context)?;
    check_registration_conflicts(&broker, &request, &registration.definition).await?;
    crate::registrations::replace(&broker.db, &request.tenant, &registration).await?;
    broker.sources.reload().await?;
    broker.notifier.registration_changed(
        &request.tenant,
        &row.0,
        Some(&crate::registrations::definition(&row)),
        Some(&registration.definition),
    );
    Ok((
        StatusCode::NO_CONTENT,
        Extension(AuditNote::new(
            "ngsi.registration.update",
            format!("registration:{}/{id}", request.tenant),
        )),
    )
        .into_response())
}

#[utoipa::path(delete, path = "/ngsi-ld/v1/csourceRegistrations/{registrationId}", tag = "ngsi-ld",
    params(("registrationId" = String, Path)), responses((status = 204), (status = 404)))]
pub(super) async fn delete_registration(
    ngsi: Ngsi,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
    let (broker, principal, headers, _) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    model::check_entity_id(&id)?;
    let row = own_registration(&broker, &request, &id).await?;
    crate::registrations::delete(&broker.db, &request.tenant, &id).await?;
    broker.sources.reload().await?;
    broker.notifier.registration_changed(
        &request.tenant,
        &row.0,
        Some(&crate::registrations::definition(&row)),
        None,
    );
    Ok((
        StatusCode::NO_CONTENT,
        Extension(AuditNote::new(
            "ngsi.registration.delete",
            format!("registration:{}/{id}", request.tenant),
        )),
    )
        .into_response())
}
