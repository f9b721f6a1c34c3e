//! The web UI, served by the binary: server-rendered HTML with small embedded CSS and
//! JavaScript, live updates by server-sent events. Simplified Chinese by default, English by a
//! switch. Signing in sets an HttpOnly cookie holding the platform's own bearer token, so the
//! UI sees exactly what the API would show that user.
//!
//! One snapshot of the city is computed every two seconds by one task and shared by every
//! open page (a `watch` channel), so a hundred browsers cost one computation, not a hundred.

mod alarms;
mod codes;
mod data;
mod devices;
mod map;
mod names;
mod plan;
mod report;
mod search;
mod services;
mod shell;
mod text;
mod workbench;

use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use futures::Stream;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use text::{Lang, t};
use tokio::sync::watch;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_bus::{Bus, LagPolicy, SubscribeOptions};
use yunnao_core::Problem;
use yunnao_http::ApiPath;
use yunnao_identity::{AuditNote, Identity, Principal};

const TOKEN_COOKIE: &str = "yunnao_token";
const LANG_COOKIE: &str = "yunnao_lang";
const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DistrictLive {
    pub code: String,
    pub name: String,
    pub open: i64,
    pub overdue: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TickerItem {
    pub at: String,
    pub kind: String,
    pub zh: String,
    pub en: String,
    /// The page of what the event is about (the device, the case).
    pub href: String,
}

/// A notification: a critical alarm, a case dispatched to the user's department or to them,
/// a case past 80% of its time limit or past the limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notice {
    /// Rising, so a page can tell which it has seen.
    pub seq: u64,
    /// China Standard Time, `YYYY-MM-DD HH:MM`.
    pub at: String,
    /// `alarm-critical`, `dispatch`, `warning` or `overdue`.
    pub kind: String,
    pub zh: String,
    pub en: String,
    pub href: String,
    /// Who it is for (not sent).
    #[serde(skip)]
    audience: Audience,
}

#[derive(Debug, Clone, Default)]
struct Audience {
    /// A critical alarm: whoever may read this department's alarms.
    alarm_department: Option<String>,
    /// A case: staff of the department it is with, the grid worker it is with.
    department: Option<String>,
    grid_worker: Option<String>,
    /// Deadline warnings and escalations also go to the command centre.
    centre: bool,
}

impl Notice {
    fn is_for(&self, viewer: &Principal, centre: bool) -> bool {
        let a = &self.audience;
        if let Some(department) = &a.alarm_department {
            return viewer.may(
                yunnao_identity::Resource::Alarms,
                yunnao_identity::Action::Read,
                department,
            );
        }
        (a.centre && centre)
            || a.department.as_deref().is_some_and(|d| {
                d == viewer.department && !viewer.has_role(yunnao_identity::Role::Resident)
            })
            || a.grid_worker.as_deref().is_some_and(|w| w == viewer.name)
    }
}

/// The recent notifications and the live feed of new ones.
#[derive(Clone)]
struct Notices {
    recent: Arc<Mutex<VecDeque<Notice>>>,
    live: tokio::sync::broadcast::Sender<Notice>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

const RECENT_NOTICES: usize = 500;

impl Notices {
    fn new() -> Notices {
        Notices {
            recent: Arc::default(),
            live: tokio::sync::broadcast::channel(256).0,
            next: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    fn push(&self, mut notice: Notice) {
        notice.seq = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        notice.at = names::local_time(Some(&yunnao_governance::calendar::to_cst_rfc3339(
            yunnao_core::time::now_ms(),
        )));
        if let Ok(mut recent) = self.recent.lock() {
            recent.push_front(notice.clone());
            recent.truncate(RECENT_NOTICES);
        }
        // No open page is not an error.
        let _ = self.live.send(notice);
    }

    /// The newest notices for this viewer, newest first.
    fn for_viewer(&self, viewer: &Principal, centre: bool, limit: usize) -> Vec<Notice> {
        self.recent
            .lock()
            .map(|recent| {
                recent
                    .iter()
                    .filter(|n| n.is_for(viewer, centre))
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What the overview shows, refreshed every two seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Snapshot {
    pub at: String,
    pub devices: i64,
    pub online: i64,
    pub simulated: i64,
    pub readings_per_s: f64,
    pub readings_total: u64,
    pub alarms: BTreeMap<String, i64>,
    pub incidents_open: i64,
    pub incidents_overdue: i64,
    pub closed_today: i64,
    /// Grid area over district area, whole city, percent.
    pub grid_coverage_pct: f64,
    /// Grids with a grid worker, whole city, percent.
    pub grid_staffed_pct: f64,
    pub districts: Vec<DistrictLive>,
    pub ticker: Vec<TickerItem>,
    /// Devices per profile (code → connected).
    pub by_profile: BTreeMap<String, i64>,
    /// Parking spaces reporting occupied, of those that reported (since this node started).
    pub parking_occupied: i64,
    pub parking_reporting: i64,
    pub parking_occupancy_pct: f64,
    /// Readings per second, 10-second averages over the last hour, oldest first.
    pub readings_history: Vec<f64>,
    /// Incidents reported per day and district, the last 7 days.
    pub incidents_daily: Vec<yunnao_governance::queries::DailyCount>,
    /// Scenario applications connected (active API clients).
    pub api_clients: i64,
    /// 一码通城: scenarios live (an accepted scan in 7 days) and scans today.
    #[serde(default)]
    pub code_scenarios_live: i64,
    #[serde(default)]
    pub code_scans_today: i64,
    /// Scenario apps with a live marketplace subscription (the plan's 新接入场景).
    #[serde(default)]
    pub scenario_apps: i64,
    /// Devices the simulated city will register (0: no simulation, or not known yet); while
    /// `simulated` is below it the overview says the city is starting.
    pub planned_devices: u64,
    /// 城运 rates and rankings for today, 7 and 30 days.
    pub periods: Vec<Period>,
}

/// The operations rates of one period, city-wide and ranked by district and department.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Period {
    pub days: i64,
    /// 按期结案率: handled within the time limit, percent of those closed in the period.
    pub on_time_pct: Option<f64>,
    /// 返工率: sent back at least once, percent of those closed in the period.
    pub rework_pct: Option<f64>,
    pub closed: i64,
    pub satisfaction: Option<f64>,
    /// Best first: on-time rate, then fewest overdue.
    pub districts: Vec<Rank>,
    pub departments: Vec<Rank>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rank {
    pub code: String,
    pub name: String,
    pub open: i64,
    pub overdue: i64,
    pub closed: i64,
    pub on_time_pct: Option<f64>,
    pub rework_pct: Option<f64>,
}

/// One period's rates from the governance figures.
async fn period(governance: &yunnao_governance::Governance, days: i64) -> Result<Period, Problem> {
    use yunnao_governance::queries::{Figures, FiguresQuery};
    let by = |by: &str| FiguresQuery {
        by: Some(by.to_owned()),
        days: Some(days),
    };
    let districts = governance.figures(by("district")).await?;
    let departments = governance.figures(by("department")).await?;
    let weighted = |pick: fn(&Figures) -> Option<f64>| {
        let closed: i64 = districts.iter().map(|f| f.closed_in_window).sum();
        (closed > 0).then(|| {
            let sum: f64 = districts
                .iter()
                .map(|f| pick(f).unwrap_or(0.0) * f.closed_in_window as f64)
                .sum();
            (sum / closed as f64 * 10.0).round() / 10.0
        })
    };
    let rated: i64 = districts.iter().map(|f| f.rated).sum();
    let ranked = |figures: &[Figures], located: bool| {
        let mut ranks: Vec<Rank> = figures
            .iter()
            .filter(|f| !located || f.key.len() == 6)
            .filter(|f| !f.key.is_empty())
            .map(|f| Rank {
                code: f.key.clone(),
                name: f.name.clone(),
                open: f.open,
                overdue: f.overdue,
                closed: f.closed_in_window,
                on_time_pct: f.on_time_pct,
                rework_pct: f.rework_pct,
            })
            .collect();
        ranks.sort_by(|a, b| {
            b.on_time_pct
                .unwrap_or(-1.0)
                .total_cmp(&a.on_time_pct.unwrap_or(-1.0))
                .then(a.overdue.cmp(&b.overdue))
                .then(b.closed.cmp(&a.closed))
        });
        ranks
    };
    Ok(Period {
        days,
        on_time_pct: weighted(|f| f.on_time_pct),
        rework_pct: weighted(|f| f.rework_pct),
        closed: districts.iter().map(|f| f.closed_in_window).sum(),
        satisfaction: (rated > 0).then(|| {
            let sum: f64 = districts
                .iter()
                .map(|f| f.satisfaction.unwrap_or(0.0) * f.rated as f64)
                .sum();
            (sum / rated as f64 * 100.0).round() / 100.0
        }),
        districts: ranked(&districts, true),
        departments: ranked(&departments, false),
    })
}

impl Snapshot {
    /// The figures the plan's live targets are measured by; 可网办率 is the catalogue's now.
    pub fn live_figures(&self, online_rate_pct: f64) -> yunnao_plan::LiveFigures {
        let code_scenarios_live = self.code_scenarios_live;
        let code_scans_today = self.code_scans_today;
        let scenario_apps = self.scenario_apps;
        yunnao_plan::LiveFigures {
            devices: self.devices,
            online: self.online,
            by_profile: self.by_profile.clone(),
            grid_coverage_pct: self.grid_coverage_pct,
            api_clients: self.api_clients,
            online_rate_pct,
            code_scenarios_live,
            code_scans_today,
            scenario_apps,
        }
    }
}

/// State the snapshot task carries from one round to the next.
#[derive(Default)]
struct Rounds {
    last: Option<(Instant, u64)>,
    coverage: Option<(Instant, f64, f64)>,
    /// (bucket start, readings total then) per 10-second bucket, the last hour.
    history: VecDeque<(Instant, u64)>,
    daily: Option<(Instant, Vec<yunnao_governance::queries::DailyCount>)>,
    periods: Option<(Instant, Vec<Period>)>,
}

const HISTORY_BUCKET: Duration = Duration::from_secs(10);
const HISTORY_BUCKETS: usize = 360;

#[derive(Clone)]
pub struct Web {
    pub identity: Identity,
    pub sensing: yunnao_sensing::Sensing,
    pub governance: yunnao_governance::Governance,
    pub plan: yunnao_plan::Plan,
    /// The service hall's hub.
    pub services: yunnao_services::api::ServicesState,
    /// 一码通城.
    pub codes: yunnao_codes::hub::Codes,
    /// The data hub.
    pub data: yunnao_data::Catalogue,
    live: watch::Receiver<Arc<Snapshot>>,
    map: Arc<String>,
    /// District drawings, made in the background at start (the grid does not change while
    /// running), so that opening even 平度市 does not wait on them.
    drawings: Arc<Mutex<std::collections::HashMap<String, Arc<map::DistrictDrawing>>>>,
    /// Set at shutdown: live streams end, so a graceful stop does not wait on open browsers.
    closing: Arc<watch::Sender<bool>>,
    notices: Notices,
    /// Devices a simulated city will register (set by the demo).
    planned: Arc<std::sync::atomic::AtomicU64>,
}

impl Web {
    /// Starts the snapshot task and the event ticker.
    // One handle per hub the pages show; a struct of them would only rename this list.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        identity: Identity,
        sensing: yunnao_sensing::Sensing,
        governance: yunnao_governance::Governance,
        plan: yunnao_plan::Plan,
        services: yunnao_services::api::ServicesState,
        codes: yunnao_codes::hub::Codes,
        data: yunnao_data::Catalogue,
        bus: &Bus,
    ) -> Result<Web, String> {
        let map = Arc::new(map::svg(&governance.grid.districts));
        let (sender, live) = watch::channel(Arc::new(Snapshot::default()));
        let ticker = Arc::new(Mutex::new(VecDeque::new()));
        let district_names: std::collections::HashMap<String, String> = governance
            .grid
            .districts
            .iter()
            .map(|d| (d.code.clone(), d.name.clone()))
            .collect();
        let notices = Notices::new();
        spawn_ticker(
            bus,
            ticker.clone(),
            notices.clone(),
            sensing.clone(),
            governance.clone(),
            district_names,
        )?;
        let (s, g, i, c, d) = (
            sensing.clone(),
            governance.clone(),
            identity.clone(),
            codes.clone(),
            data.clone(),
        );
        let planned: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let planned_now = planned.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(2));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut rounds = Rounds::default();
            loop {
                interval.tick().await;
                match snapshot(&s, &g, &i, &ticker, &mut rounds).await {
                    Ok(mut snapshot) => {
                        if let Ok(codes) = c.figures(None).await {
                            snapshot.code_scenarios_live = codes.live_scenarios;
                            snapshot.code_scans_today = codes.scans_today;
                        }
                        if let Ok(apps) = d.live_scenario_apps().await {
                            snapshot.scenario_apps = apps;
                        }
                        snapshot.planned_devices =
                            planned_now.load(std::sync::atomic::Ordering::Relaxed);
                        let _ = sender.send(Arc::new(snapshot));
                    }
                    Err(problem) => tracing::warn!(%problem, "overview snapshot failed"),
                }
            }
        });
        let drawings: Arc<Mutex<std::collections::HashMap<String, Arc<map::DistrictDrawing>>>> =
            Arc::default();
        let (grid, made) = (governance.grid.clone(), drawings.clone());
        tokio::task::spawn_blocking(move || {
            for district in &grid.districts {
                if let Some(drawing) = map::district_drawing(&grid, &district.code)
                    && let Ok(mut made) = made.lock()
                {
                    made.entry(district.code.clone())
                        .or_insert_with(|| Arc::new(drawing));
                }
            }
        });
        Ok(Web {
            services,
            codes,
            data,
            identity,
            sensing,
            governance,
            plan,
            live,
            map,
            drawings,
            closing: Arc::new(watch::channel(false).0),
            notices,
            planned,
        })
    }

    /// The count a simulated city sets to the number of devices it will register, so that the
    /// overview can say how far the start-up has come.
    pub fn planned_devices(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.planned.clone()
    }

    /// Ends every live stream (call when the server begins its graceful shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    async fn viewer(&self, headers: &HeaderMap) -> Option<Principal> {
        let token = cookie(headers, TOKEN_COOKIE)?;
        self.identity.authenticate(&token).await.ok()
    }
}

async fn snapshot(
    sensing: &yunnao_sensing::Sensing,
    governance: &yunnao_governance::Governance,
    identity: &Identity,
    ticker: &Mutex<VecDeque<TickerItem>>,
    rounds: &mut Rounds,
) -> Result<Snapshot, Problem> {
    let summary = sensing.summary().await?;
    let now = Instant::now();
    let readings_per_s = match rounds.last {
        Some((at, total)) if now > at => {
            summary.readings_total.saturating_sub(total) as f64 / (now - at).as_secs_f64()
        }
        _ => 0.0,
    };
    rounds.last = Some((now, summary.readings_total));
    if rounds
        .history
        .back()
        .is_none_or(|(at, _)| now.duration_since(*at) >= HISTORY_BUCKET)
    {
        rounds.history.push_back((now, summary.readings_total));
        while rounds.history.len() > HISTORY_BUCKETS + 1 {
            rounds.history.pop_front();
        }
    }
    let readings_history = rounds
        .history
        .iter()
        .zip(rounds.history.iter().skip(1))
        .map(|((a, ta), (b, tb))| {
            let seconds = b.duration_since(*a).as_secs_f64().max(0.001);
            (tb.saturating_sub(*ta) as f64 / seconds * 10.0).round() / 10.0
        })
        .collect();
    if rounds
        .daily
        .as_ref()
        .is_none_or(|(at, _)| at.elapsed() > Duration::from_secs(30))
    {
        let daily = governance
            .daily(yunnao_governance::queries::DailyQuery { days: Some(7) })
            .await?;
        rounds.daily = Some((now, daily));
    }
    if rounds
        .periods
        .as_ref()
        .is_none_or(|(at, _)| at.elapsed() > Duration::from_secs(30))
    {
        let mut periods = Vec::new();
        for days in [1, 7, 30] {
            periods.push(period(governance, days).await?);
        }
        rounds.periods = Some((now, periods));
    }
    let (parking_occupied, parking_reporting) = sensing.latest.occupancy();
    let api_clients = identity.active_api_clients().await?;
    let coverage = &mut rounds.coverage;
    let figures = governance
        .figures(yunnao_governance::queries::FiguresQuery::default())
        .await?;
    // Coverage walks every grid (about a million): every 30 s is live enough.
    if coverage.is_none_or(|(at, ..)| at.elapsed() > Duration::from_secs(30)) {
        let grid = governance.grid.clone();
        let assignments = governance.assignments();
        let districts =
            tokio::task::spawn_blocking(move || grid.coverage(|code| assignments.is_staffed(code)))
                .await
                .map_err(|e| Problem::internal(e.to_string()))?;
        let area: f64 = districts.iter().map(|d| d.area_m2).sum();
        let covered: f64 = districts.iter().map(|d| d.grid_area_m2).sum();
        let grids: f64 = districts.iter().map(|d| d.grids as f64).sum();
        let staffed: f64 = districts
            .iter()
            .map(|d| d.grids as f64 * d.staffed_pct / 100.0)
            .sum();
        *coverage = Some((
            Instant::now(),
            ((covered / area.max(1.0)) * 10_000.0).round() / 100.0,
            ((staffed / grids.max(1.0)) * 10_000.0).round() / 100.0,
        ));
    }
    let (_, grid_coverage_pct, grid_staffed_pct) = coverage.unwrap_or((now, 0.0, 0.0));
    Ok(Snapshot {
        at: yunnao_governance::calendar::to_cst_rfc3339(yunnao_core::time::now_ms()),
        devices: summary.devices,
        online: summary.online,
        simulated: summary.simulated,
        readings_per_s: (readings_per_s * 10.0).round() / 10.0,
        readings_total: summary.readings_total,
        alarms: summary.alarms,
        incidents_open: figures.iter().map(|f| f.open).sum(),
        incidents_overdue: figures.iter().map(|f| f.overdue).sum(),
        closed_today: figures.iter().map(|f| f.closed_today).sum(),
        grid_coverage_pct,
        grid_staffed_pct,
        districts: figures
            .iter()
            .filter(|f| f.key.len() == 6)
            .map(|f| DistrictLive {
                code: f.key.clone(),
                name: f.name.clone(),
                open: f.open,
                overdue: f.overdue,
            })
            .collect(),
        ticker: ticker
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default(),
        by_profile: summary
            .by_profile
            .iter()
            .map(|(code, devices, _)| (code.clone(), *devices))
            .collect(),
        parking_occupied,
        parking_reporting,
        parking_occupancy_pct: if parking_reporting > 0 {
            (1000.0 * parking_occupied as f64 / parking_reporting as f64).round() / 10.0
        } else {
            0.0
        },
        readings_history,
        incidents_daily: rounds
            .daily
            .as_ref()
            .map(|(_, d)| d.clone())
            .unwrap_or_default(),
        api_clients,
        code_scenarios_live: 0,
        scenario_apps: 0,
        code_scans_today: 0,
        planned_devices: 0,
        periods: rounds
            .periods
            .as_ref()
            .map(|(_, p)| p.clone())
            .unwrap_or_default(),
    })
}

/// The event list: alarms raised by the device's name, case steps by the workflow's name for
/// them and the district's name, each linked to its page.
fn spawn_ticker(
    bus: &Bus,
    ticker: Arc<Mutex<VecDeque<TickerItem>>>,
    notices: Notices,
    sensing: yunnao_sensing::Sensing,
    governance: yunnao_governance::Governance,
    district_names: std::collections::HashMap<String, String>,
) -> Result<(), String> {
    let options = SubscribeOptions {
        buffer: 1024,
        lag: LagPolicy::DropNewest,
    };
    let mut alarms = bus
        .subscribe("sensing.alarm.raised.>", options)
        .map_err(|e| e.to_string())?;
    let mut incidents = bus
        .subscribe("governance.incident.>", options)
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        // Category names by service code (zh, en), read again when a code is new.
        let mut categories: std::collections::HashMap<String, (String, String)> =
            std::collections::HashMap::new();
        loop {
            let item = tokio::select! {
                Some(envelope) = alarms.next_event() => {
                    match envelope.decode::<yunnao_sensing::alarms::AlarmChanged>() {
                        Ok(e) => {
                            let severity = e.alarm.severity.as_str();
                            let (device, profile) = match sensing.get_device(&e.alarm.device_id).await {
                                Ok(Some(device)) => (device.name, sensing.profile(&device.profile)),
                                _ => (e.alarm.device_id.clone(), None),
                            };
                            let rule = sensing.alarms.rule(&e.alarm.rule_id);
                            let words = |l| alarms::alarm_text(l, &e.alarm, rule.as_ref(), profile.as_deref());
                            if e.alarm.severity == yunnao_sensing::alarms::Severity::Critical {
                                notices.push(Notice {
                                    kind: "alarm-critical".into(),
                                    zh: format!("严重告警 {device} {}", words(Lang::Zh)),
                                    en: format!("Critical alarm {device} {}", words(Lang::En)),
                                    href: "/ui/alarms?severity=critical".into(),
                                    audience: Audience {
                                        alarm_department: Some(e.alarm.department.clone()),
                                        ..Audience::default()
                                    },
                                    ..Notice::default()
                                });
                            }
                            Some(TickerItem {
                                at: String::new(),
                                kind: format!("alarm-{severity}"),
                                zh: format!("{}告警 {device} {}", text::severity_zh(severity), words(Lang::Zh)),
                                en: format!("{severity} alarm {device} {}", words(Lang::En)),
                                href: format!("/ui/devices/{}", e.alarm.device_id),
                            })
                        }
                        Err(_) => None,
                    }
                }
                Some(envelope) = incidents.next_event() => {
                    let changed = envelope.decode::<yunnao_governance::incidents::IncidentChanged>().ok();
                    if let Some(e) = &changed
                        && !categories.contains_key(&e.service_code)
                        && let Ok(all) = governance.categories().await
                    {
                        categories = all.into_iter().map(|c| (c.service_code, (c.name, c.name_en))).collect();
                    }
                    changed.map(|e| {
                        let (category_zh, category_en) = categories
                            .get(&e.service_code)
                            .cloned()
                            .unwrap_or_else(|| (e.service_code.clone(), e.service_code.clone()));
                        let district = e
                            .district_code
                            .as_ref()
                            .map(|code| district_names.get(code).cloned().unwrap_or_else(|| code.clone()))
                            .unwrap_or_default();
                        let href = format!("/ui/incidents/{}", e.incident_id);
                        let notice = |kind: &str, zh: &str, en: &str, centre: bool| Notice {
                            kind: kind.to_owned(),
                            zh: format!("{zh}：{category_zh} · {district}"),
                            en: format!("{en}: {category_en} · {district}"),
                            href: href.clone(),
                            audience: Audience {
                                department: e.department.clone(),
                                grid_worker: e.grid_worker.clone(),
                                centre,
                                ..Audience::default()
                            },
                            ..Notice::default()
                        };
                        match e.action.as_str() {
                            "dispatch" | "reassign" => notices.push(notice("dispatch", "新派遣案件", "New case dispatched", false)),
                            "warning" => notices.push(notice("warning", "处置时限已用八成", "80% of the time limit used", true)),
                            "overdue" => notices.push(notice("overdue", "案件超期督办", "Case overdue, escalated", true)),
                            _ => {}
                        }
                        TickerItem {
                            at: String::new(),
                            kind: format!("incident-{}", e.action),
                            zh: format!("{category_zh} {} · {district}", text::event_name(text::Lang::Zh, &e.action)),
                            en: format!("{category_en} {} · {district}", text::event_name(text::Lang::En, &e.action)),
                            href,
                        }
                    })
                }
                else => break,
            };
            if let Some(mut item) = item {
                item.at = yunnao_governance::calendar::to_cst_rfc3339(yunnao_core::time::now_ms())
                    .get(11..19)
                    .unwrap_or_default()
                    .to_owned();
                if let Ok(mut t) = ticker.lock() {
                    t.push_front(item);
                    t.truncate(20);
                }
            }
        }
    });
    Ok(())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn lang(headers: &HeaderMap) -> Lang {
    match cookie(headers, LANG_COOKIE).as_deref() {
        Some("en") => Lang::En,
        _ => Lang::Zh,
    }
}

pub fn router() -> OpenApiRouter<Web> {
    // Forms with photos take the API's patrol-report limit; every other page the server's.
    let uploads = OpenApiRouter::new()
        .routes(routes!(workbench::step))
        .routes(routes!(report::form, report::submit))
        .routes(routes!(services::guide, services::apply))
        .layer(axum::extract::DefaultBodyLimit::max(report::UPLOAD_LIMIT));
    OpenApiRouter::new()
        .merge(uploads)
        .routes(routes!(report::me))
        .routes(routes!(report::media))
        .routes(routes!(overview))
        .routes(routes!(sign_in_page, sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(switch_lang))
        .routes(routes!(stream))
        .routes(routes!(notices))
        .routes(routes!(live_snapshot))
        .routes(routes!(asset))
        .routes(routes!(district_grids))
        .routes(routes!(workbench::queue))
        .routes(routes!(workbench::export))
        .routes(routes!(search::search))
        .routes(routes!(workbench::case))
        .routes(routes!(plan::supervision))
        .routes(routes!(plan::report))
        .routes(routes!(devices::list))
        .routes(routes!(devices::export))
        .routes(routes!(alarms::list))
        .routes(routes!(alarms::export))
        .routes(routes!(alarms::step))
        .routes(routes!(devices::detail))
        .routes(routes!(codes::mine))
        .routes(routes!(codes::fresh))
        .routes(routes!(codes::bind))
        .routes(routes!(codes::revoke_card))
        .routes(routes!(codes::renew))
        .routes(routes!(codes::scanner, codes::scan))
        .routes(routes!(codes::bureau))
        .routes(routes!(codes::rotate))
        .routes(routes!(codes::trust))
        .routes(routes!(data::catalogue))
        .routes(routes!(data::dataset))
        .routes(routes!(data::requests, data::file_request))
        .routes(routes!(data::decide))
        .routes(routes!(data::revoke))
        .routes(routes!(data::market))
        .routes(routes!(data::monitoring))
        .routes(routes!(services::hall))
        .routes(routes!(services::mine))
        .routes(routes!(services::application))
        .routes(routes!(services::receipt))
        .routes(routes!(services::decide))
        .routes(routes!(services::upload))
        .routes(routes!(services::workbench))
        .routes(routes!(services::window))
        .routes(routes!(services::figures))
        .routes(routes!(services::appeal))
        .routes(routes!(services::confirm))
        .routes(routes!(services::run_policy))
        .routes(routes!(services::answer_appeal))
}

fn page(lang: Lang, title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · {}</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/ui/assets/app.css\"></head><body data-lang=\"{}\">{body}\
         <script src=\"/ui/assets/app.js\"></script></body></html>",
        lang.html(),
        t(lang, "brand"),
        lang.code()
    ))
}

/// A refusal or an error as a page in the user's language with a way back, never raw JSON:
/// what went wrong in words, the server's detail below it, the status kept.
fn refusal(l: Lang, problem: &Problem, back: &str) -> Response {
    let key = match problem.status {
        400 | 401 | 403 | 404 | 409 | 422 => format!("refused_{}", problem.status),
        _ => "refused_other".to_owned(),
    };
    let body = format!(
        "<main class=\"case refusal\"><h2>{title}</h2><p class=\"muted\">{detail}</p><p><a href=\"{back}\">← {back_label}</a></p></main>",
        title = t(l, &key),
        detail = escape(problem.detail.as_deref().unwrap_or_default()),
        back = escape(back),
        back_label = t(l, "back"),
    );
    let status = axum::http::StatusCode::from_u16(problem.status)
        .unwrap_or(axum::http::StatusCode::BAD_REQUEST);
    (status, page(l, t(l, &key), &body)).into_response()
}

/// `<option>`s of (value, text), the chosen one selected.
fn options(chosen: Option<&str>, all: &[(String, String)]) -> String {
    all.iter()
        .map(|(value, text)| {
            format!(
                "<option value=\"{}\"{}>{}</option>",
                escape(value),
                if chosen == Some(value.as_str()) {
                    " selected"
                } else {
                    ""
                },
                escape(text)
            )
        })
        .collect()
}

/// A filter as a query string: the values that are set, form-encoded.
fn query_string(pairs: &[(&str, &Option<String>)]) -> String {
    let set: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (*k, v)))
        .collect();
    serde_urlencoded::to_string(set).unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The one-screen overview (一屏总览); sign-in first.
#[utoipa::path(get, path = "/", tag = "ui",
    responses((status = 200, description = "the overview page"), (status = 303, description = "to the sign-in page, or a resident's or enterprise's own page")))]
async fn overview(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    // Residents and enterprises have their own page, not the operations screen.
    if workbench::is_citizen(&viewer) {
        return Redirect::to("/ui/me").into_response();
    }
    let l = lang(&headers);
    let counter = |key: &str, label: &str| {
        format!(
            "<div class=\"counter\"><b data-k=\"{key}\">–</b><label>{}</label></div>",
            t(l, label)
        )
    };
    let legend_levels: String = [
        ("l0", "0"),
        ("l1", "1–4"),
        ("l2", "5–19"),
        ("l3", "20–49"),
        ("l4", "≥ 50"),
    ]
    .iter()
    .map(|(class, range)| format!("<span class=\"swatch {class}\"></span>{range}"))
    .collect::<Vec<_>>()
    .join(" ");
    let period_switch: String = [(1, "period_1"), (7, "period_7"), (30, "period_30")]
        .iter()
        .map(|(days, key)| {
            format!(
                "<button type=\"button\" data-days=\"{days}\" aria-pressed=\"{}\">{}</button>",
                *days == 7,
                t(l, key)
            )
        })
        .collect();
    let body = format!(
        "{header}<main class=\"overview\"><section class=\"map-panel\"><p id=\"starting\" class=\"starting\" hidden role=\"status\" data-template=\"{starting}\"></p>{map}<p class=\"legend\"><span class=\"legend-title\">{legend_open}</span> {legend_levels} · {legend}</p></section>\
         <section class=\"counters\">{c1}{c2}{c3}{c4}{c5}{c6}{c7}{c8}{c9}{c10}{c11}{c12}\
         <div class=\"chart\"><svg id=\"spark\" viewBox=\"0 0 300 60\" preserveAspectRatio=\"none\"><polyline points=\"\"/></svg><label>{spark}</label></div>\
         <div class=\"chart\"><svg id=\"daily\" viewBox=\"0 0 300 110\"></svg><label>{daily}</label></div>\
         <p class=\"simulated\">{simulated} <b data-k=\"simulated\">–</b> · <a href=\"/ui/codes\">{codes_live}</a> <b data-k=\"code_scenarios_live\">–</b> · {codes_today} <b data-k=\"code_scans_today\">–</b></p></section>\
         <section class=\"side\"><div class=\"rankings\"><h2>{kpi_title}</h2><p class=\"periods\" role=\"group\" aria-label=\"{period}\">{period_switch}</p>\
         <div class=\"kpis\"><div><b id=\"kpi-on-time\">–</b><label>{on_time}</label></div><div><b id=\"kpi-rework\">–</b><label>{rework}</label></div>\
         <div><b id=\"kpi-closed\">–</b><label>{closed}</label></div><div><b id=\"kpi-satisfaction\">–</b><label>{satisfaction}</label></div></div>\
         <table id=\"rank-districts\"><caption>{rank_districts}</caption><thead><tr><th>#</th><th>{c_name}</th><th>{c_open}</th><th>{c_overdue}</th><th>{on_time}</th><th>{rework}</th></tr></thead><tbody></tbody></table>\
         <table id=\"rank-departments\"><caption>{rank_departments}</caption><thead><tr><th>#</th><th>{c_name}</th><th>{c_open}</th><th>{c_overdue}</th><th>{on_time}</th><th>{rework}</th></tr></thead><tbody></tbody></table></div>\
         <div class=\"ticker\"><h2>{ticker}</h2><ul id=\"ticker\"></ul></div></section></main>",
        header = workbench::header(
            l,
            "overview",
            &viewer,
            &names::Names::load(&web, l)
                .await
                .department(&viewer.department)
        ),
        map = web.map,
        legend = t(l, "legend"),
        legend_open = t(l, "legend_open"),
        c1 = counter("online", "online"),
        c2 = counter("devices", "devices"),
        c3 = counter("readings_per_s", "readings_per_s"),
        c4 = counter("alarms.critical", "alarms_critical"),
        c5 = counter("alarms.major", "alarms_major"),
        c6 = counter("incidents_open", "incidents_open"),
        c7 = counter("incidents_overdue", "incidents_overdue"),
        c8 = counter("closed_today", "closed_today"),
        c9 = counter("grid_coverage_pct", "grid_coverage"),
        c10 = counter("grid_staffed_pct", "grid_staffed"),
        c11 = counter("parking_occupancy_pct", "parking"),
        c12 = counter("api_clients", "api_clients"),
        spark = t(l, "spark"),
        daily = t(l, "daily"),
        simulated = t(l, "simulated"),
        codes_live = t(l, "codes_live"),
        codes_today = t(l, "codes_today"),
        ticker = t(l, "ticker"),
        kpi_title = t(l, "kpi_title"),
        period = t(l, "period"),
        on_time = t(l, "on_time"),
        rework = t(l, "rework"),
        closed = t(l, "closed_period"),
        satisfaction = t(l, "satisfaction"),
        rank_districts = t(l, "rank_districts"),
        rank_departments = t(l, "rank_departments"),
        c_name = t(l, "col_name"),
        c_open = t(l, "col_open"),
        c_overdue = t(l, "flag_overdue"),
        starting = t(l, "starting"),
    );
    page(l, t(l, "overview"), &body).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignInForm {
    pub username: String,
    pub password: String,
}

fn sign_in_html(l: Lang, error: Option<&str>) -> Html<String> {
    page(
        l,
        t(l, "sign_in"),
        &format!(
            "<main class=\"sign-in\"><h1>{}</h1><p>{}</p>{}<form method=\"post\" action=\"/ui/sign-in\">\
             <label>{}<input name=\"username\" autocomplete=\"username\" required></label>\
             <label>{}<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">{}</button></form><p><a href=\"/ui/lang/{}\">{}</a></p></main>",
            t(l, "brand"),
            t(l, "tagline"),
            error
                .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
                .unwrap_or_default(),
            t(l, "username"),
            t(l, "password"),
            t(l, "sign_in"),
            if l == Lang::Zh { "en" } else { "zh" },
            if l == Lang::Zh { "English" } else { "中文" },
        ),
    )
}

/// The sign-in page.
#[utoipa::path(get, path = "/ui/sign-in", security(()), tag = "ui", responses((status = 200, description = "HTML")))]
async fn sign_in_page(headers: HeaderMap) -> Html<String> {
    sign_in_html(lang(&headers), None)
}

/// Signs in with the platform's accounts; the token goes into an HttpOnly, SameSite=Strict
/// cookie.
#[utoipa::path(post, path = "/ui/sign-in", security(()), tag = "ui",
    request_body(content = SignInForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "to the overview"), (status = 401, description = "the form again, with the reason")))]
async fn sign_in(
    State(web): State<Web>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let l = lang(&headers);
    let Ok(Form(form)) = form else {
        return (
            StatusCode::BAD_REQUEST,
            sign_in_html(l, Some(t(l, "bad_form"))),
        )
            .into_response();
    };
    let note = AuditNote {
        action: Some("ui.sign_in".into()),
        target: Some(format!("user:{}", form.username)),
        actor: Some(form.username.clone()),
        department: None,
        ..AuditNote::default()
    };
    match web.identity.sign_in(&form.username, &form.password).await {
        Ok(signed) => (
            Extension(note),
            [(
                header::SET_COOKIE,
                format!(
                    "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=28800",
                    signed.access_token
                ),
            )],
            Redirect::to("/"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::UNAUTHORIZED,
            Extension(note),
            sign_in_html(l, Some(t(l, "wrong_password"))),
        )
            .into_response(),
    }
}

/// Ends the session (on every node) and clears the cookie.
#[utoipa::path(post, path = "/ui/sign-out", tag = "ui", responses((status = 303, description = "to the sign-in page")))]
async fn sign_out(State(web): State<Web>, headers: HeaderMap) -> Response {
    if let Some(session) = web.viewer(&headers).await.and_then(|p| p.session)
        && let Err(problem) = web.identity.sign_out(&session).await
    {
        tracing::warn!(%problem, "sign-out failed");
    }
    (
        Extension(AuditNote::new("ui.sign_out", "session")),
        [(
            header::SET_COOKIE,
            format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/ui/sign-in"),
    )
        .into_response()
}

/// Switches the language (`zh` or `en`) and goes back to the overview.
#[utoipa::path(get, path = "/ui/lang/{lang}", tag = "ui", params(("lang" = String, Path)),
    responses((status = 303, description = "back to the overview"), (status = 400)))]
async fn switch_lang(ApiPath(lang): ApiPath<String>) -> Result<Response, Problem> {
    if !matches!(lang.as_str(), "zh" | "en") {
        return Err(Problem::bad_request("language is zh or en"));
    }
    Ok((
        [(
            header::SET_COOKIE,
            format!("{LANG_COOKIE}={lang}; Path=/; SameSite=Lax; Max-Age=31536000"),
        )],
        Redirect::to("/"),
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// `notices`: only notifications (pages other than the overview).
    pub only: Option<String>,
}

/// The live overview as server-sent events: `snapshot` every two seconds and `notice` for each
/// notification meant for the signed-in user.
#[utoipa::path(get, path = "/ui/stream", tag = "ui", params(StreamQuery),
    responses((status = 200, description = "text/event-stream of snapshots and notices"), (status = 400), (status = 401)))]
async fn stream(
    State(web): State<Web>,
    headers: HeaderMap,
    yunnao_http::ApiQuery(query): yunnao_http::ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, Problem> {
    let Some(viewer) = web.viewer(&headers).await else {
        return Err(Problem::unauthorized("sign in first"));
    };
    let centre = web.governance.is_centre(&viewer);
    let mut closing = web.closing.subscribe();
    let closed = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    let snapshots: futures::stream::BoxStream<'static, Result<Event, std::convert::Infallible>> =
        if query.only.as_deref() == Some("notices") {
            Box::pin(futures::stream::pending())
        } else {
            Box::pin(futures::StreamExt::filter_map(
                tokio_stream::wrappers::WatchStream::new(web.live.clone()),
                |snapshot| async move {
                    serde_json::to_string(&*snapshot)
                        .ok()
                        .map(|data| Ok(Event::default().event("snapshot").data(data)))
                },
            ))
        };
    // A page that falls behind the notices skips what it missed (the bell's list has them).
    let notices = futures::StreamExt::filter_map(
        tokio_stream::wrappers::BroadcastStream::new(web.notices.live.subscribe()),
        move |notice| {
            let viewer = viewer.clone();
            async move {
                let notice = notice.ok().filter(|n| n.is_for(&viewer, centre))?;
                serde_json::to_string(&notice)
                    .ok()
                    .map(|data| Ok(Event::default().event("notice").data(data)))
            }
        },
    );
    let both = futures::stream::select(snapshots, notices);
    Ok(Sse::new(futures::StreamExt::take_until(both, closed)).keep_alive(KeepAlive::default()))
}

/// The signed-in user's newest notifications (at most 50), newest first.
#[utoipa::path(get, path = "/ui/notices", tag = "ui",
    responses((status = 200, body = [Notice]), (status = 401)))]
async fn notices(
    State(web): State<Web>,
    headers: HeaderMap,
) -> Result<axum::Json<Vec<Notice>>, Problem> {
    let Some(viewer) = web.viewer(&headers).await else {
        return Err(Problem::unauthorized("sign in first"));
    };
    let centre = web.governance.is_centre(&viewer);
    Ok(axum::Json(web.notices.for_viewer(&viewer, centre, 50)))
}

/// The latest overview snapshot as JSON (what the stream sends).
#[utoipa::path(get, path = "/ui/snapshot", tag = "ui",
    responses((status = 200, body = Snapshot), (status = 401)))]
async fn live_snapshot(State(web): State<Web>, principal: Principal) -> axum::Json<Snapshot> {
    let _ = principal;
    axum::Json((**web.live.borrow()).clone())
}

/// One district's unit grids for the overview's map (drawn on a canvas when the district is
/// opened), with the open incidents per grid.
#[utoipa::path(get, path = "/ui/map/districts/{code}", tag = "ui", params(("code" = String, Path)),
    responses((status = 200, body = map::DistrictDrawing), (status = 401), (status = 404)))]
async fn district_grids(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(code): ApiPath<String>,
) -> Result<axum::Json<map::DistrictDrawing>, Problem> {
    if web.viewer(&headers).await.is_none() {
        return Err(Problem::unauthorized("sign in first"));
    }
    let cached = web.drawings.lock().ok().and_then(|d| d.get(&code).cloned());
    let drawing = match cached {
        Some(drawing) => drawing,
        None => {
            let grid = web.governance.grid.clone();
            let wanted = code.clone();
            let drawing =
                tokio::task::spawn_blocking(move || map::district_drawing(&grid, &wanted))
                    .await
                    .map_err(|e| Problem::internal(e.to_string()))?
                    .ok_or_else(|| Problem::not_found(format!("no district {code}")))?;
            let drawing = Arc::new(drawing);
            if let Ok(mut drawings) = web.drawings.lock() {
                drawings.insert(code.clone(), drawing.clone());
            }
            drawing
        }
    };
    let mut out = (*drawing).clone();
    for (grid_code, open) in web.governance.open_by_grid(&code).await? {
        let Some(community) = out
            .communities
            .iter()
            .find(|c| grid_code.len() == 16 && grid_code.starts_with(&c.0))
        else {
            continue;
        };
        if let Some(Ok(serial)) = grid_code.get(12..).map(str::parse::<u32>)
            && (1..=community.3).contains(&serial)
        {
            out.open.push((community.2 + serial - 1, open));
        }
    }
    Ok(axum::Json(out))
}

/// The UI's stylesheet and script (embedded in the binary).
#[utoipa::path(get, path = "/ui/assets/{file}", security(()), tag = "ui", params(("file" = String, Path)),
    responses((status = 200, description = "CSS or JavaScript"), (status = 404)))]
async fn asset(ApiPath(file): ApiPath<String>) -> Result<Response, Problem> {
    let (content_type, body) = match file.as_str() {
        "app.css" => ("text/css; charset=utf-8", CSS),
        "app.js" => ("text/javascript; charset=utf-8", JS),
        _ => return Err(Problem::not_found(format!("no asset {file}"))),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response())
}
