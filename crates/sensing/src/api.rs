//! HTTP API of the sensing hub.

use crate::alarms::{AlarmFilter, AlarmStatus, AlarmView, NewRule, Rule, Severity};
use crate::grants::{Grant, NewGrant};
use crate::series::{Bucket, LatestValue, RawPage};
use crate::{CreatedDevice, DevicePatch, DeviceView, NewDevice, NewProfile, Profile, Sensing};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_core::Problem;
use yunnao_http::{ApiJson, ApiPath, ApiQuery, ApiResult, RequestId};
use yunnao_identity::{Action, AuditEntry, AuditNote, Principal, Reach, Resource};

/// Largest gateway bulk request.
pub const BULK_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// Largest device import (10,000 devices as JSON take about 3 MiB, as XLSX less).
pub const IMPORT_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// A JSON array of at most `max` elements, refused as soon as it holds more.
fn bounded_array(body: &[u8], max: usize) -> Result<Vec<serde_json::Value>, Problem> {
    struct Elements(usize);
    impl<'de> serde::de::Visitor<'de> for Elements {
        type Value = Vec<serde_json::Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                if out.len() >= self.0 {
                    return Err(serde::de::Error::custom(format!(
                        "more than {} elements; split the import",
                        self.0
                    )));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde::Deserializer::deserialize_seq(&mut deserializer, Elements(max))
        .and_then(|items| deserializer.end().map(|()| items))
        .map_err(|e| Problem::invalid_json(format!("expected a JSON array of devices: {e}")))
}

pub fn router() -> OpenApiRouter<Sensing> {
    let bulk = OpenApiRouter::new()
        .routes(routes!(bulk_telemetry))
        .layer(axum::extract::DefaultBodyLimit::max(BULK_BODY_LIMIT));
    let import = OpenApiRouter::new()
        .routes(routes!(import_devices))
        .layer(axum::extract::DefaultBodyLimit::max(IMPORT_BODY_LIMIT));
    OpenApiRouter::new()
        .routes(routes!(list_profiles, create_profile))
        .routes(routes!(get_profile, replace_profile, delete_profile))
        .routes(routes!(list_devices, create_device))
        .routes(routes!(get_device, update_device, delete_device))
        .routes(routes!(rotate_token))
        .routes(routes!(device_telemetry))
        .routes(routes!(latest_telemetry))
        .routes(routes!(raw_telemetry))
        .routes(routes!(aggregate_telemetry))
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(delete_rule))
        .routes(routes!(list_alarms))
        .routes(routes!(acknowledge_alarm))
        .routes(routes!(clear_alarm))
        .routes(routes!(list_grants, create_grant))
        .routes(routes!(revoke_grant))
        .routes(routes!(run_retention))
        .routes(routes!(export_telemetry))
        .routes(routes!(group_latest))
        .routes(routes!(group_aggregate))
        .merge(bulk)
        .merge(import)
}

fn noted<T: IntoResponse>(note: AuditNote, body: T) -> impl IntoResponse {
    (Extension(note), body)
}

/// Writing `resource` of a department, as [`yunnao_identity::access`] says.
fn require_write(
    principal: &Principal,
    resource: Resource,
    department: &str,
) -> Result<(), Problem> {
    principal.require(resource, Action::Write, department)
}

fn no_device(id: &str) -> Problem {
    Problem::not_found(format!("there is no device {id:?}"))
}

/// A device the caller may change `resource` of; one they cannot even read is not found (its
/// existence is the department's data).
async fn writable_device(
    sensing: &Sensing,
    principal: &Principal,
    id: &str,
    resource: Resource,
) -> Result<DeviceView, Problem> {
    let device = sensing.get_device(id).await?.ok_or_else(|| no_device(id))?;
    if principal.may(resource, Action::Write, &device.department) {
        return Ok(device);
    }
    if principal.may(Resource::Devices, Action::Read, &device.department) {
        return Err(principal
            .require(resource, Action::Write, &device.department)
            .err()
            .unwrap_or_else(|| no_device(id)));
    }
    Err(no_device(id))
}

/// A device whose `resource` (its record, or its telemetry) the caller may read: by the access
/// table, or for another department's staff through an active grant, in which case the read is
/// written to the audit chain. Anyone else is told there is no such device.
async fn readable_device(
    sensing: &Sensing,
    principal: &Principal,
    id: &str,
    request_id: &RequestId,
    what: &str,
    resource: Resource,
) -> Result<DeviceView, Problem> {
    let device = sensing.get_device(id).await?.ok_or_else(|| no_device(id))?;
    if principal.may(resource, Action::Read, &device.department) {
        return Ok(device);
    }
    // Grants share devices with a department's staff: callers who reach this resource of
    // their own department.
    if principal.reach(resource, Action::Read) == Reach::None {
        return Err(no_device(id));
    }
    let grant = sensing
        .shared_read_allowed(&principal.department, &device)
        .await?
        .ok_or_else(|| no_device(id))?;
    sensing
        .identity
        .audit(AuditEntry {
            actor: principal.name.clone(),
            department: principal.department.clone(),
            action: format!("device.shared_read.{what}"),
            target: format!("device:{id} grant:{grant} owner:{}", device.department),
            request_id: request_id.0.clone(),
            outcome: "success".into(),
        })
        .await?;
    Ok(device)
}

/// A device whose telemetry the caller may read ([`readable_device`]).
async fn readable_telemetry(
    sensing: &Sensing,
    principal: &Principal,
    id: &str,
    request_id: &RequestId,
    what: &str,
) -> Result<DeviceView, Problem> {
    readable_device(
        sensing,
        principal,
        id,
        request_id,
        what,
        Resource::Telemetry,
    )
    .await
}

/// The department a listing reads: any asked for (or all) where the caller reaches all, their
/// own where they reach their own, and nothing where they reach none.
fn listing_department(
    principal: &Principal,
    resource: Resource,
    asked: Option<String>,
) -> Result<Option<String>, Problem> {
    match principal.reach(resource, Action::Read) {
        Reach::All => Ok(asked),
        Reach::Own => match asked {
            Some(asked) if asked != principal.department => Err(Problem::forbidden(format!(
                "{} reads only department {}'s {}; another department's devices need a grant",
                principal.name,
                principal.department,
                resource.scope_name()
            ))),
            _ => Ok(Some(principal.department.clone())),
        },
        Reach::None => Err(principal
            .require(resource, Action::Read, &principal.department)
            .err()
            .unwrap_or_else(|| Problem::forbidden("not allowed"))),
    }
}

/// Every device profile (built-in and departments' own) with keys, units and ranges.
#[utoipa::path(get, path = "/api/v1/device-profiles", tag = "sensing",
    responses((status = 200, body = [Profile])))]
async fn list_profiles(
    State(sensing): State<Sensing>,
    _principal: Principal,
) -> axum::Json<Vec<Profile>> {
    axum::Json(sensing.profiles().iter().map(|p| (**p).clone()).collect())
}

#[utoipa::path(get, path = "/api/v1/device-profiles/{code}", tag = "sensing",
    params(("code" = String, Path)), responses((status = 200, body = Profile), (status = 404)))]
async fn get_profile(
    State(sensing): State<Sensing>,
    _principal: Principal,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<axum::Json<Profile>> {
    let profile = sensing
        .find_profile(&code)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no profile {code:?}")))?;
    Ok(axum::Json((*profile).clone()))
}

/// Profiles are configuration: department admins (or API clients with `profiles:write`) of
/// the owning department, and platform admins.
fn require_profile_admin(principal: &Principal, department: &str) -> Result<(), Problem> {
    require_write(principal, Resource::Profiles, department)
}

/// A profile owned by a department, for replacing or deleting; built-in ones are fixed.
async fn department_profile(
    sensing: &Sensing,
    principal: &Principal,
    code: &str,
) -> Result<std::sync::Arc<Profile>, Problem> {
    let profile = sensing
        .find_profile(code)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no profile {code:?}")))?;
    let Some(owner) = &profile.department else {
        return Err(Problem::conflict(format!(
            "{code} is a built-in profile and cannot be changed; define your own instead"
        )));
    };
    require_profile_admin(principal, owner)?;
    Ok(profile)
}

/// Define a device profile for the caller's department (platform admins may name another).
#[utoipa::path(post, path = "/api/v1/device-profiles", tag = "sensing", request_body = NewProfile,
    responses((status = 201, body = Profile), (status = 403), (status = 409), (status = 422)))]
async fn create_profile(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiJson(new): ApiJson<NewProfile>,
) -> ApiResult<impl IntoResponse> {
    let department = match &new.department {
        Some(department) if principal.is_platform_admin() => department.clone(),
        Some(department) if *department != principal.department => {
            return Err(Problem::forbidden(format!(
                "{} may not define profiles for department {department:?}",
                principal.name
            )));
        }
        _ => principal.department.clone(),
    };
    require_profile_admin(&principal, &department)?;
    if !sensing.identity.department_exists(&department).await? {
        return Err(Problem::validation(format!(
            "there is no department {department:?}"
        )));
    }
    let profile = sensing
        .create_profile(new.into_profile(department)?)
        .await?;
    Ok(noted(
        AuditNote::new("profile.create", format!("profile:{}", profile.code)),
        (StatusCode::CREATED, axum::Json(profile)),
    ))
}

/// Replace a department profile's definition (name, interval, retention, keys and ranges).
#[utoipa::path(put, path = "/api/v1/device-profiles/{code}", tag = "sensing",
    params(("code" = String, Path)), request_body = NewProfile,
    responses((status = 200, body = Profile), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn replace_profile(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiPath(code): ApiPath<String>,
    ApiJson(mut new): ApiJson<NewProfile>,
) -> ApiResult<impl IntoResponse> {
    let existing = department_profile(&sensing, &principal, &code).await?;
    if !new.code.is_empty() && new.code != code {
        return Err(Problem::validation(format!(
            "the body names profile {:?} but the path {code:?}; a profile's code cannot change",
            new.code
        )));
    }
    if new
        .department
        .as_ref()
        .is_some_and(|d| Some(d) != existing.department.as_ref())
    {
        return Err(Problem::validation(
            "a profile's department cannot change".to_owned(),
        ));
    }
    new.code = code.clone();
    let owner = existing.department.clone().unwrap_or_default();
    let profile = sensing.replace_profile(new.into_profile(owner)?).await?;
    Ok(noted(
        AuditNote::new("profile.replace", format!("profile:{code}")),
        axum::Json(profile),
    ))
}

/// Delete a department profile that no device, alarm rule or grant uses (409 otherwise).
#[utoipa::path(delete, path = "/api/v1/device-profiles/{code}", tag = "sensing",
    params(("code" = String, Path)),
    responses((status = 204), (status = 403), (status = 404), (status = 409)))]
async fn delete_profile(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    department_profile(&sensing, &principal, &code).await?;
    sensing.delete_profile(&code).await?;
    Ok(noted(
        AuditNote::new("profile.delete", format!("profile:{code}")),
        StatusCode::NO_CONTENT,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    pub department: Option<String>,
    pub profile: Option<String>,
    /// 1–1000, default 100.
    pub limit: Option<i64>,
    #[serde(default)]
    pub offset: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DevicePage {
    pub total: i64,
    pub devices: Vec<DeviceView>,
}

/// Devices of the caller's department (platform admins: any, or all).
#[utoipa::path(get, path = "/api/v1/devices", tag = "sensing", params(DeviceQuery),
    responses((status = 200, body = DevicePage)))]
async fn list_devices(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiQuery(query): ApiQuery<DeviceQuery>,
) -> ApiResult<axum::Json<DevicePage>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) || query.offset < 0 {
        return Err(Problem::bad_request(
            "limit must be 1–1000 and offset not negative",
        ));
    }
    let department = listing_department(&principal, Resource::Devices, query.department)?;
    let (devices, total) = sensing
        .list_devices(
            department.as_deref(),
            query.profile.as_deref(),
            limit,
            query.offset,
        )
        .await?;
    Ok(axum::Json(DevicePage { total, devices }))
}

/// Register a device; the response holds its access token, shown only now.
#[utoipa::path(post, path = "/api/v1/devices", tag = "sensing", request_body = NewDevice,
    responses((status = 201, body = CreatedDevice), (status = 403), (status = 409), (status = 422)))]
async fn create_device(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiJson(new): ApiJson<NewDevice>,
) -> ApiResult<impl IntoResponse> {
    let department = new
        .department
        .clone()
        .unwrap_or_else(|| principal.department.clone());
    require_write(&principal, Resource::Devices, &department)?;
    let created = sensing.create_device(new, department).await?;
    Ok(noted(
        AuditNote::new("device.create", format!("device:{}", created.device.id)),
        (StatusCode::CREATED, axum::Json(created)),
    ))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "sensing", params(("id" = String, Path)),
    responses((status = 200, body = DeviceView), (status = 404)))]
async fn get_device(
    State(sensing): State<Sensing>,
    principal: Principal,
    request_id: RequestId,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<DeviceView>> {
    Ok(axum::Json(
        readable_device(
            &sensing,
            &principal,
            &id,
            &request_id,
            "device",
            Resource::Devices,
        )
        .await?,
    ))
}

#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "sensing", params(("id" = String, Path)),
    request_body = DevicePatch, responses((status = 200, body = DeviceView), (status = 403), (status = 404)))]
async fn update_device(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<DevicePatch>,
) -> ApiResult<impl IntoResponse> {
    writable_device(&sensing, &principal, &id, Resource::Devices).await?;
    let updated = sensing.update_device(&id, patch).await?;
    Ok(noted(
        AuditNote::new("device.update", format!("device:{id}")),
        axum::Json(updated),
    ))
}

/// Delete a device and its readings.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "sensing", params(("id" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
async fn delete_device(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    writable_device(&sensing, &principal, &id, Resource::Devices).await?;
    sensing.delete_device(&id).await?;
    Ok(noted(
        AuditNote::new("device.delete", format!("device:{id}")),
        StatusCode::NO_CONTENT,
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewToken {
    pub access_token: String,
}

/// Issue a new access token; the old one stops working at once.
#[utoipa::path(post, path = "/api/v1/devices/{id}/token", tag = "sensing", params(("id" = String, Path)),
    responses((status = 200, body = NewToken), (status = 403), (status = 404)))]
async fn rotate_token(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    writable_device(&sensing, &principal, &id, Resource::Devices).await?;
    let access_token = sensing.rotate_token(&id).await?;
    Ok(noted(
        AuditNote::new("device.rotate_token", format!("device:{id}")),
        axum::Json(NewToken { access_token }),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub accepted_readings: usize,
}

/// The media type of the body, lower case, without parameters (`text/csv; charset=…` → `text/csv`).
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn body_problem(rejection: BytesRejection) -> Problem {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::payload_too_large("the request body is larger than this endpoint accepts")
    } else {
        Problem::bad_request(format!("the request body could not be read: {rejection}"))
    }
}

/// ThingsBoard-compatible device telemetry: the device's access token is in the path. The
/// answer comes after the readings are committed. Device data is metered per device (see the
/// device's status), not written to the audit log.
#[utoipa::path(post, path = "/api/v1/{token}/telemetry", tag = "sensing", security(()),
    params(("token" = String, Path, description = "device access token")),
    request_body(content = Object, description = "{\"key\": value} | {\"ts\": ms, \"values\": {…}} | an array of these"),
    responses((status = 200, body = Accepted), (status = 400), (status = 401), (status = 413), (status = 503)))]
async fn device_telemetry(
    State(sensing): State<Sensing>,
    ApiPath(token): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> impl IntoResponse {
    let result = match body {
        Err(rejection) => Err(body_problem(rejection)),
        Ok(body) => sensing
            .ingest_with_token(&token, &body)
            .await
            .map(|accepted_readings| axum::Json(Accepted { accepted_readings }))
            .map_err(Problem::from),
    };
    (Extension(AuditNote::skip()), result)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkRejection {
    /// Position of the item in the array, or line number (from 0) in NDJSON.
    pub index: usize,
    pub device: Option<String>,
    pub reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkReport {
    pub accepted_items: usize,
    pub accepted_readings: usize,
    /// How many items were refused.
    pub rejected_items: usize,
    /// The first refused items (at most 100), in the order of the body.
    pub rejected: Vec<BulkRejection>,
}

/// The refused items of one request: all counted, the first few named.
#[derive(Default)]
struct Rejections {
    count: usize,
    first: Vec<BulkRejection>,
}

impl Rejections {
    fn push(&mut self, index: usize, device: Option<String>, reason: String) {
        self.count += 1;
        if self.first.len() < crate::bulk::REPORTED_REJECTIONS {
            self.first.push(BulkRejection {
                index,
                device,
                reason: crate::bulk::bounded_reason(reason),
            });
        }
    }
}

/// Bulk uploads expanded at once; more wait for a slot, or are told to come back.
static BULK_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Gateway upload: many devices per request, as a JSON array or NDJSON
/// (`Content-Type: application/x-ndjson`) of `{"device": id, "ts": ms, "values": {…}}` (or
/// `{"device": id, key: value, …}`), at most 50,000 items and 500,000 values in all. Valid
/// items are committed before the answer; the report counts the refused items and names the
/// first 100 with their reasons. Needs an API client with `telemetry:write` (or a department
/// admin/operator) of the devices' department.
#[utoipa::path(post, path = "/api/v1/telemetry/bulk", tag = "sensing",
    request_body(content = [Object], description = "array or NDJSON of device items"),
    responses((status = 200, body = BulkReport), (status = 400), (status = 401), (status = 403),
        (status = 413), (status = 415), (status = 503)))]
async fn bulk_telemetry(
    State(sensing): State<Sensing>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let body = body.map_err(body_problem)?;
    let content_type = media_type(&headers);
    let read: fn(&[u8]) -> crate::bulk::Items = match content_type.as_str() {
        "application/json" => crate::bulk::from_array,
        "application/x-ndjson" | "application/jsonl" => crate::bulk::from_lines,
        _ => {
            return Err(Problem::unsupported_media_type(
                "send application/json (an array) or application/x-ndjson",
            ));
        }
    };
    let _slot = tokio::time::timeout(std::time::Duration::from_secs(10), BULK_SLOTS.acquire())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            Problem::unavailable("too many bulk uploads at once; try again shortly")
                .with_retry_after(1)
        })?;
    let items = read(&body).map_err(|error| match error {
        crate::bulk::BodyError::Malformed(message) => Problem::invalid_json(message),
        crate::bulk::BodyError::TooLarge(message) => Problem::payload_too_large(message),
    })?;
    drop(body);
    let mut rejected = Rejections::default();
    let devices = sensing
        .device_infos(
            items
                .iter()
                .filter_map(|(_, item)| item.as_ref().ok()?.get("device")?.as_str()),
        )
        .await?;
    let mut valid = Vec::new();
    for (index, item) in items {
        let mut object = match item {
            Ok(object) => object,
            Err(reason) => {
                rejected.push(index, None, reason);
                continue;
            }
        };
        let Some(serde_json::Value::String(device_id)) = object.remove("device") else {
            rejected.push(index, None, "item has no \"device\" id".into());
            continue;
        };
        let Some(device) = devices.get(&device_id).cloned() else {
            rejected.push(index, Some(device_id), "unknown device".into());
            continue;
        };
        if !principal.may(Resource::Telemetry, Action::Write, &device.department) {
            rejected.push(
                index,
                Some(device_id),
                "not allowed to write this device's telemetry".into(),
            );
            continue;
        }
        match sensing.validate(&device, serde_json::Value::Object(object)) {
            Ok(readings) => valid.push((index, device, readings)),
            Err(reason) => {
                sensing.record_rejection(&device.id, &reason).await;
                rejected.push(index, Some(device_id), reason);
            }
        }
    }
    // All valid items go to the writer as one request: one hand-off, one commit.
    let accepted_items = valid.len();
    let accepted_readings: usize = valid.iter().map(|(_, _, readings)| readings.len()).sum();
    let items = valid
        .into_iter()
        .map(|(_, device, readings)| (device, readings))
        .collect();
    sensing.store_many(items).await.map_err(Problem::from)?;
    Ok((
        Extension(AuditNote::skip()),
        axum::Json(BulkReport {
            accepted_items,
            accepted_readings,
            rejected_items: rejected.count,
            rejected: rejected.first,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LatestQuery {
    /// Comma-separated keys; all of the profile's keys when absent.
    pub keys: Option<String>,
}

/// The newest value of each key.
#[utoipa::path(get, path = "/api/v1/devices/{id}/telemetry/latest", tag = "sensing",
    params(("id" = String, Path), LatestQuery), responses((status = 200, body = [LatestValue]), (status = 404)))]
async fn latest_telemetry(
    State(sensing): State<Sensing>,
    principal: Principal,
    request_id: RequestId,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LatestQuery>,
) -> ApiResult<axum::Json<Vec<LatestValue>>> {
    let device = readable_telemetry(&sensing, &principal, &id, &request_id, "latest").await?;
    let keys = requested_keys(&sensing, &device.profile, query.keys.as_deref());
    Ok(axum::Json(sensing.latest(&id, &keys).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    pub key: String,
    /// Start, ms since the epoch (inclusive); default 24 h ago.
    pub from: Option<i64>,
    /// End, ms since the epoch (exclusive); default now + 1 min.
    pub to: Option<i64>,
    /// Paging cursor from `next_after`.
    pub after: Option<i64>,
    /// 1–10000, default 1000.
    pub limit: Option<i64>,
}

/// Bucket width from seconds (default an hour; 60 s to 31 days) in milliseconds.
fn bucket_ms(interval_s: Option<i64>) -> Result<i64, Problem> {
    let interval = interval_s.unwrap_or(3600);
    if !(60..=31 * 24 * 3600).contains(&interval) {
        return Err(Problem::bad_request(
            "interval must be between 60 s and 31 days",
        ));
    }
    Ok(interval * 1000)
}

/// The keys a query names (comma-separated), or all of the device's profile keys.
fn requested_keys(sensing: &Sensing, profile: &str, keys: Option<&str>) -> Vec<String> {
    match keys {
        Some(keys) => keys
            .split(',')
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect(),
        None => sensing
            .profile(profile)
            .map(|p| p.keys.iter().map(|k| k.name.clone()).collect())
            .unwrap_or_default(),
    }
}

/// Times a query may name: from the epoch to the year 9999 (ms).
const LATEST_MS: i64 = 253_402_300_799_999;

fn window(from: Option<i64>, to: Option<i64>) -> Result<(i64, i64), Problem> {
    let now = yunnao_core::time::now_ms();
    let to = to.unwrap_or(now + 60_000);
    if !(0..=LATEST_MS).contains(&to) || from.is_some_and(|f| !(0..=LATEST_MS).contains(&f)) {
        return Err(Problem::bad_request(
            "from and to are milliseconds since the epoch, up to the year 9999",
        ));
    }
    let from = from.unwrap_or((to - 24 * 3600 * 1000).max(0));
    if from >= to {
        return Err(Problem::bad_request("from must be before to"));
    }
    Ok((from, to))
}

/// Raw readings of one key, oldest first, in pages.
#[utoipa::path(get, path = "/api/v1/devices/{id}/telemetry", tag = "sensing",
    params(("id" = String, Path), RangeQuery), responses((status = 200, body = RawPage), (status = 404)))]
async fn raw_telemetry(
    State(sensing): State<Sensing>,
    principal: Principal,
    request_id: RequestId,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<RangeQuery>,
) -> ApiResult<axum::Json<RawPage>> {
    readable_telemetry(&sensing, &principal, &id, &request_id, "raw").await?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 10000"));
    }
    let (from, to) = window(query.from, query.to)?;
    Ok(axum::Json(
        sensing
            .raw(&id, &query.key, from, to, query.after, limit)
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AggregateQuery {
    pub key: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Bucket width in seconds (60 … 31 days); default 3600.
    pub interval: Option<i64>,
}

/// avg/min/max/sum/count per interval.
#[utoipa::path(get, path = "/api/v1/devices/{id}/telemetry/aggregate", tag = "sensing",
    params(("id" = String, Path), AggregateQuery), responses((status = 200, body = [Bucket]), (status = 404)))]
async fn aggregate_telemetry(
    State(sensing): State<Sensing>,
    principal: Principal,
    request_id: RequestId,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<AggregateQuery>,
) -> ApiResult<axum::Json<Vec<Bucket>>> {
    readable_telemetry(&sensing, &principal, &id, &request_id, "aggregate").await?;
    let interval_ms = bucket_ms(query.interval)?;
    let (from, to) = window(query.from, query.to)?;
    Ok(axum::Json(
        sensing
            .aggregate(&id, &query.key, from, to, interval_ms)
            .await?,
    ))
}

/// Alarm rules visible to the caller: their department's and the platform defaults.
#[utoipa::path(get, path = "/api/v1/alarm-rules", tag = "sensing", responses((status = 200, body = [Rule])))]
async fn list_rules(
    State(sensing): State<Sensing>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<Rule>>> {
    let department = listing_department(&principal, Resource::AlarmRules, None)?;
    let rules = sensing
        .alarms
        .rules()
        .into_iter()
        .filter(|r| {
            department.is_none()
                || r.department
                    .as_deref()
                    .is_none_or(|d| Some(d) == department.as_deref())
        })
        .collect();
    Ok(axum::Json(rules))
}

/// Create an alarm rule for a profile or a device of the caller's department (platform admins:
/// any department, or a platform default with `platform_default: true`).
#[utoipa::path(post, path = "/api/v1/alarm-rules", tag = "sensing", request_body = NewRule,
    responses((status = 201, body = Rule), (status = 403), (status = 422)))]
async fn create_rule(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiJson(new): ApiJson<NewRule>,
) -> ApiResult<impl IntoResponse> {
    let department = if new.platform_default {
        principal.require_platform_admin()?;
        None
    } else {
        let department = new
            .department
            .clone()
            .unwrap_or_else(|| principal.department.clone());
        require_write(&principal, Resource::AlarmRules, &department)?;
        Some(department)
    };
    if let Some(device) = &new.device {
        let view = writable_device(&sensing, &principal, device, Resource::AlarmRules).await?;
        if department.as_deref().is_some_and(|d| d != view.department) {
            return Err(Problem::validation(
                "the device belongs to another department",
            ));
        }
    }
    let rule = sensing.alarms.create_rule(new, department).await?;
    Ok(noted(
        AuditNote::new("alarm_rule.create", format!("alarm_rule:{}", rule.id)),
        (StatusCode::CREATED, axum::Json(rule)),
    ))
}

#[utoipa::path(delete, path = "/api/v1/alarm-rules/{id}", tag = "sensing", params(("id" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
async fn delete_rule(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let rule = sensing
        .alarms
        .rule(&id)
        .ok_or_else(|| Problem::not_found(format!("there is no alarm rule {id:?}")))?;
    match &rule.department {
        None => principal.require_platform_admin()?,
        Some(department) => require_write(&principal, Resource::AlarmRules, department)?,
    }
    sensing.alarms.delete_rule(&id).await?;
    Ok(noted(
        AuditNote::new("alarm_rule.delete", format!("alarm_rule:{id}")),
        StatusCode::NO_CONTENT,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlarmQuery {
    pub device: Option<String>,
    /// Only alarms not yet cleared (default true); false gives the history too.
    pub active: Option<bool>,
    /// `open` (not cleared), `active` (not acknowledged), `acknowledged`, `cleared` or `all`;
    /// overrides `active`.
    pub status: Option<String>,
    /// `critical`, `major`, `minor` or `warning`.
    pub severity: Option<String>,
    pub department: Option<String>,
    /// 1–1000, default 100.
    pub limit: Option<i64>,
}

/// Alarms of the caller's department, newest first.
#[utoipa::path(get, path = "/api/v1/alarms", tag = "sensing", params(AlarmQuery),
    responses((status = 200, body = [AlarmView]), (status = 400, description = "a filter that is not one"), (status = 403)))]
async fn list_alarms(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AlarmQuery>,
) -> ApiResult<axum::Json<Vec<AlarmView>>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 1000"));
    }
    let status = match query.status.as_deref() {
        Some(text) => AlarmStatus::parse(text).ok_or_else(|| {
            Problem::bad_request("status is open, active, acknowledged, cleared or all")
        })?,
        None if query.active == Some(false) => AlarmStatus::All,
        None => AlarmStatus::Open,
    };
    let severity = match query.severity.as_deref() {
        Some(text) => Some(Severity::from_name(text).ok_or_else(|| {
            Problem::bad_request("severity is critical, major, minor or warning")
        })?),
        None => None,
    };
    let department = listing_department(&principal, Resource::Alarms, query.department)?;
    Ok(axum::Json(
        sensing
            .alarms
            .list(&AlarmFilter {
                department: department.as_deref(),
                device: query.device.as_deref(),
                severity,
                status,
                limit,
            })
            .await?,
    ))
}

/// What an operator writes when acknowledging or clearing an alarm.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmNote {
    /// Up to 500 characters.
    pub comment: Option<String>,
}

/// The comment of an optional JSON body (an empty body is no comment).
pub fn alarm_comment(body: &[u8]) -> Result<Option<String>, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let note: AlarmNote = serde_json::from_slice(body)
        .map_err(|e| Problem::invalid_json(format!("the body is not an alarm note: {e}")))?;
    let comment = note
        .comment
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    if comment.as_ref().is_some_and(|c| c.chars().count() > 500) {
        return Err(Problem::validation("comment is at most 500 characters"));
    }
    Ok(comment)
}

async fn alarm_for(
    sensing: &Sensing,
    principal: &Principal,
    id: &str,
) -> Result<AlarmView, Problem> {
    let alarm = sensing
        .alarms
        .alarm(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no alarm {id:?}")))?;
    if !principal.may(Resource::Alarms, Action::Read, &alarm.department) {
        return Err(Problem::not_found(format!("there is no alarm {id:?}")));
    }
    Ok(alarm)
}

/// What an operator does to an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmStep {
    Acknowledge,
    Clear,
}

/// Acknowledges or clears an alarm for this caller, with the API's checks: an alarm the caller
/// may not read is not found, one they may read but not change is forbidden. The web UI takes
/// the same path.
pub async fn alarm_step(
    sensing: &Sensing,
    principal: &Principal,
    id: &str,
    step: AlarmStep,
    comment: Option<&str>,
) -> Result<AlarmView, Problem> {
    let alarm = alarm_for(sensing, principal, id).await?;
    require_write(principal, Resource::Alarms, &alarm.department)?;
    match step {
        AlarmStep::Acknowledge => {
            sensing
                .alarms
                .acknowledge(id, &principal.name, comment)
                .await
        }
        AlarmStep::Clear => sensing.alarms.clear(id, &principal.name, comment).await,
    }
}

/// Acknowledge an alarm (it stays active until its condition ends or it is cleared), with an
/// optional comment.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/ack", tag = "sensing", params(("id" = String, Path)),
    request_body(content = Option<AlarmNote>, content_type = "application/json"),
    responses((status = 200, body = AlarmView), (status = 400), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn acknowledge_alarm(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    let comment = alarm_comment(&body)?;
    let alarm = alarm_step(
        &sensing,
        &principal,
        &id,
        AlarmStep::Acknowledge,
        comment.as_deref(),
    )
    .await?;
    Ok(noted(
        AuditNote::new("alarm.acknowledge", format!("alarm:{id}")),
        axum::Json(alarm),
    ))
}

/// Clear an alarm by hand, with an optional comment.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/clear", tag = "sensing", params(("id" = String, Path)),
    request_body(content = Option<AlarmNote>, content_type = "application/json"),
    responses((status = 200, body = AlarmView), (status = 400), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn clear_alarm(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    let comment = alarm_comment(&body)?;
    let alarm = alarm_step(
        &sensing,
        &principal,
        &id,
        AlarmStep::Clear,
        comment.as_deref(),
    )
    .await?;
    Ok(noted(
        AuditNote::new("alarm.clear", format!("alarm:{id}")),
        axum::Json(alarm),
    ))
}

/// Grants given by or to the caller's department (platform admins: all).
#[utoipa::path(get, path = "/api/v1/device-grants", tag = "sensing", responses((status = 200, body = [Grant])))]
async fn list_grants(
    State(sensing): State<Sensing>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<Grant>>> {
    let department = listing_department(&principal, Resource::Grants, None)?;
    Ok(axum::Json(sensing.grants(department.as_deref()).await?))
}

/// Share the caller's department's devices with another department until an expiry.
/// Needs the department admin.
#[utoipa::path(post, path = "/api/v1/device-grants", tag = "sensing", request_body = NewGrant,
    responses((status = 201, body = Grant), (status = 403), (status = 422)))]
async fn create_grant(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiJson(new): ApiJson<NewGrant>,
) -> ApiResult<impl IntoResponse> {
    require_write(&principal, Resource::Grants, &principal.department)?;
    let grant = sensing
        .create_grant(&principal.department, &principal.name, new)
        .await?;
    Ok(noted(
        AuditNote::new(
            "device_grant.create",
            format!("device_grant:{} to:{}", grant.id, grant.grantee),
        ),
        (StatusCode::CREATED, axum::Json(grant)),
    ))
}

/// Revoke a grant (the owning department's admin); access ends at once.
#[utoipa::path(delete, path = "/api/v1/device-grants/{id}", tag = "sensing", params(("id" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
async fn revoke_grant(
    State(sensing): State<Sensing>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let grant = sensing
        .grant(&id)
        .await?
        .filter(|g| {
            principal.may(Resource::Grants, Action::Read, &g.owner)
                || principal.may(Resource::Grants, Action::Read, &g.grantee)
        })
        .ok_or_else(|| Problem::not_found(format!("there is no grant {id:?}")))?;
    require_write(&principal, Resource::Grants, &grant.owner)?;
    sensing.revoke_grant(&id).await?;
    Ok(noted(
        AuditNote::new("device_grant.revoke", format!("device_grant:{id}")),
        StatusCode::NO_CONTENT,
    ))
}

/// Apply retention now (it also runs on a timer): roll up and delete raw readings past their
/// profile's retention. Platform admins.
#[utoipa::path(post, path = "/api/v1/admin/retention/run", tag = "sensing",
    responses((status = 200, body = crate::retention::RetentionReport), (status = 403)))]
async fn run_retention(
    State(sensing): State<Sensing>,
    principal: Principal,
) -> ApiResult<impl IntoResponse> {
    principal.require_platform_admin()?;
    let report = sensing.run_retention(yunnao_core::time::now_ms()).await?;
    Ok(noted(
        AuditNote::new("retention.run", "readings"),
        axum::Json(report),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportedDevice {
    pub row: usize,
    pub id: String,
    pub access_token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportRejection {
    pub row: usize,
    pub reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub created: Vec<ImportedDevice>,
    pub rejected: Vec<ImportRejection>,
}

/// Register many devices from a JSON array of devices, a CSV file (`text/csv`) or an XLSX
/// workbook. Each row stands alone: the report lists the created devices with their tokens
/// (shown only now) and every refused row with its reason. At most 10,000 devices and 8 MiB
/// a request; a spreadsheet of more rows or columns than that, or unpacking past 64 MiB, is
/// refused whole.
#[utoipa::path(post, path = "/api/v1/devices/import", tag = "sensing",
    request_body(content = [NewDevice], description = "JSON array, text/csv or XLSX"),
    responses((status = 200, body = ImportReport), (status = 400), (status = 415)))]
async fn import_devices(
    State(sensing): State<Sensing>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let body = body.map_err(body_problem)?;
    let content_type = media_type(&headers);
    let rows: Vec<crate::tables::ParsedRow> = match content_type.as_str() {
        "application/json" => bounded_array(&body, crate::tables::MAX_IMPORT_ROWS)?
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                serde_json::from_value::<NewDevice>(value).map_err(|e| (i + 1, e.to_string()))
            })
            .collect(),
        "text/csv" => crate::tables::devices_from_csv(&body).map_err(Problem::bad_request)?,
        crate::tables::XLSX_CONTENT_TYPE => {
            crate::tables::devices_from_xlsx(&body).map_err(Problem::bad_request)?
        }
        _ => {
            return Err(Problem::unsupported_media_type(format!(
                "send application/json, text/csv or {}",
                crate::tables::XLSX_CONTENT_TYPE
            )));
        }
    };
    let mut report = ImportReport {
        created: Vec::new(),
        rejected: Vec::new(),
    };
    for (index, row) in rows.into_iter().enumerate() {
        let row_number = index + 1;
        let new = match row {
            Ok(new) => new,
            Err((row, reason)) => {
                report.rejected.push(ImportRejection { row, reason });
                continue;
            }
        };
        let department = new
            .department
            .clone()
            .unwrap_or_else(|| principal.department.clone());
        let outcome = match require_write(&principal, Resource::Devices, &department) {
            Ok(()) => sensing.create_device(new, department).await,
            Err(problem) => Err(problem),
        };
        match outcome {
            Ok(created) => report.created.push(ImportedDevice {
                row: row_number,
                id: created.device.id,
                access_token: created.access_token,
            }),
            Err(problem) => report.rejected.push(ImportRejection {
                row: row_number,
                reason: problem.detail.unwrap_or(problem.title),
            }),
        }
    }
    let note = AuditNote::new(
        "device.import",
        format!(
            "devices: {} created, {} rejected",
            report.created.len(),
            report.rejected.len()
        ),
    );
    Ok(noted(note, axum::Json(report)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub key: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// `csv` (default) or `xlsx`.
    pub format: Option<String>,
}

/// Raw readings of one key as a CSV or XLSX download (at most 1,000,000 rows).
#[utoipa::path(get, path = "/api/v1/devices/{id}/telemetry/export", tag = "sensing",
    params(("id" = String, Path), ExportQuery),
    responses((status = 200, content_type = "text/csv"), (status = 404)))]
async fn export_telemetry(
    State(sensing): State<Sensing>,
    principal: Principal,
    request_id: RequestId,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ApiResult<impl IntoResponse> {
    readable_telemetry(&sensing, &principal, &id, &request_id, "export").await?;
    let (from, to) = window(query.from, query.to)?;
    let page = sensing
        .raw(&id, &query.key, from, to, None, 1_000_000)
        .await?;
    let points: Vec<(i64, f64)> = page.points.iter().map(|p| (p.ts, p.value)).collect();
    let (content_type, extension, bytes) = match query.format.as_deref().unwrap_or("csv") {
        "csv" => (
            "text/csv; charset=utf-8",
            "csv",
            crate::tables::telemetry_csv(&id, &query.key, &points),
        ),
        "xlsx" => (
            crate::tables::XLSX_CONTENT_TYPE,
            "xlsx",
            crate::tables::telemetry_xlsx(&id, &query.key, &points),
        ),
        other => {
            return Err(Problem::bad_request(format!(
                "format {other:?}: use csv or xlsx"
            )));
        }
    };
    let bytes = bytes.map_err(Problem::internal)?;
    // The name is built from the request: only characters safe in a header and a file name.
    let safe = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(100)
            .collect()
    };
    let disposition = format!(
        "attachment; filename=\"{}-{}.{extension}\"",
        safe(&id),
        safe(&query.key)
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    ))
}

/// Most devices one group query may name.
const GROUP_LIMIT: usize = 1000;

fn device_list(devices: &str) -> Result<Vec<String>, Problem> {
    let ids: Vec<String> = devices
        .split(',')
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect();
    if ids.is_empty() || ids.len() > GROUP_LIMIT {
        return Err(Problem::bad_request(format!(
            "devices must name 1 to {GROUP_LIMIT} device ids, comma-separated"
        )));
    }
    Ok(ids)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GroupLatestQuery {
    /// Comma-separated device ids (at most 1000).
    pub devices: String,
    /// Comma-separated keys; each device's profile keys when absent.
    pub keys: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceLatest {
    pub device: String,
    pub values: Vec<LatestValue>,
}

/// The newest values of a set of devices (each must be readable by the caller).
#[utoipa::path(get, path = "/api/v1/telemetry/latest", tag = "sensing", params(GroupLatestQuery),
    responses((status = 200, body = [DeviceLatest]), (status = 404)))]
async fn group_latest(
    State(sensing): State<Sensing>,
    principal: Principal,
    request_id: RequestId,
    ApiQuery(query): ApiQuery<GroupLatestQuery>,
) -> ApiResult<axum::Json<Vec<DeviceLatest>>> {
    let mut out = Vec::new();
    for id in device_list(&query.devices)? {
        let device = readable_telemetry(&sensing, &principal, &id, &request_id, "latest").await?;
        let keys = requested_keys(&sensing, &device.profile, query.keys.as_deref());
        out.push(DeviceLatest {
            values: sensing.latest(&id, &keys).await?,
            device: id,
        });
    }
    Ok(axum::Json(out))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GroupAggregateQuery {
    /// Comma-separated device ids (at most 1000).
    pub devices: String,
    pub key: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Bucket width in seconds (60 … 31 days); default 3600.
    pub interval: Option<i64>,
}

/// avg/min/max/sum/count per interval over a group of devices together (e.g. all rain gauges
/// of a district).
#[utoipa::path(get, path = "/api/v1/telemetry/aggregate", tag = "sensing", params(GroupAggregateQuery),
    responses((status = 200, body = [Bucket]), (status = 404)))]
async fn group_aggregate(
    State(sensing): State<Sensing>,
    principal: Principal,
    request_id: RequestId,
    ApiQuery(query): ApiQuery<GroupAggregateQuery>,
) -> ApiResult<axum::Json<Vec<Bucket>>> {
    let interval_ms = bucket_ms(query.interval)?;
    let (from, to) = window(query.from, query.to)?;
    let mut all = Vec::new();
    for id in device_list(&query.devices)? {
        readable_telemetry(&sensing, &principal, &id, &request_id, "aggregate").await?;
        all.extend(
            sensing
                .aggregate(&id, &query.key, from, to, interval_ms)
                .await?,
        );
    }
    Ok(axum::Json(crate::series::merge_buckets(all)))
}
