//! One code for the city (一码通城), begun (issue 23): the code itself. A code is a CBOR Web
//! Token (RFC 8392) in a COSE_Sign1 (RFC 9052), zlib-compressed, base45-encoded (RFC 9285)
//! and prefixed `QD1:` (scheme and version, as the EU DCC's `HC1:`). Its claims are the
//! issuer, a pseudonymous subject (never the identity number), issued-at, expiry, a nonce, the
//! holder kind and references to the cards and licences the holder bound (kind and id, not
//! their contents). It is signed with SM2 (GB/T 32918, SM3, user ID `1234567812345678`) under
//! the private-use COSE algorithm [`ALG_SM2_SM3`]. Verification reports each stage on its own
//! (prefix, base45, zlib, COSE, claims, signature, expiry at a given time), so a test vector
//! that expects one stage to fail can be checked. ES256 signs codes for scenarios outside
//! China; codes of other issuers the bureau trusts (X.509 certificates, ES256, PS256 or SM2,
//! e.g. the EU DCC's `HC1:`) verify the same way ([`trust`]).

pub mod api;
pub mod hub;
mod migrations;
pub mod trust;

pub use migrations::MIGRATIONS;
pub use trust::{KeySet, TrustedKey, VerifyKey};

use coset::cwt::{ClaimsSet, ClaimsSetBuilder, Timestamp};
use coset::{
    AsCborValue, CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder,
    TaggedCborSerializable,
};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// The scheme and version every code of this platform starts with.
pub const PREFIX: &str = "QD1:";
/// The EU Digital COVID Certificate's prefix, read when the bureau trusts its issuers.
pub const DCC_PREFIX: &str = "HC1:";
/// COSE algorithm id for SM2 signatures over SM3 (private use: below -65536).
pub const ALG_SM2_SM3: i64 = -70_101;
/// COSE algorithm ids of ECDSA P-256 with SHA-256 and RSASSA-PSS with SHA-256 (RFC 9053).
pub const ALG_ES256: i64 = -7;
pub const ALG_PS256: i64 = -37;
/// Private CWT claims: the holder kind, and the bound cards and licences.
pub const CLAIM_HOLDER_KIND: i64 = -70_001;
pub const CLAIM_REFS: i64 = -70_002;
/// A dynamic code's default lifetime.
pub const DEFAULT_LIFETIME_S: i64 = 30;
/// Longest code text taken (a QR code of version 10 at level M holds far less).
const MAX_CODE_CHARS: usize = 4_096;
/// Largest decompressed token taken: a bound on the memory one code can make us spend.
const MAX_TOKEN_BYTES: u64 = 16_384;

/// The kinds of card and licence a code may refer to, with the small number each is in a
/// code (so that a code with several bound cards still fits QR version 10 at level M).
pub const CARD_KINDS: [(u8, &str); 10] = [
    (1, "resident_id"),
    (2, "social_security_card"),
    (3, "insurance_registration"),
    (4, "transit_account"),
    (5, "library_card"),
    (6, "business_licence"),
    (7, "residence_permit"),
    (8, "vaccination_certificate"),
    (9, "disability_certificate"),
    (10, "permit"),
];

/// A card or licence bound to the code: its kind and a handle (6 bytes, hex) that the
/// platform resolves to the binding for a verifier permitted to learn it; never its contents.
/// (Key ids are kept as short, e.g. `Q1`: every byte counts towards the QR version.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRef {
    pub kind: String,
    pub handle: String,
}

/// The handle of a binding: SM3 of the secret, the kind and the card's id, first 6 bytes.
pub fn card_handle(secret: &[u8], kind: &str, id: &str) -> String {
    let digest = yunnao_gm::sm3_parts(&[
        b"yunnao-code-card\n",
        secret,
        kind.as_bytes(),
        b"\n",
        id.as_bytes(),
    ]);
    hex::encode(&digest[..6])
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub issuer: String,
    /// The holder's pseudonym ([`pseudonym`]).
    pub subject: String,
    /// Seconds since the epoch.
    pub issued_at: i64,
    pub expires_at: i64,
    pub nonce: Vec<u8>,
    /// `resident` (居民码) or `enterprise` (企业码).
    pub holder_kind: String,
    pub refs: Vec<CardRef>,
}

/// The holder's pseudonymous subject: SM3 of a platform secret and the holder's number, 12
/// bytes in hex, stable per holder, not reversible without the secret.
pub fn pseudonym(secret: &[u8], holder_id: &str) -> String {
    let digest = yunnao_gm::sm3_parts(&[
        b"yunnao-code-subject\n",
        secret,
        b"\n",
        holder_id.as_bytes(),
    ]);
    hex::encode(&digest[..12])
}

/// A signing key of one of the two algorithms this platform signs codes with.
pub enum SigningKey {
    Sm2(yunnao_gm::Sm2KeyPair),
    Es256(p256::ecdsa::SigningKey),
}

impl SigningKey {
    pub fn generate(algorithm: &str) -> Result<SigningKey, CodeError> {
        match algorithm {
            "SM2-SM3" => yunnao_gm::Sm2KeyPair::generate()
                .map(SigningKey::Sm2)
                .map_err(err),
            "ES256" => loop {
                let secret: [u8; 32] = yunnao_gm::random_bytes().map_err(err)?;
                if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&secret) {
                    return Ok(SigningKey::Es256(key));
                }
            },
            other => Err(err(format!(
                "codes are signed with SM2-SM3 or ES256, not {other}"
            ))),
        }
    }

    pub fn from_secret(algorithm: &str, secret: &[u8]) -> Result<SigningKey, CodeError> {
        match algorithm {
            "SM2-SM3" => yunnao_gm::Sm2KeyPair::from_secret_bytes(secret)
                .map(SigningKey::Sm2)
                .map_err(err),
            "ES256" => p256::ecdsa::SigningKey::from_slice(secret)
                .map(SigningKey::Es256)
                .map_err(err),
            other => Err(err(format!("no algorithm {other}"))),
        }
    }

    pub fn secret_bytes(&self) -> Vec<u8> {
        match self {
            SigningKey::Sm2(key) => key.secret_bytes().to_vec(),
            SigningKey::Es256(key) => key.to_bytes().to_vec(),
        }
    }

    pub fn algorithm_name(&self) -> &'static str {
        match self {
            SigningKey::Sm2(_) => "SM2-SM3",
            SigningKey::Es256(_) => "ES256",
        }
    }

    pub fn algorithm(&self) -> i64 {
        match self {
            SigningKey::Sm2(_) => ALG_SM2_SM3,
            SigningKey::Es256(_) => ALG_ES256,
        }
    }

    pub fn verify_key(&self) -> VerifyKey {
        match self {
            SigningKey::Sm2(key) => VerifyKey::Sm2(key.public_key()),
            SigningKey::Es256(key) => VerifyKey::Es256(*key.verifying_key()),
        }
    }

    /// The COSE signature: r || s (64 bytes) for both algorithms.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Sm2(key) => key.sign(data).0.to_vec(),
            SigningKey::Es256(key) => {
                use p256::ecdsa::signature::Signer as _;
                let signature: p256::ecdsa::Signature = key.sign(data);
                signature.to_bytes().to_vec()
            }
        }
    }
}

/// A signing key with its key id.
pub struct Signer {
    pub kid: String,
    pub key: SigningKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeError(pub String);

impl std::fmt::Display for CodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn err(what: impl std::fmt::Display) -> CodeError {
    CodeError(what.to_string())
}

fn claims_set(claims: &Claims) -> ClaimsSet {
    use coset::cbor::value::Value;
    let refs = Value::Array(
        claims
            .refs
            .iter()
            .filter_map(|r| {
                let code = CARD_KINDS.iter().find(|k| k.1 == r.kind)?.0;
                let handle = hex::decode(&r.handle).ok()?;
                Some(Value::Array(vec![
                    Value::Integer(code.into()),
                    Value::Bytes(handle),
                ]))
            })
            .collect(),
    );
    ClaimsSetBuilder::new()
        .issuer(claims.issuer.clone())
        .subject(claims.subject.clone())
        .issued_at(Timestamp::WholeSeconds(claims.issued_at))
        .expiration_time(Timestamp::WholeSeconds(claims.expires_at))
        .cwt_id(claims.nonce.clone())
        .private_claim(CLAIM_HOLDER_KIND, Value::Text(claims.holder_kind.clone()))
        .private_claim(CLAIM_REFS, refs)
        .build()
}

fn claims_of(set: ClaimsSet) -> Result<Claims, CodeError> {
    use coset::cbor::value::Value;
    let seconds = |t: Option<Timestamp>, name: &str| match t {
        Some(Timestamp::WholeSeconds(s)) => Ok(s),
        Some(Timestamp::FractionalSeconds(s)) => Ok(s as i64),
        None => Err(err(format!("claims: no {name}"))),
    };
    let mut holder_kind = None;
    let mut refs = Vec::new();
    for (name, value) in set.rest {
        match (name, value) {
            (
                coset::RegisteredLabelWithPrivate::PrivateUse(CLAIM_HOLDER_KIND),
                Value::Text(kind),
            ) => {
                holder_kind = Some(kind);
            }
            (coset::RegisteredLabelWithPrivate::PrivateUse(CLAIM_REFS), Value::Array(items)) => {
                for item in items.into_iter().take(64) {
                    match item {
                        Value::Array(pair) => match pair.as_slice() {
                            [Value::Integer(code), Value::Bytes(handle)] => {
                                let code = u8::try_from(i128::from(*code)).unwrap_or(0);
                                let kind = CARD_KINDS
                                    .iter()
                                    .find(|k| k.0 == code)
                                    .ok_or_else(|| err("claims: a card of no known kind"))?;
                                refs.push(CardRef {
                                    kind: kind.1.to_owned(),
                                    handle: hex::encode(handle),
                                });
                            }
                            _ => return Err(err("claims: a card reference is [kind, handle]")),
                        },
                        _ => return Err(err("claims: a card reference is [kind, handle]")),
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Claims {
        issuer: set.issuer.ok_or_else(|| err("claims: no issuer"))?,
        subject: set.subject.ok_or_else(|| err("claims: no subject"))?,
        issued_at: seconds(set.issued_at, "issued-at")?,
        expires_at: seconds(set.expiration_time, "expiry")?,
        nonce: set.cwt_id.unwrap_or_default(),
        holder_kind: holder_kind.ok_or_else(|| err("claims: no holder kind"))?,
        refs,
    })
}

/// Signs `claims` and encodes the code's text: `QD1:` + base45(zlib(COSE_Sign1)).
pub fn issue(signer: &Signer, claims: &Claims) -> Result<String, CodeError> {
    let payload = claims_set(claims).to_vec().map_err(err)?;
    seal(
        PREFIX,
        signer.key.algorithm(),
        signer.kid.as_bytes(),
        payload,
        |data| signer.key.sign(data),
    )
}

/// Any scheme's code: `prefix` + base45(zlib(COSE_Sign1 over `payload`, algorithm and key id
/// in the protected header)). Other issuers' codes are made this way in tests and benchmarks.
pub fn seal(
    prefix: &str,
    algorithm: i64,
    kid: &[u8],
    payload: Vec<u8>,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<String, CodeError> {
    let protected = HeaderBuilder::new()
        .algorithm_label(algorithm_label(algorithm))
        .key_id(kid.to_vec())
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .create_signature(b"", sign)
        .build();
    let bytes = sign1.to_tagged_vec().map_err(err)?;
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zlib.write_all(&bytes).map_err(err)?;
    let compressed = zlib.finish().map_err(err)?;
    Ok(format!("{prefix}{}", base45::encode(&compressed)))
}

fn algorithm_label(id: i64) -> coset::RegisteredLabelWithPrivate<coset::iana::Algorithm> {
    use coset::RegisteredLabelWithPrivate::{Assigned, PrivateUse};
    match id {
        ALG_ES256 => Assigned(coset::iana::Algorithm::ES256),
        ALG_PS256 => Assigned(coset::iana::Algorithm::PS256),
        other => PrivateUse(other),
    }
}

fn algorithm_id(label: &coset::RegisteredLabelWithPrivate<coset::iana::Algorithm>) -> Option<i64> {
    use coset::iana::EnumI64;
    match label {
        coset::RegisteredLabelWithPrivate::Assigned(a) => Some(a.to_i64()),
        coset::RegisteredLabelWithPrivate::PrivateUse(n) => Some(*n),
        coset::RegisteredLabelWithPrivate::Text(_) => None,
    }
}

/// Each stage of a verification, in order; a stage not reached is `false`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub prefix: bool,
    pub base45: bool,
    pub zlib: bool,
    pub cose: bool,
    pub claims: bool,
    pub signature: bool,
    /// Not yet expired at the validation time (and not issued after it).
    pub expiry: bool,
    /// The key id the code names: text for this platform's keys, base64 for other issuers'.
    pub kid: Option<String>,
    /// `SM2-SM3`, `ES256` or `PS256`.
    pub algorithm: Option<String>,
    /// The trusted issuer whose key verified the signature.
    pub issuer: Option<String>,
    /// This platform's claims, when the code is one of ours (`QD1:`).
    pub decoded: Option<Claims>,
    /// Every claim of the token as JSON (CBOR byte strings as base64), for any scheme.
    pub claim_set: Option<serde_json::Value>,
    /// Why the first failing stage failed.
    pub error: Option<String>,
}

impl Verdict {
    pub fn valid(&self) -> bool {
        self.prefix
            && self.base45
            && self.zlib
            && self.cose
            && self.claims
            && self.signature
            && self.expiry
    }

    /// The stages and the claims as one JSON object (what `yunnao code verify` prints).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "prefix": self.prefix,
            "base45": self.base45,
            "zlib": self.zlib,
            "cose": self.cose,
            "claims": self.claims,
            "signature": self.signature,
            "expiry": self.expiry,
            "valid": self.valid(),
            "kid": self.kid,
            "algorithm": self.algorithm,
            "issuer": self.issuer,
            "claim_set": self.claim_set,
            "error": self.error,
        })
    }
}

/// A CBOR value as JSON, at most 16 levels deep: maps with their keys as text, byte strings
/// as base64, tags dropped.
fn cbor_json(value: &coset::cbor::value::Value, depth: usize) -> serde_json::Value {
    use base64::Engine;
    use coset::cbor::value::Value;
    use serde_json::Value as J;
    if depth > 16 {
        return J::Null;
    }
    match value {
        Value::Integer(i) => i64::try_from(i128::from(*i))
            .map(J::from)
            .unwrap_or_else(|_| J::String(i128::from(*i).to_string())),
        Value::Bytes(b) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Text(t) => J::String(t.clone()),
        Value::Bool(b) => J::Bool(*b),
        Value::Null => J::Null,
        Value::Tag(_, inner) => cbor_json(inner, depth + 1),
        Value::Array(items) => J::Array(items.iter().map(|v| cbor_json(v, depth + 1)).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Text(t) => t.clone(),
                        Value::Integer(i) => i128::from(*i).to_string(),
                        other => cbor_json(other, depth + 1).to_string(),
                    };
                    (key, cbor_json(v, depth + 1))
                })
                .collect(),
        ),
        _ => J::Null,
    }
}

/// Verifies a code's text at `at` (seconds since the epoch), stage by stage, against the keys
/// and schemes `keys` trusts.
pub fn verify(text: &str, keys: &KeySet, at: i64) -> Verdict {
    use base64::Engine;
    let mut v = Verdict::default();
    let fail = |mut v: Verdict, why: String| {
        v.error = Some(why);
        v
    };
    if text.len() > MAX_CODE_CHARS {
        return fail(v, format!("a code is at most {MAX_CODE_CHARS} characters"));
    }
    let text = text.trim();
    let Some((scheme, body)) = keys
        .prefixes()
        .iter()
        .find_map(|p| text.strip_prefix(p.as_str()).map(|b| (p.as_str(), b)))
    else {
        return fail(
            v,
            format!(
                "the code does not start with a trusted scheme's prefix ({})",
                keys.prefixes().join(" ")
            ),
        );
    };
    v.prefix = true;
    let Ok(compressed) = base45::decode(body) else {
        return fail(v, "not base45".into());
    };
    v.base45 = true;
    let mut bytes = Vec::new();
    let inflated = flate2::read::ZlibDecoder::new(compressed.as_slice())
        .take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut bytes);
    if inflated.is_err() {
        return fail(v, "not zlib".into());
    }
    if bytes.len() as u64 > MAX_TOKEN_BYTES {
        return fail(v, format!("the token is over {MAX_TOKEN_BYTES} bytes"));
    }
    v.zlib = true;
    let sign1 =
        match CoseSign1::from_tagged_slice(&bytes).or_else(|_| CoseSign1::from_slice(&bytes)) {
            Ok(s) => s,
            Err(e) => return fail(v, format!("not a COSE_Sign1: {e}")),
        };
    // The key id may be in either header (the DCC allows the unprotected one).
    let kid = if sign1.protected.header.key_id.is_empty() {
        sign1.unprotected.key_id.clone()
    } else {
        sign1.protected.header.key_id.clone()
    };
    let Some(algorithm) = sign1.protected.header.alg.as_ref().and_then(algorithm_id) else {
        return fail(v, "the protected header names no algorithm".into());
    };
    let algorithm_name = match algorithm {
        ALG_SM2_SM3 => "SM2-SM3",
        ALG_ES256 => "ES256",
        ALG_PS256 => "PS256",
        other => {
            return fail(
                v,
                format!("algorithm {other} is not SM2-SM3 (-70101), ES256 (-7) or PS256 (-37)"),
            );
        }
    };
    v.cose = true;
    v.algorithm = Some(algorithm_name.into());
    v.kid = Some(match std::str::from_utf8(&kid) {
        Ok(t) if !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic()) => t.to_owned(),
        _ => base64::engine::general_purpose::STANDARD.encode(&kid),
    });
    let Some(payload) = sign1.payload.as_deref() else {
        return fail(v, "claims: the COSE_Sign1 has no payload".into());
    };
    // The payload is decoded once: its JSON view and the claims set come from the same value.
    let set = match coset::cbor::value::Value::from_slice(payload) {
        Ok(value) => {
            v.claim_set = Some(cbor_json(&value, 0));
            ClaimsSet::from_cbor_value(value)
        }
        Err(e) => Err(e),
    };
    let set = match set {
        Ok(set) => set,
        Err(e) => return fail(v, format!("claims: not a CWT claims set: {e}")),
    };
    let expires_at = match set.expiration_time {
        Some(Timestamp::WholeSeconds(s)) => s,
        Some(Timestamp::FractionalSeconds(s)) => s as i64,
        None => return fail(v, "claims: no expiry".into()),
    };
    let issued_at = match set.issued_at {
        Some(Timestamp::WholeSeconds(s)) => Some(s),
        Some(Timestamp::FractionalSeconds(s)) => Some(s as i64),
        None => None,
    };
    if scheme == PREFIX {
        match claims_of(set) {
            Ok(claims) => v.decoded = Some(claims),
            Err(e) => return fail(v, format!("claims: {e}")),
        }
    }
    v.claims = true;
    let kid_text = v.kid.clone().unwrap_or_default();
    let Some(trusted) = keys.get(&kid) else {
        return fail(
            v,
            format!("signed by an unknown or untrusted key ({kid_text})"),
        );
    };
    if trusted.key.algorithm() != algorithm {
        let why = format!(
            "the code names {algorithm_name} but key {kid_text} is {}",
            trusted.key.algorithm_name()
        );
        return fail(v, why);
    }
    let checked =
        sign1.verify_signature(b"", |signature, data| trusted.key.verify(data, signature));
    if let Err(e) = checked {
        return fail(v, format!("signature: {e}"));
    }
    // The certificate must have been valid when the code was signed (its issued-at, as the
    // DCC rules say), or at the validation time when the code names no issued-at.
    let signed_at = issued_at.unwrap_or(at);
    if trusted.not_before.is_some_and(|t| signed_at < t)
        || trusted.not_after.is_some_and(|t| signed_at > t)
    {
        return fail(
            v,
            format!(
                "the issuer's certificate ({}) was not valid when the code was signed ({signed_at})",
                trusted.issuer
            ),
        );
    }
    v.signature = true;
    v.issuer = Some(trusted.issuer.clone());
    if at >= expires_at || issued_at.is_some_and(|i| at + 60 < i) {
        return fail(v, format!("expired at {expires_at} (validated at {at})"));
    }
    v.expiry = true;
    v
}

/// The code as a QR symbol at error correction level M (phone screens): its SVG and version.
pub fn qr_svg(text: &str) -> Result<(String, i16), CodeError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(err)?;
    let version = match code.version() {
        qrcode::Version::Normal(n) | qrcode::Version::Micro(n) => n,
    };
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    Ok((svg, version))
}

/// The code as a QR symbol at level M in PNG: 1 bit per pixel, `scale` pixels a module, a
/// quiet zone of four modules.
pub fn qr_png(text: &str, scale: usize) -> Result<Vec<u8>, CodeError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(err)?;
    let modules = code.width();
    let colors = code.to_colors();
    let scale = scale.clamp(1, 16);
    let side = (modules + 8) * scale;
    let row_bytes = side.div_ceil(8);
    let mut pixels = vec![0u8; row_bytes * side];
    for y in 0..side {
        for x in 0..side {
            let (mx, my) = ((x / scale).wrapping_sub(4), (y / scale).wrapping_sub(4));
            let dark =
                mx < modules && my < modules && colors[my * modules + mx] == qrcode::Color::Dark;
            // In grayscale 1-bit, 1 is white.
            if !dark {
                pixels[y * row_bytes + x / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    let mut out = Vec::new();
    {
        let side = u32::try_from(side).map_err(err)?;
        let mut encoder = png::Encoder::new(&mut out, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::One);
        let mut writer = encoder.write_header().map_err(err)?;
        writer.write_image_data(&pixels).map_err(err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer {
            kid: "Q1".into(),
            key: SigningKey::generate("SM2-SM3").expect("key"),
        }
    }

    fn trusting(s: &Signer) -> KeySet {
        let mut keys = KeySet::new();
        keys.insert(
            s.kid.as_bytes(),
            TrustedKey {
                key: s.key.verify_key(),
                issuer: "QD".into(),
                not_before: None,
                not_after: None,
            },
        );
        keys
    }

    fn claims(now: i64) -> Claims {
        Claims {
            issuer: "QD".into(),
            subject: pseudonym(b"platform secret", "370202198801010019"),
            issued_at: now,
            expires_at: now + DEFAULT_LIFETIME_S,
            nonce: vec![7; 6],
            holder_kind: "resident".into(),
            refs: [
                ("social_security_card", "3702001062026200577952"),
                ("insurance_registration", "370200109202611860173J"),
                ("transit_account", "QDMETRO-000123456"),
                ("library_card", "QDLIB-0042"),
            ]
            .iter()
            .map(|(kind, id)| CardRef {
                kind: (*kind).into(),
                handle: card_handle(b"platform secret", kind, id),
            })
            .collect(),
        }
    }

    #[test]
    fn a_code_round_trips_and_fits_a_small_qr_symbol() {
        let s = signer();
        let now = 1_796_000_000;
        let text = issue(&s, &claims(now)).expect("issued");
        assert!(text.starts_with(PREFIX));
        let keys = trusting(&s);
        let verdict = verify(&text, &keys, now + 5);
        assert!(verdict.valid(), "{verdict:?}");
        assert_eq!(verdict.decoded, Some(claims(now)));
        assert!(
            !text.contains("370202198801010019"),
            "the identity number is never in the code"
        );
        let (svg, version) = qr_svg(&text).expect("qr");
        assert!(svg.starts_with("<?xml") || svg.contains("<svg"));
        assert!(
            version <= 10,
            "QR version {version} at level M for {} characters",
            text.len()
        );
    }

    /// Each stage fails on its own vector, and the stages before it pass.
    #[test]
    fn each_stage_fails_on_its_own() {
        let s = signer();
        let now = 1_796_000_000;
        let text = issue(&s, &claims(now)).expect("issued");
        let keys = trusting(&s);
        let other = signer();
        let forged = issue(
            &Signer {
                kid: s.kid.clone(),
                key: other.key,
            },
            &claims(now),
        )
        .expect("issued");
        let not_zlib = format!("{PREFIX}{}", base45::encode(b"plain bytes"));
        let not_cose = {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(&[0xA1, 0x01, 0x02]).expect("zlib");
            format!("{PREFIX}{}", base45::encode(z.finish().expect("zlib")))
        };
        // (code, validation time, the first stage expected to fail)
        let cases: [(&str, i64, &str); 6] = [
            (&text.replacen("QD1:", "XX9:", 1), now, "prefix"),
            ("QD1:~~not base45~~", now, "base45"),
            (&not_zlib, now, "zlib"),
            (&not_cose, now, "cose"),
            (&forged, now, "signature"),
            (&text, now + DEFAULT_LIFETIME_S, "expiry"),
        ];
        let order = [
            "prefix",
            "base45",
            "zlib",
            "cose",
            "claims",
            "signature",
            "expiry",
        ];
        for (code, at, failing) in cases {
            let v = verify(code, &keys, at);
            let stages = [
                v.prefix,
                v.base45,
                v.zlib,
                v.cose,
                v.claims,
                v.signature,
                v.expiry,
            ];
            let first = order
                .iter()
                .zip(stages)
                .find(|(_, ok)| !ok)
                .map(|(n, _)| *n);
            assert_eq!(first, Some(failing), "{v:?}");
            assert!(v.error.is_some());
        }
    }

    #[test]
    fn pseudonyms_are_stable_per_holder_and_secret() {
        let a = pseudonym(b"s1", "370202198801010019");
        assert_eq!(a, pseudonym(b"s1", "370202198801010019"));
        assert_ne!(a, pseudonym(b"s2", "370202198801010019"));
        assert_ne!(a, pseudonym(b"s1", "11010519491231002X"));
        assert_eq!(a.len(), 24);
    }
}
