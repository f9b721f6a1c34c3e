//! 一码通城 pages: 我的码 for residents and enterprises (the live QR, refreshed before it
//! expires; the bound cards and licences; where it was scanned; 挂失重置), the scanner for a
//! scenario's operator (paste or camera; the verdict stage by stage and only the permitted
//! claims), and the bureau's page (scenarios with scans per day and refusals by reason, the
//! signing keys with rotation, the trust list of other issuers). Every action goes through the
//! hub's own calls, as the API does.

use crate::shell::{Shell, answered, note, shell, tr};
use crate::text::Lang;
use crate::workbench::is_citizen;
use crate::{Web, escape, lang, page};
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use yunnao_codes::hub::ScanAnswer;
use yunnao_core::Problem;
use yunnao_http::ApiPath;
use yunnao_identity::{Action, Principal, Resource};

fn card_name(l: Lang, kind: &str) -> &'static str {
    // Licences are named by the library's own table; the two cards it does not hold here.
    if let Some(t) = yunnao_services::licences::TYPES
        .iter()
        .find(|t| t.0 == kind)
    {
        return tr(l, t.2, t.3);
    }
    match kind {
        "transit_account" => tr(l, "交通出行账户", "Transit account"),
        "library_card" => tr(l, "图书馆借阅证", "Library card"),
        _ => "—",
    }
}

fn claim_name(l: Lang, claim: &str) -> &'static str {
    match (claim, l) {
        ("valid", Lang::Zh) => "有效码",
        ("holder_kind", Lang::Zh) => "持码人类型",
        ("name", Lang::Zh) => "姓名",
        ("id_number", Lang::Zh) => "证件号码",
        ("age_over_60", Lang::Zh) => "年满60周岁",
        ("valid", _) => "valid code",
        ("holder_kind", _) => "holder kind",
        ("name", _) => "name",
        ("id_number", _) => "ID number",
        ("age_over_60", _) => "aged 60 or over",
        (other, l) => card_name(l, other),
    }
}

fn result_name(l: Lang, result: &str) -> &'static str {
    match (result, l) {
        ("accepted", Lang::Zh) => "核验通过",
        ("invalid", Lang::Zh) => "无效码",
        ("expired", Lang::Zh) => "已过期",
        ("untrusted", Lang::Zh) => "签发方不受信任",
        ("replayed", Lang::Zh) => "重复使用",
        ("revoked", Lang::Zh) => "已注销",
        ("accepted", _) => "accepted",
        ("invalid", _) => "invalid",
        ("expired", _) => "expired",
        ("untrusted", _) => "untrusted issuer",
        ("replayed", _) => "replayed",
        ("revoked", _) => "revoked",
        _ => "—",
    }
}

fn sub_nav(l: Lang, viewer: &Principal, active: &str) -> String {
    let mut links = Vec::new();
    if is_citizen(viewer) {
        links.push(("/ui/codes/mine", tr(l, "我的码", "My code")));
    } else {
        links.push(("/ui/codes/scan", tr(l, "扫码核验", "Scan")));
        links.push(("/ui/codes", tr(l, "场景与统计", "Scenarios & figures")));
    }
    crate::shell::sub_nav(tr(l, "一码通城", "One code"), &links, active)
}

/// 我的码: the live code, the bound cards, where it was scanned.
#[utoipa::path(get, path = "/ui/codes/mine", tag = "ui",
    responses((status = 200, description = "my code"), (status = 303, description = "to the sign-in page"), (status = 403, description = "the account is not bound to a holder, or is revoked")))]
pub(crate) async fn mine(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Shell { viewer, l, top, .. } = match shell(&web, &headers, "my_code").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let issued = match web.codes.issue(&viewer, None).await {
        Ok(issued) => issued,
        Err(problem) => return crate::refusal(l, &problem, "/ui/services"),
    };
    let cards = web.codes.cards(&viewer).await.unwrap_or_default();
    let scans = web.codes.my_scans(&viewer).await.unwrap_or_default();
    let card_rows: String = cards
        .iter()
        .map(|c| {
            let action = if c.revoked {
                tr(l, "已注销", "revoked").to_owned()
            } else {
                format!(
                    "<form method=\"post\" action=\"/ui/codes/cards/{h}/revoke\"><button>{}</button></form>",
                    tr(l, "注销", "Revoke"),
                    h = escape(&c.handle)
                )
            };
            format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{action}</td></tr>",
                card_name(l, &c.kind),
                escape(&c.id),
                if c.licence {
                    tr(l, "电子证照库", "e-licence library")
                } else {
                    tr(l, "本人绑定", "bound by you")
                },
            )
        })
        .collect();
    let scan_rows: String = scans
        .iter()
        .take(50)
        .map(|s| {
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                crate::names::local_time(Some(&s.at)),
                escape(&s.scenario_name),
                if s.result == "accepted" {
                    "held"
                } else {
                    "failed"
                },
                result_name(l, &s.result)
            )
        })
        .collect();
    let kind_options: String = yunnao_codes::CARD_KINDS
        .iter()
        .filter(|k| matches!(k.1, "transit_account" | "library_card"))
        .map(|k| format!("<option value=\"{}\">{}</option>", k.1, card_name(l, k.1)))
        .collect();
    let body = format!(
        "{top}<main class=\"case codes\">{nav}<h2>{title}</h2>\
         <section class=\"my-code\" id=\"my-code\" data-refresh=\"/ui/codes/mine/qr\" data-lifetime=\"{lifetime}\">\
         <div class=\"qr\" id=\"my-code-qr\" role=\"img\" aria-label=\"{qr_label}\">{svg}</div>\
         <p><span class=\"muted\">{valid_until}</span> <time id=\"my-code-expiry\" datetime=\"{expires}\">{expires_local}</time> · <span id=\"my-code-left\" aria-live=\"polite\"></span></p>\
         <p class=\"muted\">{explain}</p>\
         <details><summary>{text_label}</summary><textarea readonly rows=\"4\" id=\"my-code-text\" aria-label=\"{text_label}\">{code}</textarea></details>\
         <form method=\"post\" action=\"/ui/codes/renewal\"><button>{renew}</button> <small class=\"muted\">{renew_hint}</small></form></section>\
         <h3>{cards_title}</h3><table><thead><tr><th>{c1}</th><th>{c2}</th><th>{c3}</th><th></th></tr></thead><tbody>{card_rows}</tbody></table>\
         <form method=\"post\" action=\"/ui/codes/cards\" class=\"inline\"><label>{c1} <select name=\"kind\">{kind_options}</select></label> \
         <label>{c2} <input name=\"id\" required maxlength=\"64\"></label> <button>{bind}</button></form>\
         <h3>{scans_title}</h3><table><thead><tr><th>{s1}</th><th>{s2}</th><th>{s3}</th></tr></thead><tbody>{scan_rows}</tbody></table></main>",
        nav = sub_nav(l, &viewer, "/ui/codes/mine"),
        title = if viewer.has_role(yunnao_identity::Role::Enterprise) {
            tr(l, "我的企业码", "My enterprise code")
        } else {
            tr(l, "我的居民码", "My resident code")
        },
        lifetime = issued.lifetime_s,
        qr_label = tr(l, "动态二维码", "dynamic QR code"),
        svg = issued.svg,
        valid_until = tr(l, "有效至", "valid until"),
        expires = escape(&issued.expires_at),
        expires_local = crate::names::local_time(Some(&issued.expires_at)),
        explain = tr(
            l,
            "出示此码即可乘车、借书、挂号、入住、办事。每个场景只能读到它需要的信息；码每30秒自动刷新，截图无效。",
            "Show this code to ride, borrow, register, check in or be served. Each place learns only what it needs; the code refreshes every 30 s, so a screenshot does not work."
        ),
        text_label = tr(l, "码文本", "Code text"),
        code = escape(&issued.code),
        renew = tr(l, "挂失并重置", "Report lost and reset"),
        renew_hint = tr(
            l,
            "手机丢失时使用：此前所有码立即失效",
            "when a phone is lost: every earlier code is refused at once"
        ),
        cards_title = tr(l, "已绑定的证照卡", "Bound cards and licences"),
        c1 = tr(l, "类型", "Kind"),
        c2 = tr(l, "号码", "Number"),
        c3 = tr(l, "来源", "Source"),
        bind = tr(l, "绑定", "Bind"),
        scans_title = tr(l, "扫码记录", "Where my code was scanned"),
        s1 = tr(l, "时间", "Time"),
        s2 = tr(l, "场景", "Scenario"),
        s3 = tr(l, "结果", "Result"),
    );
    (
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        page(l, tr(l, "我的码", "My code"), &body),
    )
        .into_response()
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct FreshCode {
    svg: String,
    code: String,
    expires_at: String,
    expires_local: String,
}

/// A fresh code for 我的码's refresh (the page's session, not an API token).
#[utoipa::path(get, path = "/ui/codes/mine/qr", tag = "ui",
    responses((status = 200, body = FreshCode), (status = 303, description = "to the sign-in page"), (status = 403)))]
pub(crate) async fn fresh(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    match web.codes.issue(&viewer, None).await {
        Ok(issued) => (
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            axum::Json(FreshCode {
                expires_local: crate::names::local_time(Some(&issued.expires_at)),
                svg: issued.svg,
                code: issued.code,
                expires_at: issued.expires_at,
            }),
        )
            .into_response(),
        Err(problem) => problem.into_response(),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct CardForm {
    kind: String,
    id: String,
}

#[utoipa::path(post, path = "/ui/codes/cards", tag = "ui",
    request_body(content = CardForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "back to my code"), (status = 400), (status = 403), (status = 422)))]
pub(crate) async fn bind(
    State(web): State<Web>,
    headers: HeaderMap,
    form: Result<axum::extract::Form<CardForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let Ok(axum::extract::Form(form)) = form else {
        return crate::refusal(
            l,
            &Problem::bad_request("send a kind and a number"),
            "/ui/codes/mine",
        );
    };
    let result = web.codes.bind_card(&viewer, &form.kind, &form.id).await;
    answered(
        &viewer,
        l,
        "code.card.bind",
        format!("card:{}", form.kind),
        "/ui/codes/mine",
        result,
    )
}

#[utoipa::path(post, path = "/ui/codes/cards/{handle}/revoke", tag = "ui", params(("handle" = String, Path)),
    responses((status = 303, description = "back to my code"), (status = 403), (status = 404)))]
pub(crate) async fn revoke_card(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(handle): ApiPath<String>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let result = web.codes.revoke_card(&viewer, &handle).await;
    answered(
        &viewer,
        l,
        "code.card.revoke",
        format!("card:{handle}"),
        "/ui/codes/mine",
        result,
    )
}

#[utoipa::path(post, path = "/ui/codes/renewal", tag = "ui",
    responses((status = 303, description = "back to my code"), (status = 403)))]
pub(crate) async fn renew(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let result = web.codes.renew(&viewer).await;
    answered(
        &viewer,
        l,
        "code.renew",
        "code:mine".into(),
        "/ui/codes/mine",
        result,
    )
}

/// The scenarios the viewer verifies at.
fn my_scenarios<'a>(web: &'a Web, viewer: &Principal) -> Vec<&'a yunnao_codes::hub::Scenario> {
    web.codes
        .scenarios()
        .iter()
        .filter(|s| viewer.may(Resource::CodeScans, Action::Write, &s.department))
        .collect()
}

fn scanner_page(
    web: &Web,
    shell: &Shell,
    chosen: Option<&str>,
    code: &str,
    outcome: Option<Result<ScanAnswer, Problem>>,
) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names,
    } = shell;
    let l = *l;
    let scenarios = my_scenarios(web, viewer);
    if scenarios.is_empty() {
        return crate::refusal(
            l,
            &Problem::forbidden("your department operates no code scenario"),
            "/",
        );
    }
    let options: String = scenarios
        .iter()
        .map(|s| {
            format!(
                "<option value=\"{c}\"{sel}>{n} · {d}</option>",
                c = escape(&s.code),
                sel = if Some(s.code.as_str()) == chosen {
                    " selected"
                } else {
                    ""
                },
                n = escape(&s.name_zh),
                d = escape(names.get(&s.department).map_or(&s.department, |n| n)),
            )
        })
        .collect();
    let verdict = match outcome {
        None => String::new(),
        Some(Err(problem)) => format!(
            "<section class=\"verdict refused\" role=\"status\"><h3>{}</h3><p>{}</p></section>",
            tr(l, "无法核验", "Not verified"),
            escape(problem.detail.as_deref().unwrap_or_default())
        ),
        Some(Ok(answer)) => {
            let stages: String = [
                (tr(l, "前缀", "prefix"), answer.prefix),
                ("Base45", answer.base45),
                (tr(l, "解压", "zlib"), answer.zlib),
                ("COSE", answer.cose),
                (tr(l, "声明", "claims"), answer.claims_valid),
                (tr(l, "签名", "signature"), answer.signature),
                (tr(l, "有效期", "expiry"), answer.expiry),
            ]
            .iter()
            .map(|(name, ok)| {
                format!(
                    "<li class=\"{}\">{} {name}</li>",
                    if *ok { "held" } else { "failed" },
                    if *ok { "✓" } else { "✗" }
                )
            })
            .collect();
            let claims: String = answer
                .claims
                .iter()
                .map(|(k, v)| {
                    let shown = match v {
                        serde_json::Value::String(s) => escape(s),
                        serde_json::Value::Bool(b) => if *b {
                            tr(l, "是", "yes")
                        } else {
                            tr(l, "否", "no")
                        }
                        .to_owned(),
                        serde_json::Value::Object(licence) => {
                            let doc = &licence["document"];
                            format!(
                                "<code>{}</code> · {} · {}",
                                escape(doc["id"].as_str().unwrap_or_default()),
                                escape(doc["holder_name"].as_str().unwrap_or_default()),
                                if licence["seal_verified"].as_bool() == Some(true) {
                                    tr(l, "电子印章有效", "seal verified")
                                } else {
                                    tr(l, "电子印章无效", "seal does not verify")
                                }
                            )
                        }
                        other => escape(&other.to_string()),
                    };
                    format!("<tr><th>{}</th><td>{shown}</td></tr>", claim_name(l, k))
                })
                .collect();
            format!(
                "<section class=\"verdict {cls}\" role=\"status\"><h3>{head}</h3>{reason}<ul class=\"because stages\">{stages}</ul>\
                 <p class=\"muted\">{issuer}</p><table class=\"claims\"><tbody>{claims}</tbody></table></section>",
                cls = if answer.accepted {
                    "accepted"
                } else {
                    "refused"
                },
                head = result_name(l, &answer.result),
                reason = answer
                    .reason
                    .as_deref()
                    .map(|r| format!("<p>{}</p>", escape(r)))
                    .unwrap_or_default(),
                issuer = answer
                    .issuer
                    .as_deref()
                    .map(|i| format!("{} {}", tr(l, "签发方", "issuer"), escape(i)))
                    .unwrap_or_default(),
            )
        }
    };
    let body = format!(
        "{top}<main class=\"case codes\">{nav}<h2>{title}</h2>\
         <form method=\"post\" action=\"/ui/codes/scan\" class=\"scanner\" id=\"scanner\">\
         <label>{scenario} <select name=\"scenario\">{options}</select></label>\
         <label>{code_label}<textarea name=\"code\" id=\"scan-code\" rows=\"4\" required maxlength=\"4096\" placeholder=\"QD1:…\">{code}</textarea></label>\
         <p><button>{verify}</button> <button type=\"button\" id=\"scan-camera\" hidden>{camera}</button></p>\
         <video id=\"scan-video\" hidden playsinline muted></video></form>{verdict}\
         <p class=\"muted\">{hint}</p></main>",
        nav = sub_nav(l, viewer, "/ui/codes/scan"),
        title = tr(l, "扫码核验", "Scan a code"),
        scenario = tr(l, "应用场景", "Scenario"),
        code_label = tr(l, "码（扫码枪输入或粘贴）", "Code (scanner input or paste)"),
        code = escape(code),
        verify = tr(l, "核验", "Verify"),
        camera = tr(l, "用摄像头扫码", "Use the camera"),
        hint = tr(
            l,
            "核验只返回本场景获准读取的信息；每次核验都记入扫码日志，持码人可查看。",
            "A scan returns only what this scenario may learn; every scan is logged and the holder sees it."
        ),
    );
    page(l, tr(l, "扫码核验", "Scan"), &body).into_response()
}

#[utoipa::path(get, path = "/ui/codes/scan", tag = "ui",
    responses((status = 200, description = "the scanner"), (status = 303, description = "to the sign-in page"), (status = 403)))]
pub(crate) async fn scanner(State(web): State<Web>, headers: HeaderMap) -> Response {
    let shell = match shell(&web, &headers, "codes").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    scanner_page(&web, &shell, None, "", None)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ScanForm {
    scenario: String,
    code: String,
}

#[utoipa::path(post, path = "/ui/codes/scan", tag = "ui",
    request_body(content = ScanForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "the verdict"), (status = 303, description = "to the sign-in page"), (status = 400), (status = 403)))]
pub(crate) async fn scan(
    State(web): State<Web>,
    headers: HeaderMap,
    form: Result<axum::extract::Form<ScanForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let shell = match shell(&web, &headers, "codes").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(axum::extract::Form(form)) = form else {
        return crate::refusal(
            shell.l,
            &Problem::bad_request("send a scenario and a code"),
            "/ui/codes/scan",
        );
    };
    let code: String = form.code.chars().take(4_096).collect();
    let outcome = web
        .codes
        .scan(
            &shell.viewer,
            yunnao_codes::hub::Scan {
                scenario: form.scenario.clone(),
                code: code.clone(),
            },
        )
        .await;
    let n = note(
        &shell.viewer,
        "code.scan",
        format!(
            "scenario:{} result:{}",
            form.scenario,
            outcome.as_ref().map_or("error", |a| a.result.as_str())
        ),
    );
    // A refused code is shown with the form kept, so the operator sees why.
    (
        Extension(n),
        scanner_page(&web, &shell, Some(&form.scenario), "", Some(outcome)),
    )
        .into_response()
}

/// The bureau's page: scenarios and their figures, the keys, the trust list.
#[utoipa::path(get, path = "/ui/codes", tag = "ui",
    responses((status = 200, description = "scenarios and figures"), (status = 303, description = "to the sign-in page"), (status = 500)))]
pub(crate) async fn bureau(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names,
    } = match shell(&web, &headers, "codes").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let figures = match web.codes.figures(Some(&viewer)).await {
        Ok(f) => f,
        Err(problem) => return crate::refusal(l, &problem, "/"),
    };
    let days: Vec<String> = figures
        .scenario_figures
        .first()
        .map(|f| f.per_day.iter().map(|(d, _)| d[5..].to_owned()).collect())
        .unwrap_or_default();
    let rows: String = figures
        .scenario_figures
        .iter()
        .map(|f| {
            let per_day: String = f.per_day.iter().map(|(_, n)| format!("<td class=\"num\">{n}</td>")).collect();
            let refusals: String = f
                .refusals_24h
                .iter()
                .map(|(r, n)| format!("{} {n}", result_name(l, r)))
                .collect::<Vec<_>>()
                .join("，");
            format!(
                "<tr><td>{name}</td><td>{cat}</td><td>{dept}</td><td>{claims}</td><td class=\"num\">{scans}</td><td class=\"num\">{ok}</td><td>{refusals}</td>{per_day}</tr>",
                name = escape(&f.name_zh),
                cat = escape(&f.category),
                dept = escape(names.get(&f.department).map_or(&f.department, |n| n)),
                claims = web
                    .codes
                    .scenarios()
                    .iter()
                    .find(|s| s.code == f.code)
                    .map(|s| s.claims.iter().map(|c| claim_name(l, c)).collect::<Vec<_>>().join("、"))
                    .unwrap_or_default(),
                scans = f.scans_24h,
                ok = f.accepted_24h,
                refusals = if refusals.is_empty() { "—".into() } else { refusals },
            )
        })
        .collect();
    let day_heads: String = days.iter().map(|d| format!("<th>{d}</th>")).collect();
    let admin = viewer.may(Resource::CodeScheme, Action::Write, "");
    let scheme = if admin {
        let keys = web
            .codes
            .key_set()
            .await
            .map(|k| k.document.keys)
            .unwrap_or_default();
        let key_rows: String = keys
            .iter()
            .map(|k| {
                format!(
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    escape(&k.kid),
                    escape(&k.algorithm),
                    k.retired_at
                        .as_deref()
                        .map(|t| format!(
                            "{} {}",
                            tr(l, "已轮换于", "retired"),
                            crate::names::local_time(Some(t))
                        ))
                        .unwrap_or_else(|| tr(l, "使用中", "active").to_owned())
                )
            })
            .collect();
        let trust_rows: String = web
            .codes
            .trusted()
            .iter()
            .map(|t| {
                format!(
                    "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    escape(&t.name),
                    escape(&t.prefix),
                    escape(&t.kid),
                    escape(&t.algorithm),
                    escape(&t.subject)
                )
            })
            .collect();
        format!(
            "<h3>{keys_title}</h3><table><thead><tr><th>{k1}</th><th>{k2}</th><th>{k3}</th></tr></thead><tbody>{key_rows}</tbody></table>\
             <form method=\"post\" action=\"/ui/codes/keys/rotate\" class=\"inline\"><label>{k2} <select name=\"algorithm\"><option>SM2-SM3</option><option>ES256</option></select></label> <button>{rotate}</button></form>\
             <h3>{trust_title}</h3><table><thead><tr><th>{t1}</th><th>{t2}</th><th>{t3}</th><th>{k2}</th><th>{t4}</th></tr></thead><tbody>{trust_rows}</tbody></table>\
             <form method=\"post\" action=\"/ui/codes/trust\" class=\"stacked\"><label>{t1} <input name=\"name\" required maxlength=\"100\"></label>\
             <label>{t2} <input name=\"prefix\" required maxlength=\"8\" placeholder=\"HC1:\"></label>\
             <label>{cert} <textarea name=\"certificate\" rows=\"5\" required placeholder=\"-----BEGIN CERTIFICATE-----\"></textarea></label><button>{trust}</button></form>",
            keys_title = tr(
                l,
                "签名密钥（公开密钥集 /api/v1/codes/keys）",
                "Signing keys (published at /api/v1/codes/keys)"
            ),
            k1 = tr(l, "密钥标识", "Key id"),
            k2 = tr(l, "算法", "Algorithm"),
            k3 = tr(l, "状态", "State"),
            rotate = tr(l, "轮换密钥", "Rotate"),
            trust_title = tr(l, "互认的其他签发方", "Other issuers trusted"),
            t1 = tr(l, "名称", "Name"),
            t2 = tr(l, "前缀", "Prefix"),
            t3 = tr(l, "密钥标识", "Key id"),
            t4 = tr(l, "证书主体", "Certificate subject"),
            cert = tr(
                l,
                "签发方证书（PEM 或 Base64）",
                "Issuer certificate (PEM or base64)"
            ),
            trust = tr(l, "加入信任列表", "Trust"),
        )
    } else {
        String::new()
    };
    let body = format!(
        "{top}<main class=\"case codes\">{nav}<h2>{title}</h2>\
         <p class=\"figures\"><strong>{live}</strong> / {all} {live_label} · {today_label} <strong>{today}</strong></p>\
         <table class=\"scenarios\"><thead><tr><th>{h1}</th><th>{h2}</th><th>{h3}</th><th>{h4}</th><th>{h5}</th><th>{h6}</th><th>{h7}</th>{day_heads}</tr></thead><tbody>{rows}</tbody></table>{scheme}</main>",
        nav = sub_nav(l, &viewer, "/ui/codes"),
        title = tr(l, "一码通城应用场景", "One-code scenarios"),
        live = figures.live_scenarios,
        all = figures.scenarios,
        live_label = tr(
            l,
            "个场景近7日在用（计划目标 ≥ 30）",
            "scenarios live in the last 7 days (plan target ≥ 30)"
        ),
        today_label = tr(l, "今日核验", "scans today"),
        today = figures.scans_today,
        h1 = tr(l, "场景", "Scenario"),
        h2 = tr(l, "领域", "Field"),
        h3 = tr(l, "运营部门", "Operator"),
        h4 = tr(l, "可读取", "May learn"),
        h5 = tr(l, "24小时核验", "Scans 24 h"),
        h6 = tr(l, "通过", "Accepted"),
        h7 = tr(l, "拒绝（按原因）", "Refusals by reason"),
    );
    page(l, tr(l, "一码通城", "One code"), &body).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct RotateForm {
    algorithm: String,
}

#[utoipa::path(post, path = "/ui/codes/keys/rotate", tag = "ui",
    request_body(content = RotateForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "back to the scenarios"), (status = 400), (status = 403), (status = 422)))]
pub(crate) async fn rotate(
    State(web): State<Web>,
    headers: HeaderMap,
    form: Result<axum::extract::Form<RotateForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let Ok(axum::extract::Form(form)) = form else {
        return crate::refusal(l, &Problem::bad_request("send an algorithm"), "/ui/codes");
    };
    let result = web.codes.rotate(&viewer, &form.algorithm).await;
    answered(
        &viewer,
        l,
        "code.key.rotate",
        format!("code-key:{}", form.algorithm),
        "/ui/codes",
        result,
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct TrustForm {
    name: String,
    prefix: String,
    certificate: String,
}

#[utoipa::path(post, path = "/ui/codes/trust", tag = "ui",
    request_body(content = TrustForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "back to the scenarios"), (status = 400), (status = 403), (status = 409), (status = 422)))]
pub(crate) async fn trust(
    State(web): State<Web>,
    headers: HeaderMap,
    form: Result<axum::extract::Form<TrustForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let Ok(axum::extract::Form(form)) = form else {
        return crate::refusal(
            l,
            &Problem::bad_request("send a name, a prefix and a certificate"),
            "/ui/codes",
        );
    };
    let result = web
        .codes
        .trust(
            &viewer,
            yunnao_codes::hub::NewTrustedIssuer {
                name: form.name.clone(),
                prefix: form.prefix,
                certificate: form.certificate,
            },
        )
        .await;
    answered(
        &viewer,
        l,
        "code.trust.add",
        format!("code-issuer:{}", form.name),
        "/ui/codes",
        result,
    )
}
