//! What every NGSI-LD request brings besides its body (tenant, @context, viewer, media type, Link/Via), the query parameters, and how answers are rendered.

use super::NgsiResult;
use crate::geoquery::GeoQuery;
use crate::jsonld::{CORE_CONTEXT_URL, CORE_LINK, Context, JSON_LD};
use crate::linked::Linking;
use crate::model::{self, Format, RenderOptions};
use crate::negotiation::GEO_JSON;
use crate::{ContextBroker, Stored, Viewer, errors};
use axum::Extension;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::collections::HashMap;
use yunnao_core::Problem;
use yunnao_identity::{Action, AuditEntry, AuditNote, Principal, Reach, Resource};

/// This broker's name for a tenant among context sources (clause 5.15.1): stable, and
/// different for every tenant and installation.
pub(super) fn source_alias(broker: &ContextBroker, tenant: &str) -> String {
    format!(
        "urn:ngsi-ld:ContextSource:yunnao-{}:{tenant}",
        broker.identity.installation()
    )
}

/// The parts of an NGSI-LD request that every handler takes: the broker, the caller (if
/// signed in), the headers and the raw query string. [`Request::read`] makes a [`Request`] of
/// them (with the body's @context, if any).
pub(super) struct Ngsi {
    pub(super) broker: ContextBroker,
    pub(super) principal: Option<Principal>,
    pub(super) headers: HeaderMap,
    pub(super) raw_query: Option<String>,
}

impl axum::extract::FromRequestParts<ContextBroker> for Ngsi {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        broker: &ContextBroker,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            broker: broker.clone(),
            principal: parts.extensions.get::<Principal>().cloned(),
            headers: parts.headers.clone(),
            raw_query: parts.uri.query().map(str::to_owned),
        })
    }
}

/// What [`Ngsi::write_request`] reads: (broker, headers, raw query string, request, body,
/// the department that owns what the caller creates).
pub(super) type WriteParts = (
    ContextBroker,
    HeaderMap,
    Option<String>,
    Request,
    Value,
    String,
);

impl Ngsi {
    /// A write's body (JSON as its media type says) and request (with the body's @context, or
    /// the Link header's), refusing callers who may not write.
    pub(super) async fn write_request(self, body: &Bytes) -> NgsiResult<WriteParts> {
        let (value, _) = parse_body(&self.headers, body)?;
        let request = Request::read(
            &self.broker,
            &self.headers,
            self.principal,
            body_context(&value),
        )
        .await?;
        let owner = request.writer(&self.broker)?;
        Ok((
            self.broker,
            self.headers,
            self.raw_query,
            request,
            value,
            owner,
        ))
    }

    /// (broker, caller, headers, raw query string).
    pub(super) fn parts(self) -> (ContextBroker, Option<Principal>, HeaderMap, Option<String>) {
        (self.broker, self.principal, self.headers, self.raw_query)
    }
}

/// What one request brings besides its body: tenant, context, caller.
pub(super) struct Request {
    pub(super) tenant: String,
    pub(super) context: Context,
    pub(super) viewer: Viewer,
    pub(super) principal: Option<Principal>,
    /// The negotiated media type of the answer (the edge put it in `Accept`).
    pub(super) media: &'static str,
    /// `Prefer: body=json`: a GeoJSON answer names its context in a Link header only.
    pub(super) prefer_body_json: bool,
    /// The client's `Link` and `Via` headers, for requests forwarded to context sources.
    pub(super) link: Option<String>,
    pub(super) via: Option<String>,
    /// All the client's headers, kept only where the tenant has context sources (for
    /// `contextSourceInfo` values taken from the request).
    pub(super) incoming: Option<HeaderMap>,
}

pub(super) fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

impl Request {
    pub(super) async fn read(
        broker: &ContextBroker,
        headers: &HeaderMap,
        principal: Option<Principal>,
        body_context: Option<&Value>,
    ) -> NgsiResult<Self> {
        let tenant = match headers.get("ngsild-tenant").and_then(|v| v.to_str().ok()) {
            Some(tenant) => {
                let tenant = tenant.trim();
                let valid = (1..=64).contains(&tenant.len())
                    && tenant
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(errors::bad_request(format!(
                        "NGSILD-Tenant {tenant:?}: use 1 to 64 letters, digits, '-' and '_'"
                    )));
                }
                tenant.to_owned()
            }
            None => broker.config.default_tenant.clone(),
        };
        let link = headers.get(header::LINK).and_then(|v| v.to_str().ok());
        let context = match (body_context, link) {
            (Some(_), Some(_)) => {
                return Err(errors::bad_request(
                    "give the @context either in the body (application/ld+json) or in a Link header, not both",
                ));
            }
            (Some(value), None) => broker.contexts.resolve(value).await?,
            (None, Some(link)) => {
                broker
                    .contexts
                    .resolve(&Value::String(Context::link_url(link)?))
                    .await?
            }
            (None, None) => Context::core(),
        };
        let viewer = if !broker.config.auth {
            Viewer::All
        } else {
            match &principal {
                Some(p) => match p.reach(Resource::Context, Action::Read) {
                    Reach::All => Viewer::All,
                    Reach::Own => Viewer::Department(p.department.clone()),
                    // Residents, enterprises and API clients without `context:read` see
                    // open data only.
                    Reach::None => Viewer::Public,
                },
                None => Viewer::Public,
            }
        };
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let media = match accept {
            Some(JSON_LD) => JSON_LD,
            Some(GEO_JSON) => GEO_JSON,
            _ => "application/json",
        };
        let prefer_body_json = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split([',', ';']).any(|p| p.trim() == "body=json"));
        let header_text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Self {
            context,
            viewer,
            principal,
            media,
            prefer_body_json,
            link: header_text("link"),
            via: header_text("via"),
            incoming: broker.sources.any(&tenant).then(|| headers.clone()),
            tenant,
        })
    }

    /// The audit record of a successful write of entity `id`, appended in the write's own
    /// transaction (what the audit layer would append afterwards).
    pub(super) fn audit_entry(&self, headers: &HeaderMap, action: &str, id: &str) -> AuditEntry {
        audit(action, &self.tenant, id).0.entry(
            self.principal.as_ref(),
            String::new,
            String::new,
            yunnao_http::RequestId::from_headers(headers).0,
            "success",
        )
    }

    /// The department that owns what this caller creates; refuses callers who may not write.
    pub(super) fn writer(&self, broker: &ContextBroker) -> NgsiResult<String> {
        match &self.principal {
            Some(p) => {
                p.require(Resource::Context, Action::Write, &p.department)?;
                Ok(p.department.clone())
            }
            None if !broker.config.auth => Ok("bigdata".into()),
            None => Err(Problem::unauthorized(
                "sign in first: send Authorization: Bearer <token> or an API key",
            )),
        }
    }

    /// May this caller change `stored`? Its department's staff and platform admins.
    pub(super) fn may_change(&self, broker: &ContextBroker, stored: &Stored) -> NgsiResult<()> {
        self.may_change_owned(
            broker,
            &stored.owner,
            &format!("entity {}", stored.entity.id),
        )
    }

    /// May this writer change `what`, which `owner` owns? Its department, or a platform admin.
    pub(super) fn may_change_owned(
        &self,
        broker: &ContextBroker,
        owner: &str,
        what: &str,
    ) -> NgsiResult<()> {
        let department = self.writer(broker)?;
        let admin = self
            .principal
            .as_ref()
            .is_none_or(|p| p.is_platform_admin());
        if admin || owner == department {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "{what} belongs to department {owner:?}"
            )))
        }
    }

    pub(super) async fn require_tenant(&self, broker: &ContextBroker) -> NgsiResult<()> {
        if broker.tenant_exists(&self.tenant).await? {
            Ok(())
        } else {
            Err(errors::nonexistent_tenant(format!(
                "there is no tenant {:?}",
                self.tenant
            )))
        }
    }

    /// A JSON answer with the context in the body (`application/ld+json`) or in a Link header.
    pub(super) fn respond(
        &self,
        status: StatusCode,
        mut body: Value,
        headers: &mut HeaderMap,
    ) -> Response {
        if self.media == GEO_JSON {
            return self.respond_geo_json(status, body, headers);
        }
        if self.media == JSON_LD {
            let context = self
                .context
                .source
                .clone()
                .unwrap_or_else(|| Value::String(CORE_CONTEXT_URL.into()));
            match &mut body {
                Value::Object(object) => {
                    object.insert("@context".into(), context);
                }
                Value::Array(items) => {
                    for item in items {
                        if let Value::Object(object) = item {
                            object.insert("@context".into(), context.clone());
                        }
                    }
                }
                _ => {}
            }
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_LD));
            return match to_json_bytes(&body) {
                Ok(bytes) => (status, headers.clone(), bytes).into_response(),
                Err(problem) => problem.into_response(),
            };
        }
        match to_json_bytes(&body) {
            Ok(bytes) => self.respond_json(status, bytes.into(), headers),
            Err(problem) => problem.into_response(),
        }
    }

    /// A JSON answer already serialised (`application/json`, the context in a Link header).
    pub(super) fn respond_json(
        &self,
        status: StatusCode,
        body: Bytes,
        headers: &mut HeaderMap,
    ) -> Response {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.append(header::LINK, HeaderValue::from_static(CORE_LINK));
        (status, std::mem::take(headers), body).into_response()
    }

    /// A GeoJSON answer (a Feature or a FeatureCollection): the context in the body, or with
    /// `Prefer: body=json` in a Link header (clause 6.3.15).
    pub(super) fn respond_geo_json(
        &self,
        status: StatusCode,
        mut body: Value,
        headers: &mut HeaderMap,
    ) -> Response {
        if self.prefer_body_json {
            headers.insert(header::LINK, HeaderValue::from_static(CORE_LINK));
        } else if let Value::Object(object) = &mut body {
            let context = self
                .context
                .source
                .clone()
                .unwrap_or_else(|| Value::String(CORE_CONTEXT_URL.into()));
            object.insert("@context".into(), context);
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(GEO_JSON));
        match to_json_bytes(&body) {
            Ok(bytes) => (status, std::mem::take(headers), bytes).into_response(),
            Err(problem) => problem.into_response(),
        }
    }

    /// Clauses 5.7.1.4 and 5.7.2.4: `geometryProperty` only with a GeoJSON answer.
    pub(super) fn geometry_property_needs_geo_json(
        &self,
        params: &HashMap<String, String>,
    ) -> NgsiResult<()> {
        if params.contains_key("geometryProperty") && self.media != GEO_JSON {
            return Err(errors::bad_request(
                "geometryProperty needs Accept: application/geo+json",
            ));
        }
        Ok(())
    }

    /// Is the answer to this request the same for everyone (no user context in it)?
    pub(super) fn plain(&self) -> bool {
        self.media == "application/json" && self.context.is_core()
    }

    /// An entity as this request's answer shows it: as is, or as a GeoJSON Feature.
    pub(super) fn render(&self, entity: &model::Entity, options: &RenderOptions) -> Value {
        self.shown(
            entity,
            model::render(entity, &self.context, options),
            options,
        )
    }

    /// A rendered entity as this request's answer shows it: as is, or as a GeoJSON Feature.
    pub(super) fn shown(
        &self,
        entity: &model::Entity,
        rendered: Value,
        options: &RenderOptions,
    ) -> Value {
        if self.media == GEO_JSON {
            model::feature(entity, rendered, &self.context, options)
        } else {
            rendered
        }
    }

    /// How this request is forwarded to context sources: `None` when asked with
    /// `local=true`; LoopDetected (508) when it already passed through this broker (clause
    /// 6.3.18: forwarding it again would go round a loop of registrations).
    pub(super) fn forward(
        &self,
        broker: &ContextBroker,
        params: &HashMap<String, String>,
    ) -> NgsiResult<Option<crate::distributed::Forward>> {
        if params.get("local").is_some_and(|l| l == "true") {
            return Ok(None);
        }
        let alias = source_alias(broker, &self.tenant);
        let (via, looped) = crate::distributed::via(self.via.as_deref(), &alias);
        if looped {
            return Err(errors::loop_detected(format!(
                "the request already passed through this broker ({alias}, in Via)"
            )));
        }
        Ok(Some(crate::distributed::Forward {
            link: self.link.clone(),
            via,
            context: self.context.clone(),
            incoming: self.incoming.clone().unwrap_or_default(),
        }))
    }

    /// How this write is forwarded to context sources: as [`forward`](Self::forward), and only
    /// when some registration of the tenant names writes (one check in memory, so writes in a
    /// broker without such registrations look no further).
    pub(super) fn forward_write(
        &self,
        broker: &ContextBroker,
        params: &HashMap<String, String>,
    ) -> NgsiResult<Option<crate::distributed::Forward>> {
        if !broker.sources.any_for_writes(&self.tenant) {
            return Ok(None);
        }
        self.forward(broker, params)
    }

    /// Entities with those they link to (clause 4.5.23), each as this answer shows it.
    pub(super) async fn render_linked(
        &self,
        broker: &ContextBroker,
        entities: &[&model::Entity],
        options: &RenderOptions,
        linking: Linking,
    ) -> NgsiResult<Vec<Value>> {
        broker
            .render_linked(
                (&self.tenant, &self.viewer, &self.context),
                entities,
                options,
                linking,
                |entity, rendered| self.shown(entity, rendered, options),
            )
            .await
    }

    /// A list of shown entities: an array, or a GeoJSON FeatureCollection.
    pub(super) fn collection(&self, shown: Vec<Value>) -> Value {
        if self.media == GEO_JSON {
            serde_json::json!({"type": "FeatureCollection", "features": shown})
        } else {
            Value::Array(shown)
        }
    }
}

/// Straight into bytes: `to_string` goes through `fmt::Write` piece by piece, which costs a
/// third of the time of a large answer (a year of hourly aggregates).
pub(super) fn to_json_bytes(body: &Value) -> Result<Vec<u8>, Problem> {
    serde_json::to_vec(body).map_err(|error| Problem::internal(error.to_string()))
}

/// Parses a body: JSON with the context from Link, or JSON-LD with `@context` inside.
pub(super) fn parse_body(headers: &HeaderMap, body: &Bytes) -> NgsiResult<(Value, bool)> {
    let ld = match media_type(headers).as_str() {
        "application/json" | "application/merge-patch+json" => false,
        JSON_LD => true,
        "" => {
            return Err(Problem::unsupported_media_type(
                "send Content-Type: application/json or application/ld+json",
            ));
        }
        other => {
            return Err(Problem::unsupported_media_type(format!(
                "{other} is not accepted; send application/json or application/ld+json"
            )));
        }
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| errors::invalid_request(format!("the body is not valid JSON: {e}")))?;
    if ld && value.get("@context").is_none() && !value.is_array() {
        return Err(errors::bad_request(
            "application/ld+json needs an @context in the body",
        ));
    }
    if !ld && value.get("@context").is_some() {
        return Err(errors::bad_request(
            "an @context in the body needs Content-Type application/ld+json",
        ));
    }
    Ok((value, ld))
}

/// The query string's parameters (the last of a repeated name wins).
pub(super) fn query_map(raw: Option<String>) -> NgsiResult<HashMap<String, String>> {
    Ok(form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect())
}

/// The query string's parameters, each one the operation defines (else 400 InvalidRequest,
/// clause 6.3.20). The lists name every parameter of CIM 009 for the operation, also those the
/// broker reads as their default (`local`: it has no federation to skip).
pub(super) fn params_of(
    raw: Option<String>,
    known: &[&[&str]],
) -> NgsiResult<HashMap<String, String>> {
    let params = query_map(raw)?;
    if let Some(unknown) = params
        .keys()
        .find(|name| !known.iter().any(|list| list.contains(&name.as_str())))
    {
        return Err(errors::invalid_request(format!(
            "{unknown:?} is not a parameter of this operation"
        )));
    }
    Ok(params)
}

/// The `type` parameter of an operation on one entity (clause 4.17): the entity must have one
/// of the types, else it is not found.
pub(super) struct TypeSelector(pub(super) Option<Vec<String>>);

impl TypeSelector {
    pub(super) fn read(params: &HashMap<String, String>, context: &Context) -> Self {
        Self(params.contains_key("type").then(|| {
            list_param(params, "type")
                .iter()
                .map(|t| context.expand(t))
                .collect()
        }))
    }

    pub(super) fn check(&self, stored: &Stored) -> NgsiResult<()> {
        match &self.0 {
            Some(types) if !types.iter().any(|t| stored.entity.types.contains(t)) => {
                Err(errors::not_found(format!(
                    "there is no entity {} of the given type",
                    stored.entity.id
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Parameters of creating an entity, a temporal entity or a subscription.
pub(super) const CREATE_PARAMS: &[&str] = &["local"];
/// Parameters of the representation of entities (retrieve and query).
pub(super) const RENDER_PARAMS: &[&str] = &[
    "attrs",
    "pick",
    "omit",
    "options",
    "format",
    "geometryProperty",
    "lang",
    "datasetId",
    "local",
    "join",
    "joinLevel",
    "containedBy",
    "entityMap",
    "expandValues",
];
/// Parameters that select entities.
pub(super) const QUERY_PARAMS: &[&str] = &[
    "orderBy",
    "orderFrom",
    "collation",
    "type",
    "id",
    "idPattern",
    "q",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "csf",
    "scopeQ",
    "splitEntities",
    "limit",
    "offset",
    "count",
];
/// Parameters of the temporal representation.
pub(super) const TEMPORAL_PARAMS: &[&str] = &[
    "timerel",
    "timeAt",
    "endTimeAt",
    "timeproperty",
    "lastN",
    "aggrMethods",
    "aggrPeriodDuration",
];

/// A list parameter, its items separated by `,` or `|` (empty when absent).
pub(super) fn list_param(params: &HashMap<String, String>, key: &str) -> Vec<String> {
    params
        .get(key)
        .map(|v| {
            v.split([',', '|'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `offset` (0 by default) and `limit` (20 by default), non-negative integers.
pub(super) fn paging(params: &HashMap<String, String>) -> NgsiResult<(usize, usize)> {
    let number = |key: &str, default: usize| -> NgsiResult<usize> {
        params.get(key).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| errors::bad_request(format!("{key} must be a non-negative integer")))
        })
    };
    Ok((number("offset", 0)?, number("limit", 20)?))
}

/// Is `name` among the comma-separated `options`?
/// A true/false query parameter (false when absent).
pub(super) fn flag(params: &HashMap<String, String>, name: &str) -> NgsiResult<bool> {
    match params.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(errors::bad_request(format!(
            "{name} is true or false, not {other:?}"
        ))),
    }
}

pub(super) fn has_option(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get("options")
        .is_some_and(|o| o.split(',').any(|t| t.trim() == name))
}

/// The names of an attribute projection (clause 4.21): `,` or `|` between them, none empty.
pub(super) fn projection(parameter: &str, text: &str) -> NgsiResult<Vec<String>> {
    let names: Vec<String> = text
        .split([',', '|'])
        .map(|n| n.trim().to_owned())
        .collect();
    if names.iter().any(String::is_empty) {
        return Err(errors::bad_request(format!(
            "{parameter} {text:?}: attribute names separated by ',' or '|', none empty"
        )));
    }
    if text.contains(['{', '}']) {
        return Err(errors::bad_request(format!(
            "{parameter} {text:?}: selecting attributes of linked entities ({{…}}) is not \
             offered; join=inline or join=flat shows linked entities whole"
        )));
    }
    // Names are terms or IRIs: none of the query language's or HTTP's delimiters.
    if let Some(bad) = names
        .iter()
        .flat_map(|n| n.chars())
        .find(|c| c.is_whitespace() || c.is_control() || ";=<>\"'()[]\\^`".contains(*c))
    {
        return Err(errors::bad_request(format!(
            "{parameter} {text:?}: {bad:?} is not allowed in an attribute name"
        )));
    }
    Ok(names)
}

/// `join` and `joinLevel` (clause 4.5.23): how linked entities are joined, if at all.
pub(super) fn linking(params: &HashMap<String, String>) -> NgsiResult<Option<Linking>> {
    Linking::parse(
        params.get("join").map(String::as_str),
        params.get("joinLevel").map(String::as_str),
    )
}

pub(super) fn render_options(
    params: &HashMap<String, String>,
    context: &Context,
) -> NgsiResult<RenderOptions> {
    let mut options = RenderOptions::default();
    let mut tokens: Vec<&str> = params
        .get("options")
        .map(|o| o.split(',').collect())
        .unwrap_or_default();
    if let Some(format) = params.get("format") {
        tokens.push(format);
    }
    for token in tokens {
        match token.trim() {
            "keyValues" | "simplified" => options.format = Format::KeyValues,
            "concise" => options.format = Format::Concise,
            "normalized" => options.format = Format::Normalized,
            "sysAttrs" => options.sys_attrs = true,
            "" => {}
            other => {
                return Err(errors::bad_request(format!(
                    "option {other:?} is not one of keyValues, simplified, concise, normalized, sysAttrs"
                )));
            }
        }
    }
    if let Some(name) = params.get("geometryProperty") {
        options.geometry_property = name.clone();
    }
    // Clause 4.21: pick and omit stand instead of attrs, and never name the same member.
    let list = |name: &str| {
        params
            .get(name)
            .map(|text| projection(name, text))
            .transpose()
    };
    let (attrs, pick, omit) = (list("attrs")?, list("pick")?, list("omit")?);
    if attrs.is_some() && (pick.is_some() || omit.is_some()) {
        let projecting = if pick.is_some() { "pick" } else { "omit" };
        return Err(errors::bad_request(format!(
            "{projecting} and attrs cannot be used together (clause 4.21)"
        )));
    }
    if let (Some(pick), Some(omit)) = (&pick, &omit)
        && let Some(both) = pick.iter().find(|member| omit.contains(member))
    {
        return Err(errors::bad_request(format!(
            "{both:?} is both picked and omitted"
        )));
    }
    let expand = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .filter(|m| !matches!(m.as_str(), "id" | "type"))
            .map(|a| context.expand(a))
            .collect()
    };
    if let Some(attrs) = attrs {
        options.attrs = Some(attrs.iter().map(|a| context.expand(a)).collect());
    }
    if let Some(pick) = pick {
        options.attrs = Some(expand(&pick));
        options.pick = Some(pick);
    }
    options.omit = omit.unwrap_or_default();
    if let Some(lang) = params.get("lang") {
        options.lang = Some(model::LanguageFilter::parse(lang)?);
    }
    Ok(options)
}

pub(super) fn now() -> String {
    yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms())
}

pub(super) fn audit(action: &str, tenant: &str, id: &str) -> Extension<AuditNote> {
    Extension(AuditNote::new(action, format!("entity:{tenant}/{id}")))
}

pub(super) fn body_context(value: &Value) -> Option<&Value> {
    value.get("@context")
}

/// An answer (or error) with an `NGSILD-Warning` header for each context source whose part
/// of a distributed read was left out (clause 6.3.17).
pub(super) fn with_warnings(
    answer: NgsiResult<Response>,
    warnings: &[crate::distributed::Warning],
) -> Response {
    let mut response = answer.unwrap_or_else(IntoResponse::into_response);
    for warning in warnings {
        if let Some(value) = warning.header() {
            response.headers_mut().append("ngsild-warning", value);
        }
    }
    response
}

/// Clause 4.21: an entity with no member left after `pick` and `omit` is not found.
pub(super) fn nothing_left(body: &Value, id: &str) -> NgsiResult<()> {
    if body.as_object().is_some_and(Map::is_empty) {
        return Err(errors::not_found(format!(
            "nothing of entity {id} is left after pick and omit"
        )));
    }
    Ok(())
}

/// The outcome of an attribute operation that may succeed in part (207).
pub(super) fn partial(
    updated: Vec<String>,
    not_updated: Vec<(String, String)>,
    context: &Context,
) -> Response {
    if not_updated.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let body = serde_json::json!({
        "updated": updated.iter().map(|n| context.compact(n)).collect::<Vec<_>>(),
        "notUpdated": not_updated.iter().map(|(n, reason)| serde_json::json!({
            "attributeName": context.compact(n), "reason": reason})).collect::<Vec<_>>(),
    });
    (
        StatusCode::MULTI_STATUS,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The geo-query of `georel`, `geometry` and `coordinates` (all or none) on `property`.
pub(super) fn geo_query(
    params: &HashMap<String, String>,
    property: String,
) -> NgsiResult<Option<GeoQuery>> {
    match (
        params.get("georel"),
        params.get("geometry"),
        params.get("coordinates"),
    ) {
        (None, None, None) => Ok(None),
        (Some(georel), Some(geometry), Some(coordinates)) => {
            GeoQuery::parse(georel, geometry, coordinates, property).map(Some)
        }
        _ => Err(errors::bad_request(
            "a geo-query needs georel, geometry and coordinates together",
        )),
    }
}

/// Where a page of a listing sits, for its `prev` and `next` links (clause 4.12).
pub(super) struct Page {
    pub(super) path: &'static str,
    pub(super) offset: usize,
    pub(super) limit: usize,
    pub(super) more: bool,
}

impl Page {
    /// Adds the Link headers to the neighbouring pages: the request's parameters (sorted by
    /// name) with the offset moved by the page size. `separator` goes before `rel`.
    pub(super) fn link(
        &self,
        params: &HashMap<String, String>,
        media: &str,
        separator: &str,
        headers: &mut HeaderMap,
    ) {
        if self.limit == 0 {
            return;
        }
        let link = |offset: usize, rel: &str| {
            let mut query: Vec<(String, String)> = params
                .iter()
                .filter(|(name, _)| name.as_str() != "offset")
                .map(|(name, value)| (name.clone(), link_escape(value)))
                .collect();
            query.push(("offset".into(), offset.to_string()));
            query.sort();
            let query: Vec<String> = query.iter().map(|(n, v)| format!("{n}={v}")).collect();
            format!(
                "<{}?{}>{separator}rel=\"{rel}\";type=\"{media}\"",
                self.path,
                query.join("&")
            )
        };
        if self.offset > 0
            && let Ok(value) =
                HeaderValue::from_str(&link(self.offset.saturating_sub(self.limit), "prev"))
        {
            headers.append(header::LINK, value);
        }
        if self.more
            && let Ok(value) = HeaderValue::from_str(&link(self.offset + self.limit, "next"))
        {
            headers.append(header::LINK, value);
        }
    }
}

/// A parameter value as it can stand in a link: the characters that would end the URL or the
/// header's list of links percent-encoded, the rest as given.
pub(super) fn link_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ' ' | '"' | '<' | '>' | ',' | '&' | '#' | '%' | '\\' | '^' | '`' | '{' | '}' | '|' => {
                out.push_str(&format!("%{:02X}", u32::from(c)));
            }
            c if c.is_ascii_control() || !c.is_ascii() => {
                let mut buffer = [0; 4];
                for byte in c.encode_utf8(&mut buffer).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}
