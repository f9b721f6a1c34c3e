//! Alarm rules and alarms. Rules apply to one device or to every device of a profile (of one
//! department, or of all when the rule is a platform default). Kinds:
//! - `threshold`: value `above`/`below` a threshold or `outside` a range, optionally for a
//!   duration ("above 4.5 m for 10 minutes") and/or for N consecutive readings;
//! - `rate`: change faster than `threshold` units per minute between consecutive readings;
//! - `no_data`: nothing received for `missed_intervals` reporting intervals (the device is
//!   offline).
//!
//! One active alarm per rule and device (a partial unique index guarantees it across nodes).
//! Lifecycle: raised → acknowledged → cleared (automatically when the condition ends, if the
//! rule says so, or by an operator). Every change is published on the bus as
//! `sensing.alarm.{raised|acknowledged|cleared}.{severity}`.
//!
//! The writer hands every committed batch to the engine over a bounded channel (waiting when
//! the engine is behind), so no committed reading escapes evaluation; a timer checks no-data
//! rules.

use crate::events::{Activity, Sink, TelemetryCommitted};
use crate::profiles::ProfileRegistry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use yunnao_bus::{Bus, Event};
use yunnao_core::Problem;
use yunnao_store::{Db, DbResultExt, sqlx};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Threshold,
    Rate,
    NoData,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    Above,
    Below,
    Outside,
}

#[derive(
    Debug,
    Clone,
    Copy,
    Serialize,
    Deserialize,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
        }
    }

    /// A severity by its name, if it is one.
    pub fn from_name(text: &str) -> Option<Severity> {
        matches!(text, "critical" | "major" | "minor" | "warning").then(|| Severity::parse(text))
    }

    fn parse(text: &str) -> Severity {
        match text {
            "critical" => Severity::Critical,
            "major" => Severity::Major,
            "minor" => Severity::Minor,
            _ => Severity::Warning,
        }
    }
}

fn kind_str(kind: RuleKind) -> &'static str {
    match kind {
        RuleKind::Threshold => "threshold",
        RuleKind::Rate => "rate",
        RuleKind::NoData => "no_data",
    }
}

fn operator_str(operator: Operator) -> &'static str {
    match operator {
        Operator::Above => "above",
        Operator::Below => "below",
        Operator::Outside => "outside",
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    pub name: String,
    /// Rule for every device of this profile (of the rule's department)…
    pub profile: Option<String>,
    /// …or for one device.
    pub device: Option<String>,
    pub key: Option<String>,
    pub kind: RuleKind,
    pub operator: Option<Operator>,
    /// Threshold (lower bound for `outside`; units per minute for `rate`).
    pub threshold: Option<f64>,
    /// Upper bound for `outside`.
    pub threshold_high: Option<f64>,
    /// The condition must hold this long before the alarm is raised.
    #[serde(default)]
    pub duration_s: i64,
    /// …and for this many readings in a row.
    #[serde(default = "one")]
    pub consecutive: i64,
    /// For `no_data`: reporting intervals without data.
    #[serde(default = "three")]
    pub missed_intervals: i64,
    pub severity: Severity,
    #[serde(default = "yes")]
    pub auto_clear: bool,
    /// Owning department; defaults to the caller's. Platform admins may pass `null` through
    /// `platform_default: true` to make a rule for every department.
    pub department: Option<String>,
    #[serde(default)]
    pub platform_default: bool,
}

fn one() -> i64 {
    1
}
fn three() -> i64 {
    3
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Rule {
    pub id: String,
    pub name: String,
    /// `null`: a platform default that applies to every department.
    pub department: Option<String>,
    pub profile: Option<String>,
    pub device: Option<String>,
    pub key: Option<String>,
    pub kind: RuleKind,
    pub operator: Option<Operator>,
    pub threshold: Option<f64>,
    pub threshold_high: Option<f64>,
    pub duration_s: i64,
    pub consecutive: i64,
    pub missed_intervals: i64,
    pub severity: Severity,
    pub auto_clear: bool,
}

impl Rule {
    pub fn applies_to(&self, device: &str, profile: &str, department: &str) -> bool {
        let scope = match (&self.device, &self.profile) {
            (Some(d), _) => d == device,
            (None, Some(p)) => p == profile,
            (None, None) => false,
        };
        scope && self.department.as_deref().is_none_or(|d| d == department)
    }

    fn violated(&self, value: f64) -> bool {
        let threshold = self.threshold.unwrap_or(f64::INFINITY);
        match self.operator {
            Some(Operator::Above) => value > threshold,
            Some(Operator::Below) => value < threshold,
            Some(Operator::Outside) => {
                value < threshold || value > self.threshold_high.unwrap_or(f64::INFINITY)
            }
            None => false,
        }
    }

    fn describe(&self, value: f64) -> String {
        let key = self.key.as_deref().unwrap_or("");
        match (self.kind, self.operator) {
            (RuleKind::NoData, _) => format!(
                "{}: no data for {} reporting intervals",
                self.name, self.missed_intervals
            ),
            (RuleKind::Rate, _) => format!(
                "{}: {key} changing at {value:.3}/min (limit {})",
                self.name,
                self.threshold.unwrap_or_default()
            ),
            (_, Some(Operator::Outside)) => format!(
                "{}: {key} = {value} outside {}..{}",
                self.name,
                self.threshold.unwrap_or_default(),
                self.threshold_high.unwrap_or_default()
            ),
            (_, op) => format!(
                "{}: {key} = {value} {} {}",
                self.name,
                if op == Some(Operator::Below) {
                    "below"
                } else {
                    "above"
                },
                self.threshold.unwrap_or_default()
            ),
        }
    }
}

pub fn validate(rule: &NewRule, profiles: &ProfileRegistry) -> Result<(), Problem> {
    let invalid = |message: &str| Err(Problem::validation(message.to_owned()));
    if rule.name.trim().is_empty() || rule.name.chars().count() > 200 {
        return invalid("name must be 1 to 200 characters");
    }
    if rule.profile.is_some() == rule.device.is_some() {
        return invalid("give exactly one of profile or device");
    }
    if let Some(profile) = &rule.profile {
        let Some(p) = profiles.get(profile) else {
            return invalid("unknown profile");
        };
        if let Some(key) = &rule.key
            && p.key(key).is_none()
        {
            return Err(Problem::validation(format!(
                "profile {profile} has no key {key:?}"
            )));
        }
    }
    if rule.duration_s < 0 || rule.consecutive < 1 || rule.missed_intervals < 1 {
        return invalid("duration_s ≥ 0, consecutive ≥ 1 and missed_intervals ≥ 1");
    }
    match rule.kind {
        RuleKind::Threshold => {
            if rule.key.is_none() || rule.operator.is_none() || rule.threshold.is_none() {
                return invalid("a threshold rule needs key, operator and threshold");
            }
            if rule.operator == Some(Operator::Outside)
                && !rule
                    .threshold_high
                    .is_some_and(|high| high > rule.threshold.unwrap_or(f64::INFINITY))
            {
                return invalid("an outside rule needs threshold_high above threshold");
            }
        }
        RuleKind::Rate => {
            if rule.key.is_none() || !rule.threshold.is_some_and(|t| t > 0.0) {
                return invalid(
                    "a rate rule needs key and a positive threshold (units per minute)",
                );
            }
        }
        RuleKind::NoData => {}
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AlarmView {
    pub id: String,
    pub rule_id: String,
    pub device_id: String,
    pub department: String,
    pub severity: Severity,
    pub message: String,
    pub value: Option<f64>,
    /// `active`, `acknowledged` (still active) or `cleared`.
    pub status: String,
    pub raised_at: String,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub cleared_at: Option<String>,
    pub cleared_by: Option<String>,
    /// What the operator wrote when acknowledging.
    pub acknowledge_comment: Option<String>,
    /// What the operator wrote when clearing by hand.
    pub clear_comment: Option<String>,
    /// When the reading that raised it was committed (ms since the epoch); `raised_at` minus
    /// this is the detection delay.
    pub trigger_committed_ms: Option<i64>,
    pub raised_at_ms: i64,
}

/// Which alarms a list shows, by where they are in their life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlarmStatus {
    /// Not cleared: active or acknowledged.
    #[default]
    Open,
    /// Not yet acknowledged.
    Active,
    /// Acknowledged, still active.
    Acknowledged,
    Cleared,
    All,
}

impl AlarmStatus {
    pub fn parse(text: &str) -> Option<AlarmStatus> {
        Some(match text {
            "open" => AlarmStatus::Open,
            "active" => AlarmStatus::Active,
            "acknowledged" => AlarmStatus::Acknowledged,
            "cleared" => AlarmStatus::Cleared,
            "all" => AlarmStatus::All,
            _ => return None,
        })
    }
}

/// An alarm list's filter; `None` is any.
#[derive(Debug, Clone, Copy)]
pub struct AlarmFilter<'a> {
    pub department: Option<&'a str>,
    pub device: Option<&'a str>,
    pub severity: Option<Severity>,
    pub status: AlarmStatus,
    pub limit: i64,
}

/// What happened to an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmChange {
    Raised,
    Acknowledged,
    Cleared,
}

impl AlarmChange {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmChange::Raised => "raised",
            AlarmChange::Acknowledged => "acknowledged",
            AlarmChange::Cleared => "cleared",
        }
    }
}

/// Published on `sensing.alarm.{change}.{severity}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlarmChanged {
    pub change: AlarmChange,
    pub alarm: AlarmView,
    /// When the reading that caused the change was committed (ms), for latency figures.
    pub committed_ms: Option<i64>,
}

impl Event for AlarmChanged {
    const TYPE: &'static str = "sensing.alarm.changed";
    const VERSION: u32 = 1;
    fn subject(&self) -> String {
        format!(
            "sensing.alarm.{}.{}",
            self.change.as_str(),
            self.alarm.severity.as_str()
        )
    }
}

#[derive(sqlx::FromRow)]
struct AlarmRow {
    id: String,
    rule_id: String,
    device_id: String,
    department_code: String,
    severity: String,
    message: String,
    value: Option<f64>,
    raised_at_ms: i64,
    acknowledged_at_ms: Option<i64>,
    acknowledged_by: Option<String>,
    cleared_at_ms: Option<i64>,
    cleared_by: Option<String>,
    trigger_committed_ms: Option<i64>,
    acknowledge_comment: Option<String>,
    clear_comment: Option<String>,
}

const ALARM_COLUMNS: &str = "id, rule_id, device_id, department_code, severity, message, value, raised_at_ms, acknowledged_at_ms, acknowledged_by, cleared_at_ms, cleared_by, trigger_committed_ms, acknowledge_comment, clear_comment";

impl AlarmRow {
    fn view(self) -> AlarmView {
        let status = if self.cleared_at_ms.is_some() {
            "cleared"
        } else if self.acknowledged_at_ms.is_some() {
            "acknowledged"
        } else {
            "active"
        };
        AlarmView {
            status: status.to_owned(),
            id: self.id,
            rule_id: self.rule_id,
            device_id: self.device_id,
            department: self.department_code,
            severity: Severity::parse(&self.severity),
            message: self.message,
            value: self.value,
            raised_at: yunnao_core::time::rfc3339_ms(self.raised_at_ms),
            acknowledged_at: self.acknowledged_at_ms.map(yunnao_core::time::rfc3339_ms),
            acknowledged_by: self.acknowledged_by,
            cleared_at: self.cleared_at_ms.map(yunnao_core::time::rfc3339_ms),
            cleared_by: self.cleared_by,
            acknowledge_comment: self.acknowledge_comment,
            clear_comment: self.clear_comment,
            trigger_committed_ms: self.trigger_committed_ms,
            raised_at_ms: self.raised_at_ms,
        }
    }
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    id: String,
    name: String,
    department_code: Option<String>,
    profile_code: Option<String>,
    device_id: Option<String>,
    key: Option<String>,
    kind: String,
    operator: Option<String>,
    threshold: Option<f64>,
    threshold_high: Option<f64>,
    duration_s: i64,
    consecutive: i64,
    missed_intervals: i64,
    severity: String,
    auto_clear: i64,
}

const RULE_COLUMNS: &str = "id, name, department_code, profile_code, device_id, key, kind, operator, threshold, threshold_high, duration_s, consecutive, missed_intervals, severity, auto_clear";

impl RuleRow {
    fn rule(self) -> Rule {
        Rule {
            id: self.id,
            name: self.name,
            department: self.department_code,
            profile: self.profile_code,
            device: self.device_id,
            key: self.key,
            kind: match self.kind.as_str() {
                "rate" => RuleKind::Rate,
                "no_data" => RuleKind::NoData,
                _ => RuleKind::Threshold,
            },
            operator: self.operator.as_deref().map(|o| match o {
                "below" => Operator::Below,
                "outside" => Operator::Outside,
                _ => Operator::Above,
            }),
            threshold: self.threshold,
            threshold_high: self.threshold_high,
            duration_s: self.duration_s,
            consecutive: self.consecutive,
            missed_intervals: self.missed_intervals,
            severity: Severity::parse(&self.severity),
            auto_clear: yunnao_store::flag(self.auto_clear),
        }
    }
}

/// Per (rule, device) evaluation state.
#[derive(Debug, Default, Clone)]
struct Track {
    violating_since: Option<i64>,
    consecutive: i64,
    last: Option<(i64, f64)>,
}

enum Action {
    Raise {
        rule: Box<Rule>,
        device: String,
        department: String,
        value: Option<f64>,
        committed_ms: Option<i64>,
    },
    Clear {
        alarm_id: String,
    },
}

pub struct AlarmEngine {
    db: Db,
    bus: Bus,
    profiles: ProfileRegistry,
    /// Traffic not yet written to `devices`: a device that just reported is not silent.
    activity: Arc<Activity>,
    rules: Mutex<Vec<Rule>>,
    tracks: Mutex<HashMap<(String, Arc<str>), Track>>,
    /// Active alarm id by (rule, device).
    active: Mutex<HashMap<(String, Arc<str>), String>>,
    /// Held by a reload for its whole read-then-replace, and by every change from before its
    /// transaction until the in-memory copy is updated; otherwise a reload that read the tables
    /// just before a change committed could overwrite the change's effect (a new rule unseen
    /// for a batch, an alarm raised twice).
    sync: tokio::sync::Mutex<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl AlarmEngine {
    /// Starts the engine; committed batches arrive through the returned [`Sink`]: a queue of 16
    /// batches, so alarms never fall arbitrarily far behind the data (structs, no
    /// serialisation on the hot path).
    pub async fn start(
        db: Db,
        bus: Bus,
        profiles: ProfileRegistry,
        activity: Arc<Activity>,
        no_data_check: Duration,
    ) -> Result<(Arc<Self>, Sink), Problem> {
        let engine = Arc::new(Self {
            db,
            bus,
            profiles,
            activity,
            rules: Mutex::new(Vec::new()),
            tracks: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            sync: tokio::sync::Mutex::new(()),
        });
        engine.reload().await?;
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Arc<TelemetryCommitted>>(16);
        let consumer = Arc::downgrade(&engine);
        tokio::spawn(async move {
            while let Some(batch) = receiver.recv().await {
                let Some(engine) = consumer.upgrade() else {
                    break;
                };
                engine.on_batch(&batch).await;
            }
        });
        let ticker = Arc::downgrade(&engine);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(no_data_check);
            loop {
                interval.tick().await;
                let Some(engine) = ticker.upgrade() else {
                    break;
                };
                if let Err(problem) = engine.reload().await {
                    tracing::error!(%problem, "alarm rules reload failed");
                }
                if let Err(problem) = engine.check_no_data().await {
                    tracing::error!(%problem, "no-data check failed");
                }
            }
        });
        Ok((engine, Sink::Queue(sender)))
    }

    /// Rules and active alarms from the database (so every node converges on the same set).
    pub async fn reload(&self) -> Result<(), Problem> {
        let _sync = self.sync.lock().await;
        let rules: Vec<RuleRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {RULE_COLUMNS} FROM alarm_rules ORDER BY id"
        )))
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let active: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, rule_id, device_id FROM alarms WHERE cleared_at_ms IS NULL")
                .fetch_all(self.db.pool())
                .await
                .db()?;
        *lock(&self.rules) = rules.into_iter().map(RuleRow::rule).collect();
        *lock(&self.active) = active
            .into_iter()
            .map(|(id, rule, device)| ((rule, Arc::from(device)), id))
            .collect();
        Ok(())
    }

    pub fn rules(&self) -> Vec<Rule> {
        lock(&self.rules).clone()
    }

    pub async fn create_rule(
        &self,
        new: NewRule,
        department: Option<String>,
    ) -> Result<Rule, Problem> {
        validate(&new, &self.profiles)?;
        let id = yunnao_core::new_id();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO alarm_rules (id, name, department_code, profile_code, device_id, key, kind, operator, threshold, threshold_high, \
             duration_s, consecutive, missed_intervals, severity, auto_clear, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CAST($9 AS DOUBLE PRECISION), CAST($10 AS DOUBLE PRECISION), $11, $12, $13, $14, $15, $16)",
        )
        .bind(&id)
        .bind(&new.name)
        .bind(&department)
        .bind(&new.profile)
        .bind(&new.device)
        .bind(&new.key)
        .bind(kind_str(new.kind))
        .bind(new.operator.map(operator_str))
        .bind(yunnao_store::nullable_real(new.threshold))
        .bind(yunnao_store::nullable_real(new.threshold_high))
        .bind(new.duration_s)
        .bind(new.consecutive)
        .bind(new.missed_intervals)
        .bind(new.severity.as_str())
        .bind(i64::from(new.auto_clear))
        .bind(yunnao_core::time::now_ms())
        .execute(&mut **tx)
        .await
        .db()?;
        tx.commit().await?;
        self.reload().await?;
        self.rule(&id)
            .ok_or_else(|| Problem::internal("rule vanished"))
    }

    pub fn rule(&self, id: &str) -> Option<Rule> {
        lock(&self.rules).iter().find(|r| r.id == id).cloned()
    }

    pub async fn delete_rule(&self, id: &str) -> Result<(), Problem> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM alarm_rules WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?;
        tx.commit().await?;
        self.reload().await
    }

    async fn on_batch(&self, batch: &TelemetryCommitted) {
        let actions = self.evaluate(batch);
        if let Err(problem) = self.apply_all(actions).await {
            tracing::error!(%problem, "alarm changes failed");
        }
    }

    fn evaluate(&self, batch: &TelemetryCommitted) -> Vec<Action> {
        // Evaluation is synchronous, so the locks are held briefly and nothing is copied.
        let rules = lock(&self.rules);
        let active = lock(&self.active);
        let mut tracks = lock(&self.tracks);
        let mut actions = Vec::new();
        for device in &batch.devices {
            let applicable: Vec<&Rule> = rules
                .iter()
                .filter(|r| r.applies_to(&device.device_id, &device.profile, &device.department))
                .collect();
            for rule in applicable {
                let slot = (rule.id.clone(), device.device_id.clone());
                let active_id = active.get(&slot);
                if rule.kind == RuleKind::NoData {
                    // Data arrived: the device is back.
                    if let Some(id) = active_id
                        && rule.auto_clear
                    {
                        actions.push(Action::Clear {
                            alarm_id: id.clone(),
                        });
                    }
                    continue;
                }
                let Some(key) = &rule.key else { continue };
                let mut readings: Vec<(i64, f64)> = device
                    .readings
                    .iter()
                    .filter(|(k, _, _)| k == key)
                    .map(|(_, ts, value)| (*ts, *value))
                    .collect();
                if readings.is_empty() {
                    continue;
                }
                readings.sort_by_key(|(ts, _)| *ts);
                let track = tracks.entry(slot).or_default();
                let mut fire: Option<f64> = None;
                let mut condition_now = false;
                for (ts, value) in readings {
                    let (violated, measure) = match rule.kind {
                        RuleKind::Rate => match track.last {
                            Some((last_ts, last_value)) if ts > last_ts => {
                                let per_minute =
                                    (value - last_value).abs() / ((ts - last_ts) as f64 / 60_000.0);
                                (
                                    per_minute > rule.threshold.unwrap_or(f64::INFINITY),
                                    per_minute,
                                )
                            }
                            _ => (false, 0.0),
                        },
                        _ => (rule.violated(value), value),
                    };
                    if track.last.is_none_or(|(last_ts, _)| ts >= last_ts) {
                        track.last = Some((ts, value));
                    }
                    if violated {
                        track.consecutive += 1;
                        let since = *track.violating_since.get_or_insert(ts);
                        if track.consecutive >= rule.consecutive
                            && ts - since >= rule.duration_s * 1000
                        {
                            fire = Some(measure);
                        }
                    } else {
                        track.consecutive = 0;
                        track.violating_since = None;
                    }
                    condition_now = violated;
                }
                match (active_id, fire) {
                    (None, Some(value)) => actions.push(Action::Raise {
                        rule: Box::new(rule.clone()),
                        device: device.device_id.to_string(),
                        department: device.department.to_string(),
                        value: Some(value),
                        committed_ms: Some(batch.committed_ms),
                    }),
                    (Some(id), _) if !condition_now && rule.auto_clear => {
                        actions.push(Action::Clear {
                            alarm_id: id.clone(),
                        })
                    }
                    _ => {}
                }
            }
        }
        actions
    }

    async fn check_no_data(&self) -> Result<(), Problem> {
        let now = yunnao_core::time::now_ms();
        let rules: Vec<Rule> = lock(&self.rules)
            .iter()
            .filter(|r| r.kind == RuleKind::NoData)
            .cloned()
            .collect();
        for rule in rules {
            let silent: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT id, profile_code, department_code, COALESCE(last_seen_ms, created_at_ms) FROM devices \
                 WHERE ($1 = '' OR id = $1) AND ($2 = '' OR profile_code = $2) AND ($3 = '' OR department_code = $3)",
            )
            .bind(rule.device.clone().unwrap_or_default())
            .bind(rule.profile.clone().unwrap_or_default())
            .bind(rule.department.clone().unwrap_or_default())
            .fetch_all(self.db.pool())
            .await
            .db()?;
            for (device, profile, department, stored_seen) in silent {
                let seen = self
                    .activity
                    .pending(&device)
                    .map_or(stored_seen, |(pending, _)| pending.max(stored_seen));
                let interval_ms = self
                    .profiles
                    .get(&profile)
                    .map_or(300_000, |p| p.reporting_interval_s * 1000);
                let active =
                    lock(&self.active).contains_key(&(rule.id.clone(), Arc::from(device.as_str())));
                if !active && now - seen > rule.missed_intervals * interval_ms {
                    self.apply(Action::Raise {
                        rule: Box::new(rule.clone()),
                        device,
                        department,
                        value: None,
                        committed_ms: None,
                    })
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn apply(&self, action: Action) -> Result<(), Problem> {
        self.apply_all(vec![action]).await
    }

    /// Applies a batch's alarm changes in one transaction, then publishes them.
    async fn apply_all(&self, actions: Vec<Action>) -> Result<(), Problem> {
        if actions.is_empty() {
            return Ok(());
        }
        let now = yunnao_core::time::now_ms();
        let mut raised = Vec::new();
        let mut cleared = Vec::new();
        let mut lost_race = false;
        let sync = self.sync.lock().await;
        let mut tx = self.db.begin_write().await?;
        for action in actions {
            match action {
                Action::Raise {
                    rule,
                    device,
                    department,
                    value,
                    committed_ms,
                } => {
                    let id = yunnao_core::new_id();
                    let inserted = sqlx::query(
                        "INSERT INTO alarms (id, rule_id, device_id, department_code, severity, message, value, raised_at_ms, trigger_committed_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS DOUBLE PRECISION), $8, $9) ON CONFLICT DO NOTHING",
                    )
                    .bind(&id)
                    .bind(&rule.id)
                    .bind(&device)
                    .bind(&department)
                    .bind(rule.severity.as_str())
                    .bind(rule.describe(value.unwrap_or_default()))
                    .bind(yunnao_store::nullable_real(value))
                    .bind(now)
                    .bind(committed_ms)
                    .execute(&mut **tx)
                    .await
                    .db()?;
                    if inserted.rows_affected() == 0 {
                        // Another node raised it first.
                        lost_race = true;
                    } else {
                        raised.push((id, rule.id.clone(), device, committed_ms));
                    }
                }
                Action::Clear { alarm_id } => {
                    let changed = sqlx::query(
                        "UPDATE alarms SET cleared_at_ms = $1, cleared_by = 'auto' WHERE id = $2 AND cleared_at_ms IS NULL",
                    )
                    .bind(now)
                    .bind(&alarm_id)
                    .execute(&mut **tx)
                    .await
                    .db()?;
                    if changed.rows_affected() == 1 {
                        cleared.push(alarm_id);
                    }
                }
            }
        }
        tx.commit().await?;
        {
            let mut active = lock(&self.active);
            for (id, rule, device, _) in &raised {
                active.insert((rule.clone(), Arc::from(device.as_str())), id.clone());
            }
            active.retain(|_, id| !cleared.contains(id));
        }
        drop(sync);
        for (id, _, _, committed_ms) in &raised {
            self.publish(AlarmChange::Raised, id, *committed_ms).await?;
        }
        for id in &cleared {
            self.publish(AlarmChange::Cleared, id, None).await?;
        }
        if lost_race {
            self.reload().await?;
        }
        Ok(())
    }

    async fn publish(
        &self,
        change: AlarmChange,
        alarm_id: &str,
        committed_ms: Option<i64>,
    ) -> Result<(), Problem> {
        let alarm = self
            .alarm(alarm_id)
            .await?
            .ok_or_else(|| Problem::internal("alarm vanished"))?;
        let event = AlarmChanged {
            change,
            alarm,
            committed_ms,
        };
        if let Err(error) = self.bus.publish(&event).await {
            tracing::error!(%error, "alarm event not published");
        }
        Ok(())
    }

    pub async fn alarm(&self, id: &str) -> Result<Option<AlarmView>, Problem> {
        let row: Option<AlarmRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .db()?;
        Ok(row.map(AlarmRow::view))
    }

    pub async fn list(&self, filter: &AlarmFilter<'_>) -> Result<Vec<AlarmView>, Problem> {
        let status = match filter.status {
            AlarmStatus::Open => "cleared_at_ms IS NULL",
            AlarmStatus::Active => "cleared_at_ms IS NULL AND acknowledged_at_ms IS NULL",
            AlarmStatus::Acknowledged => "cleared_at_ms IS NULL AND acknowledged_at_ms IS NOT NULL",
            AlarmStatus::Cleared => "cleared_at_ms IS NOT NULL",
            AlarmStatus::All => "1 = 1",
        };
        let rows: Vec<AlarmRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE ($1 = '' OR department_code = $1) AND ($2 = '' OR device_id = $2) \
             AND ($3 = '' OR severity = $3) AND {status} ORDER BY raised_at_ms DESC, id LIMIT $4"
        )))
        .bind(filter.department.unwrap_or(""))
        .bind(filter.device.unwrap_or(""))
        .bind(filter.severity.map(Severity::as_str).unwrap_or(""))
        .bind(filter.limit)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(rows.into_iter().map(AlarmRow::view).collect())
    }

    pub async fn acknowledge(
        &self,
        id: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<AlarmView, Problem> {
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE alarms SET acknowledged_at_ms = $1, acknowledged_by = $2, acknowledge_comment = $4 \
             WHERE id = $3 AND acknowledged_at_ms IS NULL AND cleared_at_ms IS NULL",
        )
        .bind(yunnao_core::time::now_ms())
        .bind(by)
        .bind(id)
        .bind(comment)
        .execute(&mut **tx)
        .await
        .db()?;
        tx.commit().await?;
        if changed.rows_affected() == 0 {
            return Err(Problem::conflict(
                "the alarm is already acknowledged or cleared",
            ));
        }
        self.publish(AlarmChange::Acknowledged, id, None).await?;
        self.alarm(id)
            .await?
            .ok_or_else(|| Problem::not_found("no such alarm"))
    }

    pub async fn clear(
        &self,
        id: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<AlarmView, Problem> {
        let sync = self.sync.lock().await;
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query("UPDATE alarms SET cleared_at_ms = $1, cleared_by = $2, clear_comment = $4 WHERE id = $3 AND cleared_at_ms IS NULL")
            .bind(yunnao_core::time::now_ms())
            .bind(by)
            .bind(id)
            .bind(comment)
            .execute(&mut **tx)
            .await
            .db()?;
        tx.commit().await?;
        if changed.rows_affected() == 0 {
            return Err(Problem::conflict("the alarm is already cleared"));
        }
        lock(&self.active).retain(|_, active| active != id);
        drop(sync);
        self.publish(AlarmChange::Cleared, id, None).await?;
        self.alarm(id)
            .await?
            .ok_or_else(|| Problem::not_found("no such alarm"))
    }
}
