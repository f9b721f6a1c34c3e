//! Plan supervision (督导考核): the plan's items by part and section with their responsible
//! units, and its 47 numeric targets, each with its current value and where that comes from.
//! Targets the platform can count are bound live to the overview's snapshot (no extra query);
//! the others show as awaiting a progress report from the responsible units.

use crate::text::{Lang, t};
use crate::{Snapshot, Web, escape, lang, page};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;

const PLAN: &str = include_str!("../../../data/plan/digital-qingdao-2022.json");

/// A target the platform measures itself: (item number, metric_en prefix, what it counts).
struct Binding {
    item: u64,
    metric_en: &'static str,
    source_zh: &'static str,
    source_en: &'static str,
    value: fn(&Snapshot) -> f64,
}

fn profile(snapshot: &Snapshot, code: &str) -> f64 {
    snapshot.by_profile.get(code).copied().unwrap_or(0) as f64
}

const BINDINGS: &[Binding] = &[
    Binding {
        item: 5,
        metric_en: "Networking",
        source_zh: "平台实时: 在线设备/接入设备",
        source_en: "live: devices online / connected",
        value: |s| {
            if s.devices == 0 {
                0.0
            } else {
                (1000.0 * s.online as f64 / s.devices as f64).round() / 10.0
            }
        },
    },
    Binding {
        item: 11,
        metric_en: "Grid-based",
        source_zh: "平台实时: 单元网格面积覆盖率",
        source_en: "live: unit-grid area coverage",
        value: |s| s.grid_coverage_pct,
    },
    Binding {
        item: 16,
        metric_en: "On-street",
        source_zh: "平台实时: 接入泊位地磁数",
        source_en: "live: parking-space sensors connected",
        value: |s| profile(s, "parking-space"),
    },
    Binding {
        item: 36,
        metric_en: "Total IoT",
        source_zh: "平台实时: 接入物联网终端数",
        source_en: "live: IoT terminals connected",
        value: |s| s.devices as f64,
    },
    Binding {
        item: 39,
        metric_en: "EV charging",
        source_zh: "平台实时: 接入充电桩数",
        source_en: "live: EV chargers connected",
        value: |s| profile(s, "ev-charger"),
    },
    Binding {
        item: 40,
        metric_en: "New smart lamp",
        source_zh: "平台实时: 接入智慧灯杆数",
        source_en: "live: smart lamp posts connected",
        value: |s| profile(s, "smart-lamp-post"),
    },
];

fn number(value: f64) -> String {
    if value >= 100_000_000.0 {
        format!("{:.1} 亿", value / 100_000_000.0)
    } else if value >= 10_000.0 {
        format!("{:.1} 万", value / 10_000.0)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The plan page.
#[utoipa::path(get, path = "/ui/plan", tag = "ui",
    responses((status = 200, description = "the plan-supervision page"), (status = 303, description = "to the sign-in page")))]
pub(crate) async fn supervision(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = lang(&headers);
    let snapshot = web.live.borrow().clone();
    let plan: Value = serde_json::from_str(PLAN).unwrap_or(Value::Null);
    let mut rows = String::new();
    let (mut live, mut met, mut total) = (0, 0, 0);
    for part in plan["parts"].as_array().cloned().unwrap_or_default() {
        rows.push_str(&format!(
            "<tr class=\"part\"><th colspan=\"7\">{}</th></tr>",
            escape(
                part[if l == Lang::Zh {
                    "title_zh"
                } else {
                    "title_en"
                }]
                .as_str()
                .unwrap_or_default()
            )
        ));
        for section in part["sections"].as_array().cloned().unwrap_or_default() {
            for item in section["items"].as_array().cloned().unwrap_or_default() {
                let no = item["no"].as_u64().unwrap_or(0);
                let title = item[if l == Lang::Zh {
                    "title_zh"
                } else {
                    "title_en"
                }]
                .as_str()
                .unwrap_or_default();
                let units: Vec<&str> = item["responsible_units_zh"]
                    .as_array()
                    .map(|u| u.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let units = if units.len() > 4 {
                    format!("{} …", units[..4].join("、"))
                } else {
                    units.join("、")
                };
                let targets = item["targets"].as_array().cloned().unwrap_or_default();
                if targets.is_empty() {
                    rows.push_str(&format!(
                        "<tr><td>{no}</td><td>{}</td><td>{}</td><td colspan=\"4\" class=\"muted\">—</td></tr>",
                        escape(title),
                        escape(&units)
                    ));
                }
                for target in targets {
                    total += 1;
                    let metric_en = target["metric_en"].as_str().unwrap_or_default();
                    let goal = target["target"].as_f64().unwrap_or(0.0);
                    let binding = BINDINGS
                        .iter()
                        .find(|b| b.item == no && metric_en.starts_with(b.metric_en));
                    let (current, source, status) = match binding {
                        Some(b) => {
                            live += 1;
                            let value = (b.value)(&snapshot);
                            let ratio = if goal > 0.0 { value / goal } else { 0.0 };
                            let status = if ratio >= 1.0 {
                                met += 1;
                                ("met", t(l, "status_met"))
                            } else if ratio >= 0.5 {
                                ("on-track", t(l, "status_on_track"))
                            } else {
                                ("behind", t(l, "status_behind"))
                            };
                            (
                                format!(
                                    "{} <progress max=\"1\" value=\"{:.3}\"></progress>",
                                    number(value),
                                    ratio.min(1.0)
                                ),
                                if l == Lang::Zh {
                                    b.source_zh
                                } else {
                                    b.source_en
                                },
                                status,
                            )
                        }
                        None => (
                            "—".to_owned(),
                            if l == Lang::Zh {
                                "待责任单位报送"
                            } else {
                                "progress report"
                            },
                            ("awaiting", t(l, "status_awaiting")),
                        ),
                    };
                    let metric = if l == Lang::Zh {
                        target["metric_zh"].as_str().unwrap_or_default()
                    } else {
                        metric_en
                    };
                    rows.push_str(&format!(
                        "<tr><td>{no}</td><td>{title}</td><td>{units}</td><td>{metric}</td><td>{comparator} {goal} {unit}</td><td>{current}<br><small class=\"muted\">{source}</small></td><td class=\"status {class}\">{status}</td></tr>",
                        title = escape(title),
                        units = escape(&units),
                        metric = escape(metric),
                        comparator = if target["comparator"] == ">=" { "≥" } else { "" },
                        goal = number(goal),
                        unit = escape(target["unit"].as_str().unwrap_or_default()),
                        class = status.0,
                        status = status.1,
                    ));
                }
            }
        }
    }
    let body = format!(
        "{header}<main class=\"plan\"><h2>{title}</h2><p class=\"muted\">{note}</p>\
         <p class=\"summary\">{targets_label} <b data-plan=\"targets\">{total}</b> · {live_label} <b data-plan=\"live\">{live}</b> · {met_label} <b data-plan=\"met\">{met}</b></p>\
         <table><thead><tr><th>#</th><th>{c_item}</th><th>{c_units}</th><th>{c_metric}</th><th>{c_target}</th><th>{c_current}</th><th>{c_status}</th></tr></thead><tbody>{rows}</tbody></table></main>",
        header = crate::workbench::header(l, "plan", &viewer.name, &viewer.department),
        title = t(l, "plan_title"),
        note = t(l, "plan_note"),
        met_label = t(l, "status_met"),
        targets_label = t(l, "targets"),
        live_label = t(l, "live"),
        c_item = t(l, "col_item"),
        c_units = t(l, "col_units"),
        c_metric = t(l, "col_metric"),
        c_target = t(l, "col_target"),
        c_current = t(l, "col_current"),
        c_status = t(l, "col_status"),
    );
    page(l, t(l, "plan"), &body).into_response()
}
