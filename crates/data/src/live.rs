//! Live views: datasets whose rows are not imported but read, at each request, from where the
//! data lives: the entities of an NGSI-LD type in the city information model, the series of a
//! sensing profile's devices, or a department's API registered in the marketplace. A live
//! view is catalogued, graded, requested, granted, masked, metered and audited exactly as a
//! table is; only where its rows come from differs.
//!
//! The rows fetched (at most [`MAX_LIVE_ROWS`]) are typed by the schema and put in an
//! in-memory SQLite table, and the read's own [`crate::table::Select`] runs over it, so filters,
//! `q`, sorting, paging and totals mean the same as on an imported table.

use crate::table::{Cell, Cells, Select, create_table_sql, parse_value};
use crate::{Catalogue, Dataset, Field};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use yunnao_core::Problem;
use yunnao_store::Record as _;

/// The most rows one read of a live view fetches from its source.
pub const MAX_LIVE_ROWS: usize = 10_000;
/// The largest answer a registered API may give a live view.
pub const MAX_API_BYTES: usize = 8 << 20;
/// How far back a series view reaches.
pub const SERIES_WINDOW_MS: i64 = 24 * 3_600_000;

/// Where a dataset's rows come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Source {
    /// Imported files (CSV, XLSX, JSON), one table per version.
    #[default]
    Table,
    /// The owner's entities of an NGSI-LD type; each field reads the attribute of its name
    /// (`attribute`, or the field's name in camelCase), `id` the entity id.
    Entities { entity_type: String },
    /// The owner's devices of a sensing profile: one row per message of the last 24 hours,
    /// newest first, with `device_id`, `device_name`, `observed_at` and the profile's keys.
    Series { profile: String },
    /// A registered department API (a marketplace capability of the owner): `GET
    /// {upstream}{path}` answering a JSON array of objects (or an object holding one under
    /// `records`, `data`, `items` or `results`).
    Api { capability: String, path: String },
}

impl Source {
    pub fn is_live(&self) -> bool {
        !matches!(self, Source::Table)
    }

    /// `table`, `entities`, `series` or `api`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Table => "table",
            Source::Entities { .. } => "entities",
            Source::Series { .. } => "series",
            Source::Api { .. } => "api",
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Problem> {
        let bad = |detail: &str| {
            Problem::validation(format!("source: {detail}")).with_extension("field", "source")
        };
        match self {
            Source::Table => Ok(()),
            Source::Entities { entity_type } => {
                let ok = (1..=200).contains(&entity_type.len())
                    && !entity_type
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control());
                ok.then_some(())
                    .ok_or_else(|| bad("entity_type is a type name or IRI, 1 to 200 characters"))
            }
            Source::Series { profile } => slug(profile)
                .then_some(())
                .ok_or_else(|| bad("profile is a sensing profile's code")),
            Source::Api { capability, path } => {
                if !slug(capability) {
                    return Err(bad("capability is a registered capability's id"));
                }
                let ok = path.starts_with('/')
                    && path.len() <= 500
                    && !path.contains("..")
                    && !path.chars().any(|c| c.is_whitespace() || c.is_control());
                ok.then_some(())
                    .ok_or_else(|| bad("path starts with / and holds no spaces or .."))
            }
        }
    }
}

fn slug(text: &str) -> bool {
    (1..=80).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The name a field reads in its source: `attribute` if given, else for entities the field's
/// name in camelCase (`available_spot_number` → `availableSpotNumber`), else the name.
pub fn source_name(field: &Field, source: &Source) -> String {
    if let Some(attribute) = &field.attribute {
        return attribute.clone();
    }
    match source {
        Source::Entities { .. } => {
            let mut out = String::new();
            let mut upper = false;
            for c in field.name.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    out.extend(c.to_uppercase());
                    upper = false;
                } else {
                    out.push(c);
                }
            }
            out
        }
        _ => field.name.clone(),
    }
}

/// The other hubs' data a live view reads, wired in by the binary (the data hub does not
/// depend on the broker or the sensing hub). Both answer the owner's own data only, as
/// records keyed by the source names asked for.
pub trait LiveViews: Send + Sync + 'static {
    /// The owner's entities of `entity_type`, by id; each record holds `id` and the
    /// attributes named (a Property's value, a Relationship's object, a GeoProperty's GeoJSON).
    fn entities<'a>(
        &'a self,
        owner: &'a str,
        entity_type: &'a str,
        attributes: &'a [String],
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Map<String, Value>>, Problem>>;

    /// The owner's devices' messages of `profile` since `since_ms`, newest first: `device_id`,
    /// `device_name`, `observed_at` (RFC 3339) and the message's values by key.
    fn series<'a>(
        &'a self,
        owner: &'a str,
        profile: &'a str,
        since_ms: i64,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Map<String, Value>>, Problem>>;
}

pub(crate) type SharedViews = Arc<std::sync::RwLock<Option<Arc<dyn LiveViews>>>>;

impl Catalogue {
    /// Connects the live views to the platform's other hubs.
    pub fn connect_live_views(&self, views: Arc<dyn LiveViews>) {
        if let Ok(mut slot) = self.live.write() {
            *slot = Some(views);
        }
    }

    fn views(&self) -> Result<Arc<dyn LiveViews>, Problem> {
        self.live
            .read()
            .ok()
            .and_then(|v| v.clone())
            .ok_or_else(|| Problem::unavailable("live views are not connected on this node"))
    }

    /// The source's current records, at most [`MAX_LIVE_ROWS`]; `names` are the fields'
    /// source names ([`source_name`]).
    async fn live_records(
        &self,
        dataset: &Dataset,
        names: &[String],
    ) -> Result<Vec<Map<String, Value>>, Problem> {
        match &dataset.source {
            Source::Table => Ok(Vec::new()),
            Source::Entities { entity_type } => {
                self.views()?
                    .entities(&dataset.department, entity_type, names, MAX_LIVE_ROWS)
                    .await
            }
            Source::Series { profile } => {
                let since = yunnao_core::time::now_ms() - SERIES_WINDOW_MS;
                self.views()?
                    .series(&dataset.department, profile, since, MAX_LIVE_ROWS)
                    .await
            }
            Source::Api { capability, path } => {
                self.api_records(&dataset.department, capability, path)
                    .await
            }
        }
    }

    async fn api_records(
        &self,
        owner: &str,
        capability: &str,
        path: &str,
    ) -> Result<Vec<Map<String, Value>>, Problem> {
        let unavailable = |detail: String| {
            Problem::for_status(502, "Bad Gateway", detail)
                .with_extension("reason", "source-unavailable")
        };
        let registered = self
            .capability(capability)
            .await?
            .filter(|c| c.department == owner && c.kind == "department");
        let Some(upstream) = registered.and_then(|c| c.upstream) else {
            return Err(unavailable(format!(
                "the API {capability} this view reads is not registered by {owner}"
            )));
        };
        let answer = self
            .upstream_client()
            .get(format!("{upstream}{path}"))
            .header("accept", "application/json")
            .header("x-yunnao-department", owner)
            .send()
            .await
            .map_err(|e| unavailable(format!("the department's API did not answer: {e}")))?;
        if !answer.status().is_success() {
            return Err(unavailable(format!(
                "the department's API answered {}",
                answer.status()
            )));
        }
        if answer
            .content_length()
            .is_some_and(|n| n > MAX_API_BYTES as u64)
        {
            return Err(unavailable(format!(
                "the department's API answered more than {} MiB",
                MAX_API_BYTES >> 20
            )));
        }
        // Read in chunks so that an answer without a length cannot grow past the bound.
        let mut body = Vec::new();
        let mut answer = answer;
        while let Some(chunk) = answer
            .chunk()
            .await
            .map_err(|e| unavailable(format!("the department's API broke off: {e}")))?
        {
            if body.len() + chunk.len() > MAX_API_BYTES {
                return Err(unavailable(format!(
                    "the department's API answered more than {} MiB",
                    MAX_API_BYTES >> 20
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("the department's API answered no JSON: {e}")))?;
        let items = match value {
            Value::Array(items) => items,
            Value::Object(mut object) => ["records", "data", "items", "results"]
                .iter()
                .find_map(|k| match object.remove(*k) {
                    Some(Value::Array(items)) => Some(items),
                    _ => None,
                })
                .ok_or_else(|| {
                    unavailable(
                        "the department's API answered an object without a list of records".into(),
                    )
                })?,
            _ => {
                return Err(unavailable(
                    "the department's API answered neither a list nor an object".into(),
                ));
            }
        };
        Ok(items
            .into_iter()
            .take(MAX_LIVE_ROWS)
            .filter_map(|item| match item {
                Value::Object(record) => Some(record),
                _ => None,
            })
            .collect())
    }

    /// Runs `select` over the live view's current rows: the rows and, if asked, the total.
    pub(crate) async fn scan_live(
        &self,
        dataset: &Dataset,
        select: &Select,
        include_total: bool,
    ) -> Result<(Vec<Cells>, Option<i64>), Problem> {
        let names: Vec<String> = dataset
            .fields
            .iter()
            .map(|f| source_name(f, &dataset.source))
            .collect();
        let records = self.live_records(dataset, &names).await?;
        let typed = typed_rows(&dataset.fields, &names, &records);
        let fields = dataset.fields.clone();
        let select = select.clone();
        tokio::task::spawn_blocking(move || scan_in_memory(&fields, typed, &select, include_total))
            .await
            .map_err(|e| Problem::internal(format!("live view scan: {e}")))?
    }
}

/// The records typed by the schema; a value of the wrong type is empty (a live source is
/// not refused for one bad value, as an import is).
pub fn typed_rows(
    fields: &[Field],
    names: &[String],
    records: &[Map<String, Value>],
) -> Vec<Vec<Cell>> {
    records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            let mut row = Vec::with_capacity(fields.len() + 1);
            row.push(Cell::Int(i as i64 + 1));
            for (field, name) in fields.iter().zip(names) {
                let text = match record.get(name) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Bool(b)) => b.to_string(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(other) => other.to_string(),
                };
                row.push(parse_value(&field.field_type, &text).unwrap_or(Cell::Null));
            }
            row
        })
        .collect()
}

/// The table live rows are put in for a read.
pub const LIVE_TABLE: &str = "live";

fn scan_in_memory(
    fields: &[Field],
    rows: Vec<Vec<Cell>>,
    select: &Select,
    include_total: bool,
) -> Result<(Vec<Cells>, Option<i64>), Problem> {
    let failed = |e: rusqlite::Error| Problem::internal(format!("live view scan: {e}"));
    let mut connection = rusqlite::Connection::open_in_memory().map_err(failed)?;
    // Live views are never sealed at rest: every column takes its plain type.
    let plain: Vec<Field> = fields
        .iter()
        .map(|f| Field {
            personal: "none".into(),
            ..f.clone()
        })
        .collect();
    connection
        .execute_batch(&create_table_sql(LIVE_TABLE, &plain))
        .map_err(failed)?;
    let tx = connection.transaction().map_err(failed)?;
    {
        let placeholders: Vec<String> = (1..=fields.len() + 1).map(|i| format!("?{i}")).collect();
        let mut insert = tx
            .prepare(&format!(
                "INSERT INTO {LIVE_TABLE} VALUES ({})",
                placeholders.join(", ")
            ))
            .map_err(failed)?;
        for row in &rows {
            insert
                .execute(rusqlite::params_from_iter(row.iter().map(sqlite_value)))
                .map_err(failed)?;
        }
    }
    tx.commit().map_err(failed)?;
    let args: Vec<rusqlite::types::Value> = select.args.iter().map(arg_value).collect();
    let mut statement = connection.prepare(&select.rows_sql).map_err(failed)?;
    let found = statement
        .query_map(rusqlite::params_from_iter(args.iter()), |row| {
            Cells::from_sqlite(row)
        })
        .map_err(failed)?
        .collect::<Result<Vec<Cells>, _>>()
        .map_err(failed)?;
    let total = if include_total {
        Some(
            connection
                .query_row(
                    &select.count_sql,
                    rusqlite::params_from_iter(args.iter()),
                    |row| row.get::<_, i64>(0),
                )
                .map_err(failed)?,
        )
    } else {
        None
    };
    Ok((found, total))
}

fn sqlite_value(cell: &Cell) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match cell {
        Cell::Null => V::Null,
        Cell::Int(v) => V::Integer(*v),
        Cell::Real(v) => V::Real(*v),
        Cell::Text(t) => V::Text(t.clone()),
    }
}

fn arg_value(arg: &yunnao_store::Arg<'_>) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    use yunnao_store::Arg;
    match arg {
        Arg::Int(v) => V::Integer(*v),
        Arg::Number(v) => V::Real(*v),
        Arg::Real(Some(v)) => V::Real(*v),
        Arg::Real(None) => V::Null,
        Arg::Text(t) => V::Text(t.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_fields_read_camel_case_attributes() {
        let source = Source::Entities {
            entity_type: "ParkingSpot".into(),
        };
        let mut field = Field::plain("available_spot_number");
        assert_eq!(source_name(&field, &source), "availableSpotNumber");
        field.attribute = Some("free".into());
        assert_eq!(source_name(&field, &source), "free");
        assert_eq!(
            source_name(
                &Field::plain("pm25"),
                &Source::Series {
                    profile: "air-quality".into()
                }
            ),
            "pm25"
        );
    }

    #[test]
    fn sources_are_checked() {
        let api = |path: &str| Source::Api {
            capability: "weather-api".into(),
            path: path.into(),
        };
        assert!(api("/forecast?city=qingdao").validate().is_ok());
        assert!(api("forecast").validate().is_err());
        assert!(api("/../admin").validate().is_err());
        assert!(
            Source::Series {
                profile: "Air Quality".into()
            }
            .validate()
            .is_err()
        );
        assert!(
            Source::Entities {
                entity_type: String::new()
            }
            .validate()
            .is_err()
        );
    }
}
