//! Published and made test vectors for the code decoder: RFC 9285's base45 examples, the EU
//! DCC test data's AT example (ES256, an X.509 issuer certificate, its DCC key id), codes
//! signed with ES256 and PS256 under certificates made with OpenSSL for these tests, and a
//! stream of mangled codes that must be refused without a panic.

use yunnao_codes::{
    ALG_ES256, ALG_PS256, CardRef, Claims, KeySet, PREFIX, Signer, SigningKey, TrustedKey, Verdict,
    seal, verify,
};

const DCC_AT: &str = include_str!("vectors/dcc-at-ec256.json");
const ES256_CERT: &str = include_str!("vectors/es256.cert.pem");
const ES256_KEY: &str = include_str!("vectors/es256.key.pem");
const PS256_CERT: &str = include_str!("vectors/ps256.cert.pem");
const PS256_KEY: &str = include_str!("vectors/ps256.key.pem");

fn stages(v: &Verdict) -> [(&'static str, bool); 7] {
    [
        ("prefix", v.prefix),
        ("base45", v.base45),
        ("zlib", v.zlib),
        ("cose", v.cose),
        ("claims", v.claims),
        ("signature", v.signature),
        ("expiry", v.expiry),
    ]
}

fn first_failing(v: &Verdict) -> Option<&'static str> {
    stages(v).iter().find(|(_, ok)| !ok).map(|(n, _)| *n)
}

fn rfc3339(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("time")
        .timestamp()
}

#[test]
fn base45_matches_rfc_9285() {
    // RFC 9285 §4.3 and §4.4.
    for (plain, encoded) in [
        ("AB", "BB8"),
        ("Hello!!", "%69 VD92EX0"),
        ("base-45", "UJCLQE7W581"),
        ("ietf!", "QED8WEX0"),
    ] {
        assert_eq!(base45::encode(plain), encoded);
        assert_eq!(
            base45::decode(encoded).expect("decodes"),
            plain.as_bytes(),
            "{encoded}"
        );
    }
    // §6: a triple over 65535 is not base45.
    assert!(base45::decode("GGW").is_err());
}

/// The EU DCC test data's AT example passes every stage at its validation clock, with the
/// certificate's DCC key id, and fails exactly the stage each change should break.
#[test]
fn the_eu_dcc_vector_verifies_stage_by_stage() {
    let vector: serde_json::Value = serde_json::from_str(DCC_AT).expect("vector");
    let code = vector["PREFIX"].as_str().expect("prefix");
    let certificate = vector["CERTIFICATE"].as_str().expect("certificate");
    let at = rfc3339(vector["VALIDATIONCLOCK"].as_str().expect("clock"));
    let mut keys = KeySet::new();
    let kid = keys
        .trust_certificate(certificate.as_bytes())
        .expect("trusted");
    assert_eq!(hex::encode(&kid), "04bde79bdb2ae660", "the DCC key id");
    let v = verify(code, &keys, at);
    assert!(v.valid(), "{v:?}");
    for (stage, expected) in vector["EXPECTED"].as_object().expect("expected") {
        let got = stages(&v)
            .iter()
            .find(|(n, _)| n == stage)
            .map(|(_, ok)| *ok);
        assert_eq!(got, expected.as_bool(), "{stage}");
    }
    assert_eq!(v.algorithm.as_deref(), Some("ES256"));
    assert_eq!(v.kid.as_deref(), Some("BL3nm9sq5mA="));
    let claims = v.claim_set.expect("claims");
    assert_eq!(claims["1"], "AT");
    assert_eq!(claims["-260"]["1"]["nam"]["gn"], "Gabriele");
    // The COSE in the vector is what the code carries.
    let cose = hex::decode(vector["COSE"].as_str().expect("cose")).expect("hex");
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::ZlibDecoder::new(base45::decode(&code[4..]).expect("base45").as_slice()),
        &mut inflated,
    )
    .expect("zlib");
    assert_eq!(inflated, cose);

    // (keys, time, the first stage expected to fail)
    let cases: [(&KeySet, i64, &str); 3] = [
        (&KeySet::new(), at, "signature"),
        (&keys, rfc3339("2021-05-06T00:00:00Z"), "expiry"),
        // After the certificate's validity (2021-06-02) the code is still genuine (signed
        // while the certificate was valid), and long expired.
        (&keys, rfc3339("2021-07-01T00:00:00Z"), "expiry"),
    ];
    for (keys, at, failing) in cases {
        let v = verify(code, keys, at);
        assert_eq!(first_failing(&v), Some(failing), "{v:?}");
        assert!(v.error.is_some());
    }
}

fn foreign_claims(now: i64) -> Vec<u8> {
    use coset::CborSerializable;
    coset::cwt::ClaimsSetBuilder::new()
        .issuer("XP".into())
        .subject("foreign-holder-1".into())
        .issued_at(coset::cwt::Timestamp::WholeSeconds(now))
        .expiration_time(coset::cwt::Timestamp::WholeSeconds(now + 60))
        .build()
        .to_vec()
        .expect("claims")
}

fn der_kid(pem: &str) -> Vec<u8> {
    let der = yunnao_codes::trust::certificate_der(pem.as_bytes()).expect("der");
    use sha2::Digest;
    sha2::Sha256::digest(&der)[..8].to_vec()
}

/// Another province's ES256 code and another city's PS256 code, each under its issuer
/// certificate, with its own prefix once the verifier reads that scheme.
#[test]
fn other_issuers_codes_verify_with_es256_and_ps256() {
    use p256::pkcs8::DecodePrivateKey as _;
    let now = chrono::Utc::now().timestamp();
    let es_key = p256::ecdsa::SigningKey::from_pkcs8_pem(ES256_KEY).expect("es256 key");
    let es_code = seal(
        "SD1:",
        ALG_ES256,
        &der_kid(ES256_CERT),
        foreign_claims(now),
        |data| {
            use p256::ecdsa::signature::Signer as _;
            let s: p256::ecdsa::Signature = es_key.sign(data);
            s.to_bytes().to_vec()
        },
    )
    .expect("es256 code");
    let rsa_key = {
        use rsa::pkcs8::DecodePrivateKey as _;
        rsa::PrivateKey::from_pkcs8_pem(PS256_KEY).expect("ps256 key")
    };
    let ps_code = seal(
        "HC1:",
        ALG_PS256,
        &der_kid(PS256_CERT),
        foreign_claims(now),
        |data| {
            use rsa::signature::{SignatureEncoding as _, Signer as _};
            let signer = rsa::pss::SigningKey::<sha2::Sha256>::new(rsa_key.clone());
            signer.sign(data).to_vec()
        },
    )
    .expect("ps256 code");
    let mut keys = KeySet::new();
    keys.trust_certificate(ES256_CERT.as_bytes())
        .expect("es cert");
    keys.trust_certificate(PS256_CERT.as_bytes())
        .expect("ps cert");
    // The province's prefix is not read until the bureau trusts that scheme.
    assert_eq!(first_failing(&verify(&es_code, &keys, now)), Some("prefix"));
    keys.accept_prefix("SD1:");
    for (code, algorithm) in [(&es_code, "ES256"), (&ps_code, "PS256")] {
        let v = verify(code, &keys, now + 1);
        assert!(v.valid(), "{algorithm}: {v:?}");
        assert_eq!(v.algorithm.as_deref(), Some(algorithm));
        assert!(v.decoded.is_none(), "not one of this city's codes");
        assert_eq!(
            v.claim_set.as_ref().expect("claims")["2"],
            "foreign-holder-1"
        );
        assert!(
            v.issuer.as_deref().is_some_and(|i| i.contains("CN=")),
            "{:?}",
            v.issuer
        );
    }
    // Signed before the certificate was valid (its issued-at ten years back): not believed.
    let early = now - 10 * 365 * 86_400;
    let backdated = seal(
        "SD1:",
        ALG_ES256,
        &der_kid(ES256_CERT),
        foreign_claims(early),
        |data| {
            use p256::ecdsa::signature::Signer as _;
            let s: p256::ecdsa::Signature = es_key.sign(data);
            s.to_bytes().to_vec()
        },
    )
    .expect("code");
    let v = verify(&backdated, &keys, early + 1);
    assert_eq!(first_failing(&v), Some("signature"), "{v:?}");
    assert!(
        v.error
            .as_deref()
            .is_some_and(|e| e.contains("not valid when"))
    );
    // An RSA key id naming an ES256 signature: refused at the signature stage.
    let wrong_alg = seal(
        "HC1:",
        ALG_ES256,
        &der_kid(PS256_CERT),
        foreign_claims(now),
        |_| vec![0; 64],
    )
    .expect("code");
    let v = verify(&wrong_alg, &keys, now);
    assert_eq!(first_failing(&v), Some("signature"), "{v:?}");
}

fn city_claims(now: i64) -> Claims {
    Claims {
        issuer: "QD".into(),
        subject: "0a1b2c3d4e5f60718293a4b5".into(),
        issued_at: now,
        expires_at: now + 30,
        nonce: vec![1, 2, 3, 4, 5, 6],
        holder_kind: "resident".into(),
        refs: vec![CardRef {
            kind: "transit_account".into(),
            handle: "a1b2c3d4e5f6".into(),
        }],
    }
}

/// This city's codes round-trip under SM2 and under ES256, and a key of one algorithm does
/// not verify the other.
#[test]
fn city_codes_round_trip_with_sm2_and_es256() {
    let now = chrono::Utc::now().timestamp();
    let mut keys = KeySet::new();
    let mut codes = Vec::new();
    for (kid, algorithm) in [("Q1", "SM2-SM3"), ("E1", "ES256")] {
        let signer = Signer {
            kid: kid.into(),
            key: SigningKey::generate(algorithm).expect("key"),
        };
        keys.insert(
            kid.as_bytes(),
            TrustedKey {
                key: signer.key.verify_key(),
                issuer: "QD".into(),
                not_before: None,
                not_after: None,
            },
        );
        codes.push((
            algorithm,
            yunnao_codes::issue(&signer, &city_claims(now)).expect("code"),
        ));
    }
    for (algorithm, code) in &codes {
        let v = verify(code, &keys, now + 1);
        assert!(v.valid(), "{algorithm}: {v:?}");
        assert_eq!(v.algorithm.as_deref(), Some(*algorithm));
        assert_eq!(v.decoded, Some(city_claims(now)));
        let (_, version) = yunnao_codes::qr_svg(code).expect("qr");
        assert!(version <= 10);
        let png = yunnao_codes::qr_png(code, 4).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}

/// Truncated, mangled and random codes are refused with a reason, never a panic (the fuzz
/// target in `fuzz/` explores further; this is its deterministic floor).
#[test]
fn mangled_codes_are_refused_without_panicking() {
    let now = chrono::Utc::now().timestamp();
    let signer = Signer {
        kid: "Q1".into(),
        key: SigningKey::generate("SM2-SM3").expect("key"),
    };
    let mut keys = KeySet::new();
    keys.insert(
        b"Q1".to_vec(),
        TrustedKey {
            key: signer.key.verify_key(),
            issuer: "QD".into(),
            not_before: None,
            not_after: None,
        },
    );
    let code = yunnao_codes::issue(&signer, &city_claims(now)).expect("code");
    let mut state: u64 = 0x2022_0710;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet: Vec<char> = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
        .chars()
        .collect();
    let mut refused = 0;
    for round in 0..4_000 {
        let mut chars: Vec<char> = code.chars().collect();
        match round % 4 {
            0 => chars.truncate(PREFIX.len() + (next() as usize % (chars.len() - PREFIX.len()))),
            1 => {
                let i = PREFIX.len() + next() as usize % (chars.len() - PREFIX.len());
                chars[i] = alphabet[next() as usize % alphabet.len()];
            }
            2 => {
                let n = next() as usize % 600;
                chars = PREFIX.chars().collect();
                chars.extend((0..n).map(|_| alphabet[next() as usize % alphabet.len()]));
            }
            _ => {
                // Random bytes, compressed and encoded: through to the COSE and CBOR parsers.
                let n = next() as usize % 400;
                let bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
                let mut z =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut z, &bytes).expect("zlib");
                chars = format!("{PREFIX}{}", base45::encode(z.finish().expect("zlib")))
                    .chars()
                    .collect();
            }
        }
        let text: String = chars.into_iter().collect();
        let v = verify(&text, &keys, now);
        if !v.valid() {
            refused += 1;
            assert!(v.error.is_some(), "a refusal names its reason: {text}");
        }
    }
    assert!(refused > 3_500, "{refused} of 4000 refused");
    // A zlib bomb stops at the token bound.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut z, &vec![0u8; 1 << 20]).expect("zlib");
    let bomb = format!("{PREFIX}{}", base45::encode(z.finish().expect("zlib")));
    let v = verify(&bomb, &keys, now);
    assert_eq!(first_failing(&v), Some("zlib"), "{:?}", v.error);
}
