//! Conditional sharing (有条件共享): a consumer department files a request for a dataset
//! (purpose, legal basis, fields, a row filter, the period, the volume it expects); the owner
//! approves it (narrowing fields, rows or period if it likes, choosing the masking of each
//! field) or refuses it with a reason. An approved request is a grant: the reads enforce its
//! fields, rows, masking and period, and revocation or expiry closes it at once (each read
//! looks the grant up). Core data and data not shared cannot be requested.

use crate::Catalogue;
use crate::mask::RULES;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use yunnao_core::Problem;
use yunnao_identity::{Action, Principal, Resource};
use yunnao_store::Arg;

/// The longest a grant runs.
pub const MAX_PERIOD_DAYS: i64 = 366;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub dataset: String,
    /// What the data is for (用途).
    pub purpose: String,
    /// The law or document that allows the use (法律依据).
    pub legal_basis: String,
    /// The fields asked for.
    pub fields: Vec<String>,
    /// Rows asked for: field → a value or a list of values (all rows when empty).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub row_filter: Map<String, Value>,
    /// RFC 3339; now when not given.
    pub valid_from: Option<String>,
    /// RFC 3339; at most 366 days after `valid_from`.
    pub valid_until: String,
    /// Rows the consumer expects to read over the period.
    #[serde(default)]
    pub expected_rows: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// `approve` or `refuse`.
    pub decision: String,
    /// Why: required to refuse, and to approve less than was asked.
    pub reason: Option<String>,
    /// A subset of the fields asked for; all of them when not given.
    pub fields: Option<Vec<String>>,
    /// The row filter asked for, with more conditions or fewer values if narrowed.
    #[schema(value_type = Option<Object>)]
    pub row_filter: Option<Map<String, Value>>,
    /// An earlier end than asked (RFC 3339).
    pub valid_until: Option<String>,
    /// field → `keep`, `mask`, `generalise`, `hash` or `drop`; personal fields not named are
    /// masked, others kept.
    #[schema(value_type = Option<Object>)]
    pub masking: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    pub reason: String,
}

/// A request with its decision.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Request {
    pub id: String,
    pub dataset: String,
    pub owner: String,
    pub consumer: String,
    pub requested_by: String,
    pub purpose: String,
    pub legal_basis: String,
    pub fields: Vec<String>,
    #[schema(value_type = Object)]
    pub row_filter: Map<String, Value>,
    pub valid_from: String,
    pub valid_until: String,
    pub expected_rows: i64,
    /// `pending`, `approved`, `refused`, `revoked`, or `expired` (approved, past its end).
    pub status: String,
    pub granted_fields: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub granted_filter: Option<Map<String, Value>>,
    pub granted_until: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub masking: Option<Map<String, Value>>,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub reason: Option<String>,
    pub created_at: String,
}

/// What a live grant lets its consumer read.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub id: String,
    pub fields: Vec<String>,
    pub row_filter: Map<String, Value>,
    pub masking: Map<String, Value>,
}

type RowA = (String, String, String, String, String, String, String);
type RowB = (String, String, i64, i64, i64, String);
type RowC = (
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
);
type RequestRow = (RowA, RowB, RowC);
type GrantRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    Option<String>,
);

/// Grants read lately, per consumer and dataset, so that a run of reads does not look the
/// same rows up each time. A decision or revocation on this node clears them at once (the
/// generation); one on another node is seen within [`GRANT_RECHECK`], as sessions are.
#[derive(Default)]
pub(crate) struct GrantCache {
    entries: std::sync::Mutex<HashMap<(String, String), CachedGrants>>,
    generation: std::sync::atomic::AtomicU64,
}

struct CachedGrants {
    rows: Arc<Vec<GrantRow>>,
    read: std::time::Instant,
    generation: u64,
}

/// How long grant rows read from the database are trusted without reading them again.
pub const GRANT_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);
const GRANT_CACHE_MAX: usize = 10_000;

impl GrantCache {
    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn get(&self, key: &(String, String)) -> Option<Arc<Vec<GrantRow>>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(key)?;
        (entry.generation == self.generation() && entry.read.elapsed() < GRANT_RECHECK)
            .then(|| entry.rows.clone())
    }

    /// Keeps rows read at `generation` (taken before the read, so a change committed while
    /// reading leaves them stale at once).
    fn insert(&self, key: (String, String), generation: u64, rows: Arc<Vec<GrantRow>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= GRANT_CACHE_MAX {
            entries.retain(|_, e| e.read.elapsed() < GRANT_RECHECK);
            if entries.len() >= GRANT_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(
            key,
            CachedGrants {
                rows,
                read: std::time::Instant::now(),
                generation,
            },
        );
    }

    /// A grant changed on this node: nothing cached before is trusted again.
    fn changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

const COLUMNS_A: &str = "id, dataset, owner, consumer, requested_by, purpose, legal_basis";
const COLUMNS_B: &str = "fields, row_filter, valid_from_ms, valid_until_ms, expected_rows, status";
const COLUMNS_C: &str = "granted_fields, granted_filter, granted_until_ms, masking, decided_by, decided_at_ms, reason, created_at_ms";

fn parse_json<T: serde::de::DeserializeOwned + Default>(text: Option<&str>) -> T {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

fn time(ms: i64) -> String {
    yunnao_core::time::rfc3339_ms(ms)
}

fn request_of(row: RequestRow, now: i64) -> Request {
    let ((id, dataset, owner, consumer, requested_by, purpose, legal_basis), b, c) = row;
    let (fields, row_filter, from, until, expected_rows, status) = b;
    let (gf, gfilter, guntil, masking, decided_by, decided_at, reason, created) = c;
    let status = if status == "approved" && guntil.is_some_and(|u| now >= u) {
        "expired".to_owned()
    } else {
        status
    };
    Request {
        id,
        dataset,
        owner,
        consumer,
        requested_by,
        purpose,
        legal_basis,
        fields: parse_json(Some(&fields)),
        row_filter: parse_json(Some(&row_filter)),
        valid_from: time(from),
        valid_until: time(until),
        expected_rows,
        status,
        granted_fields: gf.as_deref().map(|t| parse_json(Some(t))),
        granted_filter: gfilter.as_deref().map(|t| parse_json(Some(t))),
        granted_until: guntil.map(time),
        masking: masking.as_deref().map(|t| parse_json(Some(t))),
        decided_by,
        decided_at: decided_at.map(time),
        reason,
        created_at: time(created),
    }
}

fn invalid(field: &str, detail: impl Into<String>) -> Problem {
    Problem::validation(format!("{field}: {}", detail.into())).with_extension("field", field)
}

fn text(field: &str, value: &str, max: usize) -> Result<(), Problem> {
    let n = value.chars().count();
    if value.trim().is_empty() || n > max {
        return Err(invalid(field, format!("1 to {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(field, "no control characters"));
    }
    Ok(())
}

fn instant(field: &str, value: &str) -> Result<i64, Problem> {
    yunnao_core::time::parse_rfc3339_ms(value).ok_or_else(|| invalid(field, "an RFC 3339 time"))
}

/// Whether `narrow` asks no more rows than `wide`: every condition of `wide` is in it, with
/// the same value or a subset of its values.
fn within(narrow: &Map<String, Value>, wide: &Map<String, Value>) -> bool {
    let values = |v: &Value| match v {
        Value::Array(items) => items.clone(),
        one => vec![one.clone()],
    };
    wide.iter().all(|(key, allowed)| {
        narrow.get(key).is_some_and(|asked| {
            let allowed = values(allowed);
            values(asked).iter().all(|a| allowed.contains(a))
        })
    })
}

impl Catalogue {
    fn check_filter(
        &self,
        dataset: &crate::Dataset,
        filter: &Map<String, Value>,
        name: &str,
    ) -> Result<(), Problem> {
        if filter.len() > 10 {
            return Err(invalid(name, "at most 10 conditions"));
        }
        let probe = crate::table::ReadQuery {
            filters: filter.clone(),
            limit: 1,
            ..Default::default()
        };
        let all: Vec<String> = dataset.fields.iter().map(|f| f.name.clone()).collect();
        crate::table::Select::build("t", &dataset.fields, &all, &Map::new(), &probe)
            .map(|_| ())
            .map_err(|e| invalid(name, e.trim_start_matches("filters: ").to_owned()))
    }

    /// Files a request of the caller's department for a dataset of another.
    pub async fn file_request(
        &self,
        principal: &Principal,
        new: NewRequest,
    ) -> Result<Request, Problem> {
        principal.require(Resource::DataSharing, Action::Write, &principal.department)?;
        let dataset = self.get(Some(principal), &new.dataset)?.dataset;
        if dataset.level == "core" {
            return Err(Problem::forbidden(format!(
                "{} is core data (核心数据): it never leaves {}",
                dataset.id, dataset.department
            ))
            .with_extension("reason", "core"));
        }
        match dataset.sharing.as_str() {
            "none" => {
                return Err(Problem::forbidden(format!(
                    "{} is not shared (不予共享): it cannot be requested",
                    dataset.id
                ))
                .with_extension("reason", "not-shared"));
            }
            "open" => {
                return Err(invalid(
                    "dataset",
                    format!(
                        "{} is open data: anyone reads it without a request",
                        dataset.id
                    ),
                ));
            }
            _ => {}
        }
        if dataset.department == principal.department {
            return Err(invalid(
                "dataset",
                "a department reads its own data without a request",
            ));
        }
        text("purpose", &new.purpose, 500)?;
        text("legal_basis", &new.legal_basis, 500)?;
        if new.fields.is_empty() || new.fields.len() > 200 {
            return Err(invalid("fields", "1 to 200 fields"));
        }
        for f in &new.fields {
            if !dataset.fields.iter().any(|d| d.name == *f) {
                return Err(invalid(
                    "fields",
                    format!("{} has no field {f}", dataset.id),
                ));
            }
        }
        let mut fields = new.fields.clone();
        fields.sort();
        fields.dedup();
        self.check_filter(&dataset, &new.row_filter, "row_filter")?;
        let now = yunnao_core::time::now_ms();
        let from = match &new.valid_from {
            Some(t) => instant("valid_from", t)?,
            None => now,
        };
        let until = instant("valid_until", &new.valid_until)?;
        if until <= from.max(now) {
            return Err(invalid("valid_until", "after valid_from and after now"));
        }
        if until - from > MAX_PERIOD_DAYS * 86_400_000 {
            return Err(invalid(
                "valid_until",
                format!("a grant runs at most {MAX_PERIOD_DAYS} days"),
            ));
        }
        if !(0..=1_000_000_000_000).contains(&new.expected_rows) {
            return Err(invalid("expected_rows", "0 to 10^12"));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.db.begin_fast_write().await?;
        tx.execute(
            "INSERT INTO data_requests (id, dataset, owner, consumer, requested_by, purpose, legal_basis, fields, row_filter, valid_from_ms, valid_until_ms, expected_rows, status, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13)",
            &[
                Arg::text(id.as_str()),
                Arg::text(dataset.id.as_str()),
                Arg::text(dataset.department.as_str()),
                Arg::text(principal.department.as_str()),
                Arg::text(principal.name.as_str()),
                Arg::text(new.purpose.trim()),
                Arg::text(new.legal_basis.trim()),
                Arg::Text(serde_json::to_string(&fields).unwrap_or_default().into()),
                Arg::Text(serde_json::to_string(&new.row_filter).unwrap_or_default().into()),
                Arg::Int(from),
                Arg::Int(until),
                Arg::Int(new.expected_rows),
                Arg::Int(now),
            ],
        )
        .await?;
        tx.commit().await?;
        self.request(principal, &id).await
    }

    async fn load_request(&self, id: &str) -> Result<Option<Request>, Problem> {
        let row: Option<RequestRow> = self
            .fetch_request_rows("WHERE id = $1", &[Arg::text(id)])
            .await?
            .into_iter()
            .next();
        Ok(row.map(|r| request_of(r, yunnao_core::time::now_ms())))
    }

    async fn fetch_request_rows(
        &self,
        clause: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<RequestRow>, Problem> {
        // Three reads of one row set, stitched by id: a request has more columns than a
        // tuple decodes at once.
        let a: Vec<RowA> = self
            .db
            .fetch_all(
                &format!(
                    "SELECT {COLUMNS_A} FROM data_requests {clause} ORDER BY created_at_ms DESC, id"
                ),
                args,
            )
            .await?;
        let b: Vec<RowB> = self
            .db
            .fetch_all(
                &format!(
                    "SELECT {COLUMNS_B} FROM data_requests {clause} ORDER BY created_at_ms DESC, id"
                ),
                args,
            )
            .await?;
        let c: Vec<RowC> = self
            .db
            .fetch_all(
                &format!(
                    "SELECT {COLUMNS_C} FROM data_requests {clause} ORDER BY created_at_ms DESC, id"
                ),
                args,
            )
            .await?;
        if a.len() != b.len() || b.len() != c.len() {
            return Err(Problem::unavailable(
                "requests changed while read; try again",
            ));
        }
        Ok(a.into_iter()
            .zip(b)
            .zip(c)
            .map(|((a, b), c)| (a, b, c))
            .collect())
    }

    fn may_see(principal: &Principal, request: &Request) -> bool {
        principal.is_platform_admin()
            || principal.may(Resource::DataSharing, Action::Read, &request.owner)
            || principal.may(Resource::DataSharing, Action::Read, &request.consumer)
    }

    pub async fn request(&self, principal: &Principal, id: &str) -> Result<Request, Problem> {
        self.load_request(id)
            .await?
            .filter(|r| Self::may_see(principal, r))
            .ok_or_else(|| Problem::not_found(format!("no request {id}")))
    }

    /// Requests the caller's department filed or received (the bureau sees all).
    pub async fn requests(
        &self,
        principal: &Principal,
        status: Option<&str>,
    ) -> Result<Vec<Request>, Problem> {
        let now = yunnao_core::time::now_ms();
        let rows = if principal.is_platform_admin() {
            self.fetch_request_rows("", &[]).await?
        } else {
            if principal.reach(Resource::DataSharing, Action::Read) == yunnao_identity::Reach::None
            {
                return Err(Problem::forbidden(
                    "requests are read by a department's administrators and operators (data-sharing:read)",
                ));
            }
            self.fetch_request_rows(
                "WHERE owner = $1 OR consumer = $1",
                &[Arg::text(principal.department.as_str())],
            )
            .await?
        };
        Ok(rows
            .into_iter()
            .map(|r| request_of(r, now))
            .filter(|r| status.is_none_or(|s| r.status == s))
            .take(1000)
            .collect())
    }

    /// The owner's decision on a pending request.
    pub async fn decide(
        &self,
        principal: &Principal,
        id: &str,
        decision: Decision,
    ) -> Result<Request, Problem> {
        let request = self.request(principal, id).await?;
        principal.require(Resource::DataSharing, Action::Write, &request.owner)?;
        if request.status != "pending" {
            return Err(Problem::conflict(format!(
                "request {id} is {} already",
                request.status
            )));
        }
        let reason = decision
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if let Some(reason) = reason {
            text("reason", reason, 500)?;
        }
        let now = yunnao_core::time::now_ms();
        let mut tx = self.db.begin_fast_write().await?;
        match decision.decision.as_str() {
            "refuse" => {
                let reason = reason.ok_or_else(|| invalid("reason", "a refusal says why"))?;
                tx.execute(
                    "UPDATE data_requests SET status = 'refused', decided_by = $1, decided_at_ms = $2, reason = $3 WHERE id = $4 AND status = 'pending'",
                    &[
                        Arg::text(principal.name.as_str()),
                        Arg::Int(now),
                        Arg::text(reason),
                        Arg::text(id),
                    ],
                )
                .await?;
            }
            "approve" => {
                let dataset = self.get(Some(principal), &request.dataset)?.dataset;
                let fields = match decision.fields {
                    Some(fields) => {
                        if let Some(f) = fields.iter().find(|f| !request.fields.contains(f)) {
                            return Err(invalid("fields", format!("{f} was not asked for")));
                        }
                        if fields.is_empty() {
                            return Err(invalid("fields", "at least one; refuse instead"));
                        }
                        let mut fields = fields;
                        fields.sort();
                        fields.dedup();
                        fields
                    }
                    None => request.fields.clone(),
                };
                let filter = match decision.row_filter {
                    Some(filter) => {
                        if !within(&filter, &request.row_filter) {
                            return Err(invalid(
                                "row_filter",
                                "an approval narrows the rows asked for: it keeps every condition asked, with the same values or fewer",
                            ));
                        }
                        self.check_filter(&dataset, &filter, "row_filter")?;
                        filter
                    }
                    None => request.row_filter.clone(),
                };
                let asked_until = instant("valid_until", &request.valid_until)?;
                let until = match &decision.valid_until {
                    Some(t) => {
                        let until = instant("valid_until", t)?;
                        if until > asked_until || until <= now {
                            return Err(invalid(
                                "valid_until",
                                "after now and no later than asked",
                            ));
                        }
                        until
                    }
                    None => asked_until,
                };
                let mut masking = Map::new();
                let given = decision.masking.unwrap_or_default();
                for (field, rule) in &given {
                    if !fields.contains(field) {
                        return Err(invalid("masking", format!("{field} is not granted")));
                    }
                    if !rule.as_str().is_some_and(|r| RULES.contains(&r)) {
                        return Err(invalid(
                            "masking",
                            format!("{field}: a rule is one of {}", RULES.join(", ")),
                        ));
                    }
                }
                for f in dataset.fields.iter().filter(|f| fields.contains(&f.name)) {
                    let rule = given.get(&f.name).cloned().unwrap_or_else(|| {
                        Value::from(if f.personal == "none" { "keep" } else { "mask" })
                    });
                    masking.insert(f.name.clone(), rule);
                }
                let narrowed = fields != request.fields
                    || filter != request.row_filter
                    || until != asked_until;
                if narrowed && reason.is_none() {
                    return Err(invalid(
                        "reason",
                        "an approval of less than was asked says why",
                    ));
                }
                tx.execute(
                    "UPDATE data_requests SET status = 'approved', granted_fields = $1, granted_filter = $2, granted_until_ms = $3, masking = $4, decided_by = $5, decided_at_ms = $6, reason = $7 WHERE id = $8 AND status = 'pending'",
                    &[
                        Arg::Text(serde_json::to_string(&fields).unwrap_or_default().into()),
                        Arg::Text(serde_json::to_string(&filter).unwrap_or_default().into()),
                        Arg::Int(until),
                        Arg::Text(serde_json::to_string(&masking).unwrap_or_default().into()),
                        Arg::text(principal.name.as_str()),
                        Arg::Int(now),
                        Arg::Text(reason.unwrap_or("").to_owned().into()),
                        Arg::text(id),
                    ],
                )
                .await?;
            }
            other => {
                return Err(invalid(
                    "decision",
                    format!("{other} is not approve or refuse"),
                ));
            }
        }
        tx.commit().await?;
        self.grants.changed();
        self.request(principal, id).await
    }

    /// Closes a grant (or withdraws a pending request) at once: by the owner, or by the
    /// consumer itself.
    pub async fn revoke(
        &self,
        principal: &Principal,
        id: &str,
        revocation: Revocation,
    ) -> Result<Request, Problem> {
        let request = self.request(principal, id).await?;
        if !principal.may(Resource::DataSharing, Action::Write, &request.owner)
            && !principal.may(Resource::DataSharing, Action::Write, &request.consumer)
        {
            return Err(Problem::forbidden(
                "a grant is revoked by the owner's or the consumer's administrators",
            ));
        }
        text("reason", &revocation.reason, 500)?;
        if !matches!(request.status.as_str(), "pending" | "approved") {
            return Err(Problem::conflict(format!(
                "request {id} is {} already",
                request.status
            )));
        }
        let mut tx = self.db.begin_fast_write().await?;
        tx.execute(
            "UPDATE data_requests SET status = 'revoked', reason = $1, decided_by = COALESCE(decided_by, $2), decided_at_ms = COALESCE(decided_at_ms, $3), granted_until_ms = CASE WHEN granted_until_ms IS NULL THEN NULL WHEN granted_until_ms > $3 THEN $3 ELSE granted_until_ms END WHERE id = $4",
            &[
                Arg::text(revocation.reason.trim()),
                Arg::text(principal.name.as_str()),
                Arg::Int(yunnao_core::time::now_ms()),
                Arg::text(id),
            ],
        )
        .await?;
        tx.commit().await?;
        self.grants.changed();
        self.request(principal, id).await
    }

    /// The consumer's live grant for a dataset, or why it has none.
    pub async fn live_grant(&self, consumer: &str, dataset: &str) -> Result<Grant, Problem> {
        let key = (consumer.to_owned(), dataset.to_owned());
        let rows = match self.grants.get(&key) {
            Some(rows) => rows,
            None => {
                let generation = self.grants.generation();
                let rows: Arc<Vec<GrantRow>> = Arc::new(
                    self.db
                        .fetch_all(
                            "SELECT id, status, granted_fields, granted_filter, granted_until_ms, masking, valid_from_ms, reason \
                             FROM data_requests WHERE consumer = $1 AND dataset = $2 AND status IN ('approved', 'revoked') \
                             ORDER BY decided_at_ms DESC LIMIT 20",
                            &[Arg::text(consumer), Arg::text(dataset)],
                        )
                        .await?,
                );
                self.grants.insert(key, generation, rows.clone());
                rows
            }
        };
        // Expiry is judged now, on every read, whether the rows were cached or not.
        let now = yunnao_core::time::now_ms();
        let mut why = None;
        for (id, status, fields, filter, until, masking, from, reason) in rows.iter() {
            let until = until.unwrap_or(0);
            if status == "approved" && *from <= now && now < until {
                return Ok(Grant {
                    id: id.clone(),
                    fields: parse_json(fields.as_deref()),
                    row_filter: parse_json(filter.as_deref()),
                    masking: parse_json(masking.as_deref()),
                });
            }
            let from = *from;
            why.get_or_insert(if status == "revoked" {
                format!(
                    "grant {id} was revoked: {}",
                    reason.as_deref().unwrap_or_default()
                )
            } else if now < from {
                format!("grant {id} opens at {}", time(from))
            } else {
                format!("grant {id} expired at {}", time(until))
            });
        }
        Err(Problem::forbidden(why.unwrap_or_else(|| {
            format!(
                "{consumer} holds no approved request for {dataset}; file one (POST /api/v1/data/requests)"
            )
        }))
        .with_extension("reason", "no-grant"))
    }
}

#[cfg(test)]
mod tests {
    use super::within;
    use serde_json::json;

    #[test]
    fn an_approval_only_narrows_rows() {
        let wide = json!({"district": ["市南区", "市北区"]});
        let wide = wide.as_object().cloned().unwrap_or_default();
        let cases = [
            (json!({"district": ["市南区", "市北区"]}), true),
            (json!({"district": "市南区"}), true),
            (json!({"district": "市南区", "year": 2024}), true),
            (json!({"district": "崂山区"}), false),
            (json!({}), false),
        ];
        for (narrow, want) in cases {
            let narrow = narrow.as_object().cloned().unwrap_or_default();
            assert_eq!(within(&narrow, &wide), want, "{narrow:?}");
        }
        assert!(within(&serde_json::Map::new(), &serde_json::Map::new()));
    }
}
