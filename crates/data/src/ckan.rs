//! A CKAN-compatible read API (`/api/3/action/{action}`), so that CKAN clients and harvesters
//! (ckanapi, the DCAT harvester, CKAN's own `ckan.lib.helpers`) read the catalogue unchanged:
//! `package_list`, `package_show`, `package_search` (`q`, `fq`, `rows`, `start`, `sort`,
//! `facet.field`, `facet.limit`), `organization_list` (`all_fields`), `organization_show`,
//! `group_list` (themes as groups), `tag_list`, `license_list`, `status_show`. Parameters come
//! from the query string or a JSON body (ckanapi posts JSON). Answers have CKAN's shape
//! (`help`, `success`, `result`); errors are problem+json that also carry CKAN's
//! `success: false` and `error: {__type, message}`. `datastore_search_sql` is refused: no SQL
//! from outside reaches the database. Tables (`datastore_search`) come with the data hub's
//! imports.

use crate::rows::Version;
use crate::search::{FACETS, Filter, Query, Sort};
use crate::{Catalogue, Entry};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use yunnao_core::Problem;
use yunnao_identity::Principal;

/// The actions answered, in CKAN's names.
pub const ACTIONS: [&str; 11] = [
    "package_list",
    "package_show",
    "package_search",
    "organization_list",
    "organization_show",
    "group_list",
    "tag_list",
    "license_list",
    "status_show",
    "datastore_search",
    "datastore_search_sql",
];

/// A CKAN error as a problem: the status, and CKAN's members beside RFC 9457's.
pub fn error(problem: Problem, ckan_type: &str) -> Problem {
    let message = problem
        .detail
        .clone()
        .unwrap_or_else(|| problem.title.clone());
    problem
        .with_extension("success", false)
        .with_extension("error", json!({"__type": ckan_type, "message": message}))
}

fn not_found(what: impl Into<String>) -> Problem {
    error(Problem::not_found(what), "Not Found Error")
}

fn validation(what: impl Into<String>) -> Problem {
    error(Problem::validation(what), "Validation Error")
}

fn ok(action: &str, result: Value) -> Value {
    json!({
        "help": format!("/api/3/action/help_show?name={action}"),
        "success": true,
        "result": result,
    })
}

/// A parameter as text, from the query string or the JSON body.
fn param(params: &Map<String, Value>, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn number(
    params: &Map<String, Value>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, Problem> {
    match param(params, name) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse::<usize>()
            .map(|n| n.min(max))
            .map_err(|_| validation(format!("{name}: a whole number"))),
    }
}

fn department_title(names: &HashMap<String, (String, String)>, code: &str) -> String {
    names
        .get(code)
        .map(|n| n.0.clone())
        .unwrap_or_else(|| code.to_owned())
}

/// A dataset as CKAN's package.
pub fn package(
    entry: &Entry,
    names: &HashMap<String, (String, String)>,
    version: Option<&Version>,
) -> Value {
    let d = &entry.dataset;
    // The dataset's table is its one resource, id the dataset's, in the DataStore.
    let resources: Vec<Value> = version
        .map(|v| {
            json!({
                "id": d.id,
                "package_id": d.id,
                "name": d.title_zh,
                "description": d.description_zh,
                "format": v.format.to_ascii_uppercase(),
                "url": format!("/api/v1/data/datasets/{}/rows", d.id),
                "url_type": "datastore",
                "datastore_active": true,
                "size": v.bytes,
                "hash": format!("sm3:{}", v.sm3),
                "last_modified": v.imported_at.trim_end_matches('Z'),
                "created": v.imported_at.trim_end_matches('Z'),
                "state": "active",
                "position": 0,
            })
        })
        .into_iter()
        .chain(d.source.is_live().then(|| {
            // A live view is a DataStore resource too: datastore_search reads it now.
            json!({
                "id": d.id,
                "package_id": d.id,
                "name": d.title_zh,
                "description": d.description_zh,
                "format": match d.source.kind() {
                    "entities" => "NGSI-LD",
                    "series" => "JSON",
                    _ => "API",
                },
                "url": format!("/api/v1/data/datasets/{}/rows", d.id),
                "url_type": "datastore",
                "datastore_active": true,
                "resource_type": format!("live-{}", d.source.kind()),
                "last_modified": entry.modified_at.trim_end_matches('Z'),
                "created": entry.created_at.trim_end_matches('Z'),
                "state": "active",
                "position": 0,
            })
        }))
        .collect();
    json!({
        "id": d.id,
        "name": d.id,
        "title": d.title_zh,
        "notes": d.description_zh,
        "type": "dataset",
        "state": "active",
        "private": false,
        "url": "",
        "version": Value::Null,
        "author": department_title(names, &d.department),
        "author_email": Value::Null,
        "maintainer": d.contact,
        "maintainer_email": Value::Null,
        "license_id": d.licence,
        "license_title": d.licence,
        "metadata_created": entry.created_at.trim_end_matches('Z'),
        "metadata_modified": entry.modified_at.trim_end_matches('Z'),
        "owner_org": d.department,
        "organization": {
            "id": d.department,
            "name": d.department,
            "title": department_title(names, &d.department),
            "type": "organization",
            "is_organization": true,
            "state": "active",
        },
        "groups": d.themes.iter().map(|t| json!({"id": t, "name": t, "title": t, "display_name": t})).collect::<Vec<_>>(),
        "tags": d.keywords.iter().map(|k| json!({"name": k, "display_name": k, "state": "active"})).collect::<Vec<_>>(),
        "num_tags": d.keywords.len(),
        "num_resources": resources.len(),
        "resources": resources,
        "extras": [
            {"key": "title_en", "value": d.title_en},
            {"key": "notes_en", "value": d.description_en},
            {"key": "frequency", "value": d.frequency},
            {"key": "spatial_text", "value": d.spatial},
            {"key": "temporal_start", "value": d.temporal_start.clone().unwrap_or_default()},
            {"key": "temporal_end", "value": d.temporal_end.clone().unwrap_or_default()},
            {"key": "source_system", "value": d.source_system},
            {"key": "data_level", "value": d.level},
            {"key": "sharing", "value": d.sharing},
            {"key": "schema", "value": serde_json::to_string(&d.fields).unwrap_or_default()},
        ],
    })
}

/// CKAN's facet names → ours.
fn facet_of(ckan: &str) -> Option<&'static str> {
    match ckan {
        "organization" | "owner_org" => Some("department"),
        "groups" => Some("theme"),
        "tags" => Some("keyword"),
        "license_id" => Some("licence"),
        // The data hub's own facets by their names too.
        other => FACETS.iter().copied().find(|f| *f == other),
    }
}

/// `fq`: `field:value` terms, space-separated, all of which must hold; values may be quoted.
fn filters(fq: &str) -> Result<Vec<Filter>, Problem> {
    let mut out = Vec::new();
    let mut rest = fq.trim();
    while !rest.is_empty() {
        let rest_trimmed = rest.trim_start_matches('+');
        let (field, after) = rest_trimmed
            .split_once(':')
            .ok_or_else(|| validation(format!("fq: {rest_trimmed:?} is not field:value")))?;
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| validation("fq: an unclosed quote"))?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            match after.find(char::is_whitespace) {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        let ours = facet_of(field.trim())
            .ok_or_else(|| validation(format!("fq: no field {field} (organization, groups, tags, license_id, sharing, level, frequency)")))?;
        out.push(Filter {
            field: ours.to_owned(),
            value: value.to_owned(),
        });
        rest = tail.trim();
        if out.len() > 20 {
            return Err(validation("fq: at most 20 terms"));
        }
    }
    Ok(out)
}

/// Runs one action with its parameters.
pub async fn run(
    catalogue: &Catalogue,
    principal: Option<&Principal>,
    action: &str,
    params: &Map<String, Value>,
    request_id: &str,
) -> Result<Value, Problem> {
    let names = catalogue.department_names().await;
    let listed = || catalogue.listed(principal);
    match action {
        "status_show" => Ok(ok(
            action,
            json!({
                "ckan_version": "2.10.4",
                "site_title": "云脑 城市数据中枢",
                "site_url": "",
                "extensions": ["yunnao"],
            }),
        )),
        "package_list" => {
            let limit = number(params, "limit", usize::MAX, usize::MAX)?;
            let offset = number(params, "offset", 0, usize::MAX)?;
            let ids: Vec<String> = listed()
                .into_iter()
                .map(|e| e.dataset.id)
                .skip(offset)
                .take(limit)
                .collect();
            Ok(ok(action, json!(ids)))
        }
        "package_show" => {
            let id = param(params, "id").ok_or_else(|| validation("id: missing"))?;
            let entry = catalogue
                .get(principal, &id)
                .map_err(|_| not_found(format!("no dataset {id}")))?;
            Ok(ok(
                action,
                package(
                    &entry,
                    &names,
                    catalogue.current_version(&entry.dataset.id).as_ref(),
                ),
            ))
        }
        "package_search" => {
            let mut query = Query {
                text: param(params, "q").filter(|q| q.trim() != "*:*" && !q.trim().is_empty()),
                rows: number(params, "rows", 10, 1000)?,
                start: number(params, "start", 0, 100_000)?,
                ..Query::default()
            };
            if query.text.as_ref().is_some_and(|q| q.chars().count() > 200) {
                return Err(validation("q: at most 200 characters"));
            }
            if let Some(fq) = param(params, "fq") {
                if fq.len() > 2_000 {
                    return Err(validation("fq: at most 2000 characters"));
                }
                query.filters = filters(&fq)?;
            }
            query.sort = match param(params, "sort").as_deref().map(str::trim) {
                None | Some("score desc, metadata_modified desc") | Some("score desc") => {
                    Sort::Relevance
                }
                Some("metadata_modified desc") => Sort::Modified,
                Some("name asc") => Sort::Name,
                Some("title_string asc") => Sort::Title,
                Some(other) => {
                    return Err(validation(format!(
                        "sort: {other} is not one of score desc, metadata_modified desc, name asc, title_string asc"
                    )));
                }
            };
            let facet_fields: Vec<String> = match params.get("facet.field") {
                None => Vec::new(),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                Some(Value::String(text)) => serde_json::from_str::<Vec<String>>(text)
                    .map_err(|_| validation("facet.field: a JSON list of field names"))?,
                Some(_) => return Err(validation("facet.field: a JSON list of field names")),
            };
            let facet_limit = match param(params, "facet.limit").as_deref() {
                Some("-1") => usize::MAX,
                _ => number(params, "facet.limit", 50, 1000)?,
            };
            let found = catalogue.search(principal, &query);
            let mut facets = Map::new();
            let mut search_facets = Map::new();
            for field in &facet_fields {
                let ours = facet_of(field)
                    .ok_or_else(|| validation(format!("facet.field: no field {field}")))?;
                let items = found.facets.get(ours).cloned().unwrap_or_default();
                facets.insert(
                    field.clone(),
                    Value::Object(
                        items
                            .iter()
                            .take(facet_limit)
                            .map(|(v, n)| (v.clone(), json!(n)))
                            .collect(),
                    ),
                );
                search_facets.insert(field.clone(), json!({
                    "title": field,
                    "items": items.iter().take(facet_limit).map(|(v, n)| json!({
                        "name": v,
                        "display_name": if ours == "department" { department_title(&names, v) } else { v.clone() },
                        "count": n,
                    })).collect::<Vec<_>>(),
                }));
            }
            Ok(ok(
                action,
                json!({
                    "count": found.count,
                    "sort": param(params, "sort").unwrap_or_else(|| "score desc, metadata_modified desc".into()),
                    "results": found.results.iter().map(|(e, _)| package(e, &names, catalogue.current_version(&e.dataset.id).as_ref())).collect::<Vec<_>>(),
                    "facets": facets,
                    "search_facets": search_facets,
                }),
            ))
        }
        "organization_list" | "organization_show" => {
            let mut counts: Vec<(String, usize)> = Vec::new();
            for e in listed() {
                match counts.iter_mut().find(|(c, _)| *c == e.dataset.department) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((e.dataset.department.clone(), 1)),
                }
            }
            counts.sort();
            let org = |code: &str, n: usize| {
                let (zh, en) = names
                    .get(code)
                    .cloned()
                    .unwrap_or_else(|| (code.to_owned(), code.to_owned()));
                json!({"id": code, "name": code, "title": zh, "display_name": zh, "description": en,
                       "type": "organization", "is_organization": true, "state": "active", "package_count": n})
            };
            if action == "organization_show" {
                let id = param(params, "id").ok_or_else(|| validation("id: missing"))?;
                let n = counts
                    .iter()
                    .find(|(c, _)| *c == id)
                    .map(|c| c.1)
                    .ok_or_else(|| not_found(format!("no organization {id} with datasets")))?;
                return Ok(ok(action, org(&id, n)));
            }
            let all_fields =
                param(params, "all_fields").is_some_and(|v| v == "true" || v == "True" || v == "1");
            Ok(ok(
                action,
                if all_fields {
                    json!(counts.iter().map(|(c, n)| org(c, *n)).collect::<Vec<_>>())
                } else {
                    json!(counts.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>())
                },
            ))
        }
        "group_list" => {
            let mut counts: Vec<(String, usize)> = Vec::new();
            for e in listed() {
                for t in &e.dataset.themes {
                    match counts.iter_mut().find(|(c, _)| c == t) {
                        Some((_, n)) => *n += 1,
                        None => counts.push((t.clone(), 1)),
                    }
                }
            }
            let all_fields =
                param(params, "all_fields").is_some_and(|v| v == "true" || v == "True" || v == "1");
            Ok(ok(
                action,
                if all_fields {
                    json!(counts.iter().map(|(t, n)| json!({"id": t, "name": t, "title": t, "display_name": t, "type": "group", "is_organization": false, "package_count": n})).collect::<Vec<_>>())
                } else {
                    json!(counts.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>())
                },
            ))
        }
        "tag_list" => {
            let mut tags: Vec<String> = listed()
                .into_iter()
                .flat_map(|e| e.dataset.keywords)
                .collect();
            tags.sort();
            tags.dedup();
            Ok(ok(action, json!(tags)))
        }
        "license_list" => {
            let mut licences: Vec<String> =
                listed().into_iter().map(|e| e.dataset.licence).collect();
            licences.sort();
            licences.dedup();
            Ok(ok(
                action,
                json!(
                    licences
                        .iter()
                        .map(|l| json!({"id": l, "title": l}))
                        .collect::<Vec<_>>()
                ),
            ))
        }
        "datastore_search" => datastore_search(catalogue, principal, request_id, params).await,
        "datastore_search_sql" => Err(error(
            Problem::forbidden(
                "datastore_search_sql is refused: no SQL from outside reaches the database; use datastore_search",
            ),
            "Authorization Error",
        )),
        other => Err(error(
            Problem::bad_request(format!(
                "no action {other} (this catalogue answers {})",
                ACTIONS.join(", ")
            )),
            "Validation Error",
        )),
    }
}

/// CKAN's DataStore type names for ours.
fn datastore_type(field_type: &str) -> &'static str {
    match field_type {
        "integer" => "int",
        "number" => "numeric",
        "date" => "date",
        "timestamp" => "timestamp",
        "boolean" => "bool",
        _ => "text",
    }
}

/// `datastore_search` over a dataset's table (`resource_id` is the dataset's id), read as the
/// caller's access says: masked, metered and audited like every read.
async fn datastore_search(
    catalogue: &Catalogue,
    principal: Option<&Principal>,
    request_id: &str,
    params: &Map<String, Value>,
) -> Result<Value, Problem> {
    let resource = param(params, "resource_id")
        .or_else(|| param(params, "id"))
        .ok_or_else(|| validation("resource_id: missing"))?;
    let filters = match params.get("filters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(Value::String(text)) if text.trim().is_empty() => Map::new(),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(validation("filters: a JSON object of field: value")),
        },
        Some(_) => return Err(validation("filters: a JSON object of field: value")),
    };
    let fields = match params.get("fields") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_str().unwrap_or("").to_owned())
                .collect(),
        ),
        Some(Value::String(text)) => Some(text.split(',').map(|s| s.trim().to_owned()).collect()),
        Some(_) => return Err(validation("fields: a list of field names")),
    };
    let include_total = !matches!(
        param(params, "include_total").as_deref(),
        Some("false" | "False" | "0")
    );
    let q = match params.get("q") {
        Some(Value::Object(_)) => {
            return Err(validation("q: a text (per-field q is not supported)"));
        }
        _ => param(params, "q"),
    };
    let query = crate::table::ReadQuery {
        filters,
        q,
        sort: param(params, "sort"),
        fields,
        limit: number(params, "limit", 100, crate::table::MAX_LIMIT)?,
        offset: number(params, "offset", 0, crate::table::MAX_OFFSET)?,
        include_total,
    };
    let rows = catalogue
        .read(principal, request_id, &resource, &query)
        .await
        .map_err(|p| {
            let kind = match p.status {
                404 => "Not Found Error",
                401 | 403 => "Authorization Error",
                _ => "Validation Error",
            };
            error(p, kind)
        })?;
    let schema = catalogue.get(principal, &resource)?.dataset.fields;
    let mut fields = vec![json!({"id": "_id", "type": "int"})];
    for f in &rows.fields {
        let masked = f.masking != "keep";
        let declared = schema.iter().find(|s| s.name == f.name);
        fields.push(json!({
            "id": f.name,
            "type": if masked { "text" } else { datastore_type(&f.field_type) },
            "info": {
                "label": declared.map(|d| d.description_zh.clone()).unwrap_or_default(),
                "masking": f.masking,
            },
        }));
    }
    let start = format!("/api/3/action/datastore_search?resource_id={resource}");
    let next = format!("{start}&offset={}", rows.offset + rows.limit);
    let mut result = json!({
        "resource_id": resource,
        "fields": fields,
        "records": rows.records,
        "limit": rows.limit,
        "offset": rows.offset,
        "include_total": include_total,
        "records_format": "objects",
        "_links": {"start": start, "next": next},
        "access": rows.access,
        "grant": rows.grant,
        "version": rows.version,
    });
    if let Some(total) = rows.total {
        result["total"] = json!(total);
        result["total_was_estimated"] = json!(false);
    }
    Ok(ok("datastore_search", result))
}
