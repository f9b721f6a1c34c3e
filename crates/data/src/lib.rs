//! The data hub (城市数据中枢), begun (issue 24): the catalogue (目录) of the departments'
//! datasets. A dataset has its titles and descriptions (zh, en), themes (the plan's thematic
//! databases 交通出行, 生态环保, 健康医疗 and the usual government themes), keywords, update
//! frequency, coverage, source system, contact, licence and schema (fields with types, units,
//! descriptions, a level and whether they are personal or sensitive personal information). It
//! is graded by GB/T 43697-2024 (一般 general, 重要 important, 核心 core) and has a sharing type
//! (开放 open, 有条件共享 conditional, 不予共享 none). Core datasets are listed only to their
//! own department and the bureau. The catalogue is searched in Chinese and English (`search`)
//! and exported as DCAT-AP 3 (`dcat`) and through a CKAN-compatible read API (`ckan`).
//! Still to come: tables and their import, masking, requests and grants, metering, quality,
//! the marketplace, pages.

pub mod api;
pub mod ckan;
pub mod dcat;
pub mod import;
pub mod live;
pub mod market;
pub mod mask;
mod migrations;
pub mod monitoring;
pub mod rows;
pub mod search;
pub mod seed;
pub mod sharing;
pub mod table;

pub use migrations::MIGRATIONS;

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use yunnao_core::Problem;
use yunnao_identity::{Action, Identity, Principal, Resource};
use yunnao_store::{Db, DbResultExt, sqlx};

/// The largest file an import takes unless configured (`data_import_max_mib`).
pub const DEFAULT_IMPORT_LIMIT: u64 = 256 << 20;

const SEED: &str = include_str!("../data/datasets.json");

/// The themes a dataset may carry: the plan's thematic databases first.
pub const THEMES: [&str; 10] = [
    "交通出行",
    "生态环保",
    "健康医疗",
    "经济建设",
    "教育文化",
    "社会保障",
    "城市建设",
    "公共安全",
    "政府机构",
    "资源能源",
];
pub const FREQUENCIES: [&str; 8] = [
    "realtime",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "yearly",
    "irregular",
    "never",
];
pub const LEVELS: [&str; 3] = ["general", "important", "core"];
pub const SHARING: [&str; 3] = ["open", "conditional", "none"];
pub const FIELD_TYPES: [&str; 6] = ["text", "integer", "number", "date", "timestamp", "boolean"];
/// `none`, personal information, sensitive personal information (PIPL art. 28).
pub const PERSONAL: [&str; 3] = ["none", "personal", "sensitive"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    /// `text`, `integer`, `number`, `date`, `timestamp` or `boolean`.
    #[serde(rename = "type")]
    pub field_type: String,
    pub unit: Option<String>,
    pub description_zh: String,
    /// `general`, `important` or `core` (GB/T 43697-2024).
    pub level: String,
    /// `none`, `personal` or `sensitive`.
    pub personal: String,
    /// Index the field's column (filters and sorts on it stay fast on large tables). When no
    /// field is marked, the first field and every date are indexed.
    #[serde(default)]
    pub indexed: bool,
    /// What the value is, for masking and validity: `id_number`, `phone`, `name`, `address`,
    /// `coordinate`, `age`, `date`; found from the field's name when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For a live view: the attribute or member the field reads (see [`live::source_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
}

impl Field {
    /// A general, non-personal text field named `name` (what inference starts from).
    pub fn plain(name: &str) -> Field {
        Field {
            name: name.to_owned(),
            field_type: "text".into(),
            unit: None,
            description_zh: String::new(),
            level: "general".into(),
            personal: "none".into(),
            indexed: false,
            kind: None,
            attribute: None,
        }
    }

    /// The field's kind: as given, else found from its name.
    pub fn kind(&self) -> Option<&'static str> {
        if let Some(kind) = &self.kind {
            return mask::KINDS.iter().copied().find(|k| k == kind);
        }
        let name = self.name.as_str();
        let personal = self.personal != "none";
        if name == "id_number" || (personal && name.ends_with("_id")) {
            Some("id_number")
        } else if name.contains("phone") || name.contains("mobile") {
            Some("phone")
        } else if personal && (name == "name" || name.ends_with("_name")) {
            Some("name")
        } else if name.contains("address") {
            Some("address")
        } else if matches!(name, "lon" | "lat" | "longitude" | "latitude") {
            Some("coordinate")
        } else if name == "age" {
            Some("age")
        } else if personal && self.field_type == "date" {
            Some("date")
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// A slug: lower-case letters, digits and `-` (CKAN's `name`).
    pub id: String,
    /// The owning department's code.
    pub department: String,
    pub title_zh: String,
    pub title_en: String,
    pub description_zh: String,
    pub description_en: String,
    pub themes: Vec<String>,
    pub keywords: Vec<String>,
    pub frequency: String,
    pub spatial: String,
    /// `YYYY-MM-DD`.
    pub temporal_start: Option<String>,
    pub temporal_end: Option<String>,
    pub source_system: String,
    pub contact: String,
    pub licence: String,
    /// The dataset's level: at least the highest of its fields'.
    pub level: String,
    /// `open`, `conditional` or `none`.
    pub sharing: String,
    pub fields: Vec<Field>,
    /// Where the rows come from: imported tables (the default) or a live view.
    #[serde(default, skip_serializing_if = "is_table")]
    pub source: live::Source,
}

fn is_table(source: &live::Source) -> bool {
    !source.is_live()
}

/// A dataset as stored: with its times.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Entry {
    pub dataset: Dataset,
    /// RFC 3339.
    pub created_at: String,
    pub modified_at: String,
}

fn invalid(field: &str, detail: impl Into<String>) -> Problem {
    Problem::validation(format!("{field}: {}", detail.into())).with_extension("field", field)
}

fn level_rank(level: &str) -> usize {
    LEVELS.iter().position(|l| *l == level).unwrap_or(0)
}

fn bounded(field: &str, text: &str, max: usize, required: bool) -> Result<(), Problem> {
    let n = text.chars().count();
    if (required && text.trim().is_empty()) || n > max {
        return Err(invalid(
            field,
            format!("{} to {max} characters", usize::from(required)),
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(field, "no control characters"));
    }
    Ok(())
}

fn date(field: &str, text: &Option<String>) -> Result<(), Problem> {
    match text {
        Some(t) if chrono_date(t).is_none() => Err(invalid(field, "a date YYYY-MM-DD")),
        _ => Ok(()),
    }
}

fn chrono_date(text: &str) -> Option<(i32, u32, u32)> {
    let mut parts = text.split('-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    (parts.next().is_none() && (1..=12).contains(&m) && (1..=31).contains(&d) && y > 1900)
        .then_some((y, m, d))
}

impl Dataset {
    /// Checks every member; a dataset's level must be at least its most sensitive field's, and
    /// a dataset with core fields or sensitive personal fields cannot be open.
    pub fn validate(&self) -> Result<(), Problem> {
        let slug_ok = (3..=80).contains(&self.id.len())
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !self.id.starts_with('-');
        if !slug_ok {
            return Err(invalid(
                "id",
                "3 to 80 lower-case letters, digits and hyphens",
            ));
        }
        bounded("department", &self.department, 64, true)?;
        bounded("title_zh", &self.title_zh, 100, true)?;
        bounded("title_en", &self.title_en, 200, false)?;
        bounded("description_zh", &self.description_zh, 4000, false)?;
        bounded("description_en", &self.description_en, 4000, false)?;
        bounded("spatial", &self.spatial, 100, false)?;
        bounded("source_system", &self.source_system, 200, false)?;
        bounded("contact", &self.contact, 200, false)?;
        bounded("licence", &self.licence, 100, true)?;
        if self.themes.is_empty() || self.themes.len() > 5 {
            return Err(invalid("themes", "1 to 5 themes"));
        }
        if let Some(t) = self.themes.iter().find(|t| !THEMES.contains(&t.as_str())) {
            return Err(invalid(
                "themes",
                format!("{t} is not one of {}", THEMES.join(", ")),
            ));
        }
        if self.keywords.len() > 20 {
            return Err(invalid("keywords", "at most 20"));
        }
        for k in &self.keywords {
            bounded("keywords", k, 40, true)?;
        }
        if !FREQUENCIES.contains(&self.frequency.as_str()) {
            return Err(invalid(
                "frequency",
                format!("one of {}", FREQUENCIES.join(", ")),
            ));
        }
        date("temporal_start", &self.temporal_start)?;
        date("temporal_end", &self.temporal_end)?;
        if !LEVELS.contains(&self.level.as_str()) {
            return Err(invalid("level", "general, important or core"));
        }
        if !SHARING.contains(&self.sharing.as_str()) {
            return Err(invalid("sharing", "open, conditional or none"));
        }
        if self.fields.is_empty() || self.fields.len() > 200 {
            return Err(invalid("fields", "1 to 200 fields"));
        }
        let mut names = std::collections::HashSet::new();
        for f in &self.fields {
            let name_ok = (1..=63).contains(&f.name.len())
                && f.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && f.name.starts_with(|c: char| c.is_ascii_lowercase());
            if !name_ok {
                return Err(invalid(
                    "fields",
                    format!(
                        "{:?}: a field name is 1 to 63 of a-z, 0-9, _ (a letter first)",
                        f.name
                    ),
                ));
            }
            if !names.insert(f.name.as_str()) {
                return Err(invalid("fields", format!("{} twice", f.name)));
            }
            if !FIELD_TYPES.contains(&f.field_type.as_str()) {
                return Err(invalid(
                    "fields",
                    format!("{}: type one of {}", f.name, FIELD_TYPES.join(", ")),
                ));
            }
            if !LEVELS.contains(&f.level.as_str()) || !PERSONAL.contains(&f.personal.as_str()) {
                return Err(invalid(
                    "fields",
                    format!(
                        "{}: level general/important/core, personal none/personal/sensitive",
                        f.name
                    ),
                ));
            }
            bounded("fields", &f.description_zh, 200, false)?;
            if let Some(kind) = &f.kind
                && !mask::KINDS.contains(&kind.as_str())
            {
                return Err(invalid(
                    "fields",
                    format!("{}: kind one of {}", f.name, mask::KINDS.join(", ")),
                ));
            }
            if let Some(unit) = &f.unit {
                bounded("fields", unit, 20, false)?;
            }
            if let Some(attribute) = &f.attribute {
                bounded("fields", attribute, 200, true)?;
            }
            if level_rank(&f.level) > level_rank(&self.level) {
                return Err(invalid(
                    "level",
                    format!(
                        "the dataset is {} but its field {} is {}",
                        self.level, f.name, f.level
                    ),
                ));
            }
        }
        self.source.validate()?;
        let sensitive = self.fields.iter().any(|f| f.personal != "none");
        if self.sharing == "open" && (self.level != "general" || sensitive) {
            return Err(invalid(
                "sharing",
                "only general data without personal information may be open",
            ));
        }
        if self.level == "core" && self.sharing != "none" {
            return Err(invalid(
                "sharing",
                "core data never leaves its department: none",
            ));
        }
        Ok(())
    }
}

/// Who may see a dataset's metadata: everyone, except that a core dataset is seen only by its
/// department and the bureau.
pub fn listed_to(principal: Option<&Principal>, dataset: &Dataset) -> bool {
    dataset.level != "core"
        || principal.is_some_and(|p| {
            p.is_platform_admin()
                || (p.department == dataset.department
                    && p.may(Resource::Datasets, Action::Read, &dataset.department))
        })
}

struct State {
    entries: Vec<Entry>,
    index: search::Index,
    /// Each dataset's current version.
    versions: HashMap<String, rows::Version>,
}

/// Anonymous reads of open data per dataset since the last flush: (owner, reads, rows, bytes).
type PublicReads = HashMap<String, (String, i64, i64, i64)>;

/// The data hub: the catalogue (stored on the database, held in memory with its search index),
/// the datasets' tables, requests and grants.
#[derive(Clone)]
pub struct Catalogue {
    db: Db,
    identity: Identity,
    state: Arc<RwLock<Arc<State>>>,
    /// Seals personal fields (SM4-GCM, a key derived from the platform key).
    cipher: Arc<yunnao_gm::FieldCipher>,
    /// Makes each consumer's hashing salt.
    salts: Arc<yunnao_gm::FieldCipher>,
    /// Imports at once (each takes a core and disk).
    imports: Arc<tokio::sync::Semaphore>,
    public_reads: Arc<Mutex<PublicReads>>,
    /// The largest file an import takes, bytes.
    import_limit: u64,
    meter: market::SharedMeter,
    http: reqwest::Client,
    /// Reads to meter and audit ([`rows::run_meter`]).
    meters: tokio::sync::mpsc::Sender<rows::MeterJob>,
    /// Grants read lately ([`sharing::GrantCache`]).
    grants: Arc<sharing::GrantCache>,
    /// The other hubs live views read ([`live::LiveViews`]), once the binary connects them.
    live: live::SharedViews,
}

type Row = (String, i64, i64);

/// The datasets `data/datasets.json` seeds.
pub fn seeded_datasets() -> Result<Vec<Dataset>, Problem> {
    #[derive(Deserialize)]
    struct Seed {
        datasets: Vec<Dataset>,
    }
    serde_json::from_str::<Seed>(SEED)
        .map(|s| s.datasets)
        .map_err(|e| Problem::internal(format!("the seeded catalogue is malformed: {e}")))
}

impl Catalogue {
    /// Loads the catalogue, seeding the datasets of `data/datasets.json` that are not there yet.
    pub async fn start(db: Db, identity: Identity) -> Result<Catalogue, Problem> {
        #[derive(Deserialize)]
        struct Seed {
            datasets: Vec<Dataset>,
        }
        let seed: Seed = serde_json::from_str(SEED)
            .map_err(|e| Problem::internal(format!("the seeded catalogue is malformed: {e}")))?;
        let now = yunnao_core::time::now_ms();
        let mut tx = db.begin_write().await?;
        for dataset in &seed.datasets {
            dataset.validate().map_err(|p| {
                Problem::internal(format!(
                    "seeded dataset {}: {}",
                    dataset.id,
                    p.detail.unwrap_or_default()
                ))
            })?;
            sqlx::query(
                "INSERT INTO data_datasets (id, department, level, sharing, doc, created_at_ms, modified_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&dataset.id)
            .bind(&dataset.department)
            .bind(&dataset.level)
            .bind(&dataset.sharing)
            .bind(serde_json::to_string(dataset).map_err(|e| Problem::internal(e.to_string()))?)
            .bind(now)
            .execute(&mut **tx)
            .await
            .db()?;
        }
        tx.commit().await?;
        let (meters, jobs) = tokio::sync::mpsc::channel(rows::METER_QUEUE);
        tokio::spawn(rows::run_meter(db.clone(), identity.clone(), jobs));
        let catalogue = Catalogue {
            meters,
            grants: Default::default(),
            live: Default::default(),
            cipher: Arc::new(identity.field_cipher("data-personal-fields")),
            salts: Arc::new(identity.field_cipher("data-hash-salts")),
            db,
            identity,
            state: Arc::new(RwLock::new(Arc::new(State {
                entries: Vec::new(),
                index: search::Index::default(),
                versions: HashMap::new(),
            }))),
            imports: Arc::new(tokio::sync::Semaphore::new(2)),
            public_reads: Arc::new(Mutex::new(HashMap::new())),
            import_limit: DEFAULT_IMPORT_LIMIT,
            meter: Default::default(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| Problem::internal(format!("HTTP client: {e}")))?,
        };
        catalogue.seed_capabilities().await?;
        catalogue.reload().await?;
        Ok(catalogue)
    }

    /// Reads the catalogue from the database again and rebuilds the index.
    pub async fn reload(&self) -> Result<(), Problem> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT doc, created_at_ms, modified_at_ms FROM data_datasets ORDER BY id",
        )
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let mut entries = Vec::with_capacity(rows.len());
        for (doc, created, modified) in rows {
            match serde_json::from_str::<Dataset>(&doc) {
                Ok(dataset) => entries.push(Entry {
                    dataset,
                    created_at: yunnao_core::time::rfc3339_ms(created),
                    modified_at: yunnao_core::time::rfc3339_ms(modified),
                }),
                Err(e) => tracing::warn!(error = %e, "a stored dataset does not parse; left out"),
            }
        }
        let index = search::Index::build(entries.iter().map(|e| &e.dataset));
        let latest: Vec<rows::VersionRow> = self
            .db
            .fetch_all(
                &format!(
                    "SELECT {} FROM data_versions v WHERE version = (SELECT MAX(version) FROM data_versions w WHERE w.dataset = v.dataset)",
                    rows::VERSION_COLUMNS
                ),
                &[],
            )
            .await?;
        let versions = latest
            .into_iter()
            .map(rows::version_of)
            .map(|v| (v.dataset.clone(), v))
            .collect();
        if let Ok(mut guard) = self.state.write() {
            *guard = Arc::new(State {
                entries,
                index,
                versions,
            });
        }
        Ok(())
    }

    /// The hub's own work, in the background: the seeded datasets' tables imported once, then
    /// each minute the anonymous reads metered and staleness checked.
    pub fn spawn_background(&self, seed_tables: bool) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let seeded = if seed_tables {
                hub.seed_tables().await
            } else {
                Ok(0)
            };
            match seeded {
                Ok(0) => {}
                Ok(n) => tracing::info!(tables = n, "data hub: seeded tables imported"),
                Err(problem) => tracing::error!(%problem, "data hub: seeding tables failed"),
            }
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Err(problem) = hub.flush_public_reads().await {
                    tracing::warn!(%problem, "data hub: metering public reads failed");
                }
                if let Err(problem) = hub.flush_calls().await {
                    tracing::warn!(%problem, "data hub: metering capability calls failed");
                }
                if let Err(problem) = hub.check_staleness().await {
                    tracing::warn!(%problem, "data hub: staleness check failed");
                }
            }
        })
    }

    /// Sets the largest file an import takes.
    pub fn with_import_limit(mut self, bytes: u64) -> Catalogue {
        self.import_limit = bytes;
        self
    }

    pub fn import_limit(&self) -> u64 {
        self.import_limit
    }

    fn state(&self) -> Arc<State> {
        match self.state.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Every dataset, core ones too (for the hub's own work, never for a caller).
    pub(crate) fn listed_all(&self) -> Vec<Entry> {
        self.state().entries.clone()
    }

    /// Every dataset the caller may see listed, in id order.
    pub fn listed(&self, principal: Option<&Principal>) -> Vec<Entry> {
        self.state()
            .entries
            .iter()
            .filter(|e| listed_to(principal, &e.dataset))
            .cloned()
            .collect()
    }

    pub fn get(&self, principal: Option<&Principal>, id: &str) -> Result<Entry, Problem> {
        self.state()
            .entries
            .iter()
            .find(|e| e.dataset.id == id && listed_to(principal, &e.dataset))
            .cloned()
            .ok_or_else(|| Problem::not_found(format!("no dataset {id}")))
    }

    /// Full-text search with facets over what the caller may see.
    pub fn search(&self, principal: Option<&Principal>, query: &search::Query) -> search::Found {
        let state = self.state();
        state
            .index
            .search(&state.entries, query, |d| listed_to(principal, d))
    }

    /// Registers a dataset of the caller's department (its admins, or the bureau).
    pub async fn create(&self, principal: &Principal, dataset: Dataset) -> Result<Entry, Problem> {
        principal.require(Resource::Datasets, Action::Write, &dataset.department)?;
        if !self.identity.department_exists(&dataset.department).await? {
            return Err(invalid(
                "department",
                format!("no department {}", dataset.department),
            ));
        }
        dataset.validate()?;
        let now = yunnao_core::time::now_ms();
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO data_datasets (id, department, level, sharing, doc, created_at_ms, modified_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&dataset.id)
        .bind(&dataset.department)
        .bind(&dataset.level)
        .bind(&dataset.sharing)
        .bind(serde_json::to_string(&dataset).map_err(|e| Problem::internal(e.to_string()))?)
        .bind(now)
        .execute(&mut **tx)
        .await
        .db()?;
        if inserted.rows_affected() == 0 {
            return Err(Problem::conflict(format!(
                "a dataset {} exists",
                dataset.id
            )));
        }
        tx.commit().await?;
        self.reload().await?;
        Ok(Entry {
            dataset,
            created_at: yunnao_core::time::rfc3339_ms(now),
            modified_at: yunnao_core::time::rfc3339_ms(now),
        })
    }

    /// Department code → Chinese name, for the exports.
    pub async fn department_names(&self) -> std::collections::HashMap<String, (String, String)> {
        self.identity
            .departments()
            .await
            .map(|all| {
                all.into_iter()
                    .map(|d| (d.code, (d.name_zh, d.name_en)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Vec<Dataset> {
        #[derive(Deserialize)]
        struct Seed {
            datasets: Vec<Dataset>,
        }
        serde_json::from_str::<Seed>(SEED).expect("seed").datasets
    }

    #[test]
    fn the_seed_is_valid_and_broad() {
        let all = seed();
        for d in &all {
            d.validate()
                .unwrap_or_else(|p| panic!("{}: {:?}", d.id, p.detail));
        }
        assert!(all.len() >= 30);
        let departments: std::collections::HashSet<_> = all.iter().map(|d| &d.department).collect();
        assert!(departments.len() >= 15);
        for sharing in SHARING {
            assert!(all.iter().any(|d| d.sharing == sharing), "{sharing}");
        }
        assert!(all.iter().any(|d| d.level == "core"));
        for theme in ["交通出行", "生态环保", "健康医疗"] {
            assert!(
                all.iter().any(|d| d.themes.iter().any(|t| t == theme)),
                "{theme}"
            );
        }
    }

    /// (change, the field the refusal names)
    #[test]
    fn bad_datasets_are_refused_naming_the_field() {
        let base = seed()
            .into_iter()
            .find(|d| d.id == "outpatient-visits")
            .expect("seeded");
        type Change = Box<dyn Fn(&mut Dataset)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|d| d.id = "Bad Id".into()), "id"),
            (Box::new(|d| d.themes = vec!["娱乐".into()]), "themes"),
            (Box::new(|d| d.frequency = "hourly".into()), "frequency"),
            (Box::new(|d| d.sharing = "open".into()), "sharing"),
            (Box::new(|d| d.level = "general".into()), "level"),
            (
                Box::new(|d| d.temporal_start = Some("2020-13-01".into())),
                "temporal_start",
            ),
            (
                Box::new(|d| d.fields[0].field_type = "blob".into()),
                "fields",
            ),
            (
                Box::new(|d| {
                    let f = d.fields[0].clone();
                    d.fields.push(f);
                }),
                "fields",
            ),
        ];
        for (change, field) in cases {
            let mut d = base.clone();
            change(&mut d);
            let problem = d.validate().expect_err("refused");
            assert_eq!(
                problem.extensions.get("field").and_then(|v| v.as_str()),
                Some(field),
                "{:?}",
                problem.detail
            );
        }
    }
}
