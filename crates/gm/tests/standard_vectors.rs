//! The standard test vectors of GB/T 32905 (SM3), GB/T 32907 (SM4), GM/T 0003.5 (SM2) and
//! RFC 8998 (SM4-GCM).

use yunnao_gm::*;

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text.split_whitespace().collect::<String>()).expect("vector is valid hex")
}

#[test]
fn sm3_vectors() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"abc",
            "66c7f0f4 62eeedd9 d1f2d46b dc10e4e2 4167c487 5cf2f7a2 297da02b 8f4ba8e0",
        ),
        (
            &b"abcd".repeat(16),
            "debe9ff9 2275b8a1 38604889 c18e5a4d 6fdb70e5 387e5765 293dcba3 9c0c5732",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(sm3(input).to_vec(), unhex(expected), "SM3 of {input:?}");
    }
    assert_eq!(sm3_parts(&[b"a", b"bc"]), sm3(b"abc"));
}

#[test]
fn sm4_single_block_vector() {
    let key: [u8; 16] = unhex("0123456789abcdeffedcba9876543210")
        .try_into()
        .expect("16 bytes");
    let ciphertext = sm4_encrypt_block(&key, &key);
    assert_eq!(
        ciphertext.to_vec(),
        unhex("681edf34d206965e86b3e94f536e4246")
    );
    assert_eq!(sm4_decrypt_block(&key, &ciphertext), key);
}

#[test]
fn sm4_one_million_rounds_vector() {
    let key: [u8; 16] = unhex("0123456789abcdeffedcba9876543210")
        .try_into()
        .expect("16 bytes");
    let mut block = key;
    for _ in 0..1_000_000 {
        block = sm4_encrypt_block(&key, &block);
    }
    assert_eq!(block.to_vec(), unhex("595298c7c6fd271f0402f804c33d3f66"));
}

/// GM/T 0003.5-2012 annex A.2: signature over "message digest" with ID 1234567812345678 on the
/// recommended curve.
#[test]
fn sm2_gmt_0003_5_annex_a2_signature_verifies() {
    let public_key = unhex(
        "04 09F9DF31 1E5421A1 50DD7D16 1E4BC5C6 72179FAD 1833FC07 6BB08FF3 56F35020
            CCEA490C E26775A5 2DC6EA71 8CC1AA60 0AED05FB F35E084A 6632F607 2DA9AD13",
    );
    let signature = unhex(
        "F5A03B06 48D2C463 0EEAC513 E1BB81A1 5944DA38 27D5B741 43AC7EAC EEE720B3
            B1B6AA29 DF212FD8 763182BC 0D421CA1 BB9038FD 1F7F42D4 840B69C4 85BBC1AA",
    );
    let key = Sm2PublicKey::from_sec1(&public_key).expect("annex key parses");
    let signature = Sm2Signature::from_slice(&signature).expect("64 bytes");
    key.verify(b"message digest", &signature)
        .expect("annex A.2 signature verifies");
    assert_eq!(
        key.verify(b"message digesT", &signature),
        Err(GmError::BadSignature)
    );

    // The annex's private key derives the same public key.
    let secret = unhex("3945208F 7B2144B1 3F36E38A C6D39F95 88939369 2860B51A 42FB81EF 4DF7C5B8");
    let pair = Sm2KeyPair::from_secret_bytes(&secret).expect("annex secret key");
    assert_eq!(pair.public_key().to_sec1(), public_key);
    let own = pair.sign(b"message digest");
    key.verify(b"message digest", &own)
        .expect("our signature verifies");
}

#[test]
fn sm2_sign_verify_roundtrip_and_der() {
    let pair = Sm2KeyPair::generate().expect("key");
    let signature = pair.sign(b"yunnao");
    let public = Sm2PublicKey::from_hex(&pair.public_key().to_hex()).expect("hex roundtrip");
    public.verify(b"yunnao", &signature).expect("verifies");
    let der = signature.to_der().expect("der");
    assert_eq!(Sm2Signature::from_der(&der).expect("parse der"), signature);
    let other = Sm2KeyPair::generate().expect("key");
    assert_eq!(
        other.public_key().verify(b"yunnao", &signature),
        Err(GmError::BadSignature)
    );
    assert!(Sm2KeyPair::from_secret_bytes(&[0u8; 32]).is_err());
}

/// RFC 8998 appendix A.1: SM4-GCM.
#[test]
fn sm4_gcm_rfc8998_vector() {
    let key: [u8; 16] = unhex("0123456789ABCDEFFEDCBA9876543210")
        .try_into()
        .expect("16 bytes");
    let nonce: [u8; 12] = unhex("00001234567800000000ABCD")
        .try_into()
        .expect("12 bytes");
    let aad = unhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
    let plaintext = unhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD\
         EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
    );
    let expected_ciphertext = unhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735\
         D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D",
    );
    let expected_tag = unhex("83DE3541E4C2B58177E065A9BF7B62EC");

    let cipher = FieldCipher::new(&key);
    let sealed = cipher
        .encrypt_with_nonce(&nonce, &plaintext, &aad)
        .expect("encrypts");
    assert_eq!(&sealed[..12], &nonce);
    assert_eq!(&sealed[12..12 + plaintext.len()], &expected_ciphertext[..]);
    assert_eq!(&sealed[12 + plaintext.len()..], &expected_tag[..]);
    assert_eq!(cipher.decrypt(&sealed, &aad).expect("decrypts"), plaintext);

    let mut tampered = sealed.clone();
    tampered[20] ^= 1;
    assert_eq!(cipher.decrypt(&tampered, &aad), Err(GmError::Decrypt));
    assert_eq!(cipher.decrypt(&sealed, b"other row"), Err(GmError::Decrypt));
    assert_eq!(cipher.decrypt(&sealed[..10], &aad), Err(GmError::Decrypt));
}
