//! Identity and trust for the platform: departments (seeded from the plan's responsible units),
//! users with argon2id passwords and roles, SM2-signed revocable bearer tokens, API clients with
//! scoped keys, the SM3-chained audit log with SM2-signed checkpoints, and department e-seals.
//!
//! Owns the tables in [`MIGRATIONS`]; other crates use [`Principal`] (who is calling) and
//! [`Identity::audit`] (to record shared reads), never these tables.

pub mod access;
pub mod api;
pub mod audit;
mod auth;
mod clients;
mod departments;
mod keys;
mod migrations;
mod roles;
pub mod seals;
mod tokens;
mod users;

pub use access::{Action, Reach, Resource};
pub use audit::{AuditEntry, AuditNote, AuditRecord, VerifyReport};
pub use auth::{Principal, PrincipalKind, authenticate_and_audit};
pub use clients::{ApiClientView, CreatedApiClient, NewApiClient};
pub use departments::Department;
pub use keys::PlatformKeys;
pub use migrations::MIGRATIONS;
pub use roles::Role;
pub use tokens::SignedIn;
pub use users::{NewUser, UserPatch, UserView};

use std::sync::Arc;
use yunnao_bus::Bus;
use yunnao_store::Db;

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub token_ttl_secs: i64,
    /// Sign an audit checkpoint every this many records.
    pub checkpoint_every: i64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            token_ttl_secs: 8 * 3600,
            checkpoint_every: 64,
        }
    }
}

/// The identity service: passed to handlers as state, so cheap to clone (one reference count;
/// axum clones the state for every request).
#[derive(Clone, Debug)]
pub struct Identity(Arc<IdentityParts>);

impl std::ops::Deref for Identity {
    type Target = IdentityParts;
    fn deref(&self) -> &IdentityParts {
        &self.0
    }
}

#[derive(Debug)]
pub struct IdentityParts {
    pub db: Db,
    pub bus: Bus,
    pub keys: Arc<PlatformKeys>,
    pub config: IdentityConfig,
    verified_tokens: tokens::VerifiedTokens,
    checked_sessions: tokens::CheckedSessions,
}

impl Identity {
    pub fn new(db: Db, bus: Bus, keys: PlatformKeys, config: IdentityConfig) -> Self {
        Self(Arc::new(IdentityParts {
            db,
            bus,
            keys: Arc::new(keys),
            config,
            verified_tokens: tokens::VerifiedTokens::default(),
            checked_sessions: tokens::CheckedSessions::default(),
        }))
    }
}

/// What seeding did, for the operator.
#[derive(Debug, Default)]
pub struct SeedReport {
    pub departments_added: usize,
    pub seal_keys_created: usize,
    /// Set when the platform admin was created with a generated password: shown once.
    pub generated_admin_password: Option<String>,
    pub admin_created: bool,
}

pub const ADMIN_USERNAME: &str = "admin";
/// The platform admin belongs to the big-data bureau, which runs the platform.
pub const PLATFORM_DEPARTMENT: &str = "bigdata";

impl Identity {
    /// Loads the departments, gives each a seal key, and creates the platform admin if there is
    /// none (with `admin_password`, or a generated one reported back). Idempotent.
    pub async fn seed(
        &self,
        admin_password: Option<&str>,
    ) -> Result<SeedReport, yunnao_core::Problem> {
        let mut report = SeedReport {
            departments_added: departments::seed(&self.db).await?,
            ..SeedReport::default()
        };
        report.seal_keys_created = seals::ensure_keys(self).await?;
        if users::find_by_username(&self.db, ADMIN_USERNAME)
            .await?
            .is_none()
        {
            let password = match admin_password {
                Some(p) => p.to_owned(),
                None => {
                    let generated = hex::encode(
                        yunnao_gm::random_bytes::<12>()
                            .map_err(|e| yunnao_core::Problem::internal(e.to_string()))?,
                    );
                    report.generated_admin_password = Some(generated.clone());
                    generated
                }
            };
            users::insert(
                self,
                NewUser {
                    username: ADMIN_USERNAME.to_owned(),
                    display_name: "平台管理员".to_owned(),
                    password,
                    department: PLATFORM_DEPARTMENT.to_owned(),
                    roles: vec![Role::PlatformAdmin],
                },
            )
            .await?;
            report.admin_created = true;
        }
        Ok(report)
    }

    /// Demo accounts, one per role, all with `password`. Existing usernames are left alone.
    pub async fn seed_demo_accounts(
        &self,
        password: &str,
    ) -> Result<Vec<(String, String)>, yunnao_core::Problem> {
        let accounts = [
            ("water.admin", "水务局管理员", "water", Role::DeptAdmin),
            ("police.admin", "公安局管理员", "police", Role::DeptAdmin),
            (
                "city.operator",
                "城管局值班员",
                "city-management",
                Role::Operator,
            ),
            ("grid.worker", "网格员", "city-management", Role::GridWorker),
            ("resident", "市民", "bigdata", Role::Resident),
            ("enterprise", "企业用户", "bigdata", Role::Enterprise),
            // The service hall: the bureau's window, the departments of 新生儿出生“一件事”,
            // and a department that pays a policy.
            (
                "approval.clerk",
                "行政审批局窗口",
                "approval",
                Role::Operator,
            ),
            ("health.clerk", "卫健委审批员", "health", Role::Operator),
            ("hrss.clerk", "人社局审批员", "hrss", Role::Operator),
            (
                "medins.clerk",
                "医保局审批员",
                "medical-insurance",
                Role::Operator,
            ),
            ("science.admin", "科技局管理员", "science", Role::DeptAdmin),
            // 一码通城: the metro's gate staff scan codes at the transport bureau's scenarios.
            ("metro.gate", "地铁站务员", "transport", Role::Operator),
            // The data hub: the owners of registers that others request.
            (
                "market.admin",
                "市场监管局数据管理员",
                "market",
                Role::DeptAdmin,
            ),
            (
                "health.admin",
                "卫健委数据管理员",
                "health",
                Role::DeptAdmin,
            ),
        ];
        let mut made = Vec::new();
        for (username, display, department, role) in accounts {
            if users::find_by_username(&self.db, username).await?.is_none() {
                users::insert(
                    self,
                    NewUser {
                        username: username.to_owned(),
                        display_name: display.to_owned(),
                        password: password.to_owned(),
                        department: department.to_owned(),
                        roles: vec![role],
                    },
                )
                .await?;
            }
            made.push((username.to_owned(), role.as_str().to_owned()));
        }
        Ok(made)
    }
}

/// Published on `identity.user.created.<department>` when a user is created.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct UserCreated {
    pub id: String,
    pub username: String,
    pub department: String,
    pub roles: Vec<Role>,
}

impl yunnao_bus::Event for UserCreated {
    const TYPE: &'static str = "identity.user.created";
    const VERSION: u32 = 1;
    fn subject(&self) -> String {
        format!("identity.user.created.{}", self.department)
    }
}

impl Identity {
    /// Whether a department code exists (for other crates that reference departments).
    pub async fn department_exists(&self, code: &str) -> Result<bool, yunnao_core::Problem> {
        Ok(departments::get(&self.db, code).await?.is_some())
    }
}

/// The narrow view other domain crates get of users and credentials.
impl Identity {
    /// Resolves a credential (a sign-in token or an API key) as the middleware does, for
    /// protocols that carry it elsewhere than in a header (Open311's `api_key` form field).
    pub async fn authenticate(&self, credential: &str) -> Result<Principal, yunnao_core::Problem> {
        auth::resolve(self, credential).await
    }

    /// Signs a user in (for front ends that keep the token in a cookie).
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
    ) -> Result<SignedIn, yunnao_core::Problem> {
        tokens::sign_in(self, username, password).await
    }

    /// Ends a session at once on every node.
    pub async fn sign_out(&self, session: &str) -> Result<(), yunnao_core::Problem> {
        tokens::revoke(self, session).await
    }

    /// API clients not revoked: the scenario applications connected to the platform.
    pub async fn active_api_clients(&self) -> Result<i64, yunnao_core::Problem> {
        use yunnao_store::DbResultExt;
        yunnao_store::sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_clients WHERE revoked_at_ms IS NULL",
        )
        .fetch_one(self.db.pool())
        .await
        .db()
    }

    /// The ids of every API client not revoked.
    pub async fn active_api_client_ids(
        &self,
    ) -> Result<std::collections::HashSet<String>, yunnao_core::Problem> {
        use yunnao_store::DbResultExt;
        let ids: Vec<String> = yunnao_store::sqlx::query_scalar(
            "SELECT id FROM api_clients WHERE revoked_at_ms IS NULL",
        )
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(ids.into_iter().collect())
    }

    /// One API client (a department's scenario application), revoked or not.
    pub async fn api_client(
        &self,
        id: &str,
    ) -> Result<Option<ApiClientView>, yunnao_core::Problem> {
        clients::get(self, id).await
    }

    /// Every department (code, names), for display.
    pub async fn departments(&self) -> Result<Vec<Department>, yunnao_core::Problem> {
        departments::list(&self.db).await
    }

    /// A user by username.
    pub async fn user_by_username(
        &self,
        username: &str,
    ) -> Result<Option<UserView>, yunnao_core::Problem> {
        match users::find_by_username(&self.db, username).await? {
            Some(row) => Ok(Some(users::view(&self.db, row).await?)),
            None => Ok(None),
        }
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserView>, yunnao_core::Problem> {
        match users::find_by_id(&self.db, id).await? {
            Some(row) => Ok(Some(users::view(&self.db, row).await?)),
            None => Ok(None),
        }
    }

    /// The enabled users of `department` holding `role` (e.g. a department's heads).
    pub async fn users_with_role(
        &self,
        department: &str,
        role: Role,
    ) -> Result<Vec<UserView>, yunnao_core::Problem> {
        Ok(users::list(&self.db, Some(department))
            .await?
            .into_iter()
            .filter(|u| !u.disabled && u.roles.contains(&role))
            .collect())
    }

    /// A stable name of this installation: the first 8 bytes of the SM3 hash of its platform
    /// public key, in hex (the same across restarts and nodes sharing the key, different
    /// between installations).
    pub fn installation(&self) -> String {
        hex::encode(&yunnao_gm::sm3(&self.keys.public_key().to_sec1())[..8])
    }

    /// An SM4-GCM cipher for personal data fields, derived from the platform key for `purpose`
    /// (so a copy of the database alone does not reveal them).
    pub fn field_cipher(&self, purpose: &str) -> yunnao_gm::FieldCipher {
        self.keys.field_cipher(purpose)
    }
}
