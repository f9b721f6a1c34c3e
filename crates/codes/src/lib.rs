//! One code for the city (一码通城), begun (issue 23): the code itself. A code is a CBOR Web
//! Token (RFC 8392) in a COSE_Sign1 (RFC 9052), zlib-compressed, base45-encoded (RFC 9285)
//! and prefixed `QD1:` (scheme and version, as the EU DCC's `HC1:`). Its claims are the
//! issuer, a pseudonymous subject (never the identity number), issued-at, expiry, a nonce, the
//! holder kind and references to the cards and licences the holder bound (kind and id, not
//! their contents). It is signed with SM2 (GB/T 32918, SM3, user ID `1234567812345678`) under
//! the private-use COSE algorithm [`ALG_SM2_SM3`]. Verification reports each stage on its own
//! (prefix, base45, zlib, COSE, claims, signature, expiry at a given time), so a test vector
//! that expects one stage to fail can be checked. The API, scenarios, scan log, key rotation,
//! other issuers and the pages are still to come.

pub mod api;
pub mod hub;
mod migrations;

pub use migrations::MIGRATIONS;

use coset::cwt::{ClaimsSet, ClaimsSetBuilder, Timestamp};
use coset::{CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Write};

/// The scheme and version every code of this platform starts with.
pub const PREFIX: &str = "QD1:";
/// COSE algorithm id for SM2 signatures over SM3 (private use: below -65536).
pub const ALG_SM2_SM3: i64 = -70_101;
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

/// A signing key with its key id.
pub struct Signer {
    pub kid: String,
    pub key: yunnao_gm::Sm2KeyPair,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeError(pub String);

impl std::fmt::Display for CodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(what: impl std::fmt::Display) -> CodeError {
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
    let protected = HeaderBuilder::new()
        .algorithm_label(coset::RegisteredLabelWithPrivate::PrivateUse(ALG_SM2_SM3))
        .key_id(signer.kid.as_bytes().to_vec())
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .create_signature(b"", |data| signer.key.sign(data).0.to_vec())
        .build();
    let bytes = sign1.to_tagged_vec().map_err(err)?;
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zlib.write_all(&bytes).map_err(err)?;
    let compressed = zlib.finish().map_err(err)?;
    Ok(format!("{PREFIX}{}", base45::encode(&compressed)))
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
    /// The key id the code names.
    pub kid: Option<String>,
    pub decoded: Option<Claims>,
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
}

/// The public keys a verifier trusts, by key id.
pub type KeySet = HashMap<String, yunnao_gm::Sm2PublicKey>;

/// Verifies a code's text at `at` (seconds since the epoch), stage by stage.
pub fn verify(text: &str, keys: &KeySet, at: i64) -> Verdict {
    let mut v = Verdict::default();
    let fail = |mut v: Verdict, why: String| {
        v.error = Some(why);
        v
    };
    if text.len() > MAX_CODE_CHARS {
        return fail(v, format!("a code is at most {MAX_CODE_CHARS} characters"));
    }
    let Some(body) = text.trim().strip_prefix(PREFIX) else {
        return fail(v, format!("the code does not start with {PREFIX}"));
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
    let alg_ok = sign1.protected.header.alg
        == Some(coset::RegisteredLabelWithPrivate::PrivateUse(ALG_SM2_SM3));
    let kid = String::from_utf8_lossy(&sign1.protected.header.key_id).into_owned();
    if !alg_ok {
        return fail(v, "the algorithm is not SM2 with SM3".into());
    }
    v.cose = true;
    v.kid = Some(kid.clone());
    let claims = match sign1
        .payload
        .as_deref()
        .ok_or_else(|| err("no payload"))
        .and_then(|p| ClaimsSet::from_slice(p).map_err(err))
        .and_then(claims_of)
    {
        Ok(c) => c,
        Err(e) => return fail(v, format!("claims: {e}")),
    };
    v.claims = true;
    v.decoded = Some(claims.clone());
    let Some(key) = keys.get(&kid) else {
        return fail(v, format!("no trusted key {kid}"));
    };
    let checked = sign1.verify_signature(b"", |signature, data| {
        yunnao_gm::Sm2Signature::from_slice(signature)
            .and_then(|s| key.verify(data, &s))
            .map_err(|e| e.to_string())
    });
    if let Err(e) = checked {
        return fail(v, format!("signature: {e}"));
    }
    v.signature = true;
    if at >= claims.expires_at || at + 60 < claims.issued_at {
        return fail(
            v,
            format!("expired at {} (validated at {at})", claims.expires_at),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer {
            kid: "Q1".into(),
            key: yunnao_gm::Sm2KeyPair::generate().expect("key"),
        }
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
        let keys: KeySet = [(s.kid.clone(), s.key.public_key())].into_iter().collect();
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
        let keys: KeySet = [(s.kid.clone(), s.key.public_key())].into_iter().collect();
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
            (&text.replacen("QD1:", "HC1:", 1), now, "prefix"),
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
