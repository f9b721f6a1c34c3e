//! Reading incidents: queues, escalations, photos and the figures per district and department.

use crate::calendar::WorkCalendar;
use crate::incidents::{COLUMNS, Incident, Row};
use crate::{Governance, State};
use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_core::time::now_ms;
use yunnao_identity::{Principal, Role};
use yunnao_store::{DbResultExt, sqlx};

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IncidentFilter {
    /// One state (received, registered, rejected, dispatched, handling, verification, closed) or `open`.
    pub state: Option<String>,
    pub department: Option<String>,
    pub district: Option<String>,
    pub service_code: Option<String>,
    pub source: Option<String>,
    /// Only open incidents past their time limit.
    pub overdue: Option<bool>,
    /// Only those assigned to me as grid worker (`true`) .
    pub mine: Option<bool>,
    /// Created at or after (RFC 3339).
    pub since: Option<String>,
    /// Words in the case number, description or address (up to 100 characters).
    pub q: Option<String>,
    /// `created` (newest first, the default) or `due` (nearest time limit first).
    pub sort: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncidentPage {
    pub total: i64,
    pub items: Vec<Incident>,
}

/// A SQL condition and its bound text values (`$n` numbered by the caller).
struct Where {
    parts: Vec<String>,
    values: Vec<String>,
    numbers: Vec<i64>,
}

impl Where {
    fn text(&mut self, template: &str, value: String) {
        self.values.push(value);
        let n = self.values.len();
        self.parts.push(template.replace("{}", &format!("$t{n}")));
    }

    /// Renumbers `$tN` (texts) and `$nN` (numbers) into one sequence: texts first.
    fn sql(&self) -> String {
        let mut sql = if self.parts.is_empty() {
            "1 = 1".to_owned()
        } else {
            self.parts.join(" AND ")
        };
        for n in (1..=self.numbers.len()).rev() {
            sql = sql.replace(&format!("$n{n}"), &format!("${}", self.values.len() + n));
        }
        for n in (1..=self.values.len()).rev() {
            sql = sql.replace(&format!("$t{n}"), &format!("${n}"));
        }
        sql
    }

    fn number(&mut self, template: &str, value: i64) {
        self.numbers.push(value);
        let n = self.numbers.len();
        self.parts.push(template.replace("{}", &format!("$n{n}")));
    }
}

impl Governance {
    /// What `principal` may see, as a condition: all for the command centre, else the
    /// department's cases, the grid worker's grid cases and one's own reports.
    fn visibility(&self, principal: &Principal, w: &mut Where) {
        if self.is_centre(principal) {
            return;
        }
        let staff = principal.has_role(Role::Operator) || principal.has_role(Role::DeptAdmin);
        let mut any = Vec::new();
        w.values.push(principal.id.clone());
        any.push(format!("reporter = $t{}", w.values.len()));
        if staff {
            w.values.push(principal.department.clone());
            any.push(format!("department = $t{}", w.values.len()));
        }
        if principal.has_role(Role::GridWorker) {
            w.values.push(principal.name.clone());
            any.push(format!("grid_worker = $t{}", w.values.len()));
        }
        w.parts.push(format!("({})", any.join(" OR ")));
    }

    pub async fn list(
        &self,
        filter: IncidentFilter,
        principal: &Principal,
    ) -> Result<IncidentPage, Problem> {
        let mut w = Where {
            parts: Vec::new(),
            values: Vec::new(),
            numbers: Vec::new(),
        };
        self.visibility(principal, &mut w);
        match filter.state.as_deref() {
            None => {}
            Some("open") => w
                .parts
                .push("state NOT IN ('closed', 'rejected')".to_owned()),
            Some(s) => {
                let state = State::parse(s).ok_or_else(|| {
                    Problem::bad_request(format!(
                        "state {s:?} is not one of received, registered, rejected, dispatched, handling, verification, closed, open"
                    ))
                })?;
                w.text("state = {}", state.as_str().to_owned());
            }
        }
        if let Some(d) = filter.department {
            w.text("department = {}", d);
        }
        if let Some(d) = filter.district {
            w.text("district_code = {}", d);
        }
        if let Some(s) = filter.service_code {
            w.text("service_code = {}", s);
        }
        if let Some(s) = filter.source {
            w.text("source = {}", s);
        }
        if filter.mine == Some(true) {
            w.text("grid_worker = {}", principal.name.clone());
        }
        if filter.overdue == Some(true) {
            w.parts
                .push("state IN ('dispatched', 'handling')".to_owned());
            w.number("due_at_ms <= {}", now_ms());
        }
        if let Some(since) = filter.since {
            let ms = yunnao_core::time::parse_rfc3339_ms(&since).ok_or_else(|| {
                Problem::bad_request(format!("since {since:?} is not an RFC 3339 time"))
            })?;
            w.number("created_at_ms >= {}", ms);
        }
        if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            if q.chars().count() > 100 {
                return Err(Problem::bad_request("q is at most 100 characters"));
            }
            let pattern = format!(
                "%{}%",
                q.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            w.text("(id = {}", q.to_owned());
            w.text("description LIKE {} ESCAPE '\\'", pattern.clone());
            w.text("address LIKE {} ESCAPE '\\')", pattern);
            // The three are one alternative: join them with OR, not AND.
            let last = w.parts.len();
            let joined = w.parts[last - 3..].join(" OR ");
            w.parts.truncate(last - 3);
            w.parts.push(joined);
        }
        let order = match filter.sort.as_deref() {
            None | Some("created") => "created_at_ms DESC, id",
            Some("due") => "CASE WHEN due_at_ms IS NULL THEN 1 ELSE 0 END, due_at_ms, id",
            Some(other) => {
                return Err(Problem::bad_request(format!(
                    "sort {other:?}: created or due"
                )));
            }
        };
        let limit = filter.limit.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return Err(Problem::bad_request("limit is 1 to 1000"));
        }
        let offset = filter.offset.unwrap_or(0).max(0);
        let condition = w.sql();
        let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM gov_incidents WHERE {condition}"
        )));
        for v in &w.values {
            count = count.bind(v.clone());
        }
        for n in &w.numbers {
            count = count.bind(*n);
        }
        let total = count.fetch_one(self.db.pool()).await.db()?;
        let mut query = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM gov_incidents WHERE {condition} ORDER BY {order} LIMIT {limit} OFFSET {offset}"
        )));
        for v in &w.values {
            query = query.bind(v.clone());
        }
        for n in &w.numbers {
            query = query.bind(*n);
        }
        let rows = query.fetch_all(self.db.pool()).await.db()?;
        let categories = self.categories().await?;
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let mut photos = self.photo_ids_of(&ids).await?;
        let items = rows
            .iter()
            .map(|row| self.view(row, &categories, photos.remove(&row.id).unwrap_or_default()))
            .collect();
        Ok(IncidentPage { total, items })
    }

    /// A stored photo, if the caller may see its incident.
    pub async fn media(
        &self,
        id: &str,
        principal: &Principal,
    ) -> Result<(String, Vec<u8>), Problem> {
        let found: Option<(String, String, Vec<u8>)> =
            sqlx::query_as("SELECT incident_id, content_type, bytes FROM gov_media WHERE id = $1")
                .bind(id)
                .fetch_optional(self.db.pool())
                .await
                .db()?;
        let (incident, content_type, bytes) =
            found.ok_or_else(|| Problem::not_found(format!("no photo {id}")))?;
        let row = self.row(&incident).await?;
        if !row.is_some_and(|r| self.can_see(principal, &r)) {
            return Err(Problem::not_found(format!("no photo {id}")));
        }
        Ok((content_type, bytes))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Escalation {
    pub incident_id: String,
    /// `deadline_warning` (80% of the time used) or `escalated` (overdue).
    pub kind: String,
    pub at: String,
    pub service_code: String,
    pub state: String,
    pub department: Option<String>,
    pub district_code: Option<String>,
    pub detail: serde_json::Value,
}

type EscalationRow = (
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EscalationFilter {
    pub district: Option<String>,
    pub limit: Option<i64>,
}

impl Governance {
    /// Warnings and escalations: the command centre sees all (or one district's), a department
    /// head sees those of the department's cases.
    pub async fn escalations(
        &self,
        filter: EscalationFilter,
        principal: &Principal,
    ) -> Result<Vec<Escalation>, Problem> {
        let centre = self.is_centre(principal);
        if !centre && !principal.has_role(Role::DeptAdmin) && !principal.has_role(Role::Operator) {
            return Err(Problem::forbidden(
                "escalations are for the command centre and department heads",
            ));
        }
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let rows: Vec<EscalationRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT e.incident_id, e.action, e.at_ms, i.service_code, i.state, i.department, i.district_code, e.detail \
                 FROM gov_incident_events e JOIN gov_incidents i ON i.id = e.incident_id \
                 WHERE e.action IN ('deadline_warning', 'escalated') \
                 AND ($1 = '' OR i.department = $1) AND ($2 = '' OR i.district_code = $2) \
                 ORDER BY e.at_ms DESC LIMIT {limit}"
            )))
            .bind(if centre { String::new() } else { principal.department.clone() })
            .bind(filter.district.unwrap_or_default())
            .fetch_all(self.db.pool())
            .await
            .db()?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    incident_id,
                    kind,
                    at,
                    service_code,
                    state,
                    department,
                    district_code,
                    detail,
                )| {
                    Escalation {
                        incident_id,
                        kind,
                        at: crate::calendar::to_cst_rfc3339(at),
                        service_code,
                        state,
                        department,
                        district_code,
                        detail: serde_json::from_str(&detail).unwrap_or_default(),
                    }
                },
            )
            .collect())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Figures {
    /// District code or department code.
    pub key: String,
    pub name: String,
    pub open: i64,
    pub overdue: i64,
    pub closed_today: i64,
    /// Closed over accepted (not rejected) incidents created in the window, percent.
    pub closure_rate_pct: Option<f64>,
    /// From report to closure, hours, over incidents closed in the window.
    pub avg_handling_hours: Option<f64>,
    /// Handled within the time limit, percent of those closed in the window.
    pub on_time_pct: Option<f64>,
    /// Sent back for rework at least once, percent of those closed in the window (返工率).
    pub rework_pct: Option<f64>,
    /// Closed in the window (what the rates above are taken over).
    pub closed_in_window: i64,
    /// Mean rating 1–5 and how many rated.
    pub satisfaction: Option<f64>,
    pub rated: i64,
    pub total: i64,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FiguresQuery {
    /// `district` (default) or `department`.
    pub by: Option<String>,
    /// Window in days for rates and averages (default 30).
    pub days: Option<i64>,
}

/// Incidents reported on one day (China Standard Time) in one district.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DailyCount {
    /// `YYYY-MM-DD`, China Standard Time.
    pub day: String,
    /// District code; empty for unlocated or out-of-area cases.
    pub district: String,
    pub reported: i64,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DailyQuery {
    /// Days back, today included (default 7, at most 366).
    pub days: Option<i64>,
}

const DAY_MS: i64 = 86_400_000;
const CST_OFFSET_MS: i64 = 8 * 3_600_000;

impl Governance {
    /// Incidents reported per day and district over the last `days` days (today included),
    /// every day listed even when nothing was reported.
    pub async fn daily(&self, query: DailyQuery) -> Result<Vec<DailyCount>, Problem> {
        let days = query.days.unwrap_or(7);
        if !(1..=366).contains(&days) {
            return Err(Problem::bad_request("days is 1 to 366"));
        }
        let today = (now_ms() + CST_OFFSET_MS).div_euclid(DAY_MS);
        let first = today - (days - 1);
        let rows: Vec<(Option<String>, i64, i64)> = sqlx::query_as(
            "SELECT district_code, CAST((created_at_ms + $1) / $2 AS BIGINT) AS day, COUNT(*) \
             FROM gov_incidents WHERE created_at_ms >= $3 GROUP BY district_code, day",
        )
        .bind(CST_OFFSET_MS)
        .bind(DAY_MS)
        .bind(first * DAY_MS - CST_OFFSET_MS)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let label = |day: i64| {
            crate::calendar::to_cst_rfc3339(day * DAY_MS - CST_OFFSET_MS)
                .get(..10)
                .unwrap_or_default()
                .to_owned()
        };
        let mut out = Vec::new();
        for day in first..=today {
            for district in &self.grid.districts {
                let reported = rows
                    .iter()
                    .filter(|(d, n, _)| *n == day && d.as_deref() == Some(&*district.code))
                    .map(|r| r.2)
                    .sum();
                out.push(DailyCount {
                    day: label(day),
                    district: district.code.clone(),
                    reported,
                });
            }
            let elsewhere: i64 = rows
                .iter()
                .filter(|(d, n, _)| {
                    *n == day
                        && !self
                            .grid
                            .districts
                            .iter()
                            .any(|district| d.as_deref() == Some(&*district.code))
                })
                .map(|r| r.2)
                .sum();
            if elsewhere > 0 {
                out.push(DailyCount {
                    day: label(day),
                    district: String::new(),
                    reported: elsewhere,
                });
            }
        }
        Ok(out)
    }

    /// Open incidents per grid in one district: (grid code, open).
    pub async fn open_by_grid(&self, district: &str) -> Result<Vec<(String, i64)>, Problem> {
        sqlx::query_as(
            "SELECT grid_code, COUNT(*) FROM gov_incidents \
             WHERE district_code = $1 AND grid_code IS NOT NULL AND state NOT IN ('closed', 'rejected') \
             GROUP BY grid_code",
        )
        .bind(district)
        .fetch_all(self.db.pool())
        .await
        .db()
    }

    pub async fn figures(&self, query: FiguresQuery) -> Result<Vec<Figures>, Problem> {
        let column = match query.by.as_deref().unwrap_or("district") {
            "district" => "district_code",
            "department" => "department",
            other => {
                return Err(Problem::bad_request(format!(
                    "by {other:?}: group by district or department"
                )));
            }
        };
        let days = query.days.unwrap_or(30);
        if !(1..=3660).contains(&days) {
            return Err(Problem::bad_request("days is 1 to 3660"));
        }
        let now = now_ms();
        let since = now - days * 86_400_000;
        let today = WorkCalendar::start_of_day_ms(now);
        type FigureRow = (
            Option<String>,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
        );
        let rows: Vec<FigureRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {column}, \
             CAST(SUM(CASE WHEN state NOT IN ('closed', 'rejected') THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN state IN ('dispatched', 'handling') AND due_at_ms <= $1 THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN state = 'closed' AND closed_at_ms >= $2 THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN created_at_ms >= $3 AND state <> 'rejected' THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN created_at_ms >= $3 AND state = 'closed' THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN closed_at_ms >= $3 AND state = 'closed' THEN closed_at_ms - created_at_ms ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN closed_at_ms >= $3 AND state = 'closed' THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN closed_at_ms >= $3 AND state = 'closed' AND handled_at_ms IS NOT NULL AND handled_at_ms <= due_at_ms THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN satisfaction IS NOT NULL THEN satisfaction ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN satisfaction IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN closed_at_ms >= $3 AND state = 'closed' AND rework_count > 0 THEN 1 ELSE 0 END) AS BIGINT) \
             FROM gov_incidents GROUP BY {column} ORDER BY {column}"
        )))
        .bind(now)
        .bind(today)
        .bind(since)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let names = self.department_names().await?;
        let ratio = |part: i64, whole: i64| {
            (whole > 0).then(|| ((1000.0 * part as f64 / whole as f64).round()) / 10.0)
        };
        let mut out: Vec<Figures> = rows
            .into_iter()
            .map(
                |(
                    key,
                    open,
                    overdue,
                    closed_today,
                    accepted,
                    closed,
                    duration,
                    closed_n,
                    on_time,
                    sat_sum,
                    rated,
                    reworked,
                )| {
                    let key = key.unwrap_or_default();
                    Figures {
                        name: if column == "district_code" {
                            self.grid
                                .districts
                                .iter()
                                .find(|d| d.code == key)
                                .map(|d| d.name.clone())
                                .unwrap_or_else(|| "未定位/市外".to_owned())
                        } else {
                            names
                                .get(&key)
                                .cloned()
                                .unwrap_or_else(|| "未派遣".to_owned())
                        },
                        key,
                        open,
                        overdue,
                        closed_today,
                        closure_rate_pct: ratio(closed, accepted),
                        avg_handling_hours: (closed_n > 0).then(|| {
                            ((duration as f64 / closed_n as f64 / 3_600_000.0) * 10.0).round()
                                / 10.0
                        }),
                        on_time_pct: ratio(on_time, closed_n),
                        rework_pct: ratio(reworked, closed_n),
                        closed_in_window: closed_n,
                        satisfaction: (rated > 0)
                            .then(|| ((sat_sum as f64 / rated as f64) * 100.0).round() / 100.0),
                        rated,
                        total: accepted,
                    }
                },
            )
            .collect();
        // Districts with no incidents still appear (with zeros): the overview lists all ten.
        if column == "district_code" {
            for d in &self.grid.districts {
                if !out.iter().any(|f| f.key == d.code) {
                    out.push(Figures {
                        key: d.code.clone(),
                        name: d.name.clone(),
                        open: 0,
                        overdue: 0,
                        closed_today: 0,
                        closure_rate_pct: None,
                        avg_handling_hours: None,
                        on_time_pct: None,
                        rework_pct: None,
                        closed_in_window: 0,
                        satisfaction: None,
                        rated: 0,
                        total: 0,
                    });
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
        }
        Ok(out)
    }
}
