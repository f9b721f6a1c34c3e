//! Deadline watch: a warning when 80% of an incident's time limit has passed, escalation to the
//! handling department's heads and the district when it is overdue. The moments are stored on
//! the incident at dispatch, so the scan is a range read by index and survives restarts; the
//! guarded UPDATE makes each warning and escalation happen once, whichever node scans first.

use crate::incidents::{Row, append_event};
use crate::{Governance, State};
use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_core::time::now_ms;
use yunnao_identity::Role;
use yunnao_store::{DbResultExt, sqlx};

pub(crate) fn spawn(governance: Governance) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(governance.config.scan_every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            interval.tick().await;
            ticks += 1;
            if let Err(problem) = governance.scan_deadlines(now_ms()).await {
                tracing::error!(%problem, "deadline scan failed");
            }
            // Other nodes' assignment changes, about once a minute.
            if ticks.is_multiple_of(60 / governance.config.scan_every.as_secs().clamp(1, 60))
                && let Err(problem) = governance.reload_assignments().await
            {
                tracing::error!(%problem, "reloading grid assignments failed");
            }
        }
    });
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ScanReport {
    pub warned: usize,
    pub escalated: usize,
}

impl Governance {
    /// Warns and escalates what is due at `now`.
    pub async fn scan_deadlines(&self, now: i64) -> Result<ScanReport, Problem> {
        let mut report = ScanReport::default();
        let open = "state IN ('dispatched', 'handling')";
        let warn: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM gov_incidents WHERE warned_at_ms IS NULL AND warn_at_ms <= $1 AND {open} ORDER BY warn_at_ms LIMIT 1000",
            crate::incidents::COLUMNS
        )))
        .bind(now)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        for row in warn {
            if self
                .mark(
                    &row,
                    "warned_at_ms",
                    "deadline_warning",
                    now,
                    serde_json::json!({
                        "due_at": row.due_at_ms.map(crate::calendar::to_cst_rfc3339),
                    }),
                    "时限预警: 已用去 80% 的处置时限",
                )
                .await?
            {
                report.warned += 1;
            }
        }
        let due: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM gov_incidents WHERE overdue_at_ms IS NULL AND due_at_ms <= $1 AND {open} ORDER BY due_at_ms LIMIT 1000",
            crate::incidents::COLUMNS
        )))
        .bind(now)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        for row in due {
            let department = row.department.clone().unwrap_or_default();
            let heads: Vec<String> = self
                .identity
                .users_with_role(&department, Role::DeptAdmin)
                .await?
                .into_iter()
                .map(|u| u.username)
                .collect();
            let district = row.district_code.clone();
            let district_name = district.as_ref().and_then(|code| {
                self.grid
                    .districts
                    .iter()
                    .find(|d| &d.code == code)
                    .map(|d| d.name.clone())
            });
            let detail = serde_json::json!({
                "due_at": row.due_at_ms.map(crate::calendar::to_cst_rfc3339),
                "department": department,
                "department_heads": heads,
                "district_code": district,
                "district_name": district_name,
            });
            if self
                .mark(
                    &row,
                    "overdue_at_ms",
                    "escalated",
                    now,
                    detail,
                    "超时督办: 已上报部门负责人和区(市)",
                )
                .await?
            {
                report.escalated += 1;
            }
        }
        Ok(report)
    }

    async fn mark(
        &self,
        row: &Row,
        column: &str,
        action: &str,
        now: i64,
        detail: serde_json::Value,
        comment: &str,
    ) -> Result<bool, Problem> {
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE gov_incidents SET {column} = $2 WHERE id = $1 AND {column} IS NULL AND state IN ('dispatched', 'handling')"
        )))
        .bind(&row.id)
        .bind(now)
        .execute(&mut **tx)
        .await
        .db()?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        let state: State = row.state();
        append_event(
            &mut tx,
            &row.id,
            now,
            ("system", &self.config.centre),
            action,
            Some(state),
            Some(state),
            comment,
            detail,
        )
        .await?;
        tx.commit().await?;
        self.publish(
            row,
            if action == "escalated" {
                "overdue"
            } else {
                "warning"
            },
        )
        .await;
        Ok(true)
    }
}
