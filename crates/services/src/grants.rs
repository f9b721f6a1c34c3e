//! The grants ledger of policies without application (免申即享). A run by the paying
//! department decides every enterprise in the data against the policy's rules; each eligible
//! one not yet granted is paid into the ledger in credit-code order while the budget lasts —
//! granted outright and sealed with the department's e-seal (`auto`, 免申), or invited to
//! confirm (`confirm`, 即申即享; the amount is reserved at the invitation and sealed at the
//! confirmation). The budget row is locked for the run and a grant's key is (policy,
//! enterprise), so two runs at once grant nothing twice and never spend past the budget.
//! Enterprises see what they received and why, the reasons they did not, and can appeal.

use crate::licences::Licences;
use crate::messages::{Messages, Outbox, Recipient};
use crate::policies::{self, Decision, Enterprise, Policy};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use yunnao_core::Problem;
use yunnao_identity::seals::{self, SealContent};
use yunnao_identity::{Action, Identity, Principal, Resource};
use yunnao_store::{Db, DbResultExt, sqlx};

/// The synthetic enterprises' seed: the same 50,000 on every node.
pub const ENTERPRISE_SEED: u64 = 2022;
pub const ENTERPRISE_COUNT: usize = 50_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RunReport {
    pub run_id: String,
    pub policy_code: String,
    pub enterprises: usize,
    pub eligible: usize,
    /// Granted outright in this run.
    pub granted: usize,
    /// Invited to confirm in this run.
    pub invited: usize,
    /// Granted or invited by an earlier run.
    pub already: usize,
    /// Eligible but past the budget.
    pub unfunded: usize,
    pub spent_yuan: i64,
    pub budget_yuan: i64,
    pub budget_left_yuan: i64,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Grant {
    pub policy_code: String,
    pub policy_name: String,
    pub credit_code: String,
    pub amount_yuan: i64,
    /// `granted`, `invited` (to confirm) or `confirmed`.
    pub state: String,
    /// Each condition in words and whether it held.
    pub because: Vec<(String, bool)>,
    pub created_at: String,
    /// The paying department's seal over the grant, once paid.
    #[schema(value_type = Option<Object>)]
    pub sealed: Option<serde_json::Value>,
}

/// A policy as one enterprise meets it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PolicyStanding {
    pub policy_code: String,
    pub policy_name: String,
    pub department: String,
    pub mode: String,
    pub decision: Decision,
    pub grant: Option<Grant>,
    pub appeal: Option<Appeal>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Appeal {
    pub id: String,
    pub policy_code: String,
    pub credit_code: String,
    pub reason: String,
    /// `open`, `granted` or `upheld` (the refusal stands).
    pub state: String,
    pub answer: String,
    pub created_at: String,
}

#[derive(Clone)]
pub struct Grants {
    db: Db,
    identity: Identity,
    licences: Licences,
    messages: Messages,
    policies: Arc<Vec<Policy>>,
    enterprises: Arc<OnceLock<Vec<Enterprise>>>,
}

type GrantRow = (String, String, i64, String, String, Option<String>, i64);

impl Grants {
    pub fn new(
        db: Db,
        identity: Identity,
        licences: Licences,
        messages: Messages,
    ) -> Result<Grants, String> {
        Ok(Grants {
            db,
            identity,
            licences,
            messages,
            policies: Arc::new(policies::seed()?),
            enterprises: Arc::default(),
        })
    }

    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The enterprise data the rules run over (made on first use).
    pub fn enterprises(&self) -> &[Enterprise] {
        self.enterprises
            .get_or_init(|| policies::synthetic_enterprises(ENTERPRISE_COUNT, ENTERPRISE_SEED))
    }

    pub fn enterprise(&self, credit_code: &str) -> Option<&Enterprise> {
        let all = self.enterprises();
        all.binary_search_by(|e| e.credit_code.as_str().cmp(credit_code))
            .ok()
            .map(|i| &all[i])
    }

    fn policy(&self, code: &str) -> Result<&Policy, Problem> {
        self.policies
            .iter()
            .find(|p| p.code == code)
            .ok_or_else(|| Problem::not_found(format!("no policy {code}")))
    }

    fn today() -> NaiveDate {
        let now = chrono::Utc::now().with_timezone(&yunnao_governance::calendar::cst());
        now.date_naive()
    }

    /// Runs a policy over every enterprise: its paying department's staff, or the platform.
    pub async fn run(&self, principal: &Principal, code: &str) -> Result<RunReport, Problem> {
        let policy = self.policy(code)?.clone();
        principal.require(Resource::Policies, Action::Write, &policy.department)?;
        let started = std::time::Instant::now();
        let today = Self::today();
        let enterprises = self.enterprises();
        let mut decided: Vec<(&Enterprise, Decision)> = Vec::new();
        for e in enterprises {
            let decision = policy.decide(e, today).map_err(Problem::internal)?;
            if decision.eligible {
                decided.push((e, decision));
            }
        }
        let sealer = seals::sealer(&self.identity, &policy.department).await?;
        let users: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
            "SELECT holder_id, user_id FROM svc_holders WHERE holder_kind = 'enterprise'",
        )
        .fetch_all(self.db.pool())
        .await
        .db()?
        .into_iter()
        .collect();
        let run_id = yunnao_core::new_id();
        let now = yunnao_core::time::now_ms();
        let mut report = RunReport {
            run_id: run_id.clone(),
            policy_code: policy.code.clone(),
            enterprises: enterprises.len(),
            eligible: decided.len(),
            granted: 0,
            invited: 0,
            already: 0,
            unfunded: 0,
            spent_yuan: 0,
            budget_yuan: policy.budget_yuan,
            budget_left_yuan: 0,
            elapsed_ms: 0,
        };
        let mut outbox = Outbox::default();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO svc_policy_budgets (policy_code, budget_yuan, spent_yuan) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
        )
        .bind(&policy.code)
        .bind(policy.budget_yuan)
        .execute(&mut **tx)
        .await
        .db()?;
        // The lock: a second run waits here until the first commits, then sees its grants.
        let (budget, mut spent): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT budget_yuan, spent_yuan FROM svc_policy_budgets WHERE policy_code = $1{}",
            self.db.dialect().for_update()
        )))
        .bind(&policy.code)
        .fetch_one(&mut **tx)
        .await
        .db()?;
        let existing: HashSet<String> = sqlx::query_as::<_, (String,)>(
            "SELECT credit_code FROM svc_grants WHERE policy_code = $1",
        )
        .bind(&policy.code)
        .fetch_all(&mut **tx)
        .await
        .db()?
        .into_iter()
        .map(|(c,)| c)
        .collect();
        let auto = policy.mode == "auto";
        for (e, decision) in decided {
            if existing.contains(&e.credit_code) {
                report.already += 1;
                continue;
            }
            if spent + decision.amount_yuan > budget {
                report.unfunded += 1;
                continue;
            }
            let sealed = if auto {
                Some(self.seal_grant(&sealer, &policy, e, &decision, &run_id)?)
            } else {
                None
            };
            let inserted = sqlx::query(
                "INSERT INTO svc_grants (policy_code, credit_code, amount_yuan, state, because_json, sealed, run_id, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(&policy.code)
            .bind(&e.credit_code)
            .bind(decision.amount_yuan)
            .bind(if auto { "granted" } else { "invited" })
            .bind(crate::applications::json(&decision.because))
            .bind(sealed)
            .bind(&run_id)
            .bind(now)
            .execute(&mut **tx)
            .await
            .db()?;
            if inserted.rows_affected() == 0 {
                report.already += 1;
                continue;
            }
            spent += decision.amount_yuan;
            report.spent_yuan += decision.amount_yuan;
            if auto {
                report.granted += 1;
            } else {
                report.invited += 1;
            }
            if let Some(user) = users.get(&e.credit_code) {
                let text = if auto {
                    format!(
                        "“{}”已向贵单位兑现 {} 元，无需申请。",
                        policy.name_zh, decision.amount_yuan
                    )
                } else {
                    format!(
                        "贵单位符合“{}”，可享 {} 元，请确认领取。",
                        policy.name_zh, decision.amount_yuan
                    )
                };
                Messages::post(
                    &mut tx,
                    &mut outbox,
                    &Recipient::User(user.clone()),
                    None,
                    "grant",
                    &text,
                )
                .await?;
            }
        }
        sqlx::query("UPDATE svc_policy_budgets SET spent_yuan = $1 WHERE policy_code = $2")
            .bind(spent)
            .bind(&policy.code)
            .execute(&mut **tx)
            .await
            .db()?;
        tx.commit().await?;
        self.messages.deliver(outbox);
        report.budget_left_yuan = budget - spent;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    fn seal_grant(
        &self,
        sealer: &seals::Sealer,
        policy: &Policy,
        e: &Enterprise,
        decision: &Decision,
        run_id: &str,
    ) -> Result<String, Problem> {
        let document = serde_json::json!({
            "kind": "policy_grant",
            "policy_code": policy.code,
            "policy_name": policy.name_zh,
            "payer": policy.department,
            "credit_code": e.credit_code,
            "enterprise": e.name,
            "amount_yuan": decision.amount_yuan,
            "because": decision.because,
            "run_id": run_id,
        });
        let sealed = sealer.seal(SealContent {
            document: Some(document),
            content_base64: None,
        })?;
        serde_json::to_string(&sealed).map_err(|e| Problem::internal(e.to_string()))
    }

    fn grant_of(&self, row: GrantRow) -> Grant {
        let (policy_code, credit_code, amount_yuan, state, because, sealed, at) = row;
        Grant {
            policy_name: self
                .policy(&policy_code)
                .map(|p| p.name_zh.clone())
                .unwrap_or_default(),
            policy_code,
            credit_code,
            amount_yuan,
            state,
            because: serde_json::from_str(&because).unwrap_or_default(),
            created_at: yunnao_core::time::rfc3339_ms(at),
            sealed: sealed.and_then(|s| serde_json::from_str(&s).ok()),
        }
    }

    async fn enterprise_of(&self, principal: &Principal) -> Result<String, Problem> {
        match self.licences.holder_of(principal).await? {
            Some(h) if h.holder_kind == crate::licences::HolderKind::Enterprise => Ok(h.holder_id),
            _ => Err(Problem::forbidden(
                "this account is not bound to an enterprise's credit code",
            )),
        }
    }

    /// Every policy as the signed-in enterprise meets it: the decision with its reasons, the
    /// grant it received, its appeal.
    pub async fn mine(&self, principal: &Principal) -> Result<Vec<PolicyStanding>, Problem> {
        let credit_code = self.enterprise_of(principal).await?;
        let grants: Vec<GrantRow> = sqlx::query_as(
            "SELECT policy_code, credit_code, amount_yuan, state, because_json, sealed, created_at_ms FROM svc_grants WHERE credit_code = $1",
        )
        .bind(&credit_code)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let appeals = self.appeals_where("credit_code = $1", &credit_code).await?;
        let grants: Vec<Grant> = grants.into_iter().map(|g| self.grant_of(g)).collect();
        let today = Self::today();
        let enterprise = self.enterprise(&credit_code);
        let mut out = Vec::new();
        for p in self.policies.iter() {
            let decision = match enterprise {
                Some(e) => p.decide(e, today).map_err(Problem::internal)?,
                None => Decision {
                    eligible: false,
                    amount_yuan: 0,
                    because: vec![("企业数据中没有贵单位的记录".to_owned(), false)],
                },
            };
            out.push(PolicyStanding {
                policy_code: p.code.clone(),
                policy_name: p.name_zh.clone(),
                department: p.department.clone(),
                mode: p.mode.clone(),
                decision,
                grant: grants.iter().find(|g| g.policy_code == p.code).cloned(),
                appeal: appeals.iter().find(|a| a.policy_code == p.code).cloned(),
            });
        }
        Ok(out)
    }

    /// The enterprise confirms an invitation (即申即享); the grant is sealed then.
    pub async fn confirm(&self, principal: &Principal, code: &str) -> Result<Grant, Problem> {
        let credit_code = self.enterprise_of(principal).await?;
        let policy = self.policy(code)?.clone();
        let row: Option<GrantRow> = sqlx::query_as(
            "SELECT policy_code, credit_code, amount_yuan, state, because_json, sealed, created_at_ms FROM svc_grants WHERE policy_code = $1 AND credit_code = $2",
        )
        .bind(code)
        .bind(&credit_code)
        .fetch_optional(self.db.pool())
        .await
        .db()?;
        let grant = row
            .map(|r| self.grant_of(r))
            .ok_or_else(|| Problem::not_found(format!("no invitation of {code} for you")))?;
        if grant.state != "invited" {
            return Err(Problem::conflict(format!("the grant is {}", grant.state)));
        }
        let enterprise = self
            .enterprise(&credit_code)
            .cloned()
            .ok_or_else(|| Problem::not_found("no enterprise data for you"))?;
        let decision = Decision {
            eligible: true,
            amount_yuan: grant.amount_yuan,
            because: grant.because.clone(),
        };
        let sealer = seals::sealer(&self.identity, &policy.department).await?;
        let sealed = self.seal_grant(&sealer, &policy, &enterprise, &decision, "confirmation")?;
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE svc_grants SET state = 'confirmed', sealed = $1, decided_at_ms = $2 WHERE policy_code = $3 AND credit_code = $4 AND state = 'invited'",
        )
        .bind(&sealed)
        .bind(yunnao_core::time::now_ms())
        .bind(code)
        .bind(&credit_code)
        .execute(&mut **tx)
        .await
        .db()?;
        if changed.rows_affected() == 0 {
            return Err(Problem::conflict("the invitation was confirmed already"));
        }
        tx.commit().await?;
        Ok(Grant {
            state: "confirmed".into(),
            sealed: serde_json::from_str(&sealed).ok(),
            ..grant
        })
    }

    async fn appeals_where(&self, condition: &str, value: &str) -> Result<Vec<Appeal>, Problem> {
        let rows: Vec<(String, String, String, String, String, String, i64)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, policy_code, credit_code, reason, state, answer, created_at_ms FROM svc_appeals WHERE {condition} ORDER BY created_at_ms DESC LIMIT 500"
            )))
            .bind(value)
            .fetch_all(self.db.pool())
            .await
            .db()?;
        Ok(rows
            .into_iter()
            .map(
                |(id, policy_code, credit_code, reason, state, answer, at)| Appeal {
                    id,
                    policy_code,
                    credit_code,
                    reason,
                    state,
                    answer,
                    created_at: yunnao_core::time::rfc3339_ms(at),
                },
            )
            .collect())
    }

    /// The enterprise appeals a refusal: once per policy, when nothing was granted.
    pub async fn appeal(
        &self,
        principal: &Principal,
        code: &str,
        reason: &str,
    ) -> Result<Appeal, Problem> {
        let credit_code = self.enterprise_of(principal).await?;
        let policy = self.policy(code)?.clone();
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 1000 {
            return Err(Problem::validation("reason: 1 to 1000 characters")
                .with_extension("field", "reason"));
        }
        let standing = self.mine(principal).await?;
        let mine = standing.iter().find(|s| s.policy_code == code);
        if mine.is_some_and(|s| s.grant.is_some()) {
            return Err(Problem::conflict("this policy was granted to you already"));
        }
        if mine.is_some_and(|s| s.appeal.is_some()) {
            return Err(Problem::conflict("you appealed this policy already"));
        }
        let appeal = Appeal {
            id: yunnao_core::new_id(),
            policy_code: code.to_owned(),
            credit_code,
            reason: reason.to_owned(),
            state: "open".into(),
            answer: String::new(),
            created_at: yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms()),
        };
        let mut outbox = Outbox::default();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO svc_appeals (id, policy_code, credit_code, reason, state, answer, decided_by, created_at_ms) VALUES ($1, $2, $3, $4, 'open', '', NULL, $5)",
        )
        .bind(&appeal.id)
        .bind(code)
        .bind(&appeal.credit_code)
        .bind(reason)
        .bind(yunnao_core::time::now_ms())
        .execute(&mut **tx)
        .await
        .db()?;
        Messages::post(
            &mut tx,
            &mut outbox,
            &Recipient::Department(policy.department.clone()),
            None,
            "appeal",
            &format!(
                "企业 {} 对“{}”的结果提出申诉。",
                appeal.credit_code, policy.name_zh
            ),
        )
        .await?;
        tx.commit().await?;
        self.messages.deliver(outbox);
        Ok(appeal)
    }

    /// A paying department's open appeals.
    pub async fn open_appeals(&self, principal: &Principal) -> Result<Vec<Appeal>, Problem> {
        principal.require(Resource::Policies, Action::Read, &principal.department)?;
        let codes: Vec<&str> = self
            .policies
            .iter()
            .filter(|p| principal.may(Resource::Policies, Action::Read, &p.department))
            .map(|p| p.code.as_str())
            .collect();
        Ok(self
            .appeals_where("state = $1", "open")
            .await?
            .into_iter()
            .filter(|a| codes.contains(&a.policy_code.as_str()))
            .collect())
    }

    /// The paying department answers an appeal: grants (within the budget) or upholds.
    pub async fn decide_appeal(
        &self,
        principal: &Principal,
        id: &str,
        grant: bool,
        answer: &str,
    ) -> Result<Appeal, Problem> {
        let appeal = self
            .appeals_where("id = $1", id)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Problem::not_found(format!("no appeal {id}")))?;
        let policy = self.policy(&appeal.policy_code)?.clone();
        if !principal.may(Resource::Policies, Action::Read, &policy.department) {
            return Err(Problem::not_found(format!("no appeal {id}")));
        }
        principal.require(Resource::Policies, Action::Write, &policy.department)?;
        let answer = answer.trim();
        if answer.is_empty() || answer.chars().count() > 1000 {
            return Err(Problem::validation("answer: 1 to 1000 characters")
                .with_extension("field", "answer"));
        }
        if appeal.state != "open" {
            return Err(Problem::conflict(format!("the appeal is {}", appeal.state)));
        }
        let enterprise = self.enterprise(&appeal.credit_code).cloned();
        // Only a grant is sealed: the key is read (before the transaction) for that alone.
        let sealer = if grant {
            Some(seals::sealer(&self.identity, &policy.department).await?)
        } else {
            None
        };
        let amount = match (&enterprise, grant) {
            (Some(e), true) => {
                let d = policy.decide(e, Self::today()).map_err(Problem::internal)?;
                if d.amount_yuan > 0 {
                    d.amount_yuan
                } else {
                    // Granted on appeal: the policy's fixed amount, or nothing to compute from.
                    policy.amount["fixed"].as_i64().unwrap_or(0)
                }
            }
            _ => 0,
        };
        if grant && amount <= 0 {
            return Err(Problem::conflict(
                "the policy's amount cannot be computed for this enterprise",
            ));
        }
        let mut outbox = Outbox::default();
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE svc_appeals SET state = $1, answer = $2, decided_by = $3 WHERE id = $4 AND state = 'open'",
        )
        .bind(if grant { "granted" } else { "upheld" })
        .bind(answer)
        .bind(&principal.name)
        .bind(id)
        .execute(&mut **tx)
        .await
        .db()?;
        if changed.rows_affected() == 0 {
            return Err(Problem::conflict("the appeal was answered already"));
        }
        if let (Some(sealer), Some(e)) = (&sealer, &enterprise) {
            sqlx::query(
                "INSERT INTO svc_policy_budgets (policy_code, budget_yuan, spent_yuan) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
            )
            .bind(&policy.code)
            .bind(policy.budget_yuan)
            .execute(&mut **tx)
            .await
            .db()?;
            let spent = sqlx::query(
                "UPDATE svc_policy_budgets SET spent_yuan = spent_yuan + $1 WHERE policy_code = $2 AND spent_yuan + $1 <= budget_yuan",
            )
            .bind(amount)
            .bind(&policy.code)
            .execute(&mut **tx)
            .await
            .db()?;
            if spent.rows_affected() == 0 {
                return Err(Problem::conflict("the policy's budget is spent"));
            }
            let decision = Decision {
                eligible: true,
                amount_yuan: amount,
                because: vec![(format!("申诉复核：{answer}"), true)],
            };
            let sealed = self.seal_grant(sealer, &policy, e, &decision, id)?;
            sqlx::query(
                "INSERT INTO svc_grants (policy_code, credit_code, amount_yuan, state, because_json, sealed, run_id, created_at_ms) \
                 VALUES ($1, $2, $3, 'granted', $4, $5, $6, $7)",
            )
            .bind(&policy.code)
            .bind(&e.credit_code)
            .bind(amount)
            .bind(crate::applications::json(&decision.because))
            .bind(sealed)
            .bind(id)
            .bind(yunnao_core::time::now_ms())
            .execute(&mut **tx)
            .await
            .db()?;
        }
        if let Some(holder) = self.licences.holder_by_id(&appeal.credit_code).await? {
            Messages::post(
                &mut tx,
                &mut outbox,
                &Recipient::User(holder.user_id),
                None,
                "appeal",
                &format!(
                    "您对“{}”的申诉已答复：{}。{answer}",
                    policy.name_zh,
                    if grant {
                        "予以兑现"
                    } else {
                        "维持原结果"
                    }
                ),
            )
            .await?;
        }
        tx.commit().await?;
        self.messages.deliver(outbox);
        Ok(Appeal {
            state: if grant { "granted" } else { "upheld" }.into(),
            answer: answer.to_owned(),
            ..appeal
        })
    }

    /// Paid so far per policy: (code, budget, spent, grants).
    pub async fn ledger(&self) -> Result<Vec<(String, i64, i64, i64)>, Problem> {
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT policy_code, budget_yuan, spent_yuan FROM svc_policy_budgets")
                .fetch_all(self.db.pool())
                .await
                .db()?;
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT policy_code, CAST(COUNT(*) AS BIGINT) FROM svc_grants GROUP BY policy_code",
        )
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(self
            .policies
            .iter()
            .map(|p| {
                let (budget, spent) = rows
                    .iter()
                    .find(|r| r.0 == p.code)
                    .map_or((p.budget_yuan, 0), |r| (r.1, r.2));
                let n = counts.iter().find(|c| c.0 == p.code).map_or(0, |c| c.1);
                (p.code.clone(), budget, spent, n)
            })
            .collect())
    }
}
