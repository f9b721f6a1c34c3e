//! GM/T cryptography for yunnao: SM2 signatures (GB/T 32918), SM3 hashing (GB/T 32905) and
//! SM4 encryption (GB/T 32907), wrapped so the rest of the platform never touches curve or
//! cipher types directly.
//!
//! Everything here is a thin layer over the RustCrypto crates; the tests pin the standard
//! vectors and cross-check with OpenSSL where it is installed.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use sm2::dsa::signature::{Signer, Verifier};
use sm3::Digest;
use sm4::cipher::{BlockCipherDecrypt, BlockCipherEncrypt};

/// The default SM2 distinguishing identifier (user ID in Z_A) from GB/T 35276.
pub const DEFAULT_SM2_ID: &str = "1234567812345678";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GmError {
    #[error("invalid SM2 secret key")]
    InvalidSecretKey,
    #[error("invalid SM2 public key")]
    InvalidPublicKey,
    #[error("malformed SM2 signature")]
    MalformedSignature,
    #[error("SM2 signature does not verify")]
    BadSignature,
    #[error("SM4 ciphertext is malformed or was tampered with")]
    Decrypt,
    #[error("system random source failed")]
    Random,
}

/// Fills a fixed-size array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], GmError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| GmError::Random)?;
    Ok(out)
}

// ---------------------------------------------------------------- SM3

pub type Sm3Hash = [u8; 32];

/// SM3 of one byte string.
pub fn sm3(data: &[u8]) -> Sm3Hash {
    sm3::Sm3::digest(data).into()
}

/// SM3 over several parts, as if concatenated.
pub fn sm3_parts(parts: &[&[u8]]) -> Sm3Hash {
    let mut hasher = sm3::Sm3::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// SM3 of a stream fed in pieces (a file read in blocks).
#[derive(Clone, Default)]
pub struct Sm3Hasher(sm3::Sm3);

impl Sm3Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> Sm3Hash {
        self.0.finalize().into()
    }
}

/// Derives a 16-byte key for a named purpose from a master secret (SM3 over label and secret),
/// so one platform secret can feed independent keys.
pub fn derive_key16(master: &[u8], purpose: &str) -> [u8; 16] {
    let digest = sm3_parts(&[b"yunnao-kdf\0", purpose.as_bytes(), b"\0", master]);
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

// ---------------------------------------------------------------- SM2

/// An SM2 key pair for signing, with its distinguishing identifier fixed at creation.
#[derive(Clone)]
pub struct Sm2KeyPair {
    signing: sm2::dsa::SigningKey,
}

impl std::fmt::Debug for Sm2KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sm2KeyPair")
            .field("public_key", &self.public_key().to_hex())
            .finish_non_exhaustive()
    }
}

impl Sm2KeyPair {
    /// A fresh key pair with the default identifier.
    pub fn generate() -> Result<Self, GmError> {
        loop {
            let candidate: [u8; 32] = random_bytes()?;
            // Values at or above the curve order are rejected; retrying keeps the key uniform.
            if let Ok(pair) = Self::from_secret_bytes(&candidate) {
                return Ok(pair);
            }
        }
    }

    pub fn from_secret_bytes(secret: &[u8]) -> Result<Self, GmError> {
        Self::from_secret_bytes_with_id(secret, DEFAULT_SM2_ID)
    }

    pub fn from_secret_bytes_with_id(secret: &[u8], distid: &str) -> Result<Self, GmError> {
        let signing = sm2::dsa::SigningKey::from_slice(distid, secret)
            .map_err(|_| GmError::InvalidSecretKey)?;
        Ok(Self { signing })
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes().into()
    }

    pub fn public_key(&self) -> Sm2PublicKey {
        Sm2PublicKey {
            verifying: self.signing.verifying_key().clone(),
        }
    }

    /// Signs `msg` (SM3 over Z_A || msg, as GB/T 32918.2 defines), returning r || s.
    pub fn sign(&self, msg: &[u8]) -> Sm2Signature {
        let signature: sm2::dsa::Signature = self.signing.sign(msg);
        Sm2Signature(signature.to_bytes().into())
    }
}

/// An SM2 public key for verification.
#[derive(Clone, Debug)]
pub struct Sm2PublicKey {
    verifying: sm2::dsa::VerifyingKey,
}

impl Sm2PublicKey {
    /// Parses a SEC1 point (uncompressed `04 || x || y` or compressed) with the default identifier.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, GmError> {
        Self::from_sec1_with_id(bytes, DEFAULT_SM2_ID)
    }

    pub fn from_sec1_with_id(bytes: &[u8], distid: &str) -> Result<Self, GmError> {
        let verifying = sm2::dsa::VerifyingKey::from_sec1_bytes(distid, bytes)
            .map_err(|_| GmError::InvalidPublicKey)?;
        Ok(Self { verifying })
    }

    pub fn from_hex(hex_text: &str) -> Result<Self, GmError> {
        let bytes = hex::decode(hex_text.trim()).map_err(|_| GmError::InvalidPublicKey)?;
        Self::from_sec1(&bytes)
    }

    /// Uncompressed SEC1 bytes (65 bytes, starting 0x04).
    pub fn to_sec1(&self) -> Vec<u8> {
        self.verifying.to_sec1_bytes().into_vec()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.to_sec1())
    }

    pub fn verify(&self, msg: &[u8], signature: &Sm2Signature) -> Result<(), GmError> {
        let signature = sm2::dsa::Signature::from_slice(&signature.0)
            .map_err(|_| GmError::MalformedSignature)?;
        self.verifying
            .verify(msg, &signature)
            .map_err(|_| GmError::BadSignature)
    }
}

/// An SM2 signature as the 64 bytes r || s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sm2Signature(pub [u8; 64]);

impl Sm2Signature {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, GmError> {
        let array: [u8; 64] = bytes.try_into().map_err(|_| GmError::MalformedSignature)?;
        Ok(Self(array))
    }

    pub fn from_hex(text: &str) -> Result<Self, GmError> {
        let bytes = hex::decode(text.trim()).map_err(|_| GmError::MalformedSignature)?;
        Self::from_slice(&bytes)
    }

    /// ASN.1 DER form (SEQUENCE of r, s), as OpenSSL writes it.
    pub fn from_der(der: &[u8]) -> Result<Self, GmError> {
        let signature =
            sm2::dsa::Signature::from_der(der).map_err(|_| GmError::MalformedSignature)?;
        Ok(Self(signature.to_bytes().into()))
    }

    pub fn to_der(&self) -> Result<Vec<u8>, GmError> {
        let signature =
            sm2::dsa::Signature::from_slice(&self.0).map_err(|_| GmError::MalformedSignature)?;
        Ok(signature.to_der().as_bytes().to_vec())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

// ---------------------------------------------------------------- SM4

/// Encrypts one 16-byte block with SM4 (raw block operation, for vectors and key wrapping
/// building blocks; use [`FieldCipher`] for data).
pub fn sm4_encrypt_block(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
    let cipher = sm4::Sm4::new(key.into());
    let mut buffer = (*block).into();
    cipher.encrypt_block(&mut buffer);
    buffer.into()
}

pub fn sm4_decrypt_block(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
    let cipher = sm4::Sm4::new(key.into());
    let mut buffer = (*block).into();
    cipher.decrypt_block(&mut buffer);
    buffer.into()
}

type Sm4Gcm = aes_gcm::AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12>;

/// SM4-GCM (RFC 8998) for field and key encryption at rest. Output is nonce (12) || ciphertext
/// || tag (16); the associated data binds a ciphertext to its row and column so it cannot be
/// moved to another record unnoticed.
#[derive(Clone)]
pub struct FieldCipher {
    cipher: Sm4Gcm,
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FieldCipher(SM4-GCM)")
    }
}

pub const GCM_NONCE_LEN: usize = 12;

impl FieldCipher {
    pub fn new(key: &[u8; 16]) -> Self {
        Self {
            cipher: Sm4Gcm::new(key.into()),
        }
    }

    pub fn encrypt(&self, plaintext: &[u8], associated_data: &[u8]) -> Result<Vec<u8>, GmError> {
        let nonce: [u8; GCM_NONCE_LEN] = random_bytes()?;
        self.encrypt_with_nonce(&nonce, plaintext, associated_data)
    }

    /// Deterministic form for test vectors; production code calls [`FieldCipher::encrypt`].
    pub fn encrypt_with_nonce(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        plaintext: &[u8],
        associated_data: &[u8],
    ) -> Result<Vec<u8>, GmError> {
        let sealed = self
            .cipher
            .encrypt(
                nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: associated_data,
                },
            )
            .map_err(|_| GmError::Decrypt)?;
        let mut out = Vec::with_capacity(GCM_NONCE_LEN + sealed.len());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn decrypt(&self, sealed: &[u8], associated_data: &[u8]) -> Result<Vec<u8>, GmError> {
        if sealed.len() < GCM_NONCE_LEN + 16 {
            return Err(GmError::Decrypt);
        }
        let (nonce, body) = sealed.split_at(GCM_NONCE_LEN);
        let nonce: [u8; GCM_NONCE_LEN] = nonce.try_into().map_err(|_| GmError::Decrypt)?;
        self.cipher
            .decrypt(
                (&nonce).into(),
                Payload {
                    msg: body,
                    aad: associated_data,
                },
            )
            .map_err(|_| GmError::Decrypt)
    }
}
