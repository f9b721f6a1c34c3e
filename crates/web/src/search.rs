//! Search anywhere: the box in every page's header looks through the devices the user may
//! read, the cases they may see (by number, description or address) and the plan's items and
//! targets, each result linked to its page.

use crate::names::{Names, local_time};
use crate::text::{Lang, t};
use crate::{Web, escape, lang, page};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use yunnao_core::Problem;
use yunnao_governance::queries::IncidentFilter;
use yunnao_http::ApiQuery;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words to look for (1–100 characters).
    pub q: Option<String>,
}

const EACH: i64 = 20;

/// Results for devices, cases and plan items.
#[utoipa::path(get, path = "/ui/search", tag = "ui", params(SearchQuery),
    responses((status = 200, description = "the results page"), (status = 303, description = "to the sign-in page"), (status = 400)))]
pub(crate) async fn search(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let words = query.q.as_deref().unwrap_or("").trim().to_owned();
    if words.chars().count() > 100 {
        return crate::refusal(
            l,
            &Problem::bad_request("search for at most 100 characters"),
            "/",
        );
    }
    let names = Names::load(&web, l).await;
    let mut sections = String::new();
    if !words.is_empty() {
        if let Ok(department) = crate::devices::device_scope(&viewer) {
            let devices = web
                .sensing
                .search_devices(department, &words, EACH)
                .await
                .unwrap_or_default();
            let items: String = devices
                .iter()
                .map(|d| {
                    format!(
                        "<li><a href=\"/ui/devices/{id}\">{name}</a> <small class=\"muted\">{id} · {profile} · {department}</small></li>",
                        id = escape(&d.id),
                        name = escape(&d.name),
                        profile = escape(&names.profile(&d.profile)),
                        department = escape(&names.department(&d.department)),
                    )
                })
                .collect();
            sections.push_str(&section(l, "devices_title", devices.len(), &items));
        }
        let cases = web
            .governance
            .list(
                IncidentFilter {
                    q: Some(words.clone()),
                    limit: Some(EACH),
                    ..IncidentFilter::default()
                },
                &viewer,
            )
            .await
            .map(|p| p.items)
            .unwrap_or_default();
        let items: String = cases
            .iter()
            .map(|i| {
                format!(
                    "<li><a href=\"/ui/incidents/{id}\">{service}</a> <small class=\"muted\">{state} · {district} · {at}</small><br><small>{text}</small></li>",
                    id = escape(&i.id),
                    service = escape(&names.category(&i.service_code)),
                    state = crate::text::state_name(l, i.state),
                    district = escape(&i.grid.as_ref().map(|g| g.district_name.clone()).unwrap_or_default()),
                    at = local_time(Some(&i.created_at)),
                    text = escape(&i.description.chars().take(80).collect::<String>()),
                )
            })
            .collect();
        sections.push_str(&section(l, "workbench", cases.len(), &items));
        let lower = words.to_lowercase();
        let mut plan = String::new();
        let mut found = 0usize;
        for part in &web.plan.doc().parts {
            for item in part.sections.iter().flat_map(|s| s.items.iter()) {
                let hit = item.title_zh.contains(&words)
                    || item.title_en.to_lowercase().contains(&lower)
                    || item.responsible_units_zh.iter().any(|u| u.contains(&words))
                    || item.targets.iter().any(|t| {
                        t.metric_zh.contains(&words) || t.metric_en.to_lowercase().contains(&lower)
                    });
                if hit && (found as i64) < EACH {
                    found += 1;
                    plan.push_str(&format!(
                        "<li><a href=\"/ui/plan#item-{no}\">{no}. {title}</a> <small class=\"muted\">{units}</small></li>",
                        no = item.no,
                        title = escape(if l == Lang::Zh { &item.title_zh } else { &item.title_en }),
                        units = escape(&item.responsible_units_zh.join("、")),
                    ));
                }
            }
        }
        sections.push_str(&section(l, "plan", found, &plan));
    }
    let body = format!(
        "{header}<main class=\"case search\"><h2>{title}</h2>\
         <form method=\"get\" action=\"/ui/search\" class=\"filter\"><input type=\"search\" name=\"q\" value=\"{words}\" maxlength=\"100\" aria-label=\"{title}\" placeholder=\"{hint}\"><button>{title}</button></form>{sections}</main>",
        header = crate::workbench::header(l, "", &viewer, &names.department(&viewer.department)),
        title = t(l, "search"),
        hint = t(l, "search_hint"),
        words = escape(&words),
    );
    page(l, t(l, "search"), &body).into_response()
}

fn section(l: Lang, key: &str, count: usize, items: &str) -> String {
    let items = if count == 0 {
        format!("<p class=\"muted\">{}</p>", t(l, "none_found"))
    } else {
        format!("<ul class=\"results\">{items}</ul>")
    };
    format!(
        "<h3>{} <small class=\"muted\">{count}</small></h3>{items}",
        t(l, key)
    )
}
