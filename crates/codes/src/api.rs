//! `/api/v1/codes`: my code (a fresh dynamic code with its QR as SVG or PNG), the cards bound
//! to it, where it was scanned, a renewal (a lost phone); the scenarios, the signed key set
//! and the trust list (public); a scan by a scenario's operator, a scenario's scans and the
//! figures; the bureau's key rotation, trust list and revocations.

use crate::hub::{
    BoundCard, CodeFigures, Codes, IssuedCode, NewTrustedIssuer, Scan, ScanAnswer, ScanRecord,
    Scenario, SignedKeySet, TrustedIssuer,
};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_core::Problem;
use yunnao_http::ApiJson;
use yunnao_identity::{AuditNote, Principal};

pub fn router() -> OpenApiRouter<Codes> {
    OpenApiRouter::new()
        .routes(routes!(my_code))
        .routes(routes!(my_code_png))
        .routes(routes!(renew_code))
        .routes(routes!(list_cards, bind_card))
        .routes(routes!(revoke_card))
        .routes(routes!(my_scans))
        .routes(routes!(list_scenarios))
        .routes(routes!(scenario_scans))
        .routes(routes!(figures))
        .routes(routes!(key_set))
        .routes(routes!(rotate_key))
        .routes(routes!(list_trusted, trust_issuer))
        .routes(routes!(distrust_issuer))
        .routes(routes!(revoke_holder, reinstate_holder))
        .routes(routes!(verify_code))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CodeQuery {
    /// `SM2-SM3` (default) or `ES256` (for scenarios outside China).
    pub algorithm: Option<String>,
}

/// A fresh dynamic code (30 s) for the signed-in resident or enterprise, with its QR as SVG.
#[utoipa::path(get, path = "/api/v1/codes/mine", tag = "codes", params(CodeQuery),
    responses((status = 200, body = IssuedCode), (status = 400), (status = 403), (status = 422)))]
async fn my_code(
    State(codes): State<Codes>,
    principal: Principal,
    Query(query): Query<CodeQuery>,
) -> Result<axum::Json<IssuedCode>, Problem> {
    Ok(axum::Json(
        codes.issue(&principal, query.algorithm.as_deref()).await?,
    ))
}

/// A fresh dynamic code as a PNG QR symbol (level M).
#[utoipa::path(get, path = "/api/v1/codes/mine.png", tag = "codes", params(CodeQuery),
    responses((status = 200, content_type = "image/png"), (status = 400), (status = 403), (status = 422)))]
async fn my_code_png(
    State(codes): State<Codes>,
    principal: Principal,
    Query(query): Query<CodeQuery>,
) -> Result<impl IntoResponse, Problem> {
    let issued = codes.issue(&principal, query.algorithm.as_deref()).await?;
    let png = crate::qr_png(&issued.code, 6).map_err(|e| Problem::internal(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        png,
    ))
}

/// A lost phone: every code made so far is refused from now on; the next one is new.
#[utoipa::path(post, path = "/api/v1/codes/mine/renewal", tag = "codes",
    responses((status = 204), (status = 403)))]
async fn renew_code(
    State(codes): State<Codes>,
    principal: Principal,
) -> Result<impl IntoResponse, Problem> {
    codes.renew(&principal).await?;
    Ok((
        axum::Extension(AuditNote::new("code.renew", "code:mine")),
        StatusCode::NO_CONTENT,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardBinding {
    /// A card kind (`transit_account`, `library_card`, …).
    pub kind: String,
    pub id: String,
}

/// The cards and licences bound to the signed-in holder's code.
#[utoipa::path(get, path = "/api/v1/codes/cards", tag = "codes",
    responses((status = 200, body = [BoundCard]), (status = 403)))]
async fn list_cards(
    State(codes): State<Codes>,
    principal: Principal,
) -> Result<axum::Json<Vec<BoundCard>>, Problem> {
    Ok(axum::Json(codes.cards(&principal).await?))
}

/// Binds a card to the signed-in holder's code (licences of the library bind themselves).
#[utoipa::path(post, path = "/api/v1/codes/cards", tag = "codes", request_body = CardBinding,
    responses((status = 204), (status = 400), (status = 403), (status = 422)))]
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

/// Revokes a bound card (lost, cancelled): scenarios that read it refuse codes naming it.
#[utoipa::path(delete, path = "/api/v1/codes/cards/{handle}", tag = "codes",
    params(("handle" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
async fn revoke_card(
    State(codes): State<Codes>,
    principal: Principal,
    Path(handle): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    codes.revoke_card(&principal, &handle).await?;
    Ok((
        axum::Extension(AuditNote::new("code.card.revoke", format!("card:{handle}"))),
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ScansQuery {
    /// At most 500; 100 unless given.
    pub limit: Option<i64>,
}

/// The latest scans at a scenario, for its operator and the bureau.
#[utoipa::path(get, path = "/api/v1/codes/scenarios/{code}/scans", tag = "codes",
    params(("code" = String, Path), ScansQuery),
    responses((status = 200, body = [ScanRecord]), (status = 400), (status = 403), (status = 404)))]
async fn scenario_scans(
    State(codes): State<Codes>,
    principal: Principal,
    Path(code): Path<String>,
    Query(query): Query<ScansQuery>,
) -> Result<axum::Json<Vec<ScanRecord>>, Problem> {
    Ok(axum::Json(
        codes
            .scenario_scans(&principal, &code, query.limit.unwrap_or(100))
            .await?,
    ))
}

/// Scans per day and refusals by reason per scenario the caller reads (all for the bureau).
#[utoipa::path(get, path = "/api/v1/codes/figures", tag = "codes",
    responses((status = 200, body = CodeFigures), (status = 401)))]
async fn figures(
    State(codes): State<Codes>,
    principal: Principal,
) -> Result<axum::Json<CodeFigures>, Problem> {
    Ok(axum::Json(codes.figures(Some(&principal)).await?))
}

/// The key set for offline gates, signed by `KS1`: the keys codes are signed with (retired
/// ones until their codes have expired), the issuers of other schemes the bureau trusts, and
/// the revocations whose codes may still be alive. Public; cacheable for 300 s.
#[utoipa::path(get, path = "/api/v1/codes/keys", tag = "codes", security(()),
    responses((status = 200, body = SignedKeySet)))]
async fn key_set(State(codes): State<Codes>) -> Result<impl IntoResponse, Problem> {
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(codes.key_set().await?),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// `SM2-SM3` or `ES256`.
    pub algorithm: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Rotated {
    pub kid: String,
}

/// Rotates the signing key of an algorithm (the bureau); the old key stays published until
/// its codes have expired.
#[utoipa::path(post, path = "/api/v1/codes/keys/rotation", tag = "codes", request_body = Rotation,
    responses((status = 201, body = Rotated), (status = 400), (status = 403), (status = 422)))]
async fn rotate_key(
    State(codes): State<Codes>,
    principal: Principal,
    ApiJson(rotation): ApiJson<Rotation>,
) -> Result<impl IntoResponse, Problem> {
    let kid = codes.rotate(&principal, &rotation.algorithm).await?;
    Ok((
        StatusCode::CREATED,
        axum::Extension(AuditNote::new("code.key.rotate", format!("code-key:{kid}"))),
        axum::Json(Rotated { kid }),
    ))
}

/// The issuers of other schemes the bureau trusts: public.
#[utoipa::path(get, path = "/api/v1/codes/trust", tag = "codes", security(()),
    responses((status = 200, body = [TrustedIssuer])))]
async fn list_trusted(State(codes): State<Codes>) -> axum::Json<Vec<TrustedIssuer>> {
    axum::Json(codes.trusted())
}

/// Trusts another scheme's issuer certificate (the bureau).
#[utoipa::path(post, path = "/api/v1/codes/trust", tag = "codes", request_body = NewTrustedIssuer,
    responses((status = 201, body = TrustedIssuer), (status = 400), (status = 403), (status = 409), (status = 422)))]
async fn trust_issuer(
    State(codes): State<Codes>,
    principal: Principal,
    ApiJson(new): ApiJson<NewTrustedIssuer>,
) -> Result<impl IntoResponse, Problem> {
    let issuer = codes.trust(&principal, new).await?;
    Ok((
        StatusCode::CREATED,
        axum::Extension(AuditNote::new(
            "code.trust.add",
            format!("code-issuer:{}", issuer.kid),
        )),
        axum::Json(issuer),
    ))
}

/// Stops trusting an issuer (the bureau). The key id is base64 (URL-encode its `/` and `+`).
#[utoipa::path(delete, path = "/api/v1/codes/trust/{kid}", tag = "codes",
    params(("kid" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
async fn distrust_issuer(
    State(codes): State<Codes>,
    principal: Principal,
    Path(kid): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    codes.distrust(&principal, &kid).await?;
    Ok((
        axum::Extension(AuditNote::new(
            "code.trust.remove",
            format!("code-issuer:{kid}"),
        )),
        StatusCode::NO_CONTENT,
    ))
}

/// Revokes the holder a subject names (the bureau): their codes are refused by every online
/// verifier at once and by offline gates at their next key-set refresh; no new codes.
#[utoipa::path(put, path = "/api/v1/codes/revocations/{subject}", tag = "codes",
    params(("subject" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
async fn revoke_holder(
    State(codes): State<Codes>,
    principal: Principal,
    Path(subject): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    codes.revoke_subject(&principal, &subject, true).await?;
    Ok((
        axum::Extension(AuditNote::new(
            "code.revoke",
            format!("code-subject:{subject}"),
        )),
        StatusCode::NO_CONTENT,
    ))
}

/// Reinstates a revoked holder (the bureau).
#[utoipa::path(delete, path = "/api/v1/codes/revocations/{subject}", tag = "codes",
    params(("subject" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
async fn reinstate_holder(
    State(codes): State<Codes>,
    principal: Principal,
    Path(subject): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    codes.revoke_subject(&principal, &subject, false).await?;
    Ok((
        axum::Extension(AuditNote::new(
            "code.reinstate",
            format!("code-subject:{subject}"),
        )),
        StatusCode::NO_CONTENT,
    ))
}

/// A scan at a scenario, by its operator's staff or API client (scope `code-scans:write`):
/// the verdict stage by stage and only the claims the scenario may learn; recorded in the
/// scan log. A refused code is a problem+json naming the reason, with the verdict's stages
/// and `result` as members: 409 for a replay, 422 for anything else (invalid, untrusted,
/// expired, revoked).
#[utoipa::path(post, path = "/api/v1/codes/verify", tag = "codes", request_body = Scan,
    responses((status = 200, body = ScanAnswer), (status = 400), (status = 403), (status = 404), (status = 409), (status = 413), (status = 422)))]
async fn verify_code(
    State(codes): State<Codes>,
    principal: Principal,
    ApiJson(scan): ApiJson<Scan>,
) -> Result<impl IntoResponse, Problem> {
    if scan.code.len() > 4_096 {
        return Err(
            Problem::validation("code: at most 4096 characters").with_extension("field", "code")
        );
    }
    let scenario = scan.scenario.clone();
    let answer = codes.scan(&principal, scan).await?;
    let note = axum::Extension(AuditNote::new(
        "code.scan",
        format!("scenario:{scenario} result:{}", answer.result),
    ));
    if answer.accepted {
        return Ok((note, axum::Json(answer)).into_response());
    }
    Ok((note, refusal(&answer)).into_response())
}

/// A refused scan as a problem, the verdict's stages beside the reason.
pub fn refusal(answer: &ScanAnswer) -> Problem {
    let reason = answer
        .reason
        .clone()
        .unwrap_or_else(|| answer.result.clone());
    let problem = if answer.result == "replayed" {
        Problem::conflict(format!("code refused: {reason}"))
    } else {
        Problem::validation(format!("code refused ({}): {reason}", answer.result))
    };
    let mut problem = problem.with_extension("result", answer.result.clone());
    for (stage, passed) in [
        ("prefix", answer.prefix),
        ("base45", answer.base45),
        ("zlib", answer.zlib),
        ("cose", answer.cose),
        ("claims_valid", answer.claims_valid),
        ("signature", answer.signature),
        ("expiry", answer.expiry),
    ] {
        problem = problem.with_extension(stage, passed);
    }
    problem
}
