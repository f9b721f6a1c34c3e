//! Importing a file as a new version of a dataset's table: CSV (UTF-8 or GBK/GB18030, found
//! out or named), XLSX, JSON (an array of objects) or JSON Lines. Two passes over the file:
//! the first types every value by the schema and names every bad row, measuring quality on
//! the way; only a file without one bad row gets the second, which writes it, in one
//! transaction with its version record, so a file is imported whole or not at all. Types are
//! inferred ([`infer`]) from the whole file, never from its first rows.

use crate::table::{self, Cell, Inference, parse_value};
use crate::{Dataset, Field};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use yunnao_core::Problem;

/// Bad rows named in a refusal; the rest are counted.
pub const MAX_ERRORS_LISTED: usize = 100;
/// A JSON array is parsed whole: this is its largest file (JSON Lines streams).
pub const MAX_JSON_ARRAY_BYTES: u64 = 64 << 20;
/// Rows a file may hold.
pub const MAX_ROWS: usize = 20_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
    Json,
    JsonLines,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        match text.to_ascii_lowercase().as_str() {
            "csv" | "text/csv" => Some(Format::Csv),
            "xlsx" | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => {
                Some(Format::Xlsx)
            }
            "json" | "application/json" => Some(Format::Json),
            "jsonl" | "ndjson" | "application/x-ndjson" | "application/jsonl" => {
                Some(Format::JsonLines)
            }
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Json => "json",
            Format::JsonLines => "jsonl",
        }
    }
}

/// A row the file holds wrongly: its number (the first data row is 1), the field, the reason.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RowError {
    pub row: usize,
    pub field: Option<String>,
    pub message: String,
}

/// Quality measured on import, each from 0 to 1.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Quality {
    /// Non-empty values over all values.
    pub completeness: f64,
    /// Values of fields with a known form (ID numbers, phones, coordinates) that have it.
    pub validity: f64,
    /// Distinct rows over rows.
    pub uniqueness: f64,
}

/// What the first pass found.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub rows: usize,
    pub errors: Vec<RowError>,
    pub error_count: usize,
    pub encoding: String,
    pub quality: Quality,
}

fn refuse(detail: impl Into<String>) -> Problem {
    Problem::validation(detail.into())
}

/// Which text encoding a CSV file is in: UTF-8 if its first MiB decodes as UTF-8, else
/// GB18030 (a superset of GBK and GB2312, what Chinese spreadsheet programs save).
fn detect_encoding(path: &Path) -> Result<&'static encoding_rs::Encoding, Problem> {
    let mut head = Vec::with_capacity(1 << 20);
    std::fs::File::open(path)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut head))
        .map_err(|e| Problem::internal(format!("the upload cannot be read: {e}")))?;
    Ok(match std::str::from_utf8(&head) {
        Ok(_) => encoding_rs::UTF_8,
        // Cut off in the middle of a character at the end of the sample: still UTF-8.
        Err(e) if e.error_len().is_none() => encoding_rs::UTF_8,
        Err(_) => encoding_rs::GB18030,
    })
}

fn encoding_named(
    name: Option<&str>,
    path: &Path,
) -> Result<&'static encoding_rs::Encoding, Problem> {
    match name.map(str::to_ascii_lowercase).as_deref() {
        None | Some("auto") => detect_encoding(path),
        Some("utf-8" | "utf8") => Ok(encoding_rs::UTF_8),
        Some("gbk" | "gb2312" | "gb18030") => Ok(encoding_rs::GB18030),
        Some(other) => Err(
            refuse(format!("encoding: {other} is not auto, utf-8 or gbk"))
                .with_extension("field", "encoding"),
        ),
    }
}

fn decode(encoding: &'static encoding_rs::Encoding, bytes: &[u8]) -> Option<String> {
    if encoding == encoding_rs::UTF_8 {
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    } else {
        encoding
            .decode_without_bom_handling_and_without_replacement(bytes)
            .map(|c| c.into_owned())
    }
}

/// The file's columns mapped onto the schema's fields: by name, or by the field's Chinese
/// description (how departments head their sheets).
fn map_headers(headers: &[String], schema: &[Field]) -> Result<Vec<usize>, Problem> {
    let mut mapping = Vec::with_capacity(headers.len());
    for header in headers {
        let header = header.trim().trim_start_matches('\u{feff}');
        let index = schema
            .iter()
            .position(|f| f.name == header || f.description_zh == header)
            .ok_or_else(|| {
                refuse(format!(
                    "column {header:?} is not a field of the dataset (its fields: {})",
                    schema
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        if mapping.contains(&index) {
            return Err(refuse(format!(
                "column {header:?} names field {} a second time",
                schema[index].name
            )));
        }
        mapping.push(index);
    }
    Ok(mapping)
}

/// A row's raw values in the schema's order, or why the row cannot be read.
pub type RawRow = Result<Vec<Option<String>>, RowError>;

/// Reads the file's rows, aligned to `schema`, calling `each` with every one; returns the
/// encoding read. `schema` is `None` for inference: rows are then aligned to the file's own
/// columns, which are returned.
pub fn read_rows(
    path: &Path,
    format: Format,
    encoding: Option<&str>,
    schema: Option<&[Field]>,
    each: &mut dyn FnMut(usize, RawRow),
) -> Result<(String, Vec<String>), Problem> {
    match format {
        Format::Csv => read_csv(path, encoding, schema, each),
        Format::Xlsx => read_xlsx(path, schema, each),
        Format::Json => read_json(path, schema, each),
        Format::JsonLines => read_json_lines(path, schema, each),
    }
}

fn aligned(width: usize, mapping: &[usize], values: Vec<Option<String>>, row: usize) -> RawRow {
    if values.len() != mapping.len() {
        return Err(RowError {
            row,
            field: None,
            message: format!(
                "the row has {} values, the header {}",
                values.len(),
                mapping.len()
            ),
        });
    }
    let mut out = vec![None; width];
    for (value, index) in values.into_iter().zip(mapping) {
        out[*index] = value;
    }
    Ok(out)
}

fn read_csv(
    path: &Path,
    encoding: Option<&str>,
    schema: Option<&[Field]>,
    each: &mut dyn FnMut(usize, RawRow),
) -> Result<(String, Vec<String>), Problem> {
    let encoding = encoding_named(encoding, path)?;
    let file = std::fs::File::open(path)
        .map_err(|e| Problem::internal(format!("the upload cannot be read: {e}")))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(std::io::BufReader::with_capacity(1 << 20, file));
    let mut record = csv::ByteRecord::new();
    let has_header = reader
        .read_byte_record(&mut record)
        .map_err(|e| refuse(format!("CSV: {e}")))?;
    if !has_header {
        return Err(refuse("the file is empty: a header row comes first"));
    }
    let mut headers = Vec::with_capacity(record.len());
    for (i, bytes) in record.iter().enumerate() {
        let bytes = if i == 0 {
            bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
        } else {
            bytes
        };
        headers.push(decode(encoding, bytes).ok_or_else(|| {
            refuse(format!(
                "the header's column {} is not {} text",
                i + 1,
                encoding.name()
            ))
        })?);
    }
    if headers.len() > 200 {
        return Err(refuse("a file has at most 200 columns"));
    }
    let (width, mapping, names) = match schema {
        Some(schema) => (schema.len(), map_headers(&headers, schema)?, Vec::new()),
        None => (headers.len(), (0..headers.len()).collect(), headers.clone()),
    };
    let mut row = 0;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                row += 1;
                each(
                    row,
                    Err(RowError {
                        row,
                        field: None,
                        message: format!("CSV: {e}"),
                    }),
                );
                continue;
            }
        }
        row += 1;
        if row > MAX_ROWS {
            return Err(refuse(format!("a file holds at most {MAX_ROWS} rows")));
        }
        let mut values = Vec::with_capacity(record.len());
        let mut undecodable = None;
        for (i, bytes) in record.iter().enumerate() {
            match decode(encoding, bytes) {
                Some(text) if text.is_empty() => values.push(None),
                Some(text) => values.push(Some(text)),
                None => {
                    undecodable = Some(i);
                    break;
                }
            }
        }
        let raw = match undecodable {
            Some(i) => Err(RowError {
                row,
                field: mapping
                    .get(i)
                    .and_then(|m| schema.map(|s| s[*m].name.clone()))
                    .or_else(|| headers.get(i).cloned()),
                message: format!("bytes that are not {} text", encoding.name()),
            }),
            None => aligned(width, &mapping, values, row),
        };
        each(row, raw);
    }
    Ok((encoding.name().to_ascii_lowercase(), names))
}

fn read_xlsx(
    path: &Path,
    schema: Option<&[Field]>,
    each: &mut dyn FnMut(usize, RawRow),
) -> Result<(String, Vec<String>), Problem> {
    let bytes = std::fs::read(path)
        .map_err(|e| Problem::internal(format!("the upload cannot be read: {e}")))?;
    let limits = yunnao_core::tables::TableLimits {
        max_rows: 1_048_577,
        max_columns: 200,
        max_cell_chars: table::MAX_TEXT_CHARS,
        max_unpacked_bytes: 1 << 30,
    };
    let grid = yunnao_core::tables::grid_from_xlsx(&bytes, &limits).map_err(refuse)?;
    drop(bytes);
    let mut rows = grid.into_iter();
    let headers = rows
        .next()
        .ok_or_else(|| refuse("the sheet is empty: a header row comes first"))?;
    let (width, mapping, names) = match schema {
        Some(schema) => (schema.len(), map_headers(&headers, schema)?, Vec::new()),
        None => (headers.len(), (0..headers.len()).collect(), headers.clone()),
    };
    for (i, cells) in rows.enumerate() {
        let row = i + 1;
        let mut values: Vec<Option<String>> = cells
            .into_iter()
            .map(|c| (!c.is_empty()).then_some(c))
            .collect();
        // A sheet's rows end at their last filled cell.
        values.resize(mapping.len().max(values.len()), None);
        if values.len() > mapping.len() && values[mapping.len()..].iter().all(Option::is_none) {
            values.truncate(mapping.len());
        }
        if values.iter().all(Option::is_none) {
            continue;
        }
        each(row, aligned(width, &mapping, values, row));
    }
    Ok(("xlsx".into(), names))
}

fn json_text(value: &serde_json::Value) -> Result<Option<String>, String> {
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s.clone())),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        serde_json::Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err("a value is a string, number, boolean or null".into()),
    }
}

fn json_row(
    object: serde_json::Value,
    row: usize,
    columns: &[String],
    index_of: &HashMap<String, usize>,
) -> RawRow {
    let serde_json::Value::Object(map) = object else {
        return Err(RowError {
            row,
            field: None,
            message: "a row is a JSON object".into(),
        });
    };
    let mut out = vec![None; columns.len()];
    for (key, value) in map {
        let index = *index_of.get(key.as_str()).ok_or_else(|| RowError {
            row,
            field: Some(key.clone()),
            message: format!("{key} is not a field of the dataset"),
        })?;
        out[index] = json_text(&value).map_err(|message| RowError {
            row,
            field: Some(key.clone()),
            message,
        })?;
    }
    Ok(out)
}

fn json_columns(schema: &[Field]) -> (Vec<String>, HashMap<String, usize>) {
    let columns: Vec<String> = schema.iter().map(|f| f.name.clone()).collect();
    let mut index_of = HashMap::new();
    for (i, f) in schema.iter().enumerate() {
        index_of.insert(f.name.clone(), i);
        index_of.entry(f.description_zh.clone()).or_insert(i);
    }
    (columns, index_of)
}

/// Without a schema, a JSON file's columns are its keys in order of first appearance.
fn keys_of(objects: &[serde_json::Value]) -> Vec<Field> {
    let mut keys: Vec<String> = Vec::new();
    for object in objects {
        if let serde_json::Value::Object(map) = object {
            for key in map.keys() {
                if !keys.contains(key) && keys.len() < 200 {
                    keys.push(key.clone());
                }
            }
        }
    }
    keys.into_iter().map(|k| Field::plain(&k)).collect()
}

fn read_json(
    path: &Path,
    schema: Option<&[Field]>,
    each: &mut dyn FnMut(usize, RawRow),
) -> Result<(String, Vec<String>), Problem> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > MAX_JSON_ARRAY_BYTES {
        return Err(Problem::payload_too_large(format!(
            "a JSON array is read whole, so at most {} MiB; send JSON Lines (format=jsonl) for more",
            MAX_JSON_ARRAY_BYTES >> 20
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Problem::internal(format!("the upload cannot be read: {e}")))?;
    let objects: Vec<serde_json::Value> = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::invalid_json(format!("expected a JSON array of objects: {e}")))?;
    drop(bytes);
    let own;
    let schema = match schema {
        Some(s) => s,
        None => {
            own = keys_of(&objects);
            &own
        }
    };
    let (columns, index_of) = json_columns(schema);
    for (i, object) in objects.into_iter().enumerate() {
        each(i + 1, json_row(object, i + 1, &columns, &index_of));
    }
    Ok(("utf-8".into(), columns))
}

fn read_json_lines(
    path: &Path,
    schema: Option<&[Field]>,
    each: &mut dyn FnMut(usize, RawRow),
) -> Result<(String, Vec<String>), Problem> {
    use std::io::BufRead;
    let open = || {
        std::fs::File::open(path)
            .map(|f| std::io::BufReader::with_capacity(1 << 20, f))
            .map_err(|e| Problem::internal(format!("the upload cannot be read: {e}")))
    };
    let own;
    let schema = match schema {
        Some(s) => s,
        None => {
            // Keys of the first 10,000 lines; inference then reads every line.
            let mut sample = Vec::new();
            for line in open()?.lines().take(10_000) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line.unwrap_or_default())
                {
                    sample.push(v);
                }
            }
            own = keys_of(&sample);
            &own
        }
    };
    let (columns, index_of) = json_columns(schema);
    let mut row = 0;
    for line in open()?.split(b'\n') {
        let line =
            line.map_err(|e| Problem::internal(format!("the upload cannot be read: {e}")))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        row += 1;
        if row > MAX_ROWS {
            return Err(refuse(format!("a file holds at most {MAX_ROWS} rows")));
        }
        let raw = match serde_json::from_slice::<serde_json::Value>(&line) {
            Ok(object) => json_row(object, row, &columns, &index_of),
            Err(e) => Err(RowError {
                row,
                field: None,
                message: format!("not a JSON object: {e}"),
            }),
        };
        each(row, raw);
    }
    Ok(("utf-8".into(), columns))
}

/// The fields a file's columns would have, typed by every value of the whole file.
pub fn infer(path: &Path, format: Format, encoding: Option<&str>) -> Result<Vec<Field>, Problem> {
    let mut inferences: Vec<Inference> = Vec::new();
    let mut nulls: Vec<usize> = Vec::new();
    let mut rows = 0usize;
    let (_, names) = read_rows(path, format, encoding, None, &mut |_, raw| {
        if let Ok(values) = raw {
            rows += 1;
            if inferences.len() < values.len() {
                inferences.resize_with(values.len(), Inference::default);
                nulls.resize(values.len(), 0);
            }
            for (i, value) in values.iter().enumerate() {
                match value {
                    Some(v) => inferences[i].observe(v),
                    None => nulls[i] += 1,
                }
            }
        }
    })?;
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut field = Field::plain(name);
            field.field_type = inferences
                .get(i)
                .map_or("text", Inference::field_type)
                .to_owned();
            field
        })
        .collect())
}

/// Whether a value has the form its field's kind asks (for [`Quality::validity`]).
fn valid_form(kind: &str, text: &str) -> Option<bool> {
    match kind {
        "id_number" => Some(crate::mask::id_number_valid(text)),
        "phone" => Some(
            text.len() == 11 && text.starts_with('1') && text.bytes().all(|b| b.is_ascii_digit()),
        ),
        "coordinate" => Some(
            text.parse::<f64>()
                .is_ok_and(|v| (-180.0..=180.0).contains(&v)),
        ),
        _ => None,
    }
}

/// The first pass: every value typed by the schema, every bad row named, quality measured.
pub fn check(
    path: &Path,
    format: Format,
    encoding: Option<&str>,
    dataset: &Dataset,
) -> Result<Checked, Problem> {
    let fields = &dataset.fields;
    let kinds: Vec<Option<&'static str>> = fields.iter().map(Field::kind).collect();
    let mut checked = Checked::default();
    let (mut filled, mut formed, mut forms) = (0usize, 0usize, 0usize);
    let mut hashes: Vec<u64> = Vec::new();
    let note = |checked: &mut Checked, error: RowError| {
        checked.error_count += 1;
        if checked.errors.len() < MAX_ERRORS_LISTED {
            checked.errors.push(error);
        }
    };
    let (encoding, _) = read_rows(path, format, encoding, Some(fields), &mut |row, raw| {
        checked.rows += 1;
        let values = match raw {
            Ok(values) => values,
            Err(error) => return note(&mut checked, error),
        };
        let mut row_ok = true;
        for (i, value) in values.iter().enumerate() {
            let Some(text) = value else { continue };
            filled += 1;
            if let Err(message) = parse_value(&fields[i].field_type, text) {
                row_ok = false;
                note(
                    &mut checked,
                    RowError {
                        row,
                        field: Some(fields[i].name.clone()),
                        message,
                    },
                );
            } else if let Some(ok) = kinds[i].and_then(|k| valid_form(k, text.trim())) {
                forms += 1;
                formed += usize::from(ok);
            }
        }
        if row_ok {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            values.hash(&mut hasher);
            hashes.push(hasher.finish());
        }
    })?;
    checked.encoding = encoding;
    if checked.rows == 0 {
        return Err(refuse("the file holds no rows"));
    }
    hashes.sort_unstable();
    hashes.dedup();
    let cells = (checked.rows * fields.len()).max(1);
    checked.quality = Quality {
        completeness: round3(filled as f64 / cells as f64),
        validity: if forms == 0 {
            1.0
        } else {
            round3(formed as f64 / forms as f64)
        },
        uniqueness: round3(hashes.len() as f64 / checked.rows as f64),
    };
    Ok(checked)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The second pass: the rows typed, personal fields sealed, in batches of `batch` rows sent
/// to `send` (the writer); stops when `send` says so.
pub fn typed_batches(
    path: &Path,
    format: Format,
    encoding: Option<&str>,
    fields: &[Field],
    seal: &dyn Fn(i64, usize, &str) -> Result<String, Problem>,
    batch: usize,
    send: &mut dyn FnMut(Vec<Vec<Cell>>) -> bool,
) -> Result<(), Problem> {
    let mut rows: Vec<Vec<Cell>> = Vec::with_capacity(batch);
    let mut failure: Option<Problem> = None;
    let mut open = true;
    read_rows(path, format, encoding, Some(fields), &mut |row, raw| {
        if failure.is_some() || !open {
            return;
        }
        let Ok(values) = raw else {
            failure = Some(Problem::conflict("the file changed between its two reads"));
            return;
        };
        let id = row as i64;
        let mut cells = Vec::with_capacity(fields.len() + 1);
        cells.push(Cell::Int(id));
        for (i, value) in values.iter().enumerate() {
            let cell = match value {
                None => Cell::Null,
                Some(text) => match parse_value(&fields[i].field_type, text) {
                    Ok(Cell::Null) => Cell::Null,
                    Ok(cell) if fields[i].personal != "none" => {
                        let plain = match &cell {
                            Cell::Text(t) => t.clone(),
                            Cell::Int(v) => v.to_string(),
                            Cell::Real(v) => v.to_string(),
                            Cell::Null => String::new(),
                        };
                        match seal(id, i, &plain) {
                            Ok(sealed) => Cell::Text(sealed),
                            Err(e) => {
                                failure = Some(e);
                                return;
                            }
                        }
                    }
                    Ok(cell) => cell,
                    Err(_) => {
                        failure = Some(Problem::conflict("the file changed between its two reads"));
                        return;
                    }
                },
            };
            cells.push(cell);
        }
        rows.push(cells);
        if rows.len() >= batch {
            open = send(std::mem::replace(&mut rows, Vec::with_capacity(batch)));
        }
    })?;
    if let Some(problem) = failure {
        return Err(problem);
    }
    if !rows.is_empty() && open {
        send(rows);
    }
    Ok(())
}
