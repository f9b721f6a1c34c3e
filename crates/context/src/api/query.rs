//! Queries: `GET /entities`, `POST /entityOperations/query`, purge; selection, paging, linked entities, maps (clauses 5.7.2, 5.7.3).

use super::NgsiResult;
use super::{map_use::*, request::*};
use crate::geoquery::GeoQuery;
use crate::jsonld::Context;
use crate::linked::Linking;
use crate::model::{self, RenderOptions};
use crate::{ContextBroker, Selection, Stored, errors};
use axum::Extension;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use yunnao_core::Problem;
use yunnao_identity::AuditNote;

/// The query parameters of `GET /entities`, after parsing.
pub(super) struct EntityQuery {
    pub(super) selection: Selection,
    pub(super) id_pattern: Option<regex::Regex>,
    pub(super) q: Option<crate::query::Expr>,
    pub(super) geo: Option<GeoQuery>,
    /// Expanded names: entities need at least one of them.
    pub(super) attrs: Option<Vec<String>>,
    pub(super) scope: Option<model::ScopeQuery>,
    pub(super) order: Option<crate::query::Ordering>,
    pub(super) offset: usize,
    pub(super) limit: usize,
    pub(super) count: bool,
    /// The context source filter: which registrations' sources are asked.
    pub(super) csf: Option<crate::query::Expr>,
}

pub(super) fn entity_query(
    params: &HashMap<String, String>,
    context: &Context,
    max_limit: usize,
) -> NgsiResult<EntityQuery> {
    let list = |key: &str| list_param(params, key);
    let types: Vec<String> = list("type").iter().map(|t| context.expand(t)).collect();
    let ids = list("id");
    for id in &ids {
        model::check_entity_id(id)?;
    }
    // Clause 5.2.33: id takes precedence over idPattern.
    let id_pattern = params
        .get("idPattern")
        .filter(|_| ids.is_empty())
        .map(|p| regex::Regex::new(p).map_err(|e| errors::bad_request(format!("idPattern: {e}"))))
        .transpose()?;
    let q = params
        .get("q")
        .map(|q| {
            crate::query::parse_expanding(
                q,
                params.get("expandValues").map(String::as_str),
                context,
            )
        })
        .transpose()?;
    let geo = geo_query(
        params,
        context.expand(params.get("geoproperty").map_or("location", String::as_str)),
    )?;
    let attrs = params.get("attrs").map(|a| {
        a.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| context.expand(s.trim()))
            .collect::<Vec<_>>()
    });
    let scope = params
        .get("scopeQ")
        .map(|q| model::ScopeQuery::parse(q))
        .transpose()?;
    // An RFC 6067 / BCP 47 tag: strings in orderBy compare as that locale sorts them.
    let collation = params
        .get("collation")
        .map(|tag| crate::query::Collation::new(tag))
        .transpose()?;
    let order = params
        .get("orderBy")
        .map(|o| {
            crate::query::Ordering::parse(o, params.get("orderFrom").map(String::as_str), context)
                .map(|order| order.collated(collation.clone()))
        })
        .transpose()?;
    // Clause 5.7.2.4: q on linked entities' attributes (`rel{attr}`) needs Linked Entity
    // Retrieval (`join`) at least as deep as the query goes.
    if let Some(q) = &q {
        let depth = q.link_depth();
        let joined = linking(params)?.map_or(0, |l| l.level as usize);
        if depth > joined {
            return Err(errors::bad_request(if joined == 0 {
                "q on attributes of linked entities ({…}) needs join=inline or join=flat".to_owned()
            } else {
                format!("q goes {depth} links deep, deeper than joinLevel={joined}")
            }));
        }
    }
    let csf = params
        .get("csf")
        .map(|csf| crate::query::parse_csf(csf, context))
        .transpose()?;
    flag(params, "splitEntities")?;
    // Clause 5.7.2.4: attrs and q narrow a query only through attributes that are not the
    // system's (createdAt, modifiedAt, …).
    let system = |name: &str| crate::model::SYSTEM_ATTRIBUTES.contains(&name);
    let narrowing_attrs = attrs
        .as_ref()
        .is_some_and(|names| names.iter().any(|n| !system(n)));
    let narrowing_q = q
        .as_ref()
        .is_some_and(|q| q.attributes().iter().any(|n| !system(n)));
    if types.is_empty()
        && ids.is_empty()
        && id_pattern.is_none()
        && !narrowing_q
        && geo.is_none()
        && !narrowing_attrs
        && scope.is_none()
    {
        return Err(errors::bad_request(
            "a query needs at least one of type, id, idPattern, attrs, q, scopeQ or a geo-query",
        ));
    }
    let (offset, limit) = paging(params)?;
    let count = params.get("count").is_some_and(|c| c == "true");
    if limit > max_limit {
        return Err(Problem::custom(
            "https://uri.etsi.org/ngsi-ld/errors/TooManyResults",
            "Too many results",
            403,
        )
        .with_detail(format!("limit is at most {max_limit}")));
    }
    if limit == 0 && !count {
        return Err(errors::bad_request(
            "limit=0 is only allowed with count=true",
        ));
    }
    Ok(EntityQuery {
        selection: Selection {
            types,
            ids,
            bbox: geo.as_ref().and_then(GeoQuery::prefilter),
            page: None,
            page_if_decided: None,
            conditions: Vec::new(),
        },
        id_pattern,
        q,
        geo,
        attrs,
        scope,
        order,
        offset,
        limit,
        count,
        csf,
    })
}

impl EntityQuery {
    /// The filters that run in memory: idPattern, attrs, q, the exact geometry test.
    pub(super) fn keeps(&self, s: &Stored) -> bool {
        self.keeps_in(s, &crate::query::Links::new())
    }

    /// [`keeps`](Self::keeps), with the linked entities `q` reaches.
    pub(super) fn keeps_in(&self, s: &Stored, links: &crate::query::Links) -> bool {
        self.id_pattern
            .as_ref()
            .is_none_or(|p| p.is_match(&s.entity.id))
            && self
                .attrs
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| s.entity.attrs.contains_key(n)))
            && self
                .q
                .as_ref()
                .is_none_or(|q| q.matches_in(&s.entity, links))
            && self.scope.as_ref().is_none_or(|q| q.matches(&s.entity))
            && self.geo.as_ref().is_none_or(|g| {
                s.entity
                    .attrs
                    .get(&g.property)
                    .and_then(|a| a.get("value"))
                    .and_then(|v| model::geometry(v).ok())
                    .is_some_and(|geometry| g.matches(&geometry))
            })
    }
}

/// What a query selected: a page (or, asked for `all`, every match in order), the total,
/// whether more follow, where each came from (the registrations whose sources answered it),
/// and the warnings of the sources left out.
#[derive(Default)]
pub(super) struct Matched {
    pub(super) entities: Vec<Stored>,
    pub(super) total: i64,
    pub(super) more: bool,
    pub(super) origins: HashMap<String, Vec<String>>,
    pub(super) warnings: Vec<crate::distributed::Warning>,
}

pub(super) async fn matching_entities(
    broker: &ContextBroker,
    request: &Request,
    query: &EntityQuery,
    params: &HashMap<String, String>,
    all: bool,
) -> NgsiResult<Matched> {
    // Context sources registered for the query's types or ids are asked too; the answers are
    // merged with the broker's own, so paging happens over both.
    let mut sources = broker.sources.for_query(
        (&request.tenant, &request.viewer),
        (&query.selection.types, &query.selection.ids),
        query.attrs.as_deref().unwrap_or_default(),
        query.csf.as_ref().map(|csf| (csf, &request.context)),
    );
    let mut warnings = Vec::new();
    let mut origins = HashMap::new();
    let forward = if sources.is_empty() {
        None
    } else {
        request.forward(broker, params)?
    };
    if forward.is_none() {
        sources.clear();
    }
    let in_memory = query.id_pattern.is_some()
        || query.q.is_some()
        || query.geo.is_some()
        || query.attrs.is_some()
        || query.scope.is_some()
        || query.order.is_some()
        || !sources.is_empty()
        || all;
    let mut selection = query.selection.clone();
    if !in_memory {
        // One more than the page: whether there is a next page, without counting.
        selection.page = Some((query.offset, query.limit + 1));
    }
    if let Some(q) = &query.q {
        let prefilter = crate::query::prefilter(q, broker.db.dialect().json());
        let only_q = query.id_pattern.is_none()
            && query.geo.is_none()
            && query.attrs.is_none()
            && query.scope.is_none()
            && query.order.is_none();
        if prefilter.complete && only_q && sources.is_empty() && !all {
            selection.page_if_decided = Some((query.offset, query.limit + 1));
        }
        selection.conditions = prefilter.conditions;
    }
    let selected = broker
        .select(&request.tenant, &request.viewer, &selection, query.count)
        .await?;
    let (entities, total, more): (Vec<Stored>, i64, bool) = if !selected.paged {
        let mut matching: Vec<Stored> = match query.q.as_ref().filter(|q| q.link_depth() > 0) {
            None => selected
                .entities
                .into_iter()
                .filter(|s| query.keeps(s))
                .collect(),
            Some(q) => {
                // Linked entities are read (as this viewer may see them) for each candidate.
                let mut kept = Vec::new();
                for stored in selected.entities {
                    let links = crate::query::resolve_links(q, &stored.entity, |id| async move {
                        broker
                            .get(&request.tenant, &id, &request.viewer)
                            .await
                            .ok()
                            .flatten()
                            .map(|found| found.entity.clone())
                    })
                    .await;
                    if query.keeps_in(&stored, &links) {
                        kept.push(stored);
                    }
                }
                kept
            }
        };
        if let Some(forward) = &forward
            && !sources.is_empty()
        {
            let selects = (
                query.selection.types.as_slice(),
                query.selection.ids.as_slice(),
                query.attrs.as_deref().unwrap_or_default(),
            );
            let (remote, left_out) = broker
                .sources
                .query(
                    &sources,
                    (params, selects),
                    query.offset + query.limit,
                    (&request.context, forward),
                )
                .await;
            warnings = left_out;
            origins = merge_remote(&mut matching, remote, query);
        }
        if let Some(order) = &query.order {
            order.sort(&mut matching, |s| &s.entity);
        }
        if all {
            let total = matching.len() as i64;
            return Ok(Matched {
                entities: matching,
                total,
                more: false,
                origins,
                warnings,
            });
        }
        let total = matching.len() as i64;
        let more = query.offset + query.limit < matching.len();
        (
            matching
                .into_iter()
                .skip(query.offset)
                .take(query.limit)
                .collect(),
            total,
            more,
        )
    } else {
        let mut page = selected.entities;
        let more = page.len() > query.limit;
        page.truncate(query.limit);
        (page, selected.total.unwrap_or(0), more)
    };
    Ok(Matched {
        entities,
        total,
        more,
        origins,
        warnings,
    })
}

pub(super) async fn run_query(
    broker: &ContextBroker,
    request: &Request,
    mut query: EntityQuery,
    (options, linking): (RenderOptions, Option<Linking>),
    (params, page_links, map): (&HashMap<String, String>, bool, MapUse),
) -> NgsiResult<Response> {
    let mut headers = HeaderMap::new();
    let mut status = StatusCode::OK;
    // A live EntityMap fixes the set (clause 5.5.14): its ids, within those asked.
    let nothing = match &map {
        MapUse::Use(map) => restrict_to_map(&mut query.selection.ids, map),
        _ => false,
    };
    let matched = if nothing {
        Matched::default()
    } else {
        let all = matches!(map, MapUse::Create);
        matching_entities(broker, request, &query, params, all).await?
    };
    let warnings = matched.warnings;
    let (page, total, more) = match &map {
        MapUse::Create => {
            let made = make_map(
                broker,
                request,
                &matched.entities,
                &matched.origins,
                crate::entity_maps::DEFAULT_LIFETIME_MS,
            )
            .await?;
            map_header(&made, &mut headers);
            status = StatusCode::CREATED;
            let total = matched.entities.len();
            let more = query.offset + query.limit < total;
            let page = matched
                .entities
                .into_iter()
                .skip(query.offset)
                .take(query.limit)
                .collect::<Vec<_>>();
            (page, total as i64, more)
        }
        MapUse::Use(map) => {
            map_header(map, &mut headers);
            (matched.entities, matched.total, matched.more)
        }
        MapUse::None => (matched.entities, matched.total, matched.more),
    };
    let shown = match linking {
        Some(linking) => {
            let entities: Vec<&model::Entity> = page.iter().map(|s| &s.entity).collect();
            request
                .render_linked(broker, &entities, &options, linking)
                .await?
        }
        None => page
            .iter()
            .map(|s| request.render(&s.entity, &options))
            .collect(),
    };
    let body = request.collection(shown);
    if query.count
        && let Ok(value) = HeaderValue::from_str(&total.to_string())
    {
        headers.insert("ngsild-results-count", value);
    }
    if page_links {
        let page = Page {
            path: "/ngsi-ld/v1/entities",
            offset: query.offset,
            limit: query.limit,
            more,
        };
        page.link(params, request.media, "; ", &mut headers);
    }
    Ok(with_warnings(
        Ok(request.respond(status, body, &mut headers)),
        &warnings,
    ))
}

/// Merges the entities context sources answered into the broker's own matches (by id), keeping
/// only those the query selects, in id order; which registrations each came through.
pub(super) fn merge_remote(
    matching: &mut Vec<Stored>,
    remote: Vec<(String, model::Entity)>,
    query: &EntityQuery,
) -> HashMap<String, Vec<String>> {
    let mut origins: HashMap<String, Vec<String>> = HashMap::new();
    let types = &query.selection.types;
    let ids = &query.selection.ids;
    let mut index: HashMap<String, usize> = matching
        .iter()
        .enumerate()
        .map(|(i, s)| (s.entity.id.clone(), i))
        .collect();
    for (registration, entity) in remote {
        if (!types.is_empty() && !entity.types.iter().any(|t| types.contains(t)))
            || (!ids.is_empty() && !ids.contains(&entity.id))
        {
            continue;
        }
        let from = origins.entry(entity.id.clone()).or_default();
        if !from.contains(&registration) {
            from.push(registration);
        }
        match index.get(&entity.id) {
            Some(&i) => crate::distributed::merge(&mut matching[i].entity, entity),
            None => {
                let stored = Stored {
                    entity,
                    owner: String::new(),
                    public: false,
                };
                if query.keeps(&stored) {
                    index.insert(stored.entity.id.clone(), matching.len());
                    matching.push(stored);
                }
            }
        }
    }
    matching.sort_by(|a, b| a.entity.id.cmp(&b.entity.id));
    origins
}

/// Query entities: `type`, `id`, `idPattern`, `attrs`, `q`, `georel`/`geometry`/`coordinates`/
/// `geoproperty`, `limit`/`offset`, `count=true` (header `NGSILD-Results-Count`), `options`.
#[utoipa::path(get, path = "/ngsi-ld/v1/entities", tag = "ngsi-ld",
    responses((status = 200), (status = 400)))]
pub(super) async fn query_entities(ngsi: Ngsi) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    let params = params_of(raw, &[RENDER_PARAMS, QUERY_PARAMS])?;
    request.geometry_property_needs_geo_json(&params)?;
    let options = render_options(&params, &request.context)?;
    let query = entity_query(&params, &request.context, broker.config.max_limit)?;
    let linking = linking(&params)?;
    let map = map_use(&broker, &request, &headers, &params).await?;
    run_query(
        &broker,
        &request,
        query,
        (options, linking),
        (&params, true, map),
    )
    .await
}

/// Purge Entities (clause 5.6.21): the entities a query selects are deleted, or with `keep`
/// (`drop`) lose every attribute but (all of) those named: 204. Nothing changes unless the
/// caller may change every selected entity.
#[utoipa::path(delete, path = "/ngsi-ld/v1/entities", tag = "ngsi-ld",
    responses((status = 204), (status = 400), (status = 403)))]
pub(super) async fn purge_entities(ngsi: Ngsi) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let mut params = params_of(
        raw,
        &[&[
            "type",
            "id",
            "idPattern",
            "q",
            "scopeQ",
            "keep",
            "drop",
            "local",
        ]],
    )?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    request.require_tenant(&broker).await?;
    request.writer(&broker)?;
    // Sources registered for the purge get the same request (clause 4.3.6).
    let purged_at_sources = params.clone();
    // Decided before anything is purged here: a request that came round a loop changes nothing.
    let forward = request.forward_write(&broker, &purged_at_sources)?;
    let names = |list: Option<String>| -> NgsiResult<Option<Vec<String>>> {
        list.map(|l| {
            projection("keep/drop", &l)
                .map(|names| names.iter().map(|n| request.context.expand(n)).collect())
        })
        .transpose()
    };
    let (keep, drop) = (names(params.remove("keep"))?, names(params.remove("drop"))?);
    if keep.is_some() && drop.is_some() {
        return Err(errors::bad_request("give keep or drop, not both"));
    }
    if !["type", "id", "idPattern", "q", "scopeQ"]
        .iter()
        .any(|k| params.contains_key(*k))
    {
        return Err(errors::bad_request(
            "purging needs at least one of type, id, idPattern, q or scopeQ",
        ));
    }
    let query = entity_query(&params, &request.context, broker.config.max_limit)?;
    let selected = broker
        .select(&request.tenant, &request.viewer, &query.selection, false)
        .await?;
    let matching: Vec<Stored> = selected
        .entities
        .into_iter()
        .filter(|s| query.keeps(s))
        .collect();
    for stored in &matching {
        request.may_change(&broker, stored)?;
    }
    for stored in &matching {
        let id = &stored.entity.id;
        match (&keep, &drop) {
            (None, None) => {
                broker
                    .delete(&request.tenant, id, &request.viewer, |s| {
                        request.may_change(&broker, s)
                    })
                    .await?;
            }
            _ => {
                let stamp = now();
                broker
                    .modify(
                        &request.tenant,
                        id,
                        &request.viewer,
                        Some(&request.audit_entry(&headers, "ngsi.entity.purge", id)),
                        |s| {
                            request.may_change(&broker, s)?;
                            s.entity.attrs.retain(|name, _| match (&keep, &drop) {
                                (Some(keep), _) => keep.contains(name),
                                (_, Some(drop)) => !drop.contains(name),
                                _ => true,
                            });
                            s.entity.modified_at = stamp.clone();
                            Ok(())
                        },
                    )
                    .await?;
            }
        }
    }
    let audit = || {
        Extension(AuditNote::new(
            "ngsi.entities.purge",
            format!("entities:{}", request.tenant),
        ))
    };
    let failed = match forward {
        Some(forward) => {
            purge_at_sources(&broker, &request, &query, (&purged_at_sources, &forward)).await
        }
        None => Vec::new(),
    };
    if !failed.is_empty() {
        let body = serde_json::json!({"notUpdated": failed.iter().map(|reason| serde_json::json!({
            "reason": reason})).collect::<Vec<_>>()});
        return Ok((
            StatusCode::MULTI_STATUS,
            audit(),
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response());
    }
    Ok((StatusCode::NO_CONTENT, audit()).into_response())
}

/// Sends a purge to the sources registered for its types and ids that name the operation;
/// why each that failed did.
pub(super) async fn purge_at_sources(
    broker: &ContextBroker,
    request: &Request,
    query: &EntityQuery,
    (params, forward): (&HashMap<String, String>, &crate::distributed::Forward),
) -> Vec<String> {
    let targets = broker.sources.for_purge(
        &request.tenant,
        &request.viewer,
        (&query.selection.types, &query.selection.ids),
    );
    let path = format!(
        "/entities?{}",
        crate::distributed::query_string(
            params,
            &["type", "id", "idPattern", "q", "scopeQ", "keep", "drop"]
        )
        .join("&")
    );
    let mut failed = Vec::new();
    for target in &targets {
        if let Err(reason) = broker
            .sources
            .write(target, (reqwest::Method::DELETE, &path), None, forward)
            .await
        {
            tracing::warn!(%reason, "purge not forwarded");
            failed.push(reason);
        }
    }
    failed
}

/// The same query as a body (`{"type": "Query", "entities": [{"type": …, "id": …,
/// "idPattern": …}], "attrs": […], "q": …, "geoQ": {…}}`); `limit`, `offset`, `count`, `options`
/// stay in the URL.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/query", tag = "ngsi-ld",
    request_body(content = Object, description = "an NGSI-LD Query"),
    responses((status = 200), (status = 400)))]
pub(super) async fn query_post(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let (value, _) = parse_body(&headers, &body)?;
    let request = Request::read(&broker, &headers, principal, body_context(&value)).await?;
    request.require_tenant(&broker).await?;
    let mut params = query_map(raw)?;
    if value.get("temporalQ").is_some() {
        return Err(errors::bad_request(
            "temporalQ belongs to a temporal query (POST /temporal/entityOperations/query)",
        ));
    }
    query_body_params(&value, &mut params)?;
    let options = render_options(&params, &request.context)?;
    let query = entity_query(&params, &request.context, broker.config.max_limit)?;
    let linking = linking(&params)?;
    let map = map_use(&broker, &request, &headers, &params).await?;
    run_query(
        &broker,
        &request,
        query,
        (options, linking),
        (&params, false, map),
    )
    .await
}

/// The members of an NGSI-LD Query body (`POST …/entityOperations/query`) as the query
/// parameters they stand for.
pub(super) fn query_body_params(
    value: &Value,
    params: &mut HashMap<String, String>,
) -> NgsiResult<()> {
    if value.get("type").and_then(Value::as_str) != Some("Query") {
        return Err(errors::bad_request(
            "the body must be an object with \"type\": \"Query\"",
        ));
    }
    // Table 5.2.23-1: no empty arrays, strings where strings are due, joinLevel positive.
    for member in ["entities", "attrs", "pick", "omit"] {
        if value
            .get(member)
            .is_some_and(|v| v.as_array().is_none_or(Vec::is_empty))
        {
            return Err(errors::bad_request(format!(
                "{member} is a non-empty array (clause 5.2.23)"
            )));
        }
    }
    for member in ["q", "scopeQ", "csf", "lang", "join"] {
        if value.get(member).is_some_and(|v| !v.is_string()) {
            return Err(errors::bad_request(format!("{member} is a string")));
        }
    }
    if value
        .get("joinLevel")
        .is_some_and(|v| v.as_u64().is_none_or(|n| n == 0))
    {
        return Err(errors::bad_request("joinLevel is a positive integer"));
    }
    let join = |items: Vec<String>| items.join(",");
    for member in ["pick", "omit"] {
        if let Some(items) = value.get(member).and_then(Value::as_array) {
            params.insert(
                member.into(),
                join(
                    items
                        .iter()
                        .filter_map(|a| a.as_str().map(str::to_owned))
                        .collect(),
                ),
            );
        }
    }
    for member in ["scopeQ", "lang", "join"] {
        if let Some(text) = value.get(member).and_then(Value::as_str) {
            params.insert(member.into(), text.to_owned());
        }
    }
    if let Some(level) = value.get("joinLevel").and_then(Value::as_u64) {
        params.insert("joinLevel".into(), level.to_string());
    }
    if let Some(entities) = value.get("entities").and_then(Value::as_array) {
        // Table 5.2.33-1: a type, ids as a URI or a list of them; id before idPattern.
        for selector in entities {
            if !selector.get("type").is_some_and(Value::is_string) {
                return Err(errors::bad_request(
                    "each entity selector needs a type (clause 5.2.33)",
                ));
            }
            match selector.get("id") {
                None => {}
                Some(Value::String(id)) => model::check_entity_id(id)?,
                Some(Value::Array(ids)) => {
                    for id in ids {
                        model::check_entity_id(id.as_str().ok_or_else(|| {
                            errors::bad_request("a selector's id is a URI or a list of URIs")
                        })?)?;
                    }
                }
                Some(_) => {
                    return Err(errors::bad_request(
                        "a selector's id is a URI or a list of URIs",
                    ));
                }
            }
        }
        let ids: Vec<String> = entities
            .iter()
            .filter_map(|e| e.get("id"))
            .flat_map(|id| match id {
                Value::Array(ids) => ids
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                other => other
                    .as_str()
                    .map(str::to_owned)
                    .into_iter()
                    .collect::<Vec<_>>(),
            })
            .collect();
        let field = |name: &str| -> Vec<String> {
            entities
                .iter()
                .filter_map(|e| e.get(name)?.as_str().map(str::to_owned))
                .collect()
        };
        let (types, patterns) = (field("type"), field("idPattern"));
        if !types.is_empty() {
            params.insert("type".into(), join(types));
        }
        if !ids.is_empty() {
            params.insert("id".into(), join(ids));
        } else if let Some(pattern) = patterns.into_iter().next() {
            params.insert("idPattern".into(), pattern);
        }
    }
    if let Some(attrs) = value.get("attrs").and_then(Value::as_array) {
        params.insert(
            "attrs".into(),
            join(
                attrs
                    .iter()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect(),
            ),
        );
    }
    if let Some(q) = value.get("q").and_then(Value::as_str) {
        params.insert("q".into(), q.to_owned());
    }
    if let Some(geo) = value.get("geoQ") {
        for key in ["georel", "geometry", "geoproperty"] {
            if let Some(text) = geo.get(key).and_then(Value::as_str) {
                params.insert(key.into(), text.to_owned());
            }
        }
        if let Some(coordinates) = geo.get("coordinates") {
            let text = match coordinates {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            params.insert("coordinates".into(), text);
        }
    }
    Ok(())
}
