//! The code hub on the database.
//!
//! - Signing keys, one active per algorithm (SM2-SM3 by default, ES256 for scenarios outside
//!   China), sealed with the platform's field cipher. A rotation retires the active key; a
//!   retired key stays published and trusted until every code it signed has expired
//!   ([`RETIRED_KEY_KEPT_S`]).
//! - The published key set is signed with a long-lived key-set key (`KS1`), so an offline gate
//!   that pinned that key can take a refreshed set from anywhere.
//! - The trust list: certificates of other issuers the bureau trusts (X.509; key id = the
//!   first 8 bytes of the SHA-256 of the DER) and the prefixes of their schemes.
//! - Holders' pseudonymous subjects (random, per holder) and their bound cards (licences of the
//!   e-licence library and cards such as a transit account) behind random handles. A renewal
//!   retires the subject (a lost phone), a bureau revocation blocks the holder; both are read
//!   by every online scan from the database, so they take effect at once on every node.
//! - The scan log, with replay protection: a dynamic code is accepted once per scenario (a
//!   partial unique index on accepted scans, so also when several nodes share PostgreSQL).
//!
//! Every node reloads keys and trust from the database every [`RELOAD_EVERY`].

use crate::{
    CARD_KINDS, CardRef, Claims, DEFAULT_LIFETIME_S, KeySet, Signer, SigningKey, TrustedKey,
    Verdict, VerifyKey,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use yunnao_core::Problem;
use yunnao_identity::{Action, Identity, Principal, Resource};
use yunnao_services::licences::Licences;
use yunnao_store::{Db, DbResultExt, sqlx};

const SCENARIOS: &str = include_str!("../data/scenarios.json");
pub const ISSUER: &str = "QD";
/// How long a retired key stays published: past its codes' lifetime and a gate's refresh.
pub const RETIRED_KEY_KEPT_S: i64 = DEFAULT_LIFETIME_S + 600;
/// How often each node reloads keys and the trust list.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);
/// How long a published key set may be cached (and how far back it lists revocations).
pub const KEY_SET_MAX_AGE_S: i64 = 300;
/// Codes that live longer than this are static (a vaccination certificate) and may be shown
/// again; shorter ones are dynamic and accepted once per scenario.
const DYNAMIC_CODE_MAX_S: i64 = 3_600;
const KEY_SET_KID: &str = "KS1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Scenario {
    pub code: String,
    pub name_zh: String,
    /// 政用, 民用 or 商用.
    pub category: String,
    /// The operator's department: its staff and API clients verify here.
    pub department: String,
    /// What a verification here may learn: `valid`, `holder_kind`, `name`, `id_number`,
    /// `age_over_60`, or a card kind (`transit_account`, `library_card`, `business_licence`, …).
    pub claims: Vec<String>,
}

/// A code as the holder's page shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct IssuedCode {
    pub code: String,
    /// `SM2-SM3` or `ES256`.
    pub algorithm: String,
    pub kid: String,
    /// RFC 3339.
    pub expires_at: String,
    pub lifetime_s: i64,
    pub qr_version: i16,
    pub svg: String,
    /// The kinds of the cards bound to it.
    pub cards: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    pub scenario: String,
    pub code: String,
}

/// What a scenario learns from a scan: the verdict by stage and only its permitted claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ScanAnswer {
    pub accepted: bool,
    /// `accepted`, `invalid`, `expired`, `untrusted`, `replayed`, `revoked` or `not_permitted`.
    pub result: String,
    pub reason: Option<String>,
    pub prefix: bool,
    pub base45: bool,
    pub zlib: bool,
    pub cose: bool,
    pub claims_valid: bool,
    pub signature: bool,
    pub expiry: bool,
    /// The issuer whose key verified the code (this city's, or another the bureau trusts).
    pub issuer: Option<String>,
    pub algorithm: Option<String>,
    /// Only what the scenario may learn. A licence comes whole (document, seal, whether the
    /// seal verifies); a card as its number.
    #[schema(value_type = Object)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ScanRecord {
    pub scenario: String,
    pub scenario_name: String,
    pub result: String,
    pub at: String,
}

/// A card bound to the holder's code, as the holder sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct BoundCard {
    pub handle: String,
    pub kind: String,
    /// The card's number or the licence's identifier.
    pub id: String,
    /// Whether it came from the e-licence library.
    pub licence: bool,
    pub revoked: bool,
}

/// One key of the published key set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PublishedKey {
    pub kid: String,
    /// `SM2-SM3` (COSE -70101), `ES256` (-7) or `PS256` (-37).
    pub algorithm: String,
    /// SEC1 uncompressed point (hex) for SM2 and P-256, SPKI DER (hex) for RSA.
    pub public_key: String,
    /// RFC 3339; a retired key signs no new codes.
    pub retired_at: Option<String>,
}

/// An issuer of another scheme the bureau trusts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TrustedIssuer {
    /// The DCC key id: base64 of the first 8 bytes of the SHA-256 of the certificate's DER.
    pub kid: String,
    pub name: String,
    /// The scheme's prefix (`HC1:` for the EU DCC).
    pub prefix: String,
    pub algorithm: String,
    /// The certificate's subject.
    pub subject: String,
    /// The certificate, base64 of its DER.
    pub certificate: String,
    pub not_after: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTrustedIssuer {
    pub name: String,
    pub prefix: String,
    /// PEM, or base64 of the DER.
    pub certificate: String,
}

/// What an offline gate needs: the keys, the trust list and recent revocations, signed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct KeySetDocument {
    pub issuer: String,
    /// RFC 3339: when this set was made, and until when a gate may use it without refreshing.
    pub issued_at: String,
    pub refresh_before: String,
    pub keys: Vec<PublishedKey>,
    pub trusted: Vec<TrustedIssuer>,
    /// Subjects revoked or renewed in the last [`KEY_SET_MAX_AGE_S`] seconds and more: every
    /// revocation whose codes may still be alive.
    pub revoked_subjects: Vec<String>,
    pub revoked_cards: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SignedKeySet {
    #[serde(flatten)]
    pub document: KeySetDocument,
    /// SM2 (GB/T 32918, SM3) over the document's JSON without this member, by `KS1`.
    pub signature: KeySetSignature,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct KeySetSignature {
    pub kid: String,
    pub algorithm: String,
    /// SEC1 hex: pin it in the gate.
    pub public_key: String,
    /// r || s, hex.
    pub value: String,
}

impl SignedKeySet {
    /// Checks the signature against a pinned key-set key (hex) and turns the set into what
    /// [`crate::verify`] takes, with the revoked subjects and cards beside it.
    pub fn verified(&self, pinned: &str) -> Result<(KeySet, Vec<String>, Vec<String>), String> {
        let key = yunnao_gm::Sm2PublicKey::from_hex(pinned)
            .map_err(|_| "the pinned key-set key is not an SM2 public key".to_owned())?;
        let body = serde_json::to_vec(&self.document).map_err(|e| e.to_string())?;
        yunnao_gm::Sm2Signature::from_hex(&self.signature.value)
            .and_then(|s| key.verify(&body, &s))
            .map_err(|_| "the key set's signature does not verify".to_owned())?;
        Ok((
            self.document.key_set()?,
            self.document.revoked_subjects.clone(),
            self.document.revoked_cards.clone(),
        ))
    }
}

impl KeySetDocument {
    /// The keys as a verifier's [`KeySet`] (the signature is not checked here).
    pub fn key_set(&self) -> Result<KeySet, String> {
        let mut set = KeySet::new();
        for key in &self.keys {
            set.insert(
                key.kid.as_bytes(),
                TrustedKey {
                    key: VerifyKey::from_hex(&key.algorithm, &key.public_key)
                        .map_err(|e| e.to_string())?,
                    issuer: self.issuer.clone(),
                    not_before: None,
                    not_after: None,
                },
            );
        }
        for issuer in &self.trusted {
            set.trust_certificate(issuer.certificate.as_bytes())
                .map_err(|e| e.to_string())?;
            set.accept_prefix(&issuer.prefix);
        }
        Ok(set)
    }
}

/// Scans per day and refusals by reason, per scenario.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ScenarioFigures {
    pub code: String,
    pub name_zh: String,
    pub category: String,
    pub department: String,
    /// Scans in the last 24 hours, by result.
    pub scans_24h: i64,
    pub accepted_24h: i64,
    /// (result, count) of the refusals in the last 24 hours.
    pub refusals_24h: Vec<(String, i64)>,
    /// (day, scans) for the last 7 days, oldest first (days in UTC+8).
    pub per_day: Vec<(String, i64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CodeFigures {
    /// Scenarios with an accepted scan in the last 7 days (live), and all seeded.
    pub live_scenarios: i64,
    pub scenarios: i64,
    pub scans_today: i64,
    pub scenario_figures: Vec<ScenarioFigures>,
}

/// The keys in use, reloaded from the database.
struct KeyState {
    /// The active signer of each algorithm.
    signers: Vec<Arc<Signer>>,
    verifier: KeySet,
    published: Vec<PublishedKey>,
    trusted: Vec<TrustedIssuer>,
}

#[derive(Clone)]
pub struct Codes {
    db: Db,
    licences: Licences,
    cipher: Arc<yunnao_gm::FieldCipher>,
    state: Arc<RwLock<Arc<KeyState>>>,
    key_set_key: Arc<yunnao_gm::Sm2KeyPair>,
    /// The signed key set of the last few seconds (it is public: anyone may ask often), dropped
    /// at every change made on this node and at every reload.
    key_set_cache: Arc<std::sync::Mutex<Option<(i64, SignedKeySet)>>>,
    scenarios: Arc<Vec<Scenario>>,
}

/// Whether a card kind is an e-licence of the library (as opposed to, say, a transit account).
fn is_licence(kind: &str) -> bool {
    yunnao_services::licences::TYPES.iter().any(|t| t.0 == kind)
}

fn internal(e: impl std::fmt::Display) -> Problem {
    Problem::internal(e.to_string())
}

type KeyRow = (String, String, String, String, i64, Option<i64>);

fn kid_prefix(algorithm: &str) -> &'static str {
    match algorithm {
        "ES256" => "E",
        "KEYSET" => "KS",
        _ => "Q",
    }
}

impl Codes {
    /// The hub: its keys made on first start and kept sealed in the database; a task reloads
    /// them (and the trust list) every [`RELOAD_EVERY`], so a rotation on one node reaches all.
    pub async fn start(db: Db, identity: Identity, licences: Licences) -> Result<Codes, Problem> {
        let scenarios: Vec<Scenario> = serde_json::from_str(SCENARIOS).map_err(internal)?;
        let cipher = Arc::new(identity.field_cipher("code-keys"));
        for algorithm in ["SM2-SM3", "ES256", "KEYSET"] {
            let exists: Option<(String,)> = sqlx::query_as(
                "SELECT kid FROM code_keys WHERE algorithm = $1 AND retired_at_ms IS NULL LIMIT 1",
            )
            .bind(algorithm)
            .fetch_optional(db.pool())
            .await
            .db()?;
            if exists.is_none() {
                let kid = format!("{}1", kid_prefix(algorithm));
                insert_key(&db, &cipher, &kid, algorithm).await?;
            }
        }
        let (kid, sealed): (String, String) = sqlx::query_as(
            "SELECT kid, private_sealed FROM code_keys WHERE algorithm = 'KEYSET' ORDER BY created_at_ms LIMIT 1",
        )
        .fetch_one(db.pool())
        .await
        .db()?;
        let key_set_key = match unseal(&cipher, &kid, "SM2-SM3", &sealed)? {
            SigningKey::Sm2(key) => key,
            SigningKey::Es256(_) => return Err(Problem::internal("the key-set key is not SM2")),
        };
        let codes = Codes {
            state: Arc::new(RwLock::new(Arc::new(load(&db, &cipher).await?))),
            db,
            licences,
            cipher,
            key_set_key: Arc::new(key_set_key),
            key_set_cache: Arc::default(),
            scenarios: Arc::new(scenarios),
        };
        let reloading = codes.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                if let Err(e) = reloading.reload().await {
                    tracing::warn!(error = %e.detail.unwrap_or_default(), "code keys not reloaded");
                }
            }
        });
        Ok(codes)
    }

    /// Reads keys and trust from the database again.
    pub async fn reload(&self) -> Result<(), Problem> {
        let state = load(&self.db, &self.cipher).await?;
        if let Ok(mut guard) = self.state.write() {
            *guard = Arc::new(state);
        }
        self.forget_key_set();
        Ok(())
    }

    fn forget_key_set(&self) {
        if let Ok(mut cached) = self.key_set_cache.lock() {
            *cached = None;
        }
    }

    fn state(&self) -> Arc<KeyState> {
        match self.state.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn scenarios(&self) -> &[Scenario] {
        &self.scenarios
    }

    /// The verifier's keys (own and trusted), for gates in-process and the benchmark.
    pub fn verifier(&self) -> KeySet {
        self.state().verifier.clone()
    }

    /// The published key set, signed.
    pub async fn key_set(&self) -> Result<SignedKeySet, Problem> {
        let now = yunnao_core::time::now_ms();
        if let Ok(cached) = self.key_set_cache.lock()
            && let Some((at, set)) = cached.as_ref()
            && now - at < RELOAD_EVERY.as_millis() as i64
        {
            return Ok(set.clone());
        }
        let state = self.state();
        let since = now - (KEY_SET_MAX_AGE_S + DEFAULT_LIFETIME_S) * 1000;
        let revoked_subjects: Vec<(String,)> = sqlx::query_as(
            "SELECT subject FROM code_revoked_subjects WHERE revoked_at_ms >= $1 \
             UNION SELECT subject FROM code_subjects WHERE revoked_at_ms IS NOT NULL ORDER BY 1 LIMIT 100000",
        )
        .bind(since)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let revoked_cards: Vec<(String,)> = sqlx::query_as(
            "SELECT handle FROM code_cards WHERE revoked_at_ms >= $1 ORDER BY handle LIMIT 100000",
        )
        .bind(since)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let document = KeySetDocument {
            issuer: ISSUER.into(),
            issued_at: yunnao_core::time::rfc3339_ms(now),
            refresh_before: yunnao_core::time::rfc3339_ms(now + KEY_SET_MAX_AGE_S * 1000),
            keys: state.published.clone(),
            trusted: state.trusted.clone(),
            revoked_subjects: revoked_subjects.into_iter().map(|r| r.0).collect(),
            revoked_cards: revoked_cards.into_iter().map(|r| r.0).collect(),
        };
        let body = serde_json::to_vec(&document).map_err(internal)?;
        let signature = self.key_set_key.sign(&body);
        let set = SignedKeySet {
            document,
            signature: KeySetSignature {
                kid: KEY_SET_KID.into(),
                algorithm: "SM2-SM3".into(),
                public_key: self.key_set_key.public_key().to_hex(),
                value: hex::encode(signature.0),
            },
        };
        if let Ok(mut cached) = self.key_set_cache.lock() {
            *cached = Some((now, set.clone()));
        }
        Ok(set)
    }

    /// Retires the active key of `algorithm` and makes a new one; the old one stays published
    /// for [`RETIRED_KEY_KEPT_S`]. Returns the new key id.
    pub async fn rotate(&self, principal: &Principal, algorithm: &str) -> Result<String, Problem> {
        principal.require(Resource::CodeScheme, Action::Write, "")?;
        if !matches!(algorithm, "SM2-SM3" | "ES256") {
            return Err(Problem::validation("algorithm: SM2-SM3 or ES256")
                .with_extension("field", "algorithm"));
        }
        let kids: Vec<(String,)> = sqlx::query_as("SELECT kid FROM code_keys WHERE algorithm = $1")
            .bind(algorithm)
            .fetch_all(self.db.pool())
            .await
            .db()?;
        let prefix = kid_prefix(algorithm);
        let next = kids
            .iter()
            .filter_map(|k| k.0.strip_prefix(prefix)?.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let kid = format!("{prefix}{next}");
        let now = yunnao_core::time::now_ms();
        let key = SigningKey::generate(algorithm).map_err(internal)?;
        let sealed = self
            .cipher
            .encrypt(&key.secret_bytes(), kid.as_bytes())
            .map_err(internal)?;
        let mut tx = self.db.begin_write().await?;
        // A retired key's private half is dropped: it signs nothing again.
        sqlx::query(
            "UPDATE code_keys SET retired_at_ms = $1, private_sealed = '' WHERE algorithm = $2 AND retired_at_ms IS NULL",
        )
        .bind(now)
        .bind(algorithm)
        .execute(&mut **tx)
        .await
        .db()?;
        sqlx::query(
            "INSERT INTO code_keys (kid, algorithm, public_key, private_sealed, created_at_ms, retired_at_ms) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&kid)
        .bind(algorithm)
        .bind(key.verify_key().to_hex())
        .bind(hex::encode(sealed))
        .bind(now)
        .execute(&mut **tx)
        .await
        .db()?;
        tx.commit().await?;
        self.reload().await?;
        Ok(kid)
    }

    /// Trusts another scheme's issuer certificate.
    pub async fn trust(
        &self,
        principal: &Principal,
        new: NewTrustedIssuer,
    ) -> Result<TrustedIssuer, Problem> {
        use base64::Engine;
        principal.require(Resource::CodeScheme, Action::Write, "")?;
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(
                Problem::validation("name: 1 to 100 characters").with_extension("field", "name")
            );
        }
        let prefix = new.prefix.trim();
        let prefix_ok = (2..=8).contains(&prefix.len())
            && prefix.ends_with(':')
            && prefix[..prefix.len() - 1]
                .chars()
                .all(|c| c.is_ascii_alphanumeric());
        if !prefix_ok || prefix == crate::PREFIX {
            return Err(Problem::validation(
                "prefix: 1 to 7 letters or digits and a colon (e.g. HC1:), not this city's own QD1:",
            )
            .with_extension("field", "prefix"));
        }
        let der = crate::trust::certificate_der(new.certificate.as_bytes()).map_err(|e| {
            Problem::validation(format!("certificate: {e}")).with_extension("field", "certificate")
        })?;
        let (kid, trusted) = crate::trust::certificate(&der).map_err(|e| {
            Problem::validation(format!("certificate: {e}")).with_extension("field", "certificate")
        })?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let issuer = TrustedIssuer {
            kid: b64.encode(&kid),
            name: name.to_owned(),
            prefix: prefix.to_owned(),
            algorithm: trusted.key.algorithm_name().into(),
            subject: trusted.issuer.clone(),
            certificate: b64.encode(&der),
            not_after: trusted
                .not_after
                .map(|s| yunnao_core::time::rfc3339_ms(s * 1000)),
        };
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO code_trust (kid, name, prefix, certificate, added_by, added_at_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&issuer.kid)
        .bind(&issuer.name)
        .bind(&issuer.prefix)
        .bind(&issuer.certificate)
        .bind(&principal.name)
        .bind(yunnao_core::time::now_ms())
        .execute(&mut **tx)
        .await
        .db()?;
        if inserted.rows_affected() == 0 {
            return Err(Problem::conflict(format!(
                "the certificate {} is trusted already",
                issuer.kid
            )));
        }
        tx.commit().await?;
        self.reload().await?;
        Ok(issuer)
    }

    pub async fn distrust(&self, principal: &Principal, kid: &str) -> Result<(), Problem> {
        principal.require(Resource::CodeScheme, Action::Write, "")?;
        let mut tx = self.db.begin_write().await?;
        let removed = sqlx::query("DELETE FROM code_trust WHERE kid = $1")
            .bind(kid)
            .execute(&mut **tx)
            .await
            .db()?;
        if removed.rows_affected() == 0 {
            return Err(Problem::not_found(format!("no trusted certificate {kid}")));
        }
        tx.commit().await?;
        self.reload().await
    }

    pub fn trusted(&self) -> Vec<TrustedIssuer> {
        self.state().trusted.clone()
    }

    /// The holder's current subject, made on first use; `None` when the bureau revoked them.
    async fn subject_of(&self, holder_id: &str) -> Result<(String, bool), Problem> {
        let row: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT subject, revoked_at_ms FROM code_subjects WHERE holder_id = $1")
                .bind(holder_id)
                .fetch_optional(self.db.pool())
                .await
                .db()?;
        if let Some((subject, revoked)) = row {
            return Ok((subject, revoked.is_some()));
        }
        let subject = hex::encode(yunnao_gm::random_bytes::<12>().map_err(internal)?);
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO code_subjects (holder_id, subject, revoked_at_ms) VALUES ($1, $2, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(holder_id)
        .bind(&subject)
        .execute(&mut **tx)
        .await
        .db()?;
        tx.commit().await?;
        let (subject,): (String,) =
            sqlx::query_as("SELECT subject FROM code_subjects WHERE holder_id = $1")
                .bind(holder_id)
                .fetch_one(self.db.pool())
                .await
                .db()?;
        Ok((subject, false))
    }

    /// A lost phone: the holder's current subject is retired (every code made for it is
    /// refused from now on) and the next code carries a new one.
    pub async fn renew(&self, principal: &Principal) -> Result<(), Problem> {
        let holder = self.holder(principal).await?;
        let (subject, blocked) = self.subject_of(&holder.holder_id).await?;
        if blocked {
            return Err(Problem::forbidden(
                "this holder's code is revoked by the bureau",
            ));
        }
        let fresh = hex::encode(yunnao_gm::random_bytes::<12>().map_err(internal)?);
        let now = yunnao_core::time::now_ms();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO code_revoked_subjects (subject, holder_id, revoked_at_ms, reason) VALUES ($1, $2, $3, 'renewed by the holder') ON CONFLICT DO NOTHING",
        )
        .bind(&subject)
        .bind(&holder.holder_id)
        .bind(now)
        .execute(&mut **tx)
        .await
        .db()?;
        sqlx::query("UPDATE code_subjects SET subject = $1 WHERE holder_id = $2 AND subject = $3")
            .bind(&fresh)
            .bind(&holder.holder_id)
            .bind(&subject)
            .execute(&mut **tx)
            .await
            .db()?;
        tx.commit().await?;
        self.forget_key_set();
        Ok(())
    }

    /// The bureau revokes (or, with `revoked = false`, reinstates) the holder a subject names.
    pub async fn revoke_subject(
        &self,
        principal: &Principal,
        subject: &str,
        revoked: bool,
    ) -> Result<(), Problem> {
        principal.require(Resource::CodeScheme, Action::Write, "")?;
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query("UPDATE code_subjects SET revoked_at_ms = $1 WHERE subject = $2")
            .bind(revoked.then(yunnao_core::time::now_ms))
            .bind(subject)
            .execute(&mut **tx)
            .await
            .db()?;
        if changed.rows_affected() == 0 {
            return Err(Problem::not_found(format!(
                "no holder with the subject {subject}"
            )));
        }
        tx.commit().await?;
        self.forget_key_set();
        Ok(())
    }

    /// Binds a card (a transit account, a library card) to the holder's code.
    pub async fn bind_card(
        &self,
        principal: &Principal,
        kind: &str,
        card_id: &str,
    ) -> Result<(), Problem> {
        let holder = self.holder(principal).await?;
        if !CARD_KINDS.iter().any(|k| k.1 == kind) || is_licence(kind) {
            return Err(Problem::validation(format!(
                "kind: one of {} (licences bind themselves from the library)",
                CARD_KINDS
                    .iter()
                    .map(|k| k.1)
                    .filter(|k| !is_licence(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .with_extension("field", "kind"));
        }
        let card_id = card_id.trim();
        if card_id.is_empty()
            || card_id.chars().count() > 64
            || card_id.chars().any(|c| c.is_control())
        {
            return Err(Problem::validation("id: 1 to 64 printable characters")
                .with_extension("field", "id"));
        }
        let count: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM code_cards WHERE holder_id = $1")
            .bind(&holder.holder_id)
            .fetch_one(self.db.pool())
            .await
            .db()?;
        if count.0 >= 32 {
            return Err(Problem::validation("a holder binds at most 32 cards"));
        }
        self.store_card(&holder.holder_id, kind, card_id).await
    }

    /// Revokes one of the holder's bound cards: codes that refer to it are refused where the
    /// card is asked for, and new codes leave it out.
    pub async fn revoke_card(&self, principal: &Principal, handle: &str) -> Result<(), Problem> {
        let holder = self.holder(principal).await?;
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE code_cards SET revoked_at_ms = $1 WHERE handle = $2 AND holder_id = $3 AND revoked_at_ms IS NULL",
        )
        .bind(yunnao_core::time::now_ms())
        .bind(handle)
        .bind(&holder.holder_id)
        .execute(&mut **tx)
        .await
        .db()?;
        if changed.rows_affected() == 0 {
            return Err(Problem::not_found(format!(
                "no bound card {handle} of yours"
            )));
        }
        tx.commit().await?;
        self.forget_key_set();
        Ok(())
    }

    pub async fn cards(&self, principal: &Principal) -> Result<Vec<BoundCard>, Problem> {
        let holder = self.holder(principal).await?;
        let rows: Vec<(String, String, String, Option<i64>)> = sqlx::query_as(
            "SELECT handle, kind, card_id, revoked_at_ms FROM code_cards WHERE holder_id = $1 ORDER BY kind, card_id",
        )
        .bind(&holder.holder_id)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(rows
            .into_iter()
            .map(|(handle, kind, id, revoked)| BoundCard {
                licence: is_licence(&kind),
                handle,
                kind,
                id,
                revoked: revoked.is_some(),
            })
            .collect())
    }

    async fn store_card(&self, holder_id: &str, kind: &str, card_id: &str) -> Result<(), Problem> {
        let handle = hex::encode(yunnao_gm::random_bytes::<6>().map_err(internal)?);
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO code_cards (handle, holder_id, kind, card_id, revoked_at_ms) VALUES ($1, $2, $3, $4, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(&handle)
        .bind(holder_id)
        .bind(kind)
        .bind(card_id)
        .execute(&mut **tx)
        .await
        .db()?;
        tx.commit().await?;
        self.forget_key_set();
        Ok(())
    }

    async fn holder(
        &self,
        principal: &Principal,
    ) -> Result<yunnao_services::licences::Holder, Problem> {
        self.licences.holder_of(principal).await?.ok_or_else(|| {
            Problem::forbidden("this account is not bound to an identity number or credit code")
        })
    }

    /// A fresh dynamic code for the signed-in holder, signed with `algorithm` (SM2-SM3 unless
    /// asked); the licences in their library that a code can refer to are bound on the way.
    pub async fn issue(
        &self,
        principal: &Principal,
        algorithm: Option<&str>,
    ) -> Result<IssuedCode, Problem> {
        let algorithm = algorithm.unwrap_or("SM2-SM3");
        let state = self.state();
        let signer = state
            .signers
            .iter()
            .find(|s| s.key.algorithm_name() == algorithm)
            .cloned()
            .ok_or_else(|| {
                Problem::validation("algorithm: SM2-SM3 or ES256")
                    .with_extension("field", "algorithm")
            })?;
        let holder = self.holder(principal).await?;
        let (subject, revoked) = self.subject_of(&holder.holder_id).await?;
        if revoked {
            return Err(Problem::forbidden(
                "this holder's code is revoked by the bureau",
            ));
        }
        // Licences issued since the last code bind themselves once; their seals are checked
        // when a scenario is given one, not at every refresh of the page.
        let bound: Vec<(String, String, String, Option<i64>)> = sqlx::query_as(
            "SELECT kind, handle, card_id, revoked_at_ms FROM code_cards WHERE holder_id = $1 ORDER BY kind, handle",
        )
        .bind(&holder.holder_id)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let mut added = false;
        for (licence_id, licence_type) in self.licences.held(&holder.holder_id).await? {
            if CARD_KINDS.iter().any(|k| k.1 == licence_type)
                && !bound.iter().any(|b| b.2 == licence_id)
            {
                self.store_card(&holder.holder_id, &licence_type, &licence_id)
                    .await?;
                added = true;
            }
        }
        let bound = if added {
            sqlx::query_as(
                "SELECT kind, handle, card_id, revoked_at_ms FROM code_cards WHERE holder_id = $1 ORDER BY kind, handle",
            )
            .bind(&holder.holder_id)
            .fetch_all(self.db.pool())
            .await
            .db()?
        } else {
            bound
        };
        // Eight references at most: with more the code would outgrow QR version 10 at level M.
        let cards: Vec<(String, String)> = bound
            .into_iter()
            .filter(|c| c.3.is_none())
            .map(|(kind, handle, _, _)| (kind, handle))
            .take(8)
            .collect();
        let now = yunnao_core::time::now_ms() / 1000;
        let claims = Claims {
            issuer: ISSUER.into(),
            subject,
            issued_at: now,
            expires_at: now + DEFAULT_LIFETIME_S,
            nonce: yunnao_gm::random_bytes::<6>().map_err(internal)?.to_vec(),
            holder_kind: match holder.holder_kind {
                yunnao_services::licences::HolderKind::Enterprise => "enterprise".into(),
                _ => "resident".into(),
            },
            refs: cards
                .iter()
                .map(|(kind, handle)| CardRef {
                    kind: kind.clone(),
                    handle: handle.clone(),
                })
                .collect(),
        };
        let code = crate::issue(&signer, &claims).map_err(internal)?;
        let (svg, qr_version) = crate::qr_svg(&code).map_err(internal)?;
        Ok(IssuedCode {
            code,
            algorithm: algorithm.to_owned(),
            kid: signer.kid.clone(),
            expires_at: yunnao_core::time::rfc3339_ms(claims.expires_at * 1000),
            lifetime_s: DEFAULT_LIFETIME_S,
            qr_version,
            svg,
            cards: cards.into_iter().map(|c| c.0).collect(),
        })
    }

    fn scenario(&self, code: &str) -> Result<&Scenario, Problem> {
        self.scenarios
            .iter()
            .find(|s| s.code == code)
            .ok_or_else(|| Problem::not_found(format!("no scenario {code}")))
    }

    /// A scan at a scenario by its operator's staff or API client: the verdict, recorded, and
    /// only the claims the scenario may learn.
    pub async fn scan(&self, principal: &Principal, scan: Scan) -> Result<ScanAnswer, Problem> {
        let scenario = self.scenario(&scan.scenario)?.clone();
        if !principal.may(Resource::CodeScans, Action::Write, &scenario.department) {
            return Err(Problem::forbidden(format!(
                "scenario {} is verified by its operator ({}) only",
                scenario.code, scenario.department
            )));
        }
        let now = yunnao_core::time::now_ms();
        let verdict: Verdict = crate::verify(&scan.code, &self.state().verifier, now / 1000);
        let mut answer = ScanAnswer {
            accepted: false,
            result: refusal(&verdict).into(),
            reason: verdict.error.clone(),
            prefix: verdict.prefix,
            base45: verdict.base45,
            zlib: verdict.zlib,
            cose: verdict.cose,
            claims_valid: verdict.claims,
            signature: verdict.signature,
            expiry: verdict.expiry,
            issuer: verdict.issuer.clone(),
            algorithm: verdict.algorithm.clone(),
            claims: serde_json::Map::new(),
        };
        let ours = verdict.valid() && verdict.decoded.is_some();
        let foreign = verdict.valid() && verdict.decoded.is_none();
        let claims = verdict.decoded.clone().filter(|_| ours);
        let subject = claims
            .as_ref()
            .map(|c| c.subject.clone())
            .unwrap_or_default();
        // Who the subject is, read at every scan: a revocation takes effect at once everywhere.
        let mut holder_id = String::new();
        let mut cards: Vec<(String, String, String, Option<i64>)> = Vec::new();
        if ours {
            // The subject and its cards in one read.
            type Row = (
                String,
                Option<i64>,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<i64>,
            );
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT s.holder_id, s.revoked_at_ms, c.handle, c.kind, c.card_id, c.revoked_at_ms \
                 FROM code_subjects s LEFT JOIN code_cards c ON c.holder_id = s.holder_id WHERE s.subject = $1",
            )
            .bind(&subject)
            .fetch_all(self.db.pool())
            .await
            .db()?;
            match rows.first() {
                Some((id, None, ..)) => holder_id = id.clone(),
                Some((_, Some(_), ..)) => {
                    answer.result = "revoked".into();
                    answer.reason = Some("the holder's code is revoked by the bureau".into());
                }
                None => {
                    answer.result = "revoked".into();
                    answer.reason =
                        Some("the code was renewed by its holder (a lost phone?)".into());
                }
            }
            if !holder_id.is_empty() {
                cards = rows
                    .into_iter()
                    .filter_map(|(_, _, handle, kind, id, revoked)| {
                        Some((handle?, kind?, id?, revoked))
                    })
                    .collect();
                let refs = claims.as_ref().map(|c| c.refs.as_slice()).unwrap_or(&[]);
                let needed_and_revoked = scenario.claims.iter().find(|claim| {
                    refs.iter()
                        .filter(|r| &r.kind == *claim)
                        .any(|r| cards.iter().any(|c| c.0 == r.handle && c.3.is_some()))
                });
                if let Some(kind) = needed_and_revoked {
                    answer.result = "revoked".into();
                    answer.reason = Some(format!("the {kind} bound to this code is revoked"));
                }
            }
        }
        let accept = (ours && !holder_id.is_empty() && answer.result == "invalid") || foreign;
        // A dynamic code is taken once per scenario; a static one (another scheme's
        // certificate) may be shown again.
        let nonce = match (&claims, foreign) {
            (Some(c), _) => hex::encode(&c.nonce),
            (None, true) => {
                let lifetime = verdict
                    .claim_set
                    .as_ref()
                    .and_then(|c| Some(c.get("4")?.as_i64()? - c.get("6")?.as_i64()?))
                    .unwrap_or(i64::MAX);
                if lifetime <= DYNAMIC_CODE_MAX_S {
                    hex::encode(&yunnao_gm::sm3(scan.code.trim().as_bytes())[..12])
                } else {
                    yunnao_core::new_id()
                }
            }
            _ => String::new(),
        };
        let scan_id = yunnao_core::new_id();
        let mut tx = self.db.begin_write().await?;
        let recorded = sqlx::query(
            "INSERT INTO code_scans (id, scenario, subject, nonce, result, reason, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&scan_id)
        .bind(&scenario.code)
        .bind(&subject)
        .bind(&nonce)
        .bind(if accept { "accepted" } else { answer.result.as_str() })
        .bind(truncate(answer.reason.as_deref().unwrap_or(""), 300))
        .bind(now)
        .execute(&mut **tx)
        .await;
        match recorded {
            Ok(_) => tx.commit().await?,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                drop(tx);
                // Seen here before: a replay. Recorded as such in a transaction of its own.
                let mut tx = self.db.begin_write().await?;
                sqlx::query(
                    "INSERT INTO code_scans (id, scenario, subject, nonce, result, reason, at_ms) VALUES ($1, $2, $3, $4, 'replayed', 'the code was used here already', $5)",
                )
                .bind(&scan_id)
                .bind(&scenario.code)
                .bind(&subject)
                .bind(&nonce)
                .bind(now)
                .execute(&mut **tx)
                .await
                .db()?;
                tx.commit().await?;
                answer.result = "replayed".into();
                answer.reason = Some("the code was used here already".into());
                return Ok(answer);
            }
            Err(e) => return Err(e).db(),
        }
        if !accept {
            return Ok(answer);
        }
        answer.accepted = true;
        answer.result = "accepted".into();
        answer.reason = None;
        if foreign {
            // Another scheme's holder: the scenario learns that the code is genuine, and whose
            // scheme it is, nothing of ours.
            if scenario.claims.iter().any(|c| c == "valid") {
                answer.claims.insert("valid".into(), true.into());
            }
            return Ok(answer);
        }
        let refs = claims.map(|c| c.refs).unwrap_or_default();
        let mut holder_name = None;
        let mut licences_used = Vec::new();
        for claim in &scenario.claims {
            let value = match claim.as_str() {
                "valid" => Some(serde_json::Value::Bool(true)),
                "holder_kind" => verdict
                    .decoded
                    .as_ref()
                    .map(|c| c.holder_kind.clone().into()),
                "name" => {
                    if holder_name.is_none() {
                        holder_name = self
                            .licences
                            .holder_by_id(&holder_id)
                            .await?
                            .map(|h| h.holder_name);
                    }
                    holder_name.clone().map(Into::into)
                }
                "id_number" => Some(holder_id.clone().into()),
                "age_over_60" => yunnao_services::ids::resident_id(&holder_id)
                    .ok()
                    .map(|id| {
                        use chrono::Datelike;
                        let today = chrono::Utc::now().date_naive();
                        let sixty = today.with_year(today.year() - 60).unwrap_or(today);
                        (id.born <= sixty).into()
                    }),
                kind => {
                    let card = refs.iter().filter(|r| r.kind == kind).find_map(|r| {
                        cards
                            .iter()
                            .find(|c| c.0 == r.handle && c.1 == kind && c.3.is_none())
                    });
                    match card {
                        // A licence is given out whole, only while its seal verifies and it
                        // is valid; the holder sees the use on 我的证照.
                        Some(c) if is_licence(kind) => {
                            match self.licences.sealed_of(&holder_id, &c.2).await? {
                                Some(licence) => {
                                    licences_used.push(c.2.clone());
                                    serde_json::to_value(licence).ok()
                                }
                                None => None,
                            }
                        }
                        Some(c) => Some(c.2.clone().into()),
                        None => None,
                    }
                }
            };
            if let Some(value) = value {
                answer.claims.insert(claim.clone(), value);
            }
        }
        if !licences_used.is_empty() {
            let mut tx = self.db.begin_write().await?;
            for id in &licences_used {
                yunnao_services::licences::record_use(
                    &mut tx,
                    id,
                    &format!("scan:{scan_id}"),
                    &scenario.department,
                    "scanned",
                )
                .await?;
            }
            tx.commit().await?;
        }
        Ok(answer)
    }

    /// Where the signed-in holder's code was scanned, newest first (their renewed subjects
    /// too).
    pub async fn my_scans(&self, principal: &Principal) -> Result<Vec<ScanRecord>, Problem> {
        let holder = self.holder(principal).await?;
        let (subject, _) = self.subject_of(&holder.holder_id).await?;
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT scenario, result, at_ms FROM code_scans WHERE subject = $1 \
             OR subject IN (SELECT subject FROM code_revoked_subjects WHERE holder_id = $2) \
             ORDER BY at_ms DESC LIMIT 200",
        )
        .bind(&subject)
        .bind(&holder.holder_id)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(rows
            .into_iter()
            .map(|(scenario, result, at)| ScanRecord {
                scenario_name: self
                    .scenarios
                    .iter()
                    .find(|s| s.code == scenario)
                    .map(|s| s.name_zh.clone())
                    .unwrap_or_default(),
                scenario,
                result,
                at: yunnao_core::time::rfc3339_ms(at),
            })
            .collect())
    }

    /// The latest scans at the scenarios the caller verifies for (all for the bureau).
    pub async fn scenario_scans(
        &self,
        principal: &Principal,
        scenario: &str,
        limit: i64,
    ) -> Result<Vec<ScanRecord>, Problem> {
        let s = self.scenario(scenario)?;
        principal.require(Resource::CodeScans, Action::Read, &s.department)?;
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT scenario, result, at_ms FROM code_scans WHERE scenario = $1 ORDER BY at_ms DESC LIMIT $2",
        )
        .bind(scenario)
        .bind(limit.clamp(1, 500))
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(rows
            .into_iter()
            .map(|(scenario, result, at)| ScanRecord {
                scenario_name: s.name_zh.clone(),
                scenario,
                result,
                at: yunnao_core::time::rfc3339_ms(at),
            })
            .collect())
    }

    /// Scans per day and refusals by reason for the scenarios the caller may read (all of
    /// them for the bureau); the live-scenario count is public (it is a plan figure).
    pub async fn figures(&self, principal: Option<&Principal>) -> Result<CodeFigures, Problem> {
        let now = yunnao_core::time::now_ms();
        const DAY: i64 = 86_400_000;
        // Days in China Standard Time.
        let today_start = (now + 8 * 3_600_000) / DAY * DAY - 8 * 3_600_000;
        let week_start = today_start - 6 * DAY;
        let Some(principal) = principal else {
            // The public figures only, by index probes: the overview asks every few seconds.
            let mut live = 0;
            for s in self.scenarios.iter() {
                let hit: Option<(i64,)> = sqlx::query_as(
                    "SELECT at_ms FROM code_scans WHERE scenario = $1 AND at_ms >= $2 AND result = 'accepted' LIMIT 1",
                )
                .bind(&s.code)
                .bind(now - 7 * DAY)
                .fetch_optional(self.db.pool())
                .await
                .db()?;
                live += i64::from(hit.is_some());
            }
            // By the scenario index: the scan log carries no index on time alone, one index
            // fewer to write at every scan.
            let mut today = 0;
            for s in self.scenarios.iter() {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM code_scans WHERE scenario = $1 AND at_ms >= $2",
                )
                .bind(&s.code)
                .bind(today_start)
                .fetch_one(self.db.pool())
                .await
                .db()?;
                today += n;
            }
            return Ok(CodeFigures {
                live_scenarios: live,
                scenarios: self.scenarios.len() as i64,
                scans_today: today,
                scenario_figures: Vec::new(),
            });
        };
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT scenario, result, (at_ms - $1) / 86400000 AS day, COUNT(*) FROM code_scans \
             WHERE at_ms >= $1 GROUP BY scenario, result, (at_ms - $1) / 86400000",
        )
        .bind(week_start)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let recent: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT scenario, result, COUNT(*) FROM code_scans WHERE at_ms >= $1 GROUP BY scenario, result",
        )
        .bind(now - DAY)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let mut figures = CodeFigures {
            live_scenarios: 0,
            scenarios: self.scenarios.len() as i64,
            scans_today: rows.iter().filter(|r| r.2 == 6).map(|r| r.3).sum(),
            scenario_figures: Vec::new(),
        };
        for s in self.scenarios.iter() {
            if rows.iter().any(|r| r.0 == s.code && r.1 == "accepted") {
                // (by day: the public count above is by the last 7 × 24 hours)
                figures.live_scenarios += 1;
            }
            if !principal.may(Resource::CodeScans, Action::Read, &s.department) {
                continue;
            }
            let mine = recent.iter().filter(|r| r.0 == s.code);
            let per_day = (0..7)
                .map(|d| {
                    let day = chrono::DateTime::from_timestamp_millis(
                        week_start + d * DAY + 8 * 3_600_000,
                    )
                    .map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                    let n = rows
                        .iter()
                        .filter(|r| r.0 == s.code && r.2 == d)
                        .map(|r| r.3)
                        .sum();
                    (day, n)
                })
                .collect();
            figures.scenario_figures.push(ScenarioFigures {
                code: s.code.clone(),
                name_zh: s.name_zh.clone(),
                category: s.category.clone(),
                department: s.department.clone(),
                scans_24h: mine.clone().map(|r| r.2).sum(),
                accepted_24h: mine
                    .clone()
                    .filter(|r| r.1 == "accepted")
                    .map(|r| r.2)
                    .sum(),
                refusals_24h: mine
                    .filter(|r| r.1 != "accepted")
                    .map(|r| (r.1.clone(), r.2))
                    .collect(),
                per_day,
            });
        }
        Ok(figures)
    }
}

/// The scan-log result of a verdict that did not pass.
fn refusal(verdict: &Verdict) -> &'static str {
    if !verdict.cose || !verdict.claims {
        "invalid"
    } else if !verdict.signature {
        if verdict.error.as_deref().is_some_and(|e| {
            e.starts_with("signed by an unknown") || e.starts_with("the issuer's certificate")
        }) {
            "untrusted"
        } else {
            "invalid"
        }
    } else if !verdict.expiry {
        "expired"
    } else {
        "invalid"
    }
}

fn truncate(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

async fn insert_key(
    db: &Db,
    cipher: &yunnao_gm::FieldCipher,
    kid: &str,
    algorithm: &str,
) -> Result<(), Problem> {
    let key = SigningKey::generate(if algorithm == "KEYSET" {
        "SM2-SM3"
    } else {
        algorithm
    })
    .map_err(internal)?;
    let sealed = cipher
        .encrypt(&key.secret_bytes(), kid.as_bytes())
        .map_err(internal)?;
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO code_keys (kid, algorithm, public_key, private_sealed, created_at_ms, retired_at_ms) VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT DO NOTHING",
    )
    .bind(kid)
    .bind(algorithm)
    .bind(key.verify_key().to_hex())
    .bind(hex::encode(sealed))
    .bind(yunnao_core::time::now_ms())
    .execute(&mut **tx)
    .await
    .db()?;
    tx.commit().await?;
    Ok(())
}

fn unseal(
    cipher: &yunnao_gm::FieldCipher,
    kid: &str,
    algorithm: &str,
    sealed: &str,
) -> Result<SigningKey, Problem> {
    let secret = hex::decode(sealed)
        .ok()
        .and_then(|bytes| cipher.decrypt(&bytes, kid.as_bytes()).ok())
        .ok_or_else(|| Problem::internal(format!("the code key {kid} cannot be unsealed")))?;
    SigningKey::from_secret(algorithm, &secret).map_err(internal)
}

/// Keys (active and recently retired) and the trust list, from the database.
async fn load(db: &Db, cipher: &yunnao_gm::FieldCipher) -> Result<KeyState, Problem> {
    use base64::Engine;
    let now = yunnao_core::time::now_ms();
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT kid, algorithm, public_key, private_sealed, created_at_ms, retired_at_ms FROM code_keys \
         WHERE algorithm <> 'KEYSET' AND (retired_at_ms IS NULL OR retired_at_ms >= $1) ORDER BY created_at_ms",
    )
    .bind(now - RETIRED_KEY_KEPT_S * 1000)
    .fetch_all(db.pool())
    .await
    .db()?;
    let mut state = KeyState {
        signers: Vec::new(),
        verifier: KeySet::new(),
        published: Vec::new(),
        trusted: Vec::new(),
    };
    for (kid, algorithm, public_key, sealed, _, retired) in rows {
        let key = VerifyKey::from_hex(&algorithm, &public_key).map_err(internal)?;
        state.verifier.insert(
            kid.as_bytes(),
            TrustedKey {
                key,
                issuer: ISSUER.into(),
                not_before: None,
                not_after: None,
            },
        );
        if retired.is_none() {
            let key = unseal(cipher, &kid, &algorithm, &sealed)?;
            state
                .signers
                .retain(|s| s.key.algorithm_name() != algorithm);
            state.signers.push(Arc::new(Signer {
                kid: kid.clone(),
                key,
            }));
        }
        state.published.push(PublishedKey {
            kid,
            algorithm,
            public_key,
            retired_at: retired.map(yunnao_core::time::rfc3339_ms),
        });
    }
    let trusted: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT kid, name, prefix, certificate FROM code_trust ORDER BY added_at_ms, kid",
    )
    .fetch_all(db.pool())
    .await
    .db()?;
    for (kid, name, prefix, certificate) in trusted {
        let Ok((raw_kid, mut key)) = crate::trust::certificate(certificate.as_bytes()) else {
            tracing::warn!(%kid, "a trusted certificate no longer parses; left out");
            continue;
        };
        let subject = std::mem::replace(&mut key.issuer, name.clone());
        state.trusted.push(TrustedIssuer {
            kid: base64::engine::general_purpose::STANDARD.encode(&raw_kid),
            name,
            prefix: prefix.clone(),
            algorithm: key.key.algorithm_name().into(),
            subject,
            certificate,
            not_after: key
                .not_after
                .map(|s| yunnao_core::time::rfc3339_ms(s * 1000)),
        });
        state.verifier.insert(raw_kid, key);
        state.verifier.accept_prefix(&prefix);
    }
    Ok(state)
}
