//! Cross-checks against OpenSSL 3 (SM2 signatures both ways, SM3, SM4) when `openssl` is on the
//! machine; without it each test says so and passes, since the standard vectors already pin
//! the algorithms.

use std::path::Path;
use std::process::Command;
use yunnao_gm::*;

/// SubjectPublicKeyInfo prefix for an uncompressed SM2 point (id-ecPublicKey, curve SM2).
const SM2_SPKI_PREFIX: &str = "3059301306072a8648ce3d020106082a811ccf5501822d034200";

fn openssl(args: &[&str], dir: &Path) -> Option<Vec<u8>> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(output.stdout)
}

fn have_openssl() -> bool {
    let found = Command::new("openssl").arg("version").output().is_ok();
    if !found {
        eprintln!("openssl not found: cross-check not run");
    }
    found
}

#[test]
fn sm3_matches_openssl() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.path().join("data"), &data).expect("write");
    let out = openssl(&["dgst", "-sm3", "-r", "data"], dir.path()).expect("openssl runs");
    let text = String::from_utf8(out).expect("utf8");
    let theirs = text.split_whitespace().next().expect("digest");
    assert_eq!(theirs, hex::encode(sm3(&data)));
}

#[test]
fn sm4_matches_openssl() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let key: [u8; 16] = random_bytes().expect("random");
    let block: [u8; 16] = random_bytes().expect("random");
    std::fs::write(dir.path().join("block"), block).expect("write");
    let out = openssl(
        &[
            "enc",
            "-sm4-ecb",
            "-nopad",
            "-K",
            &hex::encode(key),
            "-in",
            "block",
        ],
        dir.path(),
    )
    .expect("openssl runs");
    assert_eq!(out, sm4_encrypt_block(&key, &block).to_vec());
}

#[test]
fn sm2_signatures_cross_verify_with_openssl() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let message = "雲腦 audit checkpoint 42".as_bytes();
    std::fs::write(d.join("msg"), message).expect("write");
    let distid = format!("distid:{DEFAULT_SM2_ID}");

    // OpenSSL signs, we verify.
    openssl(&["genpkey", "-algorithm", "SM2", "-out", "key.pem"], d);
    let spki =
        openssl(&["pkey", "-in", "key.pem", "-pubout", "-outform", "DER"], d).expect("public key");
    let point = &spki[spki.len() - 65..];
    let theirs = Sm2PublicKey::from_sec1(point).expect("openssl public key parses");
    openssl(
        &[
            "pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", "key.pem", "-pkeyopt",
            &distid, "-in", "msg", "-out", "sig.der",
        ],
        d,
    );
    let der = std::fs::read(d.join("sig.der")).expect("signature");
    let signature = Sm2Signature::from_der(&der).expect("DER signature");
    theirs
        .verify(message, &signature)
        .expect("OpenSSL's signature verifies here");

    // We sign, OpenSSL verifies.
    let ours = Sm2KeyPair::generate().expect("key");
    let spki =
        hex::decode(format!("{SM2_SPKI_PREFIX}{}", ours.public_key().to_hex())).expect("hex");
    std::fs::write(d.join("ours.der"), spki).expect("write");
    std::fs::write(
        d.join("ours.sig"),
        ours.sign(message).to_der().expect("der"),
    )
    .expect("write");
    let out = openssl(
        &[
            "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-keyform", "DER",
            "-inkey", "ours.der", "-pkeyopt", &distid, "-in", "msg", "-sigfile", "ours.sig",
        ],
        d,
    )
    .expect("openssl runs");
    assert!(String::from_utf8_lossy(&out).contains("Signature Verified Successfully"));
}
