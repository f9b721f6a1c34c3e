//! The incidents workbench: the signed-in user's queue (the command centre sees all, a
//! department its cases, a grid worker the cases of their grids), a case with its timeline, and
//! the workflow steps as forms that go through the same service calls as the API.

use crate::names::{Names, local_time};
use crate::text::{Lang, t};
use crate::{Web, escape, lang, page};
use axum::Extension;
use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use yunnao_core::Problem;
use yunnao_governance::incidents::TransitionInput;
use yunnao_governance::queries::IncidentFilter;
use yunnao_http::ApiPath;
use yunnao_identity::AuditNote;

fn nav(l: Lang, active: &str) -> String {
    let link = |href: &str, key: &str| {
        format!(
            "<a{} href=\"{href}\">{}</a>",
            if key == active {
                " class=\"active\""
            } else {
                ""
            },
            t(l, key)
        )
    };
    format!(
        "<nav>{}{}{}{}</nav>",
        link("/", "overview"),
        link("/ui/devices", "devices"),
        link("/ui/incidents", "workbench"),
        link("/ui/plan", "plan")
    )
}

pub(crate) fn header(l: Lang, active: &str, user: &str, department: &str) -> String {
    format!(
        "<header><h1>{brand}</h1>{nav}<span class=\"user\">{user} · {department}</span><span class=\"muted tz\">{tz}</span>\
         <a class=\"lang\" href=\"/ui/lang/{other}\">{other_name}</a>\
         <form method=\"post\" action=\"/ui/sign-out\"><button>{sign_out}</button></form></header>",
        brand = t(l, "brand"),
        nav = nav(l, active),
        user = escape(user),
        department = escape(department),
        other = if l == Lang::Zh { "en" } else { "zh" },
        other_name = if l == Lang::Zh { "English" } else { "中文" },
        sign_out = t(l, "sign_out"),
        tz = t(l, "time_zone"),
    )
}

/// The queue of the signed-in user.
#[utoipa::path(get, path = "/ui/incidents", tag = "ui",
    responses((status = 200, description = "the workbench page"), (status = 303, description = "to the sign-in page")))]
pub(crate) async fn queue(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let names = Names::load(&web, l).await;
    let filter = IncidentFilter {
        state: Some("open".into()),
        limit: Some(200),
        ..IncidentFilter::default()
    };
    let rows = match web.governance.list(filter, &viewer).await {
        Ok(page) => page
            .items
            .iter()
            .map(|i| {
                format!(
                    "<tr class=\"{overdue}\"><td><a href=\"/ui/incidents/{id}\">{service}</a></td><td>{state}</td><td>{district}</td><td>{department}</td><td>{due}</td><td>{text}</td></tr>",
                    overdue = if i.overdue { "overdue" } else { "" },
                    id = i.id,
                    service = escape(&format!("{} {}", i.service_code, i.service_name)),
                    state = crate::text::state_name(l, i.state),
                    district = escape(&i.grid.as_ref().map(|g| g.district_name.clone()).unwrap_or_default()),
                    department = escape(&i.department.as_deref().map_or("—".to_owned(), |d| names.department(d))),
                    due = local_time(i.due_at.as_deref()),
                    text = escape(&i.description.chars().take(40).collect::<String>()),
                )
            })
            .collect::<String>(),
        Err(problem) => format!("<tr><td colspan=\"6\" class=\"error\">{}</td></tr>", escape(&problem.to_string())),
    };
    let body = format!(
        "{header}<main class=\"workbench\"><h2>{title}</h2><table><thead><tr><th>{c1}</th><th>{c2}</th><th>{c3}</th><th>{c4}</th><th>{c5}</th><th>{c6}</th></tr></thead><tbody>{rows}</tbody></table></main>",
        header = header(
            l,
            "workbench",
            &viewer.name,
            &names.department(&viewer.department)
        ),
        title = t(l, "queue"),
        c1 = t(l, "col_service"),
        c2 = t(l, "col_state"),
        c3 = t(l, "col_district"),
        c4 = t(l, "col_department"),
        c5 = t(l, "col_due"),
        c6 = t(l, "col_description"),
    );
    page(l, t(l, "workbench"), &body).into_response()
}

/// One case: its facts, timeline and the steps the user may take.
#[utoipa::path(get, path = "/ui/incidents/{id}", tag = "ui", params(("id" = String, Path)),
    responses((status = 200, description = "the case page"), (status = 303), (status = 404)))]
pub(crate) async fn case(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let names = Names::load(&web, l).await;
    let detail = match web.governance.incident(&id, &viewer).await {
        Ok(detail) => detail,
        Err(problem) => return crate::refusal(l, &problem, "/ui/incidents"),
    };
    let i = &detail.incident;
    let timeline: String = detail
        .events
        .iter()
        .map(|e| {
            format!(
                "<li><time>{}</time> <b>{}</b> {} — {}</li>",
                local_time(Some(&e.at)),
                crate::text::event_name(l, &e.action),
                escape(&e.actor),
                escape(&e.comment)
            )
        })
        .collect();
    // Only what this user may do to this case in its state: the API's own table decides.
    let offered: Vec<_> = web
        .governance
        .offered(&viewer, i)
        .into_iter()
        .filter(|action| action.on_its_own())
        .collect();
    // The department list only where a step names one (dispatch, reassign).
    let departments: String = if offered.iter().any(|a| a.names_department()) {
        names
            .departments()
            .iter()
            .map(|(code, name)| {
                format!(
                    "<option value=\"{}\">{}</option>",
                    escape(code),
                    escape(name)
                )
            })
            .collect()
    } else {
        String::new()
    };
    let forms: String = offered
        .iter()
        .map(|action| {
            let department = if action.names_department() {
                format!(
                    "<select name=\"department\" required aria-label=\"{label}\"><option value=\"\">{label}</option>{departments}</select>",
                    label = t(l, "col_department")
                )
            } else {
                String::new()
            };
            format!(
                "<form method=\"post\" action=\"/ui/incidents/{id}/step\" class=\"step\"><input type=\"hidden\" name=\"action\" value=\"{action}\">\
                 {department}<input name=\"comment\" required placeholder=\"{comment}\"><button>{label}</button></form>",
                id = i.id,
                action = action.as_str(),
                comment = t(l, "comment"),
                label = if l == Lang::Zh { action.name_zh() } else { action.name_en() },
            )
        })
        .collect();
    let forms = if forms.is_empty() {
        format!("<p class=\"muted\">{}</p>", t(l, "no_steps"))
    } else {
        forms
    };
    let body = format!(
        "{header}<main class=\"case\"><h2>{service}</h2><p>{state} · {district} · {department} · {due}</p><p>{text}</p>\
         <p class=\"muted\">{address} {grid}</p><h3>{timeline_title}</h3><ol class=\"timeline\">{timeline}</ol><h3>{steps}</h3>{forms}\
         <p><a href=\"/ui/incidents\">← {back}</a></p></main>",
        header = header(
            l,
            "workbench",
            &viewer.name,
            &names.department(&viewer.department)
        ),
        service = escape(&format!("{} {}", i.service_code, i.service_name)),
        state = crate::text::state_name(l, i.state),
        district = escape(
            &i.grid
                .as_ref()
                .map(|g| g.district_name.clone())
                .unwrap_or_default()
        ),
        department = escape(
            &i.department
                .as_deref()
                .map_or("—".to_owned(), |d| names.department(d))
        ),
        due = local_time(i.due_at.as_deref()),
        text = escape(&i.description),
        address = escape(&i.address),
        grid = escape(
            &i.grid
                .as_ref()
                .map(|g| g.grid_code.clone())
                .unwrap_or_default()
        ),
        timeline_title = t(l, "timeline"),
        steps = t(l, "steps"),
        back = t(l, "workbench"),
    );
    page(l, t(l, "workbench"), &body).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StepForm {
    pub action: String,
    pub comment: String,
    #[serde(default)]
    pub department: String,
}

/// A workflow step from the case page (the same service call and rules as the API).
#[utoipa::path(post, path = "/ui/incidents/{id}/step", tag = "ui", params(("id" = String, Path)),
    request_body(content = StepForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "back to the case"), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub(crate) async fn step(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    form: Result<Form<StepForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let back = format!("/ui/incidents/{id}");
    let Ok(Form(form)) = form else {
        return crate::refusal(l, &Problem::bad_request("send action and comment"), &back);
    };
    let note = AuditNote {
        action: Some(format!("incident.{}", form.action)),
        target: Some(format!("incident:{id}")),
        actor: Some(viewer.name.clone()),
        department: Some(viewer.department.clone()),
        ..AuditNote::default()
    };
    let input = TransitionInput {
        action: form.action,
        comment: form.comment,
        department: (!form.department.trim().is_empty()).then(|| form.department.trim().to_owned()),
        into: None,
    };
    match web.governance.transition(&id, input, &viewer).await {
        Ok(_) => (
            Extension(note),
            Redirect::to(&format!("/ui/incidents/{id}")),
        )
            .into_response(),
        Err(problem) => (Extension(note), crate::refusal(l, &problem, &back)).into_response(),
    }
}
