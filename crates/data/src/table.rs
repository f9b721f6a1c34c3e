//! A dataset's rows: values typed by its schema ([`parse_value`]), a table per imported
//! version with typed columns and the indexes the schema asks for ([`create_table_sql`]),
//! personal fields sealed with SM4-GCM, and reads with filters, text search, sorting and paging
//! that the indexes keep fast ([`Select`]).

use crate::Field;
use serde_json::Value;
use yunnao_store::sqlx;
use yunnao_store::{Arg, Record};

/// Rows a read returns at most (CKAN's `limit`).
pub const MAX_LIMIT: usize = 1000;
/// The deepest a read may page (`offset`).
pub const MAX_OFFSET: usize = 10_000_000;
/// Characters in one text value.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// One stored value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl Cell {
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => Value::from(*i),
            Cell::Real(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Cell::Text(t) => Value::String(t.clone()),
        }
    }

    pub fn arg(&self) -> Arg<'static> {
        match self {
            Cell::Null => Arg::Real(None),
            Cell::Int(i) => Arg::Int(*i),
            Cell::Real(f) => Arg::Number(*f),
            Cell::Text(t) => Arg::Text(t.clone().into()),
        }
    }
}

/// A selected row of any width, decoded by its columns' types.
#[derive(Debug, Clone, PartialEq)]
pub struct Cells(pub Vec<Cell>);

impl Record for Cells {
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        use rusqlite::types::ValueRef;
        let n = row.as_ref().column_count();
        let mut cells = Vec::with_capacity(n);
        for i in 0..n {
            cells.push(match row.get_ref(i)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(v) => Cell::Int(v),
                ValueRef::Real(v) => Cell::Real(v),
                ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Cell::Text(hex::encode(b)),
            });
        }
        Ok(Cells(cells))
    }

    fn from_any(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::any::AnyTypeInfoKind as Kind;
        use sqlx::{Column as _, Row as _};
        let mut cells = Vec::with_capacity(row.columns().len());
        for (i, column) in row.columns().iter().enumerate() {
            let cell = match column.type_info().kind() {
                Kind::Null => Cell::Null,
                Kind::Bool => row
                    .try_get::<Option<bool>, _>(i)?
                    .map_or(Cell::Null, |b| Cell::Int(i64::from(b))),
                Kind::SmallInt | Kind::Integer | Kind::BigInt => row
                    .try_get::<Option<i64>, _>(i)?
                    .map_or(Cell::Null, Cell::Int),
                Kind::Real | Kind::Double => row
                    .try_get::<Option<f64>, _>(i)?
                    .map_or(Cell::Null, Cell::Real),
                Kind::Text | Kind::Blob => row
                    .try_get::<Option<String>, _>(i)?
                    .map_or(Cell::Null, Cell::Text),
            };
            cells.push(cell);
        }
        Ok(Cells(cells))
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// `YYYY-MM-DD` from the forms departments write: `2024-03-05`, `2024/3/5`, `20240305`,
/// `2024-03` (a month: its first day), or any of them followed by a time.
pub fn normalise_date(text: &str) -> Option<String> {
    let date_part = text.split([' ', 'T']).next().unwrap_or(text);
    let parts: Vec<&str> = if date_part.len() == 8 && date_part.bytes().all(|b| b.is_ascii_digit())
    {
        vec![&date_part[0..4], &date_part[4..6], &date_part[6..8]]
    } else {
        date_part.split(['-', '/', '.']).collect()
    };
    let (y, m, d) = match parts.as_slice() {
        [y, m] => (*y, *m, "1"),
        [y, m, d] => (*y, *m, *d),
        _ => return None,
    };
    if y.len() != 4 || m.is_empty() || m.len() > 2 || d.is_empty() || d.len() > 2 {
        return None;
    }
    let (y, m, d): (i32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    ((1900..=2200).contains(&y) && (1..=12).contains(&m) && (1..=days_in_month(y, m)).contains(&d))
        .then(|| format!("{y:04}-{m:02}-{d:02}"))
}

/// An instant as `YYYY-MM-DDTHH:MM:SS.sssZ`: RFC 3339, or a local time without an offset read
/// as China Standard Time (UTC+8), as Qingdao's systems write them.
pub fn normalise_timestamp(text: &str) -> Option<String> {
    let ms = yunnao_core::time::parse_rfc3339_ms(text).or_else(|| {
        let local = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y/%m/%d %H:%M:%S"))
            .ok()?;
        Some(local.and_utc().timestamp_millis() - 8 * 3600 * 1000)
    })?;
    Some(yunnao_core::time::rfc3339_ms(ms))
}

/// A value as the field's type says, from the text a file holds; empty text is null.
pub fn parse_value(field_type: &str, raw: &str) -> Result<Cell, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Ok(Cell::Null);
    }
    match field_type {
        "integer" => text
            .parse::<i64>()
            .map(Cell::Int)
            .map_err(|_| format!("{text:?} is not an integer")),
        "number" => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Cell::Real(v)),
            _ => Err(format!("{text:?} is not a number")),
        },
        "date" => normalise_date(text)
            .map(Cell::Text)
            .ok_or_else(|| format!("{text:?} is not a date (YYYY-MM-DD)")),
        "timestamp" => normalise_timestamp(text)
            .map(Cell::Text)
            .ok_or_else(|| format!("{text:?} is not a time (RFC 3339)")),
        "boolean" => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" | "是" => Ok(Cell::Int(1)),
            "false" | "0" | "no" | "n" | "否" => Ok(Cell::Int(0)),
            _ => Err(format!("{text:?} is not true or false")),
        },
        _ => {
            if text.chars().count() > MAX_TEXT_CHARS {
                Err(format!("a text holds at most {MAX_TEXT_CHARS} characters"))
            } else if text.contains('\0') {
                Err("a text holds no NUL characters".into())
            } else {
                Ok(Cell::Text(text.to_owned()))
            }
        }
    }
}

/// A column's type as the whole file shows it (not its first rows): the narrowest type every
/// non-empty value fits. A number with leading zeros (`0532`, a code) stays text.
#[derive(Debug, Clone)]
pub struct Inference {
    integer: bool,
    number: bool,
    date: bool,
    timestamp: bool,
    boolean: bool,
    values: usize,
}

impl Default for Inference {
    fn default() -> Self {
        Self {
            integer: true,
            number: true,
            date: true,
            timestamp: true,
            boolean: true,
            values: 0,
        }
    }
}

impl Inference {
    pub fn observe(&mut self, raw: &str) {
        let text = raw.trim();
        if text.is_empty() {
            return;
        }
        self.values += 1;
        let leading_zero = text.len() > 1 && text.starts_with('0') && !text.starts_with("0.");
        if self.integer && (leading_zero || text.parse::<i64>().is_err()) {
            self.integer = false;
        }
        if self.number && (leading_zero || !text.parse::<f64>().is_ok_and(f64::is_finite)) {
            self.number = false;
        }
        if self.date && (text.len() > 10 || normalise_date(text).is_none()) {
            self.date = false;
        }
        if self.timestamp && normalise_timestamp(text).is_none() {
            self.timestamp = false;
        }
        if self.boolean && parse_value("boolean", text).is_err() {
            self.boolean = false;
        }
    }

    pub fn field_type(&self) -> &'static str {
        if self.values == 0 {
            "text"
        } else if self.integer {
            "integer"
        } else if self.number {
            "number"
        } else if self.date {
            "date"
        } else if self.timestamp {
            "timestamp"
        } else if self.boolean {
            "boolean"
        } else {
            "text"
        }
    }
}

/// The column type a field is stored as; personal fields are sealed text whatever their type.
pub fn column_type(field: &Field) -> &'static str {
    if field.personal != "none" {
        return "TEXT";
    }
    match field.field_type.as_str() {
        "integer" | "boolean" => "BIGINT",
        "number" => "DOUBLE PRECISION",
        _ => "TEXT",
    }
}

/// Whether a field can be filtered and sorted on: its column holds the value itself.
pub fn queryable(field: &Field) -> bool {
    field.personal == "none"
}

/// The table name of a dataset's version: readable, unique (a hash of the whole id), and
/// within PostgreSQL's 63 bytes.
pub fn table_name(dataset: &str, version: i64) -> String {
    let slug: String = dataset
        .chars()
        .take(36)
        .map(|c| if c == '-' { '_' } else { c })
        .collect();
    let hash = hex::encode(&yunnao_gm::sm3(dataset.as_bytes())[..3]);
    format!("dt_{slug}_{hash}_v{version}")
}

/// The fields the schema indexes: those marked `indexed`, or, when none is, the first
/// queryable field and every queryable date or time.
pub fn indexed_fields(fields: &[Field]) -> Vec<&Field> {
    let marked: Vec<&Field> = fields
        .iter()
        .filter(|f| f.indexed && queryable(f))
        .collect();
    if !marked.is_empty() {
        return marked;
    }
    let mut chosen: Vec<&Field> = fields.iter().filter(|f| queryable(f)).take(1).collect();
    for f in fields {
        if queryable(f)
            && matches!(f.field_type.as_str(), "date" | "timestamp")
            && !chosen.iter().any(|c| c.name == f.name)
        {
            chosen.push(f);
        }
    }
    chosen
}

/// `CREATE TABLE` for a version's rows: `_id` (the row's number in the file) and a column per
/// field.
pub fn create_table_sql(table: &str, fields: &[Field]) -> String {
    let mut sql = format!("CREATE TABLE {table} (_id BIGINT PRIMARY KEY");
    for f in fields {
        sql.push_str(&format!(", \"{}\" {}", f.name, column_type(f)));
    }
    sql.push(')');
    sql
}

/// The indexes of a version's table, made after its rows are in: one per indexed field, and
/// one per (indexed field, indexed date) pair, so that a filter with a sort by date reads
/// only the rows it returns.
pub fn create_index_sql(table: &str, fields: &[Field]) -> Vec<String> {
    let indexed = indexed_fields(fields);
    let mut statements = Vec::new();
    for (i, f) in indexed.iter().enumerate() {
        statements.push(format!(
            "CREATE INDEX {table}_i{i} ON {table} (\"{}\")",
            f.name
        ));
    }
    let dates: Vec<&&Field> = indexed
        .iter()
        .filter(|f| matches!(f.field_type.as_str(), "date" | "timestamp"))
        .collect();
    for (i, f) in indexed.iter().enumerate() {
        if matches!(f.field_type.as_str(), "date" | "timestamp") {
            continue;
        }
        for (j, d) in dates.iter().enumerate() {
            if statements.len() >= 12 {
                return statements;
            }
            statements.push(format!(
                "CREATE INDEX {table}_c{i}_{j} ON {table} (\"{}\", \"{}\")",
                f.name, d.name
            ));
        }
    }
    statements
}

/// What a read asks for, checked against the schema ([`Select::build`]).
#[derive(Debug, Clone, Default)]
pub struct ReadQuery {
    /// field → one value or a list of values (CKAN's `filters`).
    pub filters: serde_json::Map<String, Value>,
    /// Text that any queryable text field contains.
    pub q: Option<String>,
    /// `field [asc|desc]`, comma-separated (CKAN's `sort`).
    pub sort: Option<String>,
    pub fields: Option<Vec<String>>,
    pub limit: usize,
    pub offset: usize,
    pub include_total: bool,
}

/// A read's SQL: the rows and, if asked, their total.
#[derive(Debug, Clone)]
pub struct Select {
    pub rows_sql: String,
    pub count_sql: String,
    pub args: Vec<Arg<'static>>,
    /// The fields selected after `_id`, in order.
    pub fields: Vec<Field>,
}

fn filter_value(field: &Field, value: &Value) -> Result<Arg<'static>, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => {
            return Err(format!(
                "filters.{}: a value is a string, number or boolean",
                field.name
            ));
        }
    };
    match parse_value(&field.field_type, &text) {
        Ok(Cell::Null) => Err(format!("filters.{}: an empty value", field.name)),
        Ok(cell) => Ok(cell.arg()),
        Err(e) => Err(format!("filters.{}: {e}", field.name)),
    }
}

impl Select {
    /// Checks `query` against `schema` and `allowed` (the fields the caller may see) and adds
    /// the grant's own row filter (`fixed`); errors name what is wrong.
    pub fn build(
        table: &str,
        schema: &[Field],
        allowed: &[String],
        fixed: &serde_json::Map<String, Value>,
        query: &ReadQuery,
    ) -> Result<Select, String> {
        let field = |name: &str| schema.iter().find(|f| f.name == name);
        let selected: Vec<Field> = match &query.fields {
            Some(names) => {
                let mut out = Vec::new();
                for name in names {
                    let name = name.trim();
                    if name == "_id" {
                        continue;
                    }
                    let f = field(name).ok_or_else(|| format!("fields: no field {name}"))?;
                    if !allowed.iter().any(|a| a == name) {
                        return Err(format!("fields: {name} is outside what you may read"));
                    }
                    if !out.iter().any(|o: &Field| o.name == name) {
                        out.push(f.clone());
                    }
                }
                out
            }
            None => schema
                .iter()
                .filter(|f| allowed.contains(&f.name))
                .cloned()
                .collect(),
        };
        let mut conditions = Vec::new();
        let mut args: Vec<Arg<'static>> = Vec::new();
        let mut add_filter = |name: &str,
                              value: &Value,
                              args: &mut Vec<Arg<'static>>|
         -> Result<(), String> {
            let f = field(name).ok_or_else(|| format!("filters: no field {name}"))?;
            if !queryable(f) {
                return Err(format!(
                    "filters: {name} is personal information, sealed at rest; it cannot be filtered on"
                ));
            }
            let values: Vec<&Value> = match value {
                Value::Array(items) if items.is_empty() || items.len() > 100 => {
                    return Err(format!("filters.{name}: 1 to 100 values"));
                }
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            let mut placeholders = Vec::new();
            for v in values {
                args.push(filter_value(f, v)?);
                placeholders.push(format!("${}", args.len()));
            }
            conditions.push(if placeholders.len() == 1 {
                format!("\"{name}\" = {}", placeholders[0])
            } else {
                format!("\"{name}\" IN ({})", placeholders.join(", "))
            });
            Ok(())
        };
        if query.filters.len() > 20 {
            return Err("filters: at most 20 fields".into());
        }
        for (name, value) in fixed {
            add_filter(name, value, &mut args)?;
        }
        for (name, value) in &query.filters {
            if field(name).is_none() {
                return Err(format!("filters: no field {name}"));
            }
            if !allowed.iter().any(|a| a == name) {
                return Err(format!("filters: {name} is outside what you may read"));
            }
            if let Some(granted) = fixed.get(name) {
                let within = match granted {
                    Value::Array(items) => match value {
                        Value::Array(asked) => asked.iter().all(|a| items.contains(a)),
                        one => items.contains(one),
                    },
                    one => one == value,
                };
                if !within {
                    return Err(format!(
                        "filters: {name} = {value} is outside the rows you may read ({name} = {granted})"
                    ));
                }
            }
            add_filter(name, value, &mut args)?;
        }
        if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            if q.chars().count() > 100 {
                return Err("q: at most 100 characters".into());
            }
            let texts: Vec<&Field> = schema
                .iter()
                .filter(|f| queryable(f) && f.field_type == "text" && allowed.contains(&f.name))
                .collect();
            if texts.is_empty() {
                return Err("q: the dataset has no text field you may search".into());
            }
            let escaped: String = q
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            args.push(Arg::Text(format!("%{escaped}%").into()));
            let n = args.len();
            let any: Vec<String> = texts
                .iter()
                .map(|f| format!("\"{}\" LIKE ${n} ESCAPE '\\'", f.name))
                .collect();
            conditions.push(format!("({})", any.join(" OR ")));
        }
        let mut order = Vec::new();
        if let Some(sort) = query.sort.as_deref().filter(|s| !s.trim().is_empty()) {
            let parts: Vec<&str> = sort.split(',').collect();
            if parts.len() > 3 {
                return Err("sort: at most 3 fields".into());
            }
            for part in parts {
                let mut words = part.split_whitespace();
                let name = words.next().unwrap_or("").trim_matches('"');
                let direction = match words.next().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("asc") => "ASC",
                    Some("desc") => "DESC",
                    Some(other) => return Err(format!("sort: {other} is not asc or desc")),
                };
                if words.next().is_some() {
                    return Err(format!("sort: {part:?} is `field [asc|desc]`"));
                }
                if name == "_id" {
                    order.push(format!("_id {direction}"));
                    continue;
                }
                let f = field(name).ok_or_else(|| format!("sort: no field {name}"))?;
                if !queryable(f) {
                    return Err(format!(
                        "sort: {name} is personal information, sealed at rest; it cannot be sorted on"
                    ));
                }
                if !allowed.iter().any(|a| a == name) {
                    return Err(format!("sort: {name} is outside what you may read"));
                }
                order.push(format!("\"{name}\" {direction}"));
            }
        }
        if !order.iter().any(|o| o.starts_with("_id")) {
            order.push("_id ASC".into());
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let mut columns = String::from("_id");
        for f in &selected {
            columns.push_str(&format!(", \"{}\"", f.name));
        }
        let rows_sql = format!(
            "SELECT {columns} FROM {table}{where_clause} ORDER BY {} LIMIT {} OFFSET {}",
            order.join(", "),
            query.limit.min(MAX_LIMIT),
            query.offset.min(MAX_OFFSET)
        );
        let count_sql = format!("SELECT COUNT(*) FROM {table}{where_clause}");
        Ok(Select {
            rows_sql,
            count_sql,
            args,
            fields: selected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_take_the_forms_departments_write() {
        for (raw, want) in [
            ("2024-03-05", Some("2024-03-05")),
            ("2024/3/5", Some("2024-03-05")),
            ("20240305", Some("2024-03-05")),
            ("2024-03", Some("2024-03-01")),
            ("2024-03-05 08:00:00", Some("2024-03-05")),
            ("2023-02-29", None),
            ("2024-13-01", None),
            ("yesterday", None),
        ] {
            assert_eq!(normalise_date(raw).as_deref(), want, "{raw}");
        }
        assert_eq!(
            normalise_timestamp("2024-03-05 08:00:00").as_deref(),
            Some("2024-03-05T00:00:00.000Z")
        );
        assert_eq!(
            normalise_timestamp("2024-03-05T08:00:00+08:00").as_deref(),
            Some("2024-03-05T00:00:00.000Z")
        );
    }

    #[test]
    fn types_are_inferred_from_every_value() {
        let infer = |values: &[&str]| {
            let mut i = Inference::default();
            for v in values {
                i.observe(v);
            }
            i.field_type()
        };
        assert_eq!(infer(&["1", "2", ""]), "integer");
        // A late decimal makes the whole column a number, not an error on row 3.
        assert_eq!(infer(&["1", "2", "2.5"]), "number");
        assert_eq!(infer(&["0532", "0531"]), "text");
        assert_eq!(infer(&["2024-01-01", "2024/2/3"]), "date");
        assert_eq!(infer(&["2024-01-01 08:00:00"]), "timestamp");
        assert_eq!(infer(&["是", "否"]), "boolean");
        assert_eq!(infer(&["1", "x"]), "text");
        assert_eq!(infer(&[]), "text");
    }
}
