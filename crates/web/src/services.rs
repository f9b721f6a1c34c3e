//! The service hall's pages (网上办事大厅): the catalogue and bundles, a service's guide told
//! once with its form (licences filled in from the library, only what no licence covers
//! uploaded), my applications, licences, messages and grants; the approval workbench for
//! department staff (their steps with deadlines, the materials with their seals checked,
//! accept / return / decline, approve / reject), the window operator's filing for an applicant,
//! and the bureau's figures. Every action goes through the hub's own calls, as the API does.

use crate::names::local_time;
use crate::shell::{Shell, answered, note, shell, tr};
use crate::text::Lang;
use crate::workbench::is_citizen;
use crate::{Web, escape, lang, page};
use axum::Extension;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, header as http_header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use yunnao_core::Problem;
use yunnao_http::{ApiPath, ApiQuery};
use yunnao_identity::{Action, AuditNote, Principal, Resource};
use yunnao_services::applications::{Application, NewApplication};
use yunnao_services::catalogue::ApplicationPlan;

fn state_name(l: Lang, state: &str) -> &'static str {
    match (state, l) {
        ("submitted", Lang::Zh) => "待受理",
        ("returned", Lang::Zh) => "待补正",
        ("approving", Lang::Zh) => "审批中",
        ("approved", Lang::Zh) => "已办结（准予）",
        ("rejected", Lang::Zh) => "已办结（不予）",
        ("open", Lang::Zh) => "待审批",
        ("waiting", Lang::Zh) => "未到达",
        ("closed", Lang::Zh) => "已关闭",
        ("submitted", _) => "to receive",
        ("returned", _) => "to complete",
        ("approving", _) => "approving",
        ("approved", _) => "approved",
        ("rejected", _) => "refused",
        ("open", _) => "open",
        ("waiting", _) => "not reached",
        ("closed", _) => "closed",
        _ => "—",
    }
}

fn step_state_name(l: Lang, state: &str) -> &'static str {
    match (state, l) {
        ("approved", Lang::Zh) => "同意",
        ("rejected", Lang::Zh) => "不同意",
        ("approved", _) => "approved",
        ("rejected", _) => "rejected",
        (other, l) => state_name(l, other),
    }
}

fn licence_status_name(l: Lang, status: &str) -> &'static str {
    match (status, l) {
        ("valid", Lang::Zh) => "有效",
        ("suspended", Lang::Zh) => "暂停",
        ("revoked", Lang::Zh) => "吊销",
        ("expired", Lang::Zh) => "过期",
        ("valid", _) => "valid",
        ("suspended", _) => "suspended",
        ("revoked", _) => "revoked",
        _ => "expired",
    }
}

fn channel_name(l: Lang, channel: &str) -> &'static str {
    match (channel, l) {
        ("web", Lang::Zh) => "网上办理",
        ("mobile", Lang::Zh) => "掌上办理",
        ("window", Lang::Zh) => "窗口办理",
        ("kiosk", Lang::Zh) => "自助终端",
        ("web", _) => "online",
        ("mobile", _) => "mobile",
        ("window", _) => "at the window",
        _ => "kiosk",
    }
}

/// 12345678 → 12,345,678.
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn licence_name(code: &str) -> &'static str {
    yunnao_services::licences::TYPES
        .iter()
        .find(|t| t.0 == code)
        .map_or("证照", |t| t.2)
}

/// The hall's own navigation: citizens' pages, or the departments'.
fn sub_nav(l: Lang, viewer: &Principal, active: &str) -> String {
    let mut links = vec![("/ui/services", tr(l, "办事大厅", "Service hall"))];
    if is_citizen(viewer) {
        links.push((
            "/ui/services/mine",
            tr(l, "我的办件与证照", "My applications & licences"),
        ));
    } else {
        links.push((
            "/ui/services/workbench",
            tr(l, "审批工作台", "Approval workbench"),
        ));
        links.push(("/ui/services/figures", tr(l, "政务服务统计", "Figures")));
    }
    crate::shell::sub_nav(tr(l, "政务服务", "Services"), &links, active)
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HallQuery {
    /// Words in a service's name.
    q: Option<String>,
}

/// 网上办事大厅: the catalogue and the “一件事” bundles.
#[utoipa::path(get, path = "/ui/services", tag = "ui", params(HallQuery),
    responses((status = 200, description = "the service hall"), (status = 303, description = "to the sign-in page")))]
pub(crate) async fn hall(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<HallQuery>,
) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names,
    } = match shell(&web, &headers, "services").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let services = &web.services;
    let catalogue = services.store.current();
    let words: String = query
        .q
        .unwrap_or_default()
        .trim()
        .chars()
        .take(100)
        .collect();
    let bundles: String = catalogue
        .bundles
        .iter()
        .map(|b| {
            format!(
                "<li><a href=\"/ui/services/apply/{code}\">{name}</a> <small class=\"muted\">{n} {items}</small></li>",
                code = escape(&b.code),
                name = escape(if l == Lang::Zh { &b.name_zh } else { &b.name_en }),
                n = b.services.len(),
                items = tr(l, "个事项，一次申请", "services, one application"),
            )
        })
        .collect();
    let rows: String = catalogue
        .services
        .iter()
        .filter(|s| words.is_empty() || s.name_zh.contains(&words) || s.name_en.to_lowercase().contains(&words.to_lowercase()))
        .map(|s| {
            format!(
                "<tr><td><a href=\"/ui/services/apply/{code}\">{name}</a><br><small class=\"muted\">{code}</small></td><td>{dept}</td><td>{days} {wd}</td><td>{online}</td></tr>",
                code = escape(&s.code),
                name = escape(if l == Lang::Zh { &s.name_zh } else { &s.name_en }),
                dept = escape(names.get(&s.department).map_or(&s.department, |n| n)),
                days = s.promised_days,
                wd = tr(l, "个工作日", "working days"),
                online = if s.fully_online { tr(l, "全程网办", "fully online") } else { tr(l, "需到窗口", "at the window") },
            )
        })
        .collect();
    let body = format!(
        "{top}<main class=\"case services\">{nav}<h2>{title}</h2><p class=\"muted\">{rate_label} <strong id=\"online-rate\">{rate}%</strong></p>\
         <form method=\"get\" action=\"/ui/services\" role=\"search\"><input type=\"search\" name=\"q\" value=\"{q}\" maxlength=\"100\" aria-label=\"{find}\" placeholder=\"{find}\"><button>{find}</button></form>\
         <h3>{bundles_title}</h3><ul class=\"bundles\">{bundles}</ul>\
         <h3>{catalogue_title}</h3><table><thead><tr><th>{c1}</th><th>{c2}</th><th>{c3}</th><th>{c4}</th></tr></thead><tbody>{rows}</tbody></table></main>",
        nav = sub_nav(l, &viewer, "/ui/services"),
        title = tr(l, "网上办事大厅", "Online service hall"),
        rate_label = tr(l, "可网办率", "Online-handling rate"),
        rate = catalogue.online_rate_pct(),
        q = escape(&words),
        find = tr(l, "搜索事项", "Find a service"),
        bundles_title = tr(l, "“一件事”集成办", "One application for a life event"),
        catalogue_title = tr(l, "事项目录", "Catalogue"),
        c1 = tr(l, "事项", "Service"),
        c2 = tr(l, "实施部门", "Department"),
        c3 = tr(l, "承诺时限", "Promised"),
        c4 = tr(l, "办理方式", "Channel"),
    );
    page(l, tr(l, "网上办事大厅", "Service hall"), &body).into_response()
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyQuery {
    /// At the window: the applicant's identity number or credit code.
    #[serde(rename = "for")]
    on_behalf_of: Option<String>,
}

/// A service's or bundle's guide (一次告知) and, for a bound holder or the window, its form.
#[utoipa::path(get, path = "/ui/services/apply/{code}", tag = "ui", params(("code" = String, Path), ApplyQuery),
    responses((status = 200, description = "the guide and form"), (status = 303, description = "to the sign-in page"), (status = 404)))]
pub(crate) async fn guide(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(code): ApiPath<String>,
    ApiQuery(query): ApiQuery<ApplyQuery>,
) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names,
    } = match shell(&web, &headers, "services").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let services = &web.services;
    let catalogue = services.store.current();
    let Some(plan) = catalogue.plan(&code) else {
        return crate::refusal(
            l,
            &Problem::not_found(format!("no service {code}")),
            "/ui/services",
        );
    };
    let eligibility: String = catalogue
        .service(&code)
        .map(|s| s.eligibility.clone())
        .unwrap_or_else(|| {
            catalogue
                .bundle(&code)
                .into_iter()
                .flat_map(|b| b.services.iter())
                .filter_map(|c| catalogue.service(c))
                .flat_map(|s| s.eligibility.clone())
                .collect()
        })
        .iter()
        .map(|e| format!("<li>{}</li>", escape(e)))
        .collect();
    let stages: String = plan
        .stages
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let steps: Vec<String> = s
                .steps
                .iter()
                .map(|st| {
                    format!(
                        "{}·{}（{} {}）",
                        escape(names.get(&st.department).map_or(&st.department, |n| n)),
                        escape(&st.name_zh),
                        st.working_days,
                        tr(l, "个工作日", "working days")
                    )
                })
                .collect();
            format!(
                "<li>{} {}：{}</li>",
                tr(l, "第", "Stage"),
                n + 1,
                steps.join(if s.steps.len() > 1 { " ‖ " } else { "" })
            )
        })
        .collect();
    // The holder the form is for: the signed-in one, or at the window the one named.
    let window = query
        .on_behalf_of
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let holder = match window {
        Some(number) if !is_citizen(&viewer) => services
            .licences
            .holder_by_id(number)
            .await
            .ok()
            .flatten()
            .map(|h| h.holder_id),
        _ => services
            .licences
            .holder_of(&viewer)
            .await
            .ok()
            .flatten()
            .map(|h| h.holder_id),
    };
    let form = match &holder {
        None if is_citizen(&viewer) => format!(
            "<p class=\"muted\">{}</p>",
            tr(
                l,
                "您的账号尚未完成实名核验（绑定身份证号或统一社会信用代码），请到窗口办理。",
                "Your account is not yet bound to an identity number or credit code."
            )
        ),
        None => format!(
            "<form method=\"get\" action=\"/ui/services/apply/{code}\"><label>{label} <input name=\"for\" required maxlength=\"18\" value=\"{v}\"></label><button>{go}</button></form>",
            code = escape(&code),
            label = tr(
                l,
                "窗口代办：申请人身份证号或统一社会信用代码",
                "At the window: the applicant's number"
            ),
            v = escape(window.unwrap_or_default()),
            go = tr(l, "代为申请", "File for them"),
        ),
        Some(holder_id) => application_form(l, services, &plan, holder_id, window).await,
    };
    let body = format!(
        "{top}<main class=\"case services\">{nav}<h2>{name}</h2><p class=\"muted\">{code} · {dept} · {promised} {days} {wd}</p>\
         <h3>{e_title}</h3><ul>{eligibility}</ul><h3>{m_title}</h3><ul>{materials}</ul><h3>{s_title}</h3><ol class=\"stages\">{stages}</ol>\
         <h3>{r_title}</h3><p>{results}</p><h3>{f_title}</h3>{form}</main>",
        nav = sub_nav(l, &viewer, "/ui/services"),
        name = escape(&plan.name_zh),
        code = escape(&plan.code),
        dept = escape(names.get(&plan.department).map_or(&plan.department, |n| n)),
        promised = tr(l, "承诺时限", "promised in"),
        days = plan.promised_days,
        wd = tr(l, "个工作日", "working days"),
        e_title = tr(l, "申请条件", "Who may apply"),
        m_title = tr(l, "所需材料", "Materials"),
        materials = plan
            .materials
            .iter()
            .map(|m| format!(
                "<li>{} <small class=\"muted\">{}</small></li>",
                escape(&m.name_zh),
                if m.licence().is_some() {
                    tr(
                        l,
                        "电子证照自动调取，无需提交",
                        "from your e-licences, nothing to submit",
                    )
                } else {
                    tr(l, "上传 PDF/JPEG/PNG", "upload PDF/JPEG/PNG")
                }
            ))
            .collect::<String>(),
        s_title = tr(l, "办理流程（并联审批）", "Approval (in parallel)"),
        r_title = tr(l, "办理结果", "Result"),
        results = if plan.results.is_empty() {
            tr(l, "办结通知", "a notice of the decision").to_owned()
        } else {
            plan.results
                .iter()
                .map(|(_, r)| escape(&r.name_zh))
                .collect::<Vec<_>>()
                .join("、")
                + tr(
                    l,
                    "（电子证照，发放到证照库）",
                    " (e-licences into the library)",
                )
        },
        f_title = tr(l, "在线申请", "Apply"),
    );
    page(l, &plan.name_zh, &body).into_response()
}

async fn application_form(
    l: Lang,
    services: &yunnao_services::api::ServicesState,
    plan: &ApplicationPlan,
    holder_id: &str,
    window: Option<&str>,
) -> String {
    let held = services
        .licences
        .usable_of(holder_id)
        .await
        .unwrap_or_default();
    let mut materials = String::new();
    for (index, m) in plan.materials.iter().enumerate() {
        match m.licence() {
            Some(kind) => match held.iter().find(|(_, t)| t == kind) {
                Some((id, _)) => materials.push_str(&format!(
                    "<label class=\"consent\"><input type=\"checkbox\" name=\"consent\" value=\"{id}\" checked> {name}：{held} {id} <small class=\"muted\">{consent}</small></label>",
                    id = escape(id),
                    name = escape(&m.name_zh),
                    held = tr(l, "已调取电子证照", "from your library"),
                    consent = tr(l, "同意本次办理使用", "I allow this application to use it"),
                )),
                None => materials.push_str(&format!(
                    "<p class=\"refused\">{}：{}</p>",
                    escape(&m.name_zh),
                    tr(l, "证照库中没有有效的此类证照", "no valid licence of this kind in your library")
                )),
            },
            // Numbered, not named: multipart field names stay ASCII for every client.
            None => materials.push_str(&format!(
                "<label>{name} <input type=\"file\" name=\"upload:{index}\" accept=\"application/pdf,image/jpeg,image/png\" required></label>",
                name = escape(&m.name_zh)
            )),
        }
    }
    let required: Vec<&str> = plan.form["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .collect();
    let fields: String = plan.form["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, spec)| {
            format!(
                "<label>{title}{star} <input name=\"f:{name}\" maxlength=\"{max}\"{pattern}{req}></label>",
                title = escape(spec["title"].as_str().unwrap_or(name)),
                star = if required.contains(&name.as_str()) { " *" } else { "" },
                name = escape(name),
                max = spec["maxLength"].as_u64().unwrap_or(200),
                pattern = spec["pattern"].as_str().map(|p| format!(" pattern=\"{}\"", escape(p.trim_start_matches('^').trim_end_matches('$')))).unwrap_or_default(),
                req = if required.contains(&name.as_str()) { " required" } else { "" },
            )
        })
        .collect();
    let window_fields = window
        .map(|w| format!("<input type=\"hidden\" name=\"on_behalf_of\" value=\"{}\"><p class=\"muted\">{} {}</p>", escape(w), tr(l, "窗口代办，申请人：", "Filed at the window for"), escape(w)))
        .unwrap_or_default();
    format!(
        "<form method=\"post\" action=\"/ui/services/apply/{code}\" enctype=\"multipart/form-data\" class=\"apply\">{window_fields}{fields}{materials}<button>{submit}</button></form>",
        code = escape(&plan.code),
        submit = tr(l, "提交申请", "Submit"),
    )
}

const MAX_PARTS: usize = 60;

/// Files the application the guide's form describes: fields `f:NAME`, consents, files
/// `upload:MATERIAL` stored as uploads first.
#[utoipa::path(post, path = "/ui/services/apply/{code}", tag = "ui", params(("code" = String, Path)),
    request_body(content = String, content_type = "multipart/form-data"),
    responses((status = 303, description = "to the application"), (status = 400), (status = 403), (status = 404), (status = 413), (status = 415), (status = 422)))]
pub(crate) async fn apply(
    State(web): State<Web>,
    ApiPath(code): ApiPath<String>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let back = format!("/ui/services/apply/{code}");
    let services = &web.services;
    let plan = services.store.current().plan(&code);
    let mut form = serde_json::Map::new();
    let mut consent = Vec::new();
    let mut uploads = BTreeMap::new();
    let mut on_behalf_of = None;
    let parsed: Result<(), Problem> = async {
        let mut multipart = axum::extract::Multipart::from_request(request, &())
            .await
            .map_err(|e| Problem::bad_request(format!("unreadable form: {e}")))?;
        let mut parts = 0;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| Problem::bad_request(format!("unreadable form: {e}")))?
        {
            parts += 1;
            if parts > MAX_PARTS {
                return Err(Problem::bad_request(format!("at most {MAX_PARTS} fields")));
            }
            let name = field.name().unwrap_or_default().to_owned();
            let declared = field.content_type().unwrap_or("").to_owned();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| Problem::bad_request(format!("part {name}: {e}")))?;
            if let Some(index) = name.strip_prefix("upload:") {
                if bytes.is_empty() {
                    continue;
                }
                let material = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| plan.as_ref().and_then(|p| p.materials.get(i)))
                    .map(|m| m.name_zh.clone())
                    .ok_or_else(|| {
                        Problem::bad_request(format!("{name} is no material of this service"))
                    })?;
                let upload = yunnao_services::uploads::store(
                    &services.db,
                    &viewer,
                    &declared,
                    bytes.to_vec(),
                )
                .await?;
                uploads.insert(material, upload.id);
                continue;
            }
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| Problem::bad_request(format!("field {name} is not UTF-8")))?;
            let text = text.trim().to_owned();
            if let Some(key) = name.strip_prefix("f:") {
                if !text.is_empty() {
                    form.insert(key.to_owned(), serde_json::Value::String(text));
                }
            } else if name == "consent" {
                consent.push(text);
            } else if name == "on_behalf_of" && !text.is_empty() {
                on_behalf_of = Some(text);
            }
        }
        Ok(())
    }
    .await;
    if let Err(problem) = parsed {
        return crate::refusal(l, &problem, &back);
    }
    let channel = if on_behalf_of.is_some() {
        "window"
    } else {
        "web"
    };
    let new = NewApplication {
        service_code: code.clone(),
        form,
        consent,
        uploads,
        channel: Some(channel.into()),
        on_behalf_of,
    };
    let note = |target: String| AuditNote {
        action: Some("application.submit".into()),
        target: Some(target),
        actor: Some(viewer.name.clone()),
        department: Some(viewer.department.clone()),
        ..AuditNote::default()
    };
    match services.applications.submit(&viewer, new).await {
        Ok(app) => (
            Extension(note(format!("application:{}", app.id))),
            Redirect::to(&format!("/ui/services/applications/{}", app.id)),
        )
            .into_response(),
        Err(problem) => (
            Extension(note(format!("service:{code}"))),
            crate::refusal(l, &problem, &back),
        )
            .into_response(),
    }
}

fn application_rows(l: Lang, apps: &[Application]) -> String {
    if apps.is_empty() {
        return format!(
            "<tr><td colspan=\"5\" class=\"muted\">{}</td></tr>",
            tr(l, "暂无", "None")
        );
    }
    apps.iter()
        .map(|a| {
            let flag = if a.overdue || a.steps.iter().any(|s| s.overdue && s.state == "open") {
                format!(" <span class=\"flag overdue\">{}</span>", tr(l, "超期", "overdue"))
            } else if a.warned || a.steps.iter().any(|s| s.warned && s.state == "open") {
                format!(" <span class=\"flag warning\">{}</span>", tr(l, "临期", "due soon"))
            } else {
                String::new()
            };
            format!(
                "<tr><td><a href=\"/ui/services/applications/{id}\">{name}</a></td><td>{holder}</td><td>{state}{flag}</td><td>{due}</td><td>{at}</td></tr>",
                id = escape(&a.id),
                name = escape(&a.service_name),
                holder = escape(&a.holder_name),
                state = state_name(l, &a.state),
                due = local_time(a.due_at.as_deref()),
                at = local_time(Some(&a.created_at)),
            )
        })
        .collect()
}

/// 我的办件、我的证照、我的消息、我的奖补.
#[utoipa::path(get, path = "/ui/services/mine", tag = "ui",
    responses((status = 200, description = "my applications, licences, messages and grants"), (status = 303, description = "to the sign-in page")))]
pub(crate) async fn mine(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names,
    } = match shell(&web, &headers, "services").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let services = &web.services;
    let apps = services
        .applications
        .mine(&viewer)
        .await
        .unwrap_or_default();
    let licences = services.licences.mine(&viewer).await.unwrap_or_default();
    let messages = yunnao_services::messages::Messages::mine(&services.db, &viewer)
        .await
        .unwrap_or_default();
    // Every use of each licence, for its holder to see (无证明 with consent).
    let mut uses: HashMap<String, String> = HashMap::new();
    for lic in &licences {
        let list = services
            .licences
            .uses(&viewer, &lic.document.id)
            .await
            .unwrap_or_default();
        if list.is_empty() {
            continue;
        }
        let items: String = list
            .iter()
            .take(20)
            .map(|u| {
                format!(
                    "<li>{} {} {}</li>",
                    local_time(Some(&u.at)),
                    escape(names.get(&u.department).map_or(&u.department, |n| n)),
                    if u.action == "consented" {
                        tr(l, "经您同意调用", "used with your consent")
                    } else {
                        tr(l, "审批时查阅", "read while deciding")
                    }
                )
            })
            .collect();
        uses.insert(
            lic.document.id.clone(),
            format!(
                "<details><summary>{} {}</summary><ul>{items}</ul></details>",
                tr(l, "使用记录", "Uses"),
                list.len()
            ),
        );
    }
    let licence_rows: String = licences
        .iter()
        .map(|lic| {
            format!(
                "<tr><td>{name}</td><td><code>{id}</code></td><td>{issuer}</td><td>{status}{seal}</td><td><a href=\"/api/v1/services/licences/{id}/verification\">{verify}</a></td><td>{uses}</td></tr>",
                uses = uses.get(&lic.document.id).cloned().unwrap_or_default(),
                name = escape(lic.document.data.get("name_zh").and_then(|v| v.as_str()).unwrap_or(licence_name(&lic.document.licence_type))),
                id = escape(&lic.document.id),
                issuer = escape(names.get(&lic.document.issuer).map_or(&lic.document.issuer, |n| n)),
                status = licence_status_name(l, &lic.status),
                seal = if lic.seal_verified { tr(l, " · 签章有效", " · seal verified") } else { tr(l, " · 签章无效", " · seal does not verify") },
                verify = tr(l, "验证", "verify"),
            )
        })
        .collect();
    let message_items: String = messages
        .iter()
        .take(30)
        .map(|m| {
            format!(
                "<li><small class=\"muted\">{}</small> {}</li>",
                local_time(Some(&m.created_at)),
                escape(&m.text_zh)
            )
        })
        .collect();
    let grants = if viewer.has_role(yunnao_identity::Role::Enterprise) {
        let standings = services.grants.mine(&viewer).await.unwrap_or_default();
        let rows: String = standings
            .iter()
            .map(|s| {
                let because: String = s.decision.because.iter().map(|(text, held)| format!("<li class=\"{}\">{} {}</li>", if *held { "held" } else { "failed" }, if *held { "✓" } else { "✗" }, escape(text))).collect();
                let outcome = match (&s.grant, &s.appeal) {
                    (Some(g), _) if g.state == "invited" => format!("{} {} 元 <form method=\"post\" action=\"/ui/services/policies/{}/confirm\"><button>{}</button></form>", tr(l, "可享", "offered"), g.amount_yuan, escape(&s.policy_code), tr(l, "确认领取", "Confirm")),
                    (Some(g), _) => format!("<strong>{} {} 元</strong>（{}）", tr(l, "已兑现", "paid"), g.amount_yuan, tr(l, "免申即享，已加盖电子印章", "without applying, sealed")),
                    (None, Some(a)) => format!("{}：{}", tr(l, "申诉", "appeal"), escape(&if a.answer.is_empty() { a.state.clone() } else { a.answer.clone() })),
                    (None, None) => format!("<form method=\"post\" action=\"/ui/services/policies/{}/appeal\"><input name=\"reason\" required maxlength=\"1000\" aria-label=\"{r}\" placeholder=\"{r}\"><button>{a}</button></form>", escape(&s.policy_code), r = tr(l, "申诉理由", "reason"), a = tr(l, "申诉", "Appeal")),
                };
                format!("<tr><td>{}</td><td><ul class=\"because\">{because}</ul></td><td>{outcome}</td></tr>", escape(&s.policy_name))
            })
            .collect();
        format!(
            "<h3>{}</h3><table><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table>",
            tr(
                l,
                "我的惠企政策（免申即享）",
                "My policies (paid without applying)"
            ),
            tr(l, "政策", "Policy"),
            tr(l, "依据", "Why"),
            tr(l, "结果", "Outcome")
        )
    } else {
        String::new()
    };
    let body = format!(
        "{top}<main class=\"case services\">{nav}<h2>{title}</h2><h3>{a_title}</h3><table><thead><tr><th>{c1}</th><th>{c2}</th><th>{c3}</th><th>{c4}</th><th>{c5}</th></tr></thead><tbody>{apps}</tbody></table>\
         <h3>{l_title}</h3><table><thead><tr><th>{c6}</th><th>{c7}</th><th>{c8}</th><th>{c9}</th><th></th><th></th></tr></thead><tbody>{licence_rows}</tbody></table>{grants}\
         <h3>{m_title}</h3><ul class=\"messages\">{message_items}</ul></main>",
        nav = sub_nav(l, &viewer, "/ui/services/mine"),
        title = tr(l, "我的办件与证照", "My applications and licences"),
        a_title = tr(l, "我的办件", "My applications"),
        apps = application_rows(l, &apps),
        c1 = tr(l, "事项", "Service"),
        c2 = tr(l, "申请人", "Applicant"),
        c3 = tr(l, "状态", "State"),
        c4 = tr(l, "办结时限", "Due"),
        c5 = tr(l, "提交时间", "Filed"),
        l_title = tr(l, "我的电子证照", "My e-licences"),
        c6 = tr(l, "证照", "Licence"),
        c7 = tr(l, "证照编号", "Number"),
        c8 = tr(l, "发证部门", "Issuer"),
        c9 = tr(l, "状态", "State"),
        m_title = tr(l, "我的消息", "My messages"),
    );
    page(l, tr(l, "我的办件与证照", "My applications"), &body).into_response()
}

/// One application: its steps and deadlines, materials with their seals checked now, and the
/// actions the viewer's department may take.
#[utoipa::path(get, path = "/ui/services/applications/{id}", tag = "ui", params(("id" = String, Path)),
    responses((status = 200, description = "the application"), (status = 303, description = "to the sign-in page"), (status = 404)))]
pub(crate) async fn application(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names,
    } = match shell(&web, &headers, "services").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let services = &web.services;
    let app = match services.applications.get(&viewer, &id).await {
        Ok(app) => app,
        Err(p) => return crate::refusal(l, &p, "/ui/services"),
    };
    let dept = |code: &str| escape(names.get(code).map_or(code, |n| n));
    let mut materials = String::new();
    for m in &app.materials {
        let detail = match (&m.licence_id, &m.upload_id) {
            (Some(licence), _) => match services.licences.verify(licence).await {
                Ok(v) if v.genuine => format!(
                    "{} <code>{}</code> · {}",
                    tr(l, "电子证照", "e-licence"),
                    escape(licence),
                    tr(l, "签章核验通过", "seal verified")
                ),
                Ok(v) => format!(
                    "<span class=\"refused\">{} <code>{}</code> · {}</span>",
                    tr(l, "电子证照", "e-licence"),
                    escape(licence),
                    escape(&v.reasons.join("；"))
                ),
                Err(_) => escape(licence),
            },
            (None, Some(upload)) => format!(
                "<a href=\"/ui/services/uploads/{u}\">{}</a> <small class=\"muted\">SM3 {}</small>",
                tr(l, "上传件", "upload"),
                escape(m.sm3.as_deref().unwrap_or("")),
                u = escape(upload)
            ),
            _ => String::new(),
        };
        materials.push_str(&format!("<li>{}：{detail}</li>", escape(&m.name_zh)));
    }
    let staff_of = |department: &str| viewer.may(Resource::Applications, Action::Write, department);
    let steps: String = app
        .steps
        .iter()
        .map(|s| {
            let action = if s.state == "open" && staff_of(&s.department) {
                format!(
                    "<form method=\"post\" action=\"/ui/services/applications/{id}/steps/{}/{}\" class=\"decide\"><input name=\"comment\" required maxlength=\"500\" aria-label=\"{c}\" placeholder=\"{c}\">\
                     <button name=\"approve\" value=\"true\">{yes}</button><button name=\"approve\" value=\"false\">{no}</button></form>",
                    s.stage, s.step, id = escape(&app.id), c = tr(l, "审批意见", "comment"), yes = tr(l, "同意", "Approve"), no = tr(l, "不同意", "Reject"),
                )
            } else {
                String::new()
            };
            let decided = s
                .decided_by
                .as_deref()
                .map(|b| format!("{}：{}", escape(b), escape(&s.comment)))
                .unwrap_or_default();
            let flag = if s.overdue {
                tr(l, " 超期", " overdue")
            } else if s.warned {
                tr(l, " 临期", " due soon")
            } else {
                ""
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{flag}</td><td>{decided}{action}</td></tr>",
                s.stage + 1,
                escape(&s.name_zh),
                dept(&s.department),
                step_state_name(l, &s.state),
                local_time(s.due_at.as_deref()),
            )
        })
        .collect();
    let receive = if app.state == "submitted" && staff_of(&app.department) {
        format!(
            "<form method=\"post\" action=\"/ui/services/applications/{id}/receipt\" class=\"receive\"><input name=\"reason\" maxlength=\"500\" aria-label=\"{r}\" placeholder=\"{r}\">\
             <button name=\"action\" value=\"accept\">{a}</button><button name=\"action\" value=\"return\">{b}</button><button name=\"action\" value=\"decline\">{c}</button></form>",
            id = escape(&app.id),
            r = tr(l, "补正或不予受理的理由", "reason to return or decline"),
            a = tr(l, "受理", "Accept"),
            b = tr(l, "退回补正", "Return"),
            c = tr(l, "不予受理", "Decline"),
        )
    } else {
        String::new()
    };
    let mut results = String::new();
    for r in &app.result_licences {
        let name = services
            .licences
            .get(&viewer, r)
            .await
            .ok()
            .and_then(|lic| {
                lic.document
                    .data
                    .get("name_zh")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| tr(l, "电子证照", "e-licence").to_owned());
        results.push_str(&format!(
            "<li>{name} <a href=\"/api/v1/services/licences/{r}/verification\"><code>{r}</code></a></li>",
            name = escape(&name),
            r = escape(r)
        ));
    }
    let body = format!(
        "{top}<main class=\"case services\">{nav}<h2>{name}</h2><p class=\"muted\">{id} · {holder} · {channel}{window} · {state}</p>{reason}{receive}\
         <h3>{m_title}</h3><ul>{materials}</ul><h3>{s_title}</h3><table><thead><tr><th>#</th><th>{c1}</th><th>{c2}</th><th>{c3}</th><th>{c4}</th><th>{c5}</th></tr></thead><tbody>{steps}</tbody></table>\
         <h3>{r_title}</h3><ul>{results}</ul></main>",
        nav = sub_nav(l, &viewer, ""),
        name = escape(&app.service_name),
        id = escape(&app.id),
        holder = escape(&app.holder_name),
        channel = channel_name(l, &app.channel),
        window = if app.filed_by.is_some() {
            tr(l, "（窗口代办）", " (filed at the window)")
        } else {
            ""
        },
        state = state_name(l, &app.state),
        reason = if app.reason.is_empty() {
            String::new()
        } else {
            format!("<p class=\"refused\">{}</p>", escape(&app.reason))
        },
        m_title = tr(l, "申请材料", "Materials"),
        s_title = tr(l, "审批环节", "Steps"),
        c1 = tr(l, "环节", "Step"),
        c2 = tr(l, "部门", "Department"),
        c3 = tr(l, "状态", "State"),
        c4 = tr(l, "时限", "Due"),
        c5 = tr(l, "意见", "Decision"),
        r_title = tr(l, "办理结果（电子证照）", "Results (e-licences)"),
    );
    page(l, &app.service_name, &body).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ReceiptForm {
    action: String,
    #[serde(default)]
    reason: String,
}

/// Accept, return or decline, from the application page.
#[utoipa::path(post, path = "/ui/services/applications/{id}/receipt", tag = "ui", params(("id" = String, Path)),
    request_body(content = ReceiptForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "back to the application"), (status = 400), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub(crate) async fn receipt(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    form: Result<axum::extract::Form<ReceiptForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let back = format!("/ui/services/applications/{id}");
    let services = &web.services;
    let Ok(axum::extract::Form(form)) = form else {
        return crate::refusal(l, &Problem::bad_request("send an action"), &back);
    };
    let result = services
        .applications
        .receive(&viewer, &id, &form.action, &form.reason)
        .await;
    answered(
        &viewer,
        l,
        &format!("application.{}", form.action),
        format!("application:{id}"),
        &back,
        result,
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct DecideForm {
    approve: bool,
    comment: String,
}

/// Approve or reject a step, from the application page.
#[utoipa::path(post, path = "/ui/services/applications/{id}/steps/{stage}/{step}", tag = "ui",
    params(("id" = String, Path), ("stage" = i64, Path), ("step" = i64, Path)),
    request_body(content = DecideForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "back to the application"), (status = 400), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub(crate) async fn decide(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath((id, stage, step)): ApiPath<(String, i64, i64)>,
    form: Result<axum::extract::Form<DecideForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let back = format!("/ui/services/applications/{id}");
    let services = &web.services;
    let Ok(axum::extract::Form(form)) = form else {
        return crate::refusal(
            l,
            &Problem::bad_request("send a decision and a comment"),
            &back,
        );
    };
    let result = services
        .applications
        .decide(&viewer, &id, stage, step, form.approve, &form.comment)
        .await;
    answered(
        &viewer,
        l,
        if form.approve {
            "application.approve"
        } else {
            "application.reject"
        },
        format!("application:{id} step:{stage}.{step}"),
        &back,
        result,
    )
}

/// An uploaded material, for those who may read the application.
#[utoipa::path(get, path = "/ui/services/uploads/{id}", tag = "ui", params(("id" = String, Path)),
    responses((status = 200, description = "the file"), (status = 303, description = "to the sign-in page"), (status = 404)))]
pub(crate) async fn upload(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let missing = || Problem::not_found(format!("no upload {id} of yours"));
    let result: Result<(String, Vec<u8>), Problem> = async {
        let services = &web.services;
        let (found, by) = yunnao_services::uploads::find(&services.db, &id)
            .await?
            .ok_or_else(missing)?;
        let allowed = by == viewer.id
            || match &found.application_id {
                Some(app) => services.applications.get(&viewer, app).await.is_ok(),
                None => false,
            };
        if !allowed {
            return Err(missing());
        }
        yunnao_services::uploads::bytes(&services.db, &id)
            .await?
            .ok_or_else(missing)
    }
    .await;
    match result {
        Ok((media_type, bytes)) => (
            Extension(note(&viewer, "upload.read", format!("upload:{id}"))),
            [(http_header::CONTENT_TYPE, media_type)],
            bytes,
        )
            .into_response(),
        Err(p) => crate::refusal(l, &p, "/ui/services"),
    }
}

/// The approval workbench: what the viewer's department is to receive and to decide, with
/// deadlines; the window's filing for an applicant.
#[utoipa::path(get, path = "/ui/services/workbench", tag = "ui",
    responses((status = 200, description = "the approval workbench"), (status = 303, description = "to the sign-in page"), (status = 403)))]
pub(crate) async fn workbench(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names: _,
    } = match shell(&web, &headers, "services").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let services = &web.services;
    let work = match services.applications.open_steps(&viewer).await {
        Ok(w) => w,
        Err(p) => return crate::refusal(l, &p, "/"),
    };
    let catalogue = services.store.current();
    let choices: String = catalogue
        .bundles
        .iter()
        .map(|b| (b.code.as_str(), b.name_zh.as_str()))
        .chain(
            catalogue
                .services
                .iter()
                .map(|s| (s.code.as_str(), s.name_zh.as_str())),
        )
        .map(|(code, name)| {
            format!(
                "<option value=\"{}\">{}</option>",
                escape(code),
                escape(name)
            )
        })
        .collect();
    let body = format!(
        "{top}<main class=\"case services\">{nav}<h2>{title}</h2><table><thead><tr><th>{c1}</th><th>{c2}</th><th>{c3}</th><th>{c4}</th><th>{c5}</th></tr></thead><tbody>{rows}</tbody></table>\
         <h3>{w_title}</h3><form method=\"get\" action=\"/ui/services/window\" class=\"window\"><label>{w_who} <input name=\"for\" required maxlength=\"18\"></label>\
         <label>{w_what} <select name=\"code\">{choices}</select></label><button>{w_go}</button></form>{policies}</main>",
        policies = policy_desk(l, &viewer, services).await,
        nav = sub_nav(l, &viewer, "/ui/services/workbench"),
        title = tr(l, "审批工作台", "Approval workbench"),
        rows = application_rows(l, &work),
        c1 = tr(l, "事项", "Service"),
        c2 = tr(l, "申请人", "Applicant"),
        c3 = tr(l, "状态", "State"),
        c4 = tr(l, "办结时限", "Due"),
        c5 = tr(l, "提交时间", "Filed"),
        w_title = tr(l, "窗口代办（一窗受理）", "File at the window"),
        w_who = tr(l, "申请人身份证号或统一社会信用代码", "Applicant's number"),
        w_what = tr(l, "事项", "Service"),
        w_go = tr(l, "开始代办", "Start"),
    );
    page(l, tr(l, "审批工作台", "Approval workbench"), &body).into_response()
}

/// The policies the viewer's department pays: a run for its admins, the open appeals to answer.
async fn policy_desk(
    l: Lang,
    viewer: &Principal,
    services: &yunnao_services::api::ServicesState,
) -> String {
    let ours: Vec<&yunnao_services::policies::Policy> = services
        .grants
        .policies()
        .iter()
        .filter(|p| viewer.may(Resource::Policies, Action::Read, &p.department))
        .collect();
    if ours.is_empty() {
        return String::new();
    }
    let ledger = services.grants.ledger().await.unwrap_or_default();
    let rows: String = ours
        .iter()
        .map(|p| {
            let (spent, grants) = ledger
                .iter()
                .find(|r| r.0 == p.code)
                .map_or((0, 0), |r| (r.2, r.3));
            let run = if viewer.may(Resource::Policies, Action::Write, &p.department) {
                format!(
                    "<form method=\"post\" action=\"/ui/services/policies/{}/run\"><button>{}</button></form>",
                    escape(&p.code),
                    tr(l, "运行（免申即享）", "Run")
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"number\">{}</td><td class=\"number\">{} / {}</td><td>{run}</td></tr>",
                escape(&p.name_zh),
                if p.mode == "auto" { tr(l, "免申即享", "granted outright") } else { tr(l, "即申即享", "confirmed by the enterprise") },
                grouped(grants),
                grouped(spent),
                grouped(p.budget_yuan),
            )
        })
        .collect();
    let appeals: String = services
        .grants
        .open_appeals(viewer)
        .await
        .unwrap_or_default()
        .iter()
        .map(|a| {
            format!(
                "<li>{} · {}：{}<form method=\"post\" action=\"/ui/services/appeals/{id}/decision\"><input name=\"answer\" required maxlength=\"1000\" aria-label=\"{r}\" placeholder=\"{r}\">\
                 <button name=\"grant\" value=\"true\">{g}</button><button name=\"grant\" value=\"false\">{u}</button></form></li>",
                escape(&a.policy_code),
                escape(&a.credit_code),
                escape(&a.reason),
                id = escape(&a.id),
                r = tr(l, "复核意见", "answer"),
                g = tr(l, "予以兑现", "Grant"),
                u = tr(l, "维持原结果", "Uphold"),
            )
        })
        .collect();
    format!(
        "<h3>{}</h3><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>{rows}</tbody></table><h3>{}</h3><ul>{}</ul>",
        tr(l, "本部门惠企政策", "Our department's policies"),
        tr(l, "政策", "Policy"),
        tr(l, "方式", "Mode"),
        tr(l, "笔数", "Grants"),
        tr(l, "已兑现 / 预算（元）", "Paid / budget (yuan)"),
        tr(l, "待复核申诉", "Appeals to answer"),
        if appeals.is_empty() {
            format!("<li class=\"muted\">{}</li>", tr(l, "暂无", "None"))
        } else {
            appeals
        },
    )
}

/// A paying department's admin runs a policy from the workbench.
#[utoipa::path(post, path = "/ui/services/policies/{code}/run", tag = "ui", params(("code" = String, Path)),
    responses((status = 303, description = "back to the workbench"), (status = 403), (status = 404)))]
pub(crate) async fn run_policy(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(code): ApiPath<String>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let back = "/ui/services/workbench";
    let result = web.services.grants.run(&viewer, &code).await;
    answered(
        &viewer,
        l,
        "policy.run",
        format!("policy:{code}"),
        back,
        result,
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct AppealAnswer {
    grant: bool,
    answer: String,
}

/// A paying department answers an appeal from the workbench.
#[utoipa::path(post, path = "/ui/services/appeals/{id}/decision", tag = "ui", params(("id" = String, Path)),
    request_body(content = AppealAnswer, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "back to the workbench"), (status = 400), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub(crate) async fn answer_appeal(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    form: Result<axum::extract::Form<AppealAnswer>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let back = "/ui/services/workbench";
    let Ok(axum::extract::Form(form)) = form else {
        return crate::refusal(
            l,
            &Problem::bad_request("send a decision and an answer"),
            back,
        );
    };
    let result = web
        .services
        .grants
        .decide_appeal(&viewer, &id, form.grant, &form.answer)
        .await;
    answered(
        &viewer,
        l,
        "policy.appeal.decide",
        format!("appeal:{id}"),
        back,
        result,
    )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowQuery {
    #[serde(rename = "for")]
    on_behalf_of: String,
    code: String,
}

/// The window: to the service's form for the applicant named.
#[utoipa::path(get, path = "/ui/services/window", tag = "ui", params(WindowQuery),
    responses((status = 303, description = "to the form for the applicant"), (status = 400)))]
pub(crate) async fn window(ApiQuery(query): ApiQuery<WindowQuery>) -> Response {
    let target = format!(
        "/ui/services/apply/{}?{}",
        query
            .code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>(),
        serde_urlencoded::to_string([("for", query.on_behalf_of.as_str())]).unwrap_or_default()
    );
    Redirect::to(&target).into_response()
}

/// The bureau's figures: applications per service and department, on-time rate, working
/// days, 可网办率, materials avoided, policies paid.
#[utoipa::path(get, path = "/ui/services/figures", tag = "ui",
    responses((status = 200, description = "the figures"), (status = 303, description = "to the sign-in page"), (status = 403)))]
pub(crate) async fn figures(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names,
    } = match shell(&web, &headers, "services").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let result = async {
        viewer.require(Resource::Applications, Action::Read, &viewer.department)?;
        web.services.figures().await
    }
    .await;
    let f = match result {
        Ok(f) => f,
        Err(p) => return crate::refusal(l, &p, "/"),
    };
    let kpi = |label: &str, value: String| {
        format!("<div class=\"kpi\"><span>{label}</span><strong>{value}</strong></div>")
    };
    let kpis = [
        kpi(
            tr(l, "办件总数", "Applications"),
            f.applications.to_string(),
        ),
        kpi(tr(l, "办结", "Concluded"), f.concluded.to_string()),
        kpi(
            tr(l, "按时办结率", "On time"),
            format!("{}%", f.on_time_pct),
        ),
        kpi(
            tr(l, "平均办理工作日", "Average working days"),
            f.average_working_days.to_string(),
        ),
        kpi(
            tr(l, "可网办率", "Online rate"),
            format!("{}%", f.online_rate_pct),
        ),
        kpi(
            tr(l, "免提交材料（证照复用）", "Materials from licences"),
            f.materials_from_licences.to_string(),
        ),
        kpi(
            tr(l, "发放电子证照", "Licences issued"),
            f.licences_issued.to_string(),
        ),
        kpi(
            tr(l, "在办超期", "Overdue open"),
            f.overdue_open.to_string(),
        ),
    ]
    .concat();
    let rows = |list: &[yunnao_services::figures::CountRow], by_department: bool| -> String {
        list.iter()
            .map(|r| {
                let name = if by_department {
                    names.get(&r.key).cloned().unwrap_or_else(|| r.key.clone())
                } else {
                    r.name_zh.clone()
                };
                format!(
                    "<tr><td>{}</td><td class=\"number\">{}</td><td class=\"number\">{}</td><td class=\"number\">{}</td></tr>",
                    escape(&name),
                    grouped(r.applications),
                    grouped(r.concluded),
                    grouped(r.approved)
                )
            })
            .collect()
    };
    let head = format!(
        "<thead><tr><th></th><th>{}</th><th>{}</th><th>{}</th></tr></thead>",
        tr(l, "办件", "Applications"),
        tr(l, "办结", "Concluded"),
        tr(l, "准予", "Approved")
    );
    let policies: String = f
        .policies
        .iter()
        .map(|p| {
            format!(
                "<tr><td>{}</td><td class=\"number\">{}</td><td class=\"number\">{}</td><td class=\"number\">{}</td></tr>",
                escape(&p.name_zh),
                grouped(p.grants),
                grouped(p.spent_yuan),
                grouped(p.budget_yuan)
            )
        })
        .collect();
    let body = format!(
        "{top}<main class=\"case services\">{nav}<h2>{title}</h2><div class=\"kpis\">{kpis}</div>\
         <h3>{d_title}</h3><table>{head}<tbody>{by_department}</tbody></table><h3>{s_title}</h3><table>{head}<tbody>{by_service}</tbody></table>\
         <h3>{p_title}</h3><table><thead><tr><th></th><th>{p1}</th><th>{p2}</th><th>{p3}</th></tr></thead><tbody>{policies}</tbody></table></main>",
        nav = sub_nav(l, &viewer, "/ui/services/figures"),
        title = tr(l, "政务服务统计", "Service figures"),
        d_title = tr(l, "按部门", "By department"),
        by_department = rows(&f.by_department, true),
        s_title = tr(l, "按事项", "By service"),
        by_service = rows(&f.by_service, false),
        p_title = tr(l, "惠企政策兑现", "Policies paid"),
        p1 = tr(l, "笔数", "Grants"),
        p2 = tr(l, "已兑现（元）", "Paid (yuan)"),
        p3 = tr(l, "预算（元）", "Budget (yuan)"),
    );
    page(l, tr(l, "政务服务统计", "Service figures"), &body).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct AppealForm {
    reason: String,
}

/// An enterprise appeals a policy's refusal.
#[utoipa::path(post, path = "/ui/services/policies/{code}/appeal", tag = "ui", params(("code" = String, Path)),
    request_body(content = AppealForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "back to my page"), (status = 400), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub(crate) async fn appeal(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(code): ApiPath<String>,
    form: Result<axum::extract::Form<AppealForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let back = "/ui/services/mine";
    let services = &web.services;
    let Ok(axum::extract::Form(form)) = form else {
        return crate::refusal(l, &Problem::bad_request("send a reason"), back);
    };
    let result = services.grants.appeal(&viewer, &code, &form.reason).await;
    answered(
        &viewer,
        l,
        "policy.appeal",
        format!("policy:{code}"),
        back,
        result,
    )
}

/// An enterprise confirms an invitation (即申即享).
#[utoipa::path(post, path = "/ui/services/policies/{code}/confirm", tag = "ui", params(("code" = String, Path)),
    responses((status = 303, description = "back to my page"), (status = 403), (status = 404), (status = 409)))]
pub(crate) async fn confirm(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(code): ApiPath<String>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let back = "/ui/services/mine";
    let services = &web.services;
    let result = services.grants.confirm(&viewer, &code).await;
    answered(
        &viewer,
        l,
        "policy.confirm",
        format!("policy:{code}"),
        back,
        result,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_are_grouped_by_thousands() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (50_000_000, "50,000,000"),
            (-1234, "-1,234"),
        ] {
            assert_eq!(super::grouped(n), text);
        }
    }
}
