//! The data hub's live views connected to the other hubs: an entities view reads the city
//! information model, a series view the sensing hub; both only the owning department's own.

use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use yunnao_context::jsonld::Context;
use yunnao_context::{ContextBroker, Selection, Viewer};
use yunnao_core::Problem;
use yunnao_sensing::Sensing;
use yunnao_store::Arg;

pub struct PlatformViews {
    pub context: ContextBroker,
    pub sensing: Sensing,
}

impl yunnao_data::live::LiveViews for PlatformViews {
    fn entities<'a>(
        &'a self,
        owner: &'a str,
        entity_type: &'a str,
        attributes: &'a [String],
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Map<String, Value>>, Problem>> {
        async move {
            let context = Context::core();
            let selection = Selection {
                types: vec![context.expand(entity_type)],
                page: Some((0, max)),
                conditions: vec![(
                    "owner_department = ?".into(),
                    vec![Arg::Text(owner.to_owned().into())],
                )],
                ..Selection::default()
            };
            let viewer = Viewer::Department(owner.to_owned());
            let selected = self
                .context
                .select(
                    &self.context.config.default_tenant,
                    &viewer,
                    &selection,
                    false,
                )
                .await?;
            Ok(selected
                .entities
                .into_iter()
                .map(|stored| {
                    let entity = stored.entity;
                    let mut record = Map::new();
                    for name in attributes {
                        if name == "id" {
                            record.insert(name.clone(), Value::String(entity.id.clone()));
                            continue;
                        }
                        if let Some(value) = entity.attrs.get(&context.expand(name)) {
                            record.insert(name.clone(), attribute_value(value));
                        }
                    }
                    record
                })
                .collect())
        }
        .boxed()
    }

    fn series<'a>(
        &'a self,
        owner: &'a str,
        profile: &'a str,
        since_ms: i64,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Map<String, Value>>, Problem>> {
        async move {
            let messages = self
                .sensing
                .profile_messages(owner, profile, since_ms, max as i64)
                .await?;
            Ok(messages
                .into_iter()
                .map(|(device, name, ts, values)| {
                    let mut record = match serde_json::from_str::<Value>(&values) {
                        Ok(Value::Object(values)) => values,
                        _ => Map::new(),
                    };
                    record.insert("device_id".into(), Value::String(device));
                    record.insert("device_name".into(), Value::String(name));
                    record.insert(
                        "observed_at".into(),
                        Value::String(yunnao_core::time::rfc3339_ms(ts)),
                    );
                    record
                })
                .collect())
        }
        .boxed()
    }
}

/// An attribute as one value: a Property's value, a Relationship's object, a GeoProperty's
/// GeoJSON, a LanguageProperty's Chinese (else first) text; the first instance of several.
fn attribute_value(attribute: &Value) -> Value {
    let attribute = match attribute {
        Value::Array(instances) => match instances.first() {
            Some(first) => first,
            None => return Value::Null,
        },
        one => one,
    };
    let Some(object) = attribute.as_object() else {
        return attribute.clone();
    };
    if let Some(value) = object.get("value") {
        return value.clone();
    }
    if let Some(target) = object.get("object") {
        return target.clone();
    }
    if let Some(Value::Object(languages)) = object.get("languageMap") {
        return languages
            .get("zh")
            .or_else(|| languages.values().next())
            .cloned()
            .unwrap_or(Value::Null);
    }
    Value::Null
}
