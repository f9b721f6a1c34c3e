//! `/ngsi-ld/v1`: entities (create, retrieve, replace, merge, delete; attribute append, update,
//! partial update, replace, delete) and queries (`GET /entities`, `POST /entityOperations/query`),
//! with `@context` from a `Link` header or the body, tenants, and the platform's authentication.

use crate::geoquery::GeoQuery;
use crate::jsonld::{CORE_CONTEXT_URL, CORE_LINK, Context, JSON_LD};
use crate::linked::{Join, Linking};
use crate::model::{self, Format, RenderOptions};
use crate::negotiation::GEO_JSON;
use crate::subscriptions::About;
use crate::temporal::Scope;
use crate::{ContextBroker, Selection, Stored, Viewer, errors};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::collections::HashMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_core::Problem;
use yunnao_identity::{Action, AuditEntry, AuditNote, Principal, Reach, Resource};
use yunnao_store::{DbResultExt, sqlx};

type NgsiResult<T> = Result<T, Problem>;

pub fn router() -> OpenApiRouter<ContextBroker> {
    OpenApiRouter::new()
        .routes(routes!(query_entities, create_entity, purge_entities))
        .routes(routes!(
            retrieve_entity,
            replace_entity,
            merge_entity,
            delete_entity
        ))
        .routes(routes!(append_attributes, update_attributes))
        .routes(routes!(
            partial_attribute_update,
            replace_attribute,
            delete_attribute
        ))
        .routes(routes!(query_post))
        .routes(routes!(list_types))
        .routes(routes!(type_info))
        .routes(routes!(list_attributes))
        .routes(routes!(attribute_info))
        .routes(routes!(set_open_data))
        .routes(routes!(batch_create))
        .routes(routes!(batch_upsert))
        .routes(routes!(batch_update))
        .routes(routes!(batch_delete))
        .routes(routes!(batch_merge))
        .routes(routes!(temporal_entity, delete_temporal))
        .routes(routes!(temporal_query, create_temporal))
        .routes(routes!(add_temporal_attributes))
        .routes(routes!(delete_temporal_attribute))
        .routes(routes!(delete_temporal_instance, modify_temporal_instance))
        .routes(routes!(temporal_query_post))
        .routes(routes!(add_context, list_contexts))
        .routes(routes!(serve_context, delete_context))
        .routes(routes!(create_subscription, list_subscriptions))
        .routes(routes!(
            get_subscription,
            update_subscription,
            delete_subscription
        ))
        .routes(routes!(
            create_csource_subscription,
            list_csource_subscriptions
        ))
        .routes(routes!(
            get_csource_subscription,
            update_csource_subscription,
            delete_csource_subscription
        ))
        .routes(routes!(source_identity))
        .routes(routes!(create_entity_map))
        .routes(routes!(create_temporal_entity_map))
        .routes(routes!(
            retrieve_entity_map,
            update_entity_map,
            delete_entity_map
        ))
        .routes(routes!(create_registration, query_registrations))
        .routes(routes!(
            get_registration,
            update_registration,
            delete_registration
        ))
        .layer(axum::middleware::from_fn(crate::negotiation::ngsi_edge))
}

/// Who this broker is (clause 5.15.1, v1.9): an alias per tenant (stable, and different for
/// every tenant and installation, so a federation can tell loops from its tenants), its uptime
/// and the time now.
#[utoipa::path(get, path = "/ngsi-ld/v1/info/sourceIdentity", tag = "ngsi-ld",
    responses((status = 200), (status = 404)))]
async fn source_identity(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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

/// Register a context source (clause 5.9.2): 201 with its URL. Registrations are discovered,
/// and Retrieve Entity and Query Entities ask the sources they cover (see `distributed`).
#[utoipa::path(post, path = "/ngsi-ld/v1/csourceRegistrations", tag = "ngsi-ld",
    request_body(content = Object), responses((status = 201), (status = 400), (status = 409)))]
async fn create_registration(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> NgsiResult<Response> {
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
async fn check_registration_conflicts(
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
async fn own_registration(
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
async fn get_registration(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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
async fn query_registrations(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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
async fn update_registration(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.writer(&broker)?;
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
async fn delete_registration(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
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

/// Make an EntityMap of a query (clause 5.14.4: `GET /entityMaps` with the query's
/// parameters, `entityMapLifetime` how long it lives): 201 with the map, named in
/// `NGSILD-EntityMap`.
#[utoipa::path(get, path = "/ngsi-ld/v1/entityMaps", tag = "ngsi-ld",
    responses((status = 201), (status = 400)))]
async fn create_entity_map(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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
async fn create_temporal_entity_map(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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
async fn visible_map(
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
async fn retrieve_entity_map(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
    params_of(raw, &[&["local"]])?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    let map = visible_map(&broker, &request, &id).await?;
    Ok(request.respond(StatusCode::OK, map.render(), &mut HeaderMap::new()))
}

/// Update an EntityMap (clause 5.14.2): a new `expiresAt`, in the future: 204.
#[utoipa::path(patch, path = "/ngsi-ld/v1/entityMaps/{entityMapId}", tag = "ngsi-ld",
    params(("entityMapId" = String, Path)), request_body(content = Object),
    responses((status = 204), (status = 400), (status = 404)))]
async fn update_entity_map(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
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
async fn delete_entity_map(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
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

/// This broker's name for a tenant among context sources (clause 5.15.1): stable, and
/// different for every tenant and installation.
fn source_alias(broker: &ContextBroker, tenant: &str) -> String {
    format!(
        "urn:ngsi-ld:ContextSource:yunnao-{}:{tenant}",
        broker.identity.installation()
    )
}

/// What one request brings besides its body: tenant, context, caller.
struct Request {
    tenant: String,
    context: Context,
    viewer: Viewer,
    principal: Option<Principal>,
    /// The negotiated media type of the answer (the edge put it in `Accept`).
    media: &'static str,
    /// `Prefer: body=json`: a GeoJSON answer names its context in a Link header only.
    prefer_body_json: bool,
    /// The client's `Link` and `Via` headers, for requests forwarded to context sources.
    link: Option<String>,
    via: Option<String>,
    /// All the client's headers, kept only where the tenant has context sources (for
    /// `contextSourceInfo` values taken from the request).
    incoming: Option<HeaderMap>,
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

impl Request {
    async fn read(
        broker: &ContextBroker,
        headers: &HeaderMap,
        principal: Option<Extension<Principal>>,
        body_context: Option<&Value>,
    ) -> NgsiResult<Self> {
        let principal = principal.map(|Extension(p)| p);
        let tenant = match headers.get("ngsild-tenant").and_then(|v| v.to_str().ok()) {
            Some(tenant) => {
                let tenant = tenant.trim();
                let valid = (1..=64).contains(&tenant.len())
                    && tenant
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(errors::bad_request(format!(
                        "NGSILD-Tenant {tenant:?}: use 1 to 64 letters, digits, '-' and '_'"
                    )));
                }
                tenant.to_owned()
            }
            None => broker.config.default_tenant.clone(),
        };
        let link = headers.get(header::LINK).and_then(|v| v.to_str().ok());
        let context = match (body_context, link) {
            (Some(_), Some(_)) => {
                return Err(errors::bad_request(
                    "give the @context either in the body (application/ld+json) or in a Link header, not both",
                ));
            }
            (Some(value), None) => broker.contexts.resolve(value).await?,
            (None, Some(link)) => {
                broker
                    .contexts
                    .resolve(&Value::String(Context::link_url(link)?))
                    .await?
            }
            (None, None) => Context::core(),
        };
        let viewer = if !broker.config.auth {
            Viewer::All
        } else {
            match &principal {
                Some(p) => match p.reach(Resource::Context, Action::Read) {
                    Reach::All => Viewer::All,
                    Reach::Own => Viewer::Department(p.department.clone()),
                    // Residents, enterprises and API clients without `context:read` see
                    // open data only.
                    Reach::None => Viewer::Public,
                },
                None => Viewer::Public,
            }
        };
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let media = match accept {
            Some(JSON_LD) => JSON_LD,
            Some(GEO_JSON) => GEO_JSON,
            _ => "application/json",
        };
        let prefer_body_json = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split([',', ';']).any(|p| p.trim() == "body=json"));
        let header_text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Self {
            context,
            viewer,
            principal,
            media,
            prefer_body_json,
            link: header_text("link"),
            via: header_text("via"),
            incoming: broker.sources.any(&tenant).then(|| headers.clone()),
            tenant,
        })
    }

    /// The audit record of a successful write of entity `id`, appended in the write's own
    /// transaction (what the audit layer would append afterwards).
    fn audit_entry(&self, headers: &HeaderMap, action: &str, id: &str) -> AuditEntry {
        audit(action, &self.tenant, id).0.entry(
            self.principal.as_ref(),
            String::new,
            String::new,
            yunnao_http::RequestId::from_headers(headers).0,
            "success",
        )
    }

    /// The department that owns what this caller creates; refuses callers who may not write.
    fn writer(&self, broker: &ContextBroker) -> NgsiResult<String> {
        match &self.principal {
            Some(p) => {
                p.require(Resource::Context, Action::Write, &p.department)?;
                Ok(p.department.clone())
            }
            None if !broker.config.auth => Ok("bigdata".into()),
            None => Err(Problem::unauthorized(
                "sign in first: send Authorization: Bearer <token> or an API key",
            )),
        }
    }

    /// May this caller change `stored`? Its department's staff and platform admins.
    fn may_change(&self, broker: &ContextBroker, stored: &Stored) -> NgsiResult<()> {
        self.may_change_owned(
            broker,
            &stored.owner,
            &format!("entity {}", stored.entity.id),
        )
    }

    /// May this writer change `what`, which `owner` owns? Its department, or a platform admin.
    fn may_change_owned(&self, broker: &ContextBroker, owner: &str, what: &str) -> NgsiResult<()> {
        let department = self.writer(broker)?;
        let admin = self
            .principal
            .as_ref()
            .is_none_or(|p| p.is_platform_admin());
        if admin || owner == department {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "{what} belongs to department {owner:?}"
            )))
        }
    }

    async fn require_tenant(&self, broker: &ContextBroker) -> NgsiResult<()> {
        if broker.tenant_exists(&self.tenant).await? {
            Ok(())
        } else {
            Err(errors::nonexistent_tenant(format!(
                "there is no tenant {:?}",
                self.tenant
            )))
        }
    }

    /// A JSON answer with the context in the body (`application/ld+json`) or in a Link header.
    fn respond(&self, status: StatusCode, mut body: Value, headers: &mut HeaderMap) -> Response {
        if self.media == GEO_JSON {
            return self.respond_geo_json(status, body, headers);
        }
        if self.media == JSON_LD {
            let context = self
                .context
                .source
                .clone()
                .unwrap_or_else(|| Value::String(CORE_CONTEXT_URL.into()));
            match &mut body {
                Value::Object(object) => {
                    object.insert("@context".into(), context);
                }
                Value::Array(items) => {
                    for item in items {
                        if let Value::Object(object) = item {
                            object.insert("@context".into(), context.clone());
                        }
                    }
                }
                _ => {}
            }
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_LD));
            return match to_json_bytes(&body) {
                Ok(bytes) => (status, headers.clone(), bytes).into_response(),
                Err(problem) => problem.into_response(),
            };
        }
        match to_json_bytes(&body) {
            Ok(bytes) => self.respond_json(status, bytes.into(), headers),
            Err(problem) => problem.into_response(),
        }
    }

    /// A JSON answer already serialised (`application/json`, the context in a Link header).
    fn respond_json(&self, status: StatusCode, body: Bytes, headers: &mut HeaderMap) -> Response {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.append(header::LINK, HeaderValue::from_static(CORE_LINK));
        (status, std::mem::take(headers), body).into_response()
    }

    /// A GeoJSON answer (a Feature or a FeatureCollection): the context in the body, or with
    /// `Prefer: body=json` in a Link header (clause 6.3.15).
    fn respond_geo_json(
        &self,
        status: StatusCode,
        mut body: Value,
        headers: &mut HeaderMap,
    ) -> Response {
        if self.prefer_body_json {
            headers.insert(header::LINK, HeaderValue::from_static(CORE_LINK));
        } else if let Value::Object(object) = &mut body {
            let context = self
                .context
                .source
                .clone()
                .unwrap_or_else(|| Value::String(CORE_CONTEXT_URL.into()));
            object.insert("@context".into(), context);
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(GEO_JSON));
        match to_json_bytes(&body) {
            Ok(bytes) => (status, std::mem::take(headers), bytes).into_response(),
            Err(problem) => problem.into_response(),
        }
    }

    /// Clauses 5.7.1.4 and 5.7.2.4: `geometryProperty` only with a GeoJSON answer.
    fn geometry_property_needs_geo_json(&self, params: &HashMap<String, String>) -> NgsiResult<()> {
        if params.contains_key("geometryProperty") && self.media != GEO_JSON {
            return Err(errors::bad_request(
                "geometryProperty needs Accept: application/geo+json",
            ));
        }
        Ok(())
    }

    /// Is the answer to this request the same for everyone (no user context in it)?
    fn plain(&self) -> bool {
        self.media == "application/json" && self.context.is_core()
    }

    /// An entity as this request's answer shows it: as is, or as a GeoJSON Feature.
    fn render(&self, entity: &model::Entity, options: &RenderOptions) -> Value {
        self.shown(
            entity,
            model::render(entity, &self.context, options),
            options,
        )
    }

    /// A rendered entity as this request's answer shows it: as is, or as a GeoJSON Feature.
    fn shown(&self, entity: &model::Entity, rendered: Value, options: &RenderOptions) -> Value {
        if self.media == GEO_JSON {
            model::feature(entity, rendered, &self.context, options)
        } else {
            rendered
        }
    }

    /// How this request is forwarded to context sources: `None` when asked with
    /// `local=true`; LoopDetected (508) when it already passed through this broker (clause
    /// 6.3.18: forwarding it again would go round a loop of registrations).
    fn forward(
        &self,
        broker: &ContextBroker,
        params: &HashMap<String, String>,
    ) -> NgsiResult<Option<crate::distributed::Forward>> {
        if params.get("local").is_some_and(|l| l == "true") {
            return Ok(None);
        }
        let alias = source_alias(broker, &self.tenant);
        let (via, looped) = crate::distributed::via(self.via.as_deref(), &alias);
        if looped {
            return Err(errors::loop_detected(format!(
                "the request already passed through this broker ({alias}, in Via)"
            )));
        }
        Ok(Some(crate::distributed::Forward {
            link: self.link.clone(),
            via,
            context: self.context.clone(),
            incoming: self.incoming.clone().unwrap_or_default(),
        }))
    }

    /// How this write is forwarded to context sources: as [`forward`](Self::forward), and only
    /// when some registration of the tenant names writes (one check in memory, so writes in a
    /// broker without such registrations look no further).
    fn forward_write(
        &self,
        broker: &ContextBroker,
        params: &HashMap<String, String>,
    ) -> NgsiResult<Option<crate::distributed::Forward>> {
        if !broker.sources.any_for_writes(&self.tenant) {
            return Ok(None);
        }
        self.forward(broker, params)
    }

    /// Entities with those they link to (clause 4.5.23), each as this answer shows it.
    async fn render_linked(
        &self,
        broker: &ContextBroker,
        entities: &[&model::Entity],
        options: &RenderOptions,
        linking: Linking,
    ) -> NgsiResult<Vec<Value>> {
        broker
            .render_linked(
                (&self.tenant, &self.viewer, &self.context),
                entities,
                options,
                linking,
                |entity, rendered| self.shown(entity, rendered, options),
            )
            .await
    }

    /// A list of shown entities: an array, or a GeoJSON FeatureCollection.
    fn collection(&self, shown: Vec<Value>) -> Value {
        if self.media == GEO_JSON {
            serde_json::json!({"type": "FeatureCollection", "features": shown})
        } else {
            Value::Array(shown)
        }
    }
}

/// Straight into bytes: `to_string` goes through `fmt::Write` piece by piece, which costs a
/// third of the time of a large answer (a year of hourly aggregates).
fn to_json_bytes(body: &Value) -> Result<Vec<u8>, Problem> {
    serde_json::to_vec(body).map_err(|error| Problem::internal(error.to_string()))
}

/// Parses a body: JSON with the context from Link, or JSON-LD with `@context` inside.
fn parse_body(headers: &HeaderMap, body: &Bytes) -> NgsiResult<(Value, bool)> {
    let ld = match media_type(headers).as_str() {
        "application/json" | "application/merge-patch+json" => false,
        JSON_LD => true,
        "" => {
            return Err(Problem::unsupported_media_type(
                "send Content-Type: application/json or application/ld+json",
            ));
        }
        other => {
            return Err(Problem::unsupported_media_type(format!(
                "{other} is not accepted; send application/json or application/ld+json"
            )));
        }
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| errors::invalid_request(format!("the body is not valid JSON: {e}")))?;
    if ld && value.get("@context").is_none() && !value.is_array() {
        return Err(errors::bad_request(
            "application/ld+json needs an @context in the body",
        ));
    }
    if !ld && value.get("@context").is_some() {
        return Err(errors::bad_request(
            "an @context in the body needs Content-Type application/ld+json",
        ));
    }
    Ok((value, ld))
}

/// The query string's parameters (the last of a repeated name wins).
fn query_map(raw: Option<String>) -> NgsiResult<HashMap<String, String>> {
    Ok(form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect())
}

/// The query string's parameters, each one the operation defines (else 400 InvalidRequest,
/// clause 6.3.20). The lists name every parameter of CIM 009 for the operation, also those the
/// broker reads as their default (`local`: it has no federation to skip).
fn params_of(raw: Option<String>, known: &[&[&str]]) -> NgsiResult<HashMap<String, String>> {
    let params = query_map(raw)?;
    if let Some(unknown) = params
        .keys()
        .find(|name| !known.iter().any(|list| list.contains(&name.as_str())))
    {
        return Err(errors::invalid_request(format!(
            "{unknown:?} is not a parameter of this operation"
        )));
    }
    Ok(params)
}

/// The `type` parameter of an operation on one entity (clause 4.17): the entity must have one
/// of the types, else it is not found.
struct TypeSelector(Option<Vec<String>>);

impl TypeSelector {
    fn read(params: &HashMap<String, String>, context: &Context) -> Self {
        Self(params.contains_key("type").then(|| {
            list_param(params, "type")
                .iter()
                .map(|t| context.expand(t))
                .collect()
        }))
    }

    fn check(&self, stored: &Stored) -> NgsiResult<()> {
        match &self.0 {
            Some(types) if !types.iter().any(|t| stored.entity.types.contains(t)) => {
                Err(errors::not_found(format!(
                    "there is no entity {} of the given type",
                    stored.entity.id
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Parameters of creating an entity, a temporal entity or a subscription.
const CREATE_PARAMS: &[&str] = &["local"];
/// Parameters of the representation of entities (retrieve and query).
const RENDER_PARAMS: &[&str] = &[
    "attrs",
    "pick",
    "omit",
    "options",
    "format",
    "geometryProperty",
    "lang",
    "datasetId",
    "local",
    "join",
    "joinLevel",
    "containedBy",
    "entityMap",
    "expandValues",
];
/// Parameters that select entities.
const QUERY_PARAMS: &[&str] = &[
    "orderBy",
    "orderFrom",
    "collation",
    "type",
    "id",
    "idPattern",
    "q",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "csf",
    "scopeQ",
    "splitEntities",
    "limit",
    "offset",
    "count",
];
/// Parameters of the temporal representation.
const TEMPORAL_PARAMS: &[&str] = &[
    "timerel",
    "timeAt",
    "endTimeAt",
    "timeproperty",
    "lastN",
    "aggrMethods",
    "aggrPeriodDuration",
];

/// A list parameter, its items separated by `,` or `|` (empty when absent).
fn list_param(params: &HashMap<String, String>, key: &str) -> Vec<String> {
    params
        .get(key)
        .map(|v| {
            v.split([',', '|'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `offset` (0 by default) and `limit` (20 by default), non-negative integers.
fn paging(params: &HashMap<String, String>) -> NgsiResult<(usize, usize)> {
    let number = |key: &str, default: usize| -> NgsiResult<usize> {
        params.get(key).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| errors::bad_request(format!("{key} must be a non-negative integer")))
        })
    };
    Ok((number("offset", 0)?, number("limit", 20)?))
}

/// Is `name` among the comma-separated `options`?
/// A true/false query parameter (false when absent).
fn flag(params: &HashMap<String, String>, name: &str) -> NgsiResult<bool> {
    match params.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(errors::bad_request(format!(
            "{name} is true or false, not {other:?}"
        ))),
    }
}

fn has_option(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get("options")
        .is_some_and(|o| o.split(',').any(|t| t.trim() == name))
}

/// The names of an attribute projection (clause 4.21): `,` or `|` between them, none empty.
fn projection(parameter: &str, text: &str) -> NgsiResult<Vec<String>> {
    let names: Vec<String> = text
        .split([',', '|'])
        .map(|n| n.trim().to_owned())
        .collect();
    if names.iter().any(String::is_empty) {
        return Err(errors::bad_request(format!(
            "{parameter} {text:?}: attribute names separated by ',' or '|', none empty"
        )));
    }
    if text.contains(['{', '}']) {
        return Err(errors::bad_request(format!(
            "{parameter} {text:?}: selecting attributes of linked entities ({{…}}) is not \
             offered; join=inline or join=flat shows linked entities whole"
        )));
    }
    // Names are terms or IRIs: none of the query language's or HTTP's delimiters.
    if let Some(bad) = names
        .iter()
        .flat_map(|n| n.chars())
        .find(|c| c.is_whitespace() || c.is_control() || ";=<>\"'()[]\\^`".contains(*c))
    {
        return Err(errors::bad_request(format!(
            "{parameter} {text:?}: {bad:?} is not allowed in an attribute name"
        )));
    }
    Ok(names)
}

/// `join` and `joinLevel` (clause 4.5.23): how linked entities are joined, if at all.
fn linking(params: &HashMap<String, String>) -> NgsiResult<Option<Linking>> {
    Linking::parse(
        params.get("join").map(String::as_str),
        params.get("joinLevel").map(String::as_str),
    )
}

fn render_options(
    params: &HashMap<String, String>,
    context: &Context,
) -> NgsiResult<RenderOptions> {
    let mut options = RenderOptions::default();
    let mut tokens: Vec<&str> = params
        .get("options")
        .map(|o| o.split(',').collect())
        .unwrap_or_default();
    if let Some(format) = params.get("format") {
        tokens.push(format);
    }
    for token in tokens {
        match token.trim() {
            "keyValues" | "simplified" => options.format = Format::KeyValues,
            "concise" => options.format = Format::Concise,
            "normalized" => options.format = Format::Normalized,
            "sysAttrs" => options.sys_attrs = true,
            "" => {}
            other => {
                return Err(errors::bad_request(format!(
                    "option {other:?} is not one of keyValues, simplified, concise, normalized, sysAttrs"
                )));
            }
        }
    }
    if let Some(name) = params.get("geometryProperty") {
        options.geometry_property = name.clone();
    }
    // Clause 4.21: pick and omit stand instead of attrs, and never name the same member.
    let list = |name: &str| {
        params
            .get(name)
            .map(|text| projection(name, text))
            .transpose()
    };
    let (attrs, pick, omit) = (list("attrs")?, list("pick")?, list("omit")?);
    if attrs.is_some() && (pick.is_some() || omit.is_some()) {
        let projecting = if pick.is_some() { "pick" } else { "omit" };
        return Err(errors::bad_request(format!(
            "{projecting} and attrs cannot be used together (clause 4.21)"
        )));
    }
    if let (Some(pick), Some(omit)) = (&pick, &omit)
        && let Some(both) = pick.iter().find(|member| omit.contains(member))
    {
        return Err(errors::bad_request(format!(
            "{both:?} is both picked and omitted"
        )));
    }
    let expand = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .filter(|m| !matches!(m.as_str(), "id" | "type"))
            .map(|a| context.expand(a))
            .collect()
    };
    if let Some(attrs) = attrs {
        options.attrs = Some(attrs.iter().map(|a| context.expand(a)).collect());
    }
    if let Some(pick) = pick {
        options.attrs = Some(expand(&pick));
        options.pick = Some(pick);
    }
    options.omit = omit.unwrap_or_default();
    if let Some(lang) = params.get("lang") {
        options.lang = Some(model::LanguageFilter::parse(lang)?);
    }
    Ok(options)
}

fn now() -> String {
    yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms())
}

fn audit(action: &str, tenant: &str, id: &str) -> Extension<AuditNote> {
    Extension(AuditNote::new(action, format!("entity:{tenant}/{id}")))
}

fn body_context(value: &Value) -> Option<&Value> {
    value.get("@context")
}

/// A write's share for the context sources registered for its entity (clause 4.3.6), sent,
/// and what is left for the broker itself.
struct Shared {
    /// What the broker applies itself (the body; `Null` for a delete); `None`: nothing.
    local: Option<Value>,
    /// Sources that failed: the attributes (expanded) they were sent, and why.
    failed: Vec<(Vec<String>, String)>,
    /// Some of the write went to context sources (`local` may be less than the body).
    forwarded: bool,
    /// Attributes (expanded) sources took without failing.
    sent_ok: Vec<String>,
}

impl Shared {
    fn alone(body: Value) -> Self {
        Self {
            local: Some(body),
            failed: Vec::new(),
            forwarded: false,
            sent_ok: Vec::new(),
        }
    }

    /// The answer to an attribute write that left nothing for the broker: 204, or 207 with
    /// what the sources did not take.
    fn answered_by_sources(&self, context: &Context) -> Response {
        partial(self.sent_ok.clone(), self.not_updated(), context)
    }

    /// The failures as NotUpdatedDetails (attribute, reason).
    fn not_updated(&self) -> Vec<(String, String)> {
        self.failed
            .iter()
            .flat_map(|(names, reason)| names.iter().map(|n| (n.clone(), reason.clone())))
            .collect()
    }
}

/// Sends a write to the sources registered for it and returns what is left for the broker:
/// an inclusive source gets the whole write and the broker does it too; an exclusive or
/// redirect source gets the attributes it holds (all, when it names none), which the broker
/// then leaves alone. Without such registrations (the common case) nothing is looked up
/// beyond one check in memory.
async fn share_write(
    broker: &ContextBroker,
    request: &Request,
    params: &HashMap<String, String>,
    (operation, method, path): (&str, reqwest::Method, &str),
    (id, types): (&str, &[String]),
    body: Value,
) -> NgsiResult<Shared> {
    let Some(forward) = request.forward_write(broker, params)? else {
        return Ok(Shared::alone(body));
    };
    let targets =
        broker
            .sources
            .for_write(&request.tenant, &request.viewer, operation, (id, types));
    if targets.is_empty() {
        return Ok(Shared::alone(body));
    }
    let creating = operation == "createEntity";
    let mut sends: Vec<(usize, Option<Value>, Vec<String>)> = Vec::new();
    let local = match &body {
        Value::Object(object) => {
            let (parts, rest) = split_entity(object, &targets, creating, &request.context);
            sends.extend(
                parts
                    .into_iter()
                    .map(|(index, part, names)| (index, Some(part), names)),
            );
            rest.map(Value::Object)
        }
        _ => {
            sends.extend((0..targets.len()).map(|index| (index, None, Vec::new())));
            (!targets.iter().any(|t| t.takes_all())).then_some(body)
        }
    };
    let mut failed = Vec::new();
    let mut sent_ok = Vec::new();
    let forwarded = !sends.is_empty();
    for (index, part, names) in sends {
        let outcome = broker
            .sources
            .write(
                &targets[index],
                (method.clone(), path),
                part.as_ref(),
                &forward,
            )
            .await;
        if outcome.is_ok() {
            sent_ok.extend(names.iter().cloned());
        }
        if let Err(reason) = outcome {
            tracing::warn!(%reason, "write not forwarded");
            let names = if names.is_empty() {
                vec![id.to_owned()]
            } else {
                names
            };
            failed.push((names, reason));
        }
    }
    sent_ok.sort();
    sent_ok.dedup();
    Ok(Shared {
        local,
        failed,
        forwarded,
        sent_ok,
    })
}

/// One target's share of an entity: the target's index, its part of the body, and the
/// expanded names of the attributes in it.
type Share = (usize, Value, Vec<String>);

/// How one entity's members are shared among `targets` (see [`share_write`]): each target's
/// part — the members that are not attributes, and the attributes it holds — with those
/// attributes' expanded names, for the targets that get one; and what is left for the broker
/// (`None`: nothing).
fn split_entity(
    object: &Map<String, Value>,
    targets: &[crate::distributed::WriteTarget],
    creating: bool,
    context: &Context,
) -> (Vec<Share>, Option<Map<String, Value>>) {
    let is_attribute = |key: &str| !matches!(key, "id" | "type" | "@context" | "scope");
    let mut parts = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        let part: Map<String, Value> = object
            .iter()
            .filter(|(k, _)| !is_attribute(k) || target.covers(&context.expand(k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let names: Vec<String> = part
            .keys()
            .filter(|k| is_attribute(k))
            .map(|k| context.expand(k))
            .collect();
        if !names.is_empty() || (creating && target.takes_all()) {
            parts.push((index, Value::Object(part), names));
        }
    }
    let mut rest = object.clone();
    rest.retain(|k, _| !is_attribute(k) || !targets.iter().any(|t| t.takes(&context.expand(k))));
    let nothing_left = if creating {
        targets.iter().any(|t| t.takes_all())
    } else {
        !rest.keys().any(|k| is_attribute(k))
    };
    (parts, (!nothing_left).then_some(rest))
}

/// Shares a write of one attribute (`name`, expanded) of entity `id` — its `body`, or none
/// for a delete — with the sources that hold that attribute: each gets it; the broker applies
/// it too (`local`) unless one of them is exclusive or redirect.
async fn share_one_attribute(
    broker: &ContextBroker,
    request: &Request,
    params: &HashMap<String, String>,
    (operation, method, path): (&str, reqwest::Method, &str),
    (id, name): (&str, &str),
    body: Option<&Value>,
) -> NgsiResult<Shared> {
    let alone = Shared::alone(Value::Null);
    let Some(forward) = request.forward_write(broker, params)? else {
        return Ok(alone);
    };
    let selector = TypeSelector::read(params, &request.context);
    let types = known_types(broker, request, id, &selector).await?;
    let targets: Vec<_> = broker
        .sources
        .for_write(&request.tenant, &request.viewer, operation, (id, &types))
        .into_iter()
        .filter(|t| t.covers(name))
        .collect();
    if targets.is_empty() {
        return Ok(alone);
    }
    let mut shared = Shared {
        local: (!targets.iter().any(|t| t.takes(name))).then_some(Value::Null),
        failed: Vec::new(),
        forwarded: true,
        sent_ok: Vec::new(),
    };
    for target in &targets {
        match broker
            .sources
            .write(target, (method.clone(), path), body, &forward)
            .await
        {
            Ok(()) => shared.sent_ok = vec![name.to_owned()],
            Err(reason) => {
                tracing::warn!(%reason, "write not forwarded");
                shared.failed.push((vec![name.to_owned()], reason));
            }
        }
    }
    Ok(shared)
}

/// The types of entity `id` as the broker has it (or as the request's `type` says), for
/// matching the registrations a write goes to; none when neither tells.
async fn known_types(
    broker: &ContextBroker,
    request: &Request,
    id: &str,
    selector: &TypeSelector,
) -> NgsiResult<Vec<String>> {
    Ok(
        match broker.get(&request.tenant, id, &request.viewer).await? {
            Some(stored) => stored.entity.types.clone(),
            None => selector.0.clone().unwrap_or_default(),
        },
    )
}

/// Shares an attribute write of entity `id` (see [`share_write`]) when registrations may want
/// it; else the body stays the broker's alone, looked at no further.
async fn share_attribute_write(
    broker: &ContextBroker,
    request: &Request,
    params: &HashMap<String, String>,
    (operation, method, path): (&str, reqwest::Method, &str),
    id: &str,
    body: Value,
) -> NgsiResult<Shared> {
    if !broker.sources.any_for_writes(&request.tenant) {
        return Ok(Shared::alone(body));
    }
    let selector = TypeSelector::read(params, &request.context);
    let types = known_types(broker, request, id, &selector).await?;
    share_write(
        broker,
        request,
        params,
        (operation, method, path),
        (id, &types),
        body,
    )
    .await
}

/// Create an entity (201 with its Location; 409 AlreadyExists).
#[utoipa::path(post, path = "/ngsi-ld/v1/entities", tag = "ngsi-ld",
    request_body(content = Object, description = "an NGSI-LD entity (normalized or concise)"),
    responses((status = 201), (status = 400), (status = 409), (status = 415)))]
async fn create_entity(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> NgsiResult<Response> {
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
async fn retrieve_entity(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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
async fn with_map(
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

/// An answer (or error) with an `NGSILD-Warning` header for each context source whose part
/// of a distributed read was left out (clause 6.3.17).
fn with_warnings(
    answer: NgsiResult<Response>,
    warnings: &[crate::distributed::Warning],
) -> Response {
    let mut response = answer.unwrap_or_else(IntoResponse::into_response);
    for warning in warnings {
        if let Some(value) = warning.header() {
            response.headers_mut().append("ngsild-warning", value);
        }
    }
    response
}

/// One entity as Retrieve Entity answers it, with what it links to when asked (`linking`).
async fn answer_entity(
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

/// Clause 4.21: an entity with no member left after `pick` and `omit` is not found.
fn nothing_left(body: &Value, id: &str) -> NgsiResult<()> {
    if body.as_object().is_some_and(Map::is_empty) {
        return Err(errors::not_found(format!(
            "nothing of entity {id} is left after pick and omit"
        )));
    }
    Ok(())
}

/// Replace an entity's type and attributes (CIM 009 v1.8 §5.6.?): 204.
#[utoipa::path(put, path = "/ngsi-ld/v1/entities/{entityId}", tag = "ngsi-ld",
    params(("entityId" = String, Path)),
    request_body(content = Object), responses((status = 204), (status = 400), (status = 404)))]
async fn replace_entity(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (mut value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.writer(&broker)?;
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
    if !shared.failed.is_empty() {
        return Ok((
            Extension(AuditNote::recorded()),
            shared.answered_by_sources(&request.context),
        )
            .into_response());
    }
    Ok((StatusCode::NO_CONTENT, Extension(AuditNote::recorded())).into_response())
}

/// Merge a fragment into an entity (v1.8 merge-patch semantics: given attributes replace or
/// add; `"urn:ngsi-ld:null"` deletes): 204.
#[utoipa::path(patch, path = "/ngsi-ld/v1/entities/{entityId}", tag = "ngsi-ld",
    params(("entityId" = String, Path)),
    request_body(content = Object), responses((status = 204), (status = 400), (status = 404)))]
async fn merge_entity(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.writer(&broker)?;
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
    if !shared.failed.is_empty() {
        return Ok((
            Extension(AuditNote::recorded()),
            shared.answered_by_sources(&request.context),
        )
            .into_response());
    }
    Ok((StatusCode::NO_CONTENT, Extension(AuditNote::recorded())).into_response())
}

/// Takes the members of a merge or update fragment that are the NGSI-LD Null out of it: the
/// (expanded) names of the attributes to delete.
fn take_removals(object: &mut Map<String, Value>, context: &Context) -> Vec<String> {
    let mut deleted = Vec::new();
    object.retain(|name, value| {
        let null = model::removes(value);
        if null {
            deleted.push(context.expand(name));
        }
        !null
    });
    deleted
}

/// A fragment's `scope` member, validated: `Some(None)` for the NGSI-LD Null where it may
/// remove the scope (merge).
fn take_scope(
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
struct Merge {
    types: Option<Vec<String>>,
    /// A new scope, or (`Some(None)`) its removal.
    scope: Option<Option<Value>>,
    attrs: Map<String, Value>,
    deleted: Vec<String>,
    /// Property values given as objects, as given: merged into the stored value (RFC 7396).
    value_patches: HashMap<String, Value>,
}

impl Merge {
    fn parse(mut object: Map<String, Value>, context: &Context, stamp: &str) -> NgsiResult<Self> {
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

    fn apply(&self, stored: &mut Stored, stamp: &str) {
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
        for name in &self.deleted {
            stored.entity.attrs.remove(name);
        }
        stored.entity.modified_at = stamp.to_owned();
    }
}

#[utoipa::path(delete, path = "/ngsi-ld/v1/entities/{entityId}", tag = "ngsi-ld",
    params(("entityId" = String, Path)), responses((status = 204), (status = 404)))]
async fn delete_entity(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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

/// The outcome of an attribute operation that may succeed in part (207).
fn partial(
    updated: Vec<String>,
    not_updated: Vec<(String, String)>,
    context: &Context,
) -> Response {
    if not_updated.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let body = serde_json::json!({
        "updated": updated.iter().map(|n| context.compact(n)).collect::<Vec<_>>(),
        "notUpdated": not_updated.iter().map(|(n, reason)| serde_json::json!({
            "attributeName": context.compact(n), "reason": reason})).collect::<Vec<_>>(),
    });
    (
        StatusCode::MULTI_STATUS,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Append attributes (existing ones are overwritten unless `options=noOverwrite`): 204 or 207.
#[utoipa::path(post, path = "/ngsi-ld/v1/entities/{entityId}/attrs", tag = "ngsi-ld",
    params(("entityId" = String, Path)),
    request_body(content = Object), responses((status = 204), (status = 207), (status = 404)))]
async fn append_attributes(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.writer(&broker)?;
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
    updated.extend(shared.sent_ok.iter().cloned());
    not_updated.extend(shared.not_updated());
    Ok((
        Extension(AuditNote::recorded()),
        partial(updated, not_updated, &request.context),
    )
        .into_response())
}

/// Update existing attributes; ones the entity lacks are reported (207), not added.
#[utoipa::path(patch, path = "/ngsi-ld/v1/entities/{entityId}/attrs", tag = "ngsi-ld",
    params(("entityId" = String, Path)),
    request_body(content = Object), responses((status = 204), (status = 207), (status = 404)))]
async fn update_attributes(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.writer(&broker)?;
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
                for name in &deleted {
                    if stored.entity.attrs.remove(name).is_some() {
                        updated.push(name.clone());
                    } else {
                        not_updated
                            .push((name.clone(), "the entity has no such attribute".to_owned()));
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
    updated.extend(shared.sent_ok.iter().cloned());
    not_updated.extend(shared.not_updated());
    Ok((
        Extension(AuditNote::recorded()),
        partial(updated, not_updated, &request.context),
    )
        .into_response())
}

/// Partial attribute update: the given members replace the stored ones, others are kept.
#[utoipa::path(patch, path = "/ngsi-ld/v1/entities/{entityId}/attrs/{attrId}", tag = "ngsi-ld",
    params(("entityId" = String, Path), ("attrId" = String, Path)),
    request_body(content = Object),
    responses((status = 204), (status = 400), (status = 404)))]
async fn partial_attribute_update(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.writer(&broker)?;
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
    broker
        .modify(
            &request.tenant,
            &id,
            &request.viewer,
            Some(&request.audit_entry(&headers, "ngsi.attr.update", &id)),
            |stored| {
                types.check(stored)?;
                request.may_change(&broker, stored)?;
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
    if !shared.failed.is_empty() {
        return Ok((
            Extension(AuditNote::recorded()),
            shared.answered_by_sources(&request.context),
        )
            .into_response());
    }
    Ok((StatusCode::NO_CONTENT, Extension(AuditNote::recorded())).into_response())
}

/// Replace one attribute (v1.8): 204; 404 when the entity or the attribute is missing.
#[utoipa::path(put, path = "/ngsi-ld/v1/entities/{entityId}/attrs/{attrId}", tag = "ngsi-ld",
    params(("entityId" = String, Path), ("attrId" = String, Path)),
    request_body(content = Object),
    responses((status = 204), (status = 400), (status = 404)))]
async fn replace_attribute(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (mut value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.writer(&broker)?;
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
    if !shared.failed.is_empty() {
        return Ok((
            Extension(AuditNote::recorded()),
            shared.answered_by_sources(&request.context),
        )
            .into_response());
    }
    Ok((StatusCode::NO_CONTENT, Extension(AuditNote::recorded())).into_response())
}

#[utoipa::path(delete, path = "/ngsi-ld/v1/entities/{entityId}/attrs/{attrId}", tag = "ngsi-ld",
    params(("entityId" = String, Path), ("attrId" = String, Path)),
    responses((status = 204), (status = 404)))]
async fn delete_attribute(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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
    if !shared.failed.is_empty() {
        return Ok((
            Extension(AuditNote::recorded()),
            shared.answered_by_sources(&request.context),
        )
            .into_response());
    }
    Ok((StatusCode::NO_CONTENT, Extension(AuditNote::recorded())).into_response())
}

/// The geo-query of `georel`, `geometry` and `coordinates` (all or none) on `property`.
fn geo_query(params: &HashMap<String, String>, property: String) -> NgsiResult<Option<GeoQuery>> {
    match (
        params.get("georel"),
        params.get("geometry"),
        params.get("coordinates"),
    ) {
        (None, None, None) => Ok(None),
        (Some(georel), Some(geometry), Some(coordinates)) => {
            GeoQuery::parse(georel, geometry, coordinates, property).map(Some)
        }
        _ => Err(errors::bad_request(
            "a geo-query needs georel, geometry and coordinates together",
        )),
    }
}

/// The query parameters of `GET /entities`, after parsing.
struct EntityQuery {
    selection: Selection,
    id_pattern: Option<regex::Regex>,
    q: Option<crate::query::Expr>,
    geo: Option<GeoQuery>,
    /// Expanded names: entities need at least one of them.
    attrs: Option<Vec<String>>,
    scope: Option<model::ScopeQuery>,
    order: Option<crate::query::Ordering>,
    offset: usize,
    limit: usize,
    count: bool,
    /// The context source filter: which registrations' sources are asked.
    csf: Option<crate::query::Expr>,
}

fn entity_query(
    params: &HashMap<String, String>,
    context: &Context,
    max_limit: usize,
) -> NgsiResult<EntityQuery> {
    let list = |key: &str| list_param(params, key);
    let types: Vec<String> = list("type").iter().map(|t| context.expand(t)).collect();
    let ids = list("id");
    for id in &ids {
        model::check_entity_id(id)?;
    }
    // Clause 5.2.33: id takes precedence over idPattern.
    let id_pattern = params
        .get("idPattern")
        .filter(|_| ids.is_empty())
        .map(|p| regex::Regex::new(p).map_err(|e| errors::bad_request(format!("idPattern: {e}"))))
        .transpose()?;
    let q = params
        .get("q")
        .map(|q| {
            crate::query::parse_expanding(
                q,
                params.get("expandValues").map(String::as_str),
                context,
            )
        })
        .transpose()?;
    let geo = geo_query(
        params,
        context.expand(params.get("geoproperty").map_or("location", String::as_str)),
    )?;
    let attrs = params.get("attrs").map(|a| {
        a.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| context.expand(s.trim()))
            .collect::<Vec<_>>()
    });
    let scope = params
        .get("scopeQ")
        .map(|q| model::ScopeQuery::parse(q))
        .transpose()?;
    // An RFC 6067 / BCP 47 tag: strings in orderBy compare as that locale sorts them.
    let collation = params
        .get("collation")
        .map(|tag| crate::query::Collation::new(tag))
        .transpose()?;
    let order = params
        .get("orderBy")
        .map(|o| {
            crate::query::Ordering::parse(o, params.get("orderFrom").map(String::as_str), context)
                .map(|order| order.collated(collation.clone()))
        })
        .transpose()?;
    // Clause 5.7.2.4: q on linked entities' attributes (`rel{attr}`) needs Linked Entity
    // Retrieval (`join`) at least as deep as the query goes.
    if let Some(q) = &q {
        let depth = q.link_depth();
        let joined = linking(params)?.map_or(0, |l| l.level as usize);
        if depth > joined {
            return Err(errors::bad_request(if joined == 0 {
                "q on attributes of linked entities ({…}) needs join=inline or join=flat".to_owned()
            } else {
                format!("q goes {depth} links deep, deeper than joinLevel={joined}")
            }));
        }
    }
    let csf = params
        .get("csf")
        .map(|csf| crate::query::parse_csf(csf, context))
        .transpose()?;
    flag(params, "splitEntities")?;
    // Clause 5.7.2.4: attrs and q narrow a query only through attributes that are not the
    // system's (createdAt, modifiedAt, …).
    let system = |name: &str| crate::model::SYSTEM_ATTRIBUTES.contains(&name);
    let narrowing_attrs = attrs
        .as_ref()
        .is_some_and(|names| names.iter().any(|n| !system(n)));
    let narrowing_q = q
        .as_ref()
        .is_some_and(|q| q.attributes().iter().any(|n| !system(n)));
    if types.is_empty()
        && ids.is_empty()
        && id_pattern.is_none()
        && !narrowing_q
        && geo.is_none()
        && !narrowing_attrs
        && scope.is_none()
    {
        return Err(errors::bad_request(
            "a query needs at least one of type, id, idPattern, attrs, q, scopeQ or a geo-query",
        ));
    }
    let (offset, limit) = paging(params)?;
    let count = params.get("count").is_some_and(|c| c == "true");
    if limit > max_limit {
        return Err(Problem::custom(
            "https://uri.etsi.org/ngsi-ld/errors/TooManyResults",
            "Too many results",
            403,
        )
        .with_detail(format!("limit is at most {max_limit}")));
    }
    if limit == 0 && !count {
        return Err(errors::bad_request(
            "limit=0 is only allowed with count=true",
        ));
    }
    Ok(EntityQuery {
        selection: Selection {
            types,
            ids,
            bbox: geo.as_ref().and_then(GeoQuery::prefilter),
            page: None,
            page_if_decided: None,
            conditions: Vec::new(),
        },
        id_pattern,
        q,
        geo,
        attrs,
        scope,
        order,
        offset,
        limit,
        count,
        csf,
    })
}

impl EntityQuery {
    /// The filters that run in memory: idPattern, attrs, q, the exact geometry test.
    fn keeps(&self, s: &Stored) -> bool {
        self.keeps_in(s, &crate::query::Links::new())
    }

    /// [`keeps`](Self::keeps), with the linked entities `q` reaches.
    fn keeps_in(&self, s: &Stored, links: &crate::query::Links) -> bool {
        self.id_pattern
            .as_ref()
            .is_none_or(|p| p.is_match(&s.entity.id))
            && self
                .attrs
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| s.entity.attrs.contains_key(n)))
            && self
                .q
                .as_ref()
                .is_none_or(|q| q.matches_in(&s.entity, links))
            && self.scope.as_ref().is_none_or(|q| q.matches(&s.entity))
            && self.geo.as_ref().is_none_or(|g| {
                s.entity
                    .attrs
                    .get(&g.property)
                    .and_then(|a| a.get("value"))
                    .and_then(|v| model::geometry(v).ok())
                    .is_some_and(|geometry| g.matches(&geometry))
            })
    }
}

/// What a query selected: a page (or, asked for `all`, every match in order), the total,
/// whether more follow, where each came from (the registrations whose sources answered it),
/// and the warnings of the sources left out.
#[derive(Default)]
struct Matched {
    entities: Vec<Stored>,
    total: i64,
    more: bool,
    origins: HashMap<String, Vec<String>>,
    warnings: Vec<crate::distributed::Warning>,
}

async fn matching_entities(
    broker: &ContextBroker,
    request: &Request,
    query: &EntityQuery,
    params: &HashMap<String, String>,
    all: bool,
) -> NgsiResult<Matched> {
    // Context sources registered for the query's types or ids are asked too; the answers are
    // merged with the broker's own, so paging happens over both.
    let mut sources = broker.sources.for_query(
        (&request.tenant, &request.viewer),
        (&query.selection.types, &query.selection.ids),
        query.attrs.as_deref().unwrap_or_default(),
        query.csf.as_ref().map(|csf| (csf, &request.context)),
    );
    let mut warnings = Vec::new();
    let mut origins = HashMap::new();
    let forward = if sources.is_empty() {
        None
    } else {
        request.forward(broker, params)?
    };
    if forward.is_none() {
        sources.clear();
    }
    let in_memory = query.id_pattern.is_some()
        || query.q.is_some()
        || query.geo.is_some()
        || query.attrs.is_some()
        || query.scope.is_some()
        || query.order.is_some()
        || !sources.is_empty()
        || all;
    let mut selection = query.selection.clone();
    if !in_memory {
        // One more than the page: whether there is a next page, without counting.
        selection.page = Some((query.offset, query.limit + 1));
    }
    if let Some(q) = &query.q {
        let prefilter = crate::query::prefilter(q, broker.db.dialect().json());
        let only_q = query.id_pattern.is_none()
            && query.geo.is_none()
            && query.attrs.is_none()
            && query.scope.is_none()
            && query.order.is_none();
        if prefilter.complete && only_q && sources.is_empty() && !all {
            selection.page_if_decided = Some((query.offset, query.limit + 1));
        }
        selection.conditions = prefilter.conditions;
    }
    let selected = broker
        .select(&request.tenant, &request.viewer, &selection, query.count)
        .await?;
    let (entities, total, more): (Vec<Stored>, i64, bool) = if !selected.paged {
        let mut matching: Vec<Stored> = match query.q.as_ref().filter(|q| q.link_depth() > 0) {
            None => selected
                .entities
                .into_iter()
                .filter(|s| query.keeps(s))
                .collect(),
            Some(q) => {
                // Linked entities are read (as this viewer may see them) for each candidate.
                let mut kept = Vec::new();
                for stored in selected.entities {
                    let links = crate::query::resolve_links(q, &stored.entity, |id| async move {
                        broker
                            .get(&request.tenant, &id, &request.viewer)
                            .await
                            .ok()
                            .flatten()
                            .map(|found| found.entity.clone())
                    })
                    .await;
                    if query.keeps_in(&stored, &links) {
                        kept.push(stored);
                    }
                }
                kept
            }
        };
        if let Some(forward) = &forward
            && !sources.is_empty()
        {
            let selects = (
                query.selection.types.as_slice(),
                query.selection.ids.as_slice(),
                query.attrs.as_deref().unwrap_or_default(),
            );
            let (remote, left_out) = broker
                .sources
                .query(
                    &sources,
                    (params, selects),
                    query.offset + query.limit,
                    (&request.context, forward),
                )
                .await;
            warnings = left_out;
            origins = merge_remote(&mut matching, remote, query);
        }
        if let Some(order) = &query.order {
            order.sort(&mut matching, |s| &s.entity);
        }
        if all {
            let total = matching.len() as i64;
            return Ok(Matched {
                entities: matching,
                total,
                more: false,
                origins,
                warnings,
            });
        }
        let total = matching.len() as i64;
        let more = query.offset + query.limit < matching.len();
        (
            matching
                .into_iter()
                .skip(query.offset)
                .take(query.limit)
                .collect(),
            total,
            more,
        )
    } else {
        let mut page = selected.entities;
        let more = page.len() > query.limit;
        page.truncate(query.limit);
        (page, selected.total.unwrap_or(0), more)
    };
    Ok(Matched {
        entities,
        total,
        more,
        origins,
        warnings,
    })
}

async fn run_query(
    broker: &ContextBroker,
    request: &Request,
    mut query: EntityQuery,
    (options, linking): (RenderOptions, Option<Linking>),
    (params, page_links, map): (&HashMap<String, String>, bool, MapUse),
) -> NgsiResult<Response> {
    let mut headers = HeaderMap::new();
    let mut status = StatusCode::OK;
    // A live EntityMap fixes the set (clause 5.5.14): its ids, within those asked.
    let nothing = match &map {
        MapUse::Use(map) => restrict_to_map(&mut query.selection.ids, map),
        _ => false,
    };
    let matched = if nothing {
        Matched::default()
    } else {
        let all = matches!(map, MapUse::Create);
        matching_entities(broker, request, &query, params, all).await?
    };
    let warnings = matched.warnings;
    let (page, total, more) = match &map {
        MapUse::Create => {
            let made = make_map(
                broker,
                request,
                &matched.entities,
                &matched.origins,
                crate::entity_maps::DEFAULT_LIFETIME_MS,
            )
            .await?;
            map_header(&made, &mut headers);
            status = StatusCode::CREATED;
            let total = matched.entities.len();
            let more = query.offset + query.limit < total;
            let page = matched
                .entities
                .into_iter()
                .skip(query.offset)
                .take(query.limit)
                .collect::<Vec<_>>();
            (page, total as i64, more)
        }
        MapUse::Use(map) => {
            map_header(map, &mut headers);
            (matched.entities, matched.total, matched.more)
        }
        MapUse::None => (matched.entities, matched.total, matched.more),
    };
    let shown = match linking {
        Some(linking) => {
            let entities: Vec<&model::Entity> = page.iter().map(|s| &s.entity).collect();
            request
                .render_linked(broker, &entities, &options, linking)
                .await?
        }
        None => page
            .iter()
            .map(|s| request.render(&s.entity, &options))
            .collect(),
    };
    let body = request.collection(shown);
    if query.count
        && let Ok(value) = HeaderValue::from_str(&total.to_string())
    {
        headers.insert("ngsild-results-count", value);
    }
    if page_links {
        let page = Page {
            path: "/ngsi-ld/v1/entities",
            offset: query.offset,
            limit: query.limit,
            more,
        };
        page.link(params, request.media, "; ", &mut headers);
    }
    Ok(with_warnings(
        Ok(request.respond(status, body, &mut headers)),
        &warnings,
    ))
}

/// Merges the entities context sources answered into the broker's own matches (by id), keeping
/// only those the query selects, in id order; which registrations each came through.
fn merge_remote(
    matching: &mut Vec<Stored>,
    remote: Vec<(String, model::Entity)>,
    query: &EntityQuery,
) -> HashMap<String, Vec<String>> {
    let mut origins: HashMap<String, Vec<String>> = HashMap::new();
    let types = &query.selection.types;
    let ids = &query.selection.ids;
    let mut index: HashMap<String, usize> = matching
        .iter()
        .enumerate()
        .map(|(i, s)| (s.entity.id.clone(), i))
        .collect();
    for (registration, entity) in remote {
        if (!types.is_empty() && !entity.types.iter().any(|t| types.contains(t)))
            || (!ids.is_empty() && !ids.contains(&entity.id))
        {
            continue;
        }
        let from = origins.entry(entity.id.clone()).or_default();
        if !from.contains(&registration) {
            from.push(registration);
        }
        match index.get(&entity.id) {
            Some(&i) => crate::distributed::merge(&mut matching[i].entity, entity),
            None => {
                let stored = Stored {
                    entity,
                    owner: String::new(),
                    public: false,
                };
                if query.keeps(&stored) {
                    index.insert(stored.entity.id.clone(), matching.len());
                    matching.push(stored);
                }
            }
        }
    }
    matching.sort_by(|a, b| a.entity.id.cmp(&b.entity.id));
    origins
}

/// What a request asks of EntityMaps (clause 5.5.14): to work on a live map it names
/// (`NGSILD-Entitymap`, echoed), to have one made (`entityMap=true`, or naming one that is
/// gone or not the caller's), or neither.
enum MapUse {
    None,
    Use(crate::entity_maps::EntityMap),
    Create,
}

async fn map_use(
    broker: &ContextBroker,
    request: &Request,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> NgsiResult<MapUse> {
    let asked = match params.get("entityMap").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(errors::bad_request(format!(
                "entityMap is true or false, not {other:?}"
            )));
        }
    };
    if let Some(named) = headers
        .get("ngsild-entitymap")
        .and_then(|v| v.to_str().ok())
    {
        let id = named.trim().rsplit('/').next().unwrap_or_default();
        if let Some(map) = crate::entity_maps::get(&broker.db, &request.tenant, id).await?
            && map_visible(request, &map)
        {
            return Ok(MapUse::Use(map));
        }
        return Ok(MapUse::Create);
    }
    Ok(if asked { MapUse::Create } else { MapUse::None })
}

/// Who a map made by this request belongs to: the caller's department (none without one).
fn map_owner(request: &Request) -> String {
    request
        .principal
        .as_ref()
        .map(|p| p.department.clone())
        .unwrap_or_default()
}

/// May this caller use or see `map`? Its department's, everything for platform admins (or
/// with authentication off); without a credential, only maps made without one.
fn map_visible(request: &Request, map: &crate::entity_maps::EntityMap) -> bool {
    matches!(request.viewer, Viewer::All) || map.owner == map_owner(request)
}

/// Narrows `ids` (none: any) to those of `map`; `true` when nothing is left.
fn restrict_to_map(ids: &mut Vec<String>, map: &crate::entity_maps::EntityMap) -> bool {
    let kept: Vec<String> = map
        .entities
        .keys()
        .filter(|id| ids.is_empty() || ids.contains(id))
        .cloned()
        .collect();
    *ids = kept;
    ids.is_empty()
}

/// Makes and keeps the map of `entities` (`@none` for those held here, then the registrations
/// each came through).
async fn make_map(
    broker: &ContextBroker,
    request: &Request,
    entities: &[Stored],
    origins: &HashMap<String, Vec<String>>,
    lifetime_ms: i64,
) -> NgsiResult<crate::entity_maps::EntityMap> {
    let entries = entities
        .iter()
        .map(|s| {
            let mut from = Vec::new();
            if !s.owner.is_empty() {
                from.push(crate::entity_maps::HERE.to_owned());
            }
            from.extend(origins.get(&s.entity.id).into_iter().flatten().cloned());
            (s.entity.id.clone(), from)
        })
        .collect();
    let map = crate::entity_maps::EntityMap::new(map_owner(request), entries, lifetime_ms);
    crate::entity_maps::insert(&broker.db, &request.tenant, &map).await?;
    Ok(map)
}

/// The `NGSILD-EntityMap` header naming `map`.
fn map_header(map: &crate::entity_maps::EntityMap, headers: &mut HeaderMap) {
    if let Ok(value) = HeaderValue::from_str(&map.location()) {
        headers.insert("ngsild-entitymap", value);
    }
}

/// Where a page of a listing sits, for its `prev` and `next` links (clause 4.12).
struct Page {
    path: &'static str,
    offset: usize,
    limit: usize,
    more: bool,
}

impl Page {
    /// Adds the Link headers to the neighbouring pages: the request's parameters (sorted by
    /// name) with the offset moved by the page size. `separator` goes before `rel`.
    fn link(
        &self,
        params: &HashMap<String, String>,
        media: &str,
        separator: &str,
        headers: &mut HeaderMap,
    ) {
        if self.limit == 0 {
            return;
        }
        let link = |offset: usize, rel: &str| {
            let mut query: Vec<(String, String)> = params
                .iter()
                .filter(|(name, _)| name.as_str() != "offset")
                .map(|(name, value)| (name.clone(), link_escape(value)))
                .collect();
            query.push(("offset".into(), offset.to_string()));
            query.sort();
            let query: Vec<String> = query.iter().map(|(n, v)| format!("{n}={v}")).collect();
            format!(
                "<{}?{}>{separator}rel=\"{rel}\";type=\"{media}\"",
                self.path,
                query.join("&")
            )
        };
        if self.offset > 0
            && let Ok(value) =
                HeaderValue::from_str(&link(self.offset.saturating_sub(self.limit), "prev"))
        {
            headers.append(header::LINK, value);
        }
        if self.more
            && let Ok(value) = HeaderValue::from_str(&link(self.offset + self.limit, "next"))
        {
            headers.append(header::LINK, value);
        }
    }
}

/// A parameter value as it can stand in a link: the characters that would end the URL or the
/// header's list of links percent-encoded, the rest as given.
fn link_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ' ' | '"' | '<' | '>' | ',' | '&' | '#' | '%' | '\\' | '^' | '`' | '{' | '}' | '|' => {
                out.push_str(&format!("%{:02X}", u32::from(c)));
            }
            c if c.is_ascii_control() || !c.is_ascii() => {
                let mut buffer = [0; 4];
                for byte in c.encode_utf8(&mut buffer).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Query entities: `type`, `id`, `idPattern`, `attrs`, `q`, `georel`/`geometry`/`coordinates`/
/// `geoproperty`, `limit`/`offset`, `count=true` (header `NGSILD-Results-Count`), `options`.
#[utoipa::path(get, path = "/ngsi-ld/v1/entities", tag = "ngsi-ld",
    responses((status = 200), (status = 400)))]
async fn query_entities(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    let params = params_of(raw, &[RENDER_PARAMS, QUERY_PARAMS])?;
    request.geometry_property_needs_geo_json(&params)?;
    let options = render_options(&params, &request.context)?;
    let query = entity_query(&params, &request.context, broker.config.max_limit)?;
    let linking = linking(&params)?;
    let map = map_use(&broker, &request, &headers, &params).await?;
    run_query(
        &broker,
        &request,
        query,
        (options, linking),
        (&params, true, map),
    )
    .await
}

/// Purge Entities (clause 5.6.21): the entities a query selects are deleted, or with `keep`
/// (`drop`) lose every attribute but (all of) those named: 204. Nothing changes unless the
/// caller may change every selected entity.
#[utoipa::path(delete, path = "/ngsi-ld/v1/entities", tag = "ngsi-ld",
    responses((status = 204), (status = 400), (status = 403)))]
async fn purge_entities(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
    let mut params = params_of(
        raw,
        &[&[
            "type",
            "id",
            "idPattern",
            "q",
            "scopeQ",
            "keep",
            "drop",
            "local",
        ]],
    )?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    request.writer(&broker)?;
    // Sources registered for the purge get the same request (clause 4.3.6).
    let purged_at_sources = params.clone();
    // Decided before anything is purged here: a request that came round a loop changes nothing.
    let forward = request.forward_write(&broker, &purged_at_sources)?;
    let names = |list: Option<String>| -> NgsiResult<Option<Vec<String>>> {
        list.map(|l| {
            projection("keep/drop", &l)
                .map(|names| names.iter().map(|n| request.context.expand(n)).collect())
        })
        .transpose()
    };
    let (keep, drop) = (names(params.remove("keep"))?, names(params.remove("drop"))?);
    if keep.is_some() && drop.is_some() {
        return Err(errors::bad_request("give keep or drop, not both"));
    }
    if !["type", "id", "idPattern", "q", "scopeQ"]
        .iter()
        .any(|k| params.contains_key(*k))
    {
        return Err(errors::bad_request(
            "purging needs at least one of type, id, idPattern, q or scopeQ",
        ));
    }
    let query = entity_query(&params, &request.context, broker.config.max_limit)?;
    let selected = broker
        .select(&request.tenant, &request.viewer, &query.selection, false)
        .await?;
    let matching: Vec<Stored> = selected
        .entities
        .into_iter()
        .filter(|s| query.keeps(s))
        .collect();
    for stored in &matching {
        request.may_change(&broker, stored)?;
    }
    for stored in &matching {
        let id = &stored.entity.id;
        match (&keep, &drop) {
            (None, None) => {
                broker
                    .delete(&request.tenant, id, &request.viewer, |s| {
                        request.may_change(&broker, s)
                    })
                    .await?;
            }
            _ => {
                let stamp = now();
                broker
                    .modify(
                        &request.tenant,
                        id,
                        &request.viewer,
                        Some(&request.audit_entry(&headers, "ngsi.entity.purge", id)),
                        |s| {
                            request.may_change(&broker, s)?;
                            s.entity.attrs.retain(|name, _| match (&keep, &drop) {
                                (Some(keep), _) => keep.contains(name),
                                (_, Some(drop)) => !drop.contains(name),
                                _ => true,
                            });
                            s.entity.modified_at = stamp.clone();
                            Ok(())
                        },
                    )
                    .await?;
            }
        }
    }
    let audit = || {
        Extension(AuditNote::new(
            "ngsi.entities.purge",
            format!("entities:{}", request.tenant),
        ))
    };
    let failed = match forward {
        Some(forward) => {
            purge_at_sources(&broker, &request, &query, (&purged_at_sources, &forward)).await
        }
        None => Vec::new(),
    };
    if !failed.is_empty() {
        let body = serde_json::json!({"notUpdated": failed.iter().map(|reason| serde_json::json!({
            "reason": reason})).collect::<Vec<_>>()});
        return Ok((
            StatusCode::MULTI_STATUS,
            audit(),
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response());
    }
    Ok((StatusCode::NO_CONTENT, audit()).into_response())
}

/// Sends a purge to the sources registered for its types and ids that name the operation;
/// why each that failed did.
async fn purge_at_sources(
    broker: &ContextBroker,
    request: &Request,
    query: &EntityQuery,
    (params, forward): (&HashMap<String, String>, &crate::distributed::Forward),
) -> Vec<String> {
    let targets = broker.sources.for_purge(
        &request.tenant,
        &request.viewer,
        (&query.selection.types, &query.selection.ids),
    );
    let path = format!(
        "/entities?{}",
        crate::distributed::query_string(
            params,
            &["type", "id", "idPattern", "q", "scopeQ", "keep", "drop"]
        )
        .join("&")
    );
    let mut failed = Vec::new();
    for target in &targets {
        if let Err(reason) = broker
            .sources
            .write(target, (reqwest::Method::DELETE, &path), None, forward)
            .await
        {
            tracing::warn!(%reason, "purge not forwarded");
            failed.push(reason);
        }
    }
    failed
}

/// The same query as a body (`{"type": "Query", "entities": [{"type": …, "id": …,
/// "idPattern": …}], "attrs": […], "q": …, "geoQ": {…}}`); `limit`, `offset`, `count`, `options`
/// stay in the URL.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/query", tag = "ngsi-ld",
    request_body(content = Object, description = "an NGSI-LD Query"),
    responses((status = 200), (status = 400)))]
async fn query_post(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.require_tenant(&broker).await?;
    let mut params = query_map(raw)?;
    if value.get("temporalQ").is_some() {
        return Err(errors::bad_request(
            "temporalQ belongs to a temporal query (POST /temporal/entityOperations/query)",
        ));
    }
    query_body_params(&value, &mut params)?;
    let options = render_options(&params, &request.context)?;
    let query = entity_query(&params, &request.context, broker.config.max_limit)?;
    let linking = linking(&params)?;
    let map = map_use(&broker, &request, &headers, &params).await?;
    run_query(
        &broker,
        &request,
        query,
        (options, linking),
        (&params, false, map),
    )
    .await
}

/// The members of an NGSI-LD Query body (`POST …/entityOperations/query`) as the query
/// parameters they stand for.
fn query_body_params(value: &Value, params: &mut HashMap<String, String>) -> NgsiResult<()> {
    if value.get("type").and_then(Value::as_str) != Some("Query") {
        return Err(errors::bad_request(
            "the body must be an object with \"type\": \"Query\"",
        ));
    }
    // Table 5.2.23-1: no empty arrays, strings where strings are due, joinLevel positive.
    for member in ["entities", "attrs", "pick", "omit"] {
        if value
            .get(member)
            .is_some_and(|v| v.as_array().is_none_or(Vec::is_empty))
        {
            return Err(errors::bad_request(format!(
                "{member} is a non-empty array (clause 5.2.23)"
            )));
        }
    }
    for member in ["q", "scopeQ", "csf", "lang", "join"] {
        if value.get(member).is_some_and(|v| !v.is_string()) {
            return Err(errors::bad_request(format!("{member} is a string")));
        }
    }
    if value
        .get("joinLevel")
        .is_some_and(|v| v.as_u64().is_none_or(|n| n == 0))
    {
        return Err(errors::bad_request("joinLevel is a positive integer"));
    }
    let join = |items: Vec<String>| items.join(",");
    for member in ["pick", "omit"] {
        if let Some(items) = value.get(member).and_then(Value::as_array) {
            params.insert(
                member.into(),
                join(
                    items
                        .iter()
                        .filter_map(|a| a.as_str().map(str::to_owned))
                        .collect(),
                ),
            );
        }
    }
    for member in ["scopeQ", "lang", "join"] {
        if let Some(text) = value.get(member).and_then(Value::as_str) {
            params.insert(member.into(), text.to_owned());
        }
    }
    if let Some(level) = value.get("joinLevel").and_then(Value::as_u64) {
        params.insert("joinLevel".into(), level.to_string());
    }
    if let Some(entities) = value.get("entities").and_then(Value::as_array) {
        // Table 5.2.33-1: a type, ids as a URI or a list of them; id before idPattern.
        for selector in entities {
            if !selector.get("type").is_some_and(Value::is_string) {
                return Err(errors::bad_request(
                    "each entity selector needs a type (clause 5.2.33)",
                ));
            }
            match selector.get("id") {
                None => {}
                Some(Value::String(id)) => model::check_entity_id(id)?,
                Some(Value::Array(ids)) => {
                    for id in ids {
                        model::check_entity_id(id.as_str().ok_or_else(|| {
                            errors::bad_request("a selector's id is a URI or a list of URIs")
                        })?)?;
                    }
                }
                Some(_) => {
                    return Err(errors::bad_request(
                        "a selector's id is a URI or a list of URIs",
                    ));
                }
            }
        }
        let ids: Vec<String> = entities
            .iter()
            .filter_map(|e| e.get("id"))
            .flat_map(|id| match id {
                Value::Array(ids) => ids
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                other => other
                    .as_str()
                    .map(str::to_owned)
                    .into_iter()
                    .collect::<Vec<_>>(),
            })
            .collect();
        let field = |name: &str| -> Vec<String> {
            entities
                .iter()
                .filter_map(|e| e.get(name)?.as_str().map(str::to_owned))
                .collect()
        };
        let (types, patterns) = (field("type"), field("idPattern"));
        if !types.is_empty() {
            params.insert("type".into(), join(types));
        }
        if !ids.is_empty() {
            params.insert("id".into(), join(ids));
        } else if let Some(pattern) = patterns.into_iter().next() {
            params.insert("idPattern".into(), pattern);
        }
    }
    if let Some(attrs) = value.get("attrs").and_then(Value::as_array) {
        params.insert(
            "attrs".into(),
            join(
                attrs
                    .iter()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect(),
            ),
        );
    }
    if let Some(q) = value.get("q").and_then(Value::as_str) {
        params.insert("q".into(), q.to_owned());
    }
    if let Some(geo) = value.get("geoQ") {
        for key in ["georel", "geometry", "geoproperty"] {
            if let Some(text) = geo.get(key).and_then(Value::as_str) {
                params.insert(key.into(), text.to_owned());
            }
        }
        if let Some(coordinates) = geo.get("coordinates") {
            let text = match coordinates {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            params.insert("coordinates".into(), text);
        }
    }
    Ok(())
}

/// What the visible entities of a tenant hold: per type, its entities and attribute names;
/// per attribute, its count, attribute types and entity types.
#[derive(Default)]
struct Inventory {
    types: std::collections::BTreeMap<
        String,
        (
            usize,
            std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        ),
    >,
    attributes: std::collections::BTreeMap<
        String,
        (
            usize,
            std::collections::BTreeSet<String>,
            std::collections::BTreeSet<String>,
        ),
    >,
}

async fn inventory(broker: &ContextBroker, request: &Request) -> NgsiResult<Inventory> {
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

fn attribute_kinds(attribute: &Value) -> Vec<String> {
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
fn details(raw: Option<String>) -> NgsiResult<(bool, HashMap<String, String>)> {
    let params = params_of(raw, &[&["details", "local"]])?;
    Ok((flag(&params, "details")?, params))
}

/// The names (expanded) a discovery list holds here (`local`), and those the context sources
/// registered for the tenant list for `operation` at `path` (its `member`), with the warnings
/// of the sources left out.
async fn discovered(
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

fn list_id(kind: &str) -> String {
    format!("urn:ngsi-ld:{kind}:{}", yunnao_core::new_id())
}

/// The entity types in use (`details=true`: with their attribute names).
#[utoipa::path(get, path = "/ngsi-ld/v1/types", tag = "ngsi-ld", responses((status = 200)))]
async fn list_types(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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
async fn type_info(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(type_name): Path<String>,
) -> NgsiResult<Response> {
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
async fn list_attributes(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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

type AttributeEntry = (
    usize,
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
);

fn attribute_body(iri: &str, (count, kinds, types): &AttributeEntry, c: &Context) -> Value {
    serde_json::json!({"id": iri, "type": "Attribute", "attributeName": c.compact(iri),
        "attributeCount": count, "attributeTypes": kinds,
        "typeNames": types.iter().map(|t| c.compact(t)).collect::<Vec<_>>()})
}

#[utoipa::path(get, path = "/ngsi-ld/v1/attributes/{attrId}", tag = "ngsi-ld",
    params(("attrId" = String, Path)), responses((status = 200), (status = 404)))]
async fn attribute_info(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(attr): Path<String>,
) -> NgsiResult<Response> {
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
async fn set_open_data(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    yunnao_http::ApiJson(body): yunnao_http::ApiJson<OpenData>,
) -> NgsiResult<Response> {
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

/// Per-entity outcomes of a batch operation.
#[derive(Default)]
struct BatchResult {
    success: Vec<String>,
    errors: Vec<(String, Problem)>,
}

impl BatchResult {
    fn fail(&mut self, id: String, problem: Problem) {
        self.errors.push((id, errors::ngsi_ld(problem)));
    }

    /// Outcomes in the order of the batch's items.
    fn record(&mut self, outcomes: BatchOutcomes) {
        for (id, outcome) in outcomes {
            match outcome {
                Ok(()) => self.success.push(id),
                Err(problem) => self.fail(id, problem),
            }
        }
    }

    /// 207 with `{"success": [...], "errors": [{"entityId", "error"}]}` when anything failed;
    /// otherwise what `all_ok` says.
    fn respond(self, all_ok: Response) -> Response {
        if self.errors.is_empty() {
            return all_ok;
        }
        // An entity done here but refused by a context source counts as failed.
        let success: Vec<&String> = self
            .success
            .iter()
            .filter(|id| !self.errors.iter().any(|(failed, _)| failed == *id))
            .collect();
        let body = serde_json::json!({
            "success": success,
            "errors": self.errors.iter().map(|(id, problem)| serde_json::json!({
                "entityId": id, "error": problem})).collect::<Vec<_>>(),
        });
        (
            StatusCode::MULTI_STATUS,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// A batch's share for the context sources registered for its entities (clause 4.3.6, as
/// [`share_write`] for one entity): each source gets one batch of its parts; `local` is the
/// batch left for the broker, `result` the outcomes of the items the sources took entirely
/// and of those a source failed.
struct SharedBatch {
    local: Value,
    result: BatchResult,
    /// Some items (or parts) went to sources.
    forwarded: bool,
}

impl SharedBatch {
    /// When nothing is left for the broker: the answer, from the sources' outcomes alone
    /// (`all_ok` when none failed).
    fn answer_if_all_sent(
        self,
        all_ok: impl FnOnce(&[String]) -> Response,
    ) -> Result<Response, Self> {
        if self.forwarded && self.local.as_array().is_some_and(Vec::is_empty) {
            let ok = all_ok(&self.result.success);
            Ok(self.result.respond(ok))
        } else {
            Err(self)
        }
    }
}

async fn share_batch(
    broker: &ContextBroker,
    request: &Request,
    (operation, batch): (&str, &str),
    value: Value,
) -> NgsiResult<SharedBatch> {
    let alone = |local| SharedBatch {
        local,
        result: BatchResult::default(),
        forwarded: false,
    };
    let Some(forward) = request.forward_write(broker, &HashMap::new())? else {
        return Ok(alone(value));
    };
    let Value::Array(items) = value else {
        return Ok(alone(value));
    };
    let creating = matches!(operation, "createBatch" | "upsertBatch");
    let expand = |key: &str| request.context.expand(key);
    let mut local = Vec::new();
    let mut sent_whole = Vec::new();
    // Per registration: the source, its parts, and the ids they belong to.
    let mut parts: Vec<(crate::distributed::WriteTarget, Vec<Value>, Vec<String>)> = Vec::new();
    let mut add = |target: &crate::distributed::WriteTarget, part: Value, id: &str| match parts
        .iter_mut()
        .find(|(t, _, _)| t.source.id() == target.source.id())
    {
        Some((_, items, ids)) => {
            items.push(part);
            ids.push(id.to_owned());
        }
        None => parts.push((target.clone(), vec![part], vec![id.to_owned()])),
    };
    for item in items {
        let id = match &item {
            Value::String(id) => id.clone(),
            Value::Object(_) => item_id(&item),
            _ => {
                local.push(item);
                continue;
            }
        };
        let types: Vec<String> = if creating {
            match &item["type"] {
                Value::String(t) => vec![expand(t)],
                Value::Array(many) => many.iter().filter_map(Value::as_str).map(expand).collect(),
                _ => Vec::new(),
            }
        } else {
            known_types(broker, request, &id, &TypeSelector(None)).await?
        };
        let targets =
            broker
                .sources
                .for_write(&request.tenant, &request.viewer, operation, (&id, &types));
        if targets.is_empty() {
            local.push(item);
            continue;
        }
        let Value::Object(object) = &item else {
            // A delete: every source gets the id; the broker deletes too unless one holds it all.
            for target in &targets {
                add(target, item.clone(), &id);
            }
            if targets.iter().any(|t| t.takes_all()) {
                sent_whole.push(id);
            } else {
                local.push(item);
            }
            continue;
        };
        let (shares, rest) = split_entity(object, &targets, creating, &request.context);
        for (index, part, _) in shares {
            add(&targets[index], part, &id);
        }
        match rest {
            Some(rest) => local.push(Value::Object(rest)),
            None => sent_whole.push(id),
        }
    }
    let mut result = BatchResult::default();
    let forwarded = !parts.is_empty() || !sent_whole.is_empty();
    let path = format!("/entityOperations/{batch}");
    for (target, items, ids) in parts {
        let body = Value::Array(items);
        if let Err(reason) = broker
            .sources
            .write(
                &target,
                (reqwest::Method::POST, &path),
                Some(&body),
                &forward,
            )
            .await
        {
            tracing::warn!(%reason, "batch not forwarded");
            for id in ids {
                sent_whole.retain(|s| *s != id);
                result.fail(id, Problem::unavailable(reason.clone()));
            }
        }
    }
    result.success.extend(sent_whole);
    Ok(SharedBatch {
        local: Value::Array(local),
        result,
        forwarded,
    })
}

/// The body of a batch: an array of entities (or ids for delete), each with the request's
/// context unless it carries its own `@context` (ld+json).
fn batch_items(value: Value) -> NgsiResult<Vec<Value>> {
    match value {
        Value::Array(items) if items.iter().any(Value::is_null) => Err(errors::bad_request(
            "a batch cannot have null items (clause 5.6.7.4)",
        )),
        Value::Array(items) if !items.is_empty() => Ok(items),
        Value::Array(_) => Err(errors::bad_request("the batch is empty")),
        _ => Err(errors::bad_request("a batch is a JSON array")),
    }
}

async fn item_context(
    broker: &ContextBroker,
    request: &Request,
    item: &Value,
) -> NgsiResult<Context> {
    match item.get("@context") {
        Some(context) => broker.contexts.resolve(context).await,
        None => Ok(request.context.clone()),
    }
}

fn item_id(item: &Value) -> String {
    item.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn created_ids(ids: &[String]) -> Response {
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        Value::from(ids.to_vec()).to_string(),
    )
        .into_response()
}

/// Each batch item's id and outcome, in the order given (parse failures filled in), and the
/// parsed entities with their item's position.
type BatchOutcomes = Vec<(String, Result<(), Problem>)>;

async fn parse_batch(
    broker: &ContextBroker,
    request: &Request,
    value: Value,
    stamp: &str,
) -> NgsiResult<(BatchOutcomes, Vec<(usize, model::Entity)>)> {
    let mut outcomes = Vec::new();
    let mut entities = Vec::new();
    for item in batch_items(value)? {
        let id = item_id(&item);
        let parsed = async {
            let context = item_context(broker, request, &item).await?;
            model::parse_entity(item, &context, stamp)
        }
        .await;
        match parsed {
            Ok(entity) => {
                entities.push((outcomes.len(), entity));
                outcomes.push((id, Ok(())));
            }
            Err(problem) => outcomes.push((id, Err(problem))),
        }
    }
    Ok((outcomes, entities))
}

/// Create many entities: 201 with their ids, or 207 naming each that failed and why.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/create", tag = "ngsi-ld",
    request_body(content = [Object]), responses((status = 201), (status = 207), (status = 400)))]
async fn batch_create(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    let owner = request.writer(&broker)?;
    let audit = || {
        Extension(AuditNote::new(
            "ngsi.batch.create",
            format!("entities:{}", request.tenant),
        ))
    };
    let shared = match share_batch(&broker, &request, ("createBatch", "create"), value)
        .await?
        .answer_if_all_sent(created_ids)
    {
        Ok(answer) => return Ok((audit(), answer).into_response()),
        Err(shared) => shared,
    };
    let stamp = now();
    let mut result = shared.result;
    // Every item parsed first; the valid ones are then stored in one transaction.
    let (mut outcomes, entities) = parse_batch(&broker, &request, shared.local, &stamp).await?;
    let stored = broker
        .create_many(
            &request.tenant,
            &entities.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
            &owner,
        )
        .await?;
    for ((slot, _), outcome) in entities.iter().zip(stored) {
        outcomes[*slot].1 = outcome;
    }
    result.record(outcomes);
    let ok = created_ids(&result.success);
    Ok((audit(), result.respond(ok)).into_response())
}

/// Create or change many entities (`options=update` merges attributes into existing ones,
/// the default replaces them): 201 with the created ids, 204 when all existed, 207 on errors.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/upsert", tag = "ngsi-ld",
    request_body(content = [Object]), responses((status = 201), (status = 204), (status = 207)))]
async fn batch_upsert(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    let owner = request.writer(&broker)?;
    let merge = has_option(&query_map(raw)?, "update");
    let audit = || {
        Extension(AuditNote::new(
            "ngsi.batch.upsert",
            format!("entities:{}", request.tenant),
        ))
    };
    let shared = match share_batch(&broker, &request, ("upsertBatch", "upsert"), value)
        .await?
        .answer_if_all_sent(|_| StatusCode::NO_CONTENT.into_response())
    {
        Ok(answer) => return Ok((audit(), answer).into_response()),
        Err(shared) => shared,
    };
    let stamp = now();
    let mut result = shared.result;
    let mut created = Vec::new();
    for item in batch_items(shared.local)? {
        let id = item_id(&item);
        let outcome = async {
            let context = item_context(&broker, &request, &item).await?;
            let entity = model::parse_entity(item, &context, &stamp)?;
            match broker.create(&request.tenant, &entity, &owner).await {
                Ok(()) => Ok(true),
                Err(problem) if problem.type_uri.ends_with("AlreadyExists") => {
                    broker
                        .modify(
                            &request.tenant,
                            &entity.id,
                            &request.viewer,
                            None,
                            |stored| {
                                request.may_change(&broker, stored)?;
                                if merge {
                                    stored.entity.add_types(&entity.types);
                                    for (name, attribute) in entity.attrs.clone() {
                                        stored.entity.put_attribute(name, attribute);
                                    }
                                } else {
                                    stored.entity.types = entity.types.clone();
                                    stored.entity.attrs = entity.attrs.clone();
                                }
                                stored.entity.modified_at = stamp.clone();
                                Ok(())
                            },
                        )
                        .await?;
                    Ok(false)
                }
                Err(problem) => Err(problem),
            }
        }
        .await;
        match outcome {
            Ok(new) => {
                if new {
                    created.push(id.clone());
                }
                result.success.push(id);
            }
            Err(problem) => result.fail(id, problem),
        }
    }
    let ok = if created.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        created_ids(&created)
    };
    Ok((audit(), result.respond(ok)).into_response())
}

/// Append attributes to many existing entities (`options=noOverwrite` keeps existing ones):
/// 204, or 207 naming the entities that were missing or refused.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/update", tag = "ngsi-ld",
    request_body(content = [Object]), responses((status = 204), (status = 207)))]
async fn batch_update(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    let no_overwrite = has_option(&query_map(raw)?, "noOverwrite");
    let audit = || {
        Extension(AuditNote::new(
            "ngsi.batch.update",
            format!("entities:{}", request.tenant),
        ))
    };
    let shared = match share_batch(&broker, &request, ("updateBatch", "update"), value)
        .await?
        .answer_if_all_sent(|_| StatusCode::NO_CONTENT.into_response())
    {
        Ok(answer) => return Ok((audit(), answer).into_response()),
        Err(shared) => shared,
    };
    let stamp = now();
    let mut result = shared.result;
    // Every item parsed first; the valid ones are then changed in one transaction.
    let (mut outcomes, entities) = parse_batch(&broker, &request, shared.local, &stamp).await?;
    let ids: Vec<String> = entities.iter().map(|(_, e)| e.id.clone()).collect();
    let changed = broker
        .modify_many(&request.tenant, &ids, &request.viewer, |index, stored| {
            request.may_change(&broker, stored)?;
            for (name, attribute) in entities[index].1.attrs.clone() {
                if no_overwrite && stored.entity.attrs.contains_key(&name) {
                    continue;
                }
                stored.entity.put_attribute(name, attribute);
            }
            stored.entity.modified_at = stamp.clone();
            Ok(())
        })
        .await?;
    for ((slot, _), outcome) in entities.iter().zip(changed) {
        outcomes[*slot].1 = outcome;
    }
    result.record(outcomes);
    Ok((
        audit(),
        result.respond(StatusCode::NO_CONTENT.into_response()),
    )
        .into_response())
}

/// Merge fragments into many existing entities (clause 5.6.20: each as Merge Entity does,
/// in one transaction): 204, or 207 naming those invalid, missing or refused.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/merge", tag = "ngsi-ld",
    request_body(content = [Object]), responses((status = 204), (status = 207), (status = 400)))]
async fn batch_merge(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    let audit = || {
        Extension(AuditNote::new(
            "ngsi.batch.merge",
            format!("entities:{}", request.tenant),
        ))
    };
    let shared = match share_batch(&broker, &request, ("mergeBatch", "merge"), value)
        .await?
        .answer_if_all_sent(|_| StatusCode::NO_CONTENT.into_response())
    {
        Ok(answer) => return Ok((audit(), answer).into_response()),
        Err(shared) => shared,
    };
    let stamp = now();
    let mut outcomes: BatchOutcomes = Vec::new();
    let mut merges = Vec::new();
    for item in batch_items(shared.local)? {
        let id = item_id(&item);
        let parsed = async {
            let context = item_context(&broker, &request, &item).await?;
            let Value::Object(object) = item else {
                return Err(errors::bad_request(
                    "a batch merge lists entities (JSON objects)",
                ));
            };
            model::check_entity_id(&id)?;
            Merge::parse(object, &context, &stamp)
        }
        .await;
        match parsed {
            Ok(merge) => {
                merges.push((outcomes.len(), id.clone(), merge));
                outcomes.push((id, Ok(())));
            }
            Err(problem) => outcomes.push((id, Err(problem))),
        }
    }
    let ids: Vec<String> = merges.iter().map(|(_, id, _)| id.clone()).collect();
    let merged = broker
        .modify_many(&request.tenant, &ids, &request.viewer, |index, stored| {
            request.may_change(&broker, stored)?;
            merges[index].2.apply(stored, &stamp);
            Ok(())
        })
        .await?;
    for ((slot, _, _), outcome) in merges.iter().zip(merged) {
        outcomes[*slot].1 = outcome;
    }
    let mut result = shared.result;
    result.record(outcomes);
    Ok((
        audit(),
        result.respond(StatusCode::NO_CONTENT.into_response()),
    )
        .into_response())
}

/// Delete many entities by id: 204, or 207 naming those missing or refused.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/delete", tag = "ngsi-ld",
    request_body(content = [String]), responses((status = 204), (status = 207)))]
async fn batch_delete(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    let audit = || {
        Extension(AuditNote::new(
            "ngsi.batch.delete",
            format!("entities:{}", request.tenant),
        ))
    };
    let shared = match share_batch(&broker, &request, ("deleteBatch", "delete"), value)
        .await?
        .answer_if_all_sent(|_| StatusCode::NO_CONTENT.into_response())
    {
        Ok(answer) => return Ok((audit(), answer).into_response()),
        Err(shared) => shared,
    };
    let mut result = shared.result;
    for item in batch_items(shared.local)? {
        let Some(id) = item.as_str().map(str::to_owned) else {
            result.fail(
                item.to_string(),
                errors::bad_request("a batch delete lists entity ids"),
            );
            continue;
        };
        let outcome = async {
            model::check_entity_id(&id)?;
            broker
                .delete(&request.tenant, &id, &request.viewer, |stored| {
                    request.may_change(&broker, stored)
                })
                .await
        }
        .await;
        match outcome {
            Ok(()) => result.success.push(id),
            Err(problem) => result.fail(id, problem),
        }
    }
    Ok((
        audit(),
        result.respond(StatusCode::NO_CONTENT.into_response()),
    )
        .into_response())
}

/// What a temporal request asks for, parsed.
struct TemporalRequest {
    range: crate::temporal::TimeRange,
    /// `timeproperty`: which time `timerel` and `lastN` go by.
    property: crate::temporal::TimeProperty,
    last_n: Option<i64>,
    /// `temporalValues`: `[[value, time], …]` per attribute.
    simplified: bool,
    /// `aggregatedValues`: the methods and the period.
    aggregation: Option<(Vec<String>, i64)>,
    options: RenderOptions,
}

fn temporal_request(
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

async fn temporal_body(
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
fn simplified_pairs(kind: &str) -> &'static str {
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
async fn temporal_entity(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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
async fn temporal_query(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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
async fn temporal_query_post(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> NgsiResult<Response> {
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
fn aggregation_params(
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
async fn temporal_selection(
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
async fn windowed_matches(
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

/// The URL of hosted context `id`, as this request reached the broker.
fn hosted_url(headers: &HeaderMap, id: &str) -> String {
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
async fn add_context(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> NgsiResult<Response> {
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
    sqlx::query(
        "INSERT INTO ngsi_contexts (id, document, owner_department, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.clone())
    .bind(serde_json::json!({"@context": context}).to_string())
    .bind(owner)
    .bind(now())
    .execute(broker.db.pool())
    .await
    .db()?;
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
async fn list_contexts(
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
        let hosted: Vec<(String, String)> =
            sqlx::query_as("SELECT id, created_at FROM ngsi_contexts ORDER BY created_at, id")
                .fetch_all(broker.db.pool())
                .await
                .db()?;
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
async fn serve_context(
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
async fn delete_context(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    let owner: Option<String> =
        sqlx::query_scalar("SELECT owner_department FROM ngsi_contexts WHERE id = $1")
            .bind(id.clone())
            .fetch_optional(broker.db.pool())
            .await
            .db()?;
    match owner {
        Some(owner) => {
            request.may_change_owned(&broker, &owner, &format!("@context {id}"))?;
            sqlx::query("DELETE FROM ngsi_contexts WHERE id = $1")
                .bind(id.clone())
                .execute(broker.db.pool())
                .await
                .db()?;
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

/// When an attribute instance was observed, for ordering instances (unknown: earliest).
fn instance_time(instance: &Value) -> i64 {
    crate::temporal::observed_ms(instance).unwrap_or(i64::MIN)
}

/// Per attribute, its newest instance of each dataset (one instance, or an array of them).
fn newest_instances(attrs: &Map<String, Value>) -> Map<String, Value> {
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
fn without_deleted(attribute: Value) -> Option<Value> {
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
fn with_newer(current: Option<&Value>, candidate: &Value) -> Option<Value> {
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
async fn add_instances(
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
async fn create_temporal(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> NgsiResult<Response> {
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
async fn add_temporal_attributes(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.writer(&broker)?;
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
async fn delete_temporal(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
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
async fn delete_temporal_attribute(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
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
fn instance_key(instance: &str) -> NgsiResult<(i64, String)> {
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
async fn modify_temporal_instance(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path((id, attr, instance)): Path<(String, String, String)>,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.writer(&broker)?;
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
async fn delete_temporal_instance(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path((id, attr, instance)): Path<(String, String, String)>,
) -> NgsiResult<Response> {
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

/// The two collections of subscriptions: to entities (clause 5.8) and to context source
/// registrations (clause 5.11). They share a shape and handlers; each sees only its own.
fn collection(about: About) -> (&'static str, &'static str) {
    match about {
        About::Entities => ("/ngsi-ld/v1/subscriptions", "ngsi.subscription"),
        About::Registrations => (
            "/ngsi-ld/v1/csourceSubscriptions",
            "ngsi.csource_subscription",
        ),
    }
}

/// A subscription the caller may see: their department's (all, for platform admins).
async fn own_subscription(
    broker: &ContextBroker,
    request: &Request,
    id: &str,
    about: About,
) -> NgsiResult<crate::subscriptions::SubscriptionRow> {
    let row = broker
        .subscription(&request.tenant, id, about)
        .await?
        .ok_or_else(|| errors::not_found(format!("there is no subscription {id}")))?;
    if let Viewer::Department(department) = &request.viewer
        && crate::subscriptions::owner_of(&row) != department
    {
        return Err(errors::not_found(format!("there is no subscription {id}")));
    }
    Ok(row)
}

/// Subscribe to changes: `entities`, `watchedAttributes`, `q`, `geoQ`, `notification`
/// (HTTP endpoint, attributes, format), `expiresAt`, `throttling`, `isActive`.
#[utoipa::path(post, path = "/ngsi-ld/v1/subscriptions", tag = "ngsi-ld",
    request_body(content = Object), responses((status = 201), (status = 400), (status = 409)))]
async fn create_subscription(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> NgsiResult<Response> {
    subscribe(About::Entities, broker, principal, headers, raw, body).await
}

/// Subscribe to context source registrations (clause 5.11.2): the same members, matched
/// against registrations (`temporalQ` against their observation or management interval);
/// registrations matching now are notified at once.
#[utoipa::path(post, path = "/ngsi-ld/v1/csourceSubscriptions", tag = "ngsi-ld",
    request_body(content = Object), responses((status = 201), (status = 400), (status = 409)))]
async fn create_csource_subscription(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> NgsiResult<Response> {
    subscribe(About::Registrations, broker, principal, headers, raw, body).await
}

async fn subscribe(
    about: About,
    broker: ContextBroker,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    raw: Option<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    params_of(raw, &[CREATE_PARAMS])?;
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    let owner = request.writer(&broker)?;
    let mut subscription = crate::subscriptions::Subscription::parse(
        &request.tenant,
        &owner,
        about,
        &value,
        &request.context,
    )?;
    subscription.sees_all = request.viewer == Viewer::All;
    subscription.check_not_expired()?;
    broker.create_subscription(&subscription).await?;
    let (path, action) = collection(about);
    let id = subscription.id.clone();
    notify_matching_now(&broker, &request.tenant, subscription).await?;
    let mut response = (
        StatusCode::CREATED,
        Extension(AuditNote::new(
            format!("{action}.create"),
            format!("subscription:{}/{id}", request.tenant),
        )),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("{path}/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A subscription to registrations, made or changed, hears at once of the registrations it
/// matches (clause 5.11.7).
async fn notify_matching_now(
    broker: &ContextBroker,
    tenant: &str,
    subscription: crate::subscriptions::Subscription,
) -> NgsiResult<()> {
    if subscription.about == About::Registrations {
        let registrations: Vec<(String, Value)> = crate::registrations::list(&broker.db, tenant)
            .await?
            .iter()
            .map(|row| (row.0.clone(), crate::registrations::definition(row)))
            .collect();
        broker.notifier.matching_now(subscription, &registrations);
    }
    Ok(())
}

#[utoipa::path(get, path = "/ngsi-ld/v1/subscriptions", tag = "ngsi-ld", responses((status = 200)))]
async fn list_subscriptions(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
    subscriptions_page(About::Entities, broker, principal, headers, raw).await
}

#[utoipa::path(get, path = "/ngsi-ld/v1/csourceSubscriptions", tag = "ngsi-ld", responses((status = 200)))]
async fn list_csource_subscriptions(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> NgsiResult<Response> {
    subscriptions_page(About::Registrations, broker, principal, headers, raw).await
}

async fn subscriptions_page(
    about: About,
    broker: ContextBroker,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    raw: Option<String>,
) -> NgsiResult<Response> {
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    let params = params_of(raw, &[&["limit", "offset", "count", "local"]])?;
    let owner = match &request.viewer {
        Viewer::Department(department) => Some(department.as_str()),
        _ => None,
    };
    let rows = broker.subscriptions(&request.tenant, owner, about).await?;
    list_page(&request, collection(about).0, &params, &rows, |row| {
        crate::subscriptions::render(row, &request.context)
    })
}

/// One page of a listing (subscriptions, registrations): the items from `offset`, at most
/// `limit`, each rendered; the count when asked; links to the neighbouring pages.
fn list_page<T>(
    request: &Request,
    path: &'static str,
    params: &HashMap<String, String>,
    items: &[T],
    render: impl Fn(&T) -> Value,
) -> NgsiResult<Response> {
    let (offset, limit) = paging(params)?;
    let total = items.len();
    let body = Value::Array(items.iter().skip(offset).take(limit).map(render).collect());
    let mut headers = HeaderMap::new();
    if flag(params, "count")?
        && let Ok(value) = HeaderValue::from_str(&total.to_string())
    {
        headers.insert("ngsild-results-count", value);
    }
    let page = Page {
        path,
        offset,
        limit,
        more: offset + limit < total,
    };
    page.link(params, request.media, ";", &mut headers);
    Ok(request.respond(StatusCode::OK, body, &mut headers))
}

/// A subscription with its delivery counters (`timesSent`, `timesFailed`, `lastSuccess`,
/// `lastFailure`, `status`).
#[utoipa::path(get, path = "/ngsi-ld/v1/subscriptions/{subscriptionId}", tag = "ngsi-ld",
    params(("subscriptionId" = String, Path)), responses((status = 200), (status = 404)))]
async fn get_subscription(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
    show_subscription(About::Entities, broker, principal, headers, id).await
}

#[utoipa::path(get, path = "/ngsi-ld/v1/csourceSubscriptions/{subscriptionId}", tag = "ngsi-ld",
    params(("subscriptionId" = String, Path)), responses((status = 200), (status = 404)))]
async fn get_csource_subscription(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
    show_subscription(About::Registrations, broker, principal, headers, id).await
}

async fn show_subscription(
    about: About,
    broker: ContextBroker,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    id: String,
) -> NgsiResult<Response> {
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    let row = own_subscription(&broker, &request, &id, about).await?;
    let body = crate::subscriptions::render(&row, &request.context);
    Ok(request.respond(StatusCode::OK, body, &mut HeaderMap::new()))
}

/// Change a subscription: the given members replace the stored ones (204).
#[utoipa::path(patch, path = "/ngsi-ld/v1/subscriptions/{subscriptionId}", tag = "ngsi-ld",
    params(("subscriptionId" = String, Path)), request_body(content = Object),
    responses((status = 204), (status = 400), (status = 404)))]
async fn update_subscription(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    change_subscription(About::Entities, broker, principal, headers, id, body).await
}

/// Change a subscription to registrations (clause 5.11.3): 204; the registrations it matches
/// afterwards are notified at once.
#[utoipa::path(patch, path = "/ngsi-ld/v1/csourceSubscriptions/{subscriptionId}", tag = "ngsi-ld",
    params(("subscriptionId" = String, Path)), request_body(content = Object),
    responses((status = 204), (status = 400), (status = 404)))]
async fn update_csource_subscription(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    change_subscription(About::Registrations, broker, principal, headers, id, body).await
}

async fn change_subscription(
    about: About,
    broker: ContextBroker,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    id: String,
    body: Bytes,
) -> NgsiResult<Response> {
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.writer(&broker)?;
    let row = own_subscription(&broker, &request, &id, about).await?;
    let Value::Object(changes) = value else {
        return Err(errors::bad_request("the update must be a JSON object"));
    };
    let new_expiry = changes.contains_key("expiresAt");
    // Compact the stored definition so it reads like the client's, then apply the changes.
    let mut merged = crate::subscriptions::render(&row, &request.context);
    if let Value::Object(object) = &mut merged {
        object.remove("status");
        if let Some(n) = object
            .get_mut("notification")
            .and_then(Value::as_object_mut)
        {
            for key in [
                "timesSent",
                "timesFailed",
                "status",
                "lastNotification",
                "lastSuccess",
                "lastFailure",
            ] {
                n.remove(key);
            }
        }
        for (key, value) in changes {
            if key == "@context" {
                continue;
            }
            if key == "id" && value != Value::String(id.clone()) {
                return Err(errors::bad_request("a subscription's id cannot change"));
            }
            object.insert(key, value);
        }
    }
    let owner = crate::subscriptions::owner_of(&row).to_owned();
    let mut subscription = crate::subscriptions::Subscription::parse(
        &request.tenant,
        &owner,
        about,
        &merged,
        &request.context,
    )?;
    subscription.sees_all = crate::subscriptions::sees_all(&row);
    if new_expiry {
        subscription.check_not_expired()?;
    }
    broker.replace_subscription(&subscription).await?;
    notify_matching_now(&broker, &request.tenant, subscription).await?;
    Ok((
        StatusCode::NO_CONTENT,
        Extension(AuditNote::new(
            format!("{}.update", collection(about).1),
            format!("subscription:{}/{id}", request.tenant),
        )),
    )
        .into_response())
}

#[utoipa::path(delete, path = "/ngsi-ld/v1/subscriptions/{subscriptionId}", tag = "ngsi-ld",
    params(("subscriptionId" = String, Path)), responses((status = 204), (status = 404)))]
async fn delete_subscription(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
    unsubscribe(About::Entities, broker, principal, headers, id).await
}

#[utoipa::path(delete, path = "/ngsi-ld/v1/csourceSubscriptions/{subscriptionId}", tag = "ngsi-ld",
    params(("subscriptionId" = String, Path)), responses((status = 204), (status = 404)))]
async fn delete_csource_subscription(
    State(broker): State<ContextBroker>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
    unsubscribe(About::Registrations, broker, principal, headers, id).await
}

async fn unsubscribe(
    about: About,
    broker: ContextBroker,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    id: String,
) -> NgsiResult<Response> {
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.writer(&broker)?;
    own_subscription(&broker, &request, &id, about).await?;
    broker.delete_subscription(&request.tenant, &id).await?;
    Ok((
        StatusCode::NO_CONTENT,
        Extension(AuditNote::new(
            format!("{}.delete", collection(about).1),
            format!("subscription:{}/{id}", request.tenant),
        )),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_answers_link_the_core_context() {
        assert_eq!(
            crate::jsonld::CORE_LINK,
            format!(
                "<{}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"",
                crate::jsonld::CORE_CONTEXT_URL
            )
        );
    }
}
