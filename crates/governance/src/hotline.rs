//! Bulk import of 12345 hotline records (CSV or XLSX, as the hotline system exports them).
//!
//! Columns by header (order free, Chinese headers accepted): `ticket` (工单编号, required, the
//! deduplication key), `description` (诉求内容, required), `service_code` (服务代码) or
//! `category` (类别, a subclass name such as 暴露垃圾), `received_at` (受理时间, RFC 3339 or
//! `YYYY-MM-DD HH:MM[:SS]` in Beijing time), `address` (地址), `lon` (经度), `lat` (纬度),
//! `caller` (来电人), `phone` (来电号码). Each row is its own transaction: a bad row is reported
//! and the others go in; a ticket already imported is skipped.

use crate::incidents::{Location, Report, Source};
use crate::{Governance, calendar};
use chrono::{NaiveDateTime, TimeZone};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use yunnao_core::Problem;
use yunnao_identity::Principal;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowError {
    /// Data row number, counting from 1 after the header.
    pub row: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub created: usize,
    pub duplicates: usize,
    pub dispatched: usize,
    pub errors: Vec<RowError>,
}

fn column(name: &str) -> Option<&'static str> {
    Some(
        match name
            .trim()
            .trim_start_matches('\u{feff}')
            .to_lowercase()
            .as_str()
        {
            "ticket" | "工单编号" | "工单号" => "ticket",
            "description" | "诉求内容" | "内容" => "description",
            "service_code" | "服务代码" | "类别代码" => "service_code",
            "category" | "类别" | "问题类别" => "category",
            "received_at" | "受理时间" | "来电时间" => "received_at",
            "address" | "地址" | "事发地址" => "address",
            "lon" | "longitude" | "经度" => "lon",
            "lat" | "latitude" | "纬度" => "lat",
            "caller" | "来电人" => "caller",
            "phone" | "来电号码" | "联系电话" => "phone",
            _ => return None,
        },
    )
}

/// The most hotline records one import takes (the header aside).
pub const MAX_IMPORT_ROWS: usize = 10_000;

fn limits() -> yunnao_core::tables::TableLimits {
    yunnao_core::tables::TableLimits {
        max_rows: MAX_IMPORT_ROWS + 1,
        ..yunnao_core::tables::TableLimits::default()
    }
}

pub fn grid_from_csv(bytes: &[u8]) -> Result<Vec<Vec<String>>, String> {
    yunnao_core::tables::grid_from_csv(bytes, &limits())
}

pub fn grid_from_xlsx(bytes: &[u8]) -> Result<Vec<Vec<String>>, String> {
    yunnao_core::tables::grid_from_xlsx(bytes, &limits())
}

fn parse_time(text: &str) -> Option<i64> {
    if let Some(ms) = yunnao_core::time::parse_rfc3339_ms(text) {
        return Some(ms);
    }
    [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%Y/%m/%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .and_then(|t| calendar::cst().from_local_datetime(&t).single())
    .map(|t| t.timestamp_millis())
}

impl Governance {
    pub async fn import_hotline(
        &self,
        grid: Vec<Vec<String>>,
        principal: &Principal,
    ) -> Result<ImportReport, Problem> {
        let mut rows = grid.into_iter();
        let header = rows
            .next()
            .ok_or_else(|| Problem::validation("the file is empty"))?;
        let columns: Vec<Option<&'static str>> = header.iter().map(|h| column(h)).collect();
        for required in ["ticket", "description"] {
            if !columns.contains(&Some(required)) {
                return Err(Problem::validation(format!(
                    "the header has no {required} column (found: {})",
                    header.join(", ")
                )));
            }
        }
        if !columns.contains(&Some("service_code")) && !columns.contains(&Some("category")) {
            return Err(Problem::validation(
                "the header needs a service_code (服务代码) or category (类别) column",
            ));
        }
        let categories = self.categories().await?;
        let mut report = ImportReport::default();
        for (index, cells) in rows.enumerate() {
            if cells.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            let row = index + 1;
            let map: HashMap<&str, &str> = columns
                .iter()
                .zip(&cells)
                .filter_map(|(c, v)| c.map(|c| (c, v.trim())))
                .filter(|(_, v)| !v.is_empty())
                .collect();
            let mut fail = |reason: String| report.errors.push(RowError { row, reason });
            let Some(ticket) = map.get("ticket") else {
                fail("ticket (工单编号) is empty".into());
                continue;
            };
            let service_code = match (map.get("service_code"), map.get("category")) {
                (Some(code), _) => (*code).to_owned(),
                (None, Some(name)) => match categories.iter().find(|c| c.name == *name) {
                    Some(c) => c.service_code.clone(),
                    None => {
                        fail(format!("category {name:?} is not a configured subclass"));
                        continue;
                    }
                },
                (None, None) => {
                    fail("service_code and category are both empty".into());
                    continue;
                }
            };
            let number = |key: &str| map.get(key).map(|v| v.parse::<f64>());
            let location = match (number("lon"), number("lat")) {
                (Some(Ok(lon)), Some(Ok(lat))) => Some(Location { lon, lat }),
                (None, None) => None,
                _ => {
                    fail("lon and lat must both be numbers, or both empty".into());
                    continue;
                }
            };
            let reported_at_ms = match map.get("received_at") {
                Some(text) => match parse_time(text) {
                    Some(ms) => Some(ms),
                    None => {
                        fail(format!("received_at {text:?} is not a time"));
                        continue;
                    }
                },
                None => None,
            };
            let mut incident = Report::new(
                Source::Hotline,
                &service_code,
                map.get("description").copied().unwrap_or_default(),
                &principal.name,
            );
            incident.source_ref = Some((*ticket).to_owned());
            incident.address = map.get("address").copied().unwrap_or_default().to_owned();
            incident.location = location;
            incident.reported_at_ms = reported_at_ms;
            incident.reporter = Some((principal.id.clone(), principal.department.clone()));
            if map.contains_key("caller") || map.contains_key("phone") {
                incident.contact = Some(serde_json::json!({
                    "name": map.get("caller"),
                    "phone": map.get("phone"),
                }));
            }
            match self.report(incident).await {
                Ok(created) if created.created => {
                    report.created += 1;
                    if created.incident.department.is_some() {
                        report.dispatched += 1;
                    }
                }
                Ok(_) => report.duplicates += 1,
                Err(problem) => fail(
                    problem
                        .detail
                        .clone()
                        .unwrap_or_else(|| problem.title.clone()),
                ),
            }
        }
        Ok(report)
    }
}
