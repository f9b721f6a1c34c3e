//! Just enough JSON-LD for NGSI-LD: expanding and compacting entity types and attribute names
//! with the core @context (built in, never fetched) and a request's user context (inline terms,
//! or a URL of the core context).
//!
//! NGSI-LD fixes the structure of entities (id, type, value, object, observedAt, …), so a broker
//! does not need a general JSON-LD processor: it needs the term → IRI map of the request's
//! context, with the core terms protected, and the default vocabulary for unknown terms.

use crate::errors;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::LazyLock;
use yunnao_core::Problem;
use yunnao_store::{Arg, Db, DbResultExt, sqlx};

/// Unknown terms expand into this vocabulary (CIM 009 §5.5.7).
pub const DEFAULT_VOCAB: &str = "https://uri.etsi.org/ngsi-ld/default-context/";
/// The unversioned alias of the core context, used in responses.
pub const CORE_CONTEXT_URL: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld";
/// The media type of JSON-LD.
pub const JSON_LD: &str = "application/ld+json";
/// The Link header that names the core context beside a plain JSON body (checked by a test).
pub const CORE_LINK: &str = "<https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld>; \
     rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"";

/// Every URL under which the core context is published: all answered by the built-in copy.
pub fn is_core_context_url(url: &str) -> bool {
    let url = url.trim();
    url == CORE_CONTEXT_URL
        || url.starts_with("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v")
            && url.ends_with(".jsonld")
}

const CORE_JSON: &str = include_str!("../data/ngsi-ld-core-context-v1.9.jsonld");

/// term → IRI and back.
#[derive(Debug, Default, Clone)]
struct Terms {
    expand: HashMap<String, String>,
    compact: HashMap<String, String>,
}

impl Terms {
    /// Reads a context object's term definitions (strings or objects with `@id`), resolving
    /// compact IRIs against the prefixes defined in the same object or in `base`.
    fn from_object(object: &serde_json::Map<String, Value>, base: &Terms) -> Self {
        let mut raw: Vec<(String, String)> = Vec::new();
        for (term, definition) in object {
            if term.starts_with('@') {
                continue;
            }
            let iri = match definition {
                Value::String(iri) => iri.clone(),
                Value::Object(def) => match def.get("@id").and_then(Value::as_str) {
                    Some(iri) => iri.to_owned(),
                    None => continue,
                },
                _ => continue,
            };
            raw.push((term.clone(), iri));
        }
        let prefixes: HashMap<&str, &str> =
            raw.iter().map(|(t, i)| (t.as_str(), i.as_str())).collect();
        let mut terms = Terms::default();
        for (term, iri) in &raw {
            let full = match iri.split_once(':') {
                Some((prefix, rest)) if !rest.starts_with("//") => {
                    match prefixes
                        .get(prefix)
                        .copied()
                        .or_else(|| base.expand.get(prefix).map(String::as_str))
                    {
                        Some(base_iri) => format!("{base_iri}{rest}"),
                        None => iri.clone(),
                    }
                }
                _ => iri.clone(),
            };
            if full.starts_with('@') {
                continue;
            }
            terms.compact.entry(full.clone()).or_insert(term.clone());
            terms.expand.insert(term.clone(), full);
        }
        terms
    }
}

static CORE: LazyLock<Terms> = LazyLock::new(|| {
    let parsed: Value = serde_json::from_str(CORE_JSON).unwrap_or(Value::Null);
    match parsed.get("@context").and_then(Value::as_object) {
        Some(object) => Terms::from_object(object, &Terms::default()),
        None => Terms::default(),
    }
});

/// The effective context of one request: the user's terms, then the core (protected) terms.
#[derive(Debug, Clone, Default)]
pub struct Context {
    user: Terms,
    /// The @context as the client gave it, echoed in `application/ld+json` responses.
    pub source: Option<Value>,
}

impl Context {
    /// The core context alone.
    pub fn core() -> Self {
        Self::default()
    }

    /// Does this context name no terms beyond the core context's?
    pub fn is_core(&self) -> bool {
        self.user.expand.is_empty() && self.user.compact.is_empty()
    }

    /// Builds a context from an `@context` value: a URL, an object of terms, or an array of
    /// both. Only the core context's URLs are resolved; other remote contexts are refused
    /// (the broker never reaches out to the internet).
    pub fn from_value(value: &Value) -> Result<Self, Problem> {
        Self::from_value_with(value, &HashMap::new())
    }

    /// [`Context::from_value`] with remote contexts already fetched (URL → document).
    pub fn from_value_with(
        value: &Value,
        remote: &HashMap<String, Value>,
    ) -> Result<Self, Problem> {
        let mut user = Terms::default();
        collect(value, &mut user, remote, 0)?;
        Ok(Self {
            user,
            source: Some(value.clone()),
        })
    }

    /// The URL a `Link` header names.
    pub fn link_url(header: &str) -> Result<String, Problem> {
        if !header.contains("json-ld#context") {
            return Err(errors::bad_request(
                "the Link header must have rel=\"http://www.w3.org/ns/json-ld#context\"",
            ));
        }
        Ok(header
            .split(';')
            .next()
            .map(|part| part.trim().trim_start_matches('<').trim_end_matches('>'))
            .unwrap_or_default()
            .to_owned())
    }

    /// The IRI of a term: core terms first (they are protected), then the user's, compact IRIs
    /// through known prefixes, absolute IRIs as they are, anything else in the default
    /// vocabulary.
    pub fn expand(&self, term: &str) -> String {
        if let Some(iri) = CORE.expand.get(term) {
            return iri.clone();
        }
        if let Some(iri) = self.user.expand.get(term) {
            return iri.clone();
        }
        if let Some((prefix, rest)) = term.split_once(':') {
            if rest.starts_with("//") {
                return term.to_owned();
            }
            if let Some(base) = self
                .user
                .expand
                .get(prefix)
                .or_else(|| CORE.expand.get(prefix))
            {
                return format!("{base}{rest}");
            }
            // urn:…, and other absolute IRIs.
            return term.to_owned();
        }
        format!("{DEFAULT_VOCAB}{term}")
    }

    /// Is `term` one the core context defines (the same under every context)?
    pub fn is_core_term(term: &str) -> bool {
        // `id` and `type` alias the keywords `@id` and `@type`.
        matches!(term, "id" | "type") || CORE.expand.contains_key(term)
    }

    /// The shortest name of an IRI under this context.
    pub fn compact(&self, iri: &str) -> String {
        if let Some(term) = self.user.compact.get(iri) {
            return term.clone();
        }
        if let Some(term) = CORE.compact.get(iri) {
            return term.clone();
        }
        if let Some(term) = iri.strip_prefix(DEFAULT_VOCAB) {
            return term.to_owned();
        }
        iri.to_owned()
    }
}

/// The remote (not built-in) context URLs a `@context` value names.
pub fn remote_urls(value: &Value) -> Vec<String> {
    match value {
        Value::String(url) if !is_core_context_url(url) => vec![url.clone()],
        Value::Array(items) => items.iter().flat_map(remote_urls).collect(),
        _ => Vec::new(),
    }
}

fn collect(
    value: &Value,
    into: &mut Terms,
    remote: &HashMap<String, Value>,
    depth: usize,
) -> Result<(), Problem> {
    if depth > 8 {
        return Err(errors::bad_request("@context nests too deeply"));
    }
    match value {
        Value::String(url) if is_core_context_url(url) => Ok(()),
        Value::String(url) => match remote.get(url).and_then(|doc| doc.get("@context")) {
            Some(inner) => collect(inner, into, remote, depth + 1),
            None => Err(errors::ld_context_not_available(format!(
                "the @context {url:?} is not built in and not on this broker's allow-list for remote contexts \
                 (ngsi_ld_context_allow); send its terms inline"
            ))),
        },
        Value::Array(items) => {
            for item in items {
                collect(item, into, remote, depth + 1)?;
            }
            Ok(())
        }
        Value::Object(object) => {
            if let Some(term) = object
                .iter()
                .find(|(_, definition)| definition.get("@context").is_some())
                .map(|(term, _)| term)
            {
                return Err(errors::bad_request(format!(
                    "the term {term:?} has a scoped @context, which NGSI-LD user contexts may not \
                     have (clause 5.5.7)"
                )));
            }
            let terms = Terms::from_object(object, into);
            for (term, iri) in terms.expand {
                into.compact.entry(iri.clone()).or_insert(term.clone());
                into.expand.insert(term, iri);
            }
            Ok(())
        }
        _ => Err(errors::bad_request(
            "@context must be a URL, an object or an array of them",
        )),
    }
}

/// Remote user contexts: fetched only from the allow-listed URL prefixes, once, then kept;
/// those hosted by the broker itself (`/jsonldContexts`) read from its database.
pub struct RemoteContexts {
    allow: Vec<String>,
    cache: std::sync::Mutex<HashMap<String, Value>>,
    client: reqwest::Client,
    hosted: Option<Db>,
}

/// Where the broker serves a hosted context: any URL ending in this and an id names one.
pub const HOSTED_PATH: &str = "/ngsi-ld/v1/jsonldContexts/";

/// The hosted context id a URL names, whatever host the client reached the broker by.
pub fn hosted_id(url: &str) -> Option<&str> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    let (_, id) = url.split_once(HOSTED_PATH)?;
    (!id.is_empty() && !id.contains(['/', '?', '#'])).then_some(id)
}

/// Largest remote context accepted.
const REMOTE_CONTEXT_MAX_BYTES: usize = 1024 * 1024;
/// Remote contexts kept at most (emptied when full).
const REMOTE_CONTEXTS_MAX: usize = 1000;

impl RemoteContexts {
    /// `hosted`: the database of the broker's own hosted contexts.
    pub fn new(allow: Vec<String>, hosted: Option<Db>) -> Self {
        Self {
            allow,
            cache: std::sync::Mutex::new(HashMap::new()),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            hosted,
        }
    }

    /// The remote contexts fetched and kept, by URL.
    pub fn cached_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        urls.sort();
        urls
    }

    /// A kept remote context, if `url` names one.
    pub fn cached(&self, url: &str) -> Option<Value> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .cloned()
    }

    /// Drops a kept remote context (it is fetched again when next named); false if none.
    pub fn forget(&self, url: &str) -> bool {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(url)
            .is_some()
    }

    /// The context of a request: remote URLs on the allow-list fetched (or taken from the
    /// cache) first.
    pub async fn resolve(&self, value: &Value) -> Result<Context, Problem> {
        let mut fetched = HashMap::new();
        let mut pending = remote_urls(value);
        while let Some(url) = pending.pop() {
            if fetched.contains_key(&url) || fetched.len() > 16 {
                continue;
            }
            let Some(document) = self.document(&url).await? else {
                continue; // refused below, with the reason
            };
            if let Some(inner) = document.get("@context") {
                pending.extend(remote_urls(inner));
            }
            fetched.insert(url, document);
        }
        Context::from_value_with(value, &fetched)
    }

    async fn document(&self, url: &str) -> Result<Option<Value>, Problem> {
        if let (Some(db), Some(id)) = (&self.hosted, hosted_id(url))
            && let Some(document) = hosted_document(db, id).await?
        {
            return Ok(Some(document));
        }
        if let Some(document) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
        {
            return Ok(Some(document.clone()));
        }
        if !self
            .allow
            .iter()
            .any(|prefix| !prefix.is_empty() && url.starts_with(prefix.as_str()))
        {
            return Ok(None);
        }
        let unavailable =
            |why: String| errors::ld_context_not_available(format!("@context {url:?}: {why}"));
        let response = self
            .client
            .get(url)
            .header("accept", "application/ld+json, application/json")
            .send()
            .await
            .map_err(|e| unavailable(format!("not fetched: {e}")))?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "the server answered {}",
                response.status()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("not read: {e}")))?;
        if body.len() > REMOTE_CONTEXT_MAX_BYTES {
            return Err(unavailable("larger than 1 MiB".into()));
        }
        // Retrieved but not a context: the request's fault, not the network's (clause 5.5.6).
        let invalid = |why: &str| errors::bad_request(format!("@context {url:?}: {why}"));
        let document: Value = serde_json::from_slice(&body)
            .map_err(|e| invalid(&format!("not a JSON-LD context (not JSON: {e})")))?;
        if document.get("@context").is_none() {
            return Err(invalid(
                "not a JSON-LD context (the document has no @context)",
            ));
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= REMOTE_CONTEXTS_MAX {
            cache.clear();
        }
        cache.insert(url.to_owned(), document.clone());
        Ok(Some(document))
    }
}

/// A hosted context's document (`{"@context": …}`), if there is one with this id.
pub async fn hosted_document(db: &Db, id: &str) -> Result<Option<Value>, Problem> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT document FROM ngsi_contexts WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(db.pool())
            .await
            .db()?;
    text.map(|text| {
        serde_json::from_str(&text)
            .map_err(|e| Problem::internal(format!("hosted @context {id}: {e}")))
    })
    .transpose()
}

/// Keeps `document` as hosted @context `id` (clause 5.13.2), owned by `owner`'s department.
pub async fn host(
    db: &Db,
    id: &str,
    document: &str,
    owner: &str,
    created_at: &str,
) -> Result<(), Problem> {
    let mut tx = db.begin_fast_write().await?;
    tx.execute(
        "INSERT INTO ngsi_contexts (id, document, owner_department, created_at) VALUES ($1, $2, $3, $4)",
        &[
            Arg::text(id),
            Arg::text(document),
            Arg::text(owner),
            Arg::text(created_at),
        ],
    )
    .await?;
    tx.commit().await
}

/// Every hosted @context: (id, created at), oldest first.
pub async fn hosted(db: &Db) -> Result<Vec<(String, String)>, Problem> {
    db.fetch_all(
        "SELECT id, created_at FROM ngsi_contexts ORDER BY created_at, id",
        &[],
    )
    .await
}

/// The department that owns hosted @context `id`, if it is hosted.
pub async fn hosted_owner(db: &Db, id: &str) -> Result<Option<String>, Problem> {
    let row: Option<(String,)> = db
        .fetch_optional(
            "SELECT owner_department FROM ngsi_contexts WHERE id = $1",
            &[Arg::text(id)],
        )
        .await?;
    Ok(row.map(|(owner,)| owner))
}

/// Forgets hosted @context `id`.
pub async fn unhost(db: &Db, id: &str) -> Result<(), Problem> {
    let mut tx = db.begin_fast_write().await?;
    tx.execute("DELETE FROM ngsi_contexts WHERE id = $1", &[Arg::text(id)])
        .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hosted_contexts_are_named_by_their_path_on_any_host() {
        for (url, id) in [
            (
                "http://127.0.0.1:8080/ngsi-ld/v1/jsonldContexts/abc",
                Some("abc"),
            ),
            (
                "https://city.example/ngsi-ld/v1/jsonldContexts/abc",
                Some("abc"),
            ),
            ("http://h/ngsi-ld/v1/jsonldContexts/", None),
            ("http://h/ngsi-ld/v1/jsonldContexts/abc/more", None),
            ("http://h/ngsi-ld/v1/jsonldContexts/abc?x=1", None),
            ("ftp://h/ngsi-ld/v1/jsonldContexts/abc", None),
            ("http://h/contexts/abc", None),
        ] {
            assert_eq!(hosted_id(url), id, "{url}");
        }
    }

    #[test]
    fn terms_expand_and_compact() {
        let core = Context::core();
        let user = Context::from_value(&json!([
            {"schema": "https://schema.org/", "name": "schema:name",
             "ParkingSpot": "https://smartdatamodels.org/dataModel.Parking/ParkingSpot",
             "occupancy": {"@id": "https://smartdatamodels.org/dataModel.Parking/occupancy"},
             "status": "https://smartdatamodels.org/dataModel.Parking/status"},
            "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
        ]))
        .expect("context");
        // (context, term, IRI, compacted back)
        let cases: &[(&Context, &str, &str, &str)] = &[
            (
                &core,
                "location",
                "https://uri.etsi.org/ngsi-ld/location",
                "location",
            ),
            (
                &core,
                "observedAt",
                "https://uri.etsi.org/ngsi-ld/observedAt",
                "observedAt",
            ),
            (
                &core,
                "Property",
                "https://uri.etsi.org/ngsi-ld/Property",
                "Property",
            ),
            (
                &core,
                "speed",
                "https://uri.etsi.org/ngsi-ld/default-context/speed",
                "speed",
            ),
            (
                &core,
                "https://example.org/a",
                "https://example.org/a",
                "https://example.org/a",
            ),
            (&user, "name", "https://schema.org/name", "name"),
            (
                &user,
                "schema:color",
                "https://schema.org/color",
                "https://schema.org/color",
            ),
            (
                &user,
                "ParkingSpot",
                "https://smartdatamodels.org/dataModel.Parking/ParkingSpot",
                "ParkingSpot",
            ),
            (
                &user,
                "occupancy",
                "https://smartdatamodels.org/dataModel.Parking/occupancy",
                "occupancy",
            ),
            // Core terms are protected: the core context comes last and wins (v1.9 defines
            // `status`, for subscriptions).
            (
                &user,
                "status",
                "https://uri.etsi.org/ngsi-ld/status",
                "status",
            ),
            (
                &user,
                "location",
                "https://uri.etsi.org/ngsi-ld/location",
                "location",
            ),
        ];
        for (context, term, iri, back) in cases {
            assert_eq!(context.expand(term), *iri, "expand {term}");
            assert_eq!(context.compact(iri), *back, "compact {iri}");
        }
    }

    #[test]
    fn remote_contexts_are_refused_not_fetched() {
        let error =
            Context::from_value(&json!("https://example.org/context.jsonld")).expect_err("remote");
        assert_eq!(error.status, 503);
        for url in [
            "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
            "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld",
            "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld",
        ] {
            assert!(Context::from_value(&json!(url)).is_ok(), "{url}");
        }
    }
}
