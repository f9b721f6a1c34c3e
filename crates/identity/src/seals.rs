//! Department e-seals (電子印章). Each department has an SM2 seal key; its private half is
//! stored encrypted with SM4-GCM under the platform's key-encryption key, bound to the
//! department and key id. A sealed document carries the SM3 digest of its content (RFC 8785
//! canonical JSON, or raw bytes) and an SM2 signature over the seal's own canonical fields, so
//! anyone with the department's published public key can verify it offline with
//! [`verify_offline`].

use crate::{Identity, departments};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_gm::{Sm2KeyPair, Sm2PublicKey, Sm2Signature};
use yunnao_store::{DbResultExt, sqlx};

pub const SEAL_ALGORITHM: &str = "SM2-with-SM3";

/// What to seal: a JSON document, or bytes in base64. Exactly one.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SealContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub document: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    pub department: String,
    pub key_id: String,
    pub algorithm: String,
    /// SM3 of the content, hex.
    pub digest: String,
    /// RFC 3339, UTC.
    pub sealed_at: String,
    /// SM2 signature r || s, hex.
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SealedDocument {
    #[serde(flatten)]
    pub content: SealContent,
    pub seal: Seal,
}

/// A sealed document on the wire: the content's member beside the seal. Its schema is written
/// out because a derived one would combine `SealContent`'s closed object with the seal, which
/// no document satisfies.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SealedDocumentOnTheWire {
    /// The sealed JSON document (or `content_base64`; exactly one).
    #[schema(value_type = Option<Object>)]
    document: Option<serde_json::Value>,
    /// The sealed bytes, base64 (or `document`; exactly one).
    content_base64: Option<String>,
    seal: Seal,
}

impl utoipa::PartialSchema for SealedDocument {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <SealedDocumentOnTheWire as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for SealedDocument {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("SealedDocument")
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <SealedDocumentOnTheWire as utoipa::ToSchema>::schemas(schemas);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
pub struct SealPublicKey {
    pub department: String,
    pub key_id: String,
    pub algorithm: String,
    /// SEC1 uncompressed point, hex.
    pub public_key: String,
    /// The SM2 distinguishing identifier used in Z_A.
    pub sm2_id: String,
}

fn content_digest(content: &SealContent) -> Result<[u8; 32], Problem> {
    match (&content.document, &content.content_base64) {
        (Some(document), None) => {
            let canonical = serde_json_canonicalizer::to_vec(document).map_err(|e| {
                Problem::bad_request(format!("document cannot be canonicalised: {e}"))
            })?;
            Ok(yunnao_gm::sm3(&canonical))
        }
        (None, Some(encoded)) => {
            let bytes = STANDARD
                .decode(encoded)
                .map_err(|_| Problem::bad_request("content_base64 is not valid base64"))?;
            Ok(yunnao_gm::sm3(&bytes))
        }
        _ => Err(Problem::bad_request(
            "give exactly one of document (JSON) or content_base64 (bytes)",
        )),
    }
}

/// The bytes the seal signature covers.
fn seal_message(seal: &Seal) -> Vec<u8> {
    format!(
        "yunnao-seal\n{}\n{}\n{}\n{}\n{}",
        seal.department, seal.key_id, seal.algorithm, seal.digest, seal.sealed_at
    )
    .into_bytes()
}

/// Verifies a sealed document against a department public key, needing nothing else.
pub fn verify_offline(sealed: &SealedDocument, public_key: &Sm2PublicKey) -> Result<(), Problem> {
    let digest = hex::encode(content_digest(&sealed.content)?);
    if digest != sealed.seal.digest {
        return Err(Problem::validation(
            "the content does not match the sealed digest: it was changed after sealing",
        ));
    }
    if sealed.seal.algorithm != SEAL_ALGORITHM {
        return Err(Problem::validation(format!(
            "unknown seal algorithm {:?}",
            sealed.seal.algorithm
        )));
    }
    let signature = Sm2Signature::from_hex(&sealed.seal.signature)
        .map_err(|_| Problem::validation("the seal signature is malformed"))?;
    public_key
        .verify(&seal_message(&sealed.seal), &signature)
        .map_err(|_| {
            Problem::validation("the seal signature does not verify with this department's key")
        })
}

/// Verifies a sealed document against the key its department publishes on this platform.
pub async fn verify(identity: &Identity, sealed: &SealedDocument) -> Result<(), Problem> {
    verify_published(
        sealed,
        &public_key(identity, &sealed.seal.department).await?,
    )
}

/// Verifies a sealed document against a department's published key as read.
pub fn verify_published(sealed: &SealedDocument, published: &SealPublicKey) -> Result<(), Problem> {
    if published.key_id != sealed.seal.key_id {
        return Err(Problem::validation(
            "the seal names a key the department does not publish",
        ));
    }
    let key = Sm2PublicKey::from_hex(&published.public_key)
        .map_err(|e| Problem::internal(e.to_string()))?;
    verify_offline(sealed, &key)
}

fn associated_data(department: &str, key_id: &str) -> Vec<u8> {
    format!("seal-key:{department}:{key_id}").into_bytes()
}

/// Gives every department without one a seal key. Returns how many were made.
pub(crate) async fn ensure_keys(identity: &Identity) -> Result<usize, Problem> {
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT code FROM departments WHERE code NOT IN (SELECT department_code FROM seal_keys) ORDER BY code",
    )
    .fetch_all(identity.db.pool())
    .await
    .db()?;
    if missing.is_empty() {
        return Ok(0);
    }
    let mut tx = identity.db.begin_write().await?;
    for department in &missing {
        let pair = Sm2KeyPair::generate().map_err(|e| Problem::internal(e.to_string()))?;
        let key_id = format!("{department}-1");
        let sealed_private = identity
            .keys
            .key_encryption()
            .encrypt(&pair.secret_bytes(), &associated_data(department, &key_id))
            .map_err(|e| Problem::internal(e.to_string()))?;
        sqlx::query(
            "INSERT INTO seal_keys (department_code, key_id, public_key, private_key_sealed, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (department_code) DO NOTHING",
        )
        .bind(department)
        .bind(&key_id)
        .bind(pair.public_key().to_hex())
        .bind(hex::encode(sealed_private))
        .bind(yunnao_core::time::now_ms())
        .execute(&mut **tx)
        .await
        .db()?;
    }
    tx.commit().await?;
    Ok(missing.len())
}

pub async fn public_key(identity: &Identity, department: &str) -> Result<SealPublicKey, Problem> {
    departments::require(&identity.db, department).await?;
    let (key_id, public_key): (String, String) =
        sqlx::query_as("SELECT key_id, public_key FROM seal_keys WHERE department_code = $1")
            .bind(department)
            .fetch_optional(identity.db.pool())
            .await
            .db()?
            .ok_or_else(|| {
                Problem::not_found(format!("department {department:?} has no seal key"))
            })?;
    Ok(SealPublicKey {
        department: department.to_owned(),
        key_id,
        algorithm: SEAL_ALGORITHM.to_owned(),
        public_key,
        sm2_id: yunnao_gm::DEFAULT_SM2_ID.to_owned(),
    })
}

/// Seals content with the department's key (authorisation is the caller's job).
pub async fn seal(
    identity: &Identity,
    department: &str,
    content: SealContent,
) -> Result<SealedDocument, Problem> {
    sealer(identity, department).await?.seal(content)
}

/// A department's seal key, unsealed once for many documents (a policy run's grants).
pub struct Sealer {
    department: String,
    key_id: String,
    pair: Sm2KeyPair,
}

/// The department's sealer: its key read and unsealed.
pub async fn sealer(identity: &Identity, department: &str) -> Result<Sealer, Problem> {
    let (key_id, sealed_private): (String, String) = sqlx::query_as(
        "SELECT key_id, private_key_sealed FROM seal_keys WHERE department_code = $1",
    )
    .bind(department)
    .fetch_optional(identity.db.pool())
    .await
    .db()?
    .ok_or_else(|| Problem::not_found(format!("department {department:?} has no seal key")))?;
    let secret = hex::decode(&sealed_private)
        .ok()
        .and_then(|bytes| {
            identity
                .keys
                .key_encryption()
                .decrypt(&bytes, &associated_data(department, &key_id))
                .ok()
        })
        .ok_or_else(|| {
            tracing::error!(
                department,
                "seal key cannot be unsealed: wrong platform key or tampered row"
            );
            Problem::internal("the department's seal key cannot be unsealed")
        })?;
    let pair =
        Sm2KeyPair::from_secret_bytes(&secret).map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Sealer {
        department: department.to_owned(),
        key_id,
        pair,
    })
}

impl Sealer {
    pub fn seal(&self, content: SealContent) -> Result<SealedDocument, Problem> {
        let digest = content_digest(&content)?;
        let mut seal = Seal {
            department: self.department.clone(),
            key_id: self.key_id.clone(),
            algorithm: SEAL_ALGORITHM.to_owned(),
            digest: hex::encode(digest),
            sealed_at: yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms()),
            signature: String::new(),
        };
        seal.signature = self.pair.sign(&seal_message(&seal)).to_hex();
        Ok(SealedDocument { content, seal })
    }
}
