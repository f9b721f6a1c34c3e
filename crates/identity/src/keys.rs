//! The platform key: one SM2 key pair that signs bearer tokens and audit checkpoints, and from
//! whose secret the key-encryption key for department seal keys is derived (SM4-GCM).
//!
//! It lives in a file outside the database (default `DATA_DIR/platform.key`, mode 0600), so a
//! copy of the database alone can neither forge tokens nor unseal department keys. Nodes that
//! share one PostgreSQL must be given the same key file.

use std::path::Path;
use yunnao_gm::{FieldCipher, Sm2KeyPair, Sm2PublicKey, derive_key16};

pub struct PlatformKeys {
    signing: Sm2KeyPair,
    key_encryption: FieldCipher,
    secret: [u8; 32],
}

impl std::fmt::Debug for PlatformKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformKeys")
            .field("public_key", &self.public_key().to_hex())
            .finish_non_exhaustive()
    }
}

impl PlatformKeys {
    pub fn from_secret(secret: &[u8]) -> Result<Self, String> {
        let signing = Sm2KeyPair::from_secret_bytes(secret)
            .map_err(|e| format!("platform key is not a valid SM2 secret key: {e}"))?;
        let key_encryption = FieldCipher::new(&derive_key16(secret, "seal-key-encryption"));
        let secret = signing.secret_bytes();
        Ok(Self {
            signing,
            key_encryption,
            secret,
        })
    }

    /// A field cipher for `purpose`, derived from the platform secret.
    pub fn field_cipher(&self, purpose: &str) -> FieldCipher {
        FieldCipher::new(&derive_key16(&self.secret, purpose))
    }

    pub fn generate() -> Result<Self, String> {
        let pair = Sm2KeyPair::generate().map_err(|e| e.to_string())?;
        Self::from_secret(&pair.secret_bytes())
    }

    /// Reads the hex secret from `path`, creating the file with a new key if it is missing.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let secret = hex::decode(text.trim())
                    .map_err(|_| format!("{} does not hold a hex key", path.display()))?;
                Self::from_secret(&secret)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = Self::generate()?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                }
                write_private(path, &hex::encode(keys.signing.secret_bytes()))?;
                tracing::info!(path = %path.display(), "created a new platform key");
                Ok(keys)
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn public_key(&self) -> Sm2PublicKey {
        self.signing.public_key()
    }

    pub(crate) fn signer(&self) -> &Sm2KeyPair {
        &self.signing
    }

    pub(crate) fn key_encryption(&self) -> &FieldCipher {
        &self.key_encryption
    }
}

fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
