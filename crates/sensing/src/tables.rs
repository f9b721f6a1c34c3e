//! Tabular files in and out: device lists from CSV or XLSX (the way departments keep them), and
//! telemetry exports as CSV or XLSX.
//!
//! Device columns, by header name (order free, Chinese headers accepted):
//! `id`(编号), `name`(名称), `profile`(类型), `department`(部门), `lon`(经度), `lat`(纬度),
//! `tags`(标签, separated by `;`), `simulated`.

use crate::{Location, NewDevice};
use std::collections::HashMap;

pub const XLSX_CONTENT_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// A device row, or why the row cannot become one. Rows are numbered from 1 after the header,
/// as a spreadsheet user counts data rows.
pub type ParsedRow = Result<NewDevice, (usize, String)>;

fn column(name: &str) -> Option<&'static str> {
    Some(match name.trim().to_lowercase().as_str() {
        "id" | "编号" | "设备编号" => "id",
        "name" | "名称" | "设备名称" => "name",
        "profile" | "类型" | "设备类型" => "profile",
        "department" | "部门" => "department",
        "lon" | "longitude" | "经度" => "lon",
        "lat" | "latitude" | "纬度" => "lat",
        "tags" | "标签" => "tags",
        "simulated" | "模拟" => "simulated",
        _ => return None,
    })
}

fn row_to_device(row: usize, cells: &HashMap<&'static str, String>) -> ParsedRow {
    let get = |key: &str| cells.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let name = get("name").ok_or((row, "name is empty".to_owned()))?;
    let profile = get("profile").ok_or((row, "profile is empty".to_owned()))?;
    let number = |key: &str| -> Result<Option<f64>, (usize, String)> {
        get(key)
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| (row, format!("{key} {v:?} is not a number")))
            })
            .transpose()
    };
    let location = match (number("lon")?, number("lat")?) {
        (Some(lon), Some(lat)) => Some(Location { lon, lat }),
        (None, None) => None,
        _ => return Err((row, "give both lon and lat, or neither".to_owned())),
    };
    Ok(NewDevice {
        id: get("id").map(str::to_owned),
        name: name.to_owned(),
        profile: profile.to_owned(),
        department: get("department").map(str::to_owned),
        location,
        tags: get("tags")
            .map(|t| {
                t.split([';', '；', '|'])
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        simulated: get("simulated")
            .is_some_and(|v| matches!(v.to_lowercase().as_str(), "1" | "true" | "yes" | "是")),
    })
}

fn rows_from_grid(grid: Vec<Vec<String>>) -> Result<Vec<ParsedRow>, String> {
    let mut rows = grid.into_iter();
    let header = rows.next().ok_or("the file is empty")?;
    let columns: Vec<Option<&'static str>> = header
        .iter()
        .map(|h| column(h.trim_start_matches('\u{feff}')))
        .collect();
    for required in ["name", "profile"] {
        if !columns.contains(&Some(required)) {
            return Err(format!(
                "the header has no {required} column (found: {})",
                header.join(", ")
            ));
        }
    }
    Ok(rows
        .enumerate()
        .filter(|(_, cells)| cells.iter().any(|c| !c.trim().is_empty()))
        .map(|(index, cells)| {
            let map = columns
                .iter()
                .zip(cells)
                .filter_map(|(column, value)| column.map(|c| (c, value)))
                .collect();
            row_to_device(index + 1, &map)
        })
        .collect())
}

/// The most devices one import registers (the header aside).
pub const MAX_IMPORT_ROWS: usize = 10_000;

fn limits() -> yunnao_core::tables::TableLimits {
    yunnao_core::tables::TableLimits {
        max_rows: MAX_IMPORT_ROWS + 1,
        ..yunnao_core::tables::TableLimits::default()
    }
}

pub fn devices_from_csv(bytes: &[u8]) -> Result<Vec<ParsedRow>, String> {
    rows_from_grid(yunnao_core::tables::grid_from_csv(bytes, &limits())?)
}

pub fn devices_from_xlsx(bytes: &[u8]) -> Result<Vec<ParsedRow>, String> {
    rows_from_grid(yunnao_core::tables::grid_from_xlsx(bytes, &limits())?)
}

/// Telemetry rows as CSV: `device,key,ts,time,value`.
pub fn telemetry_csv(device: &str, key: &str, points: &[(i64, f64)]) -> Result<Vec<u8>, String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(["device", "key", "ts", "time", "value"])
        .map_err(|e| e.to_string())?;
    for (ts, value) in points {
        writer
            .write_record([
                device,
                key,
                &ts.to_string(),
                &yunnao_core::time::rfc3339_ms(*ts),
                &value.to_string(),
            ])
            .map_err(|e| e.to_string())?;
    }
    writer.into_inner().map_err(|e| e.to_string())
}

/// Telemetry rows as an XLSX workbook with the same columns.
pub fn telemetry_xlsx(device: &str, key: &str, points: &[(i64, f64)]) -> Result<Vec<u8>, String> {
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    let error = |e: rust_xlsxwriter::XlsxError| e.to_string();
    for (col, title) in ["device", "key", "ts", "time", "value"].iter().enumerate() {
        sheet.write_string(0, col as u16, *title).map_err(error)?;
    }
    for (i, (ts, value)) in points.iter().enumerate() {
        let row = i as u32 + 1;
        sheet.write_string(row, 0, device).map_err(error)?;
        sheet.write_string(row, 1, key).map_err(error)?;
        sheet.write_number(row, 2, *ts as f64).map_err(error)?;
        sheet
            .write_string(row, 3, yunnao_core::time::rfc3339_ms(*ts))
            .map_err(error)?;
        sheet.write_number(row, 4, *value).map_err(error)?;
    }
    workbook.save_to_buffer().map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{Data, Reader, Xlsx};

    #[test]
    fn csv_rows_become_devices_or_say_why_not() {
        let csv = "\u{feff}编号,名称,类型,经度,纬度,标签\n\
                   rain-1,崂山水库雨量站,rain-gauge,120.6,36.2,崂山区;水务\n\
                   ,无编号设备,air-quality,,,\n\
                   bad-1,,rain-gauge,,,\n\
                   bad-2,坐标不全,rain-gauge,120.1,,\n\
                   bad-3,坐标错误,rain-gauge,east,36,\n";
        let rows = devices_from_csv(csv.as_bytes()).expect("parses");
        assert_eq!(rows.len(), 5);
        let first = rows[0].as_ref().expect("row 1 ok");
        assert_eq!(first.id.as_deref(), Some("rain-1"));
        assert_eq!(first.tags, vec!["崂山区", "水务"]);
        assert_eq!(
            first.location,
            Some(Location {
                lon: 120.6,
                lat: 36.2
            })
        );
        assert!(
            rows[1]
                .as_ref()
                .is_ok_and(|d| d.id.is_none() && d.location.is_none())
        );
        let errors: Vec<(usize, &str)> = rows
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|(n, e)| (*n, e.as_str()))
            .collect();
        assert_eq!(errors.len(), 3);
        assert_eq!(errors[0].0, 3);
        assert!(errors[0].1.contains("name is empty"));
        assert!(errors[1].1.contains("both lon and lat"));
        assert!(errors[2].1.contains("not a number"));
        assert!(
            devices_from_csv(b"foo,bar\n1,2\n")
                .expect_err("no columns")
                .contains("no name column")
        );
    }

    #[test]
    fn xlsx_round_trip_through_the_writer() {
        let mut workbook = rust_xlsxwriter::Workbook::new();
        let sheet = workbook.add_worksheet();
        for (col, value) in ["id", "name", "profile", "lon", "lat"].iter().enumerate() {
            sheet.write_string(0, col as u16, *value).expect("write");
        }
        sheet.write_string(1, 0, "lamp-7").expect("write");
        sheet.write_string(1, 1, "五四广场灯杆").expect("write");
        sheet.write_string(1, 2, "smart-lamp-post").expect("write");
        sheet.write_number(1, 3, 120.384).expect("write");
        sheet.write_number(1, 4, 36.062).expect("write");
        let bytes = workbook.save_to_buffer().expect("xlsx");
        let rows = devices_from_xlsx(&bytes).expect("reads");
        let device = rows[0].as_ref().expect("ok");
        assert_eq!(device.name, "五四广场灯杆");
        assert_eq!(
            device.location,
            Some(Location {
                lon: 120.384,
                lat: 36.062
            })
        );
        assert!(devices_from_xlsx(b"not a zip").is_err());

        let export = telemetry_xlsx("lamp-7", "powerConsumption", &[(1_795_000_000_000, 120.5)])
            .expect("export");
        let mut book: Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(export)).expect("open");
        let range = book.worksheet_range_at(0).expect("sheet").expect("range");
        assert_eq!(range.get((1, 4)), Some(&Data::Float(120.5)));
    }
}
