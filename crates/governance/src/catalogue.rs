//! What the hub is configured with: incident categories (GB/T 30428 classes, configurable
//! subclasses with handling department and time limit), dispatch rules, the working calendar
//! and grid workers' assignments.

use crate::calendar::{Clock, WorkCalendar};
use crate::{Governance, json};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use yunnao_core::Problem;
use yunnao_core::time::now_ms;
use yunnao_store::{DbResultExt, sqlx};

const SEED: &str = include_str!("../data/categories.json");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Attribute {
    pub code: String,
    /// Open311 datatypes: string, number, datetime, text, singlevaluelist, multivaluelist.
    pub datatype: String,
    pub required: bool,
    pub description: String,
    #[serde(default)]
    pub order: i64,
    /// For list types: allowed keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Category {
    /// `C` (部件 component) or `E` (事件 event) + class + subclass, e.g. `E0102`.
    pub service_code: String,
    /// `component` or `event`.
    pub kind: String,
    pub class_code: String,
    pub class_name: String,
    pub class_name_en: String,
    pub code: String,
    pub name: String,
    pub name_en: String,
    /// Default handling department (dispatch rules may override per area).
    pub department: String,
    /// Time limit for handling, from dispatch.
    pub deadline_minutes: i64,
    /// `working` (on the working calendar) or `natural` (every minute).
    pub clock: String,
    pub attributes: Vec<Attribute>,
    pub active: bool,
}

impl Category {
    pub fn clock(&self) -> Clock {
        if self.clock == "natural" {
            Clock::Natural
        } else {
            Clock::Working
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryInput {
    pub name: String,
    pub name_en: String,
    pub department: String,
    pub deadline_minutes: i64,
    pub clock: String,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
struct Class {
    kind: String,
    code: String,
    name: String,
    name_en: String,
}

#[derive(Debug, Clone, Deserialize)]
struct SeedSubclass {
    service_code: String,
    kind: String,
    class_code: String,
    code: String,
    name: String,
    name_en: String,
    department: String,
    deadline_minutes: i64,
    clock: String,
    #[serde(default)]
    attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, Deserialize)]
struct Seed {
    classes: Vec<Class>,
    subclasses: Vec<SeedSubclass>,
    alarm_services: HashMap<String, String>,
    alarm_default: String,
}

/// The embedded seed, parsed once: category reads (every page names categories) need its
/// class names.
fn seed() -> Result<&'static Seed, Problem> {
    static SEED_PARSED: std::sync::OnceLock<Result<Seed, String>> = std::sync::OnceLock::new();
    SEED_PARSED
        .get_or_init(|| serde_json::from_str(SEED).map_err(|e| format!("categories.json: {e}")))
        .as_ref()
        .map_err(|e| Problem::internal(e.clone()))
}

fn class_name(classes: &[Class], kind: &str, code: &str) -> String {
    class_names(classes, kind, code).0
}

/// A class's (Chinese, English) names; empty for a class not in the standard.
fn class_names(classes: &[Class], kind: &str, code: &str) -> (String, String) {
    classes
        .iter()
        .find(|c| c.kind == kind && c.code == code)
        .map(|c| (c.name.clone(), c.name_en.clone()))
        .unwrap_or_default()
}

type CategoryRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    i64,
);

const CATEGORY_COLUMNS: &str = "service_code, kind, class_code, code, name, name_en, department, deadline_minutes, clock, attributes, active";

fn category_from(row: CategoryRow, classes: &[Class]) -> Result<Category, Problem> {
    let (
        service_code,
        kind,
        class_code,
        code,
        name,
        name_en,
        department,
        minutes,
        clock,
        attrs,
        active,
    ) = row;
    let (class_name, class_name_en) = class_names(classes, &kind, &class_code);
    Ok(Category {
        class_name,
        class_name_en,
        attributes: serde_json::from_str(&attrs)
            .map_err(|e| Problem::internal(format!("category {service_code}: {e}")))?,
        service_code,
        kind,
        class_code,
        code,
        name,
        name_en,
        department,
        deadline_minutes: minutes,
        clock,
        active: active != 0,
    })
}

const DATATYPES: &[&str] = &[
    "string",
    "number",
    "datetime",
    "text",
    "singlevaluelist",
    "multivaluelist",
];

impl Governance {
    /// Adds the seed categories that are not in the table yet (a city's edits are kept).
    pub(crate) async fn seed_categories(&self) -> Result<usize, Problem> {
        let seed = seed()?;
        let mut added = 0;
        for sub in &seed.subclasses {
            let result = sqlx::query(
                "INSERT INTO gov_categories (service_code, kind, class_code, code, name, name_en, department, deadline_minutes, clock, attributes, active, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11) ON CONFLICT (service_code) DO NOTHING",
            )
            .bind(&sub.service_code)
            .bind(&sub.kind)
            .bind(&sub.class_code)
            .bind(&sub.code)
            .bind(&sub.name)
            .bind(&sub.name_en)
            .bind(&sub.department)
            .bind(sub.deadline_minutes)
            .bind(&sub.clock)
            .bind(json(&sub.attributes)?)
            .bind(now_ms())
            .execute(self.db.pool())
            .await
            .db()?;
            added += result.rows_affected() as usize;
        }
        Ok(added)
    }

    pub async fn categories(&self) -> Result<Vec<Category>, Problem> {
        let classes = &seed()?.classes;
        let rows: Vec<CategoryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CATEGORY_COLUMNS} FROM gov_categories ORDER BY service_code"
        )))
        .fetch_all(self.db.pool())
        .await
        .db()?;
        rows.into_iter()
            .map(|r| category_from(r, classes))
            .collect()
    }

    pub async fn category(&self, service_code: &str) -> Result<Option<Category>, Problem> {
        let classes = &seed()?.classes;
        let row: Option<CategoryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CATEGORY_COLUMNS} FROM gov_categories WHERE service_code = $1"
        )))
        .bind(service_code)
        .fetch_optional(self.db.pool())
        .await
        .db()?;
        row.map(|r| category_from(r, classes)).transpose()
    }

    /// Creates or changes a subclass. The code fixes kind and class: `C`/`E`, a class of the
    /// standard, a two-digit subclass.
    pub async fn put_category(
        &self,
        service_code: &str,
        input: CategoryInput,
    ) -> Result<Category, Problem> {
        let seed = seed()?;
        let bytes = service_code.as_bytes();
        let kind = match bytes.first() {
            Some(b'C') => "component",
            Some(b'E') => "event",
            _ => "",
        };
        if kind.is_empty() || service_code.len() != 5 || !bytes[1..].iter().all(u8::is_ascii_digit)
        {
            return Err(Problem::validation(format!(
                "service code {service_code:?} must be C (部件) or E (事件) followed by a two-digit class and a two-digit subclass, e.g. E0102"
            )));
        }
        let (class_code, code) = (&service_code[1..3], &service_code[3..5]);
        if class_name(&seed.classes, kind, class_code).is_empty() {
            return Err(Problem::validation(format!(
                "class {class_code} is not a GB/T 30428 {kind} class (01–06)"
            )));
        }
        if input.name.trim().is_empty() || input.name.chars().count() > 64 {
            return Err(Problem::validation("name must have 1–64 characters"));
        }
        if !(1..=365 * 24 * 60).contains(&input.deadline_minutes) {
            return Err(Problem::validation(
                "deadline_minutes must be between 1 and a year",
            ));
        }
        if !matches!(input.clock.as_str(), "working" | "natural") {
            return Err(Problem::validation("clock must be working or natural"));
        }
        if !self.identity.department_exists(&input.department).await? {
            return Err(Problem::validation(format!(
                "department {:?} does not exist",
                input.department
            )));
        }
        for attribute in &input.attributes {
            if attribute.code.is_empty()
                || !attribute
                    .code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(Problem::validation(format!(
                    "attribute code {:?} must be letters, digits and _",
                    attribute.code
                )));
            }
            if !DATATYPES.contains(&attribute.datatype.as_str()) {
                return Err(Problem::validation(format!(
                    "attribute {}: datatype must be one of {}",
                    attribute.code,
                    DATATYPES.join(", ")
                )));
            }
        }
        sqlx::query(
            "INSERT INTO gov_categories (service_code, kind, class_code, code, name, name_en, department, deadline_minutes, clock, attributes, active, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (service_code) DO UPDATE SET name = excluded.name, name_en = excluded.name_en, department = excluded.department, \
             deadline_minutes = excluded.deadline_minutes, clock = excluded.clock, attributes = excluded.attributes, active = excluded.active, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(service_code)
        .bind(kind)
        .bind(class_code)
        .bind(code)
        .bind(input.name.trim())
        .bind(input.name_en.trim())
        .bind(&input.department)
        .bind(input.deadline_minutes)
        .bind(&input.clock)
        .bind(json(&input.attributes)?)
        .bind(i64::from(input.active))
        .bind(now_ms())
        .execute(self.db.pool())
        .await
        .db()?;
        self.category(service_code)
            .await?
            .ok_or_else(|| Problem::internal("category vanished after writing"))
    }

    /// The service code a sensor alarm of a device profile becomes.
    pub fn alarm_service_code(&self, profile: &str) -> String {
        seed()
            .map(|s| {
                s.alarm_services
                    .get(profile)
                    .cloned()
                    .unwrap_or_else(|| s.alarm_default.clone())
            })
            .unwrap_or_else(|_| "E0499".to_owned())
    }
}

// ---- dispatch rules ----

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DispatchRule {
    pub id: String,
    /// A service code, or `*` for every one.
    pub service_code: String,
    /// Empty for the whole city, a 6-digit district or 9-digit street code.
    pub area_code: String,
    pub department: String,
    pub created_by: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDispatchRule {
    pub service_code: String,
    #[serde(default)]
    pub area_code: String,
    pub department: String,
}

impl Governance {
    pub async fn dispatch_rules(&self) -> Result<Vec<DispatchRule>, Problem> {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT id, service_code, area_code, department, created_by FROM gov_dispatch_rules ORDER BY service_code, area_code",
        )
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(rows
            .into_iter()
            .map(
                |(id, service_code, area_code, department, created_by)| DispatchRule {
                    id,
                    service_code,
                    area_code,
                    department,
                    created_by,
                },
            )
            .collect())
    }

    pub async fn add_dispatch_rule(
        &self,
        rule: NewDispatchRule,
        by: &str,
    ) -> Result<DispatchRule, Problem> {
        if rule.service_code != "*" && self.category(&rule.service_code).await?.is_none() {
            return Err(Problem::validation(format!(
                "unknown service code {:?}",
                rule.service_code
            )));
        }
        if !(rule.area_code.is_empty()
            || (matches!(rule.area_code.len(), 6 | 9)
                && self.grid.is_known_prefix(&rule.area_code)))
        {
            return Err(Problem::validation(format!(
                "area_code {:?} must be empty (the whole city), a district (6 digits) or a street (9 digits) of Qingdao",
                rule.area_code
            )));
        }
        if !self.identity.department_exists(&rule.department).await? {
            return Err(Problem::validation(format!(
                "department {:?} does not exist",
                rule.department
            )));
        }
        let id = yunnao_core::new_id();
        sqlx::query(
            "INSERT INTO gov_dispatch_rules (id, service_code, area_code, department, created_by, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(&rule.service_code)
        .bind(&rule.area_code)
        .bind(&rule.department)
        .bind(by)
        .bind(now_ms())
        .execute(self.db.pool())
        .await
        .db()?;
        Ok(DispatchRule {
            id,
            service_code: rule.service_code,
            area_code: rule.area_code,
            department: rule.department,
            created_by: by.to_owned(),
        })
    }

    pub async fn delete_dispatch_rule(&self, id: &str) -> Result<bool, Problem> {
        Ok(sqlx::query("DELETE FROM gov_dispatch_rules WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await
            .db()?
            .rows_affected()
            > 0)
    }

    /// The department the most specific dispatch rule names for a subclass at a street
    /// (street, then district, then city-wide; a rule for the subclass before a `*` rule), if
    /// any rule applies.
    pub async fn rule_department(
        &self,
        category: &Category,
        street_code: Option<&str>,
    ) -> Result<Option<String>, Problem> {
        let rules = self.dispatch_rules().await?;
        let street = street_code.unwrap_or("");
        let mut areas = Vec::with_capacity(3);
        if street.len() == 9 {
            areas.push(street);
        }
        if let Some(district) = street.get(..6) {
            areas.push(district);
        }
        areas.push("");
        for area in areas {
            for service in [category.service_code.as_str(), "*"] {
                if let Some(rule) = rules
                    .iter()
                    .find(|r| r.service_code == service && r.area_code == area)
                {
                    return Ok(Some(rule.department.clone()));
                }
            }
        }
        Ok(None)
    }
}

// ---- the working calendar ----

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CalendarDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// `false`: a holiday; `true`: a weekend day worked (调休).
    pub working: bool,
    #[serde(default)]
    pub note: String,
}

impl Governance {
    pub async fn calendar_days(&self) -> Result<Vec<CalendarDay>, Problem> {
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT day, working, note FROM gov_calendar ORDER BY day")
                .fetch_all(self.db.pool())
                .await
                .db()?;
        Ok(rows
            .into_iter()
            .map(|(day, working, note)| CalendarDay {
                day,
                working: working != 0,
                note,
            })
            .collect())
    }

    /// The calendar as stored (read per use: it is small, and another node may have changed it).
    pub async fn calendar(&self) -> Result<WorkCalendar, Problem> {
        let mut calendar = WorkCalendar {
            day_start_min: self.config.work_day.0,
            day_end_min: self.config.work_day.1,
            ..WorkCalendar::default()
        };
        for day in self.calendar_days().await? {
            if let Ok(date) = chrono::NaiveDate::parse_from_str(&day.day, "%Y-%m-%d") {
                calendar.exceptions.insert(date, day.working);
            }
        }
        Ok(calendar)
    }

    pub async fn put_calendar_day(&self, day: CalendarDay) -> Result<CalendarDay, Problem> {
        if chrono::NaiveDate::parse_from_str(&day.day, "%Y-%m-%d").is_err() {
            return Err(Problem::validation(format!(
                "{:?} is not a date (YYYY-MM-DD)",
                day.day
            )));
        }
        sqlx::query(
            "INSERT INTO gov_calendar (day, working, note) VALUES ($1, $2, $3) \
             ON CONFLICT (day) DO UPDATE SET working = excluded.working, note = excluded.note",
        )
        .bind(&day.day)
        .bind(i64::from(day.working))
        .bind(&day.note)
        .execute(self.db.pool())
        .await
        .db()?;
        Ok(day)
    }

    pub async fn delete_calendar_day(&self, day: &str) -> Result<bool, Problem> {
        Ok(sqlx::query("DELETE FROM gov_calendar WHERE day = $1")
            .bind(day)
            .execute(self.db.pool())
            .await
            .db()?
            .rows_affected()
            > 0)
    }
}

// ---- grid workers ----

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct GridAssignment {
    pub user_id: String,
    pub username: String,
    /// A district, street, community or grid code: the worker covers every grid under it.
    pub grid_prefix: String,
}

/// Assignments in memory: prefix → workers (user id, username).
#[derive(Debug, Default, Clone)]
pub struct Assignments {
    by_prefix: HashMap<String, Vec<(String, String)>>,
}

impl Assignments {
    /// The workers of the most specific assignment covering `grid_code`.
    pub fn workers_of(&self, grid_code: &str) -> Option<&[(String, String)]> {
        [16, 12, 9, 6]
            .into_iter()
            .filter_map(|n| grid_code.get(..n))
            .find_map(|prefix| self.by_prefix.get(prefix).map(Vec::as_slice))
    }

    pub fn is_staffed(&self, grid_code: &str) -> bool {
        self.workers_of(grid_code).is_some()
    }
}

impl Governance {
    pub async fn grid_assignments(&self) -> Result<Vec<GridAssignment>, Problem> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT user_id, username, grid_prefix FROM gov_grid_workers ORDER BY username, grid_prefix",
        )
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(rows
            .into_iter()
            .map(|(user_id, username, grid_prefix)| GridAssignment {
                user_id,
                username,
                grid_prefix,
            })
            .collect())
    }

    /// Reloads the in-memory assignments (after a change, and periodically for other nodes').
    pub async fn reload_assignments(&self) -> Result<(), Problem> {
        let mut fresh = Assignments::default();
        for a in self.grid_assignments().await? {
            fresh
                .by_prefix
                .entry(a.grid_prefix)
                .or_default()
                .push((a.user_id, a.username));
        }
        *self
            .assignments
            .write()
            .map_err(|_| Problem::internal("assignments lock poisoned"))? = fresh;
        Ok(())
    }

    pub fn assignments(&self) -> Assignments {
        self.assignments
            .read()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Replaces the grids a grid worker covers.
    pub async fn assign_grids(
        &self,
        username: &str,
        prefixes: &[String],
    ) -> Result<Vec<GridAssignment>, Problem> {
        let user = self
            .identity
            .user_by_username(username)
            .await?
            .ok_or_else(|| Problem::not_found(format!("no user {username:?}")))?;
        if !user.roles.contains(&yunnao_identity::Role::GridWorker) {
            return Err(Problem::validation(format!(
                "{username} is not a grid worker (role grid_worker)"
            )));
        }
        if prefixes.len() > 10_000 {
            return Err(Problem::validation("at most 10,000 grids per worker"));
        }
        for prefix in prefixes {
            if !self.grid.is_known_prefix(prefix) {
                return Err(Problem::validation(format!(
                    "{prefix:?} is not a district, street, community or grid code of the city grid"
                )));
            }
        }
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM gov_grid_workers WHERE user_id = $1")
            .bind(&user.id)
            .execute(&mut **tx)
            .await
            .db()?;
        for prefix in prefixes {
            sqlx::query(
                "INSERT INTO gov_grid_workers (user_id, username, grid_prefix, assigned_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(&user.id)
            .bind(&user.username)
            .bind(prefix)
            .bind(now_ms())
            .execute(&mut **tx)
            .await
            .db()?;
        }
        tx.commit().await?;
        self.reload_assignments().await?;
        Ok(prefixes
            .iter()
            .map(|p| GridAssignment {
                user_id: user.id.clone(),
                username: user.username.clone(),
                grid_prefix: p.clone(),
            })
            .collect())
    }
}
