//! Entities as the broker keeps them: id, expanded types, and attributes under their expanded
//! names in the normalized form (structural members such as `value`, `object`, `observedAt` keep
//! their core names; sub-attribute names are expanded too). Parsing accepts the normalized and
//! the concise representations; rendering produces normalized, concise or keyValues output
//! compacted with the request's context.

use crate::errors;
use crate::jsonld::Context;
use serde_json::{Map, Value};

pub const ATTRIBUTE_TYPES: &[&str] = &[
    "Property",
    "Relationship",
    "GeoProperty",
    "LanguageProperty",
    "ListProperty",
    "ListRelationship",
    "JsonProperty",
    "VocabProperty",
];

/// Names that are the system's, not attributes a query can narrow by (clause 5.7.2.4).
pub const SYSTEM_ATTRIBUTES: &[&str] = &[
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "https://uri.etsi.org/ngsi-ld/createdAt",
    "https://uri.etsi.org/ngsi-ld/modifiedAt",
    "https://uri.etsi.org/ngsi-ld/deletedAt",
];

/// Members of an attribute that are not sub-attributes.
const STRUCTURAL: &[&str] = &[
    "type",
    "value",
    "object",
    "objectType",
    "languageMap",
    "json",
    "vocab",
    "valueList",
    "objectList",
    "observedAt",
    "unitCode",
    "datasetId",
    "createdAt",
    "modifiedAt",
    "instanceId",
    "lang",
    "valueType",
    "entityIdSealed",
    "entityTypeSealed",
];

/// The members that hold an attribute's value, one per attribute type (clause 4.5): an
/// attribute has its own and none of the others.
pub const VALUE_MEMBERS: &[&str] = &[
    "value",
    "object",
    "languageMap",
    "json",
    "vocab",
    "valueList",
    "objectList",
];

/// The previous values notifications with `showChanges` carry: the broker's only, neither
/// members nor names of attributes in a request (clauses 4.5.2.2, 4.5.3.2).
const PREVIOUS: &[&str] = &[
    "previousValue",
    "previousObject",
    "previousLanguageMap",
    "previousJson",
    "previousVocab",
    "previousValueList",
    "previousObjectList",
];

/// What linked-entity retrieval inlines: never an attribute's member in a request.
const INLINED: &[&str] = &["entity", "entityList"];

/// The attribute that carries a W3C Data Integrity proof of its entity, with the non-reified
/// `entityIdSealed` and `entityTypeSealed` (clause 4.5.2.2).
const PROOF_ATTRIBUTE: &str = "ngsildproof";

/// Is an attribute or sub-attribute by this name forbidden (clause 4.5.1: core terms that are
/// attribute members cannot name attributes)?
fn reserved_name(name: &str) -> bool {
    STRUCTURAL.contains(&name) || PREVIOUS.contains(&name)
}

/// Attribute names that hold geometry (CIM 009 §4.7).
const GEO_ATTRIBUTES: &[&str] = &["location", "observationSpace", "operationSpace"];

#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub id: String,
    /// Expanded type IRIs, in the order given.
    pub types: Vec<String>,
    /// Expanded attribute name → normalized attribute.
    pub attrs: Map<String, Value>,
    pub created_at: String,
    pub modified_at: String,
    /// The entity's Scopes (clause 4.18): one (a string) or several (an array of strings).
    pub scope: Option<Value>,
}

/// An attribute's instances, one or several.
fn into_instances(attribute: Value) -> Vec<Value> {
    match attribute {
        Value::Array(instances) => instances,
        one => vec![one],
    }
}

fn from_instances(mut instances: Vec<Value>) -> Value {
    if instances.len() == 1 {
        instances.remove(0)
    } else {
        Value::Array(instances)
    }
}

/// `scope` expanded by the core context.
const SCOPE_IRI: &str = "https://uri.etsi.org/ngsi-ld/scope";

/// Where a stored entity keeps its scope among its attributes (no attribute name starts with @).
pub const SCOPE_KEY: &str = "@scope";

impl Entity {
    /// The scopes as a list.
    pub fn scopes(&self) -> Vec<&str> {
        match &self.scope {
            Some(Value::String(scope)) => vec![scope.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Adds scopes it does not have yet (append, clause 5.6.3).
    pub fn add_scope(&mut self, scope: &Value) {
        let mut all: Vec<Value> = self.scopes().into_iter().map(Value::from).collect();
        let added: Vec<&Value> = match scope {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for item in added {
            if !all.contains(item) {
                all.push(item.clone());
            }
        }
        self.scope = match all.len() {
            0 => None,
            1 => all.pop(),
            _ => Some(Value::Array(all)),
        };
    }

    /// Sets each given instance of an attribute: the stored instance with the same datasetId
    /// is replaced, an instance of a new datasetId is added (clause 5.5.8).
    pub fn put_instances(&mut self, name: String, attribute: Value) {
        let Some(stored) = self.attrs.remove(&name) else {
            self.attrs.insert(name, attribute);
            return;
        };
        let mut instances = into_instances(stored);
        for given in into_instances(attribute) {
            let dataset = given.get("datasetId").cloned();
            match instances
                .iter_mut()
                .find(|i| i.get("datasetId").cloned() == dataset)
            {
                Some(instance) => {
                    let created = instance.get("createdAt").cloned();
                    *instance = given;
                    if let (Some(created), Value::Object(object)) = (created, instance) {
                        object.insert("createdAt".into(), created);
                    }
                }
                None => instances.push(given),
            }
        }
        self.attrs.insert(name, from_instances(instances));
    }

    /// Removes the instance of `dataset` (the default instance for `None`), or all with
    /// `all`; false when there was none to remove.
    pub fn remove_instances(&mut self, name: &str, dataset: Option<&str>, all: bool) -> bool {
        let Some(stored) = self.attrs.remove(name) else {
            return false;
        };
        if all {
            return true;
        }
        let mut instances = into_instances(stored);
        let before = instances.len();
        instances.retain(|i| i.get("datasetId").and_then(Value::as_str) != dataset);
        let removed = instances.len() < before;
        if !instances.is_empty() {
            self.attrs
                .insert(name.to_owned(), from_instances(instances));
        }
        removed
    }

    /// Sets an attribute, keeping the createdAt of the one it replaces.
    pub fn put_attribute(&mut self, name: String, mut attribute: Value) {
        let created = self
            .attrs
            .get(&name)
            .and_then(|e| e.get("createdAt"))
            .cloned();
        if let (Some(created), Value::Object(object)) = (created, &mut attribute) {
            object.insert("createdAt".into(), created);
        }
        self.attrs.insert(name, attribute);
    }

    /// Adds the types it does not have yet.
    pub fn add_types(&mut self, types: &[String]) {
        for t in types {
            if !self.types.contains(t) {
                self.types.push(t.clone());
            }
        }
    }

    /// The attribute that locates the entity, as a geometry.
    pub fn location(&self) -> Option<geo::Geometry<f64>> {
        let attribute = self.attrs.get(LOCATION)?;
        geometry(attribute.get("value")?).ok()
    }
}

/// The expanded name of the `location` GeoProperty, which geo queries use.
pub const LOCATION: &str = "https://uri.etsi.org/ngsi-ld/location";

/// An entity id is a URI (CIM 009 §4.5.1).
pub fn check_entity_id(id: &str) -> Result<(), yunnao_core::Problem> {
    let valid = id != NGSI_LD_NULL
        && id.len() <= 2048
        && id.split_once(':').is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
        })
        && !id
            .chars()
            .any(|c| c.is_whitespace() || "<>\"{}|\\^`".contains(c) || invisible(c));
    if valid {
        Ok(())
    } else {
        Err(errors::bad_request(format!(
            "entity id {id:?} is not a URI (for example urn:ngsi-ld:ParkingSpot:001)"
        )))
    }
}

/// A DateTime as clause 4.6.3 has it: RFC 3339 in UTC, ending in `Z`.
fn utc_date_time(text: &str) -> bool {
    text.ends_with('Z') && yunnao_core::time::parse_rfc3339_ms(text).is_some()
}

/// Clauses 5.8.1.4 and 5.9.2.4: an expiry given now is not in the past.
pub fn not_in_past(expires_at_ms: Option<i64>) -> Result<(), yunnao_core::Problem> {
    if expires_at_ms.is_some_and(|at| at <= yunnao_core::time::now_ms()) {
        return Err(errors::bad_request("expiresAt is in the past"));
    }
    Ok(())
}

/// A Scope (clause 4.18): `[/] level *("/" level)`, a level a letter then letters, digits and
/// `_`; one or a list of them. Never the NGSI-LD Null on input.
pub fn check_scope(scope: &Value) -> Result<(), yunnao_core::Problem> {
    fn valid(scope: &str) -> bool {
        let levels = scope.strip_prefix('/').unwrap_or(scope);
        levels.split('/').all(|level| {
            let mut chars = level.chars();
            chars.next().is_some_and(char::is_alphabetic)
                && chars.all(|c| c.is_alphanumeric() || c == '_')
        })
    }
    let scopes: Vec<&Value> = match scope {
        Value::Array(items) if !items.is_empty() => items.iter().collect(),
        other => vec![other],
    };
    for scope in scopes {
        if !scope.as_str().is_some_and(valid) {
            return Err(errors::bad_request(format!(
                "scope {scope}: levels of letters, digits and '_', each starting with a letter, \
                 separated by '/' (clause 4.18)"
            )));
        }
    }
    Ok(())
}

/// A `scopeQ` (clause 4.19): alternatives (`,`) of conditions that must all hold (`;`), each a
/// scope, `…/#` for a scope and everything under it (`/#` for any scope), `+` for any one
/// level.
#[derive(Debug, Clone)]
pub struct ScopeQuery(Vec<Vec<Vec<String>>>);

impl ScopeQuery {
    pub fn parse(text: &str) -> Result<Self, yunnao_core::Problem> {
        let invalid = || {
            errors::bad_request(format!(
                "scopeQ {text:?}: scopes such as /Madrid/Gardens, /Madrid/# or /+/Gardens, joined \
                 by ',' (or) and ';' (and)"
            ))
        };
        let cleaned: String = text.chars().filter(|c| !matches!(c, '(' | ')')).collect();
        let mut alternatives = Vec::new();
        for alternative in cleaned.split([',', '|']) {
            let mut all = Vec::new();
            for pattern in alternative.split(';') {
                let levels: Vec<String> = pattern
                    .trim()
                    .strip_prefix('/')
                    .ok_or_else(invalid)?
                    .split('/')
                    .map(str::to_owned)
                    .collect();
                let last = levels.len() - 1;
                let valid = levels.iter().enumerate().all(|(i, level)| {
                    let mut chars = level.chars();
                    level == "+"
                        || (level == "#" && i == last)
                        || (chars.next().is_some_and(char::is_alphabetic)
                            && chars.all(|c| c.is_alphanumeric() || c == '_'))
                });
                if !valid {
                    return Err(invalid());
                }
                all.push(levels);
            }
            alternatives.push(all);
        }
        Ok(Self(alternatives))
    }

    pub fn matches(&self, entity: &Entity) -> bool {
        let scopes: Vec<Vec<&str>> = entity
            .scopes()
            .into_iter()
            .map(|s| s.trim_start_matches('/').split('/').collect())
            .collect();
        let fits = |pattern: &[String], scope: &[&str]| {
            for (i, level) in pattern.iter().enumerate() {
                if level == "#" {
                    return true;
                }
                match scope.get(i) {
                    Some(actual) if level == "+" || level == actual => {}
                    _ => return false,
                }
            }
            pattern.len() == scope.len()
        };
        self.0.iter().any(|all| {
            all.iter()
                .all(|pattern| scopes.iter().any(|scope| fits(pattern, scope)))
        })
    }
}

/// Characters that show as nothing, or as something else, and so can name nothing: controls,
/// format characters (zero-width, bidi overrides, BOM), separators, variation selectors,
/// noncharacters and the blank fillers (clause 4.5.1: an id "shall be a URI that identifies").
fn invisible(c: char) -> bool {
    let code = u32::from(c);
    c.is_control()
        || matches!(code,
            0x00A0 | 0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180E
            | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x206F | 0x2800 | 0x3000 | 0x3164
            | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0xFDD0..=0xFDEF
            | 0xE0000..=0xE0FFF)
        || code & 0xFFFE == 0xFFFE
}

/// Attribute and type names (clause 4.6.2): `name = unicodeLetter *(unicodeLetter /
/// unicodeNumber / "_")`, optionally `prefix:name`, or a full IRI (an expanded name).
fn check_name(name: &str) -> Result<(), yunnao_core::Problem> {
    fn term(text: &str) -> bool {
        let mut chars = text.chars();
        chars.next().is_some_and(char::is_alphabetic)
            && chars.all(|c| c.is_alphanumeric() || c == '_')
    }
    let iri = name.contains("://") || name.starts_with("urn:");
    let valid = !name.is_empty()
        && name.len() <= 512
        && if iri {
            !name
                .chars()
                .any(|c| c.is_whitespace() || invisible(c) || "<>\"'=;()[]".contains(c))
        } else {
            match name.split_once(':') {
                Some((prefix, local)) => term(prefix) && term(local),
                None => term(name),
            }
        };
    if valid {
        Ok(())
    } else {
        Err(errors::bad_request(format!(
            "{name:?} is not a valid attribute or type name: a letter, then letters, digits \
             and '_' (clause 4.6.2), or an IRI"
        )))
    }
}

/// Parses a whole entity (create, replace, batch upsert).
pub fn parse_entity(
    body: Value,
    context: &Context,
    now: &str,
) -> Result<Entity, yunnao_core::Problem> {
    parse_entity_as(body, context, now, Instances::Current)
}

/// Parses an entity's temporal representation: an attribute may have many instances per
/// dataset (its history).
pub fn parse_temporal_entity(
    body: Value,
    context: &Context,
    now: &str,
) -> Result<Entity, yunnao_core::Problem> {
    parse_entity_as(body, context, now, Instances::History)
}

/// What the instances of one attribute in a request stand for.
#[derive(Clone, Copy, PartialEq)]
enum Instances {
    /// The current value: at most one instance per datasetId, one default (clause 4.5.5.1).
    Current,
    /// History: any number per datasetId.
    History,
}

fn parse_entity_as(
    body: Value,
    context: &Context,
    now: &str,
    instances: Instances,
) -> Result<Entity, yunnao_core::Problem> {
    let Value::Object(mut object) = body else {
        return Err(errors::bad_request("an entity must be a JSON object"));
    };
    object.remove("@context");
    let id = match object.remove("id").or_else(|| object.remove("@id")) {
        Some(Value::String(id)) => id,
        Some(_) => return Err(errors::bad_request("id must be a string")),
        None => return Err(errors::bad_request("an entity needs an id")),
    };
    check_entity_id(&id)?;
    let types = match object.remove("type").or_else(|| object.remove("@type")) {
        Some(value) => parse_types(&value, context)?,
        None => return Err(errors::bad_request("an entity needs a type")),
    };
    object.remove("createdAt");
    object.remove("modifiedAt");
    // An entity's expiry (a system member, clause 4.5.1): a date-time when given; this broker
    // does not expire entities, so it is not kept.
    if let Some(expires) = object.remove("expiresAt")
        && !expires.as_str().is_some_and(utc_date_time)
    {
        return Err(errors::bad_request("expiresAt is a date-time in UTC"));
    }
    let scope = object
        .remove("scope")
        .map(|s| check_scope(&s).map(|()| s))
        .transpose()?;
    let attrs = parse_attributes_as(object, context, now, instances)?;
    Ok(Entity {
        id,
        types,
        attrs,
        created_at: now.to_owned(),
        modified_at: now.to_owned(),
        scope,
    })
}

pub fn parse_types(value: &Value, context: &Context) -> Result<Vec<String>, yunnao_core::Problem> {
    let names: Vec<&str> = match value {
        Value::String(name) => vec![name],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    errors::bad_request("type must be a string or a list of strings")
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(errors::bad_request(
                "type must be a string or a list of strings",
            ));
        }
    };
    let mut types = Vec::new();
    for name in names {
        check_name(name)?;
        let iri = context.expand(name);
        if !types.contains(&iri) {
            types.push(iri);
        }
    }
    Ok(types)
}

/// Parses attributes given by name (entity body, append, update).
pub fn parse_attributes(
    object: Map<String, Value>,
    context: &Context,
    now: &str,
) -> Result<Map<String, Value>, yunnao_core::Problem> {
    parse_attributes_as(object, context, now, Instances::Current)
}

/// Parses attribute instances given by name for an entity's history (temporal API).
pub fn parse_temporal_attributes(
    object: Map<String, Value>,
    context: &Context,
    now: &str,
) -> Result<Map<String, Value>, yunnao_core::Problem> {
    parse_attributes_as(object, context, now, Instances::History)
}

fn parse_attributes_as(
    object: Map<String, Value>,
    context: &Context,
    now: &str,
    instances: Instances,
) -> Result<Map<String, Value>, yunnao_core::Problem> {
    let mut attrs = Map::new();
    for (name, value) in object {
        // System members: the broker sets them.
        if matches!(name.as_str(), "@context" | "createdAt" | "modifiedAt") {
            continue;
        }
        if matches!(name.as_str(), "id" | "type" | "@id" | "@type" | "scope")
            || reserved_name(&name)
        {
            return Err(errors::bad_request(format!(
                "{name} is a core term and cannot be used as an attribute name"
            )));
        }
        check_name(&name)?;
        let attribute = parse_attribute_as(&name, value, context, now, instances)?;
        if instances == Instances::Current {
            check_distinct_datasets(&name, &attribute)?;
        }
        attrs.insert(context.expand(&name), attribute);
    }
    Ok(attrs)
}

/// One default instance and distinct datasetIds among the instances of one attribute.
fn check_distinct_datasets(name: &str, attribute: &Value) -> Result<(), yunnao_core::Problem> {
    let Value::Array(instances) = attribute else {
        return Ok(());
    };
    let mut seen = std::collections::HashSet::new();
    for instance in instances {
        let dataset = instance.get("datasetId").and_then(Value::as_str);
        if !seen.insert(dataset) {
            return Err(errors::bad_request(match dataset {
                None => format!("{name}: more than one default instance (without datasetId)"),
                Some(dataset) => format!("{name}: two instances with datasetId {dataset:?}"),
            }));
        }
    }
    Ok(())
}

/// One attribute, normalized: the concise forms get their `type` inferred.
pub fn parse_attribute(
    name: &str,
    value: Value,
    context: &Context,
    now: &str,
) -> Result<Value, yunnao_core::Problem> {
    parse_attribute_as(name, value, context, now, Instances::Current)
}

/// One attribute; in a temporal representation (`History`) an instance whose value is the
/// NGSI-LD Null stands for the attribute's deletion at that time (clause 4.5.7).
fn parse_attribute_as(
    name: &str,
    value: Value,
    context: &Context,
    now: &str,
    instances: Instances,
) -> Result<Value, yunnao_core::Problem> {
    let geo_name = GEO_ATTRIBUTES.contains(&name);
    let mut object = match value {
        Value::Null => {
            return Err(errors::bad_request(format!("{name}: null is not a value")));
        }
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            // Several instances of one attribute, told apart by datasetId.
            let mut parsed = Vec::new();
            for item in items {
                parsed.push(parse_attribute_as(name, item, context, now, instances)?);
            }
            return Ok(Value::Array(parsed));
        }
        Value::Object(object) => object,
        other => {
            let mut object = Map::new();
            object.insert("type".into(), "Property".into());
            object.insert("value".into(), other);
            object
        }
    };
    let given_type = object
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match given_type.as_deref() {
        Some(t) if ATTRIBUTE_TYPES.contains(&t) => {}
        Some(t) if is_geometry_type(t) && object.contains_key("coordinates") => {
            // A bare GeoJSON geometry: the concise form of a GeoProperty.
            let mut attribute = Map::new();
            attribute.insert("type".into(), "GeoProperty".into());
            attribute.insert("value".into(), Value::Object(object));
            object = attribute;
        }
        Some(t) => {
            return Err(errors::bad_request(format!(
                "{name}: attribute type {t:?} is not one of {}",
                ATTRIBUTE_TYPES.join(", ")
            )));
        }
        None => {
            let inferred = if object.contains_key("object") {
                "Relationship"
            } else if object.contains_key("languageMap") {
                "LanguageProperty"
            } else if object.contains_key("json") {
                "JsonProperty"
            } else if object.contains_key("vocab") {
                "VocabProperty"
            } else if object.contains_key("valueList") {
                "ListProperty"
            } else if object.contains_key("objectList") {
                "ListRelationship"
            } else if object.contains_key("value") {
                if geo_name || object.get("value").is_some_and(looks_like_geometry) {
                    "GeoProperty"
                } else {
                    "Property"
                }
            } else {
                return Err(errors::bad_request(format!(
                    "{name}: an attribute needs a value (or object, languageMap, json, vocab)"
                )));
            };
            object.insert("type".into(), inferred.into());
        }
    }
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("Property")
        .to_owned();
    let required = value_member(&kind);
    if (kind == "GeoProperty" || geo_name)
        && let Some(Value::String(encoded)) = object.get(required)
    {
        // Clause 4.7.2: a geometry may come encoded as a JSON string; kept as the object.
        let decoded: Value = serde_json::from_str(encoded).map_err(|_| {
            errors::bad_request(format!("{name}: {encoded:?} is not a GeoJSON geometry"))
        })?;
        object.insert(required.into(), decoded);
    }
    match object.get(required) {
        None | Some(Value::Null) => {
            return Err(errors::bad_request(format!(
                "{name}: a {kind} needs a non-null {required}"
            )));
        }
        Some(value) if instances == Instances::History && value.as_str() == Some(NGSI_LD_NULL) => {}
        Some(value) => {
            if holds_ngsi_ld_null(value) {
                return Err(errors::bad_request(format!(
                    "{name}: the NGSI-LD Null (\"{NGSI_LD_NULL}\") only removes, in a merge or a \
                     partial update (clause 5.2.1)"
                )));
            }
            if kind == "GeoProperty" || geo_name {
                geometry(value)
                    .map_err(|reason| errors::bad_request(format!("{name}: {reason}")))?;
            }
            if kind == "Relationship" {
                match value {
                    Value::String(target) => check_entity_id(target)?,
                    Value::Array(targets) if targets.iter().all(Value::is_string) => {}
                    _ => {
                        return Err(errors::bad_request(format!(
                            "{name}: a Relationship's object is an entity id"
                        )));
                    }
                }
            }
        }
    }
    check_members(name, &kind, &object)?;
    match kind.as_str() {
        "ListRelationship" => normalize_object_list(name, &mut object)?,
        "VocabProperty" => {
            // Clause 4.5.20: vocab strings are terms (`@type: @vocab` in the core context),
            // kept as the IRIs they name and compacted again for each reader.
            let expanded = match object.get("vocab") {
                Some(Value::String(term)) => Value::String(context.expand(term)),
                Some(Value::Array(terms)) if terms.iter().all(Value::is_string) => Value::Array(
                    terms
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|term| Value::String(context.expand(term)))
                        .collect(),
                ),
                _ => {
                    return Err(errors::bad_request(format!(
                        "{name}: vocab is a term or a list of terms (clause 4.5.20)"
                    )));
                }
            };
            object.insert("vocab".into(), expanded);
        }
        "LanguageProperty" => check_language_map(name, &object)?,
        "JsonProperty" => {
            let raw = object.get("json").is_some_and(|json| match json {
                Value::Object(_) => true,
                Value::Array(items) => items.iter().all(Value::is_object),
                _ => false,
            });
            if !raw {
                return Err(errors::bad_request(format!(
                    "{name}: json is a raw JSON object or an array of objects (clause 4.5.24)"
                )));
            }
        }
        _ => {}
    }
    if object.get("datasetId").and_then(Value::as_str) == Some("@none") {
        // The explicit name of the default instance (clause 4.5.5.1).
        object.remove("datasetId");
    }
    if let Some(observed) = object.get("observedAt") {
        let valid = observed.as_str().is_some_and(utc_date_time);
        if !valid {
            return Err(errors::bad_request(format!(
                "{name}: observedAt must be a date-time in UTC, ending in Z (clause 4.6.3)"
            )));
        }
    }
    object.remove("createdAt");
    object.remove("modifiedAt");
    let mut normalized = Map::new();
    for (member, value) in object {
        if STRUCTURAL.contains(&member.as_str()) {
            normalized.insert(member, value);
        } else {
            check_name(&member)?;
            let sub = parse_attribute(&member, value, context, now)?;
            normalized.insert(context.expand(&member), sub);
        }
    }
    normalized.insert("createdAt".into(), now.into());
    normalized.insert("modifiedAt".into(), now.into());
    Ok(Value::Object(normalized))
}

/// The members an attribute of `kind` may not have (clauses 4.5.2.2, 4.5.3.2 and their
/// siblings): other types' value members, output-only members, a Relationship's unit, and the
/// proof's sealed members anywhere but on `ngsildproof`, where they are strings beside an
/// object value.
fn check_members(
    name: &str,
    kind: &str,
    object: &Map<String, Value>,
) -> Result<(), yunnao_core::Problem> {
    let own = value_member(kind);
    let refuse = |member: &str| {
        Err(errors::bad_request(format!(
            "{name}: a {kind} cannot have {member:?}"
        )))
    };
    for member in object.keys() {
        let member = member.as_str();
        if (VALUE_MEMBERS.contains(&member) && member != own)
            || PREVIOUS.contains(&member)
            || INLINED.contains(&member)
        {
            return refuse(member);
        }
        if member == "unitCode"
            && matches!(kind, "Relationship" | "ListRelationship" | "JsonProperty")
        {
            return refuse(member);
        }
        if matches!(member, "entityIdSealed" | "entityTypeSealed") {
            if name != PROOF_ATTRIBUTE {
                return refuse(member);
            }
            if !object[member].is_string() {
                return Err(errors::bad_request(format!("{name}: {member} is a string")));
            }
        }
    }
    if name == PROOF_ATTRIBUTE && !object.get("value").is_some_and(Value::is_object) {
        return Err(errors::bad_request(format!(
            "{name}: the value of {PROOF_ATTRIBUTE} is a W3C Data Integrity proof object"
        )));
    }
    Ok(())
}

/// The NGSI-LD Null: in a merge or partial update it removes what it stands in for; anywhere
/// else it is refused.
pub const NGSI_LD_NULL: &str = "urn:ngsi-ld:null";

/// Does this member of a merge or partial update remove what it names (the NGSI-LD Null, as
/// such or as the value)?
pub fn removes(member: &Value) -> bool {
    let null = |v: Option<&Value>| v.and_then(Value::as_str) == Some(NGSI_LD_NULL);
    let null_list = |v: Option<&Value>| match v.and_then(Value::as_array).map(Vec::as_slice) {
        Some([only]) => only.as_str() == Some(NGSI_LD_NULL) || null(only.get("object")),
        _ => false,
    };
    if member.as_str() == Some(NGSI_LD_NULL) {
        return true;
    }
    // The Null in each attribute type's own member (clause 4.5.19 and the types' clauses).
    null(member.get("value"))
        || null(member.get("object"))
        || null(member.get("vocab"))
        || null(member.get("json"))
        || member
            .get("languageMap")
            .and_then(Value::as_object)
            .is_some_and(|map| map.len() == 1 && null(map.get("@none")))
        || null_list(member.get("valueList"))
        || null_list(member.get("objectList"))
}

/// Does the value hold the NGSI-LD Null anywhere (clause 5.5.4: at any depth of a value)?
fn holds_ngsi_ld_null(value: &Value) -> bool {
    match value {
        Value::String(text) => text == NGSI_LD_NULL,
        Value::Array(items) => items.iter().any(holds_ngsi_ld_null),
        Value::Object(map) => map.values().any(holds_ngsi_ld_null),
        _ => false,
    }
}

/// RFC 7396 merge of `patch` into `target` with the NGSI-LD Null as JSON null: members set to
/// it are removed, objects merged member by member, anything else replaced (clause 5.5.12).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let (Value::Object(target), Value::Object(patch)) = (&mut *target, patch) else {
        *target = without_nulls(patch);
        return;
    };
    for (key, value) in patch {
        if value.as_str() == Some(NGSI_LD_NULL) {
            target.remove(key);
        } else if let Some(existing) = target.get_mut(key) {
            merge_patch(existing, value);
        } else {
            target.insert(key.clone(), without_nulls(value));
        }
    }
}

/// The value with every member that is the NGSI-LD Null left out (what a merge patch adds).
pub fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| v.as_str() != Some(NGSI_LD_NULL))
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A LanguageProperty (clause 5.2.32): language tags to strings or lists of strings, and a
/// `valueType`, if given, of `langString`.
fn check_language_map(name: &str, object: &Map<String, Value>) -> Result<(), yunnao_core::Problem> {
    let valid = object
        .get("languageMap")
        .and_then(Value::as_object)
        .is_some_and(|map| {
            map.iter().all(|(tag, text)| {
                !tag.trim().is_empty()
                    && match text {
                        Value::String(_) => true,
                        Value::Array(items) => items.iter().all(Value::is_string),
                        _ => false,
                    }
            })
        });
    if !valid {
        return Err(errors::bad_request(format!(
            "{name}: a languageMap maps language tags to strings or lists of strings"
        )));
    }
    if object
        .get("valueType")
        .is_some_and(|t| t.as_str() != Some("langString"))
    {
        return Err(errors::bad_request(format!(
            "{name}: a LanguageProperty's valueType is langString"
        )));
    }
    Ok(())
}

/// A ListRelationship's `objectList` as the normalized form has it: `{"object": URI}` entries,
/// bare URIs accepted on input (clause 4.5.22).
fn normalize_object_list(
    name: &str,
    object: &mut Map<String, Value>,
) -> Result<(), yunnao_core::Problem> {
    let invalid = || {
        errors::bad_request(format!(
            "{name}: objectList is a list of entity ids or {{\"object\": entity id}}"
        ))
    };
    let Some(Value::Array(entries)) = object.get_mut("objectList") else {
        return Err(invalid());
    };
    for entry in entries.iter_mut() {
        let target = match entry {
            Value::String(target) => target.clone(),
            Value::Object(inner) => match inner.get("object") {
                Some(Value::String(target)) => target.clone(),
                _ => return Err(invalid()),
            },
            _ => return Err(invalid()),
        };
        check_entity_id(&target)?;
        if entry.is_string() {
            *entry = serde_json::json!({ "object": target });
        }
    }
    Ok(())
}

/// A deleted instance as notifications and the temporal representation show it: its type,
/// its `datasetId` if it had one, the NGSI-LD Null as its value (for a LanguageProperty, a
/// map of `@none` to it) and, when given, when it was deleted.
pub fn deleted_instance(instance: &Value, deleted_at: &str) -> Value {
    let kind = instance
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("Property");
    let null = match kind {
        "LanguageProperty" => serde_json::json!({"@none": NGSI_LD_NULL}),
        "ListProperty" => serde_json::json!([NGSI_LD_NULL]),
        "ListRelationship" => serde_json::json!([{"object": NGSI_LD_NULL}]),
        _ => Value::from(NGSI_LD_NULL),
    };
    let mut shown = Map::new();
    shown.insert("type".into(), kind.into());
    shown.insert(value_member(kind).into(), null);
    if let Some(dataset) = instance.get("datasetId") {
        shown.insert("datasetId".into(), dataset.clone());
    }
    if !deleted_at.is_empty() {
        shown.insert("deletedAt".into(), deleted_at.into());
    }
    Value::Object(shown)
}

/// The member that holds the value of an attribute of this type.
pub fn value_member(kind: &str) -> &'static str {
    match kind {
        "Relationship" => "object",
        "LanguageProperty" => "languageMap",
        "JsonProperty" => "json",
        "VocabProperty" => "vocab",
        "ListProperty" => "valueList",
        "ListRelationship" => "objectList",
        _ => "value",
    }
}

fn is_geometry_type(t: &str) -> bool {
    matches!(
        t,
        "Point" | "MultiPoint" | "LineString" | "MultiLineString" | "Polygon" | "MultiPolygon"
    )
}

fn looks_like_geometry(value: &Value) -> bool {
    value
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(is_geometry_type)
        && value.get("coordinates").is_some()
}

/// A GeoJSON geometry as `geo` types, validated (WGS84 ranges, closed rings).
pub fn geometry(value: &Value) -> Result<geo::Geometry<f64>, String> {
    use geo::{Coord, LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon};
    fn position(value: &Value) -> Result<Coord<f64>, String> {
        let items = value
            .as_array()
            .ok_or("a position is [longitude, latitude]")?;
        let (Some(x), Some(y)) = (
            items.first().and_then(Value::as_f64),
            items.get(1).and_then(Value::as_f64),
        ) else {
            return Err("a position is [longitude, latitude]".into());
        };
        if !(-180.0..=180.0).contains(&x) || !(-90.0..=90.0).contains(&y) {
            return Err(format!("[{x}, {y}] is outside WGS84 longitude/latitude"));
        }
        Ok(Coord { x, y })
    }
    fn positions(value: &Value) -> Result<Vec<Coord<f64>>, String> {
        value
            .as_array()
            .ok_or("expected an array of positions")?
            .iter()
            .map(position)
            .collect()
    }
    fn ring(value: &Value) -> Result<LineString<f64>, String> {
        let coords = positions(value)?;
        if coords.len() < 4 || coords.first() != coords.last() {
            return Err("a polygon ring has at least 4 positions and is closed".into());
        }
        Ok(LineString::new(coords))
    }
    fn polygon(value: &Value) -> Result<Polygon<f64>, String> {
        let rings = value.as_array().ok_or("a polygon is an array of rings")?;
        let mut rings = rings.iter().map(ring);
        let exterior = rings.next().ok_or("a polygon needs an exterior ring")??;
        Ok(Polygon::new(exterior, rings.collect::<Result<_, _>>()?))
    }
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a GeoJSON geometry needs a type")?;
    let coordinates = value
        .get("coordinates")
        .ok_or("a GeoJSON geometry needs coordinates")?;
    Ok(match kind {
        "Point" => Point::from(position(coordinates)?).into(),
        "MultiPoint" => MultiPoint::new(
            positions(coordinates)?
                .into_iter()
                .map(Point::from)
                .collect(),
        )
        .into(),
        "LineString" => {
            let coords = positions(coordinates)?;
            if coords.len() < 2 {
                return Err("a LineString has at least 2 positions".into());
            }
            LineString::new(coords).into()
        }
        "MultiLineString" => MultiLineString::new(
            coordinates
                .as_array()
                .ok_or("expected an array of line strings")?
                .iter()
                .map(|l| positions(l).map(LineString::new))
                .collect::<Result<_, _>>()?,
        )
        .into(),
        "Polygon" => polygon(coordinates)?.into(),
        "MultiPolygon" => MultiPolygon::new(
            coordinates
                .as_array()
                .ok_or("expected an array of polygons")?
                .iter()
                .map(polygon)
                .collect::<Result<_, _>>()?,
        )
        .into(),
        other => return Err(format!("{other:?} is not a GeoJSON geometry type")),
    })
}

/// How an entity is rendered (`options` and `format`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Format {
    #[default]
    Normalized,
    Concise,
    KeyValues,
}

#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    pub format: Format,
    pub sys_attrs: bool,
    /// Expanded names of the attributes to include; all when `None`.
    pub attrs: Option<Vec<String>>,
    /// The attribute (as the client names it) that is a GeoJSON Feature's geometry;
    /// `location` when empty (clause 6.3.15, `geometryProperty`).
    pub geometry_property: String,
    /// `pick`: the members to keep, `id` and `type` among them (clause 4.21).
    pub pick: Option<Vec<String>>,
    /// `omit`: the members to leave out.
    pub omit: Vec<String>,
    /// `lang`: LanguageProperties become Properties in the preferred language (clause 4.15).
    pub lang: Option<LanguageFilter>,
}

impl RenderOptions {
    /// Whether `member` (`id`, `type`) is shown under `pick` and `omit` (clause 4.21).
    pub fn shows_member(&self, member: &str) -> bool {
        let picked = self
            .pick
            .as_ref()
            .is_none_or(|p| p.iter().any(|m| m == member));
        picked && !self.omit.iter().any(|m| m == member)
    }

    /// Every attribute as stored, in one of the formats: the answer the entity cache keeps.
    pub fn whole(&self) -> bool {
        self.attrs.is_none()
            && !self.sys_attrs
            && self.pick.is_none()
            && self.omit.is_empty()
            && self.lang.is_none()
    }
}

/// A `lang` filter (clause 4.15): language ranges by preference (`q` weights, then order).
#[derive(Debug, Clone)]
pub struct LanguageFilter(Vec<String>);

impl LanguageFilter {
    pub fn parse(text: &str) -> Result<Self, yunnao_core::Problem> {
        let mut ranges: Vec<(String, f32)> = Vec::new();
        for item in text.split(',') {
            let mut parts = item.split(';');
            let range = parts.next().unwrap_or_default().trim();
            if range.is_empty() {
                return Err(errors::bad_request(format!(
                    "lang {text:?}: language tags such as zh, en-GB or *, with optional ;q= weights"
                )));
            }
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            ranges.push((range.to_ascii_lowercase(), weight));
        }
        // A stable sort: equal weights keep the client's order.
        ranges.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(Self(
            ranges
                .into_iter()
                .filter(|(_, w)| *w > 0.0)
                .map(|(r, _)| r)
                .collect(),
        ))
    }

    /// The tag of `map` to show: the first range that matches a tag exactly, by truncation
    /// (`nl-BE` → `nl`) or as its prefix (`en` → `en-US`), else any tag the map has.
    pub fn choose<'a>(&self, map: &'a Map<String, Value>) -> Option<&'a String> {
        for range in &self.0 {
            if range == "*" {
                break;
            }
            let mut truncated = range.as_str();
            loop {
                if let Some(tag) = map.keys().find(|t| t.eq_ignore_ascii_case(truncated)) {
                    return Some(tag);
                }
                match truncated.rfind('-') {
                    Some(cut) => truncated = &truncated[..cut],
                    None => break,
                }
            }
            let prefix = format!("{range}-");
            if let Some(tag) = map
                .keys()
                .find(|t| t.to_ascii_lowercase().starts_with(&prefix))
            {
                return Some(tag);
            }
        }
        map.keys()
            .find(|t| *t != "@none")
            .or_else(|| map.keys().next())
    }
}

/// An entity as rendered (compacted) turned into a GeoJSON Feature (clause 4.5.16): its id,
/// the chosen GeoProperty's geometry (null without one), and everything else, `type`
/// included, as its properties.
pub fn feature(
    entity: &Entity,
    rendered: Value,
    context: &Context,
    options: &RenderOptions,
) -> Value {
    let Value::Object(mut properties) = rendered else {
        return rendered;
    };
    let geometry_property = match options.geometry_property.as_str() {
        "" => "location",
        named => named,
    };
    fn geometry_of(attribute: &Value) -> Value {
        match attribute {
            // The default instance (no datasetId) when there are several.
            Value::Array(instances) => instances
                .iter()
                .find(|i| i.get("datasetId").is_none())
                .or(instances.first())
                .map_or(Value::Null, geometry_of),
            Value::Object(object) => object
                .get("value")
                .filter(|v| looks_like_geometry(v))
                .cloned()
                .unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
    let geometry = entity
        .attrs
        .get(&context.expand(geometry_property))
        .map_or(Value::Null, geometry_of);
    properties.remove("id");
    let id = Value::String(entity.id.clone());
    let mut feature = Map::new();
    feature.insert("id".into(), id);
    feature.insert("type".into(), "Feature".into());
    feature.insert("geometry".into(), geometry);
    feature.insert("properties".into(), Value::Object(properties));
    Value::Object(feature)
}

/// `id` and `type` (one name, or a list), compacted with `context`.
pub fn render_head(entity: &Entity, context: &Context) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("id".into(), entity.id.clone().into());
    let mut types: Vec<Value> = entity
        .types
        .iter()
        .map(|t| Value::String(context.compact(t)))
        .collect();
    let type_value = if types.len() == 1 {
        types.remove(0)
    } else {
        Value::Array(types)
    };
    out.insert("type".into(), type_value);
    out
}

/// The entity compacted with `context`.
pub fn render(entity: &Entity, context: &Context, options: &RenderOptions) -> Value {
    let mut out = render_head(entity, context);
    for member in ["id", "type"] {
        if !options.shows_member(member) {
            out.remove(member);
        }
    }
    if let Some(scope) = &entity.scope {
        out.insert("scope".into(), scope.clone());
    }
    if options.sys_attrs {
        out.insert("createdAt".into(), entity.created_at.clone().into());
        out.insert("modifiedAt".into(), entity.modified_at.clone().into());
    }
    let omitted: Vec<String> = options.omit.iter().map(|o| context.expand(o)).collect();
    if omitted.iter().any(|o| o == SCOPE_IRI) {
        out.remove("scope");
    }
    for (name, attribute) in &entity.attrs {
        if let Some(wanted) = &options.attrs
            && !wanted.contains(name)
        {
            continue;
        }
        if omitted.contains(name) {
            continue;
        }
        out.insert(
            context.compact(name),
            render_attribute(attribute, context, options),
        );
    }
    Value::Object(out)
}

pub fn render_attribute(attribute: &Value, context: &Context, options: &RenderOptions) -> Value {
    if let Value::Array(instances) = attribute {
        if options.format == Format::KeyValues {
            // Clause 4.5.4: instances by datasetId, "@none" for the default one.
            let by_dataset: Map<String, Value> = instances
                .iter()
                .map(|instance| {
                    let dataset = instance
                        .get("datasetId")
                        .and_then(Value::as_str)
                        .unwrap_or("@none");
                    (
                        dataset.to_owned(),
                        render_attribute(instance, context, options),
                    )
                })
                .collect();
            return serde_json::json!({ "dataset": by_dataset });
        }
        return Value::Array(
            instances
                .iter()
                .map(|a| render_attribute(a, context, options))
                .collect(),
        );
    }
    let Value::Object(object) = attribute else {
        return attribute.clone();
    };
    let mut kind = object
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("Property");
    // Clause 4.15: in the language asked for, a LanguageProperty is a Property with `lang`.
    let mut in_language = None;
    if kind == "LanguageProperty"
        && let (Some(filter), Some(Value::Object(map))) = (&options.lang, object.get("languageMap"))
        && let Some(tag) = filter.choose(map)
    {
        in_language = Some((tag.clone(), map[tag].clone()));
        kind = "Property";
    }
    if options.format == Format::KeyValues {
        if let Some((_, text)) = in_language {
            return text;
        }
        return simplified_value(kind, attribute, context);
    }
    let mut out = Map::new();
    if let Some((tag, text)) = &in_language {
        out.insert("type".into(), "Property".into());
        out.insert("value".into(), text.clone());
        out.insert("lang".into(), tag.clone().into());
    }
    for (member, value) in object {
        match member.as_str() {
            "type" | "languageMap" if in_language.is_some() => {}
            "createdAt" | "modifiedAt" if !options.sys_attrs => {}
            // Concise: the type is implied by the member that holds the value.
            "type" if options.format == Format::Concise => {}
            "vocab" if kind == "VocabProperty" => {
                out.insert(member.clone(), compact_vocab(value, context));
            }
            _ if STRUCTURAL.contains(&member.as_str()) => {
                out.insert(member.clone(), value.clone());
            }
            _ => {
                out.insert(
                    context.compact(member),
                    render_attribute(value, context, options),
                );
            }
        }
    }
    if options.format == Format::Concise
        && out.len() == 1
        && kind == "Property"
        && let Some(value) = out.remove("value")
    {
        return value;
    }
    Value::Object(out)
}

/// What an attribute instance of `kind` holds in its value member, as a reader with `context`
/// sees it (the simplified representations, clauses 4.5.4 and 4.5.9): vocab terms compacted, a
/// ListRelationship's objects as a bare array of ids.
fn bare_value(kind: &str, attribute: &Value, context: &Context) -> Value {
    match (kind, attribute.get(value_member(kind))) {
        (_, None) => Value::Null,
        ("VocabProperty", Some(vocab)) => compact_vocab(vocab, context),
        ("ListRelationship", Some(Value::Array(entries))) => Value::Array(
            entries
                .iter()
                .map(|entry| entry.get("object").unwrap_or(entry).clone())
                .collect(),
        ),
        (_, Some(value)) => value.clone(),
    }
}

/// An attribute's value in the simplified representations (keyValues, clause 4.5.4; the
/// simplified temporal one, clause 4.5.9): the bare value, kept under its member for the
/// types whose value is a JSON object or a term, so it cannot be read as a Property's.
pub fn simplified_value(kind: &str, attribute: &Value, context: &Context) -> Value {
    let value = bare_value(kind, attribute, context);
    match kind {
        "LanguageProperty" | "JsonProperty" | "VocabProperty" => {
            serde_json::json!({ value_member(kind): value })
        }
        _ => value,
    }
}

/// A VocabProperty's stored IRIs (one or a list) as terms of `context`.
fn compact_vocab(vocab: &Value, context: &Context) -> Value {
    match vocab {
        Value::String(iri) => Value::String(context.compact(iri)),
        Value::Array(iris) => {
            Value::Array(iris.iter().map(|i| compact_vocab(i, context)).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2026-11-29T08:00:00.000Z";

    #[test]
    fn concise_and_normalized_input_give_the_same_entity() {
        let context = Context::core();
        let normalized = parse_entity(
            json!({"id": "urn:ngsi-ld:ParkingSpot:1", "type": "ParkingSpot",
                   "status": {"type": "Property", "value": "free", "observedAt": "2026-11-29T07:00:00Z"},
                   "refParkingSite": {"type": "Relationship", "object": "urn:ngsi-ld:ParkingSite:9"},
                   "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.38, 36.07]}}}),
            &context,
            NOW,
        )
        .expect("normalized");
        let concise = parse_entity(
            json!({"id": "urn:ngsi-ld:ParkingSpot:1", "type": "ParkingSpot",
                   "status": {"value": "free", "observedAt": "2026-11-29T07:00:00Z"},
                   "refParkingSite": {"object": "urn:ngsi-ld:ParkingSite:9"},
                   "location": {"type": "Point", "coordinates": [120.38, 36.07]}}),
            &context,
            NOW,
        )
        .expect("concise");
        assert_eq!(normalized, concise);
        let key_values = render(
            &normalized,
            &context,
            &RenderOptions {
                format: Format::KeyValues,
                ..Default::default()
            },
        );
        assert_eq!(
            key_values,
            json!({"id": "urn:ngsi-ld:ParkingSpot:1", "type": "ParkingSpot", "status": "free",
                   "refParkingSite": "urn:ngsi-ld:ParkingSite:9",
                   "location": {"type": "Point", "coordinates": [120.38, 36.07]}})
        );
    }

    #[test]
    fn bad_entities_are_refused_with_a_reason() {
        let context = Context::core();
        let cases = [
            (json!([]), "JSON object"),
            (json!({"type": "T"}), "needs an id"),
            (json!({"id": "not a uri", "type": "T"}), "not a URI"),
            (json!({"id": "urn:x:1"}), "needs a type"),
            (json!({"id": "urn:x:1", "type": "T", "a": null}), "null"),
            (
                json!({"id": "urn:x:1", "type": "T", "a": {"type": "Thing", "value": 1}}),
                "attribute type",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "a": {"type": "Property"}}),
                "needs a non-null value",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "r": {"type": "Relationship", "object": 5}}),
                "entity id",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "location": {"type": "Point", "coordinates": [200, 0]}}),
                "outside WGS84",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "location": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 1]]]}}),
                "closed",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "a": {"value": 1, "observedAt": "yesterday"}}),
                "observedAt",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "bad name": 1}),
                "not a valid",
            ),
        ];
        for (body, reason) in cases {
            let error = parse_entity(body.clone(), &context, NOW).expect_err(&body.to_string());
            assert_eq!(error.status, 400, "{body}");
            assert!(
                error.detail.as_deref().unwrap_or("").contains(reason),
                "{body}: {:?}",
                error.detail
            );
        }
    }
}
