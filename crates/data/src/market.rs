//! The capability marketplace (一体化应用能力服务超市): the platform's own reusable APIs and
//! the APIs departments register, which the hub proxies with the calling API client's
//! identity, rate-limited per subscription and metered. A scenario app (an API client of a
//! department) subscribes to capabilities and datasets; the apps with a live subscription are
//! what the plan's "新接入场景不少于50个" counts.

use crate::Catalogue;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use yunnao_core::Problem;
use yunnao_identity::{Action, Principal, Resource};
use yunnao_store::Arg;

/// The platform's capabilities: (id, zh, en, description, method and path).
const PLATFORM: [(&str, &str, &str, &str, &str); 6] = [
    (
        "grid-lookup",
        "网格定位",
        "Grid lookup",
        "由经纬度查询所在单元网格、社区、街道、区市(地址落格)",
        "GET /api/v1/governance/grid/lookup",
    ),
    (
        "e-seal",
        "电子印章",
        "E-seal",
        "以部门 SM2 电子印章签署文档,并验证签章",
        "POST /api/v1/seals/{department}/seal",
    ),
    (
        "code-verify",
        "一码通城核验",
        "Code verification",
        "核验城市码(SM2 签名、有效期、撤销),按场景返回最少信息",
        "POST /api/v1/codes/verify",
    ),
    (
        "device-telemetry",
        "物联感知数据",
        "Device telemetry",
        "读取本部门及经授权共享的物联设备实时值与历史序列",
        "GET /api/v1/devices/{id}/telemetry",
    ),
    (
        "ngsi-ld-types",
        "城市实体(NGSI-LD)",
        "City entities (NGSI-LD)",
        "按 NGSI-LD 标准查询城市实体类型与实体",
        "GET /ngsi-ld/v1/types",
    ),
    (
        "data-rows",
        "数据目录与共享数据",
        "Catalogue and shared data",
        "检索数据目录,按批准的共享申请读取数据(CKAN 兼容)",
        "GET /api/v1/data/datasets/{id}/rows",
    ),
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCapability {
    /// A slug: lower-case letters, digits and `-`.
    pub id: String,
    pub title_zh: String,
    pub title_en: String,
    pub description_zh: String,
    /// The department's API base URL, `http://` or `https://`; calls to
    /// `/api/v1/data/capabilities/{id}/call?path=/p` go to `{upstream}/p`.
    pub upstream: String,
    /// Calls per minute one subscription may make.
    pub rate_per_minute: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Capability {
    pub id: String,
    /// `platform` or `department`.
    pub kind: String,
    pub department: String,
    pub title_zh: String,
    pub title_en: String,
    pub description_zh: String,
    /// For the platform's: the method and path to call.
    pub endpoint: String,
    /// For a department's: where the hub forwards calls (shown to its own department only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    pub rate_per_minute: u32,
    /// Live subscriptions.
    pub subscribers: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// The subscribing scenario app: an API client of the caller's department.
    pub client_id: String,
    /// A capability's id, or…
    pub capability: Option<String>,
    /// …a dataset's id (open, or granted to the department).
    pub dataset: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Subscription {
    pub id: String,
    pub client_id: String,
    pub department: String,
    /// `capability` or `dataset`.
    pub target_kind: String,
    pub target: String,
    /// `live` or `cancelled`.
    pub status: String,
    pub calls: i64,
    pub created_at: String,
}

/// Per-subscription call budgets of the current minute, and calls not yet written.
#[derive(Default)]
pub struct Meter {
    window: HashMap<String, (i64, u32)>,
    unwritten: HashMap<String, i64>,
}

pub type SharedMeter = Arc<Mutex<Meter>>;

fn invalid(field: &str, detail: impl Into<String>) -> Problem {
    Problem::validation(format!("{field}: {}", detail.into())).with_extension("field", field)
}

type SubscriptionRow = (String, String, String, String, String, String, i64, i64);

fn subscription_of(row: SubscriptionRow) -> Subscription {
    let (id, client_id, department, target_kind, target, status, calls, created) = row;
    Subscription {
        id,
        client_id,
        department,
        target_kind,
        target,
        status,
        calls,
        created_at: yunnao_core::time::rfc3339_ms(created),
    }
}

impl Catalogue {
    /// Writes the platform's capabilities that are not there yet.
    pub(crate) async fn seed_capabilities(&self) -> Result<(), Problem> {
        let now = yunnao_core::time::now_ms();
        let mut tx = self.db.begin_fast_write().await?;
        for (id, zh, en, description, endpoint) in PLATFORM {
            let doc = Capability {
                id: id.into(),
                kind: "platform".into(),
                department: "bigdata".into(),
                title_zh: zh.into(),
                title_en: en.into(),
                description_zh: description.into(),
                endpoint: endpoint.into(),
                upstream: None,
                rate_per_minute: 600,
                subscribers: 0,
            };
            tx.execute(
                "INSERT INTO data_capabilities (id, kind, department, doc, created_at_ms) VALUES ($1, 'platform', 'bigdata', $2, $3) ON CONFLICT DO NOTHING",
                &[
                    Arg::text(id),
                    Arg::Text(serde_json::to_string(&doc).unwrap_or_default().into()),
                    Arg::Int(now),
                ],
            )
            .await?;
        }
        tx.commit().await
    }

    /// The marketplace: every capability with its live subscriptions; a department's
    /// upstream shown to that department only.
    pub async fn capabilities(
        &self,
        principal: Option<&Principal>,
    ) -> Result<Vec<Capability>, Problem> {
        let rows: Vec<(String, String)> = self
            .db
            .fetch_all(
                "SELECT doc, department FROM data_capabilities ORDER BY kind DESC, id",
                &[],
            )
            .await?;
        let counts: Vec<(String, i64)> = self
            .db
            .fetch_all(
                "SELECT target, COUNT(*) FROM data_subscriptions WHERE target_kind = 'capability' AND status = 'live' GROUP BY target",
                &[],
            )
            .await?;
        let counts: HashMap<String, i64> = counts.into_iter().collect();
        Ok(rows
            .into_iter()
            .filter_map(|(doc, department)| {
                let mut c: Capability = serde_json::from_str(&doc).ok()?;
                c.subscribers = counts.get(&c.id).copied().unwrap_or(0);
                if !principal.is_some_and(|p| p.department == department || p.is_platform_admin()) {
                    c.upstream = None;
                }
                Some(c)
            })
            .collect())
    }

    pub(crate) async fn capability(&self, id: &str) -> Result<Option<Capability>, Problem> {
        let row: Option<(String,)> = self
            .db
            .fetch_optional(
                "SELECT doc FROM data_capabilities WHERE id = $1",
                &[Arg::text(id)],
            )
            .await?;
        Ok(row.and_then(|(doc,)| serde_json::from_str(&doc).ok()))
    }

    /// Registers a department API in the marketplace (its department's admins).
    pub async fn register_capability(
        &self,
        principal: &Principal,
        new: NewCapability,
    ) -> Result<Capability, Problem> {
        principal.require(Resource::DataSharing, Action::Write, &principal.department)?;
        let slug_ok = (3..=60).contains(&new.id.len())
            && new
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !slug_ok {
            return Err(invalid(
                "id",
                "3 to 60 lower-case letters, digits and hyphens",
            ));
        }
        for (field, value, max) in [
            ("title_zh", &new.title_zh, 100),
            ("title_en", &new.title_en, 200),
            ("description_zh", &new.description_zh, 1000),
        ] {
            if value.trim().is_empty()
                || value.chars().count() > max
                || value.chars().any(char::is_control)
            {
                return Err(invalid(
                    field,
                    format!("1 to {max} characters, no control characters"),
                ));
            }
        }
        let upstream_ok = (new.upstream.starts_with("http://")
            || new.upstream.starts_with("https://"))
            && new.upstream.len() <= 500
            && reqwest::Url::parse(&new.upstream)
                .is_ok_and(|u| u.host().is_some() && u.query().is_none());
        if !upstream_ok {
            return Err(invalid(
                "upstream",
                "an http:// or https:// base URL without a query",
            ));
        }
        if !(1..=60_000).contains(&new.rate_per_minute) {
            return Err(invalid("rate_per_minute", "1 to 60000"));
        }
        let capability = Capability {
            id: new.id.clone(),
            kind: "department".into(),
            department: principal.department.clone(),
            title_zh: new.title_zh.trim().into(),
            title_en: new.title_en.trim().into(),
            description_zh: new.description_zh.trim().into(),
            endpoint: format!("GET|POST /api/v1/data/capabilities/{}/call?path=…", new.id),
            upstream: Some(new.upstream.trim_end_matches('/').to_owned()),
            rate_per_minute: new.rate_per_minute,
            subscribers: 0,
        };
        let mut tx = self.db.begin_fast_write().await?;
        let inserted = tx
            .execute(
                "INSERT INTO data_capabilities (id, kind, department, doc, created_at_ms) VALUES ($1, 'department', $2, $3, $4) ON CONFLICT DO NOTHING",
                &[
                    Arg::text(new.id.as_str()),
                    Arg::text(principal.department.as_str()),
                    Arg::Text(serde_json::to_string(&capability).unwrap_or_default().into()),
                    Arg::Int(yunnao_core::time::now_ms()),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(Problem::conflict(format!("a capability {} exists", new.id)));
        }
        tx.commit().await?;
        Ok(capability)
    }

    /// Subscribes a scenario app of the caller's department to a capability or a dataset.
    pub async fn subscribe(
        &self,
        principal: &Principal,
        new: NewSubscription,
    ) -> Result<Subscription, Problem> {
        principal.require(Resource::DataSharing, Action::Write, &principal.department)?;
        let client = self
            .identity
            .api_client(&new.client_id)
            .await?
            .filter(|c| c.department == principal.department || principal.is_platform_admin())
            .ok_or_else(|| {
                invalid(
                    "client_id",
                    format!(
                        "no API client {} of {}",
                        new.client_id, principal.department
                    ),
                )
            })?;
        if client.revoked {
            return Err(invalid("client_id", "the API client is revoked"));
        }
        let (kind, target) = match (&new.capability, &new.dataset) {
            (Some(c), None) => {
                self.capability(c)
                    .await?
                    .ok_or_else(|| invalid("capability", format!("no capability {c}")))?;
                ("capability", c.clone())
            }
            (None, Some(d)) => {
                let dataset = self.get(Some(principal), d)?.dataset;
                let readable = dataset.sharing == "open"
                    || dataset.department == client.department
                    || self.live_grant(&client.department, d).await.is_ok();
                if !readable {
                    return Err(Problem::forbidden(format!(
                        "{} does not hold a live grant for {d}: file a request first",
                        client.department
                    )));
                }
                ("dataset", d.clone())
            }
            _ => {
                return Err(invalid(
                    "capability",
                    "name a capability or a dataset, one of them",
                ));
            }
        };
        let existing: Option<(String,)> = self
            .db
            .fetch_optional(
                "SELECT id FROM data_subscriptions WHERE client_id = $1 AND target_kind = $2 AND target = $3 AND status = 'live'",
                &[Arg::text(client.id.as_str()), Arg::text(kind), Arg::text(target.as_str())],
            )
            .await?;
        if let Some((id,)) = existing {
            return Err(Problem::conflict(format!(
                "the app is subscribed already ({id})"
            )));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.db.begin_fast_write().await?;
        tx.execute(
            "INSERT INTO data_subscriptions (id, client_id, department, target_kind, target, status, calls, created_at_ms) VALUES ($1, $2, $3, $4, $5, 'live', 0, $6)",
            &[
                Arg::text(id.as_str()),
                Arg::text(client.id.as_str()),
                Arg::text(client.department.as_str()),
                Arg::text(kind),
                Arg::text(target.as_str()),
                Arg::Int(yunnao_core::time::now_ms()),
            ],
        )
        .await?;
        tx.commit().await?;
        self.subscription(principal, &id).await
    }

    async fn subscription_rows(
        &self,
        clause: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Subscription>, Problem> {
        let rows: Vec<SubscriptionRow> = self
            .db
            .fetch_all(
                &format!("SELECT id, client_id, department, target_kind, target, status, calls, created_at_ms FROM data_subscriptions {clause} ORDER BY created_at_ms DESC LIMIT 1000"),
                args,
            )
            .await?;
        Ok(rows.into_iter().map(subscription_of).collect())
    }

    pub async fn subscription(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Subscription, Problem> {
        self.subscription_rows("WHERE id = $1", &[Arg::text(id)])
            .await?
            .into_iter()
            .find(|s| {
                principal.is_platform_admin()
                    || principal.may(Resource::DataSharing, Action::Read, &s.department)
            })
            .ok_or_else(|| Problem::not_found(format!("no subscription {id}")))
    }

    /// The caller's department's subscriptions (the bureau: all).
    pub async fn subscriptions(&self, principal: &Principal) -> Result<Vec<Subscription>, Problem> {
        if principal.is_platform_admin() {
            return self.subscription_rows("", &[]).await;
        }
        principal.require(Resource::DataSharing, Action::Read, &principal.department)?;
        self.subscription_rows(
            "WHERE department = $1",
            &[Arg::text(principal.department.as_str())],
        )
        .await
    }

    pub async fn cancel_subscription(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Subscription, Problem> {
        let subscription = self.subscription(principal, id).await?;
        principal.require(
            Resource::DataSharing,
            Action::Write,
            &subscription.department,
        )?;
        let mut tx = self.db.begin_fast_write().await?;
        tx.execute(
            "UPDATE data_subscriptions SET status = 'cancelled', cancelled_at_ms = $1 WHERE id = $2",
            &[Arg::Int(yunnao_core::time::now_ms()), Arg::text(id)],
        )
        .await?;
        tx.commit().await?;
        self.subscription(principal, id).await
    }

    /// Scenario apps (API clients, not revoked) with at least one live subscription.
    pub async fn live_scenario_apps(&self) -> Result<i64, Problem> {
        let clients: Vec<(String,)> = self
            .db
            .fetch_all(
                "SELECT DISTINCT client_id FROM data_subscriptions WHERE status = 'live'",
                &[],
            )
            .await?;
        if clients.is_empty() {
            return Ok(0);
        }
        let active = self.identity.active_api_client_ids().await?;
        Ok(clients.iter().filter(|(c,)| active.contains(c)).count() as i64)
    }

    /// Checks that an API client may call a department capability now, counting the call:
    /// its live subscription and the minute's budget. Returns the capability.
    pub async fn admit_call(&self, principal: &Principal, id: &str) -> Result<Capability, Problem> {
        if principal.kind != yunnao_identity::PrincipalKind::ApiClient {
            return Err(Problem::forbidden(
                "capabilities are called by scenario apps, with their API key",
            ));
        }
        let capability = self
            .capability(id)
            .await?
            .filter(|c| c.kind == "department")
            .ok_or_else(|| Problem::not_found(format!("no department capability {id}")))?;
        let subscription: Option<(String,)> = self
            .db
            .fetch_optional(
                "SELECT id FROM data_subscriptions WHERE client_id = $1 AND target_kind = 'capability' AND target = $2 AND status = 'live'",
                &[Arg::text(principal.id.as_str()), Arg::text(id)],
            )
            .await?;
        let (subscription,) = subscription.ok_or_else(|| {
            Problem::forbidden(format!(
                "the app has no live subscription to {id}: subscribe first"
            ))
        })?;
        let minute = yunnao_core::time::now_ms() / 60_000;
        let mut meter = self
            .meter
            .lock()
            .map_err(|_| Problem::internal("meter poisoned"))?;
        let window = meter
            .window
            .entry(subscription.clone())
            .or_insert((minute, 0));
        if window.0 != minute {
            *window = (minute, 0);
        }
        if window.1 >= capability.rate_per_minute {
            let wait = 60 - (yunnao_core::time::now_ms() / 1000) % 60;
            return Err(Problem::too_many_requests(format!(
                "{id} allows {} calls a minute per subscription",
                capability.rate_per_minute
            ))
            .with_retry_after(wait as u32));
        }
        window.1 += 1;
        *meter.unwritten.entry(subscription).or_default() += 1;
        if meter.window.len() > 100_000 {
            meter.window.retain(|_, (m, _)| *m == minute);
        }
        Ok(capability)
    }

    /// Writes the calls counted since the last time.
    pub async fn flush_calls(&self) -> Result<(), Problem> {
        let calls: Vec<(String, i64)> = match self.meter.lock() {
            Ok(mut meter) => meter.unwritten.drain().collect(),
            Err(_) => return Ok(()),
        };
        if calls.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_fast_write().await?;
        for (id, n) in calls {
            tx.execute(
                "UPDATE data_subscriptions SET calls = calls + $1 WHERE id = $2",
                &[Arg::Int(n), Arg::text(id.as_str())],
            )
            .await?;
        }
        tx.commit().await
    }

    /// The HTTP client calls to department capabilities go through.
    pub(crate) fn upstream_client(&self) -> &reqwest::Client {
        &self.http
    }
}
