//! Applications (办件): a bound holder applies for a service of the catalogue; every material an
//! e-licence covers is taken from the holder's library (the application is the consent, and it
//! records which licence), so nothing already issued is asked for again (无证明). The owning
//! department accepts it or returns it once for completion; then the stages run in order and
//! the steps of a stage are open at once in their departments (一同核查), decided by the stage's
//! mode (`all`, `any`, `k:N`); a rejection that leaves a stage unable to pass ends the
//! application with its reason. Only a step's department acts on it; applicants see their own.

use crate::catalogue::{Catalogue, Service};
use crate::licences::Licences;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use yunnao_core::Problem;
use yunnao_identity::{Action, Principal, Resource};
use yunnao_store::{Db, DbResultExt, sqlx};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApplication {
    pub service_code: String,
    /// The service's form, filled in (an object of at most 50 members).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub form: serde_json::Map<String, serde_json::Value>,
}

/// A material as the application holds it: the licence that covered it, or that it awaits
/// an upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct MaterialUse {
    pub name_zh: String,
    /// The e-licence used, for a material a licence covers.
    pub licence_id: Option<String>,
    /// `licence` (filled from the library) or `upload`.
    pub source: String,
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Application {
    pub id: String,
    pub service_code: String,
    pub service_version: i64,
    pub service_name: String,
    pub holder_id: String,
    pub applicant: String,
    /// `submitted`, `returned`, `approving`, `approved` or `rejected`.
    pub state: String,
    pub reason: String,
    #[schema(value_type = Object)]
    pub form: serde_json::Map<String, serde_json::Value>,
    pub materials: Vec<MaterialUse>,
    pub steps: Vec<StepView>,
    pub created_at: String,
}

#[derive(Clone)]
pub struct Applications {
    pub(crate) db: Db,
    pub(crate) catalogue: Arc<Catalogue>,
    pub(crate) licences: Licences,
}

type AppRow = (
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
);
type StepRow = (i64, i64, String, String, String, Option<String>, String);

const APP_COLUMNS: &str = "id, service_code, service_version, holder_id, applicant, state, reason, form_json, materials_json, created_at_ms";

impl Applications {
    pub fn new(db: Db, catalogue: Arc<Catalogue>, licences: Licences) -> Applications {
        Applications {
            db,
            catalogue,
            licences,
        }
    }

    fn service(&self, code: &str) -> Result<&Service, Problem> {
        self.catalogue
            .service(code)
            .ok_or_else(|| Problem::not_found(format!("no service {code}")))
    }

    /// Files an application for the signed-in holder.
    pub async fn submit(
        &self,
        principal: &Principal,
        new: NewApplication,
    ) -> Result<Application, Problem> {
        let holder = self.licences.holder_of(principal).await?.ok_or_else(|| {
            Problem::forbidden("this account is not bound to an identity number or credit code")
        })?;
        let service = self.service(&new.service_code)?.clone();
        if new.form.len() > 50 || serde_json::to_string(&new.form).map_or(0, |s| s.len()) > 16_384 {
            return Err(Problem::validation("form: at most 50 members and 16 KiB")
                .with_extension("field", "form"));
        }
        // 无证明: each material a licence covers comes from the holder's library.
        let held = self.licences.usable_of(&holder.holder_id).await?;
        let mut materials = Vec::new();
        for m in &service.materials {
            match m.licence() {
                Some(kind) => {
                    let licence = held.iter().find(|(_, t)| t == kind).ok_or_else(|| {
                        Problem::validation(format!(
                            "materials: {} is not in your licence library (a valid {kind} is needed)",
                            m.name_zh
                        ))
                        .with_extension("field", "materials")
                    })?;
                    materials.push(MaterialUse {
                        name_zh: m.name_zh.clone(),
                        licence_id: Some(licence.0.clone()),
                        source: "licence".into(),
                    });
                }
                None => materials.push(MaterialUse {
                    name_zh: m.name_zh.clone(),
                    licence_id: None,
                    source: "upload".into(),
                }),
            }
        }
        let id = yunnao_core::new_id();
        let now = yunnao_core::time::now_ms();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO svc_applications (id, service_code, service_version, holder_id, applicant, state, reason, form_json, materials_json, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, 'submitted', '', $6, $7, $8, $8)",
        )
        .bind(&id)
        .bind(&service.code)
        .bind(service.version)
        .bind(&holder.holder_id)
        .bind(&principal.id)
        .bind(json(&new.form))
        .bind(json(&materials))
        .bind(now)
        .execute(&mut **tx)
        .await
        .db()?;
        for (stage, s) in service.stages.iter().enumerate() {
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
        tx.commit().await?;
        self.read(&id).await
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
            "SELECT stage, step, department, name_zh, state, decided_by, comment FROM svc_application_steps \
             WHERE application_id = $1 ORDER BY stage, step",
        )
        .bind(id)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let (
            id,
            service_code,
            service_version,
            holder_id,
            applicant,
            state,
            reason,
            form,
            materials,
            created,
        ) = row;
        Ok(Application {
            service_name: self
                .catalogue
                .service(&service_code)
                .map(|s| s.name_zh.clone())
                .unwrap_or_default(),
            id,
            service_code,
            service_version,
            holder_id,
            applicant,
            state,
            reason,
            form: serde_json::from_str(&form).unwrap_or_default(),
            materials: serde_json::from_str(&materials).unwrap_or_default(),
            steps: steps
                .into_iter()
                .map(
                    |(stage, step, department, name_zh, state, decided_by, comment)| StepView {
                        stage,
                        step,
                        department,
                        name_zh,
                        state,
                        decided_by,
                        comment,
                    },
                )
                .collect(),
            created_at: yunnao_core::time::rfc3339_ms(created),
        })
    }

    /// An application for its applicant or the staff of a department that acts on it.
    pub async fn get(&self, principal: &Principal, id: &str) -> Result<Application, Problem> {
        let app = self.read(id).await?;
        let staff = app
            .steps
            .iter()
            .map(|s| s.department.as_str())
            .chain(
                self.service(&app.service_code)
                    .map(|s| s.department.as_str()),
            )
            .any(|d| principal.may(Resource::Applications, Action::Read, d));
        if app.applicant == principal.id || staff {
            Ok(app)
        } else {
            Err(Problem::not_found(format!("no application {id} of yours")))
        }
    }

    /// The open steps of the caller's department (the approval workbench), oldest first.
    pub async fn open_steps(&self, principal: &Principal) -> Result<Vec<Application>, Problem> {
        principal.require(Resource::Applications, Action::Read, &principal.department)?;
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT a.id, a.created_at_ms FROM svc_applications a JOIN svc_application_steps s ON s.application_id = a.id \
             WHERE s.department = $1 AND s.state = 'open' ORDER BY a.created_at_ms, a.id LIMIT 200",
        )
        .bind(&principal.department)
        .fetch_all(self.db.pool())
        .await
        .db()?
        .into_iter()
        .map(|(id, _): (String, i64)| (id,))
        .collect();
        let mut out = Vec::new();
        for (id,) in ids {
            out.push(self.read(&id).await?);
        }
        Ok(out)
    }

    /// The signed-in applicant's applications, newest first.
    pub async fn mine(&self, principal: &Principal) -> Result<Vec<Application>, Problem> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM svc_applications WHERE applicant = $1 ORDER BY created_at_ms DESC, id LIMIT 100",
        )
        .bind(&principal.id)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let mut out = Vec::new();
        for (id,) in ids {
            out.push(self.read(&id).await?);
        }
        Ok(out)
    }

    /// The owning department accepts (受理) a submitted application, opening the first stage,
    /// or returns it for completion with the reasons (once).
    pub async fn receive(
        &self,
        principal: &Principal,
        id: &str,
        accept: bool,
        reason: &str,
    ) -> Result<Application, Problem> {
        let app = self.get(principal, id).await?;
        let owner = self.service(&app.service_code)?.department.clone();
        principal.require(Resource::Applications, Action::Write, &owner)?;
        if app.state != "submitted" {
            return Err(Problem::conflict(format!(
                "the application is {}, not submitted",
                app.state
            )));
        }
        let reason = reason.trim();
        if !accept && (reason.is_empty() || reason.chars().count() > 500) {
            return Err(
                Problem::validation("reason: say what is missing (1 to 500 characters)")
                    .with_extension("field", "reason"),
            );
        }
        let mut tx = self.db.begin_write().await?;
        let (state, guard) = if accept {
            ("approving", "submitted")
        } else {
            ("returned", "submitted")
        };
        let changed = sqlx::query(
            "UPDATE svc_applications SET state = $1, reason = $2, updated_at_ms = $3 WHERE id = $4 AND state = $5",
        )
        .bind(state)
        .bind(reason)
        .bind(yunnao_core::time::now_ms())
        .bind(id)
        .bind(guard)
        .execute(&mut **tx)
        .await
        .db()?;
        if changed.rows_affected() == 0 {
            return Err(Problem::conflict("the application moved on"));
        }
        if accept {
            sqlx::query("UPDATE svc_application_steps SET state = 'open' WHERE application_id = $1 AND stage = 0")
                .bind(id)
                .execute(&mut **tx)
                .await
                .db()?;
        }
        tx.commit().await?;
        self.read(id).await
    }

    /// A department decides its open step. The stage passes when enough have approved (the
    /// rest close), the application is rejected when too few can still approve.
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
        else {
            return Err(Problem::not_found(format!("no step {stage}.{step}")));
        };
        principal.require(Resource::Applications, Action::Write, &target.department)?;
        let comment = comment.trim();
        if comment.is_empty() || comment.chars().count() > 500 {
            return Err(Problem::validation("comment: 1 to 500 characters")
                .with_extension("field", "comment"));
        }
        let service = self.service(&app.service_code)?;
        let stage_spec = service
            .stages
            .get(stage as usize)
            .ok_or_else(|| Problem::internal("a step of no stage"))?;
        let needed = stage_spec.needed().unwrap_or(stage_spec.steps.len()) as i64;
        let last_stage = service.stages.len() as i64 - 1;
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE svc_application_steps SET state = $1, decided_by = $2, comment = $3 \
             WHERE application_id = $4 AND stage = $5 AND step = $6 AND state = 'open'",
        )
        .bind(if approve { "approved" } else { "rejected" })
        .bind(&principal.name)
        .bind(comment)
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
        let now = yunnao_core::time::now_ms();
        let close_rest = "UPDATE svc_application_steps SET state = 'closed' WHERE application_id = $1 AND stage = $2 AND state = 'open'";
        if approved >= needed {
            sqlx::query(close_rest)
                .bind(id)
                .bind(stage)
                .execute(&mut **tx)
                .await
                .db()?;
            if stage == last_stage {
                sqlx::query("UPDATE svc_applications SET state = 'approved', updated_at_ms = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&mut **tx)
                    .await
                    .db()?;
            } else {
                sqlx::query("UPDATE svc_application_steps SET state = 'open' WHERE application_id = $1 AND stage = $2")
                    .bind(id)
                    .bind(stage + 1)
                    .execute(&mut **tx)
                    .await
                    .db()?;
            }
        } else if approved + open < needed {
            sqlx::query(close_rest)
                .bind(id)
                .bind(stage)
                .execute(&mut **tx)
                .await
                .db()?;
            sqlx::query("UPDATE svc_applications SET state = 'rejected', reason = $1, updated_at_ms = $2 WHERE id = $3")
                .bind(format!("{}：{comment}", target.name_zh))
                .bind(now)
                .bind(id)
                .execute(&mut **tx)
                .await
                .db()?;
        }
        tx.commit().await?;
        self.read(id).await
    }
}

/// A value the application stores as JSON text.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}
