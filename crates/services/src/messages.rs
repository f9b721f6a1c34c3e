//! The message centre (消息中心): what happened to an application, told to its applicant, and
//! deadlines told to the departments that hold the step. A message is written in the same
//! transaction as the change it tells of, so none is lost or sent for a change that did not
//! happen. Channels beyond the platform (SMS, mail) plug in as [`Notifier`]s, called after the
//! commit with what was stored.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use yunnao_core::Problem;
use yunnao_identity::Principal;
use yunnao_store::{Db, DbResultExt, sqlx};

/// Who a message is for: a user, or everyone on a department's staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    User(String),
    Department(String),
}

impl Recipient {
    fn key(&self) -> String {
        match self {
            Recipient::User(id) => format!("user:{id}"),
            Recipient::Department(code) => format!("dept:{code}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Message {
    pub id: String,
    /// `user:<id>` or `dept:<code>`.
    pub recipient: String,
    pub application_id: Option<String>,
    /// `submitted`, `returned`, `accepted`, `approved`, `rejected`, `licence_issued`,
    /// `step_opened`, `warning`, `overdue`, `grant`, `appeal`.
    pub kind: String,
    pub text_zh: String,
    pub created_at: String,
    pub read: bool,
}

/// A channel a message is also sent through (SMS, mail). The platform's own message centre is
/// the store; a notifier is told after the change committed and must not block.
pub trait Notifier: Send + Sync {
    fn notify(&self, message: &Message);
}

#[derive(Clone, Default)]
pub struct Messages {
    notifiers: Vec<Arc<dyn Notifier>>,
}

/// Messages written in a transaction, to hand to the notifiers once it commits.
#[derive(Default)]
pub struct Outbox(Vec<Message>);

impl Messages {
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Messages {
        self.notifiers.push(notifier);
        self
    }

    /// Writes a message in `tx`.
    pub async fn post(
        tx: &mut yunnao_store::WriteTx,
        outbox: &mut Outbox,
        to: &Recipient,
        application_id: Option<&str>,
        kind: &str,
        text_zh: &str,
    ) -> Result<(), Problem> {
        let now = yunnao_core::time::now_ms();
        let message = Message {
            id: yunnao_core::new_id(),
            recipient: to.key(),
            application_id: application_id.map(str::to_owned),
            kind: kind.to_owned(),
            text_zh: text_zh.to_owned(),
            created_at: yunnao_core::time::rfc3339_ms(now),
            read: false,
        };
        sqlx::query(
            "INSERT INTO svc_messages (id, recipient, application_id, kind, text_zh, created_at_ms, read_at_ms) VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(&message.id)
        .bind(&message.recipient)
        .bind(&message.application_id)
        .bind(&message.kind)
        .bind(&message.text_zh)
        .bind(now)
        .execute(&mut ***tx)
        .await
        .db()?;
        outbox.0.push(message);
        Ok(())
    }

    /// Hands committed messages to the notifiers.
    pub fn deliver(&self, outbox: Outbox) {
        for message in &outbox.0 {
            for notifier in &self.notifiers {
                notifier.notify(message);
            }
        }
    }

    /// The caller's messages and their department's, newest first.
    pub async fn mine(db: &Db, principal: &Principal) -> Result<Vec<Message>, Problem> {
        let staff = !principal.roles.iter().all(|r| {
            matches!(
                r,
                yunnao_identity::Role::Resident | yunnao_identity::Role::Enterprise
            )
        });
        let department = if staff {
            format!("dept:{}", principal.department)
        } else {
            String::new()
        };
        type Row = (
            String,
            String,
            Option<String>,
            String,
            String,
            i64,
            Option<i64>,
        );
        let rows: Vec<Row> =
            sqlx::query_as(
                "SELECT id, recipient, application_id, kind, text_zh, created_at_ms, read_at_ms FROM svc_messages \
                 WHERE recipient = $1 OR recipient = $2 ORDER BY created_at_ms DESC, id DESC LIMIT 200",
            )
            .bind(format!("user:{}", principal.id))
            .bind(department)
            .fetch_all(db.pool())
            .await
            .db()?;
        Ok(rows
            .into_iter()
            .map(
                |(id, recipient, application_id, kind, text_zh, at, read)| Message {
                    id,
                    recipient,
                    application_id,
                    kind,
                    text_zh,
                    created_at: yunnao_core::time::rfc3339_ms(at),
                    read: read.is_some(),
                },
            )
            .collect())
    }

    /// Marks the caller's own message read.
    pub async fn mark_read(db: &Db, principal: &Principal, id: &str) -> Result<(), Problem> {
        let mut tx = db.begin_write().await?;
        let changed =
            sqlx::query("UPDATE svc_messages SET read_at_ms = $1 WHERE id = $2 AND recipient = $3")
                .bind(yunnao_core::time::now_ms())
                .bind(id)
                .bind(format!("user:{}", principal.id))
                .execute(&mut **tx)
                .await
                .db()?;
        if changed.rows_affected() == 0 {
            return Err(Problem::not_found(format!("no message {id} of yours")));
        }
        tx.commit().await?;
        Ok(())
    }
}
