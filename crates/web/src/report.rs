//! Reporting from the field and from the street: a grid worker's 巡查上报 and a resident's or
//! an enterprise's 随手拍, both with photos and the phone's location, through the same service
//! call as the API and Open311; the citizen page with one's own reports; photos of a case.

use crate::names::{Names, local_time};
use crate::text::{Lang, t};
use crate::workbench::is_citizen;
use crate::{Web, escape, lang, page};
use axum::Extension;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::HashMap;
use yunnao_core::Problem;
use yunnao_governance::incidents::{
    Location, MAX_PHOTO_BYTES, MAX_PHOTOS, Photo, Report, Source, photo_type,
};
use yunnao_governance::queries::IncidentFilter;
use yunnao_http::ApiPath;
use yunnao_identity::{AuditNote, Principal, Role};

/// Largest form with photos (the API's patrol-report limit).
pub(crate) const UPLOAD_LIMIT: usize = (MAX_PHOTOS + 1) * MAX_PHOTO_BYTES;

/// A form's text fields and photos, sent as `multipart/form-data` (with photos) or
/// `application/x-www-form-urlencoded` (without).
pub(crate) struct FormParts {
    pub fields: HashMap<String, String>,
    pub photos: Vec<Photo>,
}

impl FormParts {
    pub(crate) fn get(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", |v| v.trim())
    }
}

const MAX_FIELDS: usize = 20;
const MAX_FIELD_CHARS: usize = 4_000;

pub(crate) async fn form_parts(request: Request) -> Result<FormParts, Problem> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut fields = HashMap::new();
    let mut photos = Vec::new();
    let mut keep = |name: String, value: String| -> Result<(), Problem> {
        if fields.len() >= MAX_FIELDS || value.chars().count() > MAX_FIELD_CHARS {
            return Err(Problem::bad_request(format!(
                "at most {MAX_FIELDS} fields of {MAX_FIELD_CHARS} characters"
            )));
        }
        fields.insert(name, value);
        Ok(())
    };
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = axum::extract::Multipart::from_request(request, &())
            .await
            .map_err(|e| Problem::bad_request(format!("unreadable form: {e}")))?;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| Problem::bad_request(format!("unreadable form: {e}")))?
        {
            let name = field.name().unwrap_or_default().to_owned();
            let is_file = field.file_name().is_some();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| Problem::bad_request(format!("part {name}: {e}")))?;
            if name == "photo" && is_file {
                // A file input left empty still sends an empty part.
                if bytes.is_empty() {
                    continue;
                }
                if photos.len() == MAX_PHOTOS {
                    return Err(Problem::validation(format!("at most {MAX_PHOTOS} photos")));
                }
                if bytes.len() > MAX_PHOTO_BYTES {
                    return Err(Problem::payload_too_large("a photo is at most 5 MiB"));
                }
                let content_type = photo_type(&bytes)
                    .ok_or_else(|| Problem::validation("a photo is a JPEG, PNG or WebP image"))?;
                photos.push(Photo {
                    content_type: content_type.to_owned(),
                    bytes: bytes.to_vec(),
                });
            } else {
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| Problem::bad_request(format!("field {name} is not UTF-8")))?;
                keep(name, text)?;
            }
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let body = axum::body::Bytes::from_request(request, &())
            .await
            .map_err(|e| Problem::payload_too_large(format!("the form is too large: {e}")))?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|e| Problem::bad_request(format!("unreadable form: {e}")))?;
        for (name, value) in pairs {
            keep(name, value)?;
        }
    } else {
        return Err(Problem::unsupported_media_type(
            "send the form as multipart/form-data or application/x-www-form-urlencoded",
        ));
    }
    Ok(FormParts { fields, photos })
}

/// The report form: category, what and where (the phone's position, or typed in), photos.
#[utoipa::path(get, path = "/ui/report", tag = "ui",
    responses((status = 200, description = "the report form"), (status = 303, description = "to the sign-in page")))]
pub(crate) async fn form(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let names = Names::load(&web, l).await;
    let categories = web.governance.categories().await.unwrap_or_default();
    // A class is its kind and code: 部件 01 and 事件 01 are different classes.
    let mut classes: Vec<((String, String), String)> = Vec::new();
    for c in &categories {
        let class = (c.kind.clone(), c.class_code.clone());
        if !classes.iter().any(|(key, _)| *key == class) {
            let name = if l == Lang::Zh {
                &c.class_name
            } else {
                &c.class_name_en
            };
            let kind = match (c.kind.as_str(), l) {
                ("component", Lang::Zh) => "部件",
                ("component", Lang::En) => "Component",
                (_, Lang::Zh) => "事件",
                (_, Lang::En) => "Event",
            };
            classes.push((class, format!("{kind} · {name}")));
        }
    }
    let options: String = classes
        .iter()
        .map(|(code, name)| {
            let inner: String = categories
                .iter()
                .filter(|c| c.kind == code.0 && c.class_code == code.1)
                .map(|c| {
                    format!(
                        "<option value=\"{}\">{}</option>",
                        escape(&c.service_code),
                        escape(if l == Lang::Zh { &c.name } else { &c.name_en })
                    )
                })
                .collect();
            format!("<optgroup label=\"{}\">{inner}</optgroup>", escape(name))
        })
        .collect();
    let key = if is_citizen(&viewer) {
        "report_new"
    } else {
        "report_patrol"
    };
    let body = format!(
        "{header}<main class=\"case report\"><h2>{title}</h2>\
         <form method=\"post\" action=\"/ui/report\" enctype=\"multipart/form-data\" class=\"report-form\">\
         <label>{c_category}<select name=\"service_code\" required><option value=\"\">{choose}</option>{options}</select></label>\
         <label>{c_description}<textarea name=\"description\" required maxlength=\"2000\" rows=\"3\"></textarea></label>\
         <label>{c_address}<input name=\"address\" maxlength=\"200\"></label>\
         <fieldset class=\"where\"><legend>{where_label}</legend><button type=\"button\" id=\"locate\">{locate}</button> <span id=\"located\" class=\"muted\" role=\"status\"></span>\
         <label>{lon}<input name=\"lon\" id=\"lon\" inputmode=\"decimal\" required></label><label>{lat}<input name=\"lat\" id=\"lat\" inputmode=\"decimal\" required></label></fieldset>\
         <label>{photo}<input type=\"file\" name=\"photo\" accept=\"image/jpeg,image/png,image/webp\" capture=\"environment\" multiple></label>\
         <button type=\"submit\" class=\"primary\">{submit}</button></form></main>",
        header = crate::workbench::header(l, key, &viewer, &names.department(&viewer.department)),
        title = t(l, key),
        c_category = t(l, "col_service"),
        choose = t(l, "choose"),
        c_description = t(l, "col_description"),
        c_address = t(l, "col_address"),
        where_label = t(l, "where"),
        locate = t(l, "locate"),
        lon = t(l, "lon"),
        lat = t(l, "lat"),
        photo = t(l, "photo"),
        submit = t(l, "submit_report"),
    );
    page(l, t(l, key), &body).into_response()
}

/// Files the report: a grid worker's as a patrol finding, a resident's or an enterprise's as a
/// citizen report, staff's as an API report; located in the city it is registered and
/// dispatched by the dispatch rules at once.
#[utoipa::path(post, path = "/ui/report", tag = "ui",
    request_body(content = String, content_type = "multipart/form-data"),
    responses((status = 303, description = "to the case (staff) or to my reports (citizens)"), (status = 400), (status = 404), (status = 413), (status = 415), (status = 422)))]
pub(crate) async fn submit(State(web): State<Web>, request: Request) -> Response {
    let headers = request.headers().clone();
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let back = "/ui/report";
    let parts = match form_parts(request).await {
        Ok(parts) => parts,
        Err(problem) => return crate::refusal(l, &problem, back),
    };
    let (Ok(lon), Ok(lat)) = (
        parts.get("lon").parse::<f64>(),
        parts.get("lat").parse::<f64>(),
    ) else {
        return crate::refusal(
            l,
            &Problem::validation("the place is needed: longitude and latitude as numbers"),
            back,
        );
    };
    let source = if viewer.has_role(Role::GridWorker) {
        Source::Patrol
    } else if is_citizen(&viewer) {
        Source::Citizen
    } else {
        Source::Api
    };
    let mut report = Report::new(
        source,
        parts.get("service_code"),
        parts.get("description"),
        &viewer.name,
    );
    report.location = Some(Location { lon, lat });
    report.address = parts.get("address").to_owned();
    report.reporter = Some((viewer.id.clone(), viewer.department.clone()));
    report.photos = parts.photos;
    match web.governance.report(report).await {
        Ok(created) => {
            let id = created.incident.id;
            let note = AuditNote {
                action: Some(format!("incident.{}", source.as_str())),
                target: Some(format!("incident:{id}")),
                actor: Some(viewer.name.clone()),
                department: Some(viewer.department.clone()),
                ..AuditNote::default()
            };
            let to = if is_citizen(&viewer) {
                format!("/ui/me?reported={id}")
            } else {
                format!("/ui/incidents/{id}")
            };
            (Extension(note), Redirect::to(&to)).into_response()
        }
        Err(problem) => crate::refusal(l, &problem, back),
    }
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MeQuery {
    /// The case just reported (the page says it was received).
    pub reported: Option<String>,
}

/// A resident's or an enterprise's page: their reports with where each stands, and 随手拍.
#[utoipa::path(get, path = "/ui/me", tag = "ui", params(MeQuery),
    responses((status = 200, description = "my reports"), (status = 303, description = "to the sign-in page"), (status = 400)))]
pub(crate) async fn me(
    State(web): State<Web>,
    headers: HeaderMap,
    yunnao_http::ApiQuery(query): yunnao_http::ApiQuery<MeQuery>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let names = Names::load(&web, l).await;
    let mine = own_reports(&web, &viewer).await;
    let cards: String = mine
        .iter()
        .map(|i| {
            format!(
                "<li class=\"card\"><a href=\"/ui/incidents/{id}\"><b>{service}</b></a> <span class=\"state s-{state_code}\">{state}</span>\
                 <p>{text}</p><small class=\"muted\">{at} · {district} · {department}</small></li>",
                id = escape(&i.id),
                service = escape(&names.category(&i.service_code)),
                state_code = i.state.as_str(),
                state = crate::text::state_name(l, i.state),
                text = escape(&i.description.chars().take(120).collect::<String>()),
                at = local_time(Some(&i.created_at)),
                district = escape(&i.grid.as_ref().map(|g| g.district_name.clone()).unwrap_or_default()),
                department = escape(&i.department.as_deref().map_or("—".to_owned(), |d| names.department(d))),
            )
        })
        .collect();
    let cards = if cards.is_empty() {
        format!("<p class=\"muted\">{}</p>", t(l, "no_reports"))
    } else {
        format!("<ul class=\"cards\">{cards}</ul>")
    };
    let received = query
        .reported
        .filter(|id| mine.iter().any(|i| i.id == *id))
        .map(|id| {
            format!(
                "<p class=\"received\" role=\"status\">{} <a href=\"/ui/incidents/{id}\">{id}</a></p>",
                t(l, "report_received"),
                id = escape(&id)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{header}<main class=\"case me\"><h2>{title}</h2>{received}<p><a class=\"button\" href=\"/ui/report\">{report}</a></p>{cards}\
         <p class=\"muted\">{services}</p></main>",
        header = crate::workbench::header(
            l,
            "my_reports",
            &viewer,
            &names.department(&viewer.department)
        ),
        title = t(l, "my_reports"),
        report = t(l, "report_new"),
        services = t(l, "services_soon"),
    );
    page(l, t(l, "my_reports"), &body).into_response()
}

/// The viewer's own reports, newest first (what `list` shows a resident is exactly these).
async fn own_reports(web: &Web, viewer: &Principal) -> Vec<yunnao_governance::incidents::Incident> {
    web.governance
        .list(
            IncidentFilter {
                limit: Some(100),
                ..IncidentFilter::default()
            },
            viewer,
        )
        .await
        .map(|p| p.items)
        .unwrap_or_default()
}

/// A photo of a case the viewer may see.
#[utoipa::path(get, path = "/ui/media/{id}", tag = "ui", params(("id" = String, Path)),
    responses((status = 200, description = "the image"), (status = 303, description = "to the sign-in page"), (status = 404)))]
pub(crate) async fn media(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    match web.governance.media(&id, &viewer).await {
        Ok((content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "private, max-age=3600".to_owned()),
            ],
            bytes,
        )
            .into_response(),
        Err(problem) => crate::refusal(lang(&headers), &problem, "/ui/incidents"),
    }
}
