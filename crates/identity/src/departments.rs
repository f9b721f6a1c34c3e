use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_store::{Db, DbResultExt, sqlx};

/// A department (委辦局) of the city government.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow, PartialEq)]
pub struct Department {
    /// Stable code used in every API (`water`, `police`, `bigdata`, …).
    pub code: String,
    /// Official name, Simplified Chinese (display form).
    pub name_zh: String,
    pub name_en: String,
    /// The name as spelled in the plan's source text.
    pub alias_zh: String,
}

#[derive(Deserialize)]
struct SeedFile {
    departments: Vec<Department>,
}

const SEED: &str = include_str!("../data/departments.json");

pub(crate) fn seed_departments() -> Result<Vec<Department>, Problem> {
    serde_json::from_str::<SeedFile>(SEED)
        .map(|f| f.departments)
        .map_err(|e| Problem::internal(format!("embedded department list is invalid: {e}")))
}

pub(crate) async fn seed(db: &Db) -> Result<usize, Problem> {
    let mut added = 0;
    let mut tx = db.begin_write().await?;
    for d in seed_departments()? {
        let result = sqlx::query(
            "INSERT INTO departments (code, name_zh, name_en, alias_zh, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (code) DO NOTHING",
        )
        .bind(&d.code)
        .bind(&d.name_zh)
        .bind(&d.name_en)
        .bind(&d.alias_zh)
        .bind(yunnao_core::time::now_ms())
        .execute(&mut **tx)
        .await
        .db()?;
        added += result.rows_affected() as usize;
    }
    tx.commit().await?;
    Ok(added)
}

pub(crate) async fn list(db: &Db) -> Result<Vec<Department>, Problem> {
    sqlx::query_as::<_, Department>(
        "SELECT code, name_zh, name_en, alias_zh FROM departments ORDER BY code",
    )
    .fetch_all(db.pool())
    .await
    .db()
}

pub(crate) async fn get(db: &Db, code: &str) -> Result<Option<Department>, Problem> {
    sqlx::query_as::<_, Department>(
        "SELECT code, name_zh, name_en, alias_zh FROM departments WHERE code = $1",
    )
    .bind(code)
    .fetch_optional(db.pool())
    .await
    .db()
}

pub(crate) async fn require(db: &Db, code: &str) -> Result<Department, Problem> {
    get(db, code)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no department with code {code:?}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn seed_has_the_plan_units_with_unique_codes() {
        let departments = super::seed_departments().expect("seed parses");
        assert_eq!(departments.len(), 50);
        let mut codes: Vec<_> = departments.iter().map(|d| d.code.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), departments.len());
        let bigdata = departments
            .iter()
            .find(|d| d.code == "bigdata")
            .expect("bigdata");
        assert_eq!(bigdata.name_zh, "市大数据局");
        assert_eq!(bigdata.alias_zh, "市大數據局");
    }
}
