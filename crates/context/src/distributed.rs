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
//! loop of registrations ends. A source that fails or answers nonsense is left out (logged),
//! and a read says so in an `NGSILD-Warning` header (clause 6.3.17).
//!
//! What a registration asks of the requests sent to it is respected (clause 4.3.6): only the
//! operations it names, only its attributes (`attrs` narrowed to them), `local=true` when it is
//! `localOnly`, its `contextSourceInfo` as headers (`urn:ngsi-ld:request`: the client's own
//! header, credentials excepted), and its `contentType`, `accept` and `jsonldContext`.

use crate::Viewer;
use crate::jsonld::Context;
use crate::model::{self, Entity};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use yunnao_core::Problem;
use yunnao_store::{Db, DbResultExt, sqlx};

/// How long a source has to answer.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from a source: a larger one is refused like an invalid one.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// `contextSourceInfo` keys the broker acts on itself (clause 4.3.6.6), not sent as headers.
const PROCESSED_INFO: &[&str] = &["contentType", "accept", "jsonldContext"];
/// Headers `contextSourceInfo` cannot set (clause 4.3.6.5): the tenant, and those of the
/// HTTP exchange itself.
const UNCONVEYED: &[&str] = &[
    "ngsild-tenant",
    "via",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "link",
    "accept",
    "proxy-authorization",
    "proxy-connection",
];
/// The client's headers `urn:ngsi-ld:request` never copies: its credentials stay here (a
/// platform admin's request may reach any department's sources).
const NOT_COPIED: &[&str] = &["authorization", "cookie", "x-api-key"];

/// The query parameters forwarded with a query: those that name entities, then the filters
/// (paging is the broker's, over the merged answer; rendering is the broker's, from the
/// normalized form; `attrs` is narrowed per source).
const SELECTORS: &[&str] = &["type", "id", "idPattern"];
/// The filters, left out with `splitEntities=true` (clause 5.7.2.4): the broker applies them
/// to the merged entities instead.
const FILTERS: &[&str] = &[
    "q",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
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
    /// `localOnly`: the source is asked about its own entities only (`local=true`).
    local_only: bool,
    /// `management.timeout`: how long the source has to answer, when sooner than the default.
    timeout: Option<Duration>,
    /// `contextSourceInfo`, as key and value.
    info: Vec<(String, String)>,
    /// The whole stored registration, for context source filters (`csf`).
    pub registration: Arc<Value>,
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
            local_only: definition["localOnly"] == true
                || definition["management"]["localOnly"] == true,
            timeout: definition["management"]["timeout"]
                .as_f64()
                .filter(|ms| *ms > 0.0)
                .map(|ms| Duration::from_millis(ms as u64).min(SOURCE_TIMEOUT)),
            info: definition["contextSourceInfo"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|pair| {
                    Some((
                        pair["key"].as_str()?.to_owned(),
                        pair["value"].as_str()?.to_owned(),
                    ))
                })
                .collect(),
            registration: Arc::new(definition.clone()),
        })
    }

    /// The value of a processed `contextSourceInfo` key (clause 4.3.6.6).
    fn processed(&self, key: &str) -> Option<&str> {
        self.info
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A write's body as this source is sent it (clause 4.3.6.6), with its content type and
    /// `Link`: with `jsonldContext`, every name the client's context defines written as its
    /// IRI (which reads the same under any context), no `@context`, `application/json` and
    /// the registered context in `Link`; with `contentType` `application/ld+json`, the
    /// client's context inside; otherwise as the client sent it.
    fn express(&self, body: &Value, forward: &Forward) -> (Value, &'static str, Option<String>) {
        let mut body = body.clone();
        if let Some(url) = self.processed("jsonldContext") {
            for_each_object(&mut body, &mut |object| {
                object.remove("@context");
            });
            expand_names(&mut body, &forward.context, true);
            let link = format!(
                "<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"{}\"",
                crate::jsonld::JSON_LD
            );
            return (body, "application/json", Some(link));
        }
        let mut inline = false;
        for_each_object(&mut body, &mut |object| {
            inline |= object.contains_key("@context");
        });
        if !inline && self.processed("contentType") == Some(crate::jsonld::JSON_LD) {
            let context = forward
                .context
                .source
                .clone()
                .unwrap_or_else(|| Value::String(crate::jsonld::CORE_CONTEXT_URL.into()));
            for_each_object(&mut body, &mut |object| {
                object.insert("@context".into(), context.clone());
            });
            inline = true;
        }
        if inline {
            (body, crate::jsonld::JSON_LD, None)
        } else {
            (body, "application/json", forward.link.clone())
        }
    }

    /// The headers `contextSourceInfo` conveys to the source (clause 4.3.6.5): each pair as
    /// it is, or with `urn:ngsi-ld:request` the client's header of that name when it sent
    /// one; never the tenant, the exchange's own headers or the client's credentials.
    fn conveyed(&self, forward: &Forward) -> Vec<(HeaderName, HeaderValue)> {
        self.info
            .iter()
            .filter(|(key, _)| !PROCESSED_INFO.contains(&key.as_str()))
            .filter_map(|(key, value)| {
                let name = HeaderName::from_bytes(key.as_bytes()).ok()?;
                if UNCONVEYED.contains(&name.as_str()) {
                    return None;
                }
                let value = if value == "urn:ngsi-ld:request" {
                    if NOT_COPIED.contains(&name.as_str()) {
                        return None;
                    }
                    forward.incoming.get(&name)?.clone()
                } else {
                    HeaderValue::from_str(value).ok()?
                };
                Some((name, value))
            })
            .collect()
    }

    /// The attributes (expanded) a read of entities of `types` (any, when none) with `ids`
    /// (any, when none) may ask this source for: `None` for any (some RegistrationInfo
    /// covering them names none).
    fn read_names(&self, types: &[String], ids: &[String]) -> Option<Vec<String>> {
        let mut names = Vec::new();
        for info in &self.information {
            if !crate::registrations::covers(info, (types, ids, None), &[]) {
                continue;
            }
            let before = names.len();
            names.extend(
                ["propertyNames", "relationshipNames"]
                    .iter()
                    .flat_map(|key| info[*key].as_array().into_iter().flatten())
                    .filter_map(|n| n.as_str().map(str::to_owned)),
            );
            if names.len() == before {
                return None;
            }
        }
        Some(names)
    }

    /// The `attrs` a read asks this source for (compacted with `context`): the client's
    /// (`asked`, expanded; none for every attribute) within those the registration covers.
    fn narrowed(
        &self,
        (types, ids): (&[String], &[String]),
        asked: &[String],
        context: &Context,
    ) -> Option<String> {
        let mut names: Vec<String> = match self.read_names(types, ids) {
            None => asked.to_vec(),
            Some(registered) if asked.is_empty() => registered,
            Some(registered) => asked
                .iter()
                .filter(|a| registered.contains(a))
                .cloned()
                .collect(),
        };
        names.sort();
        names.dedup();
        (!names.is_empty()).then(|| {
            names
                .iter()
                .map(|n| context.compact(n))
                .collect::<Vec<_>>()
                .join(",")
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
    /// The client's context, to re-express a write for a source (`jsonldContext`).
    pub context: Context,
    /// The client's headers, for `contextSourceInfo` values taken from the request.
    pub incoming: HeaderMap,
}

/// Why a context source's part of a read was left out (clause 6.3.17, Table 6.3.17-1): 199
/// the source was not reached in time, 299 it answered with an error, 111 its answer was not
/// valid (or too large). A 404 is no warning: the source has nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub code: u16,
    agent: String,
    text: String,
}

impl Warning {
    fn new(code: u16, source: &Source, text: impl Into<String>) -> Self {
        let text = text.into();
        tracing::warn!(code, registration = %source.id, endpoint = %source.endpoint, %text,
            "context source's answer left out");
        Self {
            code,
            agent: source.id.clone(),
            text,
        }
    }

    /// The `NGSILD-Warning` header value, as RFC 7234's Warning: `code agent "text"`.
    pub fn header(&self) -> Option<HeaderValue> {
        let agent: String = self
            .agent
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect();
        let text: String = self
            .text
            .chars()
            .map(|c| {
                if (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\' {
                    c
                } else {
                    ' '
                }
            })
            .collect();
        HeaderValue::from_str(&format!("{} {agent} \"{text}\"", self.code)).ok()
    }
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

    /// Does `tenant` have any registration (is there anything to forward to)?
    pub fn any(&self, tenant: &str) -> bool {
        self.registered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|s| s.tenant == tenant)
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
            .any(|s| {
                s.tenant == tenant
                    && (s.mode == Mode::Redirect
                        || (s.operations.is_some() && s.mode != Mode::Auxiliary))
            })
    }

    /// A redirect registration that holds the whole of entity `id` (of `types`) but does not
    /// offer the write `operation`: such a write cannot succeed (clause 5.6.1.4, Conflict).
    pub fn refusing(
        &self,
        (tenant, viewer): (&str, &Viewer),
        operation: &str,
        (id, types): (&str, &[String]),
    ) -> Option<Source> {
        self.select(tenant, viewer, |s| {
            s.mode == Mode::Redirect && !s.offers_write(operation)
        })
        .into_iter()
        .find(|s| s.holds(id, types) == Some(None))
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
    /// have sent it, re-expressed as the registration asks: `contentType`, `jsonldContext`);
    /// `Err` with the reason when it does not succeed.
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
        for (name, value) in source.conveyed(forward) {
            request = request.header(name, value);
        }
        if let Some(tenant) = &source.source_tenant {
            request = request.header("ngsild-tenant", tenant);
        }
        if let Some(body) = body {
            let (body, content_type, link) = source.express(body, forward);
            request = request
                .header("content-type", content_type)
                .body(body.to_string());
            if let Some(link) = link {
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

    /// Sources that may hold entities of a query (by its types, ids and attributes) whose
    /// registration meets the query's context source filter (`csf`, read with `context`).
    pub fn for_query(
        &self,
        (tenant, viewer): (&str, &Viewer),
        (types, ids): (&[String], &[String]),
        attrs: &[String],
        csf: Option<(&crate::query::Expr, &Context)>,
    ) -> Vec<Source> {
        self.select(tenant, viewer, |s| {
            s.offers("queryEntity")
                && s.covers(types, ids, attrs)
                && csf.is_none_or(|(filter, context)| {
                    filter.matches(&crate::subscriptions::registration_as_entity(
                        &s.registration,
                        context,
                        true,
                    ))
                })
        })
    }

    /// Asks `source` for `path_and_query` (under its `/ngsi-ld/v1`, with `local=true` when
    /// the registration is `localOnly`): its JSON answer, `None` when it has none (404), or
    /// the warning that says why its answer is left out.
    async fn ask(
        &self,
        source: &Source,
        path_and_query: &str,
        forward: &Forward,
    ) -> Result<Option<Value>, Warning> {
        let mut url = format!("{}/ngsi-ld/v1{path_and_query}", source.endpoint);
        if source.local_only {
            url.push(if path_and_query.contains('?') {
                '&'
            } else {
                '?'
            });
            url.push_str("local=true");
        }
        let accept = source.processed("accept").unwrap_or("application/json");
        let mut request = self
            .client
            .get(&url)
            .timeout(source.timeout.unwrap_or(SOURCE_TIMEOUT))
            .header("accept", accept)
            .header("via", &forward.via);
        for (name, value) in source.conveyed(forward) {
            request = request.header(name, value);
        }
        if let Some(link) = &forward.link {
            request = request.header("link", link);
        }
        if let Some(tenant) = &source.source_tenant {
            request = request.header("ngsild-tenant", tenant);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => read_capped(response)
                .await
                .map(Some)
                .map_err(|error| Warning::new(111, source, format!("invalid answer: {error}"))),
            Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => Ok(None),
            Ok(response) => Err(Warning::new(
                299,
                source,
                format!("answered {}", response.status()),
            )),
            Err(error) if error.is_timeout() => Err(Warning::new(
                199,
                source,
                format!(
                    "no answer within {} ms",
                    source.timeout.unwrap_or(SOURCE_TIMEOUT).as_millis()
                ),
            )),
            Err(error) => Err(Warning::new(199, source, format!("not reached: {error}"))),
        }
    }

    /// Each source's answer to its own path (asked at once), in the sources' order, with
    /// the warnings of those whose answers are left out.
    async fn ask_all(
        &self,
        asks: Vec<(Source, String)>,
        forward: &Forward,
    ) -> (Vec<(Source, Value)>, Vec<Warning>) {
        let mut asking = tokio::task::JoinSet::new();
        for (index, (source, path)) in asks.into_iter().enumerate() {
            let (this, forward) = (self.clone(), forward.clone());
            asking.spawn(async move {
                let answer = this.ask(&source, &path, &forward).await;
                (index, source, answer)
            });
        }
        let mut answers = Vec::new();
        let mut warnings = Vec::new();
        while let Some(done) = asking.join_next().await {
            match done {
                Ok((index, source, Ok(Some(answer)))) => answers.push((index, source, answer)),
                Ok((_, _, Ok(None))) => {}
                Ok((index, _, Err(warning))) => warnings.push((index, warning)),
                Err(error) => tracing::warn!(%error, "asking a context source failed"),
            }
        }
        answers.sort_by_key(|(index, _, _)| *index);
        warnings.sort_by_key(|(index, _)| *index);
        (
            answers
                .into_iter()
                .map(|(_, source, answer)| (source, answer))
                .collect(),
            warnings.into_iter().map(|(_, warning)| warning).collect(),
        )
    }

    /// The names (expanded with `context`) the sources of `tenant` that offer `operation` list
    /// at `path` (in the answer's `member`: `/types` → `typeList`), with the warnings of those
    /// left out.
    pub async fn names(
        &self,
        (tenant, viewer): (&str, &Viewer),
        (operation, path, member): (&str, &str, &str),
        (context, forward): (&Context, &Forward),
    ) -> (Vec<String>, Vec<Warning>) {
        let asks = self
            .select(tenant, viewer, |s| s.offers(operation))
            .into_iter()
            .map(|source| (source, path.to_owned()))
            .collect();
        let (answers, mut warnings) = self.ask_all(asks, forward).await;
        let mut names = Vec::new();
        for (source, answer) in answers {
            match answer.get(member).and_then(Value::as_array) {
                Some(items) => names.extend(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|name| context.expand(name)),
                ),
                None => warnings.push(Warning::new(111, &source, format!("no {member}"))),
            }
        }
        (names, warnings)
    }

    /// Entity `id` (of `types`, when known) as each of `sources` has it (with the registration
    /// it came through), asked for the
    /// attributes `attrs` (expanded; all when none) within what each registration covers,
    /// read with `context`; and the warnings of the sources left out.
    pub async fn entities_by_id(
        &self,
        sources: &[Source],
        (id, types): (&str, &[String]),
        attrs: &[String],
        (context, forward): (&Context, &Forward),
    ) -> (Vec<(String, Entity)>, Vec<Warning>) {
        let ids = [id.to_owned()];
        let asks = sources
            .iter()
            .map(|source| {
                let mut path = format!("/entities/{}", encode_segment(id));
                if let Some(names) = source.narrowed((types, &ids), attrs, context) {
                    path.push_str(&format!("?attrs={}", encode(&names)));
                }
                (source.clone(), path)
            })
            .collect();
        let (answers, mut warnings) = self.ask_all(asks, forward).await;
        let mut entities = Vec::new();
        for (source, answer) in answers {
            match read_entity(answer, context).filter(|entity| entity.id == id) {
                Some(entity) => entities.push((source.id.clone(), entity)),
                None => warnings.push(Warning::new(111, &source, "not the entity asked for")),
            }
        }
        (entities, warnings)
    }

    /// The entities `sources` answer to a query, each with the registration it came through
    /// (`params`: the client's, of which the
    /// selecting ones are forwarded, less the filters with `splitEntities=true`; `selects`:
    /// its types, ids and attributes, expanded; `wanted`: how many the page needs at most),
    /// and the warnings of the sources left out.
    pub async fn query(
        &self,
        sources: &[Source],
        (params, selects): (&HashMap<String, String>, Selects<'_>),
        wanted: usize,
        (context, forward): (&Context, &Forward),
    ) -> (Vec<(String, Entity)>, Vec<Warning>) {
        let split = params.get("splitEntities").is_some_and(|s| s == "true");
        let mut forwarded = SELECTORS.to_vec();
        if !split {
            forwarded.extend(FILTERS);
        }
        let common = query_string(params, &forwarded);
        let (types, ids, attrs) = selects;
        let asked = if split { &[][..] } else { attrs };
        let asks = sources
            .iter()
            .map(|source| {
                let mut query = common.clone();
                if let Some(names) = source.narrowed((types, ids), asked, context) {
                    query.push(format!("attrs={}", encode(&names)));
                    query.sort();
                }
                if params.contains_key("limit") || params.contains_key("offset") {
                    query.push(format!("limit={wanted}"));
                }
                let path = if query.is_empty() {
                    "/entities".to_owned()
                } else {
                    format!("/entities?{}", query.join("&"))
                };
                (source.clone(), path)
            })
            .collect();
        let (answers, mut warnings) = self.ask_all(asks, forward).await;
        let mut entities = Vec::new();
        for (source, answer) in answers {
            let read: Option<Vec<Entity>> = match answer {
                Value::Array(items) => items
                    .into_iter()
                    .map(|item| read_entity(item, context))
                    .collect(),
                _ => None,
            };
            match read {
                Some(read) => entities.extend(read.into_iter().map(|e| (source.id.clone(), e))),
                None => warnings.push(Warning::new(111, &source, "not an array of entities")),
            }
        }
        (entities, warnings)
    }
}

/// A query's types, ids and attributes (expanded), by which each source's request is narrowed.
pub type Selects<'a> = (&'a [String], &'a [String], &'a [String]);

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
fn read_entity(mut value: Value, context: &Context) -> Option<Entity> {
    if let Value::Object(object) = &mut value {
        // An `application/ld+json` answer: the context is the client's, sent in `Link`.
        object.remove("@context");
    }
    let now = yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms());
    match model::parse_entity(value, context, &now) {
        Ok(entity) => Some(entity),
        Err(problem) => {
            tracing::warn!(%problem, "context source sent an entity the broker cannot read");
            None
        }
    }
}

/// Calls `each` on `value` when it is an object, or on each object of an array (a batch).
fn for_each_object(value: &mut Value, each: &mut impl FnMut(&mut serde_json::Map<String, Value>)) {
    match value {
        Value::Object(object) => each(object),
        Value::Array(items) => {
            for item in items.iter_mut() {
                if let Value::Object(object) = item {
                    each(object);
                }
            }
        }
        _ => {}
    }
}

/// Writes the names in an entity or attribute (`value`, or an array of them) as IRIs, as
/// `context` expands them: attribute names, sub-attribute names and entity types; core
/// terms, and what values hold, stay as they are.
fn expand_names(value: &mut Value, context: &Context, entity: bool) {
    const DATA: &[&str] = &[
        "value",
        "object",
        "json",
        "languageMap",
        "valueList",
        "objectList",
        "vocab",
        "id",
        "scope",
    ];
    let name = |term: &str| {
        if term.starts_with('@') || Context::is_core_term(term) {
            term.to_owned()
        } else {
            context.expand(term)
        }
    };
    match value {
        Value::Array(items) => {
            for item in items {
                expand_names(item, context, entity);
            }
        }
        Value::Object(object) => {
            let members = std::mem::take(object);
            for (key, mut member) in members {
                if key == "type" && entity {
                    member = match member {
                        Value::String(t) => Value::String(name(&t)),
                        Value::Array(ts) => Value::Array(
                            ts.into_iter()
                                .map(|t| match t {
                                    Value::String(t) => Value::String(name(&t)),
                                    other => other,
                                })
                                .collect(),
                        ),
                        other => other,
                    };
                } else if !DATA.contains(&key.as_str()) && key != "type" {
                    expand_names(&mut member, context, false);
                }
                object.insert(name(&key), member);
            }
        }
        _ => {}
    }
}

/// Percent-encodes a path segment: what RFC 3986 allows there (`urn:ngsi-ld:…` ids among
/// it) stays as it is.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value.
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
