//! The alarm page: the alarms the signed-in user may read, filtered by severity, state,
//! department and district, each in words (`雨量 35.2 mm（> 30 mm，连续 2 次）`) with links to
//! its device and the case it became; acknowledge and clear with a comment, through the same
//! checks as the API; the list as CSV or XLSX.

use crate::names::{Names, local_time};
use crate::text::{Lang, key_name, severity_name, t};
use crate::{Web, escape, lang, page};
use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::collections::HashMap;
use yunnao_core::Problem;
use yunnao_http::{ApiPath, ApiQuery};
use yunnao_identity::{Action, AuditNote, Principal, Reach, Resource};
use yunnao_sensing::Profile;
use yunnao_sensing::alarms::{
    AlarmFilter, AlarmStatus, AlarmView, Operator, Rule, RuleKind, Severity,
};
use yunnao_sensing::api::AlarmStep;

/// The unit of a rule's key in its profile ("" when not known).
fn unit_of<'a>(profile: Option<&'a Profile>, key: Option<&str>) -> &'a str {
    profile
        .and_then(|p| p.keys.iter().find(|k| Some(k.name.as_str()) == key))
        .map_or("", |k| k.unit.as_str())
}

fn number(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A unit as shown after a number (none for on/off keys).
fn shown_unit(profile: Option<&Profile>, key: Option<&str>) -> String {
    match unit_of(profile, key) {
        "" | "bool" => String::new(),
        unit => format!(" {unit}"),
    }
}

/// The condition without its key: `> 30 mm，连续 2 次`, `超出 6–9 pH`.
fn condition_tail(l: Lang, rule: &Rule, profile: Option<&Profile>) -> String {
    let unit = shown_unit(profile, rule.key.as_deref());
    let threshold = number(rule.threshold.unwrap_or_default());
    let mut text = match (rule.kind, rule.operator, l) {
        (RuleKind::NoData, ..) => String::new(),
        (RuleKind::Rate, _, Lang::Zh) => format!("每分钟变化超过 {threshold}{unit}"),
        (RuleKind::Rate, _, Lang::En) => format!("changing by more than {threshold}{unit}/min"),
        (_, Some(Operator::Below), _) => format!("< {threshold}{unit}"),
        (_, Some(Operator::Outside), l) => format!(
            "{} {threshold}–{}{unit}",
            if l == Lang::Zh { "超出" } else { "outside" },
            number(rule.threshold_high.unwrap_or_default())
        ),
        _ => format!("> {threshold}{unit}"),
    };
    if rule.kind != RuleKind::NoData {
        if rule.consecutive > 1 {
            text.push_str(&match l {
                Lang::Zh => format!("，连续 {} 次", rule.consecutive),
                Lang::En => format!(", {} readings in a row", rule.consecutive),
            });
        }
        if rule.duration_s > 0 {
            text.push_str(&match l {
                Lang::Zh => format!("，持续 {} 秒", rule.duration_s),
                Lang::En => format!(", for {} s", rule.duration_s),
            });
        }
    }
    text
}

fn no_data(l: Lang, rule: &Rule) -> String {
    match l {
        Lang::Zh => format!("连续 {} 个上报周期无数据", rule.missed_intervals),
        Lang::En => format!("no data for {} reporting intervals", rule.missed_intervals),
    }
}

/// A rule's condition in words: `雨量 > 30 mm，连续 2 次`.
pub(crate) fn rule_condition(l: Lang, rule: &Rule, profile: Option<&Profile>) -> String {
    if rule.kind == RuleKind::NoData {
        return no_data(l, rule);
    }
    let key = rule
        .key
        .as_deref()
        .map_or_else(|| "*".to_owned(), |k| key_name(l, k));
    format!("{key} {}", condition_tail(l, rule, profile))
}

/// What an alarm says in words: the rule's name, the value that raised it and the condition,
/// `水库超警戒水位：水位 46.52 m（> 45 m，连续 2 次）`. An alarm whose rule is gone keeps the
/// engine's message.
pub(crate) fn alarm_text(
    l: Lang,
    alarm: &AlarmView,
    rule: Option<&Rule>,
    profile: Option<&Profile>,
) -> String {
    let Some(rule) = rule else {
        return alarm.message.clone();
    };
    let separator = if l == Lang::Zh { "：" } else { ": " };
    let (Some(value), false) = (alarm.value, rule.kind == RuleKind::NoData) else {
        return format!(
            "{}{separator}{}",
            rule.name,
            rule_condition(l, rule, profile)
        );
    };
    let key = key_name(l, rule.key.as_deref().unwrap_or(""));
    let unit = shown_unit(profile, rule.key.as_deref());
    let tail = condition_tail(l, rule, profile);
    match (rule.kind, l) {
        (RuleKind::Rate, Lang::Zh) => format!(
            "{}：{key} 每分钟变化 {}{unit}（{tail}）",
            rule.name,
            number(value)
        ),
        (RuleKind::Rate, Lang::En) => format!(
            "{}: {key} changing {}{unit}/min ({tail})",
            rule.name,
            number(value)
        ),
        (_, Lang::Zh) => format!("{}：{key} {}{unit}（{tail}）", rule.name, number(value)),
        (_, Lang::En) => format!("{}: {key} {}{unit} ({tail})", rule.name, number(value)),
    }
}

pub(crate) fn status_name(l: Lang, status: &str) -> &'static str {
    match status {
        "active" => t(l, "alarm_active"),
        "acknowledged" => t(l, "alarm_acknowledged"),
        _ => t(l, "alarm_cleared"),
    }
}

#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlarmListQuery {
    /// critical, major, minor or warning; empty for any.
    pub severity: Option<String>,
    /// open (default), active, acknowledged, cleared or all.
    pub status: Option<String>,
    /// A department code (platform-wide readers only).
    pub department: Option<String>,
    /// A district code (370202 …).
    pub district: Option<String>,
    /// For the export: csv (default) or xlsx.
    pub format: Option<String>,
}

/// One alarm as the page and the export show it.
struct AlarmLine {
    alarm: AlarmView,
    device: String,
    district: String,
    text: String,
    case: Option<String>,
    may_act: bool,
}

const SHOWN: usize = 200;

/// The alarms the viewer may read under the filter, newest first, with names and cases.
async fn lines(
    web: &Web,
    viewer: &Principal,
    l: Lang,
    query: &AlarmListQuery,
) -> Result<Vec<AlarmLine>, Problem> {
    let empty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let severity = match empty(&query.severity) {
        Some(text) => Some(Severity::from_name(&text).ok_or_else(|| {
            Problem::bad_request("severity is critical, major, minor or warning")
        })?),
        None => None,
    };
    let status = match empty(&query.status) {
        Some(text) => AlarmStatus::parse(&text).ok_or_else(|| {
            Problem::bad_request("status is open, active, acknowledged, cleared or all")
        })?,
        None => AlarmStatus::Open,
    };
    let department = match viewer.reach(Resource::Alarms, Action::Read) {
        Reach::All => empty(&query.department),
        Reach::Own => Some(viewer.department.clone()),
        Reach::None => {
            return Err(Problem::forbidden("this account does not read alarms"));
        }
    };
    let district = empty(&query.district);
    // A district is a device's place, not a column of the alarm: read more, keep the district's.
    let limit = if district.is_some() {
        1000
    } else {
        SHOWN as i64
    };
    let alarms = web
        .sensing
        .alarms
        .list(&AlarmFilter {
            department: department.as_deref(),
            device: None,
            severity,
            status,
            limit,
        })
        .await?;
    let mut ids: Vec<&str> = alarms.iter().map(|a| a.device_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let devices: HashMap<String, yunnao_sensing::DeviceView> = web
        .sensing
        .get_devices(&ids)
        .await?
        .into_iter()
        .map(|d| (d.id.clone(), d))
        .collect();
    let rules: HashMap<String, Rule> = web
        .sensing
        .alarms
        .rules()
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let grid = &web.governance.grid;
    let mut out: Vec<AlarmLine> = Vec::new();
    for alarm in alarms {
        let device = devices.get(&alarm.device_id);
        let place = device
            .and_then(|d| d.location.as_ref())
            .and_then(|p| grid.district_of(p.lon, p.lat));
        if let Some(wanted) = &district
            && place.is_none_or(|d| &d.code != wanted)
        {
            continue;
        }
        let profile = device.and_then(|d| web.sensing.profile(&d.profile));
        out.push(AlarmLine {
            text: alarm_text(l, &alarm, rules.get(&alarm.rule_id), profile.as_deref()),
            device: device.map_or_else(|| alarm.device_id.clone(), |d| d.name.clone()),
            district: place.map(|d| d.name.clone()).unwrap_or_default(),
            may_act: alarm.status != "cleared"
                && viewer.may(Resource::Alarms, Action::Write, &alarm.department),
            case: None,
            alarm,
        });
        if out.len() == SHOWN {
            break;
        }
    }
    let alarm_ids: Vec<&str> = out.iter().map(|a| a.alarm.id.as_str()).collect();
    let mut cases = web.governance.cases_of_alarms(&alarm_ids).await?;
    for line in &mut out {
        line.case = cases.remove(&line.alarm.id);
    }
    Ok(out)
}

fn select(name: &str, label: &str, chosen: Option<&str>, options: &[(String, String)]) -> String {
    format!(
        "<select name=\"{name}\" aria-label=\"{label}\">{}</select>",
        crate::options(chosen, options)
    )
}

/// The query string of the filter, for the export links.
fn filter_query(query: &AlarmListQuery) -> String {
    crate::query_string(&[
        ("severity", &query.severity),
        ("status", &query.status),
        ("department", &query.department),
        ("district", &query.district),
    ])
}

/// The alarm list.
#[utoipa::path(get, path = "/ui/alarms", tag = "ui", params(AlarmListQuery),
    responses((status = 200, description = "the alarm page"), (status = 303, description = "to the sign-in page"),
        (status = 400, description = "a filter that is not one"), (status = 403, description = "an account that reads no alarms")))]
pub(crate) async fn list(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<AlarmListQuery>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let names = Names::load(&web, l).await;
    let found = match lines(&web, &viewer, l, &query).await {
        Ok(found) => found,
        Err(problem) => return crate::refusal(l, &problem, "/ui/alarms"),
    };
    let here = format!("/ui/alarms?{}", filter_query(&query));
    let rows: String = found
        .iter()
        .map(|a| {
            let actions = if a.may_act {
                let form = |step: &str, label: &str| {
                    format!(
                        "<form method=\"post\" action=\"/ui/alarms/{id}/{step}\" class=\"alarm-step\"><input type=\"hidden\" name=\"back\" value=\"{back}\">\
                         <input name=\"comment\" required maxlength=\"500\" placeholder=\"{comment}\" aria-label=\"{comment}\"><button>{label}</button></form>",
                        id = escape(&a.alarm.id),
                        back = escape(&here),
                        comment = t(l, "comment"),
                    )
                };
                let mut forms = String::new();
                if a.alarm.status == "active" {
                    forms.push_str(&form("ack", t(l, "alarm_ack")));
                }
                forms.push_str(&form("clear", t(l, "alarm_clear")));
                forms
            } else {
                String::new()
            };
            let note = [
                (&a.alarm.acknowledged_by, &a.alarm.acknowledge_comment, "alarm_acknowledged"),
                (&a.alarm.cleared_by, &a.alarm.clear_comment, "alarm_cleared"),
            ]
            .iter()
            .filter_map(|(by, comment, key)| {
                by.as_ref().map(|by| {
                    format!(
                        "<small class=\"muted\">{} {}{}</small>",
                        t(l, key),
                        if by == "auto" { t(l, "auto").to_owned() } else { escape(by) },
                        comment
                            .as_ref()
                            .map(|c| format!("：{}", escape(c)))
                            .unwrap_or_default()
                    )
                })
            })
            .collect::<Vec<_>>()
            .join("<br>");
            format!(
                "<tr class=\"sev-{severity}\"><td>{at}</td><td class=\"severity\">{severity_name}</td><td><a href=\"/ui/devices/{device_id}\">{device}</a></td>\
                 <td>{text}</td><td>{district}</td><td>{department}</td><td>{status}<br>{note}</td><td>{case}</td><td>{actions}</td></tr>",
                severity = a.alarm.severity.as_str(),
                at = local_time(Some(&a.alarm.raised_at)),
                severity_name = severity_name(l, a.alarm.severity.as_str()),
                device_id = escape(&a.alarm.device_id),
                device = escape(&a.device),
                text = escape(&a.text),
                district = escape(&a.district),
                department = escape(&names.department(&a.alarm.department)),
                status = status_name(l, &a.alarm.status),
                case = a
                    .case
                    .as_ref()
                    .map(|c| format!("<a href=\"/ui/incidents/{id}\">{}</a>", t(l, "open_case"), id = escape(c)))
                    .unwrap_or_default(),
            )
        })
        .collect();
    let rows = if rows.is_empty() {
        format!(
            "<tr><td colspan=\"9\" class=\"muted\">{}</td></tr>",
            t(l, "none_found")
        )
    } else {
        rows
    };
    let severities: Vec<(String, String)> =
        std::iter::once((String::new(), t(l, "all_severities").to_owned()))
            .chain(
                ["critical", "major", "minor", "warning"]
                    .iter()
                    .map(|s| (s.to_string(), severity_name(l, s).to_owned())),
            )
            .collect();
    let statuses: Vec<(String, String)> = [
        ("open", "alarm_open"),
        ("active", "alarm_active"),
        ("acknowledged", "alarm_acknowledged"),
        ("cleared", "alarm_cleared"),
        ("all", "alarm_all"),
    ]
    .iter()
    .map(|(v, k)| (v.to_string(), t(l, k).to_owned()))
    .collect();
    let departments = if viewer.reach(Resource::Alarms, Action::Read) == Reach::All {
        let options: Vec<(String, String)> =
            std::iter::once((String::new(), t(l, "all_departments").to_owned()))
                .chain(names.departments())
                .collect();
        select(
            "department",
            t(l, "col_department"),
            query.department.as_deref(),
            &options,
        )
    } else {
        String::new()
    };
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
    let exports = escape(&filter_query(&query));
    let body = format!(
        "{header}<main class=\"workbench\"><h2>{title} <small class=\"muted\">{count}</small></h2>\
         <form method=\"get\" action=\"/ui/alarms\" class=\"filter\">{sev}{st}{dept}{dist}<button>{filter}</button>\
         <span class=\"exports\"><a href=\"/ui/alarms/export?{exports}&amp;format=csv\">{csv}</a> <a href=\"/ui/alarms/export?{exports}&amp;format=xlsx\">{xlsx}</a></span></form>\
         <div class=\"table-wrap\"><table class=\"alarms\"><thead><tr><th>{c_at}</th><th>{c_sev}</th><th>{c_device}</th><th>{c_text}</th><th>{c_district}</th><th>{c_department}</th><th>{c_state}</th><th>{c_case}</th><th></th></tr></thead>\
         <tbody>{rows}</tbody></table></div></main>",
        header =
            crate::workbench::header(l, "alarms", &viewer, &names.department(&viewer.department)),
        title = t(l, "alarms_title"),
        count = found.len(),
        sev = select(
            "severity",
            t(l, "col_severity"),
            query.severity.as_deref(),
            &severities
        ),
        st = select(
            "status",
            t(l, "col_state"),
            query.status.as_deref().or(Some("open")),
            &statuses
        ),
        dept = departments,
        dist = select(
            "district",
            t(l, "col_district"),
            query.district.as_deref(),
            &districts
        ),
        filter = t(l, "filter"),
        csv = t(l, "export_csv"),
        xlsx = t(l, "export_xlsx"),
        c_at = t(l, "col_raised"),
        c_sev = t(l, "col_severity"),
        c_device = t(l, "col_device"),
        c_text = t(l, "col_alarm"),
        c_district = t(l, "col_district"),
        c_department = t(l, "col_department"),
        c_state = t(l, "col_state"),
        c_case = t(l, "col_case"),
    );
    page(l, t(l, "alarms_title"), &body).into_response()
}

/// A list as a download: CSV (with a byte-order mark, for spreadsheet programs) or XLSX.
pub(crate) fn download(
    format: Option<&str>,
    name: &str,
    headers: &[&str],
    rows: &[Vec<String>],
) -> Result<Response, Problem> {
    let (content_type, extension, bytes) = match format.unwrap_or("csv") {
        "csv" => (
            "text/csv; charset=utf-8",
            "csv",
            yunnao_core::tables::write_csv(headers, rows),
        ),
        "xlsx" => (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
            yunnao_core::tables::write_xlsx(name, headers, rows),
        ),
        other => {
            return Err(Problem::bad_request(format!(
                "format {other:?}: use csv or xlsx"
            )));
        }
    };
    let bytes = bytes.map_err(Problem::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.{extension}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The alarm list under the page's filter as CSV or XLSX.
#[utoipa::path(get, path = "/ui/alarms/export", tag = "ui", params(AlarmListQuery),
    responses((status = 200, description = "text/csv or an XLSX workbook"), (status = 303, description = "to the sign-in page"),
        (status = 400), (status = 403)))]
pub(crate) async fn export(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<AlarmListQuery>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let names = Names::load(&web, l).await;
    let made = async {
        let found = lines(&web, &viewer, l, &query).await?;
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|a| {
                vec![
                    a.alarm.id.clone(),
                    local_time(Some(&a.alarm.raised_at)),
                    severity_name(l, a.alarm.severity.as_str()).to_owned(),
                    a.alarm.device_id.clone(),
                    a.device.clone(),
                    a.text.clone(),
                    a.district.clone(),
                    names.department(&a.alarm.department),
                    status_name(l, &a.alarm.status).to_owned(),
                    a.case.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let titles: Vec<&str> = [
            "col_id",
            "col_raised",
            "col_severity",
            "col_device_id",
            "col_device",
            "col_alarm",
            "col_district",
            "col_department",
            "col_state",
            "col_case",
        ]
        .iter()
        .map(|k| t(l, k))
        .collect();
        download(query.format.as_deref(), "alarms", &titles, &rows)
    };
    match made.await {
        Ok(response) => (
            Extension(AuditNote::new("alarm.export", "alarms")),
            response,
        )
            .into_response(),
        Err(problem) => crate::refusal(l, &problem, "/ui/alarms"),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AlarmStepForm {
    pub comment: String,
    /// The alarm page to go back to (with its filter).
    #[serde(default)]
    pub back: String,
}

/// Acknowledge (`ack`) or clear (`clear`) an alarm from the alarm page, with a comment.
#[utoipa::path(post, path = "/ui/alarms/{id}/{step}", tag = "ui", params(("id" = String, Path), ("step" = String, Path)),
    request_body(content = AlarmStepForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "back to the alarm page"), (status = 400), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub(crate) async fn step(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath((id, step)): ApiPath<(String, String)>,
    form: Result<Form<AlarmStepForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let Ok(Form(form)) = form else {
        return crate::refusal(l, &Problem::bad_request("send a comment"), "/ui/alarms");
    };
    // Back only to an alarm page of this site.
    let back = if form.back.starts_with("/ui/alarms") && !form.back.contains("//") {
        form.back.clone()
    } else {
        "/ui/alarms".to_owned()
    };
    let (kind, action) = match step.as_str() {
        "ack" => (AlarmStep::Acknowledge, "alarm.acknowledge"),
        "clear" => (AlarmStep::Clear, "alarm.clear"),
        _ => {
            return crate::refusal(l, &Problem::not_found("the step is ack or clear"), &back);
        }
    };
    let comment = form.comment.trim();
    if comment.is_empty() || comment.chars().count() > 500 {
        return crate::refusal(
            l,
            &Problem::validation("a comment of 1 to 500 characters is needed"),
            &back,
        );
    }
    let note = AuditNote {
        action: Some(action.to_owned()),
        target: Some(format!("alarm:{id}")),
        actor: Some(viewer.name.clone()),
        department: Some(viewer.department.clone()),
        ..AuditNote::default()
    };
    match yunnao_sensing::api::alarm_step(&web.sensing, &viewer, &id, kind, Some(comment)).await {
        Ok(_) => (Extension(note), Redirect::to(&back)).into_response(),
        Err(problem) => (Extension(note), crate::refusal(l, &problem, &back)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunnao_sensing::profiles::KeySpec;

    fn rule(kind: RuleKind, operator: Option<Operator>, key: &str) -> Rule {
        Rule {
            id: "r".into(),
            name: "水位预警".into(),
            department: None,
            profile: Some("reservoir-level".into()),
            device: None,
            key: Some(key.into()),
            kind,
            operator,
            threshold: Some(45.0),
            threshold_high: Some(47.5),
            duration_s: 0,
            consecutive: 2,
            missed_intervals: 3,
            severity: Severity::Major,
            auto_clear: true,
        }
    }

    fn alarm(value: Option<f64>) -> AlarmView {
        AlarmView {
            id: "a".into(),
            rule_id: "r".into(),
            device_id: "d".into(),
            department: "water".into(),
            severity: Severity::Major,
            message: "engine words".into(),
            value,
            status: "active".into(),
            raised_at: "2026-12-07T09:00:00Z".into(),
            acknowledged_at: None,
            acknowledged_by: None,
            cleared_at: None,
            cleared_by: None,
            acknowledge_comment: None,
            clear_comment: None,
            trigger_committed_ms: None,
            raised_at_ms: 0,
        }
    }

    #[test]
    fn alarms_and_rules_read_as_words() {
        let profile = Profile {
            code: "reservoir-level".into(),
            name_zh: "水库水位计".into(),
            name_en: "Reservoir level".into(),
            entity_type: "WaterObserved".into(),
            reporting_interval_s: 300,
            retention_days: 30,
            keys: vec![KeySpec {
                name: "height".into(),
                unit: "m".into(),
                min: 0.0,
                max: 100.0,
            }],
            department: None,
        };
        let p = Some(&profile);
        let cases = [
            (
                rule(RuleKind::Threshold, Some(Operator::Above), "height"),
                Some(46.52),
                Lang::Zh,
                "水位 > 45 m，连续 2 次",
                "水位预警：水位 46.52 m（> 45 m，连续 2 次）",
            ),
            (
                rule(RuleKind::Threshold, Some(Operator::Below), "height"),
                Some(44.0),
                Lang::En,
                "water level < 45 m, 2 readings in a row",
                "水位预警: water level 44 m (< 45 m, 2 readings in a row)",
            ),
            (
                rule(RuleKind::Threshold, Some(Operator::Outside), "height"),
                Some(48.0),
                Lang::Zh,
                "水位 超出 45–47.5 m，连续 2 次",
                "水位预警：水位 48 m（超出 45–47.5 m，连续 2 次）",
            ),
            (
                rule(RuleKind::Rate, None, "height"),
                Some(50.5),
                Lang::Zh,
                "水位 每分钟变化超过 45 m，连续 2 次",
                "水位预警：水位 每分钟变化 50.5 m（每分钟变化超过 45 m，连续 2 次）",
            ),
            (
                rule(RuleKind::NoData, None, "height"),
                None,
                Lang::Zh,
                "连续 3 个上报周期无数据",
                "水位预警：连续 3 个上报周期无数据",
            ),
        ];
        for (rule, value, l, condition, text) in cases {
            assert_eq!(rule_condition(l, &rule, p), condition);
            assert_eq!(alarm_text(l, &alarm(value), Some(&rule), p), text);
        }
        assert_eq!(
            alarm_text(Lang::Zh, &alarm(Some(1.0)), None, p),
            "engine words"
        );
    }
}
