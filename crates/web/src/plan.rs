//! Plan supervision (督导考核): the plan's items by part and section with their responsible
//! units, and its 47 numeric targets with their current value, where it comes from and their
//! status, as `yunnao-plan` computes them. Live targets are measured from the overview's
//! snapshot (no extra scan); the others show their newest progress report whose e-seal
//! verifies. A viewer from a responsible department can submit a report from the page.

use crate::text::{Lang, t};
use crate::{Web, escape, lang, page};
use axum::Extension;
use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::collections::HashMap;
use yunnao_core::Problem;
use yunnao_http::ApiPath;
use yunnao_identity::{AuditNote, Principal};
use yunnao_plan::{NewReport, Status, TargetStatus};

fn number(value: f64) -> String {
    if value.abs() >= 100_000_000.0 {
        format!("{:.1} 亿", value / 100_000_000.0)
    } else if value.abs() >= 10_000.0 {
        format!("{:.1} 万", value / 10_000.0)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn status_label(l: Lang, status: Status) -> &'static str {
    t(
        l,
        match status {
            Status::Met => "status_met",
            Status::OnTrack => "status_on_track",
            Status::AtRisk => "status_at_risk",
            Status::Behind => "status_behind",
            Status::Awaiting => "status_awaiting",
        },
    )
}

/// The form is offered for the targets the platform does not measure.
fn may_report(viewer: &Principal, target: &TargetStatus) -> bool {
    target.measured_by.is_none() && target.target.may_report(viewer).is_ok()
}

/// The current value cell: the figure with a bar and where it comes from.
fn current_cell(l: Lang, status: &TargetStatus, names: &crate::names::Names) -> String {
    let Some(value) = status.current else {
        return format!(
            "—<br><small class=\"muted\">{}</small>",
            t(l, "awaiting_source")
        );
    };
    let bar = format!(
        "{} <progress max=\"100\" value=\"{:.1}\"></progress>",
        number(value),
        status.progress_pct.unwrap_or(0.0).min(100.0)
    );
    let source = match (&status.measured_by, &status.report) {
        (Some(source), _) => escape(if l == Lang::Zh {
            &source.zh
        } else {
            &source.en
        }),
        (None, Some(report)) => {
            let department = names.department(&report.department);
            format!(
                "<span title=\"{evidence}\">{reported} {department} · {as_of}</span> \
                 <span class=\"seal ok\" data-seal=\"verified\" title=\"SM2/SM3 · {key}\">{seal}</span>",
                evidence = escape(&report.evidence),
                reported = t(l, "reported_by"),
                department = escape(&department),
                as_of = escape(&report.as_of),
                key = escape(&report.sealed.seal.key_id),
                seal = t(l, "seal_verified"),
            )
        }
        (None, None) => String::new(),
    };
    format!("{bar}<br><small class=\"muted\">{source}</small>")
}

/// The plan page.
#[utoipa::path(get, path = "/ui/plan", tag = "ui",
    responses((status = 200, description = "the plan-supervision page"), (status = 303, description = "to the sign-in page")))]
pub(crate) async fn supervision(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let online_rate = web.services.store.current().online_rate_pct();
    let live = web.live.borrow().live_figures(online_rate);
    let statuses = match web.plan.statuses(&live).await {
        Ok(statuses) => statuses,
        Err(problem) => return crate::refusal(l, &problem, "/"),
    };
    let names = crate::names::Names::load(&web, l).await;
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    let mut rows = String::new();
    for part in &web.plan.doc().parts {
        rows.push_str(&format!(
            "<tr class=\"part\"><th colspan=\"7\">{}</th></tr>",
            escape(if l == Lang::Zh {
                &part.title_zh
            } else {
                &part.title_en
            })
        ));
        for section in &part.sections {
            if let (Some(zh), Some(en)) = (&section.title_zh, &section.title_en) {
                rows.push_str(&format!(
                    "<tr class=\"section\"><th colspan=\"7\">{}</th></tr>",
                    escape(if l == Lang::Zh { zh } else { en })
                ));
            }
            for item in &section.items {
                let title = if l == Lang::Zh {
                    &item.title_zh
                } else {
                    &item.title_en
                };
                let units = &item.responsible_units_zh;
                let units = if units.len() > 4 {
                    format!("{} …", units[..4].join("、"))
                } else {
                    units.join("、")
                };
                let targets: Vec<&TargetStatus> = statuses
                    .iter()
                    .filter(|s| s.target.item == item.no)
                    .collect();
                if targets.is_empty() {
                    rows.push_str(&format!(
                        "<tr id=\"item-{no}\"><td>{no}</td><td>{}</td><td>{}</td><td colspan=\"4\" class=\"muted\">—</td></tr>",
                        escape(title),
                        escape(&units),
                        no = item.no,
                    ));
                }
                for (n, status) in targets.into_iter().enumerate() {
                    let anchor = if n == 0 {
                        format!(" id=\"item-{}\"", item.no)
                    } else {
                        String::new()
                    };
                    *counts.entry(status.status.as_str()).or_default() += 1;
                    if status.measured_by.is_some() {
                        *counts.entry("live").or_default() += 1;
                    } else if status.report.is_some() {
                        *counts.entry("reported").or_default() += 1;
                    }
                    let form = if may_report(&viewer, status) {
                        format!(
                            "<details class=\"report\"><summary>{submit}</summary>\
                             <form method=\"post\" action=\"/ui/plan/{id}/report\">\
                             <label>{value}<input name=\"value\" inputmode=\"decimal\" required></label>\
                             <label>{as_of}<input name=\"as_of\" type=\"date\" required></label>\
                             <label>{evidence}<input name=\"evidence\" maxlength=\"2000\" required></label>\
                             <button type=\"submit\">{seal_submit}</button></form></details>",
                            id = escape(&status.target.id),
                            submit = t(l, "report_submit"),
                            value = t(l, "report_value"),
                            as_of = t(l, "report_as_of"),
                            evidence = t(l, "report_evidence"),
                            seal_submit = t(l, "report_seal_submit"),
                        )
                    } else {
                        String::new()
                    };
                    rows.push_str(&format!(
                        "<tr{anchor} data-target=\"{id}\"><td>{id}</td><td>{title}</td><td>{units}</td><td>{metric}</td>\
                         <td>{comparator} {goal}</td><td>{current}{form}</td><td class=\"status {class}\">{label}</td></tr>",
                        id = escape(&status.target.id),
                        title = escape(title),
                        units = escape(&units),
                        metric = escape(if l == Lang::Zh {
                            &status.target.metric_zh
                        } else {
                            &status.target.metric_en
                        }),
                        comparator = if status.target.comparator == ">="
                            && !(l == Lang::Zh
                                && ["以上", "超过", "左右"]
                                    .iter()
                                    .any(|w| status.target.target_raw_zh.contains(w)))
                        {
                            "≥"
                        } else {
                            ""
                        },
                        goal = if l == Lang::Zh {
                            escape(&status.target.target_raw_zh)
                        } else {
                            format!("{} {}", number(status.target.target), escape(&status.target.unit))
                        },
                        current = current_cell(l, status, &names),
                        class = status.status.as_str(),
                        label = status_label(l, status.status),
                    ));
                }
            }
        }
    }
    let count = |key: &str| counts.get(key).copied().unwrap_or(0);
    let body = format!(
        "{header}<main class=\"plan\"><h2>{title}</h2><p class=\"muted\">{note}</p>\
         <p class=\"summary\">{targets_label} <b data-plan=\"targets\">{total}</b> · {live_label} <b data-plan=\"live\">{live}</b> · \
         {reported_label} <b data-plan=\"reported\">{reported}</b> · {met_label} <b data-plan=\"met\">{met}</b> · \
         {on_track_label} <b>{on_track}</b> · {at_risk_label} <b>{at_risk}</b> · {behind_label} <b>{behind}</b> · {awaiting_label} <b>{awaiting}</b></p>\
         <table><thead><tr><th>#</th><th>{c_item}</th><th>{c_units}</th><th>{c_metric}</th><th>{c_target}</th><th>{c_current}</th><th>{c_status}</th></tr></thead><tbody>{rows}</tbody></table></main>",
        header =
            crate::workbench::header(l, "plan", &viewer, &names.department(&viewer.department)),
        title = t(l, "plan_title"),
        note = t(l, "plan_note"),
        total = statuses.len(),
        live = count("live"),
        reported = count("reported"),
        met = count("met"),
        on_track = count("on_track"),
        at_risk = count("at_risk"),
        behind = count("behind"),
        awaiting = count("awaiting"),
        targets_label = t(l, "targets"),
        live_label = t(l, "live"),
        reported_label = t(l, "reported"),
        met_label = t(l, "status_met"),
        on_track_label = t(l, "status_on_track"),
        at_risk_label = t(l, "status_at_risk"),
        behind_label = t(l, "status_behind"),
        awaiting_label = t(l, "status_awaiting"),
        c_item = t(l, "col_item"),
        c_units = t(l, "col_units"),
        c_metric = t(l, "col_metric"),
        c_target = t(l, "col_target"),
        c_current = t(l, "col_current"),
        c_status = t(l, "col_status"),
    );
    page(l, t(l, "plan"), &body).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReportForm {
    pub value: String,
    pub as_of: String,
    pub evidence: String,
}

/// Submits a progress report from the plan page (the same service call and rules as
/// `POST /api/v1/plan/targets/{id}/reports`).
#[utoipa::path(post, path = "/ui/plan/{id}/report", tag = "ui", params(("id" = String, Path)),
    request_body(content = ReportForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "back to the plan page"), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub(crate) async fn report(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    form: Result<Form<ReportForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let Ok(Form(form)) = form else {
        return crate::refusal(
            l,
            &Problem::bad_request("send value, as_of and evidence"),
            "/ui/plan",
        );
    };
    let note = AuditNote {
        action: Some("plan.report".into()),
        target: Some(format!("plan-target:{id}")),
        actor: Some(viewer.name.clone()),
        department: Some(viewer.department.clone()),
        ..AuditNote::default()
    };
    let Ok(value) = form.value.trim().parse::<f64>() else {
        return (
            Extension(note),
            crate::refusal(
                l,
                &Problem::validation(format!("value {:?} is not a number", form.value)),
                "/ui/plan",
            ),
        )
            .into_response();
    };
    let report = NewReport {
        value,
        as_of: form.as_of,
        evidence: form.evidence,
    };
    match web.plan.submit(&viewer, &id, report).await {
        Ok(_) => (Extension(note), Redirect::to("/ui/plan")).into_response(),
        Err(problem) => (Extension(note), crate::refusal(l, &problem, "/ui/plan")).into_response(),
    }
}
