//! `/api/v1/codes`: my code (a fresh dynamic code with its QR), cards bound to it, where it was
//! scanned; the scenarios and the key set (public); a scan by a scenario's operator.

use crate::hub::{Codes, IssuedCode, Scan, ScanAnswer, ScanRecord, Scenario};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_core::Problem;
use yunnao_http::ApiJson;
use yunnao_identity::{AuditNote, Principal};

pub fn router() -> OpenApiRouter<Codes> {
    OpenApiRouter::new()
        .routes(routes!(my_code))
        .routes(routes!(bind_card))
        .routes(routes!(my_scans))
        .routes(routes!(list_scenarios))
        .routes(routes!(key_set))
        .routes(routes!(verify_code))
}

/// A fresh dynamic code (30 s) for the signed-in resident or enterprise, with its QR as SVG.
#[utoipa::path(get, path = "/api/v1/codes/mine", tag = "codes",
    responses((status = 200, body = IssuedCode), (status = 403)))]
async fn my_code(
    State(codes): State<Codes>,
    principal: Principal,
) -> Result<axum::Json<IssuedCode>, Problem> {
    Ok(axum::Json(codes.issue(&principal).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardBinding {
    /// A card kind (`transit_account`, `library_card`, …).
    pub kind: String,
    pub id: String,
}

/// Binds a card to the signed-in holder's code (licences of the library bind themselves).
#[utoipa::path(post, path = "/api/v1/codes/cards", tag = "codes", request_body = CardBinding,
    responses((status = 204), (status = 403), (status = 422)))]
async fn bind_card(
    State(codes): State<Codes>,
    principal: Principal,
    ApiJson(binding): ApiJson<CardBinding>,
) -> Result<impl IntoResponse, Problem> {
    codes
        .bind_card(&principal, &binding.kind, &binding.id)
        .await?;
    Ok((
        axum::Extension(AuditNote::new(
            "code.card.bind",
            format!("card:{}", binding.kind),
        )),
        StatusCode::NO_CONTENT,
    ))
}

/// Where the signed-in holder's code was scanned.
#[utoipa::path(get, path = "/api/v1/codes/scans/mine", tag = "codes",
    responses((status = 200, body = [ScanRecord]), (status = 403)))]
async fn my_scans(
    State(codes): State<Codes>,
    principal: Principal,
) -> Result<axum::Json<Vec<ScanRecord>>, Problem> {
    Ok(axum::Json(codes.my_scans(&principal).await?))
}

/// The scenarios (应用场景) and what each may learn: public.
#[utoipa::path(get, path = "/api/v1/codes/scenarios", tag = "codes", security(()),
    responses((status = 200, body = [Scenario])))]
async fn list_scenarios(State(codes): State<Codes>) -> axum::Json<Vec<Scenario>> {
    axum::Json(codes.scenarios().to_vec())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublishedKey {
    pub kid: String,
    /// `SM2-SM3`, COSE algorithm -70101.
    pub algorithm: String,
    /// SEC1 uncompressed point, hex.
    pub public_key: String,
}

/// The keys codes are signed with, for offline gates: public.
#[utoipa::path(get, path = "/api/v1/codes/keys", tag = "codes", security(()),
    responses((status = 200, body = [PublishedKey])))]
async fn key_set(State(codes): State<Codes>) -> impl IntoResponse {
    let keys: Vec<PublishedKey> = codes
        .key_set()
        .into_iter()
        .map(|(kid, public_key)| PublishedKey {
            kid,
            algorithm: "SM2-SM3".into(),
            public_key,
        })
        .collect();
    (
        [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(keys),
    )
}

/// A scan at a scenario, by its operator's staff or API client: the verdict stage by stage and
/// only the claims the scenario may learn; recorded in the scan log.
#[utoipa::path(post, path = "/api/v1/codes/verify", tag = "codes", request_body = Scan,
    responses((status = 200, body = ScanAnswer), (status = 403), (status = 404), (status = 422)))]
async fn verify_code(
    State(codes): State<Codes>,
    principal: Principal,
    ApiJson(scan): ApiJson<Scan>,
) -> Result<impl IntoResponse, Problem> {
    let scenario = scan.scenario.clone();
    let answer = codes.scan(&principal, scan).await?;
    Ok((
        axum::Extension(AuditNote::new(
            "code.scan",
            format!("scenario:{scenario} result:{}", answer.result),
        )),
        axum::Json(answer),
    ))
}
