//! Applications (办件). A bound holder applies for a service or a “一件事” bundle; the form is
//! checked against the service's JSON Schema; every material an e-licence covers is taken from
//! the holder's library with the holder's consent to that licence for this application, so
//! nothing already issued is asked for again (无证明); the rest are uploads. The receiving
//! department accepts (受理), returns once for completion (the clock stops while the applicant
//! completes it) or declines. The stages run in order; a stage's steps open at once in their
//! departments (一同核查) and are decided by its mode (`all`, `any`, `k:N`); a rejection that
//! leaves a stage unable to pass ends the application with its reason. Approval issues each
//! result as a sealed e-licence into the applicant's library (一证准营). Steps and applications
//! have deadlines on the working calendar: a warning at 80%, escalation when overdue.
//!
//! The legal transitions are the table [`TRANSITIONS`]; every change is guarded by the state
//! it leaves, so two departments acting at once cannot both move an application.

use crate::catalogue::{ApplicationPlan, Catalogue};
use crate::licences::{Licences, NewLicence};
use crate::messages::{Messages, Outbox, Recipient};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use yunnao_core::Problem;
use yunnao_governance::calendar::{Clock, WorkCalendar};
use yunnao_identity::{Action, Principal, Resource};
use yunnao_store::{Db, DbResultExt, sqlx};

/// (from, action, to): every change an application may make. Step decisions move it from
/// `approving` to `approved` or `rejected` when they conclude its last stage or fail one.
pub const TRANSITIONS: &[(&str, &str, &str)] = &[
    ("submitted", "accept", "approving"),
    ("submitted", "return", "returned"),
    ("submitted", "decline", "rejected"),
    ("returned", "resubmit", "submitted"),
    ("approving", "approve", "approved"),
    ("approving", "reject", "rejected"),
];

/// Where `action` takes an application in `state`, if it may.
pub fn transition(state: &str, action: &str) -> Option<&'static str> {
    TRANSITIONS
        .iter()
        .find(|(from, a, _)| *from == state && *a == action)
        .map(|t| t.2)
}

pub const CHANNELS: [&str; 4] = ["web", "mobile", "window", "kiosk"];

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApplication {
    /// A service's code or a “一件事” bundle's.
    pub service_code: String,
    /// The service's form, filled in (checked against its JSON Schema).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub form: serde_json::Map<String, serde_json::Value>,
    /// The licences the holder consents to this application using, one for each material a
    /// licence covers.
    #[serde(default)]
    pub consent: Vec<String>,
    /// Uploads for the materials no licence covers: material name → upload id.
    #[serde(default)]
    pub uploads: BTreeMap<String, String>,
    /// `web` (default), `mobile`, `kiosk`, or `window` (an operator files for `on_behalf_of`).
    #[serde(default)]
    pub channel: Option<String>,
    /// At the window: the applicant's identity number or credit code.
    #[serde(default)]
    pub on_behalf_of: Option<String>,
}

/// What a returned application is completed with.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub form: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub consent: Vec<String>,
    #[serde(default)]
    pub uploads: BTreeMap<String, String>,
}

/// A material as the application holds it: the licence that covered it, or the upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct MaterialUse {
    pub name_zh: String,
    /// `licence` (filled from the library) or `upload`.
    pub source: String,
    pub licence_id: Option<String>,
    pub upload_id: Option<String>,
    /// SM3 of the upload, hex.
    pub sm3: Option<String>,
    pub media_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StepView {
    pub stage: i64,
    pub step: i64,
    pub department: String,
    pub name_zh: String,
    /// `waiting` (a later stage), `open`, `approved`, `rejected` or `closed` (its stage was
    /// decided without it).
    pub state: String,
    pub decided_by: Option<String>,
    pub comment: String,
    pub opened_at: Option<String>,
    pub due_at: Option<String>,
    pub decided_at: Option<String>,
    /// 80% of its time has passed.
    pub warned: bool,
    pub overdue: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Application {
    pub id: String,
    pub service_code: String,
    pub service_version: i64,
    pub service_name: String,
    /// The department that receives it.
    pub department: String,
    pub holder_id: String,
    pub holder_name: String,
    /// The applicant's user id; empty for a walk-in at the window without an account.
    pub applicant: String,
    pub channel: String,
    /// The window operator who filed it.
    pub filed_by: Option<String>,
    /// `submitted`, `returned`, `approving`, `approved` or `rejected`.
    pub state: String,
    pub reason: String,
    pub returned_count: i64,
    #[schema(value_type = Object)]
    pub form: serde_json::Map<String, serde_json::Value>,
    pub materials: Vec<MaterialUse>,
    pub steps: Vec<StepView>,
    /// The promised time limit's end; absent while the clock is stopped or concluded.
    pub due_at: Option<String>,
    pub warned: bool,
    pub overdue: bool,
    /// Working minutes the clock ran before it last stopped.
    pub used_minutes: i64,
    /// The e-licences issued as its result.
    pub result_licences: Vec<String>,
    pub created_at: String,
    pub accepted_at: Option<String>,
    pub concluded_at: Option<String>,
    /// The plan it was made on, as stored with it (read once with the row).
    #[serde(skip)]
    pub plan: Option<ApplicationPlan>,
}

impl Application {
    fn plan(&self) -> Result<ApplicationPlan, Problem> {
        self.plan
            .clone()
            .ok_or_else(|| Problem::internal("a stored application's plan does not parse"))
    }
}

/// How the deadline watch found things.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ScanReport {
    pub warned: usize,
    pub overdue: usize,
}

/// The working calendar, shared with the governance hub (which keeps it up to date).
pub type SharedCalendar = Arc<RwLock<WorkCalendar>>;

#[derive(Clone)]
pub struct Applications {
    pub(crate) db: Db,
    pub(crate) catalogue: Arc<RwLock<Arc<Catalogue>>>,
    pub(crate) licences: Licences,
    pub(crate) calendar: SharedCalendar,
    pub(crate) messages: Messages,
}

const MAX_FORM_BYTES: usize = 16_384;
/// The escalation of every overdue step and application goes to the approval bureau too.
const BUREAU: &str = "approval";

const APP_COLUMNS: &str = "id, service_code, service_version, holder_id, applicant, state, reason, form_json, materials_json, created_at_ms, \
     plan_json, holder_name, channel, filed_by, returned_count, clock_started_ms, used_minutes, due_at_ms, warned_at_ms, overdue_at_ms, accepted_at_ms, concluded_at_ms, results_json";

#[derive(sqlx::FromRow)]
struct AppRow {
    id: String,
    service_code: String,
    service_version: i64,
    holder_id: String,
    applicant: String,
    state: String,
    reason: String,
    form_json: String,
    materials_json: String,
    created_at_ms: i64,
    plan_json: String,
    holder_name: String,
    channel: String,
    filed_by: Option<String>,
    returned_count: i64,
    clock_started_ms: Option<i64>,
    used_minutes: i64,
    due_at_ms: Option<i64>,
    warned_at_ms: Option<i64>,
    overdue_at_ms: Option<i64>,
    accepted_at_ms: Option<i64>,
    concluded_at_ms: Option<i64>,
    results_json: String,
}

#[derive(sqlx::FromRow)]
struct StepRow {
    stage: i64,
    step: i64,
    department: String,
    name_zh: String,
    state: String,
    decided_by: Option<String>,
    comment: String,
    opened_at_ms: Option<i64>,
    due_at_ms: Option<i64>,
    warned_at_ms: Option<i64>,
    overdue_at_ms: Option<i64>,
    decided_at_ms: Option<i64>,
}

fn field(name: &str, reason: impl std::fmt::Display) -> Problem {
    Problem::validation(format!("{name}: {reason}")).with_extension("field", name)
}

fn time(ms: Option<i64>) -> Option<String> {
    ms.map(yunnao_core::time::rfc3339_ms)
}

impl Applications {
    pub fn new(
        db: Db,
        catalogue: Arc<RwLock<Arc<Catalogue>>>,
        licences: Licences,
        calendar: SharedCalendar,
        messages: Messages,
    ) -> Applications {
        Applications {
            db,
            catalogue,
            licences,
            calendar,
            messages,
        }
    }

    fn catalogue(&self) -> Arc<Catalogue> {
        self.catalogue
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn calendar(&self) -> WorkCalendar {
        self.calendar
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// The moment `days` working days after `from`, and 80% of the way there.
    fn deadline(&self, from: i64, minutes: i64) -> (i64, i64) {
        let calendar = self.calendar();
        (
            calendar.add(from, minutes, Clock::Working),
            calendar.add(from, minutes * 8 / 10, Clock::Working),
        )
    }

    fn day_minutes(&self) -> i64 {
        self.calendar().working_minutes_per_day().max(1)
    }

    /// The form checked against the plan's schema; the first failure names its field.
    fn check_form(
        plan: &ApplicationPlan,
        form: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Problem> {
        if form.len() > 50 || serde_json::to_string(form).map_or(0, |s| s.len()) > MAX_FORM_BYTES {
            return Err(field("form", "at most 50 members and 16 KiB"));
        }
        let validator = jsonschema::validator_for(&plan.form)
            .map_err(|e| Problem::internal(format!("the service's form schema: {e}")))?;
        let instance = serde_json::Value::Object(form.clone());
        if let Some(error) = validator.iter_errors(&instance).next() {
            let path = error.instance_path().to_string();
            let name = if path.is_empty() {
                "form".to_owned()
            } else {
                format!("form{}", path.replace('/', "."))
            };
            let title = path
                .trim_start_matches('/')
                .split('/')
                .next()
                .and_then(|p| plan.form["properties"][p]["title"].as_str())
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            return Err(field(&name, format!("{error}{title}")));
        }
        Ok(())
    }

    /// The materials of `plan` for `holder`: licences from the library with consent, uploads
    /// by `filer` not taken by another application.
    async fn materials(
        &self,
        plan: &ApplicationPlan,
        holder_id: &str,
        filer: &str,
        consent: &[String],
        uploads: &BTreeMap<String, String>,
        application_id: &str,
    ) -> Result<Vec<MaterialUse>, Problem> {
        if consent.len() > 50 || uploads.len() > 50 {
            return Err(field("consent", "at most 50 licences and 50 uploads"));
        }
        let mut out = Vec::new();
        for m in &plan.materials {
            match m.licence() {
                Some(kind) => {
                    let (chosen, newest) =
                        self.licences.usable_for(holder_id, kind, consent).await?;
                    let Some(licence) = chosen else {
                        let Some(candidate) = newest else {
                            return Err(field(
                                "materials",
                                format!(
                                    "{} is not in the licence library (a valid, genuinely sealed {kind} is needed)",
                                    m.name_zh
                                ),
                            ));
                        };
                        return Err(field(
                            "consent",
                            format!(
                                "consent missing: allow this application to use your {} ({candidate})",
                                m.name_zh
                            ),
                        )
                        .with_extension("licence_id", candidate));
                    };
                    out.push(MaterialUse {
                        name_zh: m.name_zh.clone(),
                        source: "licence".into(),
                        licence_id: Some(licence),
                        upload_id: None,
                        sm3: None,
                        media_type: None,
                    });
                }
                None => {
                    let id = uploads.get(&m.name_zh).ok_or_else(|| {
                        field("uploads", format!("{} is to be uploaded", m.name_zh))
                    })?;
                    let (upload, _) = crate::uploads::find(&self.db, id)
                        .await?
                        .filter(|(u, by)| {
                            by == filer
                                && u.application_id
                                    .as_deref()
                                    .is_none_or(|a| a == application_id)
                        })
                        .ok_or_else(|| {
                            field(
                                "uploads",
                                format!("{}: no upload {id} of yours that is free", m.name_zh),
                            )
                        })?;
                    out.push(MaterialUse {
                        name_zh: m.name_zh.clone(),
                        source: "upload".into(),
                        licence_id: None,
                        upload_id: Some(upload.id),
                        sm3: Some(upload.sm3),
                        media_type: Some(upload.media_type),
                    });
                }
            }
        }
        if let Some(unknown) = uploads.keys().find(|k| {
            !plan
                .materials
                .iter()
                .any(|m| &m.name_zh == *k && m.licence().is_none())
        }) {
            return Err(field(
                "uploads",
                format!("{unknown} is not a material of this service to upload"),
            ));
        }
        Ok(out)
    }

    /// Files an application: for the signed-in holder, or at the window for `on_behalf_of`.
    pub async fn submit(
        &self,
        principal: &Principal,
        new: NewApplication,
    ) -> Result<Application, Problem> {
        let channel = new.channel.as_deref().unwrap_or("web");
        if !CHANNELS.contains(&channel) {
            return Err(field("channel", "web, mobile, window or kiosk"));
        }
        let (holder_id, holder_name, applicant, filed_by) = match (&new.on_behalf_of, channel) {
            (Some(on_behalf), "window") => {
                // A service hall's operator files for whoever stands at the window.
                principal.require(Resource::Applications, Action::Write, &principal.department)?;
                let holder = self
                    .licences
                    .holder_by_id(on_behalf)
                    .await?
                    .ok_or_else(|| {
                        field(
                            "on_behalf_of",
                            "no bound applicant with this identity number or credit code",
                        )
                    })?;
                (
                    holder.holder_id,
                    holder.holder_name,
                    holder.user_id,
                    Some(principal.id.clone()),
                )
            }
            (None, "window") => {
                return Err(field(
                    "on_behalf_of",
                    "the window files for an applicant: give their number",
                ));
            }
            (Some(_), _) => {
                return Err(field(
                    "on_behalf_of",
                    "only the window channel files for someone else",
                ));
            }
            (None, _) => {
                let holder = self.licences.holder_of(principal).await?.ok_or_else(|| {
                    Problem::forbidden(
                        "this account is not bound to an identity number or credit code",
                    )
                })?;
                (
                    holder.holder_id,
                    holder.holder_name,
                    principal.id.clone(),
                    None,
                )
            }
        };
        let catalogue = self.catalogue();
        let plan = catalogue
            .plan(&new.service_code)
            .ok_or_else(|| Problem::not_found(format!("no service {}", new.service_code)))?;
        Self::check_form(&plan, &new.form)?;
        let id = yunnao_core::new_id();
        let materials = self
            .materials(
                &plan,
                &holder_id,
                &principal.id,
                &new.consent,
                &new.uploads,
                &id,
            )
            .await?;
        let now = yunnao_core::time::now_ms();
        let (due, warn) = self.deadline(now, plan.promised_days * self.day_minutes());
        let mut outbox = Outbox::default();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO svc_applications (id, service_code, service_version, holder_id, applicant, state, reason, form_json, materials_json, created_at_ms, updated_at_ms, \
             plan_json, holder_name, channel, filed_by, clock_started_ms, due_at_ms, warn_at_ms) \
             VALUES ($1, $2, $3, $4, $5, 'submitted', '', $6, $7, $8, $8, $9, $10, $11, $12, $8, $13, $14)",
        )
        .bind(&id)
        .bind(&plan.code)
        .bind(plan.version)
        .bind(&holder_id)
        .bind(&applicant)
        .bind(json(&new.form))
        .bind(json(&materials))
        .bind(now)
        .bind(json(&plan))
        .bind(&holder_name)
        .bind(channel)
        .bind(&filed_by)
        .bind(due)
        .bind(warn)
        .execute(&mut **tx)
        .await
        .db()?;
        for (stage, s) in plan.stages.iter().enumerate() {
            for (n, step) in s.steps.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO svc_application_steps (application_id, stage, step, department, name_zh, state, decided_by, comment) \
                     VALUES ($1, $2, $3, $4, $5, 'waiting', NULL, '')",
                )
                .bind(&id)
                .bind(stage as i64)
                .bind(n as i64)
                .bind(&step.department)
                .bind(&step.name_zh)
                .execute(&mut **tx)
                .await
                .db()?;
            }
        }
        Self::take_materials(&mut tx, &id, &plan.department, &materials, "consented").await?;
        let who = if filed_by.is_some() {
            "（窗口代办）"
        } else {
            ""
        };
        if !applicant.is_empty() {
            Messages::post(
                &mut tx,
                &mut outbox,
                &Recipient::User(applicant.clone()),
                Some(&id),
                "submitted",
                &format!("您申请的{}已提交{who}，等待受理。", plan.name_zh),
            )
            .await?;
        }
        Messages::post(
            &mut tx,
            &mut outbox,
            &Recipient::Department(plan.department.clone()),
            Some(&id),
            "submitted",
            &format!("新的申请待受理：{}。", plan.name_zh),
        )
        .await?;
        tx.commit().await?;
        self.messages.deliver(outbox);
        self.read(&id).await
    }

    /// Marks uploads taken and records each licence's use.
    async fn take_materials(
        tx: &mut yunnao_store::WriteTx,
        id: &str,
        department: &str,
        materials: &[MaterialUse],
        action: &str,
    ) -> Result<(), Problem> {
        for m in materials {
            if let Some(upload) = &m.upload_id {
                // Guarded: two submissions at once cannot both take one upload.
                let taken = sqlx::query(
                    "UPDATE svc_uploads SET application_id = $1 WHERE id = $2 AND (application_id IS NULL OR application_id = $1)",
                )
                .bind(id)
                .bind(upload)
                .execute(&mut ***tx)
                .await
                .db()?;
                if taken.rows_affected() == 0 {
                    return Err(field(
                        "uploads",
                        format!("{}: the upload was taken by another application", m.name_zh),
                    ));
                }
            }
            if let Some(licence) = &m.licence_id {
                crate::licences::record_use(tx, licence, id, department, action).await?;
            }
        }
        Ok(())
    }

    async fn read(&self, id: &str) -> Result<Application, Problem> {
        let row: AppRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {APP_COLUMNS} FROM svc_applications WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .db()?
        .ok_or_else(|| Problem::not_found(format!("no application {id}")))?;
        let steps: Vec<StepRow> = sqlx::query_as(
            "SELECT stage, step, department, name_zh, state, decided_by, comment, opened_at_ms, due_at_ms, warned_at_ms, overdue_at_ms, decided_at_ms \
             FROM svc_application_steps WHERE application_id = $1 ORDER BY stage, step",
        )
        .bind(id)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let plan: Option<ApplicationPlan> = serde_json::from_str(&row.plan_json).ok();
        Ok(Application {
            service_name: plan.as_ref().map(|p| p.name_zh.clone()).unwrap_or_default(),
            department: plan
                .as_ref()
                .map(|p| p.department.clone())
                .unwrap_or_default(),
            id: row.id,
            service_code: row.service_code,
            service_version: row.service_version,
            holder_id: row.holder_id,
            holder_name: row.holder_name,
            applicant: row.applicant,
            channel: row.channel,
            filed_by: row.filed_by,
            state: row.state,
            reason: row.reason,
            returned_count: row.returned_count,
            form: serde_json::from_str(&row.form_json).unwrap_or_default(),
            materials: serde_json::from_str(&row.materials_json).unwrap_or_default(),
            steps: steps
                .into_iter()
                .map(|s| StepView {
                    stage: s.stage,
                    step: s.step,
                    department: s.department,
                    name_zh: s.name_zh,
                    state: s.state,
                    decided_by: s.decided_by,
                    comment: s.comment,
                    opened_at: time(s.opened_at_ms),
                    due_at: time(s.due_at_ms),
                    decided_at: time(s.decided_at_ms),
                    warned: s.warned_at_ms.is_some(),
                    overdue: s.overdue_at_ms.is_some(),
                })
                .collect(),
            due_at: if row.clock_started_ms.is_some() {
                time(row.due_at_ms)
            } else {
                None
            },
            warned: row.warned_at_ms.is_some(),
            overdue: row.overdue_at_ms.is_some(),
            used_minutes: row.used_minutes,
            result_licences: serde_json::from_str(&row.results_json).unwrap_or_default(),
            created_at: yunnao_core::time::rfc3339_ms(row.created_at_ms),
            accepted_at: time(row.accepted_at_ms),
            concluded_at: time(row.concluded_at_ms),
            plan,
        })
    }

    /// Whether the caller is staff of a department that acts on the application, or of the
    /// approval bureau, which supervises every one (overdue ones are escalated to it).
    fn staff_of(principal: &Principal, app: &Application) -> bool {
        app.steps
            .iter()
            .map(|s| s.department.as_str())
            .chain([app.department.as_str(), BUREAU])
            .any(|d| principal.may(Resource::Applications, Action::Read, d))
    }

    /// An application for its applicant, its window operator, or the staff of a department
    /// that acts on it; a department reading the licences it holds is recorded as their use.
    pub async fn get(&self, principal: &Principal, id: &str) -> Result<Application, Problem> {
        let app = self.read(id).await?;
        let own = app.applicant == principal.id || app.filed_by.as_deref() == Some(&principal.id);
        if own {
            return Ok(app);
        }
        if Self::staff_of(principal, &app) {
            if app.materials.iter().any(|m| m.licence_id.is_some()) {
                let mut tx = self.db.begin_write().await?;
                Self::take_materials_read(&mut tx, &app, &principal.department).await?;
                tx.commit().await?;
            }
            return Ok(app);
        }
        Err(Problem::not_found(format!("no application {id} of yours")))
    }

    async fn take_materials_read(
        tx: &mut yunnao_store::WriteTx,
        app: &Application,
        department: &str,
    ) -> Result<(), Problem> {
        for licence in app.materials.iter().filter_map(|m| m.licence_id.as_ref()) {
            crate::licences::record_use(tx, licence, &app.id, department, "read").await?;
        }
        Ok(())
    }

    async fn list(&self, sql: &str, bind: &str) -> Result<Vec<Application>, Problem> {
        let ids: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(bind)
            .fetch_all(self.db.pool())
            .await
            .db()?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            out.push(self.read(&id).await?);
        }
        Ok(out)
    }

    /// The caller's department's work (the approval workbench): its open steps, and the
    /// applications it is to receive, oldest first.
    pub async fn open_steps(&self, principal: &Principal) -> Result<Vec<Application>, Problem> {
        principal.require(Resource::Applications, Action::Read, &principal.department)?;
        let mut steps = self
            .list(
                "SELECT a.id FROM svc_applications a WHERE EXISTS (SELECT 1 FROM svc_application_steps s \
                 WHERE s.application_id = a.id AND s.department = $1 AND s.state = 'open') ORDER BY a.created_at_ms, a.id LIMIT 200",
                &principal.department,
            )
            .await?;
        // The receiving department is in the stored plan: only the plans are read to find the
        // department's own, and only those applications are read whole.
        let waiting: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, plan_json FROM svc_applications WHERE state = 'submitted' ORDER BY created_at_ms, id LIMIT 5000",
        )
        .fetch_all(self.db.pool())
        .await
        .db()?;
        for (id, plan) in waiting {
            let ours = serde_json::from_str::<ApplicationPlan>(&plan)
                .is_ok_and(|p| p.department == principal.department);
            if ours {
                steps.push(self.read(&id).await?);
                if steps.len() >= 400 {
                    break;
                }
            }
        }
        Ok(steps)
    }

    /// The signed-in holder's applications (their own and those filed for them), newest first.
    pub async fn mine(&self, principal: &Principal) -> Result<Vec<Application>, Problem> {
        let Some(holder) = self.licences.holder_of(principal).await? else {
            return Ok(Vec::new());
        };
        self.list(
            "SELECT id FROM svc_applications WHERE holder_id = $1 ORDER BY created_at_ms DESC, id LIMIT 100",
            &holder.holder_id,
        )
        .await
    }

    /// The receiving department accepts (受理) a submitted application, opening the first
    /// stage; returns it once for completion (the clock stops); or declines it.
    pub async fn receive(
        &self,
        principal: &Principal,
        id: &str,
        action: &str,
        reason: &str,
    ) -> Result<Application, Problem> {
        let app = self.get(principal, id).await?;
        principal.require(Resource::Applications, Action::Write, &app.department)?;
        if !matches!(action, "accept" | "return" | "decline") {
            return Err(field("action", "accept, return or decline"));
        }
        let Some(to) = transition(&app.state, action) else {
            return Err(Problem::conflict(format!(
                "the application is {}: it cannot be {action}ed",
                app.state
            )));
        };
        let reason = reason.trim();
        if action != "accept" && (reason.is_empty() || reason.chars().count() > 500) {
            return Err(field(
                "reason",
                "say what is missing or why (1 to 500 characters)",
            ));
        }
        if action == "return" && app.returned_count >= 1 {
            return Err(Problem::conflict(
                "an application is returned for completion once: accept or decline it now",
            ));
        }
        if action == "accept" {
            // A licence suspended, revoked, expired or altered since submission is no material.
            for m in &app.materials {
                let Some(licence) = &m.licence_id else {
                    continue;
                };
                if !self.licences.is_usable(&app.holder_id, licence).await? {
                    return Err(Problem::conflict(format!(
                        "{} ({licence}) no longer verifies or is no longer valid: return the application",
                        m.name_zh
                    ))
                    .with_extension("licence_id", licence.clone()));
                }
            }
        }
        let plan = app.plan()?;
        let now = yunnao_core::time::now_ms();
        let mut outbox = Outbox::default();
        let mut tx = self.db.begin_write().await?;
        let changed = match action {
            "return" => {
                let (started, used): (Option<i64>, i64) = sqlx::query_as(
                    "SELECT clock_started_ms, used_minutes FROM svc_applications WHERE id = $1",
                )
                .bind(id)
                .fetch_one(&mut **tx)
                .await
                .db()?;
                let ran = started.map_or(0, |s| self.calendar().working_minutes_between(s, now));
                sqlx::query(
                    "UPDATE svc_applications SET state = $1, reason = $2, updated_at_ms = $3, returned_count = returned_count + 1, \
                     clock_started_ms = NULL, used_minutes = $4 WHERE id = $5 AND state = 'submitted'",
                )
                .bind(to)
                .bind(reason)
                .bind(now)
                .bind(used + ran)
                .bind(id)
                .execute(&mut **tx)
                .await
                .db()?
            }
            "decline" => sqlx::query(
                "UPDATE svc_applications SET state = $1, reason = $2, updated_at_ms = $3, concluded_at_ms = $3, clock_started_ms = NULL \
                 WHERE id = $4 AND state = 'submitted'",
            )
            .bind(to)
            .bind(format!("不予受理：{reason}"))
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?,
            _ => sqlx::query(
                "UPDATE svc_applications SET state = $1, reason = '', updated_at_ms = $2, accepted_at_ms = $2 WHERE id = $3 AND state = 'submitted'",
            )
            .bind(to)
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?,
        };
        if changed.rows_affected() == 0 {
            return Err(Problem::conflict("the application moved on"));
        }
        let text = match action {
            "accept" => {
                self.open_stage(&mut tx, &mut outbox, &app, &plan, 0, now)
                    .await?;
                format!("您申请的{}已受理，正在审批。", app.service_name)
            }
            "return" => format!(
                "您申请的{}需补正材料：{reason}。补正期间办理时限暂停计算。",
                app.service_name
            ),
            _ => format!("您申请的{}不予受理：{reason}", app.service_name),
        };
        if !app.applicant.is_empty() {
            let kind = match action {
                "accept" => "accepted",
                "return" => "returned",
                _ => "rejected",
            };
            Messages::post(
                &mut tx,
                &mut outbox,
                &Recipient::User(app.applicant.clone()),
                Some(id),
                kind,
                &text,
            )
            .await?;
        }
        tx.commit().await?;
        self.messages.deliver(outbox);
        self.read(id).await
    }

    /// Opens a stage's steps with their time limits, telling each department.
    async fn open_stage(
        &self,
        tx: &mut yunnao_store::WriteTx,
        outbox: &mut Outbox,
        app: &Application,
        plan: &ApplicationPlan,
        stage: i64,
        now: i64,
    ) -> Result<(), Problem> {
        let Some(spec) = plan.stages.get(stage as usize) else {
            return Ok(());
        };
        for (n, step) in spec.steps.iter().enumerate() {
            let (due, warn) = self.deadline(now, step.working_days * self.day_minutes());
            sqlx::query(
                "UPDATE svc_application_steps SET state = 'open', opened_at_ms = $1, due_at_ms = $2, warn_at_ms = $3 \
                 WHERE application_id = $4 AND stage = $5 AND step = $6 AND state = 'waiting'",
            )
            .bind(now)
            .bind(due)
            .bind(warn)
            .bind(&app.id)
            .bind(stage)
            .bind(n as i64)
            .execute(&mut ***tx)
            .await
            .db()?;
            Messages::post(
                tx,
                outbox,
                &Recipient::Department(step.department.clone()),
                Some(&app.id),
                "step_opened",
                &format!(
                    "{}：{}环节待审批，时限 {} 个工作日。",
                    app.service_name, step.name_zh, step.working_days
                ),
            )
            .await?;
            Self::take_materials_read(tx, app, &step.department).await?;
        }
        Ok(())
    }

    /// The applicant completes a returned application; its clock resumes with the time left.
    pub async fn resubmit(
        &self,
        principal: &Principal,
        id: &str,
        completion: Completion,
    ) -> Result<Application, Problem> {
        let app = self.read(id).await?;
        let own = app.applicant == principal.id || app.filed_by.as_deref() == Some(&principal.id);
        if !own {
            return Err(Problem::not_found(format!("no application {id} of yours")));
        }
        if transition(&app.state, "resubmit").is_none() {
            return Err(Problem::conflict(format!(
                "the application is {}, not returned for completion",
                app.state
            )));
        }
        let plan = app.plan()?;
        let form = completion.form.unwrap_or_else(|| app.form.clone());
        Self::check_form(&plan, &form)?;
        // Uploads and consents already given stand unless replaced.
        let mut uploads: BTreeMap<String, String> = app
            .materials
            .iter()
            .filter_map(|m| m.upload_id.clone().map(|u| (m.name_zh.clone(), u)))
            .collect();
        uploads.extend(completion.uploads);
        let mut consent: Vec<String> = app
            .materials
            .iter()
            .filter_map(|m| m.licence_id.clone())
            .collect();
        consent.extend(completion.consent);
        let filer = app.filed_by.clone().unwrap_or_else(|| principal.id.clone());
        let materials = self
            .materials(&plan, &app.holder_id, &filer, &consent, &uploads, id)
            .await?;
        let now = yunnao_core::time::now_ms();
        let total = plan.promised_days * self.day_minutes();
        let (due, warn) = self.deadline(now, (total - app.used_minutes).max(1));
        let mut outbox = Outbox::default();
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE svc_applications SET state = 'submitted', reason = '', form_json = $1, materials_json = $2, updated_at_ms = $3, \
             clock_started_ms = $3, due_at_ms = $4, warn_at_ms = $5 WHERE id = $6 AND state = 'returned'",
        )
        .bind(json(&form))
        .bind(json(&materials))
        .bind(now)
        .bind(due)
        .bind(warn)
        .bind(id)
        .execute(&mut **tx)
        .await
        .db()?;
        if changed.rows_affected() == 0 {
            return Err(Problem::conflict("the application moved on"));
        }
        Self::take_materials(&mut tx, id, &plan.department, &materials, "consented").await?;
        Messages::post(
            &mut tx,
            &mut outbox,
            &Recipient::Department(plan.department.clone()),
            Some(id),
            "submitted",
            &format!("{}已补正，待受理。", plan.name_zh),
        )
        .await?;
        tx.commit().await?;
        self.messages.deliver(outbox);
        self.read(id).await
    }

    /// A department decides its open step. The stage passes when enough have approved (the
    /// rest close) and the next opens; the last stage's passing approves the application and
    /// issues its results; too few approvals left rejects it with the step's reason.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide(
        &self,
        principal: &Principal,
        id: &str,
        stage: i64,
        step: i64,
        approve: bool,
        comment: &str,
    ) -> Result<Application, Problem> {
        let app = self.get(principal, id).await?;
        let Some(target) = app
            .steps
            .iter()
            .find(|s| s.stage == stage && s.step == step)
            .cloned()
        else {
            return Err(Problem::not_found(format!("no step {stage}.{step}")));
        };
        principal.require(Resource::Applications, Action::Write, &target.department)?;
        let comment = comment.trim();
        if comment.is_empty() || comment.chars().count() > 500 {
            return Err(field("comment", "1 to 500 characters"));
        }
        if target.state != "open" {
            return Err(Problem::conflict(format!(
                "the step is {}, not open: decided already, or its stage is not reached",
                target.state
            )));
        }
        let plan = app.plan()?;
        let stage_spec = plan
            .stages
            .get(stage as usize)
            .ok_or_else(|| Problem::internal("a step of no stage"))?;
        let needed = stage_spec.needed().unwrap_or(stage_spec.steps.len()) as i64;
        let last_stage = plan.stages.len() as i64 - 1;
        // Results are sealed before the transaction: sealing reads the department's key.
        let mut results = Vec::new();
        let will_conclude = approve && stage == last_stage && {
            let approved = app
                .steps
                .iter()
                .filter(|s| s.stage == stage && s.state == "approved")
                .count() as i64;
            approved + 1 >= needed
        };
        if will_conclude {
            for (issuer, result) in &plan.results {
                let mut data = serde_json::Map::new();
                data.insert("name_zh".into(), result.name_zh.clone().into());
                data.insert("application_id".into(), id.into());
                data.insert("service_code".into(), app.service_code.clone().into());
                for (k, v) in app
                    .form
                    .iter()
                    .filter(|(k, _)| k.as_str() != "phone" && k.as_str() != "bank_account")
                {
                    data.insert(k.clone(), v.clone());
                }
                results.push(
                    self.licences
                        .prepare(
                            issuer,
                            NewLicence {
                                licence_type: result.licence_type.clone(),
                                holder_id: app.holder_id.clone(),
                                holder_name: app.holder_name.clone(),
                                valid_until: None,
                                data,
                            },
                        )
                        .await?,
                );
            }
        }
        let now = yunnao_core::time::now_ms();
        let mut outbox = Outbox::default();
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE svc_application_steps SET state = $1, decided_by = $2, comment = $3, decided_at_ms = $4 \
             WHERE application_id = $5 AND stage = $6 AND step = $7 AND state = 'open'",
        )
        .bind(if approve { "approved" } else { "rejected" })
        .bind(&principal.name)
        .bind(comment)
        .bind(now)
        .bind(id)
        .bind(stage)
        .bind(step)
        .execute(&mut **tx)
        .await
        .db()?;
        if changed.rows_affected() == 0 {
            return Err(Problem::conflict(
                "the step is not open: decided already, or its stage is not reached",
            ));
        }
        let states: Vec<(String,)> = sqlx::query_as(
            "SELECT state FROM svc_application_steps WHERE application_id = $1 AND stage = $2",
        )
        .bind(id)
        .bind(stage)
        .fetch_all(&mut **tx)
        .await
        .db()?;
        let approved = states.iter().filter(|s| s.0 == "approved").count() as i64;
        let open = states.iter().filter(|s| s.0 == "open").count() as i64;
        let close_rest = "UPDATE svc_application_steps SET state = 'closed' WHERE application_id = $1 AND stage = $2 AND state = 'open'";
        let mut concluded = None;
        if approved >= needed {
            sqlx::query(close_rest)
                .bind(id)
                .bind(stage)
                .execute(&mut **tx)
                .await
                .db()?;
            if stage == last_stage {
                if results.len() != plan.results.len() {
                    // Another department's approval concluded the stage first.
                    return Err(Problem::conflict("the application moved on; try again"));
                }
                let mut ids = Vec::new();
                for prepared in &results {
                    Licences::insert(&mut tx, prepared).await?;
                    ids.push(prepared.document.id.clone());
                }
                let changed = sqlx::query(
                    "UPDATE svc_applications SET state = 'approved', updated_at_ms = $1, concluded_at_ms = $1, results_json = $2 \
                     WHERE id = $3 AND state = 'approving'",
                )
                .bind(now)
                .bind(json(&ids))
                .bind(id)
                .execute(&mut **tx)
                .await
                .db()?;
                if changed.rows_affected() == 0 {
                    return Err(Problem::conflict("the application moved on"));
                }
                concluded = Some(("approved", ids));
            } else {
                self.open_stage(&mut tx, &mut outbox, &app, &plan, stage + 1, now)
                    .await?;
            }
        } else if approved + open < needed {
            sqlx::query(close_rest)
                .bind(id)
                .bind(stage)
                .execute(&mut **tx)
                .await
                .db()?;
            sqlx::query(
                "UPDATE svc_applications SET state = 'rejected', reason = $1, updated_at_ms = $2, concluded_at_ms = $2 WHERE id = $3",
            )
            .bind(format!("{}：{comment}", target.name_zh))
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?;
            concluded = Some(("rejected", Vec::new()));
        }
        if let Some((state, ids)) = &concluded
            && !app.applicant.is_empty()
        {
            let to = Recipient::User(app.applicant.clone());
            if *state == "approved" {
                Messages::post(
                    &mut tx,
                    &mut outbox,
                    &to,
                    Some(id),
                    "approved",
                    &format!("您申请的{}已办结，准予许可。", app.service_name),
                )
                .await?;
                for (prepared, licence_id) in results.iter().zip(ids) {
                    let name = prepared.document.data["name_zh"].as_str().unwrap_or("证照");
                    Messages::post(
                        &mut tx,
                        &mut outbox,
                        &to,
                        Some(id),
                        "licence_issued",
                        &format!("{name}（{licence_id}）已发放到您的电子证照库。"),
                    )
                    .await?;
                }
            } else {
                Messages::post(
                    &mut tx,
                    &mut outbox,
                    &to,
                    Some(id),
                    "rejected",
                    &format!(
                        "您申请的{}未获批准。{}：{comment}",
                        app.service_name, target.name_zh
                    ),
                )
                .await?;
            }
        }
        tx.commit().await?;
        self.messages.deliver(outbox);
        self.read(id).await
    }

    /// Warns the departments of steps at 80% of their time and escalates what is overdue (to
    /// the department and the approval bureau); each happens once, by a guarded update.
    pub async fn scan_deadlines(&self, now: i64) -> Result<ScanReport, Problem> {
        let mut report = ScanReport::default();
        type Due = (String, i64, i64, String, String);
        for (column, at, kind) in [
            ("warned_at_ms", "warn_at_ms", "warning"),
            ("overdue_at_ms", "due_at_ms", "overdue"),
        ] {
            let due: Vec<Due> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT application_id, stage, step, department, name_zh FROM svc_application_steps \
                 WHERE state = 'open' AND {column} IS NULL AND {at} <= $1 ORDER BY {at} LIMIT 1000"
            )))
            .bind(now)
            .fetch_all(self.db.pool())
            .await
            .db()?;
            for (app_id, stage, step, department, name) in due {
                let mut tx = self.db.begin_write().await?;
                let changed = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE svc_application_steps SET {column} = $1 WHERE application_id = $2 AND stage = $3 AND step = $4 AND {column} IS NULL AND state = 'open'"
                )))
                .bind(now)
                .bind(&app_id)
                .bind(stage)
                .bind(step)
                .execute(&mut **tx)
                .await
                .db()?;
                if changed.rows_affected() == 0 {
                    continue;
                }
                let text = if kind == "warning" {
                    format!("“{name}”环节已用去 80% 时限，请尽快审批。")
                } else {
                    format!("“{name}”环节已超期，已上报市行政审批局督办。")
                };
                self.tell_due(tx, kind, &department, &app_id, &text, &mut report)
                    .await?;
            }
            // The application's promised limit, while its clock runs.
            let due: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, plan_json FROM svc_applications WHERE state IN ('submitted', 'approving') AND clock_started_ms IS NOT NULL \
                 AND {column} IS NULL AND {at} <= $1 ORDER BY {at} LIMIT 1000"
            )))
            .bind(now)
            .fetch_all(self.db.pool())
            .await
            .db()?;
            for (app_id, plan) in due {
                let plan: Option<ApplicationPlan> = serde_json::from_str(&plan).ok();
                let (name, department) =
                    plan.map(|p| (p.name_zh, p.department)).unwrap_or_default();
                let mut tx = self.db.begin_write().await?;
                let changed = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE svc_applications SET {column} = $1 WHERE id = $2 AND {column} IS NULL AND clock_started_ms IS NOT NULL"
                )))
                .bind(now)
                .bind(&app_id)
                .execute(&mut **tx)
                .await
                .db()?;
                if changed.rows_affected() == 0 {
                    continue;
                }
                let text = if kind == "warning" {
                    format!("{name}已用去承诺时限的 80%。")
                } else {
                    format!("{name}已超过承诺办结时限。")
                };
                self.tell_due(tx, kind, &department, &app_id, &text, &mut report)
                    .await?;
            }
        }
        Ok(report)
    }

    /// Tells the department (and, when overdue, the approval bureau) in the transaction that
    /// flagged it, and counts it.
    async fn tell_due(
        &self,
        mut tx: yunnao_store::WriteTx,
        kind: &str,
        department: &str,
        app_id: &str,
        text: &str,
        report: &mut ScanReport,
    ) -> Result<(), Problem> {
        let mut outbox = Outbox::default();
        let mut to = vec![Recipient::Department(department.to_owned())];
        if kind == "overdue" && department != BUREAU {
            to.push(Recipient::Department(BUREAU.into()));
        }
        for r in &to {
            Messages::post(&mut tx, &mut outbox, r, Some(app_id), kind, text).await?;
        }
        tx.commit().await?;
        self.messages.deliver(outbox);
        if kind == "warning" {
            report.warned += 1;
        } else {
            report.overdue += 1;
        }
        Ok(())
    }
}

/// A value the application stores as JSON text.
pub(crate) fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (state, action) pair: legal ones land where the table says, the rest are refused.
    #[test]
    fn the_workflow_allows_only_its_transitions() {
        let states = ["submitted", "returned", "approving", "approved", "rejected"];
        let actions = [
            "accept", "return", "decline", "resubmit", "approve", "reject",
        ];
        let legal = [
            ("submitted", "accept", "approving"),
            ("submitted", "return", "returned"),
            ("submitted", "decline", "rejected"),
            ("returned", "resubmit", "submitted"),
            ("approving", "approve", "approved"),
            ("approving", "reject", "rejected"),
        ];
        for state in states {
            for action in actions {
                let expected = legal
                    .iter()
                    .find(|(s, a, _)| *s == state && *a == action)
                    .map(|t| t.2);
                assert_eq!(transition(state, action), expected, "{state} --{action}-->");
            }
        }
        // Concluded applications are final.
        for action in actions {
            assert_eq!(transition("approved", action), None);
            assert_eq!(transition("rejected", action), None);
        }
    }
}
