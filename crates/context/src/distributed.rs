//! Distributed operations, consumption side (clauses 4.3.3, 4.3.6): Retrieve Entity and Query
//! Entities are also asked of the context sources whose registrations cover them, and their
//! answers merged with the broker's own entities (by id; types joined; of two instances of an
//! attribute the one observed later wins, else the broker's own). Registrations are kept in
//! memory (reloaded on change and every few seconds), so a broker without any pays nothing.
//!
//! A request forwarded carries the client's context (`Link`), no credential, and a `Via` header
//! naming this broker: a request that already passed through it is not forwarded again, so a
//! loop of registrations ends. A source that fails or answers nonsense is left out (logged).

use crate::Viewer;
use crate::jsonld::Context;
use crate::model::{self, Entity};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use yunnao_core::Problem;
use yunnao_store::{Db, DbResultExt, sqlx};

/// How long a source has to answer.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from a source.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// The query parameters forwarded with a query: those that select entities (paging is the
/// broker's, over the merged answer; rendering is the broker's, from the normalized form).
const FORWARDED: &[&str] = &[
    "type",
    "id",
    "idPattern",
    "attrs",
    "q",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "csf",
    "scopeQ",
];

/// One registration, as forwarding needs it.
#[derive(Debug, Clone)]
pub struct Source {
    tenant: String,
    owner: String,
    endpoint: String,
    /// The tenant to ask for at the source (the registration's `tenant`).
    source_tenant: Option<String>,
    operations: Option<Vec<String>>,
    expires_at_ms: Option<i64>,
    /// RegistrationInfo, names expanded.
    information: Vec<Value>,
}

impl Source {
    fn from_definition(tenant: String, owner: String, definition: &Value) -> Option<Self> {
        Some(Self {
            tenant,
            owner,
            endpoint: definition["endpoint"]
                .as_str()?
                .trim_end_matches('/')
                .to_owned(),
            source_tenant: definition["tenant"].as_str().map(str::to_owned),
            operations: definition["operations"].as_array().map(|ops| {
                ops.iter()
                    .filter_map(|o| o.as_str().map(str::to_owned))
                    .collect()
            }),
            expires_at_ms: definition["expiresAt"]
                .as_str()
                .and_then(yunnao_core::time::parse_rfc3339_ms),
            information: definition["information"].as_array()?.clone(),
        })
    }

    /// Does the registration offer `operation` (clause 5.2.9: named, or in a group; all the
    /// consumption operations when none are named)?
    fn offers(&self, operation: &str) -> bool {
        self.operations.as_ref().is_none_or(|ops| {
            ops.iter().any(|o| {
                o == operation
                    || matches!(
                        o.as_str(),
                        "federationOps" | "retrieveOps" | "redirectionOps"
                    )
            })
        })
    }

    /// Does some RegistrationInfo cover an entity of one of `types` (any when none are known)
    /// with one of `ids` (any when none) and one of `attrs` (any when none)?
    fn covers(&self, types: &[String], ids: &[String], attrs: &[String]) -> bool {
        self.information
            .iter()
            .any(|info| crate::registrations::covers(info, (types, ids, None), attrs))
    }
}

/// What a forwarded request carries besides its path.
#[derive(Clone)]
pub struct Forward {
    /// The client's `Link` header (its context), when it sent one.
    pub link: Option<String>,
    /// The `Via` header to send: the incoming one with this broker added.
    pub via: String,
}

/// The registered context sources of every tenant, and the client that asks them.
#[derive(Clone)]
pub struct Sources {
    db: Db,
    registered: Arc<RwLock<Vec<Source>>>,
    client: reqwest::Client,
}

impl Sources {
    pub fn new(db: Db) -> Self {
        let client = reqwest::Client::builder()
            .timeout(SOURCE_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            db,
            registered: Arc::default(),
            client,
        }
    }

    /// Reads every registration from the database.
    pub async fn reload(&self) -> Result<(), Problem> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT tenant, owner_department, definition FROM ngsi_registrations ORDER BY tenant, id",
        )
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let sources = rows
            .into_iter()
            .filter_map(|(tenant, owner, definition)| {
                let definition: Value = serde_json::from_str(&definition).ok()?;
                Source::from_definition(tenant, owner, &definition)
            })
            .collect();
        *self.registered.write().unwrap_or_else(|p| p.into_inner()) = sources;
        Ok(())
    }

    /// The sources `viewer` may use in `tenant` for `operation` that `covers` accepts: those
    /// registered by the viewer's department (all, for platform admins), not expired.
    fn select(
        &self,
        tenant: &str,
        viewer: &Viewer,
        operation: &str,
        covers: impl Fn(&Source) -> bool,
    ) -> Vec<Source> {
        let now = yunnao_core::time::now_ms();
        self.registered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.tenant == tenant)
            .filter(|s| match viewer {
                Viewer::All => true,
                Viewer::Department(department) => s.owner == *department,
                Viewer::Public => false,
            })
            .filter(|s| s.expires_at_ms.is_none_or(|at| at > now))
            .filter(|s| s.offers(operation) && covers(s))
            .cloned()
            .collect()
    }

    /// Sources that may hold entity `id` (of one of `types`, when known) with one of `attrs`
    /// (expanded; any when none are asked for).
    pub fn for_entity(
        &self,
        tenant: &str,
        viewer: &Viewer,
        (id, types): (&str, &[String]),
        attrs: &[String],
    ) -> Vec<Source> {
        self.select(tenant, viewer, "retrieveEntity", |s| {
            s.covers(types, &[id.to_owned()], attrs)
        })
    }

    /// Sources that may hold entities of a query (by its types, ids and attributes).
    pub fn for_query(
        &self,
        tenant: &str,
        viewer: &Viewer,
        (types, ids): (&[String], &[String]),
        attrs: &[String],
    ) -> Vec<Source> {
        self.select(tenant, viewer, "queryEntity", |s| {
            s.covers(types, ids, attrs)
        })
    }

    /// Asks `source` for `path_and_query` (under its `/ngsi-ld/v1`); the JSON answer, or
    /// `None` (logged) when it has none or fails.
    async fn ask(&self, source: &Source, path_and_query: &str, forward: &Forward) -> Option<Value> {
        let url = format!("{}/ngsi-ld/v1{path_and_query}", source.endpoint);
        let mut request = self
            .client
            .get(&url)
            .header("accept", "application/json")
            .header("via", &forward.via);
        if let Some(link) = &forward.link {
            request = request.header("link", link);
        }
        if let Some(tenant) = &source.source_tenant {
            request = request.header("ngsild-tenant", tenant);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => match read_capped(response).await {
                Ok(value) => Some(value),
                Err(error) => {
                    tracing::warn!(%url, %error, "context source's answer left out");
                    None
                }
            },
            Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => None,
            Ok(response) => {
                tracing::warn!(%url, status = %response.status(), "context source refused");
                None
            }
            Err(error) => {
                tracing::warn!(%url, %error, "context source unreachable");
                None
            }
        }
    }

    /// The answers of every source to `path_and_query`, asked at once, in the sources' order.
    async fn ask_all(
        &self,
        sources: &[Source],
        path_and_query: &str,
        forward: &Forward,
    ) -> Vec<Value> {
        let mut asking = tokio::task::JoinSet::new();
        for (index, source) in sources.iter().enumerate() {
            let (this, source, path, forward) = (
                self.clone(),
                source.clone(),
                path_and_query.to_owned(),
                forward.clone(),
            );
            asking.spawn(async move { (index, this.ask(&source, &path, &forward).await) });
        }
        let mut answers = Vec::new();
        while let Some(done) = asking.join_next().await {
            if let Ok((index, Some(answer))) = done {
                answers.push((index, answer));
            }
        }
        answers.sort_by_key(|(index, _)| *index);
        answers.into_iter().map(|(_, answer)| answer).collect()
    }

    /// Entity `id` as each of `sources` has it, read with `context`.
    pub async fn entities_by_id(
        &self,
        sources: &[Source],
        id: &str,
        context: &Context,
        forward: &Forward,
    ) -> Vec<Entity> {
        let path = format!("/entities/{}", encode(id));
        self.ask_all(sources, &path, forward)
            .await
            .into_iter()
            .filter_map(|answer| read_entity(answer, context))
            .filter(|entity| entity.id == id)
            .collect()
    }

    /// The entities `sources` answer to a query (`params`: the client's, of which the
    /// selecting ones are forwarded; `wanted`: how many the page needs at most).
    pub async fn query(
        &self,
        sources: &[Source],
        params: &HashMap<String, String>,
        wanted: usize,
        context: &Context,
        forward: &Forward,
    ) -> Vec<Entity> {
        let mut keys: Vec<&String> = params
            .keys()
            .filter(|k| FORWARDED.contains(&k.as_str()))
            .collect();
        keys.sort();
        let mut query: Vec<String> = keys
            .iter()
            .map(|k| format!("{k}={}", encode(&params[*k])))
            .collect();
        if params.contains_key("limit") || params.contains_key("offset") {
            query.push(format!("limit={wanted}"));
        }
        let path = if query.is_empty() {
            "/entities".to_owned()
        } else {
            format!("/entities?{}", query.join("&"))
        };
        self.ask_all(sources, &path, forward)
            .await
            .into_iter()
            .filter_map(|answer| match answer {
                Value::Array(items) => Some(items),
                _ => None,
            })
            .flatten()
            .filter_map(|item| read_entity(item, context))
            .collect()
    }
}

/// A source's JSON answer, read whole unless it grows past [`MAX_ANSWER_BYTES`] (a source
/// cannot make the broker hold more).
async fn read_capped(mut response: reqwest::Response) -> Result<Value, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER_BYTES {
            return Err(format!("more than {MAX_ANSWER_BYTES} bytes"));
        }
    }
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

/// A source's entity in the normalized form, read as the broker reads its own input.
fn read_entity(value: Value, context: &Context) -> Option<Entity> {
    let now = yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms());
    match model::parse_entity(value, context, &now) {
        Ok(entity) => Some(entity),
        Err(problem) => {
            tracing::warn!(%problem, "context source sent an entity the broker cannot read");
            None
        }
    }
}

/// Percent-encodes a path segment or query value.
fn encode(text: &str) -> String {
    reqwest::Url::parse("http://x/")
        .map(|mut url| {
            url.query_pairs_mut().append_pair("v", text);
            url.query()
                .unwrap_or_default()
                .trim_start_matches("v=")
                .to_owned()
        })
        .unwrap_or_else(|_| text.to_owned())
}

/// Merges `other` (a source's copy of the same entity) into `into`: types joined, attributes
/// it lacks added, and of two of the same name the one observed later kept.
pub fn merge(into: &mut Entity, other: Entity) {
    for t in other.types {
        if !into.types.contains(&t) {
            into.types.push(t);
        }
    }
    for (name, attribute) in other.attrs {
        let keep_theirs = into
            .attrs
            .get(&name)
            .is_none_or(|mine| observed(&attribute) > observed(mine));
        if keep_theirs {
            into.attrs.insert(name, attribute);
        }
    }
}

/// When an attribute (its first instance) was observed, if it says.
fn observed(attribute: &Value) -> Option<i64> {
    let first = match attribute {
        Value::Array(instances) => instances.first()?,
        one => one,
    };
    first["observedAt"]
        .as_str()
        .and_then(yunnao_core::time::parse_rfc3339_ms)
}

/// The `Via` header of a forwarded request, and whether the incoming one shows the request
/// already passed through this broker (`alias`), in which case it is not forwarded again.
pub fn via(incoming: Option<&str>, alias: &str) -> (String, bool) {
    let looped = incoming.is_some_and(|v| v.split(',').any(|hop| hop.trim().ends_with(alias)));
    let hop = format!("1.1 {alias}");
    let header = match incoming {
        Some(v) if !v.trim().is_empty() => format!("{v}, {hop}"),
        _ => hop,
    };
    (header, looped)
}
