//! The sensing pages: the devices the signed-in user's department owns (platform admins: all),
//! with a profile filter, and one device with a chart per key over a chosen time range, its
//! latest values, rules and alarms.

use crate::names::{Names, local_time};
use crate::text::{Lang, t};
use crate::{Web, escape, lang, page};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use yunnao_core::Problem;
use yunnao_http::{ApiPath, ApiQuery};
use yunnao_identity::{Action, Reach, Resource};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceListQuery {
    pub profile: Option<String>,
    pub offset: Option<i64>,
    /// For the export: csv (default) or xlsx.
    pub format: Option<String>,
}

/// Most devices one export holds.
const EXPORT_LIMIT: i64 = 10_000;

/// The device list under its filter as CSV or XLSX (the first 10,000).
#[utoipa::path(get, path = "/ui/devices/export", tag = "ui", params(DeviceListQuery),
    responses((status = 200, description = "text/csv or an XLSX workbook"), (status = 303, description = "to the sign-in page"),
        (status = 400), (status = 403, description = "an account that reads no devices")))]
pub(crate) async fn export(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<DeviceListQuery>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let names = Names::load(&web, l).await;
    let department = match device_scope(&viewer) {
        Ok(department) => department,
        Err(problem) => return crate::refusal(l, &problem, "/"),
    };
    let profile = query.profile.clone().filter(|p| !p.is_empty());
    let made = async {
        let (devices, _) = web
            .sensing
            .list_devices(department, profile.as_deref(), EXPORT_LIMIT, 0)
            .await?;
        let rows: Vec<Vec<String>> = devices
            .iter()
            .map(|d| {
                vec![
                    d.id.clone(),
                    d.name.clone(),
                    names.profile(&d.profile),
                    names.department(&d.department),
                    d.location
                        .as_ref()
                        .map(|p| p.lon.to_string())
                        .unwrap_or_default(),
                    d.location
                        .as_ref()
                        .map(|p| p.lat.to_string())
                        .unwrap_or_default(),
                    if d.status.online {
                        t(l, "yes")
                    } else {
                        t(l, "no")
                    }
                    .to_owned(),
                    local_time(d.status.last_seen.as_deref()),
                    if d.simulated {
                        t(l, "simulated_short")
                    } else {
                        ""
                    }
                    .to_owned(),
                ]
            })
            .collect();
        let titles: Vec<&str> = [
            "col_device_id",
            "col_name",
            "col_profile",
            "col_department",
            "lon",
            "lat",
            "col_online",
            "col_seen",
            "simulated_short",
        ]
        .iter()
        .map(|k| t(l, k))
        .collect();
        crate::alarms::download(query.format.as_deref(), "devices", &titles, &rows)
    };
    match made.await {
        Ok(response) => (
            axum::Extension(yunnao_identity::AuditNote::new("device.export", "devices")),
            response,
        )
            .into_response(),
        Err(problem) => crate::refusal(l, &problem, "/ui/devices"),
    }
}

const PAGE: i64 = 100;

/// Whose devices this viewer lists: all (`None`), their department's, or none at all.
pub(crate) fn device_scope(viewer: &yunnao_identity::Principal) -> Result<Option<&str>, Problem> {
    match viewer.reach(Resource::Devices, Action::Read) {
        Reach::All => Ok(None),
        Reach::Own => Ok(Some(viewer.department.as_str())),
        Reach::None => Err(Problem::forbidden(
            "this account does not read department devices",
        )),
    }
}

/// The device list.
#[utoipa::path(get, path = "/ui/devices", tag = "ui", params(DeviceListQuery),
    responses((status = 200, description = "the device list page"), (status = 303, description = "to the sign-in page"), (status = 403, description = "an account that reads no devices")))]
pub(crate) async fn list(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<DeviceListQuery>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let names = Names::load(&web, l).await;
    let department = match device_scope(&viewer) {
        Ok(department) => department,
        Err(problem) => return crate::refusal(l, &problem, "/"),
    };
    let profile = query.profile.filter(|p| !p.is_empty());
    let offset = query.offset.unwrap_or(0).max(0);
    let (devices, total) = match web
        .sensing
        .list_devices(department, profile.as_deref(), PAGE, offset)
        .await
    {
        Ok(found) => found,
        Err(problem) => return crate::refusal(l, &problem, "/ui/devices"),
    };
    let options: String = web
        .sensing
        .profiles()
        .iter()
        .map(|p| {
            format!(
                "<option value=\"{code}\"{selected}>{name}</option>",
                code = escape(&p.code),
                selected = if profile.as_deref() == Some(p.code.as_str()) {
                    " selected"
                } else {
                    ""
                },
                name = escape(if l == Lang::Zh {
                    &p.name_zh
                } else {
                    &p.name_en
                }),
            )
        })
        .collect();
    let rows: String = devices
        .iter()
        .map(|d| {
            format!(
                "<tr><td><a href=\"/ui/devices/{id}\">{id}</a></td><td>{name}</td><td>{profile}</td><td>{department}</td><td class=\"{class}\">{online}</td><td>{seen}</td><td>{simulated}</td></tr>",
                id = escape(&d.id),
                name = escape(&d.name),
                profile = escape(&names.profile(&d.profile)),
                department = escape(&names.department(&d.department)),
                class = if d.status.online { "online" } else { "offline" },
                online = if d.status.online { t(l, "yes") } else { t(l, "no") },
                seen = local_time(d.status.last_seen.as_deref()),
                simulated = if d.simulated { t(l, "simulated_short") } else { "" },
            )
        })
        .collect();
    let next = if offset + PAGE < total {
        format!(
            "<a href=\"/ui/devices?profile={}&offset={}\">{} →</a>",
            escape(profile.as_deref().unwrap_or("")),
            offset + PAGE,
            t(l, "next_page")
        )
    } else {
        String::new()
    };
    let body = format!(
        "{header}<main class=\"workbench\"><h2>{title} <small class=\"muted\">{total}</small></h2>\
         <form method=\"get\" action=\"/ui/devices\" class=\"filter\"><select name=\"profile\" aria-label=\"{c_profile}\"><option value=\"\">{all}</option>{options}</select><button>{filter}</button>\
         <span class=\"exports\"><a href=\"/ui/devices/export?{chosen}&amp;format=csv\">{csv}</a> <a href=\"/ui/devices/export?{chosen}&amp;format=xlsx\">{xlsx}</a></span></form>\
         <table><thead><tr><th>ID</th><th>{c_name}</th><th>{c_profile}</th><th>{c_department}</th><th>{c_online}</th><th>{c_seen}</th><th></th></tr></thead><tbody>{rows}</tbody></table><p>{next}</p></main>",
        header =
            crate::workbench::header(l, "devices", &viewer, &names.department(&viewer.department)),
        title = t(l, "devices_title"),
        all = t(l, "all_profiles"),
        filter = t(l, "filter"),
        c_name = t(l, "col_name"),
        c_profile = t(l, "col_profile"),
        c_department = t(l, "col_department"),
        c_online = t(l, "col_online"),
        c_seen = t(l, "col_seen"),
        chosen = escape(&crate::query_string(&[("profile", &profile)])),
        csv = t(l, "export_csv"),
        xlsx = t(l, "export_xlsx"),
    );
    page(l, t(l, "devices_title"), &body).into_response()
}

/// The time ranges a device page shows, with the bucket each is summarised in (100–240 points).
const RANGES: [(&str, i64, i64); 4] = [
    ("1h", 3_600_000, 60_000),
    ("24h", 86_400_000, 15 * 60_000),
    ("7d", 7 * 86_400_000, 2 * 3_600_000),
    ("30d", 30 * 86_400_000, 6 * 3_600_000),
];

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// The chart's time range: 1h, 24h (default), 7d or 30d.
    pub range: Option<String>,
}

/// A chart of one key: the band from each bucket's minimum to its maximum (a spike stays
/// visible however long the bucket), the mean as a line, axes with the unit and the times in
/// China Standard Time.
fn chart(buckets: &[yunnao_sensing::series::Bucket], from: i64, to: i64, unit: &str) -> String {
    let filled: Vec<&yunnao_sensing::series::Bucket> =
        buckets.iter().filter(|b| b.count > 0).collect();
    if filled.is_empty() {
        return "<p class=\"muted\">—</p>".to_owned();
    }
    let (low, high) = filled.iter().fold((f64::MAX, f64::MIN), |(lo, hi), b| {
        (lo.min(b.min), hi.max(b.max))
    });
    // A flat series is drawn in the middle of a scale one unit either side.
    let (lo, hi) = if high > low {
        (low, high)
    } else {
        (low - 1.0, high + 1.0)
    };
    let span = hi - lo;
    // Plot area: x 60..990, y 10..110 of a 1000 × 140 drawing.
    let x = |ts: i64| 60.0 + 930.0 * (ts - from) as f64 / (to - from).max(1) as f64;
    let y = |v: f64| 110.0 - 100.0 * (v - lo) / span;
    let mean: Vec<String> = filled
        .iter()
        .map(|b| format!("{:.1},{:.1}", x(b.start), y(b.avg)))
        .collect();
    let band: Vec<String> = filled
        .iter()
        .map(|b| format!("{:.1},{:.1}", x(b.start), y(b.max)))
        .chain(
            filled
                .iter()
                .rev()
                .map(|b| format!("{:.1},{:.1}", x(b.start), y(b.min))),
        )
        .collect();
    let dots: String = filled
        .iter()
        .map(|b| {
            format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.6\"/>",
                x(b.start),
                y(b.avg)
            )
        })
        .collect();
    let unit = escape(unit);
    let y_labels: String = [lo, (lo + hi) / 2.0, hi]
        .iter()
        .map(|v| {
            format!(
                "<text class=\"axis\" x=\"54\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text><line class=\"grid\" x1=\"60\" x2=\"990\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>",
                y(*v) + 4.0,
                y = y(*v)
            )
        })
        .collect();
    let x_labels: String = [from, from + (to - from) / 2, to]
        .iter()
        .enumerate()
        .map(|(n, ts)| {
            let anchor = ["start", "middle", "end"][n];
            let shown = local_time(Some(&yunnao_core::time::rfc3339_ms(*ts)));
            format!(
                "<text class=\"axis\" x=\"{:.1}\" y=\"132\" text-anchor=\"{anchor}\">{}</text>",
                x(*ts),
                shown.get(5..).unwrap_or(&shown)
            )
        })
        .collect();
    format!(
        "<svg class=\"series\" viewBox=\"0 0 1000 140\" preserveAspectRatio=\"xMinYMid meet\" role=\"img\" aria-label=\"{low:.2} – {high:.2} {unit}\">{y_labels}{x_labels}\
         <text class=\"axis\" x=\"4\" y=\"8\">{unit}</text><polygon class=\"band\" points=\"{}\"/><polyline points=\"{}\"/>{dots}</svg>\
         <small class=\"muted\">{low:.2} – {high:.2} {unit}</small>",
        band.join(" "),
        mean.join(" ")
    )
}

/// One device: facts, a chart per key over a chosen time range with its latest value, alarms.
#[utoipa::path(get, path = "/ui/devices/{id}", tag = "ui", params(("id" = String, Path), DeviceQuery),
    responses((status = 200, description = "the device page"), (status = 303), (status = 404)))]
pub(crate) async fn detail(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeviceQuery>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let names = Names::load(&web, l).await;
    let device = match web.sensing.get_device(&id).await {
        Ok(Some(d)) if viewer.may(Resource::Telemetry, Action::Read, &d.department) => d,
        Ok(_) => {
            return crate::refusal(
                l,
                &Problem::not_found(format!("no device {id}")),
                "/ui/devices",
            );
        }
        Err(problem) => return crate::refusal(l, &problem, "/ui/devices"),
    };
    let range = query.range.as_deref().unwrap_or("24h");
    let Some(&(range, span, bucket)) = RANGES.iter().find(|(name, ..)| *name == range) else {
        return crate::refusal(
            l,
            &Problem::bad_request("range is one of 1h, 24h, 7d, 30d"),
            &format!("/ui/devices/{id}"),
        );
    };
    let to = yunnao_core::time::now_ms();
    let from = to - span;
    let switch: String = RANGES
        .iter()
        .map(|(name, ..)| {
            let label = t(l, &format!("range_{name}"));
            if *name == range {
                format!("<b aria-current=\"true\">{label}</b>")
            } else {
                format!(
                    "<a href=\"/ui/devices/{}?range={name}\">{label}</a>",
                    escape(&device.id)
                )
            }
        })
        .collect::<Vec<_>>()
        .join(" · ");
    let mut charts = String::new();
    if let Some(profile) = web.sensing.profile(&device.profile) {
        let keys: Vec<String> = profile.keys.iter().map(|k| k.name.clone()).collect();
        let latest = web
            .sensing
            .latest(&device.id, &keys)
            .await
            .unwrap_or_default();
        for key in &profile.keys {
            let buckets = web
                .sensing
                .aggregate(&device.id, &key.name, from, to, bucket)
                .await
                .unwrap_or_default();
            let now = latest
                .iter()
                .find(|v| v.key == key.name)
                .map(|v| {
                    format!(
                        "{} <b class=\"latest\">{} {}</b> <small class=\"muted\">{}</small>",
                        t(l, "latest"),
                        v.value,
                        escape(&key.unit),
                        local_time(Some(&yunnao_core::time::rfc3339_ms(v.ts)))
                    )
                })
                .unwrap_or_default();
            charts.push_str(&format!(
                "<div class=\"chart-box\"><h3>{} <small class=\"muted\">{}</small></h3><p>{now}</p>{}</div>",
                escape(&crate::text::key_name(l, &key.name)),
                escape(&key.unit),
                chart(&buckets, from, to, &key.unit)
            ));
        }
    }
    let charts = format!("<p class=\"ranges\">{switch}</p>{charts}");
    let profile = web.sensing.profile(&device.profile);
    let rules_now = web.sensing.alarms.rules();
    let alarms: String = web
        .sensing
        .alarms
        .list(&yunnao_sensing::alarms::AlarmFilter {
            department: None,
            device: Some(&device.id),
            severity: None,
            status: yunnao_sensing::alarms::AlarmStatus::All,
            limit: 20,
        })
        .await
        .unwrap_or_default()
        .iter()
        .map(|a| {
            format!(
                "<li class=\"alarm-{}\"><time>{}</time> {} {} — {}</li>",
                a.severity.as_str(),
                local_time(Some(&a.raised_at)),
                crate::text::severity_name(l, a.severity.as_str()),
                escape(&crate::alarms::alarm_text(
                    l,
                    a,
                    rules_now.iter().find(|r| r.id == a.rule_id),
                    profile.as_deref()
                )),
                crate::alarms::status_name(l, &a.status)
            )
        })
        .collect();
    let rules: String = rules_now
        .iter()
        .filter(|r| r.applies_to(&device.id, &device.profile, &device.department))
        .map(|r| {
            format!(
                "<tr class=\"alarm-{severity}\"><td>{name}</td><td>{condition}</td><td>{severity_name}</td></tr>",
                severity = r.severity.as_str(),
                name = escape(&r.name),
                condition = escape(&crate::alarms::rule_condition(l, r, profile.as_deref())),
                severity_name = crate::text::severity_name(l, r.severity.as_str()),
            )
        })
        .collect();
    let rules = if rules.is_empty() {
        "<p class=\"muted\">—</p>".to_owned()
    } else {
        format!(
            "<table class=\"rules\"><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{rules}</tbody></table>",
            t(l, "col_name"),
            t(l, "col_rule"),
            t(l, "col_severity")
        )
    };
    let body = format!(
        "{header}<main class=\"case\"><h2>{name} <small class=\"muted\">{id}</small></h2>\
         <p>{profile} · {department} · {online} · {location}{simulated}</p><h3>{last24}</h3>{charts}\
         <h3>{rules_title}</h3>{rules}<h3>{alarms_title}</h3><ol class=\"timeline\">{alarms}</ol><p><a href=\"/ui/devices\">← {back}</a></p></main>",
        header =
            crate::workbench::header(l, "devices", &viewer, &names.department(&viewer.department)),
        name = escape(&device.name),
        id = escape(&device.id),
        profile = escape(&names.profile(&device.profile)),
        department = escape(&names.department(&device.department)),
        online = if device.status.online {
            t(l, "online")
        } else {
            t(l, "offline")
        },
        location = device
            .location
            .map(|p| format!("{:.5}, {:.5}", p.lon, p.lat))
            .unwrap_or_default(),
        simulated = if device.simulated {
            format!(" · {}", t(l, "simulated_short"))
        } else {
            String::new()
        },
        last24 = t(l, "last24"),
        alarms_title = t(l, "alarms_title"),
        rules_title = t(l, "rules_title"),
        back = t(l, "devices_title"),
    );
    page(l, t(l, "devices_title"), &body).into_response()
}
