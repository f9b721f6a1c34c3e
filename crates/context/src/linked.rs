//! Linked Entity Retrieval (clause 4.5.23). `join=inline` puts the entities a Relationship
//! names into it (`entity`; `entityList` for a ListRelationship; in the simplified format the
//! entity takes the place of its id), `join=flat` lists them after the entities asked for;
//! `joinLevel` says how many links deep (1 by default). Only entities the viewer may read are
//! joined: a target that is missing or hidden leaves its Relationship as it is, and an entity
//! is never joined into itself or its own ancestors (cycles end).

use crate::jsonld::Context;
use crate::model::{self, Entity, RenderOptions};
use crate::{ContextBroker, Retrieved, Viewer, errors};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use yunnao_core::Problem;

/// The deepest `joinLevel` served: each level may fetch every entity the previous one names.
const MAX_LEVEL: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    Inline,
    Flat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linking {
    pub join: Join,
    pub level: u32,
}

impl Linking {
    /// `join` (`flat`, `inline`, or `@none`: no join) and `joinLevel`; `None` without a join.
    pub fn parse(join: Option<&str>, level: Option<&str>) -> Result<Option<Self>, Problem> {
        let join = match join {
            None | Some("@none") => None,
            Some("inline") => Some(Join::Inline),
            Some("flat") => Some(Join::Flat),
            Some(other) => {
                return Err(errors::bad_request(format!(
                    "join {other:?} is not flat, inline or @none"
                )));
            }
        };
        let level = match level {
            None => 1,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LEVEL).contains(n))
                .ok_or_else(|| {
                    errors::bad_request(format!(
                        "joinLevel {text:?} is an integer from 1 to {MAX_LEVEL}"
                    ))
                })?,
        };
        Ok(join.map(|join| Self { join, level }))
    }
}

/// The ids an entity's Relationships and ListRelationships name, in attribute order.
fn linked_ids(entity: &Entity) -> Vec<String> {
    entity.attrs.values().flat_map(targets).collect()
}

/// The ids one attribute names (each instance), when it is a Relationship or ListRelationship.
pub fn targets(attribute: &Value) -> Vec<String> {
    let instances: Vec<&Value> = match attribute {
        Value::Array(instances) => instances.iter().collect(),
        one => vec![one],
    };
    let mut ids = Vec::new();
    for instance in instances {
        match instance.get("type").and_then(Value::as_str) {
            Some("Relationship") => collect_ids(instance.get("object"), &mut ids),
            Some("ListRelationship") => {
                for entry in instance
                    .get("objectList")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    collect_ids(entry.get("object").or(Some(entry)), &mut ids);
                }
            }
            _ => {}
        }
    }
    ids
}

fn collect_ids(object: Option<&Value>, ids: &mut Vec<String>) {
    match object {
        Some(Value::String(id)) => ids.push(id.clone()),
        Some(Value::Array(many)) => {
            ids.extend(many.iter().filter_map(Value::as_str).map(str::to_owned))
        }
        _ => {}
    }
}

impl ContextBroker {
    /// The entities `roots` link to, up to `level` links away, that `viewer` may read: by id,
    /// and in the order they were found (nearest first). The roots themselves are left out.
    async fn linked(
        &self,
        tenant: &str,
        viewer: &Viewer,
        roots: &[&Entity],
        level: u32,
    ) -> Result<(HashMap<String, Arc<Retrieved>>, Vec<String>), Problem> {
        let mut found: HashMap<String, Arc<Retrieved>> = HashMap::new();
        let mut order = Vec::new();
        let is_root = |id: &str| roots.iter().any(|r| r.id == id);
        let mut frontier: Vec<String> = roots.iter().flat_map(|r| linked_ids(r)).collect();
        for _ in 0..level {
            let mut next = Vec::new();
            for id in frontier {
                if found.contains_key(&id) || is_root(&id) || model::check_entity_id(&id).is_err() {
                    continue;
                }
                if let Some(target) = self.get(tenant, &id, viewer).await? {
                    next.extend(linked_ids(&target.entity));
                    order.push(id.clone());
                    found.insert(id, target);
                }
            }
            frontier = next;
        }
        Ok((found, order))
    }

    /// `entities` rendered as `render` does, with what they link to joined as `linking` asks:
    /// inline into each, or flat after them. Linked entities are shown whole (projections
    /// apply to the entities asked for), in the same format.
    pub async fn render_linked(
        &self,
        (tenant, viewer, context): (&str, &Viewer, &Context),
        entities: &[&Entity],
        options: &RenderOptions,
        linking: Linking,
        render: impl Fn(&Entity, Value) -> Value,
    ) -> Result<Vec<Value>, Problem> {
        let (found, order) = self.linked(tenant, viewer, entities, linking.level).await?;
        let whole = RenderOptions {
            attrs: None,
            pick: None,
            omit: Vec::new(),
            ..options.clone()
        };
        let out = match linking.join {
            Join::Flat => entities
                .iter()
                .map(|e| render(e, model::render(e, context, options)))
                .chain(order.iter().filter_map(|id| found.get(id)).map(|target| {
                    render(
                        &target.entity,
                        model::render(&target.entity, context, &whole),
                    )
                }))
                .collect(),
            Join::Inline => {
                let inliner = Inliner {
                    found: &found,
                    context,
                    options: &whole,
                };
                entities
                    .iter()
                    .map(|e| {
                        let mut rendered = model::render(e, context, options);
                        inliner.inline(e, &mut rendered, linking.level, &mut vec![e.id.clone()]);
                        render(e, rendered)
                    })
                    .collect()
            }
        };
        Ok(out)
    }
}

/// Puts linked entities into rendered ones, level by level.
struct Inliner<'a> {
    found: &'a HashMap<String, Arc<Retrieved>>,
    context: &'a Context,
    options: &'a RenderOptions,
}

impl Inliner<'_> {
    /// Joins into `rendered` (the rendering of `entity`) the entities its relationships name,
    /// `level` links deep; `chain` holds the ids from the root down to `entity`.
    fn inline(&self, entity: &Entity, rendered: &mut Value, level: u32, chain: &mut Vec<String>) {
        if level == 0 {
            return;
        }
        for (name, attribute) in &entity.attrs {
            let first = match attribute {
                Value::Array(instances) => instances.first(),
                one => Some(one),
            };
            let kind = first.and_then(|a| a.get("type")).and_then(Value::as_str);
            if !matches!(kind, Some("Relationship" | "ListRelationship")) {
                continue;
            }
            if let Some(shown) = rendered.get_mut(self.context.compact(name)) {
                self.join_into(shown, level, chain);
            }
        }
    }

    /// The rendered target `id`, itself joined one level less; `None` when it is not joined.
    fn target(&self, id: &str, level: u32, chain: &mut Vec<String>) -> Option<Value> {
        if chain.iter().any(|c| c == id) {
            return None;
        }
        let target = self.found.get(id)?;
        let mut rendered = model::render(&target.entity, self.context, self.options);
        chain.push(id.to_owned());
        self.inline(&target.entity, &mut rendered, level - 1, chain);
        chain.pop();
        Some(rendered)
    }

    /// One rendered relationship: `{"object": id}` gains `entity`, `{"objectList": …}` gains
    /// `entityList`, a bare id (simplified format) becomes the entity, instances each.
    fn join_into(&self, shown: &mut Value, level: u32, chain: &mut Vec<String>) {
        match shown {
            Value::String(id) => {
                if let Some(target) = self.target(&id.clone(), level, chain) {
                    *shown = target;
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.join_into(item, level, chain);
                }
            }
            Value::Object(object) => {
                if let Some(Value::String(id)) = object.get("object") {
                    if let Some(target) = self.target(&id.clone(), level, chain) {
                        object.insert("entity".into(), target);
                    }
                } else if let Some(Value::Array(list)) = object.get("objectList") {
                    let ids: Vec<String> = list
                        .iter()
                        .filter_map(|e| e.get("object").unwrap_or(e).as_str().map(str::to_owned))
                        .collect();
                    let entities: Vec<Value> = ids
                        .iter()
                        .filter_map(|id| self.target(id, level, chain))
                        .collect();
                    if !entities.is_empty() {
                        object.insert("entityList".into(), Value::Array(entities));
                    }
                }
            }
            _ => {}
        }
    }
}
