//! The incidents workbench: the signed-in user's queue (the command centre sees all, a
//! department its cases, a grid worker the cases of their grids), a case with its timeline, and
//! the workflow steps as forms that go through the same service calls as the API.

use crate::names::{Names, local_time};
use crate::text::{Lang, t};
use crate::{Web, escape, lang, page};
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use yunnao_governance::incidents::TransitionInput;
use yunnao_governance::queries::IncidentFilter;
use yunnao_http::{ApiPath, ApiQuery};
use yunnao_identity::{AuditNote, Principal, Role};

/// Whether this account is a resident's or an enterprise's (they get the citizen pages).
pub(crate) fn is_citizen(viewer: &Principal) -> bool {
    (viewer.has_role(Role::Resident) || viewer.has_role(Role::Enterprise))
        && !viewer.is_platform_admin()
}

fn nav(l: Lang, active: &str, viewer: &Principal) -> String {
    let link = |href: &str, key: &str| {
        format!(
            "<a{} href=\"{href}\">{}</a>",
            if key == active {
                " class=\"active\" aria-current=\"page\""
            } else {
                ""
            },
            t(l, key)
        )
    };
    let links: Vec<String> = if is_citizen(viewer) {
        vec![
            link("/ui/me", "my_reports"),
            link("/ui/report", "report_new"),
            link("/ui/services/mine", "services"),
            link("/ui/services", "services_hall"),
            link("/ui/codes/mine", "my_code"),
        ]
    } else {
        let mut links = vec![
            link("/", "overview"),
            link("/ui/devices", "devices"),
            link("/ui/alarms", "alarms"),
            link("/ui/incidents", "workbench"),
        ];
        if viewer.has_role(Role::GridWorker) {
            links.push(link("/ui/report", "report_patrol"));
        }
        links.push(link("/ui/services/workbench", "services"));
        links.push(link("/ui/codes", "codes"));
        links.push(link("/ui/data", "data"));
        links.push(link("/ui/plan", "plan"));
        links
    };
    format!("<nav>{}</nav>", links.concat())
}

pub(crate) fn header(l: Lang, active: &str, viewer: &Principal, department: &str) -> String {
    let citizen = is_citizen(viewer);
    // Residents and enterprises: no operations search, and who they are instead of a department.
    let search = if citizen {
        String::new()
    } else {
        format!(
            "<form class=\"search-box\" method=\"get\" action=\"/ui/search\" role=\"search\">\
             <input type=\"search\" name=\"q\" maxlength=\"100\" placeholder=\"{}\" aria-label=\"{}\"></form>",
            t(l, "search_hint"),
            t(l, "search")
        )
    };
    let department = if !citizen {
        department
    } else if viewer.has_role(Role::Enterprise) {
        t(l, "enterprise_label")
    } else {
        t(l, "resident_label")
    };
    format!(
        "<header><h1>{brand}</h1>{nav}{search}\
         <div class=\"bell-wrap\"><button type=\"button\" id=\"bell\" aria-haspopup=\"true\" aria-expanded=\"false\" aria-label=\"{notices}\">\
         <svg viewBox=\"0 0 24 24\" width=\"18\" height=\"18\" aria-hidden=\"true\"><path fill=\"currentColor\" d=\"M12 22a2.5 2.5 0 0 0 2.5-2.5h-5A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.8V3a1.5 1.5 0 0 0-3 0v1.2A7 7 0 0 0 5 11v5l-2 2v1h18v-1z\"/></svg>\
         <span id=\"bell-count\" class=\"count\" hidden>0</span></button><div id=\"notices\" class=\"notices\" hidden><h3>{notices}</h3><ul></ul></div></div><span class=\"user\">{user} · {department}</span><span class=\"muted tz\">{tz}</span>\
         <a class=\"lang\" href=\"/ui/lang/{other}\">{other_name}</a>\
         <form method=\"post\" action=\"/ui/sign-out\"><button>{sign_out}</button></form></header>",
        brand = t(l, "brand"),
        nav = nav(l, active, viewer),
        user = escape(&viewer.name),
        department = escape(department),
        other = if l == Lang::Zh { "en" } else { "zh" },
        other_name = if l == Lang::Zh { "English" } else { "中文" },
        sign_out = t(l, "sign_out"),
        tz = t(l, "time_zone"),
        notices = t(l, "notices"),
    )
}

#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// `open` (default), one state (dispatched, handling, verification …) or `all`.
    pub state: Option<String>,
    pub district: Option<String>,
    pub department: Option<String>,
    /// `1`: only cases past their time limit.
    pub overdue: Option<String>,
    /// `due` (nearest time limit first, the default) or `created` (newest first).
    pub sort: Option<String>,
    /// For the export: csv (default) or xlsx.
    pub format: Option<String>,
}

impl QueueQuery {
    fn filter(&self, limit: i64) -> IncidentFilter {
        let some = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        IncidentFilter {
            state: match some(&self.state).as_deref() {
                None => Some("open".into()),
                Some("all") => None,
                Some(other) => Some(other.to_owned()),
            },
            district: some(&self.district),
            department: some(&self.department),
            overdue: (self.overdue.as_deref() == Some("1")).then_some(true),
            sort: Some(some(&self.sort).unwrap_or_else(|| "due".into())),
            limit: Some(limit),
            ..IncidentFilter::default()
        }
    }

    fn query_string(&self) -> String {
        crate::query_string(&[
            ("state", &self.state),
            ("district", &self.district),
            ("department", &self.department),
            ("overdue", &self.overdue),
            ("sort", &self.sort),
        ])
    }
}

/// How near a case is to its time limit: past it, or past the 80% warning.
fn urgency(i: &yunnao_governance::incidents::Incident, now_ms: i64) -> &'static str {
    use yunnao_governance::workflow::State;
    if !matches!(i.state, State::Dispatched | State::Handling) {
        return "";
    }
    if i.overdue {
        return "overdue";
    }
    let warn = i
        .warn_at
        .as_deref()
        .and_then(yunnao_core::time::parse_rfc3339_ms);
    if warn.is_some_and(|w| w <= now_ms) {
        "due-soon"
    } else {
        ""
    }
}

/// The queue of the signed-in user, filtered and sorted by time limit.
#[utoipa::path(get, path = "/ui/incidents", tag = "ui", params(QueueQuery),
    responses((status = 200, description = "the workbench page"), (status = 303, description = "to the sign-in page"), (status = 400)))]
pub(crate) async fn queue(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<QueueQuery>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let names = Names::load(&web, l).await;
    let page_of = match web.governance.list(query.filter(200), &viewer).await {
        Ok(page) => page,
        Err(problem) => return crate::refusal(l, &problem, "/ui/incidents"),
    };
    let now = yunnao_core::time::now_ms();
    let rows: String = page_of
        .items
        .iter()
        .map(|i| {
            let urgency = urgency(i, now);
            format!(
                "<tr class=\"{urgency}\"><td data-label=\"{l_service}\"><a href=\"/ui/incidents/{id}\">{service}</a></td><td data-label=\"{l_state}\">{state}{flag}</td>\
                 <td data-label=\"{l_district}\">{district}</td><td data-label=\"{l_department}\">{department}</td><td data-label=\"{l_due}\">{due}</td><td data-label=\"{l_text}\">{text}</td></tr>",
                id = i.id,
                service = escape(&names.category(&i.service_code)),
                state = crate::text::state_name(l, i.state),
                flag = match urgency {
                    "overdue" => format!(" <b class=\"flag overdue\">{}</b>", t(l, "flag_overdue")),
                    "due-soon" => format!(" <b class=\"flag due-soon\">{}</b>", t(l, "flag_due_soon")),
                    _ => String::new(),
                },
                district = escape(&i.grid.as_ref().map(|g| g.district_name.clone()).unwrap_or_default()),
                department = escape(&i.department.as_deref().map_or("—".to_owned(), |d| names.department(d))),
                due = local_time(i.due_at.as_deref()),
                text = escape(&i.description.chars().take(40).collect::<String>()),
                l_service = t(l, "col_service"),
                l_state = t(l, "col_state"),
                l_district = t(l, "col_district"),
                l_department = t(l, "col_department"),
                l_due = t(l, "col_due"),
                l_text = t(l, "col_description"),
            )
        })
        .collect();
    let rows = if rows.is_empty() {
        format!(
            "<tr><td colspan=\"6\" class=\"muted\">{}</td></tr>",
            t(l, "none_found")
        )
    } else {
        rows
    };
    use yunnao_governance::workflow::State as Step;
    let states: Vec<(String, String)> = [("open", t(l, "state_open")), ("all", t(l, "alarm_all"))]
        .iter()
        .map(|(v, n)| (v.to_string(), n.to_string()))
        .chain(
            [
                Step::Received,
                Step::Registered,
                Step::Dispatched,
                Step::Handling,
                Step::Verification,
                Step::Closed,
                Step::Rejected,
            ]
            .iter()
            .map(|s| {
                (
                    s.as_str().to_owned(),
                    crate::text::state_name(l, *s).to_owned(),
                )
            }),
        )
        .collect();
    let districts: Vec<(String, String)> =
        std::iter::once((String::new(), t(l, "all_districts").to_owned()))
            .chain(
                web.governance
                    .grid
                    .districts
                    .iter()
                    .map(|d| (d.code.clone(), d.name.clone())),
            )
            .collect();
    let departments: Vec<(String, String)> =
        std::iter::once((String::new(), t(l, "all_departments").to_owned()))
            .chain(names.departments())
            .collect();
    let sorts: Vec<(String, String)> = vec![
        ("due".to_owned(), t(l, "sort_due").to_owned()),
        ("created".to_owned(), t(l, "sort_created").to_owned()),
    ];
    let filter = escape(&query.query_string());
    let body = format!(
        "{header}<main class=\"workbench\"><h2>{title} <small class=\"muted\">{total}</small></h2>\
         <form method=\"get\" action=\"/ui/incidents\" class=\"filter\">\
         <select name=\"state\" aria-label=\"{c2}\">{states}</select><select name=\"district\" aria-label=\"{c3}\">{districts}</select>\
         <select name=\"department\" aria-label=\"{c4}\">{departments}</select><select name=\"sort\" aria-label=\"{sort}\">{sorts}</select>\
         <label class=\"check\"><input type=\"checkbox\" name=\"overdue\" value=\"1\"{overdue}> {only_overdue}</label><button>{filter_label}</button>\
         <span class=\"exports\"><a href=\"/ui/incidents/export?{filter}&amp;format=csv\">{csv}</a> <a href=\"/ui/incidents/export?{filter}&amp;format=xlsx\">{xlsx}</a></span></form>\
         <p class=\"legend-line\"><b class=\"flag overdue\">{flag_overdue}</b> {overdue_means} <b class=\"flag due-soon\">{flag_due_soon}</b> {due_soon_means}</p>\
         <table class=\"cards\"><thead><tr><th>{c1}</th><th>{c2}</th><th>{c3}</th><th>{c4}</th><th>{c5}</th><th>{c6}</th></tr></thead><tbody>{rows}</tbody></table></main>",
        header = header(
            l,
            "workbench",
            &viewer,
            &names.department(&viewer.department)
        ),
        title = t(l, "queue"),
        total = page_of.total,
        states = crate::options(query.state.as_deref().or(Some("open")), &states),
        districts = crate::options(query.district.as_deref(), &districts),
        departments = crate::options(query.department.as_deref(), &departments),
        sorts = crate::options(query.sort.as_deref().or(Some("due")), &sorts),
        sort = t(l, "sort"),
        overdue = if query.overdue.as_deref() == Some("1") {
            " checked"
        } else {
            ""
        },
        only_overdue = t(l, "only_overdue"),
        filter_label = t(l, "filter"),
        csv = t(l, "export_csv"),
        xlsx = t(l, "export_xlsx"),
        flag_overdue = t(l, "flag_overdue"),
        flag_due_soon = t(l, "flag_due_soon"),
        overdue_means = t(l, "overdue_means"),
        due_soon_means = t(l, "due_soon_means"),
        c1 = t(l, "col_service"),
        c2 = t(l, "col_state"),
        c3 = t(l, "col_district"),
        c4 = t(l, "col_department"),
        c5 = t(l, "col_due"),
        c6 = t(l, "col_description"),
    );
    page(l, t(l, "workbench"), &body).into_response()
}

/// The workbench list under its filter as CSV or XLSX (up to 1,000 cases).
#[utoipa::path(get, path = "/ui/incidents/export", tag = "ui", params(QueueQuery),
    responses((status = 200, description = "text/csv or an XLSX workbook"), (status = 303, description = "to the sign-in page"), (status = 400)))]
pub(crate) async fn export(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<QueueQuery>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let names = Names::load(&web, l).await;
    let made = async {
        let found = web.governance.list(query.filter(1000), &viewer).await?;
        let rows: Vec<Vec<String>> = found
            .items
            .iter()
            .map(|i| {
                vec![
                    i.id.clone(),
                    names.category(&i.service_code),
                    crate::text::state_name(l, i.state).to_owned(),
                    i.grid
                        .as_ref()
                        .map(|g| g.district_name.clone())
                        .unwrap_or_default(),
                    i.grid
                        .as_ref()
                        .map(|g| g.grid_code.clone())
                        .unwrap_or_default(),
                    i.department
                        .as_deref()
                        .map(|d| names.department(d))
                        .unwrap_or_default(),
                    local_time(Some(&i.created_at)),
                    local_time(i.due_at.as_deref()),
                    if i.overdue { t(l, "yes") } else { t(l, "no") }.to_owned(),
                    i.address.clone(),
                    i.description.clone(),
                ]
            })
            .collect();
        let titles: Vec<&str> = [
            "col_id",
            "col_service",
            "col_state",
            "col_district",
            "col_grid",
            "col_department",
            "col_created",
            "col_due",
            "flag_overdue",
            "col_address",
            "col_description",
        ]
        .iter()
        .map(|k| t(l, k))
        .collect();
        crate::alarms::download(query.format.as_deref(), "incidents", &titles, &rows)
    };
    match made.await {
        Ok(response) => (
            Extension(AuditNote::new("incident.export", "incidents")),
            response,
        )
            .into_response(),
        Err(problem) => crate::refusal(l, &problem, "/ui/incidents"),
    }
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
    let people = Names::people(&web, l, detail.events.iter().map(|e| e.actor.as_str())).await;
    let timeline: String = detail
        .events
        .iter()
        .map(|e| {
            format!(
                "<li><time>{}</time> <b>{}</b> {}{} — {}</li>",
                local_time(Some(&e.at)),
                crate::text::event_name(l, &e.action),
                escape(people.get(&e.actor).unwrap_or(&e.actor)),
                if e.actor_department.is_empty() || e.actor == "system" {
                    String::new()
                } else {
                    format!(
                        " <small class=\"muted\">{}</small>",
                        escape(&names.department(&e.actor_department))
                    )
                },
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
            // Work done and checks carry photos: the worker's proof, the checker's look.
            let photo = if matches!(action.as_str(), "complete" | "close" | "rework") {
                format!(
                    "<label class=\"photo\">{}<input type=\"file\" name=\"photo\" accept=\"image/jpeg,image/png,image/webp\" capture=\"environment\" multiple></label>",
                    t(l, "photo")
                )
            } else {
                String::new()
            };
            format!(
                "<form method=\"post\" action=\"/ui/incidents/{id}/step\" class=\"step step-{action}\" enctype=\"multipart/form-data\"><input type=\"hidden\" name=\"action\" value=\"{action}\">\
                 {department}<input name=\"comment\" required maxlength=\"2000\" placeholder=\"{comment}\" aria-label=\"{comment}\">{photo}<button>{label}</button></form>",
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
         <p class=\"muted\">{address} {grid}</p>{photos}<h3>{timeline_title}</h3><ol class=\"timeline\">{timeline}</ol><h3>{steps}</h3>{forms}\
         <p><a href=\"/ui/incidents\">← {back}</a></p></main>",
        header = header(
            l,
            "workbench",
            &viewer,
            &names.department(&viewer.department)
        ),
        service = escape(&names.category(&i.service_code)),
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
        grid = i
            .grid
            .as_ref()
            .map(|g| format!("{} {}", t(l, "col_grid"), escape(&g.grid_code)))
            .unwrap_or_default(),
        timeline_title = t(l, "timeline"),
        photos = if i.photos.is_empty() {
            String::new()
        } else {
            format!(
                "<p class=\"photos\">{}</p>",
                i.photos
                    .iter()
                    .map(|p| format!(
                        "<a href=\"/ui/media/{p}\"><img src=\"/ui/media/{p}\" alt=\"{alt}\" loading=\"lazy\"></a>",
                        p = escape(p),
                        alt = t(l, "photo")
                    ))
                    .collect::<String>()
            )
        },
        steps = t(l, "steps"),
        back = t(l, "workbench"),
    );
    page(l, t(l, "workbench"), &body).into_response()
}

/// A workflow step from the case page (the same service call and rules as the API), with
/// photos where the step proves work done (办结) or a check (核查).
#[utoipa::path(post, path = "/ui/incidents/{id}/step", tag = "ui", params(("id" = String, Path)),
    request_body(content = String, content_type = "multipart/form-data", description = "action, comment, department (dispatch, reassign), photo (optional, up to six)"),
    responses((status = 303, description = "back to the case"), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 413), (status = 415), (status = 422)))]
pub(crate) async fn step(
    State(web): State<Web>,
    ApiPath(id): ApiPath<String>,
    request: axum::extract::Request,
) -> Response {
    let headers = request.headers().clone();
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let back = format!("/ui/incidents/{id}");
    let form = match crate::report::form_parts(request).await {
        Ok(form) => form,
        Err(problem) => return crate::refusal(l, &problem, &back),
    };
    let action = form.get("action").to_owned();
    let note = AuditNote {
        action: Some(format!("incident.{action}")),
        target: Some(format!("incident:{id}")),
        actor: Some(viewer.name.clone()),
        department: Some(viewer.department.clone()),
        ..AuditNote::default()
    };
    let department = form.get("department");
    let input = TransitionInput {
        action,
        comment: form.get("comment").to_owned(),
        department: (!department.is_empty()).then(|| department.to_owned()),
        into: None,
        photos: form.photos,
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
