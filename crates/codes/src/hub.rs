//! The code hub on the database: the signing key (sealed with the platform's field cipher),
//! holders' pseudonymous subjects (random, per holder), their bound cards (licences from the
//! e-licence library and cards such as a transit account) behind random handles, the seeded
//! scenarios with the claims each may learn, and the scan log with replay protection (a
//! dynamic code is accepted once per scenario: a partial unique index on the accepted scans,
//! so also when several nodes share PostgreSQL).

use crate::{CARD_KINDS, CardRef, Claims, DEFAULT_LIFETIME_S, KeySet, Signer, Verdict};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use yunnao_core::Problem;
use yunnao_identity::{Identity, Principal};
use yunnao_services::licences::Licences;
use yunnao_store::{Db, DbResultExt, sqlx};

const SCENARIOS: &str = include_str!("../data/scenarios.json");
pub const ISSUER: &str = "QD";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Scenario {
    pub code: String,
    pub name_zh: String,
    /// 政用, 民用 or 商用.
    pub category: String,
    /// The operator's department: its staff and API clients verify here.
    pub department: String,
    /// What a verification here may learn: `valid`, `name`, `id_number`, `age_over_60`, or a
    /// card kind (`transit_account`, `library_card`, `business_licence`, …).
    pub claims: Vec<String>,
}

/// A code as the holder's page shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct IssuedCode {
    pub code: String,
    /// RFC 3339.
    pub expires_at: String,
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
    /// `accepted`, `invalid`, `replayed` or `revoked`.
    pub result: String,
    pub reason: Option<String>,
    pub prefix: bool,
    pub base45: bool,
    pub zlib: bool,
    pub cose: bool,
    pub claims_valid: bool,
    pub signature: bool,
    pub expiry: bool,
    /// Only what the scenario may learn.
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

#[derive(Clone)]
pub struct Codes {
    db: Db,
    licences: Licences,
    signer: Arc<Signer>,
    keys: Arc<KeySet>,
    scenarios: Arc<Vec<Scenario>>,
}

/// Whether a card kind is an e-licence of the library (as opposed to, say, a transit account).
fn is_licence(kind: &str) -> bool {
    yunnao_services::licences::TYPES.iter().any(|t| t.0 == kind)
}

fn internal(e: impl std::fmt::Display) -> Problem {
    Problem::internal(e.to_string())
}

impl Codes {
    /// The hub: its signing key made on first start and kept sealed in the database.
    pub async fn start(db: Db, identity: Identity, licences: Licences) -> Result<Codes, Problem> {
        let scenarios: Vec<Scenario> = serde_json::from_str(SCENARIOS).map_err(internal)?;
        let cipher = identity.field_cipher("code-keys");
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT kid, private_sealed FROM code_keys ORDER BY created_at_ms DESC LIMIT 1",
        )
        .fetch_optional(db.pool())
        .await
        .db()?;
        let signer = match row {
            Some((kid, sealed)) => {
                let secret = hex::decode(&sealed)
                    .ok()
                    .and_then(|bytes| cipher.decrypt(&bytes, kid.as_bytes()).ok())
                    .ok_or_else(|| Problem::internal("the code key cannot be unsealed"))?;
                Signer {
                    key: yunnao_gm::Sm2KeyPair::from_secret_bytes(&secret).map_err(internal)?,
                    kid,
                }
            }
            None => {
                let key = yunnao_gm::Sm2KeyPair::generate().map_err(internal)?;
                let kid = "Q1".to_owned();
                let sealed = cipher
                    .encrypt(&key.secret_bytes(), kid.as_bytes())
                    .map_err(internal)?;
                let mut tx = db.begin_write().await?;
                sqlx::query(
                    "INSERT INTO code_keys (kid, public_key, private_sealed, created_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(&kid)
                .bind(key.public_key().to_hex())
                .bind(hex::encode(sealed))
                .bind(yunnao_core::time::now_ms())
                .execute(&mut **tx)
                .await
                .db()?;
                tx.commit().await?;
                Signer { kid, key }
            }
        };
        let keys: KeySet = [(signer.kid.clone(), signer.key.public_key())]
            .into_iter()
            .collect();
        Ok(Codes {
            db,
            licences,
            signer: Arc::new(signer),
            keys: Arc::new(keys),
            scenarios: Arc::new(scenarios),
        })
    }

    pub fn scenarios(&self) -> &[Scenario] {
        &self.scenarios
    }

    /// The published key set: key id → SM2 public key (hex).
    pub fn key_set(&self) -> Vec<(String, String)> {
        self.keys
            .iter()
            .map(|(kid, key)| (kid.clone(), key.to_hex()))
            .collect()
    }

    /// The holder's random subject, made on first use.
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

    /// Binds a card (a transit account, a library card) to the holder's code.
    pub async fn bind_card(
        &self,
        principal: &Principal,
        kind: &str,
        card_id: &str,
    ) -> Result<(), Problem> {
        let holder = self.holder(principal).await?;
        if !CARD_KINDS.iter().any(|k| k.1 == kind) {
            return Err(Problem::validation(format!(
                "kind: one of {}",
                CARD_KINDS.map(|k| k.1).join(", ")
            ))
            .with_extension("field", "kind"));
        }
        let card_id = card_id.trim();
        if card_id.is_empty() || card_id.chars().count() > 64 {
            return Err(Problem::validation("id: 1 to 64 characters").with_extension("field", "id"));
        }
        self.store_card(&holder.holder_id, kind, card_id).await
    }

    async fn store_card(&self, holder_id: &str, kind: &str, card_id: &str) -> Result<(), Problem> {
        let handle = hex::encode(yunnao_gm::random_bytes::<6>().map_err(internal)?);
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO code_cards (handle, holder_id, kind, card_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&handle)
        .bind(holder_id)
        .bind(kind)
        .bind(card_id)
        .execute(&mut **tx)
        .await
        .db()?;
        tx.commit().await?;
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

    /// A fresh dynamic code for the signed-in holder; the licences in their library that a
    /// code can refer to are bound to it on the way.
    pub async fn issue(&self, principal: &Principal) -> Result<IssuedCode, Problem> {
        let holder = self.holder(principal).await?;
        let (subject, revoked) = self.subject_of(&holder.holder_id).await?;
        if revoked {
            return Err(Problem::forbidden("this holder's code is revoked"));
        }
        // Licences issued since the last code bind themselves once; their seals are checked
        // when a scenario is given one, not at every refresh of the page.
        let bound: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT kind, handle, card_id FROM code_cards WHERE holder_id = $1 ORDER BY kind, handle",
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
        let cards: Vec<(String, String)> = if added {
            sqlx::query_as(
                "SELECT kind, handle FROM code_cards WHERE holder_id = $1 ORDER BY kind, handle",
            )
            .bind(&holder.holder_id)
            .fetch_all(self.db.pool())
            .await
            .db()?
        } else {
            bound
                .into_iter()
                .map(|(kind, handle, _)| (kind, handle))
                .collect()
        };
        let cards: Vec<(String, String)> = cards.into_iter().take(8).collect();
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
        let code = crate::issue(&self.signer, &claims).map_err(internal)?;
        let (svg, qr_version) = crate::qr_svg(&code).map_err(internal)?;
        Ok(IssuedCode {
            code,
            expires_at: yunnao_core::time::rfc3339_ms(claims.expires_at * 1000),
            qr_version,
            svg,
            cards: cards.into_iter().map(|c| c.0).collect(),
        })
    }

    /// A scan at a scenario by its operator's staff or API client: the verdict, recorded, and
    /// only the claims the scenario may learn.
    pub async fn scan(&self, principal: &Principal, scan: Scan) -> Result<ScanAnswer, Problem> {
        let scenario = self
            .scenarios
            .iter()
            .find(|s| s.code == scan.scenario)
            .ok_or_else(|| Problem::not_found(format!("no scenario {}", scan.scenario)))?
            .clone();
        if !principal.is_platform_admin() && principal.department != scenario.department {
            return Err(Problem::forbidden(format!(
                "scenario {} is verified by its operator ({})",
                scenario.code, scenario.department
            )));
        }
        let now = yunnao_core::time::now_ms();
        let verdict: Verdict = crate::verify(&scan.code, &self.keys, now / 1000);
        let mut answer = ScanAnswer {
            accepted: false,
            result: "invalid".into(),
            reason: verdict.error.clone(),
            prefix: verdict.prefix,
            base45: verdict.base45,
            zlib: verdict.zlib,
            cose: verdict.cose,
            claims_valid: verdict.claims,
            signature: verdict.signature,
            expiry: verdict.expiry,
            claims: serde_json::Map::new(),
        };
        let claims = verdict.decoded.clone().filter(|_| verdict.valid());
        let subject = claims
            .as_ref()
            .map(|c| c.subject.clone())
            .unwrap_or_default();
        let holder: Option<(String, Option<i64>)> = if claims.is_some() {
            sqlx::query_as("SELECT holder_id, revoked_at_ms FROM code_subjects WHERE subject = $1")
                .bind(&subject)
                .fetch_optional(self.db.pool())
                .await
                .db()?
        } else {
            None
        };
        if claims.is_some() && holder.as_ref().is_none_or(|h| h.1.is_some()) {
            answer.result = "revoked".into();
            answer.reason = Some("the holder's code is revoked".into());
        }
        let accept = claims.is_some() && answer.result == "invalid";
        let nonce = claims
            .as_ref()
            .map(|c| hex::encode(&c.nonce))
            .unwrap_or_default();
        let mut tx = self.db.begin_write().await?;
        let recorded = sqlx::query(
            "INSERT INTO code_scans (id, scenario, subject, nonce, result, reason, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(yunnao_core::new_id())
        .bind(&scenario.code)
        .bind(&subject)
        .bind(&nonce)
        .bind(if accept { "accepted" } else { answer.result.as_str() })
        .bind(answer.reason.as_deref().unwrap_or(""))
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
                .bind(yunnao_core::new_id())
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
        let (holder_id, _) = holder.unwrap_or_default();
        let cards: Vec<(String, String, String)> =
            sqlx::query_as("SELECT handle, kind, card_id FROM code_cards WHERE holder_id = $1")
                .bind(&holder_id)
                .fetch_all(self.db.pool())
                .await
                .db()?;
        let refs = claims.map(|c| c.refs).unwrap_or_default();
        let holder_name = self
            .licences
            .holder_by_id(&holder_id)
            .await?
            .map(|h| h.holder_name);
        for claim in &scenario.claims {
            let value = match claim.as_str() {
                "valid" => Some(serde_json::Value::Bool(true)),
                "name" => holder_name.clone().map(Into::into),
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
                    let card = refs
                        .iter()
                        .filter(|r| r.kind == kind)
                        .find_map(|r| cards.iter().find(|c| c.0 == r.handle && c.1 == kind));
                    match card {
                        // A licence is given out only while its seal verifies and it is valid.
                        Some(c) if is_licence(kind) => self
                            .licences
                            .is_usable(&holder_id, &c.2)
                            .await?
                            .then(|| c.2.clone().into()),
                        Some(c) => Some(c.2.clone().into()),
                        None => None,
                    }
                }
            };
            if let Some(value) = value {
                answer.claims.insert(claim.clone(), value);
            }
        }
        Ok(answer)
    }

    /// Where the signed-in holder's code was scanned, newest first.
    pub async fn my_scans(&self, principal: &Principal) -> Result<Vec<ScanRecord>, Problem> {
        let holder = self.holder(principal).await?;
        let (subject, _) = self.subject_of(&holder.holder_id).await?;
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT scenario, result, at_ms FROM code_scans WHERE subject = $1 ORDER BY at_ms DESC LIMIT 200",
        )
        .bind(&subject)
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
}
