//! Qingdao's metro (`data/qingdao/qingdao_metro.json`): its lines in order, with colours, and
//! their stations in WGS84.

const METRO: &str = include_str!("../../../data/qingdao/qingdao_metro.json");

#[derive(Debug, Clone, PartialEq)]
pub struct Station {
    /// The data file's number of the station (stable across releases of the file).
    pub id: u64,
    pub name: String,
    pub pinyin: String,
    /// Names of the lines that stop here.
    pub lines: Vec<String>,
    /// The district it is in (its 6-digit code).
    pub district_code: String,
    pub lon: f64,
    pub lat: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    /// `#RRGGBB`.
    pub color: String,
    /// Stations along the line, in order (indices into [`Metro::stations`]).
    pub stations: Vec<usize>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metro {
    pub lines: Vec<Line>,
    pub stations: Vec<Station>,
}

/// The metro as the data file has it; stations without coordinates are left out.
pub fn metro() -> Result<Metro, String> {
    let doc: serde_json::Value = serde_json::from_str(METRO).map_err(|e| format!("metro: {e}"))?;
    let mut metro = Metro::default();
    let mut index = std::collections::HashMap::new();
    for station in doc["stations"].as_array().ok_or("metro: no stations")? {
        let (Some(id), Some(lon), Some(lat)) = (
            station["id"].as_u64(),
            station["wgs84"][0].as_f64(),
            station["wgs84"][1].as_f64(),
        ) else {
            continue;
        };
        index.insert(id, metro.stations.len());
        let text = |key: &str| station[key].as_str().unwrap_or_default().to_owned();
        metro.stations.push(Station {
            id,
            name: text("name"),
            pinyin: text("pinyin"),
            lines: station["lines"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|n| n.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            district_code: text("district_code"),
            lon,
            lat,
        });
    }
    for line in doc["lines"].as_array().ok_or("metro: no lines")? {
        let stations = line["station_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_u64().and_then(|id| index.get(&id).copied()))
                    .collect()
            })
            .unwrap_or_default();
        metro.lines.push(Line {
            name: line["name"].as_str().unwrap_or_default().to_owned(),
            color: line["color"].as_str().unwrap_or("#888888").to_owned(),
            stations,
        });
    }
    Ok(metro)
}

#[cfg(test)]
mod tests {
    #[test]
    fn eight_lines_and_their_stations_are_in_the_city() {
        let metro = super::metro().expect("metro");
        assert_eq!(metro.lines.len(), 8);
        assert!(metro.stations.len() >= 150, "{}", metro.stations.len());
        for station in &metro.stations {
            assert!((119.0..122.0).contains(&station.lon), "{station:?}");
            assert!((35.0..37.5).contains(&station.lat), "{station:?}");
        }
        assert!(metro.lines.iter().all(|l| l.stations.len() >= 2));
    }
}
