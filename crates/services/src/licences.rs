//! The e-licence library (电子证照库). A department issues a licence to a holder (a resident by
//! identity number, an enterprise by credit code); the licence is one JSON document sealed
//! with the issuer's SM2 e-seal, so it verifies offline with the issuer's published key
//! (`yunnao seal verify`). Its identifier is the issuing region, the type, the year, a serial
//! and an ISO 7064 MOD 37,36 check character. A licence is believed only while its seal
//! verifies against the stored document, it is valid and not past its validity.

use crate::ids;
use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_identity::seals::{self, SealContent, SealedDocument};
use yunnao_identity::{Action, Identity, Principal, Resource};
use yunnao_store::{Db, DbResultExt, sqlx};

/// Licence types: (code, number in identifiers, Chinese name, English name, holder kind).
pub const TYPES: [(&str, &str, &str, &str, HolderKind); 14] = [
    (
        "resident_id",
        "101",
        "居民身份证",
        "Resident ID card",
        HolderKind::Person,
    ),
    (
        "household_register",
        "102",
        "居民户口簿",
        "Household register",
        HolderKind::Person,
    ),
    (
        "birth_certificate",
        "103",
        "出生医学证明",
        "Medical birth certificate",
        HolderKind::Person,
    ),
    (
        "marriage_certificate",
        "104",
        "结婚证",
        "Marriage certificate",
        HolderKind::Person,
    ),
    (
        "business_licence",
        "201",
        "营业执照",
        "Business licence",
        HolderKind::Enterprise,
    ),
    (
        "property_certificate",
        "301",
        "不动产权证书",
        "Property certificate",
        HolderKind::Any,
    ),
    (
        "residence_permit",
        "105",
        "居住证",
        "Residence permit",
        HolderKind::Person,
    ),
    (
        "social_security_card",
        "106",
        "社会保障卡",
        "Social security card",
        HolderKind::Person,
    ),
    (
        "vaccination_certificate",
        "107",
        "预防接种证",
        "Vaccination certificate",
        HolderKind::Person,
    ),
    (
        "disability_certificate",
        "108",
        "残疾人证",
        "Disability certificate",
        HolderKind::Person,
    ),
    (
        "insurance_registration",
        "109",
        "参保凭证",
        "Insurance registration",
        HolderKind::Any,
    ),
    (
        "registration_certificate",
        "302",
        "不动产登记证明",
        "Registration certificate",
        HolderKind::Any,
    ),
    ("permit", "401", "行政许可证", "Permit", HolderKind::Any),
    (
        "filing_receipt",
        "501",
        "备案回执",
        "Filing receipt",
        HolderKind::Any,
    ),
];

/// A holder bound to a user.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundHolder {
    pub user_id: String,
    pub holder_id: String,
    pub holder_name: String,
}

/// One use of a licence (audited for its holder to see).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct LicenceUse {
    pub application_id: String,
    pub department: String,
    /// `consented` (the holder allowed the application to use it) or `read` (the department
    /// saw it while handling the application).
    pub action: String,
    pub at: String,
}

/// Records a use once per (licence, application, department, action).
pub async fn record_use(
    tx: &mut yunnao_store::WriteTx,
    licence_id: &str,
    application_id: &str,
    department: &str,
    action: &str,
) -> Result<(), Problem> {
    sqlx::query(
        "INSERT INTO svc_licence_uses (licence_id, application_id, department, action, at_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(licence_id)
    .bind(application_id)
    .bind(department)
    .bind(action)
    .bind(yunnao_core::time::now_ms())
    .execute(&mut ***tx)
    .await
    .db()?;
    Ok(())
}

/// A licence sealed and ready to be stored, in the caller's transaction.
pub struct PreparedLicence {
    pub document: LicenceDocument,
    sealed: SealedDocument,
    valid_until_ms: Option<i64>,
    issued_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HolderKind {
    Person,
    Enterprise,
    Any,
}

/// The region every identifier of this platform's licences starts with (青岛市).
pub const REGION: &str = "370200";

/// Who holds licences: a person's identity number or an enterprise's credit code, checked.
/// Both have 18 characters; a number that is valid as an identity number is a person's.
fn holder_kind(holder_id: &str) -> Result<(HolderKind, String), Problem> {
    let text = holder_id.trim();
    let person = ids::resident_id(text);
    if let Ok(id) = person {
        return Ok((HolderKind::Person, id.number));
    }
    let enterprise = ids::credit_code(text);
    if let Ok(code) = enterprise {
        return Ok((HolderKind::Enterprise, code.code));
    }
    // Digits throughout (but for a final X) read as a person's number, anything else a code.
    let looks_personal = text.len() == 18
        && text.as_bytes()[..17].iter().all(u8::is_ascii_digit)
        && text[6..8].starts_with(['1', '2']);
    let reason = match (person, enterprise) {
        (Err(p), _) if looks_personal => p.0,
        (_, Err(e)) => e.0,
        _ => "not an identity number or credit code".to_owned(),
    };
    Err(Problem::validation(format!("holder_id: {reason}")).with_extension("field", "holder_id"))
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HolderBinding {
    /// The resident identity number or the unified social credit code.
    pub holder_id: String,
    /// The name on it (a person's or the enterprise's).
    pub holder_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Holder {
    pub username: String,
    pub holder_id: String,
    pub holder_kind: HolderKind,
    pub holder_name: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLicence {
    /// One of `resident_id`, `household_register`, `birth_certificate`, `marriage_certificate`,
    /// `business_licence`, `property_certificate`.
    pub licence_type: String,
    pub holder_id: String,
    pub holder_name: String,
    /// RFC 3339; absent for a licence without end.
    pub valid_until: Option<String>,
    /// What the licence says (an object of at most 50 members).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// The document a licence is: what the seal covers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenceDocument {
    pub id: String,
    pub licence_type: String,
    pub holder_id: String,
    pub holder_name: String,
    pub issuer: String,
    pub issued_at: String,
    pub valid_until: Option<String>,
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Licence {
    pub document: LicenceDocument,
    /// `valid`, `suspended`, `revoked` or `expired`.
    pub status: String,
    pub status_reason: String,
    /// Whether the seal verifies against the stored document now.
    pub seal_verified: bool,
    pub seal: seals::Seal,
}

impl Licence {
    /// Whether it may stand as a material: sealed right, valid, not expired.
    pub fn usable(&self) -> bool {
        self.seal_verified && self.status == "valid"
    }
}

/// What anyone may learn of a licence by its identifier: whether to believe it, not whose it
/// is (the holder's number is masked).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Verification {
    pub id: String,
    pub licence_type: String,
    pub issuer: String,
    pub issued_at: String,
    pub valid_until: Option<String>,
    /// The holder's number with its middle hidden.
    pub holder: String,
    pub status: String,
    pub seal_verified: bool,
    /// True only when the seal verifies and the status is valid.
    pub genuine: bool,
    /// Why it is not to be believed, when it is not.
    pub reasons: Vec<String>,
}

#[derive(Clone)]
pub struct Licences {
    pub(crate) db: Db,
    pub(crate) identity: Identity,
}

type LicenceRow = (String, String, i64, Option<i64>, String, String, String);

fn mask(holder_id: &str) -> String {
    holder_id
        .chars()
        .enumerate()
        .map(|(i, c)| if (4..14).contains(&i) { '*' } else { c })
        .collect()
}

impl Licences {
    pub fn new(db: Db, identity: Identity) -> Licences {
        Licences { db, identity }
    }

    /// Binds a user to the holder they are (done by the platform admin or the approval bureau
    /// after real-name checks; the number is checked here).
    pub async fn bind(
        &self,
        by: &Principal,
        username: &str,
        binding: HolderBinding,
    ) -> Result<Holder, Problem> {
        if !by.is_platform_admin() {
            return Err(Problem::forbidden(
                "holders are bound by the platform admin after real-name checks",
            ));
        }
        let user = self
            .identity
            .user_by_username(username)
            .await?
            .ok_or_else(|| Problem::not_found(format!("no user {username}")))?;
        let (kind, holder_id) = holder_kind(&binding.holder_id)?;
        let name = binding.holder_name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Problem::validation("holder_name: 1 to 100 characters")
                .with_extension("field", "holder_name"));
        }
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM svc_holders WHERE user_id = $1")
            .bind(&user.id)
            .execute(&mut **tx)
            .await
            .db()?;
        let inserted = sqlx::query(
            "INSERT INTO svc_holders (user_id, holder_id, holder_kind, holder_name, bound_by, bound_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&user.id)
        .bind(&holder_id)
        .bind(kind_str(kind))
        .bind(name)
        .bind(&by.name)
        .bind(yunnao_core::time::now_ms())
        .execute(&mut **tx)
        .await;
        if inserted.is_err() {
            return Err(Problem::conflict(format!(
                "holder {} is bound to another user",
                mask(&holder_id)
            )));
        }
        tx.commit().await?;
        Ok(Holder {
            username: user.username,
            holder_id,
            holder_kind: kind,
            holder_name: name.to_owned(),
        })
    }

    /// The holder the signed-in user is, if bound.
    pub async fn holder_of(&self, principal: &Principal) -> Result<Option<Holder>, Problem> {
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT holder_id, holder_kind, holder_name FROM svc_holders WHERE user_id = $1",
        )
        .bind(&principal.id)
        .fetch_optional(self.db.pool())
        .await
        .db()?;
        Ok(row.map(|(holder_id, kind, holder_name)| Holder {
            username: principal.name.clone(),
            holder_id,
            holder_kind: if kind == "enterprise" {
                HolderKind::Enterprise
            } else {
                HolderKind::Person
            },
            holder_name,
        }))
    }

    /// A bound holder by number, with the user they are.
    pub async fn holder_by_id(&self, holder_id: &str) -> Result<Option<BoundHolder>, Problem> {
        let (_, holder_id) = holder_kind(holder_id)?;
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT user_id, holder_id, holder_name FROM svc_holders WHERE holder_id = $1",
        )
        .bind(&holder_id)
        .fetch_optional(self.db.pool())
        .await
        .db()?;
        Ok(row.map(|(user_id, holder_id, holder_name)| BoundHolder {
            user_id,
            holder_id,
            holder_name,
        }))
    }

    /// Every use of one of the caller's licences: which application, which department, what.
    pub async fn uses(&self, principal: &Principal, id: &str) -> Result<Vec<LicenceUse>, Problem> {
        // Who may see the uses is told by the columns; the seal has no say in that, so it is
        // not verified here (a holder's page asks this for every licence it shows).
        let missing = || Problem::not_found(format!("no licence {id} of yours"));
        let (holder_id, issuer): (String, String) =
            sqlx::query_as("SELECT holder_id, issuer FROM svc_licences WHERE id = $1")
                .bind(id)
                .fetch_optional(self.db.pool())
                .await
                .db()?
                .ok_or_else(missing)?;
        let holder = self.holder_of(principal).await?;
        if holder.is_none_or(|h| h.holder_id != holder_id)
            && !principal.may(Resource::Licences, Action::Read, &issuer)
        {
            return Err(missing());
        }
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT application_id, department, action, at_ms FROM svc_licence_uses WHERE licence_id = $1 ORDER BY at_ms DESC LIMIT 500",
        )
        .bind(id)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(rows
            .into_iter()
            .map(|(application_id, department, action, at)| LicenceUse {
                application_id,
                department,
                action,
                at: yunnao_core::time::rfc3339_ms(at),
            })
            .collect())
    }

    /// Issues a licence in the caller's department, sealed with its e-seal.
    pub async fn issue(&self, by: &Principal, new: NewLicence) -> Result<Licence, Problem> {
        by.require(Resource::Licences, Action::Write, &by.department)?;
        let prepared = self.prepare(&by.department, new).await?;
        let mut tx = self.db.begin_write().await?;
        Licences::insert(&mut tx, &prepared).await?;
        tx.commit().await?;
        Ok(prepared.into_licence())
    }

    /// Checks and seals a licence of `issuer`'s; nothing is stored yet.
    pub async fn prepare(&self, issuer: &str, new: NewLicence) -> Result<PreparedLicence, Problem> {
        let field = |name: &str, reason: String| {
            Problem::validation(format!("{name}: {reason}")).with_extension("field", name)
        };
        let (_, number, _, _, holder) = TYPES
            .iter()
            .find(|t| t.0 == new.licence_type)
            .copied()
            .ok_or_else(|| {
                field(
                    "licence_type",
                    format!(
                        "one of {}",
                        TYPES.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
        let (kind, holder_id) = holder_kind(&new.holder_id)?;
        if holder != HolderKind::Any && holder != kind {
            return Err(field(
                "holder_id",
                format!("a {} is held by a {:?}", new.licence_type, holder).to_lowercase(),
            ));
        }
        let holder_name = new.holder_name.trim().to_owned();
        if holder_name.is_empty() || holder_name.chars().count() > 100 {
            return Err(field("holder_name", "1 to 100 characters".into()));
        }
        let now = yunnao_core::time::now_ms();
        let valid_until_ms = match &new.valid_until {
            Some(text) => Some(
                yunnao_core::time::parse_rfc3339_ms(text)
                    .filter(|ms| *ms > now)
                    .ok_or_else(|| field("valid_until", "an RFC 3339 time in the future".into()))?,
            ),
            None => None,
        };
        if new.data.len() > 50 || serde_json::to_string(&new.data).map_or(0, |s| s.len()) > 16_384 {
            return Err(field("data", "at most 50 members and 16 KiB".into()));
        }
        let year = chrono::Utc::now().format("%Y").to_string();
        // Eight digits of a fresh UUID: unguessable, and the primary key refuses a repeat.
        let serial: String = uuid::Uuid::new_v4()
            .as_u128()
            .to_string()
            .chars()
            .rev()
            .take(8)
            .collect();
        let stem = format!("{REGION}{number}{year}{serial}");
        let check = ids::mod37_36_check(&stem).ok_or_else(|| Problem::internal("identifier"))?;
        let document = LicenceDocument {
            id: format!("{stem}{check}"),
            licence_type: new.licence_type,
            holder_id,
            holder_name,
            issuer: issuer.to_owned(),
            issued_at: yunnao_core::time::rfc3339_ms(now),
            valid_until: valid_until_ms.map(yunnao_core::time::rfc3339_ms),
            data: new.data,
        };
        let content = SealContent {
            document: Some(
                serde_json::to_value(&document).map_err(|e| Problem::internal(e.to_string()))?,
            ),
            content_base64: None,
        };
        let sealed = seals::seal(&self.identity, issuer, content).await?;
        Ok(PreparedLicence {
            document,
            sealed,
            valid_until_ms,
            issued_at_ms: now,
        })
    }

    /// Stores a prepared licence in `tx`.
    pub async fn insert(
        tx: &mut yunnao_store::WriteTx,
        prepared: &PreparedLicence,
    ) -> Result<(), Problem> {
        let sealed_json = serde_json::to_string(&prepared.sealed)
            .map_err(|e| Problem::internal(e.to_string()))?;
        let document = &prepared.document;
        sqlx::query(
            "INSERT INTO svc_licences (id, licence_type, holder_id, issuer, issued_at_ms, valid_until_ms, status, status_reason, sealed) \
             VALUES ($1, $2, $3, $4, $5, $6, 'valid', '', $7)",
        )
        .bind(&document.id)
        .bind(&document.licence_type)
        .bind(&document.holder_id)
        .bind(&document.issuer)
        .bind(prepared.issued_at_ms)
        .bind(prepared.valid_until_ms)
        .bind(&sealed_json)
        .execute(&mut ***tx)
        .await
        .db()?;
        Ok(())
    }

    async fn row(&self, id: &str) -> Result<Option<LicenceRow>, Problem> {
        sqlx::query_as(
            "SELECT id, issuer, issued_at_ms, valid_until_ms, status, status_reason, sealed FROM svc_licences WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .db()
    }

    /// A stored licence with its seal checked against the department's key now.
    async fn read(&self, row: LicenceRow) -> Result<Licence, Problem> {
        let (_, _, _, valid_until_ms, status, status_reason, sealed) = row;
        let sealed: SealedDocument = serde_json::from_str(&sealed).map_err(|e| {
            Problem::internal(format!("a stored licence is not a sealed document: {e}"))
        })?;
        let seal_verified = seals::verify(&self.identity, &sealed).await.is_ok();
        let document: LicenceDocument = sealed
            .content
            .document
            .clone()
            .and_then(|d| serde_json::from_value(d).ok())
            .ok_or_else(|| Problem::internal("a stored licence's document is not a licence"))?;
        // The sealed validity decides; the column (for finding) can only shorten it.
        let now = yunnao_core::time::now_ms();
        let sealed_until = document
            .valid_until
            .as_deref()
            .and_then(yunnao_core::time::parse_rfc3339_ms);
        let expired = valid_until_ms.is_some_and(|ms| ms <= now)
            || sealed_until.is_some_and(|ms| ms <= now)
            || (document.valid_until.is_some() && sealed_until.is_none());
        Ok(Licence {
            document,
            status: if status == "valid" && expired {
                "expired".into()
            } else {
                status
            },
            status_reason,
            seal_verified,
            seal: sealed.seal,
        })
    }

    /// Anyone may ask whether a licence is genuine.
    pub async fn verify(&self, id: &str) -> Result<Verification, Problem> {
        let row = self
            .row(id)
            .await?
            .ok_or_else(|| Problem::not_found(format!("no licence {id}")))?;
        let licence = self.read(row).await?;
        let mut reasons = Vec::new();
        if !licence.seal_verified {
            reasons.push(
                "the seal does not verify: the licence was altered or not sealed by its issuer"
                    .to_owned(),
            );
        }
        if licence.status != "valid" {
            reasons.push(format!("the licence is {}", licence.status));
        }
        if licence.document.id != id {
            reasons.push("the sealed document names another licence".to_owned());
        }
        let d = &licence.document;
        Ok(Verification {
            id: id.to_owned(),
            licence_type: d.licence_type.clone(),
            issuer: d.issuer.clone(),
            issued_at: d.issued_at.clone(),
            valid_until: d.valid_until.clone(),
            holder: mask(&d.holder_id),
            status: licence.status.clone(),
            seal_verified: licence.seal_verified,
            genuine: reasons.is_empty(),
            reasons,
        })
    }

    /// A licence for its holder or its issuer's staff; to anyone else it does not exist.
    pub async fn get(&self, principal: &Principal, id: &str) -> Result<Licence, Problem> {
        let row = self.row(id).await?;
        let missing = || Problem::not_found(format!("no licence {id} of yours"));
        let row = row.ok_or_else(missing)?;
        let licence = self.read(row).await?;
        let holder = self.holder_of(principal).await?;
        let mine = holder.is_some_and(|h| h.holder_id == licence.document.holder_id);
        if mine || principal.may(Resource::Licences, Action::Read, &licence.document.issuer) {
            Ok(licence)
        } else {
            Err(missing())
        }
    }

    /// A holder's licences that may stand as materials now: (id, type), newest first. Each
    /// seal is checked; an altered, suspended, revoked or expired licence is left out.
    pub async fn usable_of(&self, holder_id: &str) -> Result<Vec<(String, String)>, Problem> {
        let rows: Vec<LicenceRow> = sqlx::query_as(
            "SELECT id, issuer, issued_at_ms, valid_until_ms, status, status_reason, sealed FROM svc_licences \
             WHERE holder_id = $1 AND status = 'valid' ORDER BY issued_at_ms DESC, id LIMIT 200",
        )
        .bind(holder_id)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let mut out = Vec::new();
        for row in rows {
            let licence = self.read(row).await?;
            if licence.usable() && licence.document.holder_id == holder_id {
                out.push((licence.document.id, licence.document.licence_type));
            }
        }
        Ok(out)
    }

    /// The licence of `licence_type` a material is filled from: the newest one the holder
    /// consented to that may stand (its seal verifies, valid, not expired), and otherwise the
    /// newest that may stand, to ask consent for. Only the licences looked at are verified.
    pub async fn usable_for(
        &self,
        holder_id: &str,
        licence_type: &str,
        consented: &[String],
    ) -> Result<(Option<String>, Option<String>), Problem> {
        let rows: Vec<LicenceRow> = sqlx::query_as(
            "SELECT id, issuer, issued_at_ms, valid_until_ms, status, status_reason, sealed FROM svc_licences \
             WHERE holder_id = $1 AND licence_type = $2 AND status = 'valid' ORDER BY issued_at_ms DESC, id LIMIT 200",
        )
        .bind(holder_id)
        .bind(licence_type)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let mut newest_usable = None;
        for row in rows {
            let consented_to = consented.contains(&row.0);
            if !consented_to && newest_usable.is_some() {
                continue;
            }
            let licence = self.read(row).await?;
            // The sealed document, not the columns beside it, says whose and what it is.
            if !(licence.usable()
                && licence.document.holder_id == holder_id
                && licence.document.licence_type == licence_type)
            {
                continue;
            }
            if consented_to {
                return Ok((Some(licence.document.id), None));
            }
            newest_usable = Some(licence.document.id);
        }
        Ok((None, newest_usable))
    }

    /// A holder's licences by status alone, (id, type), newest first: for binding them to
    /// something, not for believing them (their seals are not checked here).
    pub async fn held(&self, holder_id: &str) -> Result<Vec<(String, String)>, Problem> {
        sqlx::query_as(
            "SELECT id, licence_type FROM svc_licences WHERE holder_id = $1 AND status = 'valid' ORDER BY issued_at_ms DESC, id LIMIT 200",
        )
        .bind(holder_id)
        .fetch_all(self.db.pool())
        .await
        .db()
    }

    /// Whether one licence of the holder's may stand as a material now.
    pub async fn is_usable(&self, holder_id: &str, id: &str) -> Result<bool, Problem> {
        Ok(self.sealed_of(holder_id, id).await?.is_some())
    }

    /// One licence of the holder's, whole with its seal, while it may stand (its seal
    /// verifies, it is valid and the sealed document names the holder).
    pub async fn sealed_of(&self, holder_id: &str, id: &str) -> Result<Option<Licence>, Problem> {
        let Some(row) = self.row(id).await? else {
            return Ok(None);
        };
        let licence = self.read(row).await?;
        Ok((licence.usable() && licence.document.holder_id == holder_id).then_some(licence))
    }

    /// The signed-in holder's licences (我的证照), newest first.
    pub async fn mine(&self, principal: &Principal) -> Result<Vec<Licence>, Problem> {
        let Some(holder) = self.holder_of(principal).await? else {
            return Err(Problem::forbidden(
                "this account is not bound to an identity number or credit code",
            ));
        };
        let rows: Vec<LicenceRow> = sqlx::query_as(
            "SELECT id, issuer, issued_at_ms, valid_until_ms, status, status_reason, sealed FROM svc_licences \
             WHERE holder_id = $1 ORDER BY issued_at_ms DESC, id LIMIT 200",
        )
        .bind(&holder.holder_id)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.read(row).await?);
        }
        Ok(out)
    }

    /// Suspends, revokes or restores a licence: its issuer's staff only, with a reason.
    pub async fn set_status(
        &self,
        principal: &Principal,
        id: &str,
        status: &str,
        reason: &str,
    ) -> Result<Licence, Problem> {
        if !matches!(status, "valid" | "suspended" | "revoked") {
            return Err(Problem::validation("status: valid, suspended or revoked")
                .with_extension("field", "status"));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(Problem::validation("reason: 1 to 500 characters")
                .with_extension("field", "reason"));
        }
        let row = self
            .row(id)
            .await?
            .ok_or_else(|| Problem::not_found(format!("no licence {id}")))?;
        let issuer = row.1.clone();
        if !principal.may(Resource::Licences, Action::Read, &issuer) {
            return Err(Problem::not_found(format!("no licence {id}")));
        }
        principal.require(Resource::Licences, Action::Write, &issuer)?;
        if row.4 == "revoked" {
            return Err(Problem::conflict("a revoked licence stays revoked"));
        }
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE svc_licences SET status = $1, status_reason = $2 WHERE id = $3")
            .bind(status)
            .bind(reason)
            .bind(id)
            .execute(&mut **tx)
            .await
            .db()?;
        tx.commit().await?;
        let row = self
            .row(id)
            .await?
            .ok_or_else(|| Problem::internal("licence vanished"))?;
        self.read(row).await
    }
}

impl PreparedLicence {
    pub fn into_licence(self) -> Licence {
        Licence {
            document: self.document,
            status: "valid".into(),
            status_reason: String::new(),
            seal_verified: true,
            seal: self.sealed.seal,
        }
    }
}

fn kind_str(kind: HolderKind) -> &'static str {
    match kind {
        HolderKind::Person => "person",
        HolderKind::Enterprise => "enterprise",
        HolderKind::Any => "any",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_told_apart_and_checked() {
        assert_eq!(
            holder_kind("11010519491231002X").map(|h| h.0).ok(),
            Some(HolderKind::Person)
        );
        assert_eq!(
            holder_kind("91370200163562681G").map(|h| h.0).ok(),
            Some(HolderKind::Enterprise)
        );
        for bad in ["110105194912310021", "91370200163562681H", "12345"] {
            let refused = holder_kind(bad).expect_err(bad);
            assert_eq!(refused.status, 422, "{bad}");
        }
        assert_eq!(mask("11010519491231002X"), "1101**********002X");
    }
}
