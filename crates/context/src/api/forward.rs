//! Distributed writes: the parts of a write that registered context sources hold, forwarded to them (clause 4.3.6).

use super::NgsiResult;
use super::request::*;
use crate::ContextBroker;
use crate::jsonld::Context;
use axum::Extension;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::collections::HashMap;
use yunnao_identity::AuditNote;

/// A write's share for the context sources registered for its entity (clause 4.3.6), sent,
/// and what is left for the broker itself.
pub(super) struct Shared {
    /// What the broker applies itself (the body; `Null` for a delete); `None`: nothing.
    pub(super) local: Option<Value>,
    /// Sources that failed: the attributes (expanded) they were sent, and why.
    pub(super) failed: Vec<(Vec<String>, String)>,
    /// Some of the write went to context sources (`local` may be less than the body).
    pub(super) forwarded: bool,
    /// Attributes (expanded) sources took without failing.
    pub(super) sent_ok: Vec<String>,
}

impl Shared {
    /// 204 when every part of the write was done (here or by its sources), else what the
    /// sources answered; the change itself was audited in its own transaction.
    pub(super) fn write_outcome(&self, request: &Request) -> Response {
        if !self.failed.is_empty() {
            return (
                Extension(AuditNote::recorded()),
                self.answered_by_sources(&request.context),
            )
                .into_response();
        }
        (StatusCode::NO_CONTENT, Extension(AuditNote::recorded())).into_response()
    }

    pub(super) fn alone(body: Value) -> Self {
        Self {
            local: Some(body),
            failed: Vec::new(),
            forwarded: false,
            sent_ok: Vec::new(),
        }
    }

    /// The answer to an attribute write that left nothing for the broker: 204, or 207 with
    /// what the sources did not take.
    pub(super) fn answered_by_sources(&self, context: &Context) -> Response {
        partial(self.sent_ok.clone(), self.not_updated(), context)
    }

    /// The failures as NotUpdatedDetails (attribute, reason).
    pub(super) fn not_updated(&self) -> Vec<(String, String)> {
        self.failed
            .iter()
            .flat_map(|(names, reason)| names.iter().map(|n| (n.clone(), reason.clone())))
            .collect()
    }
}

/// Sends a write to the sources registered for it and returns what is left for the broker:
/// an inclusive source gets the whole write and the broker does it too; an exclusive or
/// redirect source gets the attributes it holds (all, when it names none), which the broker
/// then leaves alone. Without such registrations (the common case) nothing is looked up
/// beyond one check in memory.
pub(super) async fn share_write(
    broker: &ContextBroker,
    request: &Request,
    params: &HashMap<String, String>,
    (operation, method, path): (&str, reqwest::Method, &str),
    (id, types): (&str, &[String]),
    body: Value,
) -> NgsiResult<Shared> {
    let Some(forward) = request.forward_write(broker, params)? else {
        return Ok(Shared::alone(body));
    };
    let targets =
        broker
            .sources
            .for_write(&request.tenant, &request.viewer, operation, (id, types));
    if targets.is_empty() {
        return Ok(Shared::alone(body));
    }
    let creating = operation == "createEntity";
    let mut sends: Vec<(usize, Option<Value>, Vec<String>)> = Vec::new();
    let local = match &body {
        Value::Object(object) => {
            let (parts, rest) = split_entity(object, &targets, creating, &request.context);
            sends.extend(
                parts
                    .into_iter()
                    .map(|(index, part, names)| (index, Some(part), names)),
            );
            rest.map(Value::Object)
        }
        _ => {
            sends.extend((0..targets.len()).map(|index| (index, None, Vec::new())));
            (!targets.iter().any(|t| t.takes_all())).then_some(body)
        }
    };
    let mut failed = Vec::new();
    let mut sent_ok = Vec::new();
    let forwarded = !sends.is_empty();
    for (index, part, names) in sends {
        let outcome = broker
            .sources
            .write(
                &targets[index],
                (method.clone(), path),
                part.as_ref(),
                &forward,
            )
            .await;
        if outcome.is_ok() {
            sent_ok.extend(names.iter().cloned());
        }
        if let Err(reason) = outcome {
            tracing::warn!(%reason, "write not forwarded");
            let names = if names.is_empty() {
                vec![id.to_owned()]
            } else {
                names
            };
            failed.push((names, reason));
        }
    }
    sent_ok.sort();
    sent_ok.dedup();
    Ok(Shared {
        local,
        failed,
        forwarded,
        sent_ok,
    })
}

/// One target's share of an entity: the target's index, its part of the body, and the
/// expanded names of the attributes in it.
pub(super) type Share = (usize, Value, Vec<String>);

/// How one entity's members are shared among `targets` (see [`share_write`]): each target's
/// part — the members that are not attributes, and the attributes it holds — with those
/// attributes' expanded names, for the targets that get one; and what is left for the broker
/// (`None`: nothing).
pub(super) fn split_entity(
    object: &Map<String, Value>,
    targets: &[crate::distributed::WriteTarget],
    creating: bool,
    context: &Context,
) -> (Vec<Share>, Option<Map<String, Value>>) {
    let is_attribute = |key: &str| !matches!(key, "id" | "type" | "@context" | "scope");
    let mut parts = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        let part: Map<String, Value> = object
            .iter()
            .filter(|(k, _)| !is_attribute(k) || target.covers(&context.expand(k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let names: Vec<String> = part
            .keys()
            .filter(|k| is_attribute(k))
            .map(|k| context.expand(k))
            .collect();
        if !names.is_empty() || (creating && target.takes_all()) {
            parts.push((index, Value::Object(part), names));
        }
    }
    let mut rest = object.clone();
    rest.retain(|k, _| !is_attribute(k) || !targets.iter().any(|t| t.takes(&context.expand(k))));
    let nothing_left = if creating {
        targets.iter().any(|t| t.takes_all())
    } else {
        !rest.keys().any(|k| is_attribute(k))
    };
    (parts, (!nothing_left).then_some(rest))
}

/// Shares a write of one attribute (`name`, expanded) of entity `id` — its `body`, or none
/// for a delete — with the sources that hold that attribute: each gets it; the broker applies
/// it too (`local`) unless one of them is exclusive or redirect.
pub(super) async fn share_one_attribute(
    broker: &ContextBroker,
    request: &Request,
    params: &HashMap<String, String>,
    (operation, method, path): (&str, reqwest::Method, &str),
    (id, name): (&str, &str),
    body: Option<&Value>,
) -> NgsiResult<Shared> {
    let alone = Shared::alone(Value::Null);
    let Some(forward) = request.forward_write(broker, params)? else {
        return Ok(alone);
    };
    let selector = TypeSelector::read(params, &request.context);
    let types = known_types(broker, request, id, &selector).await?;
    let targets: Vec<_> = broker
        .sources
        .for_write(&request.tenant, &request.viewer, operation, (id, &types))
        .into_iter()
        .filter(|t| t.covers(name))
        .collect();
    if targets.is_empty() {
        return Ok(alone);
    }
    let mut shared = Shared {
        local: (!targets.iter().any(|t| t.takes(name))).then_some(Value::Null),
        failed: Vec::new(),
        forwarded: true,
        sent_ok: Vec::new(),
    };
    for target in &targets {
        match broker
            .sources
            .write(target, (method.clone(), path), body, &forward)
            .await
        {
            Ok(()) => shared.sent_ok = vec![name.to_owned()],
            Err(reason) => {
                tracing::warn!(%reason, "write not forwarded");
                shared.failed.push((vec![name.to_owned()], reason));
            }
        }
    }
    Ok(shared)
}

/// The types of entity `id` as the broker has it (or as the request's `type` says), for
/// matching the registrations a write goes to; none when neither tells.
pub(super) async fn known_types(
    broker: &ContextBroker,
    request: &Request,
    id: &str,
    selector: &TypeSelector,
) -> NgsiResult<Vec<String>> {
    Ok(
        match broker.get(&request.tenant, id, &request.viewer).await? {
            Some(stored) => stored.entity.types.clone(),
            None => selector.0.clone().unwrap_or_default(),
        },
    )
}

/// Shares an attribute write of entity `id` (see [`share_write`]) when registrations may want
/// it; else the body stays the broker's alone, looked at no further.
pub(super) async fn share_attribute_write(
    broker: &ContextBroker,
    request: &Request,
    params: &HashMap<String, String>,
    (operation, method, path): (&str, reqwest::Method, &str),
    id: &str,
    body: Value,
) -> NgsiResult<Shared> {
    if !broker.sources.any_for_writes(&request.tenant) {
        return Ok(Shared::alone(body));
    }
    let selector = TypeSelector::read(params, &request.context);
    let types = known_types(broker, request, id, &selector).await?;
    share_write(
        broker,
        request,
        params,
        (operation, method, path),
        (id, &types),
        body,
    )
    .await
}
