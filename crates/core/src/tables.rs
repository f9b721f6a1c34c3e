//! Spreadsheets as departments send them (CSV, XLSX), read into a grid of text with bounded
//! memory: a row and column count, a cell length, and for XLSX the unpacked size of the
//! archive are checked before anything is expanded. A workbook whose only cell sits at
//! `XFD1048576`, or whose shared strings unpack to gigabytes, is refused, not allocated.
//!
//! Behind the `tables` feature: one reader for every import (devices, hotline records).

/// What one import may hold.
#[derive(Debug, Clone, Copy)]
pub struct TableLimits {
    /// Rows, the header included.
    pub max_rows: usize,
    pub max_columns: usize,
    pub max_cell_chars: usize,
    /// The XLSX archive's members unpacked together.
    pub max_unpacked_bytes: u64,
}

impl Default for TableLimits {
    fn default() -> Self {
        Self {
            max_rows: 10_001,
            max_columns: 32,
            max_cell_chars: 4_000,
            max_unpacked_bytes: 64 << 20,
        }
    }
}

pub type Grid = Vec<Vec<String>>;

fn too_many_rows(limits: &TableLimits) -> String {
    format!(
        "the file has more than {} rows; split it into several imports",
        limits.max_rows - 1
    )
}

fn check_cell(text: &str, row: usize, column: usize, limits: &TableLimits) -> Result<(), String> {
    if text.chars().count() > limits.max_cell_chars {
        return Err(format!(
            "row {row}, column {}: a cell holds at most {} characters",
            column + 1,
            limits.max_cell_chars
        ));
    }
    Ok(())
}

pub fn grid_from_csv(bytes: &[u8], limits: &TableLimits) -> Result<Grid, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut grid = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("CSV: {e}"))?;
        if grid.len() >= limits.max_rows {
            return Err(too_many_rows(limits));
        }
        if record.len() > limits.max_columns {
            return Err(format!(
                "row {}: at most {} columns",
                grid.len(),
                limits.max_columns
            ));
        }
        for (column, field) in record.iter().enumerate() {
            check_cell(field, grid.len(), column, limits)?;
        }
        grid.push(record.iter().map(str::to_owned).collect());
    }
    Ok(grid)
}

/// The archive's members and their unpacked sizes, checked before the workbook is opened.
fn check_archive(bytes: &[u8], limits: &TableLimits) -> Result<(), String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a readable XLSX file: {e}"))?;
    if archive.len() > 10_000 {
        return Err("not a workbook: the archive has too many members".into());
    }
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let member = archive
            .by_index_raw(index)
            .map_err(|e| format!("not a readable XLSX file: {e}"))?;
        total = total.saturating_add(member.size());
    }
    if total > limits.max_unpacked_bytes {
        return Err(format!(
            "the workbook unpacks to {} MiB; at most {} MiB are read",
            total >> 20,
            limits.max_unpacked_bytes >> 20
        ));
    }
    // Sizes are declared by the archive; the zip reader stops at them, so a member that
    // inflates further is cut off (and fails its checksum) instead of filling memory.
    Ok(())
}

/// The first sheet as a grid; dates as `YYYY-MM-DD HH:MM:SS`.
pub fn grid_from_xlsx(bytes: &[u8], limits: &TableLimits) -> Result<Grid, String> {
    use calamine::{DataRef, Reader, Xlsx};
    check_archive(bytes, limits)?;
    let mut workbook: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a readable XLSX file: {e}"))?;
    let sheet = workbook
        .sheet_names()
        .first()
        .cloned()
        .ok_or("the workbook has no sheet")?;
    let mut cells = workbook
        .worksheet_cells_reader(&sheet)
        .map_err(|e| format!("XLSX: {e}"))?;
    let mut grid: Grid = Vec::new();
    while let Some(cell) = cells.next_cell().map_err(|e| format!("XLSX: {e}"))? {
        let (row, column) = cell.get_position();
        let (row, column) = (row as usize, column as usize);
        if row >= limits.max_rows {
            return Err(too_many_rows(limits));
        }
        if column >= limits.max_columns {
            return Err(format!("row {row}: at most {} columns", limits.max_columns));
        }
        let text = match cell.get_value() {
            DataRef::Empty => String::new(),
            DataRef::Float(f) => f.to_string(),
            DataRef::Int(i) => i.to_string(),
            DataRef::String(s) => s.clone(),
            DataRef::SharedString(s) => (*s).to_owned(),
            DataRef::Bool(b) => b.to_string(),
            DataRef::DateTime(d) => d
                .as_datetime()
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default(),
            DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
            DataRef::Error(e) => format!("#{e:?}"),
        };
        check_cell(&text, row, column, limits)?;
        if grid.len() <= row {
            grid.resize_with(row + 1, Vec::new);
        }
        let cells_of_row = &mut grid[row];
        if cells_of_row.len() <= column {
            cells_of_row.resize(column + 1, String::new());
        }
        cells_of_row[column] = text;
    }
    Ok(grid)
}

/// A list as CSV, with a byte-order mark so that spreadsheet programs read the Chinese right.
pub fn write_csv(headers: &[&str], rows: &[Vec<String>]) -> Result<Vec<u8>, String> {
    let mut writer = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    writer.write_record(headers).map_err(|e| e.to_string())?;
    for row in rows {
        writer.write_record(row).map_err(|e| e.to_string())?;
    }
    writer.into_inner().map_err(|e| e.to_string())
}

/// A list as an XLSX workbook of one sheet, header row first.
pub fn write_xlsx(
    sheet_name: &str,
    headers: &[&str],
    rows: &[Vec<String>],
) -> Result<Vec<u8>, String> {
    let error = |e: rust_xlsxwriter::XlsxError| e.to_string();
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name(sheet_name).map_err(error)?;
    for (col, title) in headers.iter().enumerate() {
        sheet.write_string(0, col as u16, *title).map_err(error)?;
    }
    for (i, row) in rows.iter().enumerate() {
        for (col, cell) in row.iter().enumerate() {
            sheet
                .write_string(i as u32 + 1, col as u16, cell)
                .map_err(error)?;
        }
    }
    workbook.save_to_buffer().map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workbook(cells: &[(u32, u16, &str)]) -> Vec<u8> {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        for (row, column, text) in cells {
            sheet.write_string(*row, *column, *text).expect("write");
        }
        book.save_to_buffer().expect("save")
    }

    #[test]
    fn sheets_and_csv_read_into_bounded_grids() {
        let bytes = workbook(&[(0, 0, "名称"), (0, 1, "类型"), (2, 1, "x")]);
        let grid = grid_from_xlsx(&bytes, &TableLimits::default()).expect("read");
        assert_eq!(grid[0], vec!["名称", "类型"]);
        assert!(grid[1].is_empty());
        assert_eq!(grid[2], vec!["", "x"]);
        let csv = grid_from_csv("a,b\n1,2\n".as_bytes(), &TableLimits::default()).expect("csv");
        assert_eq!(csv, vec![vec!["a", "b"], vec!["1", "2"]]);
    }

    #[test]
    fn far_cells_many_rows_and_long_cells_are_refused() {
        // One cell at the sheet's last row and column: a dense read would allocate billions.
        let far = workbook(&[(0, 0, "a"), (1_048_575, 16_383, "far")]);
        assert!(grid_from_xlsx(&far, &TableLimits::default()).is_err());
        let limits = TableLimits {
            max_rows: 3,
            ..TableLimits::default()
        };
        assert!(grid_from_csv(b"a\n1\n2\n3\n", &limits).is_err());
        assert!(grid_from_csv(b"a\n1\n2\n", &limits).is_ok());
        let wide = format!("{}\n", vec!["x"; 40].join(","));
        assert!(grid_from_csv(wide.as_bytes(), &TableLimits::default()).is_err());
        let long = "x".repeat(5_000);
        assert!(grid_from_csv(long.as_bytes(), &TableLimits::default()).is_err());
        let small = TableLimits {
            max_unpacked_bytes: 1,
            ..TableLimits::default()
        };
        assert!(
            grid_from_xlsx(&workbook(&[(0, 0, "a")]), &small).is_err_and(|e| e.contains("unpacks"))
        );
        assert!(grid_from_xlsx(b"not a zip", &TableLimits::default()).is_err());
    }

    #[test]
    fn written_lists_read_back_the_same() {
        let headers = ["编号", "名称"];
        let rows = vec![
            vec!["a-1".to_owned(), "崂山水库, 北坝".to_owned()],
            vec!["a-2".to_owned(), "说\"明\"".to_owned()],
        ];
        let csv = write_csv(&headers, &rows).expect("csv");
        let back = grid_from_csv(&csv, &TableLimits::default()).expect("reads");
        assert_eq!(back[0], vec!["编号", "名称"]);
        assert_eq!(back[1..], rows[..]);
        let xlsx = write_xlsx("告警", &headers, &rows).expect("xlsx");
        let back = grid_from_xlsx(&xlsx, &TableLimits::default()).expect("reads");
        assert_eq!(back[1..], rows[..]);
    }
}
