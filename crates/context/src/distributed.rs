//! Distributed operations (clauses 4.3.3, 4.3.6). Reads: Retrieve Entity and Query Entities
//! are also asked of the context sources whose registrations cover them, and their answers
//! merged with the broker's own entities (by id; types joined; of two instances of an
//! attribute the one observed later wins, else the broker's own). Writes go to the sources of
//! registrations that name them ([`Sources::for_write`]; how a write is split among them is
//! the API's `share_write`). Registrations are kept in memory (reloaded on change and every
//! few seconds), so a broker without any pays nothing.
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

/// How a registration shares its entities with the broker (clause 4.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Both hold them: reads merge, writes go to both.
    Inclusive,
    /// The source alone holds the registered attributes: writes of them go only to it.
    Exclusive,
    /// The source holds the registered entities: writes go only to it.
    Redirect,
    /// Consulted for reads only.
    Auxiliary,
}

/// The write operations each group of Table 4.20-1 names (read operations aside).
const WRITE_GROUPS: &[(&str, &[&str])] = &[
    (
        "redirectionOps",
        &[
            "createEntity",
            "updateAttrs",
            "appendAttrs",
            "deleteAttrs",
            "deleteEntity",
            "mergeEntity",
            "replaceEntity",
            "replaceAttrs",
            "createBatch",
            "upsertBatch",
            "updateBatch",
            "deleteBatch",
            "mergeBatch",
            "purgeEntity",
        ],
    ),
    ("updateOps", &["updateAttrs", "replaceAttrs"]),
];

/// One registration, as forwarding needs it.
#[derive(Debug, Clone)]
pub struct Source {
    id: String,
    tenant: String,
    owner: String,
    pub mode: Mode,
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
            id: definition["id"].as_str()?.to_owned(),
            tenant,
            owner,
            mode: match definition["mode"].as_str() {
                Some("exclusive") => Mode::Exclusive,
                Some("redirect") => Mode::Redirect,
                Some("auxiliary") => Mode::Auxiliary,
                _ => Mode::Inclusive,
            },
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

    /// Does the registration name the write `operation`, itself or by a group? Writes are never
    /// forwarded by default (the default operations, `federationOps`, only read).
    fn offers_write(&self, operation: &str) -> bool {
        self.mode != Mode::Auxiliary
            && self.operations.as_ref().is_some_and(|ops| {
                ops.iter().any(|o| {
                    o == operation
                        || WRITE_GROUPS
                            .iter()
                            .any(|(group, members)| o == group && members.contains(&operation))
                })
            })
    }

    /// The attributes (expanded) this registration holds of entity `id` of `types`: `None`
    /// when it does not cover the entity, `Some(None)` for every attribute. Without known types
    /// only RegistrationInfo naming the id (or an id pattern it meets) counts: a write is never
    /// sent to a source on a guess.
    fn holds(&self, id: &str, types: &[String]) -> Option<Option<Vec<String>>> {
        let ids = [id.to_owned()];
        let mut names: Vec<String> = Vec::new();
        let mut covered = false;
        for info in &self.information {
            let names_entity = if types.is_empty() {
                info["entities"].as_array().is_some_and(|registered| {
                    registered.iter().any(|e| {
                        e["id"].as_str() == Some(id)
                            || e["idPattern"]
                                .as_str()
                                .and_then(|p| regex::Regex::new(p).ok())
                                .is_some_and(|p| p.is_match(id))
                    })
                })
            } else {
                crate::registrations::covers(info, (types, &ids, None), &[])
            };
            if !names_entity {
                continue;
            }
            covered = true;
            let own: Vec<String> = ["propertyNames", "relationshipNames"]
                .iter()
                .flat_map(|key| info[*key].as_array().into_iter().flatten())
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect();
            if own.is_empty() {
                return Some(None);
            }
            names.extend(own);
        }
        covered.then_some(Some(names))
    }

    /// The registration's id, for reports.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Does some RegistrationInfo cover an entity of one of `types` (any when none are known)
    /// with one of `ids` (any when none) and one of `attrs` (any when none)?
    fn covers(&self, types: &[String], ids: &[String], attrs: &[String]) -> bool {
        self.information
            .iter()
            .any(|info| crate::registrations::covers(info, (types, ids, None), attrs))
    }
}

/// A write's context source, with the attributes it holds (`None`: all of them).
#[derive(Debug, Clone)]
pub struct WriteTarget {
    pub source: Source,
    pub holds: Option<Vec<String>>,
}

impl WriteTarget {
    /// Does the source hold attribute `name` (expanded) of the entity?
    pub fn covers(&self, name: &str) -> bool {
        self.holds
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }

    /// Does the source alone take attribute `name` (expanded) of this write?
    pub fn takes(&self, name: &str) -> bool {
        self.source.mode != Mode::Inclusive && self.covers(name)
    }

    /// Does the source alone hold the whole entity (no attribute stays with the broker)?
    pub fn takes_all(&self) -> bool {
        self.source.mode != Mode::Inclusive && self.holds.is_none()
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

    /// The sources `viewer` may use in `tenant` that `keep` keeps: those registered by the
    /// viewer's department (all, for platform admins), not expired.
    fn select(&self, tenant: &str, viewer: &Viewer, keep: impl Fn(&Source) -> bool) -> Vec<Source> {
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
            .filter(|s| keep(s))
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
        self.select(tenant, viewer, |s| {
            s.offers("retrieveEntity") && s.covers(types, &[id.to_owned()], attrs)
        })
    }

    /// Is any registration of `tenant` one that writes may be forwarded to? (Cheap: checked
    /// before a write looks further.)
    pub fn any_for_writes(&self, tenant: &str) -> bool {
        self.registered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|s| s.tenant == tenant && s.operations.is_some() && s.mode != Mode::Auxiliary)
    }

    /// The sources a write `operation` on entity `id` (of `types`, when known) goes to.
    pub fn for_write(
        &self,
        tenant: &str,
        viewer: &Viewer,
        operation: &str,
        (id, types): (&str, &[String]),
    ) -> Vec<WriteTarget> {
        self.select(tenant, viewer, |s| s.offers_write(operation))
            .into_iter()
            .filter_map(|source| {
                let holds = source.holds(id, types)?;
                Some(WriteTarget { source, holds })
            })
            .collect()
    }

    /// The sources a Purge Entities of `types` and `ids` (any, when none) goes to: those naming
    /// the operation, each getting the same purge.
    pub fn for_purge(
        &self,
        tenant: &str,
        viewer: &Viewer,
        (types, ids): (&[String], &[String]),
    ) -> Vec<WriteTarget> {
        self.select(tenant, viewer, |s| {
            s.offers_write("purgeEntity") && s.covers(types, ids, &[])
        })
        .into_iter()
        .map(|source| WriteTarget {
            source,
            holds: None,
        })
        .collect()
    }

    /// Sends a write to `target` (`path` under its `/ngsi-ld/v1`, `body` as the client would
    /// have sent it); `Err` with the reason when it does not succeed.
    pub async fn write(
        &self,
        target: &WriteTarget,
        (method, path): (reqwest::Method, &str),
        body: Option<&Value>,
        forward: &Forward,
    ) -> Result<(), String> {
        let source = &target.source;
        let url = format!("{}/ngsi-ld/v1{path}", source.endpoint);
        let mut request = self
            .client
            .request(method, &url)
            .header("via", &forward.via);
        if let Some(tenant) = &source.source_tenant {
            request = request.header("ngsild-tenant", tenant);
        }
        if let Some(body) = body {
            let ld = body.get("@context").is_some();
            request = request
                .header(
                    "content-type",
                    if ld {
                        crate::jsonld::JSON_LD
                    } else {
                        "application/json"
                    },
                )
                .body(body.to_string());
            if !ld && let Some(link) = &forward.link {
                request = request.header("link", link);
            }
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!(
                "context source {} ({}) answered {}",
                source.id,
                source.endpoint,
                response.status()
            )),
            Err(error) => Err(format!(
                "context source {} ({}) not reached: {error}",
                source.id, source.endpoint
            )),
        }
    }

    /// Sources that may hold entities of a query (by its types, ids and attributes).
    pub fn for_query(
        &self,
        tenant: &str,
        viewer: &Viewer,
        (types, ids): (&[String], &[String]),
        attrs: &[String],
    ) -> Vec<Source> {
        self.select(tenant, viewer, |s| {
            s.offers("queryEntity") && s.covers(types, ids, attrs)
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
        let mut query = query_string(params, FORWARDED);
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

/// The parameters among `keys` that `params` has, as `name=value` (encoded), in name order:
/// a forwarded request reads the same whatever order the client wrote.
pub fn query_string(params: &HashMap<String, String>, keys: &[&str]) -> Vec<String> {
    let mut present: Vec<&String> = params
        .keys()
        .filter(|k| keys.contains(&k.as_str()))
        .collect();
    present.sort();
    present
        .iter()
        .map(|k| format!("{k}={}", encode(&params[*k])))
        .collect()
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
