//! How a query uses an entity map (clause 5.14): the `entityMap` parameter, the map a distributed
//! query makes, and its header.

use super::NgsiResult;
use super::request::*;
use crate::{ContextBroker, Stored, Viewer, errors};
use axum::http::{HeaderMap, HeaderValue};
use std::collections::HashMap;

/// What a request asks of EntityMaps (clause 5.5.14): to work on a live map it names
/// (`NGSILD-Entitymap`, echoed), to have one made (`entityMap=true`, or naming one that is
/// gone or not the caller's), or neither.
pub(super) enum MapUse {
    None,
    Use(crate::entity_maps::EntityMap),
    Create,
}

pub(super) async fn map_use(
    broker: &ContextBroker,
    request: &Request,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> NgsiResult<MapUse> {
    let asked = match params.get("entityMap").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(errors::bad_request(format!(
                "entityMap is true or false, not {other:?}"
            )));
        }
    };
    if let Some(named) = headers
        .get("ngsild-entitymap")
        .and_then(|v| v.to_str().ok())
    {
        let id = named.trim().rsplit('/').next().unwrap_or_default();
        if let Some(map) = crate::entity_maps::get(&broker.db, &request.tenant, id).await?
            && map_visible(request, &map)
        {
            return Ok(MapUse::Use(map));
        }
        return Ok(MapUse::Create);
    }
    Ok(if asked { MapUse::Create } else { MapUse::None })
}

/// Who a map made by this request belongs to: the caller's department (none without one).
pub(super) fn map_owner(request: &Request) -> String {
    request
        .principal
        .as_ref()
        .map(|p| p.department.clone())
        .unwrap_or_default()
}

/// May this caller use or see `map`? Its department's, everything for platform admins (or
/// with authentication off); without a credential, only maps made without one.
pub(super) fn map_visible(request: &Request, map: &crate::entity_maps::EntityMap) -> bool {
    matches!(request.viewer, Viewer::All) || map.owner == map_owner(request)
}

/// Narrows `ids` (none: any) to those of `map`; `true` when nothing is left.
pub(super) fn restrict_to_map(ids: &mut Vec<String>, map: &crate::entity_maps::EntityMap) -> bool {
    let kept: Vec<String> = map
        .entities
        .keys()
        .filter(|id| ids.is_empty() || ids.contains(id))
        .cloned()
        .collect();
    *ids = kept;
    ids.is_empty()
}

/// Makes and keeps the map of `entities` (`@none` for those held here, then the registrations
/// each came through).
pub(super) async fn make_map(
    broker: &ContextBroker,
    request: &Request,
    entities: &[Stored],
    origins: &HashMap<String, Vec<String>>,
    lifetime_ms: i64,
) -> NgsiResult<crate::entity_maps::EntityMap> {
    let entries = entities
        .iter()
        .map(|s| {
            let mut from = Vec::new();
            if !s.owner.is_empty() {
                from.push(crate::entity_maps::HERE.to_owned());
            }
            from.extend(origins.get(&s.entity.id).into_iter().flatten().cloned());
            (s.entity.id.clone(), from)
        })
        .collect();
    let map = crate::entity_maps::EntityMap::new(map_owner(request), entries, lifetime_ms);
    crate::entity_maps::insert(&broker.db, &request.tenant, &map).await?;
    Ok(map)
}

/// The `NGSILD-EntityMap` header naming `map`.
pub(super) fn map_header(map: &crate::entity_maps::EntityMap, headers: &mut HeaderMap) {
    if let Ok(value) = HeaderValue::from_str(&map.location()) {
        headers.insert("ngsild-entitymap", value);
    }
}
