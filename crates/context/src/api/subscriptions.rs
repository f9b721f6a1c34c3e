//! Subscriptions and context source subscriptions: create, list, get, update, delete (clauses 5.8, 5.11).

use super::NgsiResult;
use super::request::*;
use crate::subscriptions::About;
use crate::{ContextBroker, Viewer, errors};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use yunnao_identity::AuditNote;

/// The two collections of subscriptions: to entities (clause 5.8) and to context source
/// registrations (clause 5.11). They share a shape and handlers; each sees only its own.
pub(super) fn collection(about: About) -> (&'static str, &'static str) {
    match about {
        About::Entities => ("/ngsi-ld/v1/subscriptions", "ngsi.subscription"),
        About::Registrations => (
            "/ngsi-ld/v1/csourceSubscriptions",
            "ngsi.csource_subscription",
        ),
    }
}

/// A subscription the caller may see: their department's (all, for platform admins).
pub(super) async fn own_subscription(
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
pub(super) async fn create_subscription(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    subscribe(About::Entities, ngsi, body).await
}

/// Subscribe to context source registrations (clause 5.11.2): the same members, matched
/// against registrations (`temporalQ` against their observation or management interval);
/// registrations matching now are notified at once.
#[utoipa::path(post, path = "/ngsi-ld/v1/csourceSubscriptions", tag = "ngsi-ld",
    request_body(content = Object), responses((status = 201), (status = 400), (status = 409)))]
pub(super) async fn create_csource_subscription(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    subscribe(About::Registrations, ngsi, body).await
}

pub(super) async fn subscribe(about: About, ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
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
pub(super) async fn notify_matching_now(
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
pub(super) async fn list_subscriptions(ngsi: Ngsi) -> NgsiResult<Response> {
    subscriptions_page(About::Entities, ngsi).await
}

#[utoipa::path(get, path = "/ngsi-ld/v1/csourceSubscriptions", tag = "ngsi-ld", responses((status = 200)))]
pub(super) async fn list_csource_subscriptions(ngsi: Ngsi) -> NgsiResult<Response> {
    subscriptions_page(About::Registrations, ngsi).await
}

pub(super) async fn subscriptions_page(about: About, ngsi: Ngsi) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
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
pub(super) fn list_page<T>(
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
pub(super) async fn get_subscription(ngsi: Ngsi, Path(id): Path<String>) -> NgsiResult<Response> {
    show_subscription(About::Entities, ngsi, id).await
}

#[utoipa::path(get, path = "/ngsi-ld/v1/csourceSubscriptions/{subscriptionId}", tag = "ngsi-ld",
    params(("subscriptionId" = String, Path)), responses((status = 200), (status = 404)))]
pub(super) async fn get_csource_subscription(
    ngsi: Ngsi,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
    show_subscription(About::Registrations, ngsi, id).await
}

pub(super) async fn show_subscription(
    about: About,
    ngsi: Ngsi,
    id: String,
) -> NgsiResult<Response> {
    let (broker, principal, headers, _) = ngsi.parts();
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
pub(super) async fn update_subscription(
    ngsi: Ngsi,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    change_subscription(About::Entities, ngsi, id, body).await
}

/// Change a subscription to registrations (clause 5.11.3): 204; the registrations it matches
/// afterwards are notified at once.
#[utoipa::path(patch, path = "/ngsi-ld/v1/csourceSubscriptions/{subscriptionId}", tag = "ngsi-ld",
    params(("subscriptionId" = String, Path)), request_body(content = Object),
    responses((status = 204), (status = 400), (status = 404)))]
pub(super) async fn update_csource_subscription(
    ngsi: Ngsi,
    Path(id): Path<String>,
    body: Bytes,
) -> NgsiResult<Response> {
    change_subscription(About::Registrations, ngsi, id, body).await
}

pub(super) async fn change_subscription(
    about: About,
    ngsi: Ngsi,
    id: String,
    body: Bytes,
) -> NgsiResult<Response> {
    let (broker, _, _, request, value, _) = ngsi.write_request(&body).await?;
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
pub(super) async fn delete_subscription(
    ngsi: Ngsi,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
    unsubscribe(About::Entities, ngsi, id).await
}

#[utoipa::path(delete, path = "/ngsi-ld/v1/csourceSubscriptions/{subscriptionId}", tag = "ngsi-ld",
    params(("subscriptionId" = String, Path)), responses((status = 204), (status = 404)))]
pub(super) async fn delete_csource_subscription(
    ngsi: Ngsi,
    Path(id): Path<String>,
) -> NgsiResult<Response> {
    unsubscribe(About::Registrations, ngsi, id).await
}

pub(super) async fn unsubscribe(about: About, ngsi: Ngsi, id: String) -> NgsiResult<Response> {
    let (broker, principal, headers, _) = ngsi.parts();
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
