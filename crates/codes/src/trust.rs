//! The keys a verifier trusts: this platform's own (SM2 or ES256, by key id) and the issuer
//! certificates of other code schemes the bureau trusts (the provincial 居民码, other cities,
//! the EU DCC). A certificate's key id is the first 8 bytes of the SHA-256 of its DER, as the
//! DCC defines; its key is SM2, P-256 (ES256) or RSA (PS256), read from its SubjectPublicKeyInfo.

use crate::{ALG_ES256, ALG_PS256, ALG_SM2_SM3, CodeError, err};
use sha2::Digest;
use std::collections::HashMap;
use x509_cert::der::{Decode, Encode};

/// A public key of one of the three algorithms a code may be signed with.
#[derive(Clone, Debug)]
pub enum VerifyKey {
    Sm2(yunnao_gm::Sm2PublicKey),
    Es256(p256::ecdsa::VerifyingKey),
    Ps256(Box<rsa::PublicKey>),
}

impl VerifyKey {
    /// The COSE algorithm a signature under this key carries.
    pub fn algorithm(&self) -> i64 {
        match self {
            VerifyKey::Sm2(_) => ALG_SM2_SM3,
            VerifyKey::Es256(_) => ALG_ES256,
            VerifyKey::Ps256(_) => ALG_PS256,
        }
    }

    pub fn algorithm_name(&self) -> &'static str {
        match self {
            VerifyKey::Sm2(_) => "SM2-SM3",
            VerifyKey::Es256(_) => "ES256",
            VerifyKey::Ps256(_) => "PS256",
        }
    }

    /// Checks a COSE signature (r || s for SM2 and ES256, the PSS block for PS256).
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), String> {
        match self {
            VerifyKey::Sm2(key) => yunnao_gm::Sm2Signature::from_slice(signature)
                .and_then(|s| key.verify(data, &s))
                .map_err(|e| e.to_string()),
            VerifyKey::Es256(key) => {
                use p256::ecdsa::signature::Verifier;
                let signature = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| "not an ES256 signature (64 bytes r || s)".to_owned())?;
                key.verify(data, &signature)
                    .map_err(|_| "the ES256 signature does not verify".to_owned())
            }
            VerifyKey::Ps256(key) => {
                use rsa::signature::Verifier;
                let signature = rsa::pss::Signature::try_from(signature)
                    .map_err(|_| "not a PS256 signature".to_owned())?;
                rsa::pss::VerifyingKey::<sha2::Sha256>::new((**key).clone())
                    .verify(data, &signature)
                    .map_err(|_| "the PS256 signature does not verify".to_owned())
            }
        }
    }

    /// The key as the published key set carries it: SEC1 hex for EC keys, SPKI DER hex for RSA.
    pub fn to_hex(&self) -> String {
        match self {
            VerifyKey::Sm2(key) => key.to_hex(),
            VerifyKey::Es256(key) => hex::encode(key.to_sec1_point(false).as_bytes()),
            VerifyKey::Ps256(key) => {
                use rsa::pkcs8::EncodePublicKey;
                key.to_public_key_der()
                    .map(|d| hex::encode(d.as_bytes()))
                    .unwrap_or_default()
            }
        }
    }

    /// The inverse of [`VerifyKey::to_hex`] for a named algorithm.
    pub fn from_hex(algorithm: &str, text: &str) -> Result<VerifyKey, CodeError> {
        let bytes = hex::decode(text.trim()).map_err(|_| err("a key is hex"))?;
        match algorithm {
            "SM2-SM3" => yunnao_gm::Sm2PublicKey::from_sec1(&bytes)
                .map(VerifyKey::Sm2)
                .map_err(|_| err("not an SM2 public key")),
            "ES256" => p256::ecdsa::VerifyingKey::from_sec1_bytes(&bytes)
                .map(VerifyKey::Es256)
                .map_err(|_| err("not a P-256 public key")),
            "PS256" => {
                use rsa::pkcs8::DecodePublicKey;
                rsa::PublicKey::from_public_key_der(&bytes)
                    .map(|k| VerifyKey::Ps256(Box::new(k)))
                    .map_err(|_| err("not an RSA public key"))
            }
            other => Err(err(format!("no algorithm {other}"))),
        }
    }
}

/// A trusted key: who it belongs to and, for a certificate, when it is valid.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    pub key: VerifyKey,
    /// The issuer as people know it (the certificate's subject for other issuers).
    pub issuer: String,
    /// Seconds since the epoch; codes are refused outside this window.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
}

/// Everything a verifier trusts: keys by key id, and the prefixes of the schemes it reads.
#[derive(Clone, Debug)]
pub struct KeySet {
    keys: HashMap<Vec<u8>, TrustedKey>,
    prefixes: Vec<String>,
}

impl Default for KeySet {
    fn default() -> Self {
        KeySet {
            keys: HashMap::new(),
            prefixes: vec![crate::PREFIX.to_owned(), crate::DCC_PREFIX.to_owned()],
        }
    }
}

impl KeySet {
    pub fn new() -> KeySet {
        KeySet::default()
    }

    pub fn insert(&mut self, kid: impl Into<Vec<u8>>, key: TrustedKey) {
        self.keys.insert(kid.into(), key);
    }

    pub fn get(&self, kid: &[u8]) -> Option<&TrustedKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads codes that start with `prefix` too (another scheme's, e.g. a province's).
    pub fn accept_prefix(&mut self, prefix: &str) {
        if !self.prefixes.iter().any(|p| p == prefix) {
            self.prefixes.push(prefix.to_owned());
        }
    }

    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// Trusts an issuer certificate (PEM, base64 of DER, or DER); returns its key id.
    pub fn trust_certificate(&mut self, bytes: &[u8]) -> Result<Vec<u8>, CodeError> {
        let trusted = certificate(bytes)?;
        self.insert(trusted.0.clone(), trusted.1);
        Ok(trusted.0)
    }
}

/// The DER of a certificate given as PEM, as the base64 of its DER (as DCC test data and trust
/// lists carry it), or as DER.
pub fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, CodeError> {
    use base64::Engine;
    const MAX: usize = 64 * 1024;
    if bytes.len() > MAX {
        return Err(err("a certificate is at most 64 KiB"));
    }
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    let text =
        std::str::from_utf8(bytes).map_err(|_| err("a certificate is PEM, base64 or DER"))?;
    let body: String = match text.find("-----BEGIN CERTIFICATE-----") {
        Some(start) => {
            let rest = &text[start + "-----BEGIN CERTIFICATE-----".len()..];
            let end = rest
                .find("-----END CERTIFICATE-----")
                .ok_or_else(|| err("the PEM certificate has no END line"))?;
            rest[..end].chars().filter(|c| !c.is_whitespace()).collect()
        }
        None => text.chars().filter(|c| !c.is_whitespace()).collect(),
    };
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| err("a certificate is PEM, base64 or DER"))
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_SM2: &str = "1.2.156.10197.1.301";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

/// An issuer certificate as a trusted key, with its DCC key id.
pub fn certificate(bytes: &[u8]) -> Result<(Vec<u8>, TrustedKey), CodeError> {
    let der = certificate_der(bytes)?;
    let cert = x509_cert::Certificate::from_der(&der)
        .map_err(|e| err(format!("not an X.509 certificate: {e}")))?;
    let kid = sha2::Sha256::digest(&der)[..8].to_vec();
    let tbs = cert.tbs_certificate();
    let spki = tbs.subject_public_key_info();
    let point = spki.subject_public_key.raw_bytes();
    let algorithm = spki.algorithm.oid.to_string();
    let parameter = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
        .map(|o| o.to_string());
    let key = match (algorithm.as_str(), parameter.as_deref()) {
        (OID_EC, Some(OID_P256)) => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map(VerifyKey::Es256)
            .map_err(|_| err("the certificate's P-256 key is malformed"))?,
        (OID_EC, Some(OID_SM2)) | (OID_SM2, _) => yunnao_gm::Sm2PublicKey::from_sec1(point)
            .map(VerifyKey::Sm2)
            .map_err(|_| err("the certificate's SM2 key is malformed"))?,
        (OID_RSA, _) => {
            use rsa::pkcs8::DecodePublicKey;
            let spki_der = spki.to_der().map_err(err)?;
            rsa::PublicKey::from_public_key_der(&spki_der)
                .map(|k| VerifyKey::Ps256(Box::new(k)))
                .map_err(|_| err("the certificate's RSA key is malformed"))?
        }
        (other, curve) => {
            return Err(err(format!(
                "the certificate's key ({other}{}) is not SM2, P-256 or RSA",
                curve.map(|c| format!(" on {c}")).unwrap_or_default()
            )));
        }
    };
    let validity = tbs.validity();
    let seconds = |t: x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    Ok((
        kid,
        TrustedKey {
            key,
            issuer: tbs.subject().to_string(),
            not_before: Some(seconds(validity.not_before)),
            not_after: Some(seconds(validity.not_after)),
        },
    ))
}
