//! Uploads for the materials no e-licence covers: PDF, JPEG or PNG, known by their first bytes
//! (the declared type must agree), at most [`MAX_UPLOAD_BYTES`], stored with their SM3 digest.
//! An upload belongs to whoever sent it until one application takes it.

use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_identity::Principal;
use yunnao_store::{Db, DbResultExt, sqlx};

pub const MAX_UPLOAD_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Upload {
    pub id: String,
    pub media_type: String,
    pub size: i64,
    /// SM3 of the bytes, hex.
    pub sm3: String,
    pub application_id: Option<String>,
}

/// The media type the bytes are, by their magic numbers.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else {
        None
    }
}

/// Checks an upload: its size, and that its bytes are the type it says it is.
pub fn check(declared: &str, bytes: &[u8]) -> Result<&'static str, Problem> {
    if bytes.is_empty() {
        return Err(
            Problem::validation("file: the upload is empty").with_extension("field", "file")
        );
    }
    if bytes.len() > MAX_UPLOAD_BYTES {
        return Err(Problem::payload_too_large(format!(
            "file: at most {} MiB",
            MAX_UPLOAD_BYTES >> 20
        ))
        .with_extension("field", "file"));
    }
    let declared = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some(actual) = sniff(bytes) else {
        return Err(Problem::unsupported_media_type(
            "file: only PDF, JPEG and PNG are taken, and these bytes are none of them",
        )
        .with_extension("field", "file"));
    };
    if !declared.is_empty() && declared != "application/octet-stream" && declared != actual {
        return Err(Problem::unsupported_media_type(format!(
            "file: declared {declared} but the bytes are {actual}"
        ))
        .with_extension("field", "file"));
    }
    Ok(actual)
}

pub async fn store(
    db: &Db,
    principal: &Principal,
    declared: &str,
    bytes: Vec<u8>,
) -> Result<Upload, Problem> {
    let media_type = check(declared, &bytes)?;
    let upload = Upload {
        id: yunnao_core::new_id(),
        media_type: media_type.to_owned(),
        size: bytes.len() as i64,
        sm3: hex::encode(yunnao_gm::sm3(&bytes)),
        application_id: None,
    };
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO svc_uploads (id, uploaded_by, media_type, size, sm3, bytes, application_id, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
    )
    .bind(&upload.id)
    .bind(&principal.id)
    .bind(&upload.media_type)
    .bind(upload.size)
    .bind(&upload.sm3)
    .bind(bytes)
    .bind(yunnao_core::time::now_ms())
    .execute(&mut **tx)
    .await
    .db()?;
    tx.commit().await?;
    Ok(upload)
}

/// An upload's metadata and who sent it.
pub async fn find(db: &Db, id: &str) -> Result<Option<(Upload, String)>, Problem> {
    let row: Option<(String, String, i64, String, Option<String>, String)> = sqlx::query_as(
        "SELECT id, media_type, size, sm3, application_id, uploaded_by FROM svc_uploads WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await
    .db()?;
    Ok(row.map(|(id, media_type, size, sm3, application_id, by)| {
        (
            Upload {
                id,
                media_type,
                size,
                sm3,
                application_id,
            },
            by,
        )
    }))
}

/// An upload's bytes.
pub async fn bytes(db: &Db, id: &str) -> Result<Option<(String, Vec<u8>)>, Problem> {
    sqlx::query_as("SELECT media_type, bytes FROM svc_uploads WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .db()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_known_by_their_bytes() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0];
        let cases: [(&str, &[u8], Result<&str, u16>); 7] = [
            ("application/pdf", b"%PDF-1.7\n", Ok("application/pdf")),
            ("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0], Ok("image/jpeg")),
            ("image/png", &png, Ok("image/png")),
            ("", &png, Ok("image/png")),
            ("image/png", b"%PDF-1.7", Err(415)),
            ("application/pdf", b"MZ\x90\x00", Err(415)),
            ("application/pdf", b"", Err(422)),
        ];
        for (declared, bytes, expected) in cases {
            assert_eq!(
                check(declared, bytes).map_err(|p| p.status),
                expected,
                "{declared} {bytes:?}"
            );
        }
        let big = vec![b'%'; MAX_UPLOAD_BYTES + 1];
        assert_eq!(
            check("application/pdf", &big).map_err(|p| p.status),
            Err(413)
        );
    }
}
