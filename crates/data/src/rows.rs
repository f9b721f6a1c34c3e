//! A dataset's rows on the database: importing a file as a new version (the old ones kept),
//! and reading rows as the caller's access says: the owner sees everything, open data is
//! anyone's, conditional data is served through a live grant only (its fields, its rows,
//! masked as it says), data not shared never. Every authenticated read, served or denied, is
//! metered and appended to the audit chain in one transaction; anonymous reads of open data
//! are counted per dataset and metered in one row a minute, so that no one without a token
//! can grow the chain.

use crate::import::{self, Checked, Format, Quality, RowError};
use crate::sharing::Grant;
use crate::table::{self, Cell, Cells, ReadQuery, Select};
use crate::{Catalogue, Dataset, Field};
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use yunnao_core::Problem;
use yunnao_identity::{Action, AuditEntry, Principal, Resource};
use yunnao_store::{Arg, DbResultExt, sqlx};

/// A version of a dataset's table.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Version {
    pub dataset: String,
    pub version: i64,
    #[serde(skip)]
    pub table: String,
    pub rows: i64,
    pub bytes: i64,
    pub format: String,
    pub encoding: String,
    /// SM3 of the file imported, hex.
    pub sm3: String,
    pub imported_at: String,
    pub imported_by: String,
    pub quality: Quality,
}

pub(crate) type VersionRow = (
    String,
    i64,
    String,
    i64,
    i64,
    String,
    String,
    String,
    i64,
    String,
    f64,
    f64,
    f64,
);

pub(crate) const VERSION_COLUMNS: &str = "dataset, version, table_name, row_count, bytes, format, encoding, sm3, imported_at_ms, imported_by, completeness, validity, uniqueness";

pub(crate) fn version_of(row: VersionRow) -> Version {
    let (
        dataset,
        version,
        table,
        rows,
        bytes,
        format,
        encoding,
        sm3,
        at,
        by,
        completeness,
        validity,
        uniqueness,
    ) = row;
    Version {
        dataset,
        version,
        table,
        rows,
        bytes,
        format,
        encoding,
        sm3,
        imported_at: yunnao_core::time::rfc3339_ms(at),
        imported_by: by,
        quality: Quality {
            completeness,
            validity,
            uniqueness,
        },
    }
}

/// What an import did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub version: Version,
    /// Seconds the import took, both passes.
    pub seconds: f64,
}

/// How the caller reads a dataset.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// Its department: every field, in the clear.
    Owner,
    /// Open data (开放): every field.
    Open,
    /// Through an approved request (有条件共享).
    Grant(Grant),
}

impl Access {
    pub fn name(&self) -> &'static str {
        match self {
            Access::Owner => "owner",
            Access::Open => "open",
            Access::Grant(_) => "grant",
        }
    }
}

/// A field as a read returns it, with the masking applied.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldShown {
    #[serde(rename = "id")]
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: String,
    /// `keep`, `mask`, `generalise`, `hash`.
    pub masking: String,
}

/// Rows of a dataset, as the caller may see them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rows {
    pub dataset: String,
    pub version: i64,
    /// `owner`, `open` or `grant`.
    pub access: String,
    /// The grant (approved request) the rows were served under.
    pub grant: Option<String>,
    pub fields: Vec<FieldShown>,
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<Map<String, Value>>,
    /// Rows matching, if asked (`include_total`).
    pub total: Option<i64>,
    pub limit: usize,
    pub offset: usize,
}

fn hex_cell(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

/// The associated data that binds a sealed value to its table, row and field.
fn seal_context(table: &str, row: i64, field: &str) -> Vec<u8> {
    format!("{table}|{row}|{field}").into_bytes()
}

fn typed(field: &Field, text: String) -> Value {
    match table::parse_value(&field.field_type, &text) {
        Ok(cell) => match (field.field_type.as_str(), cell) {
            ("boolean", Cell::Int(v)) => Value::Bool(v != 0),
            (_, cell) => cell.to_json(),
        },
        Err(_) => Value::String(text),
    }
}

impl Catalogue {
    /// The dataset's current version, if it has data.
    pub fn current_version(&self, id: &str) -> Option<Version> {
        self.state().versions.get(id).cloned()
    }

    /// Every version of a dataset, newest first.
    pub async fn versions(&self, id: &str) -> Result<Vec<Version>, Problem> {
        let rows: Vec<VersionRow> = self
            .db
            .fetch_all(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM data_versions WHERE dataset = $1 ORDER BY version DESC"
                ),
                &[Arg::text(id)],
            )
            .await?;
        Ok(rows.into_iter().map(version_of).collect())
    }

    /// Imports the file at `path` as the dataset's next version; all of it or, naming every
    /// bad row, none of it.
    pub async fn import(
        &self,
        principal: &Principal,
        id: &str,
        path: PathBuf,
        format: Format,
        encoding: Option<String>,
    ) -> Result<ImportReport, Problem> {
        let entry = self.get(Some(principal), id)?;
        let dataset = entry.dataset;
        principal.require(Resource::Datasets, Action::Write, &dataset.department)?;
        if dataset.source.is_live() {
            return Err(Problem::conflict(format!(
                "{id} is a live view ({}): its rows are read from the source, not imported",
                dataset.source.kind()
            ))
            .with_extension("reason", "live-view"));
        }
        self.import_file(&dataset, &principal.name, path, format, encoding)
            .await
    }

    /// Imports a file as the dataset's next version, by `actor` (checked by the caller).
    pub(crate) async fn import_file(
        &self,
        dataset: &Dataset,
        actor: &str,
        path: PathBuf,
        format: Format,
        encoding: Option<String>,
    ) -> Result<ImportReport, Problem> {
        let id = dataset.id.as_str();
        let dataset = dataset.clone();
        let _permit = self
            .imports
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Problem::unavailable("imports are shutting down"))?;
        let started = std::time::Instant::now();
        let checked = {
            let (path, dataset, encoding) = (path.clone(), dataset.clone(), encoding.clone());
            tokio::task::spawn_blocking(move || {
                import::check(&path, format, encoding.as_deref(), &dataset)
            })
            .await
            .map_err(|e| Problem::internal(format!("import task: {e}")))??
        };
        if checked.error_count > 0 {
            return Err(refused_rows(&checked));
        }
        let (bytes, sm3) = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || file_digest(&path))
                .await
                .map_err(|e| Problem::internal(format!("import task: {e}")))??
        };
        let version: i64 = self
            .db
            .fetch_one::<(Option<i64>,)>(
                "SELECT MAX(version) FROM data_versions WHERE dataset = $1",
                &[Arg::text(id)],
            )
            .await?
            .0
            .unwrap_or(0)
            + 1;
        let table = table::table_name(id, version);
        let record = Version {
            dataset: id.to_owned(),
            version,
            table: table.clone(),
            rows: checked.rows as i64,
            bytes,
            format: format.name().into(),
            encoding: checked.encoding.clone(),
            sm3,
            imported_at: String::new(),
            imported_by: actor.to_owned(),
            quality: checked.quality,
        };
        let now = yunnao_core::time::now_ms();
        let source = Source {
            path,
            format,
            encoding,
        };
        if self.db.dialect().embedded() {
            self.write_sqlite(&dataset, &record, source, now).await?;
        } else {
            self.write_postgres(&dataset, &record, source, now).await?;
        }
        self.reload().await?;
        Ok(ImportReport {
            version: Version {
                imported_at: yunnao_core::time::rfc3339_ms(now),
                ..record
            },
            seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        })
    }

    fn sealer(
        &self,
        table: String,
        fields: Vec<Field>,
    ) -> impl Fn(i64, usize, &str) -> Result<String, Problem> + Send + 'static {
        let cipher = self.cipher.clone();
        move |row, index, plain| {
            cipher
                .encrypt(
                    plain.as_bytes(),
                    &seal_context(&table, row, &fields[index].name),
                )
                .map(hex::encode)
                .map_err(|_| Problem::internal("a personal field cannot be sealed"))
        }
    }

    /// Runs the second pass on a blocking thread, handing batches to `write` here.
    async fn batches(
        &self,
        dataset: &Dataset,
        table: &str,
        source: Source,
        batch: usize,
    ) -> (
        tokio::sync::mpsc::Receiver<Vec<Vec<Cell>>>,
        tokio::task::JoinHandle<Result<(), Problem>>,
    ) {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<Vec<Cell>>>(4);
        let fields = dataset.fields.clone();
        let seal = self.sealer(table.to_owned(), fields.clone());
        let reader = tokio::task::spawn_blocking(move || {
            import::typed_batches(
                &source.path,
                source.format,
                source.encoding.as_deref(),
                &fields,
                &seal,
                batch,
                &mut |rows| sender.blocking_send(rows).is_ok(),
            )
        });
        (receiver, reader)
    }

    async fn write_sqlite(
        &self,
        dataset: &Dataset,
        version: &Version,
        source: Source,
        now: i64,
    ) -> Result<(), Problem> {
        let width = dataset.fields.len() + 1;
        let per_statement = (30_000 / width).clamp(1, 500);
        let (mut receiver, reader) = self
            .batches(dataset, &version.table, source, per_statement * 20)
            .await;
        let mut tx = self.db.begin_write().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(table::create_table_sql(
            &version.table,
            &dataset.fields,
        )))
        .execute(&mut **tx)
        .await
        .db()?;
        let columns = insert_columns(&dataset.fields);
        while let Some(rows) = receiver.recv().await {
            for chunk in rows.chunks(per_statement) {
                let mut sql = format!("INSERT INTO {} ({columns}) VALUES ", version.table);
                let mut n = 0;
                for (i, row) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push('(');
                    for j in 0..row.len() {
                        n += 1;
                        if j > 0 {
                            sql.push(',');
                        }
                        sql.push_str(&format!("${n}"));
                    }
                    sql.push(')');
                }
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for row in chunk {
                    for cell in row {
                        query = match cell {
                            Cell::Null => query.bind(Option::<String>::None),
                            Cell::Int(v) => query.bind(*v),
                            Cell::Real(v) => query.bind(*v),
                            Cell::Text(t) => query.bind(t.clone()),
                        };
                    }
                }
                query.execute(&mut **tx).await.db()?;
            }
        }
        reader
            .await
            .map_err(|e| Problem::internal(format!("import task: {e}")))??;
        for statement in table::create_index_sql(&version.table, &dataset.fields) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut **tx)
                .await
                .db()?;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE {}", version.table)))
            .execute(&mut **tx)
            .await
            .db()?;
        let record = version_insert(version, now);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(record.0));
        for arg in record.1 {
            query = match arg {
                Arg::Text(t) => query.bind(t.into_owned()),
                Arg::Int(v) => query.bind(v),
                Arg::Number(v) => query.bind(v),
                Arg::Real(v) => query.bind(v),
            };
        }
        query
            .execute(&mut **tx)
            .await
            .db()
            .map_err(conflicting_import)?;
        sqlx::query("UPDATE data_datasets SET modified_at_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(&version.dataset)
            .execute(&mut **tx)
            .await
            .db()?;
        tx.commit()
            .await
            .map_err(|e| Problem::internal(e.to_string()))?;
        Ok(())
    }

    /// On PostgreSQL the rows go by `COPY`, on a connection of the import's own, in one
    /// transaction with the table, its indexes and the version record.
    async fn write_postgres(
        &self,
        dataset: &Dataset,
        version: &Version,
        source: Source,
        now: i64,
    ) -> Result<(), Problem> {
        use sqlx::Connection as _;
        let failed = |e: sqlx::Error| {
            tracing::error!(error = %e, "import write failed");
            Problem::internal("the import could not be written; nothing was kept")
        };
        let mut connection = sqlx::PgConnection::connect(self.db.url())
            .await
            .map_err(failed)?;
        let (mut receiver, reader) = self.batches(dataset, &version.table, source, 10_000).await;
        let mut tx = connection.begin().await.map_err(failed)?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(table::create_table_sql(
            &version.table,
            &dataset.fields,
        )))
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
        {
            let mut copy = tx
                .copy_in_raw(&format!(
                    "COPY {} ({}) FROM STDIN",
                    version.table,
                    insert_columns(&dataset.fields)
                ))
                .await
                .map_err(failed)?;
            let mut text = String::with_capacity(1 << 20);
            while let Some(rows) = receiver.recv().await {
                text.clear();
                for row in &rows {
                    copy_row(&mut text, row);
                }
                copy.send(text.as_bytes()).await.map_err(failed)?;
            }
            copy.finish().await.map_err(failed)?;
        }
        reader
            .await
            .map_err(|e| Problem::internal(format!("import task: {e}")))??;
        for statement in table::create_index_sql(&version.table, &dataset.fields) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE {}", version.table)))
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        let (sql, args) = version_insert(version, now);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for arg in args {
            query = match arg {
                Arg::Text(t) => query.bind(t.into_owned()),
                Arg::Int(v) => query.bind(v),
                Arg::Number(v) => query.bind(v),
                Arg::Real(v) => query.bind(v),
            };
        }
        query.execute(&mut *tx).await.map_err(|e| {
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation())
            {
                conflicting_import(yunnao_store::StoreError::from(e).into())
            } else {
                failed(e)
            }
        })?;
        sqlx::query("UPDATE data_datasets SET modified_at_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(&version.dataset)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        // The visibility map, so that counts read the indexes only; after the commit (VACUUM
        // runs outside a transaction), in the background.
        let table = version.table.clone();
        tokio::spawn(async move {
            if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM {table}")))
                .execute(&mut connection)
                .await
            {
                tracing::warn!(error = %e, %table, "VACUUM after import failed");
            }
        });
        Ok(())
    }

    /// How `principal` may read `dataset`, or why not.
    pub async fn access(
        &self,
        principal: Option<&Principal>,
        dataset: &Dataset,
    ) -> Result<Access, Problem> {
        if let Some(p) = principal
            && p.department == dataset.department
            && p.may(Resource::Datasets, Action::Read, &dataset.department)
        {
            return Ok(Access::Owner);
        }
        match dataset.sharing.as_str() {
            "open" => return Ok(Access::Open),
            "none" => {
                return Err(Problem::forbidden(format!(
                    "{} is not shared (不予共享): it is listed, never served outside {}",
                    dataset.id, dataset.department
                ))
                .with_extension("reason", "not-shared"));
            }
            _ => {}
        }
        let Some(p) = principal else {
            return Err(Problem::unauthorized(format!(
                "{} is shared on condition (有条件共享): sign in as a department holding an approved request",
                dataset.id
            )));
        };
        if p.department == dataset.department
            || p.reach(Resource::Datasets, Action::Read) == yunnao_identity::Reach::None
        {
            return Err(Problem::forbidden(
                "reading a department's data takes a role or scope that reads datasets (datasets:read)",
            )
            .with_extension("reason", "role"));
        }
        self.live_grant(&p.department, &dataset.id)
            .await
            .map(Access::Grant)
    }

    /// Reads rows of a dataset as `principal` may; meters and audits the read (or its denial).
    pub async fn read(
        &self,
        principal: Option<&Principal>,
        request_id: &str,
        id: &str,
        query: &ReadQuery,
    ) -> Result<Rows, Problem> {
        let entry = self.get(principal, id)?;
        let dataset = &entry.dataset;
        let access = match self.access(principal, dataset).await {
            Ok(access) => access,
            Err(problem) => {
                if let Some(p) = principal {
                    let _ = self
                        .meter(p, request_id, dataset, "", 0, 0, 0, "denied", &problem)
                        .await;
                }
                return Err(problem);
            }
        };
        // A live view has no version: its rows are read from the source now.
        let live = dataset.source.is_live();
        let version = if live {
            None
        } else {
            Some(self.current_version(id).ok_or_else(|| {
                Problem::not_found(format!("{id} has no data imported yet"))
                    .with_extension("reason", "no-data")
            })?)
        };
        let table = version
            .as_ref()
            .map_or(crate::live::LIVE_TABLE, |v| v.table.as_str());
        let (allowed, fixed, masking): (Vec<String>, Map<String, Value>, Map<String, Value>) =
            match &access {
                Access::Owner | Access::Open => (
                    dataset.fields.iter().map(|f| f.name.clone()).collect(),
                    Map::new(),
                    Map::new(),
                ),
                Access::Grant(grant) => (
                    grant.fields.clone(),
                    grant.row_filter.clone(),
                    grant.masking.clone(),
                ),
            };
        let select = match Select::build(table, &dataset.fields, &allowed, &fixed, query) {
            Ok(select) => select,
            Err(message) => {
                let outside = message.contains("outside");
                let problem = if outside {
                    Problem::forbidden(message).with_extension("reason", "outside-grant")
                } else {
                    Problem::bad_request(message).with_extension("reason", "query")
                };
                if let (Some(p), true) = (principal, outside) {
                    let grant = match &access {
                        Access::Grant(g) => g.id.as_str(),
                        _ => "",
                    };
                    let _ = self
                        .meter(p, request_id, dataset, grant, 0, 0, 0, "denied", &problem)
                        .await;
                }
                return Err(problem);
            }
        };
        let (found, total): (Vec<Cells>, Option<i64>) = if live {
            self.scan_live(dataset, &select, query.include_total)
                .await?
        } else {
            let found = self.db.scan(&select.rows_sql, &select.args).await?;
            let total = if query.include_total {
                Some(
                    self.db
                        .fetch_one::<(i64,)>(&select.count_sql, &select.args)
                        .await?
                        .0,
                )
            } else {
                None
            };
            (found, total)
        };
        let salt = match &access {
            Access::Grant(_) => principal
                .map(|p| self.salt(&p.department))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let rules: Vec<(String, Option<&'static str>)> = select
            .fields
            .iter()
            .map(|f| {
                let rule = masking
                    .get(&f.name)
                    .and_then(Value::as_str)
                    .unwrap_or("keep")
                    .to_owned();
                (rule, f.kind())
            })
            .collect();
        let mut records = Vec::with_capacity(found.len());
        let mut bytes = 0usize;
        for Cells(cells) in found {
            let mut record = Map::new();
            let mut cells = cells.into_iter();
            let row_id = match cells.next() {
                Some(Cell::Int(v)) => v,
                _ => 0,
            };
            record.insert("_id".into(), Value::from(row_id));
            for ((field, (rule, kind)), cell) in select.fields.iter().zip(&rules).zip(cells) {
                let value = if field.personal != "none" && !live {
                    match cell {
                        Cell::Text(sealed) => {
                            let plain = hex_cell(&sealed)
                                .and_then(|b| {
                                    self.cipher
                                        .decrypt(&b, &seal_context(table, row_id, &field.name))
                                        .ok()
                                })
                                .and_then(|b| String::from_utf8(b).ok());
                            match plain {
                                Some(text) => typed(field, text),
                                None => {
                                    tracing::error!(dataset = id, row = row_id, field = %field.name, "a sealed field does not open");
                                    return Err(Problem::internal(
                                        "a sealed value does not open; the operators have been told",
                                    ));
                                }
                            }
                        }
                        _ => Value::Null,
                    }
                } else {
                    match (field.field_type.as_str(), cell) {
                        ("boolean", Cell::Int(v)) => Value::Bool(v != 0),
                        (_, cell) => cell.to_json(),
                    }
                };
                if let Some(shown) = crate::mask::apply(rule, *kind, &value, &salt) {
                    bytes += estimate_bytes(&shown) + field.name.len() + 4;
                    record.insert(field.name.clone(), shown);
                }
            }
            records.push(record);
        }
        let fields: Vec<FieldShown> = select
            .fields
            .iter()
            .zip(&rules)
            .filter(|(_, (rule, _))| rule != "drop")
            .map(|(f, (rule, _))| FieldShown {
                name: f.name.clone(),
                field_type: f.field_type.clone(),
                masking: rule.clone(),
            })
            .collect();
        let grant = match &access {
            Access::Grant(g) => Some(g.id.clone()),
            _ => None,
        };
        match principal {
            Some(p) => {
                self.meter(
                    p,
                    request_id,
                    dataset,
                    grant.as_deref().unwrap_or(""),
                    records.len(),
                    fields.len(),
                    bytes,
                    access.name(),
                    &Problem::internal(""),
                )
                .await
                // A read not audited is not served.
                .map_err(|_| {
                    Problem::internal("the read could not be audited; nothing was served")
                })?;
            }
            None => self.count_public(&dataset.id, &dataset.department, records.len(), bytes),
        }
        Ok(Rows {
            dataset: id.to_owned(),
            version: version.map_or(0, |v| v.version),
            access: access.name().into(),
            grant,
            fields,
            records,
            total,
            limit: query.limit.min(table::MAX_LIMIT),
            offset: query.offset,
        })
    }

    /// The salt a consumer's hashes are made with: the same for all its reads, different from
    /// every other consumer's, and not computable without the platform key.
    pub fn salt(&self, consumer: &str) -> Vec<u8> {
        self.salts
            .encrypt_with_nonce(&[0; 12], consumer.as_bytes(), b"data-hash-salt")
            .unwrap_or_default()
    }

    /// One metered read (or denial) and its audit record, committed together.
    #[allow(clippy::too_many_arguments)]
    async fn meter(
        &self,
        principal: &Principal,
        request_id: &str,
        dataset: &Dataset,
        grant: &str,
        rows: usize,
        fields: usize,
        bytes: usize,
        outcome: &str,
        denial: &Problem,
    ) -> Result<(), Problem> {
        let denied = outcome == "denied";
        let entry = AuditEntry {
            actor: principal.name.clone(),
            department: principal.department.clone(),
            action: if denied {
                "data.read.denied".into()
            } else {
                format!("data.read.{outcome}")
            },
            target: if denied {
                format!(
                    "dataset:{} owner:{} grant:{grant} reason:{}",
                    dataset.id,
                    dataset.department,
                    denial.detail.as_deref().unwrap_or("")
                )
            } else {
                format!(
                    "dataset:{} owner:{} grant:{grant} rows:{rows} fields:{fields} bytes:{bytes}",
                    dataset.id, dataset.department
                )
            },
            request_id: request_id.to_owned(),
            outcome: if denied { "denied" } else { "success" }.into(),
        };
        let (done, committed) = tokio::sync::oneshot::channel();
        let job = MeterJob {
            args: vec![
                Arg::Int(yunnao_core::time::now_ms()),
                Arg::Text(dataset.id.clone().into()),
                Arg::Text(dataset.department.clone().into()),
                Arg::Text(principal.department.clone().into()),
                Arg::Text(principal.name.clone().into()),
                Arg::Text(grant.to_owned().into()),
                Arg::Int(rows as i64),
                Arg::Int(fields as i64),
                Arg::Int(bytes as i64),
                Arg::Text(outcome.to_owned().into()),
            ],
            entry,
            done,
        };
        let result = match self.meters.send(job).await {
            Ok(()) => committed
                .await
                .unwrap_or_else(|_| Err(Problem::internal("the meter stopped"))),
            Err(_) => Err(Problem::internal("the meter stopped")),
        };
        if let Err(problem) = &result {
            tracing::error!(%problem, "a data read could not be metered");
        }
        result
    }

    /// Counts an anonymous read of open data for the next minute's meter row.
    fn count_public(&self, dataset: &str, owner: &str, rows: usize, bytes: usize) {
        if let Ok(mut counts) = self.public_reads.lock() {
            let entry = counts
                .entry(dataset.to_owned())
                .or_insert_with(|| (owner.to_owned(), 0, 0, 0));
            entry.1 += 1;
            entry.2 += rows as i64;
            entry.3 += bytes as i64;
        }
    }

    /// Writes the anonymous reads counted since the last time, one row per dataset.
    pub async fn flush_public_reads(&self) -> Result<(), Problem> {
        let counts: Vec<(String, (String, i64, i64, i64))> = match self.public_reads.lock() {
            Ok(mut counts) => counts.drain().collect(),
            Err(_) => return Ok(()),
        };
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_fast_write().await?;
        let now = yunnao_core::time::now_ms();
        for (dataset, (owner, reads, rows, bytes)) in counts {
            tx.execute(
                "INSERT INTO data_reads (at_ms, dataset, owner, consumer, actor, grant_id, row_count, field_count, bytes, outcome) \
                 VALUES ($1, $2, $3, 'public', 'anonymous', '', $4, $5, $6, 'open')",
                &[
                    Arg::Int(now),
                    Arg::text(dataset),
                    Arg::text(owner),
                    Arg::Int(rows),
                    Arg::Int(reads),
                    Arg::Int(bytes),
                ],
            )
            .await?;
        }
        tx.commit().await
    }
}

/// One read to meter and audit, and who waits for its commit.
pub(crate) struct MeterJob {
    args: Vec<Arg<'static>>,
    entry: AuditEntry,
    done: tokio::sync::oneshot::Sender<Result<(), Problem>>,
}

/// Reads waiting to be metered at most; past this a read waits for room.
pub(crate) const METER_QUEUE: usize = 4096;

/// Meters reads in groups: each group's `data_reads` rows and audit records in one
/// transaction, so concurrent reads share a commit (and the audit chain's lock) instead of
/// queueing for one each; every read still answers only after its records are committed.
pub(crate) async fn run_meter(
    db: yunnao_store::Db,
    identity: yunnao_identity::Identity,
    mut jobs: tokio::sync::mpsc::Receiver<MeterJob>,
) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < 256 {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut entries = Vec::with_capacity(group.len());
        let mut waiting = Vec::with_capacity(group.len());
        let mut rows = Vec::with_capacity(group.len());
        for job in group {
            entries.push(job.entry);
            waiting.push(job.done);
            rows.push(job.args);
        }
        let result = async {
            let mut tx = db.begin_fast_write().await?;
            // One statement for the group's meter rows (10 parameters a row, 256 rows at
            // most: within SQLite's limit), one chain-head read and insert for its audit.
            let mut sql = String::from(
                "INSERT INTO data_reads (at_ms, dataset, owner, consumer, actor, grant_id, row_count, field_count, bytes, outcome) VALUES ",
            );
            let mut args = Vec::with_capacity(rows.len() * 10);
            for (i, row) in rows.into_iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for j in 0..row.len() {
                    if j > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("${}", args.len() + j + 1));
                }
                sql.push(')');
                args.extend(row);
            }
            tx.execute(&sql, &args).await?;
            identity.audit_many_in(&mut tx, entries).await?;
            tx.commit().await
        }
        .await;
        for done in waiting {
            let _ = done.send(result.clone());
        }
    }
}

/// A JSON value's size as sent, without writing it out.
fn estimate_bytes(value: &Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(n) => n.to_string().len(),
        Value::String(s) => s.len() + 2,
        other => other.to_string().len(),
    }
}

struct Source {
    path: PathBuf,
    format: Format,
    encoding: Option<String>,
}

fn insert_columns(fields: &[Field]) -> String {
    let mut columns = String::from("_id");
    for f in fields {
        columns.push_str(&format!(", \"{}\"", f.name));
    }
    columns
}

/// A row in `COPY`'s text format.
fn copy_row(out: &mut String, row: &[Cell]) {
    use std::fmt::Write as _;
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match cell {
            Cell::Null => out.push_str("\\N"),
            Cell::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Cell::Real(v) => {
                let _ = write!(out, "{v:?}");
            }
            Cell::Text(t) => {
                for c in t.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
            }
        }
    }
    out.push('\n');
}

fn version_insert(version: &Version, now: i64) -> (String, Vec<Arg<'static>>) {
    (
        format!(
            "INSERT INTO data_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ),
        vec![
            Arg::Text(version.dataset.clone().into()),
            Arg::Int(version.version),
            Arg::Text(version.table.clone().into()),
            Arg::Int(version.rows),
            Arg::Int(version.bytes),
            Arg::Text(version.format.clone().into()),
            Arg::Text(version.encoding.clone().into()),
            Arg::Text(version.sm3.clone().into()),
            Arg::Int(now),
            Arg::Text(version.imported_by.clone().into()),
            Arg::Number(version.quality.completeness),
            Arg::Number(version.quality.validity),
            Arg::Number(version.quality.uniqueness),
        ],
    )
}

fn conflicting_import(problem: Problem) -> Problem {
    if problem.status == 409 || problem.status == 500 {
        Problem::conflict("another import of this dataset finished first; import again")
    } else {
        problem
    }
}

/// The file's size and SM3, hex.
fn file_digest(path: &Path) -> Result<(i64, String), Problem> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)
        .map_err(|e| Problem::internal(format!("the upload cannot be read: {e}")))?;
    let mut hasher = yunnao_gm::Sm3Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0i64;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| Problem::internal(format!("the upload cannot be read: {e}")))?;
        if n == 0 {
            break;
        }
        size += n as i64;
        hasher.update(&buffer[..n]);
    }
    Ok((size, hex::encode(hasher.finish())))
}

/// The refusal of a file with bad rows: 422 naming them; nothing was imported.
fn refused_rows(checked: &Checked) -> Problem {
    let errors: Vec<&RowError> = checked.errors.iter().collect();
    Problem::validation(format!(
        "{} of the file's {} rows hold errors; nothing was imported (the first: row {}{}: {})",
        checked.error_count,
        checked.rows,
        errors.first().map_or(0, |e| e.row),
        errors
            .first()
            .and_then(|e| e.field.as_ref())
            .map(|f| format!(", {f}"))
            .unwrap_or_default(),
        errors.first().map_or("", |e| e.message.as_str()),
    ))
    .with_extension("error_count", checked.error_count)
    .with_extension(
        "errors",
        serde_json::to_value(&checked.errors).unwrap_or(Value::Null),
    )
}
