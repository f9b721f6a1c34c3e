//! Batch operations: create, upsert, update, merge, delete (clause 5.6.7–5.6.10, 5.6.20).

use super::NgsiResult;
use super::{entities::*, forward::*, request::*};
use crate::jsonld::Context;
use crate::model::{self};
use crate::{ContextBroker, errors};
use axum::Extension;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use yunnao_core::Problem;
use yunnao_identity::AuditNote;

/// Per-entity outcomes of a batch operation.
#[derive(Default)]
pub(super) struct BatchResult {
    pub(super) success: Vec<String>,
    pub(super) errors: Vec<(String, Problem)>,
}

impl BatchResult {
    pub(super) fn fail(&mut self, id: String, problem: Problem) {
        self.errors.push((id, errors::ngsi_ld(problem)));
    }

    /// Outcomes in the order of the batch's items.
    pub(super) fn record(&mut self, outcomes: BatchOutcomes) {
        for (id, outcome) in outcomes {
            match outcome {
                Ok(()) => self.success.push(id),
                Err(problem) => self.fail(id, problem),
            }
        }
    }

    /// 207 with `{"success": [...], "errors": [{"entityId", "error"}]}` when anything failed;
    /// otherwise what `all_ok` says.
    pub(super) fn respond(self, all_ok: Response) -> Response {
        if self.errors.is_empty() {
            return all_ok;
        }
        // An entity done here but refused by a context source counts as failed.
        let success: Vec<&String> = self
            .success
            .iter()
            .filter(|id| !self.errors.iter().any(|(failed, _)| failed == *id))
            .collect();
        let body = serde_json::json!({
            "success": success,
            "errors": self.errors.iter().map(|(id, problem)| serde_json::json!({
                "entityId": id, "error": problem})).collect::<Vec<_>>(),
        });
        (
            StatusCode::MULTI_STATUS,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// A batch's share for the context sources registered for its entities (clause 4.3.6, as
/// [`share_write`] for one entity): each source gets one batch of its parts; `local` is the
/// batch left for the broker, `result` the outcomes of the items the sources took entirely
/// and of those a source failed.
pub(super) struct SharedBatch {
    pub(super) local: Value,
    pub(super) result: BatchResult,
    /// Some items (or parts) went to sources.
    pub(super) forwarded: bool,
}

impl SharedBatch {
    /// When nothing is left for the broker: the answer, from the sources' outcomes alone
    /// (`all_ok` when none failed).
    pub(super) fn answer_if_all_sent(
        self,
        all_ok: impl FnOnce(&[String]) -> Response,
    ) -> Result<Response, Self> {
        if self.forwarded && self.local.as_array().is_some_and(Vec::is_empty) {
            let ok = all_ok(&self.result.success);
            Ok(self.result.respond(ok))
        } else {
            Err(self)
        }
    }
}

pub(super) async fn share_batch(
    broker: &ContextBroker,
    request: &Request,
    (operation, batch): (&str, &str),
    value: Value,
) -> NgsiResult<SharedBatch> {
    let alone = |local| SharedBatch {
        local,
        result: BatchResult::default(),
        forwarded: false,
    };
    let Some(forward) = request.forward_write(broker, &HashMap::new())? else {
        return Ok(alone(value));
    };
    let Value::Array(items) = value else {
        return Ok(alone(value));
    };
    let creating = matches!(operation, "createBatch" | "upsertBatch");
    let expand = |key: &str| request.context.expand(key);
    let mut local = Vec::new();
    let mut sent_whole = Vec::new();
    // Per registration: the source, its parts, and the ids they belong to.
    let mut parts: Vec<(crate::distributed::WriteTarget, Vec<Value>, Vec<String>)> = Vec::new();
    let mut add = |target: &crate::distributed::WriteTarget, part: Value, id: &str| match parts
        .iter_mut()
        .find(|(t, _, _)| t.source.id() == target.source.id())
    {
        Some((_, items, ids)) => {
            items.push(part);
            ids.push(id.to_owned());
        }
        None => parts.push((target.clone(), vec![part], vec![id.to_owned()])),
    };
    for item in items {
        let id = match &item {
            Value::String(id) => id.clone(),
            Value::Object(_) => item_id(&item),
            _ => {
                local.push(item);
                continue;
            }
        };
        let types: Vec<String> = if creating {
            match &item["type"] {
                Value::String(t) => vec![expand(t)],
                Value::Array(many) => many.iter().filter_map(Value::as_str).map(expand).collect(),
                _ => Vec::new(),
            }
        } else {
            known_types(broker, request, &id, &TypeSelector(None)).await?
        };
        let targets =
            broker
                .sources
                .for_write(&request.tenant, &request.viewer, operation, (&id, &types));
        if targets.is_empty() {
            local.push(item);
            continue;
        }
        let Value::Object(object) = &item else {
            // A delete: every source gets the id; the broker deletes too unless one holds it all.
            for target in &targets {
                add(target, item.clone(), &id);
            }
            if targets.iter().any(|t| t.takes_all()) {
                sent_whole.push(id);
            } else {
                local.push(item);
            }
            continue;
        };
        let (shares, rest) = split_entity(object, &targets, creating, &request.context);
        for (index, part, _) in shares {
            add(&targets[index], part, &id);
        }
        match rest {
            Some(rest) => local.push(Value::Object(rest)),
            None => sent_whole.push(id),
        }
    }
    let mut result = BatchResult::default();
    let forwarded = !parts.is_empty() || !sent_whole.is_empty();
    let path = format!("/entityOperations/{batch}");
    for (target, items, ids) in parts {
        let body = Value::Array(items);
        if let Err(reason) = broker
            .sources
            .write(
                &target,
                (reqwest::Method::POST, &path),
                Some(&body),
                &forward,
            )
            .await
        {
            tracing::warn!(%reason, "batch not forwarded");
            for id in ids {
                sent_whole.retain(|s| *s != id);
                result.fail(id, Problem::unavailable(reason.clone()));
            }
        }
    }
    result.success.extend(sent_whole);
    Ok(SharedBatch {
        local: Value::Array(local),
        result,
        forwarded,
    })
}

/// The body of a batch: an array of entities (or ids for delete), each with the request's
/// context unless it carries its own `@context` (ld+json).
pub(super) fn batch_items(value: Value) -> NgsiResult<Vec<Value>> {
    match value {
        Value::Array(items) if items.iter().any(Value::is_null) => Err(errors::bad_request(
            "a batch cannot have null items (clause 5.6.7.4)",
        )),
        Value::Array(items) if !items.is_empty() => Ok(items),
        Value::Array(_) => Err(errors::bad_request("the batch is empty")),
        _ => Err(errors::bad_request("a batch is a JSON array")),
    }
}

pub(super) async fn item_context(
    broker: &ContextBroker,
    request: &Request,
    item: &Value,
) -> NgsiResult<Context> {
    match item.get("@context") {
        Some(context) => broker.contexts.resolve(context).await,
        None => Ok(request.context.clone()),
    }
}

pub(super) fn item_id(item: &Value) -> String {
    item.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

pub(super) fn created_ids(ids: &[String]) -> Response {
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        Value::from(ids.to_vec()).to_string(),
    )
        .into_response()
}

/// Each batch item's id and outcome, in the order given (parse failures filled in), and the
/// parsed entities with their item's position.
pub(super) type BatchOutcomes = Vec<(String, Result<(), Problem>)>;

pub(super) async fn parse_batch(
    broker: &ContextBroker,
    request: &Request,
    value: Value,
    stamp: &str,
) -> NgsiResult<(BatchOutcomes, Vec<(usize, model::Entity)>)> {
    let mut outcomes = Vec::new();
    let mut entities = Vec::new();
    for item in batch_items(value)? {
        let id = item_id(&item);
        let parsed = async {
            let context = item_context(broker, request, &item).await?;
            model::parse_entity(item, &context, stamp)
        }
        .await;
        match parsed {
            Ok(entity) => {
                entities.push((outcomes.len(), entity));
                outcomes.push((id, Ok(())));
            }
            Err(problem) => outcomes.push((id, Err(problem))),
        }
    }
    Ok((outcomes, entities))
}

/// Create many entities: 201 with their ids, or 207 naming each that failed and why.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/create", tag = "ngsi-ld",
    request_body(content = [Object]), responses((status = 201), (status = 207), (status = 400)))]
pub(super) async fn batch_create(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    let (batch, shared) =
        match begin_batch(ngsi, &body, ("createBatch", "create"), created_ids).await? {
            Ok(begun) => begun,
            Err(answer) => return Ok(answer),
        };
    let (broker, request, owner, _) = batch.parts();
    let audit = || batch_audit(&request, "create");
    let stamp = now();
    let mut result = shared.result;
    // Every item parsed first; the valid ones are then stored in one transaction.
    let (mut outcomes, entities) = parse_batch(&broker, &request, shared.local, &stamp).await?;
    let stored = broker
        .create_many(
            &request.tenant,
            &entities.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
            &owner,
        )
        .await?;
    for ((slot, _), outcome) in entities.iter().zip(stored) {
        outcomes[*slot].1 = outcome;
    }
    result.record(outcomes);
    let ok = created_ids(&result.success);
    Ok((audit(), result.respond(ok)).into_response())
}

/// Create or change many entities (`options=update` merges attributes into existing ones,
/// the default replaces them): 201 with the created ids, 204 when all existed, 207 on errors.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/upsert", tag = "ngsi-ld",
    request_body(content = [Object]), responses((status = 201), (status = 204), (status = 207)))]
pub(super) async fn batch_upsert(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    let (batch, shared) = match begin_batch(ngsi, &body, ("upsertBatch", "upsert"), |_| {
        StatusCode::NO_CONTENT.into_response()
    })
    .await?
    {
        Ok(begun) => begun,
        Err(answer) => return Ok(answer),
    };
    let (broker, request, owner, raw) = batch.parts();
    let merge = has_option(&query_map(raw)?, "update");
    let audit = || batch_audit(&request, "upsert");
    let stamp = now();
    let mut result = shared.result;
    let mut created = Vec::new();
    for item in batch_items(shared.local)? {
        let id = item_id(&item);
        let outcome = async {
            let context = item_context(&broker, &request, &item).await?;
            let entity = model::parse_entity(item, &context, &stamp)?;
            match broker.create(&request.tenant, &entity, &owner).await {
                Ok(()) => Ok(true),
                Err(problem) if problem.type_uri.ends_with("AlreadyExists") => {
                    broker
                        .modify(
                            &request.tenant,
                            &entity.id,
                            &request.viewer,
                            None,
                            |stored| {
                                request.may_change(&broker, stored)?;
                                if merge {
                                    stored.entity.add_types(&entity.types);
                                    for (name, attribute) in entity.attrs.clone() {
                                        stored.entity.put_attribute(name, attribute);
                                    }
                                } else {
                                    stored.entity.types = entity.types.clone();
                                    stored.entity.attrs = entity.attrs.clone();
                                }
                                stored.entity.modified_at = stamp.clone();
                                Ok(())
                            },
                        )
                        .await?;
                    Ok(false)
                }
                Err(problem) => Err(problem),
            }
        }
        .await;
        match outcome {
            Ok(new) => {
                if new {
                    created.push(id.clone());
                }
                result.success.push(id);
            }
            Err(problem) => result.fail(id, problem),
        }
    }
    let ok = if created.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        created_ids(&created)
    };
    Ok((audit(), result.respond(ok)).into_response())
}

/// Append attributes to many existing entities (`options=noOverwrite` keeps existing ones):
/// 204, or 207 naming the entities that were missing or refused.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/update", tag = "ngsi-ld",
    request_body(content = [Object]), responses((status = 204), (status = 207)))]
pub(super) async fn batch_update(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    let (batch, shared) = match begin_batch(ngsi, &body, ("updateBatch", "update"), |_| {
        StatusCode::NO_CONTENT.into_response()
    })
    .await?
    {
        Ok(begun) => begun,
        Err(answer) => return Ok(answer),
    };
    let (broker, request, _, raw) = batch.parts();
    let no_overwrite = has_option(&query_map(raw)?, "noOverwrite");
    let audit = || batch_audit(&request, "update");
    let stamp = now();
    let mut result = shared.result;
    // Every item parsed first; the valid ones are then changed in one transaction.
    let (mut outcomes, entities) = parse_batch(&broker, &request, shared.local, &stamp).await?;
    let ids: Vec<String> = entities.iter().map(|(_, e)| e.id.clone()).collect();
    let changed = broker
        .modify_many(&request.tenant, &ids, &request.viewer, |index, stored| {
            request.may_change(&broker, stored)?;
            for (name, attribute) in entities[index].1.attrs.clone() {
                if no_overwrite && stored.entity.attrs.contains_key(&name) {
                    continue;
                }
                stored.entity.put_attribute(name, attribute);
            }
            stored.entity.modified_at = stamp.clone();
            Ok(())
        })
        .await?;
    for ((slot, _), outcome) in entities.iter().zip(changed) {
        outcomes[*slot].1 = outcome;
    }
    result.record(outcomes);
    Ok((
        audit(),
        result.respond(StatusCode::NO_CONTENT.into_response()),
    )
        .into_response())
}

/// Merge fragments into many existing entities (clause 5.6.20: each as Merge Entity does,
/// in one transaction): 204, or 207 naming those invalid, missing or refused.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/merge", tag = "ngsi-ld",
    request_body(content = [Object]), responses((status = 204), (status = 207), (status = 400)))]
pub(super) async fn batch_merge(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    let (batch, shared) = match begin_batch(ngsi, &body, ("mergeBatch", "merge"), |_| {
        StatusCode::NO_CONTENT.into_response()
    })
    .await?
    {
        Ok(begun) => begun,
        Err(answer) => return Ok(answer),
    };
    let (broker, request, _, _) = batch.parts();
    let audit = || batch_audit(&request, "merge");
    let stamp = now();
    let mut outcomes: BatchOutcomes = Vec::new();
    let mut merges = Vec::new();
    for item in batch_items(shared.local)? {
        let id = item_id(&item);
        let parsed = async {
            let context = item_context(&broker, &request, &item).await?;
            let Value::Object(object) = item else {
                return Err(errors::bad_request(
                    "a batch merge lists entities (JSON objects)",
                ));
            };
            model::check_entity_id(&id)?;
            Merge::parse(object, &context, &stamp)
        }
        .await;
        match parsed {
            Ok(merge) => {
                merges.push((outcomes.len(), id.clone(), merge));
                outcomes.push((id, Ok(())));
            }
            Err(problem) => outcomes.push((id, Err(problem))),
        }
    }
    let ids: Vec<String> = merges.iter().map(|(_, id, _)| id.clone()).collect();
    let merged = broker
        .modify_many(&request.tenant, &ids, &request.viewer, |index, stored| {
            request.may_change(&broker, stored)?;
            merges[index].2.apply(stored, &stamp);
            Ok(())
        })
        .await?;
    for ((slot, _, _), outcome) in merges.iter().zip(merged) {
        outcomes[*slot].1 = outcome;
    }
    let mut result = shared.result;
    result.record(outcomes);
    Ok((
        audit(),
        result.respond(StatusCode::NO_CONTENT.into_response()),
    )
        .into_response())
}

/// Delete many entities by id: 204, or 207 naming those missing or refused.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/delete", tag = "ngsi-ld",
    request_body(content = [String]), responses((status = 204), (status = 207)))]
pub(super) async fn batch_delete(ngsi: Ngsi, body: Bytes) -> NgsiResult<Response> {
    let (batch, shared) = match begin_batch(ngsi, &body, ("deleteBatch", "delete"), |_| {
        StatusCode::NO_CONTENT.into_response()
    })
    .await?
    {
        Ok(begun) => begun,
        Err(answer) => return Ok(answer),
    };
    let (broker, request, _, _) = batch.parts();
    let audit = || batch_audit(&request, "delete");
    let mut result = shared.result;
    for item in batch_items(shared.local)? {
        let Some(id) = item.as_str().map(str::to_owned) else {
            result.fail(
                item.to_string(),
                errors::bad_request("a batch delete lists entity ids"),
            );
            continue;
        };
        let outcome = async {
            model::check_entity_id(&id)?;
            broker
                .delete(&request.tenant, &id, &request.viewer, |stored| {
                    request.may_change(&broker, stored)
                })
                .await
        }
        .await;
        match outcome {
            Ok(()) => result.success.push(id),
            Err(problem) => result.fail(id, problem),
        }
    }
    Ok((
        audit(),
        result.respond(StatusCode::NO_CONTENT.into_response()),
    )
        .into_response())
}

/// A batch operation once begun ([`begin_batch`]).
pub(super) struct Batch {
    pub(super) broker: ContextBroker,
    pub(super) request: Request,
    /// The department that owns what the batch creates.
    pub(super) owner: String,
    pub(super) raw: Option<String>,
}

/// What every batch operation starts with: the body, the caller (who must be allowed to
/// write), and the part of the batch registered sources take; `Err` with the answer when they
/// took all of it (`all_ok` makes the answer for the entities they did).
pub(super) async fn begin_batch(
    ngsi: Ngsi,
    body: &Bytes,
    (operation, kind): (&str, &str),
    all_ok: impl FnOnce(&[String]) -> Response,
) -> NgsiResult<Result<(Batch, SharedBatch), Response>> {
    let (broker, principal, headers, raw) = ngsi.parts();
    let (value, _) = parse_body(&headers, body)?;
    let request = Request::read(&broker, &headers, principal, None).await?;
    let owner = request.writer(&broker)?;
    let shared = share_batch(&broker, &request, (operation, kind), value).await?;
    Ok(match shared.answer_if_all_sent(all_ok) {
        Ok(answer) => Err((batch_audit(&request, kind), answer).into_response()),
        Err(shared) => Ok((
            Batch {
                broker,
                request,
                owner,
                raw,
            },
            shared,
        )),
    })
}

impl Batch {
    /// (broker, request, owner, raw query string).
    pub(super) fn parts(self) -> (ContextBroker, Request, String, Option<String>) {
        (self.broker, self.request, self.owner, self.raw)
    }
}

/// The audit note of a batch operation of `kind` (create, upsert, …) in the request's tenant.
pub(super) fn batch_audit(request: &Request, kind: &str) -> Extension<AuditNote> {
    Extension(AuditNote::new(
        format!("ngsi.batch.{kind}"),
        format!("entities:{}", request.tenant),
    ))
}
