//! Incidents (案件) and their workflow: 受理 received → 立案 registered → 派遣 dispatched →
//! 处置 handling → 核查 verification → 结案 closed, with 不予立案 rejected, send-back to the
//! command centre, reassignment, rework after a failed check and merging of duplicates. Every
//! transition is one transaction: the row's state is checked and changed and an event row
//! appended together, so two operators acting at once cannot both win.

use crate::calendar::WorkCalendar;
use crate::catalogue::Category;
use crate::{Governance, json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use yunnao_core::time::{now_ms, parse_rfc3339_ms};
use yunnao_core::{Problem, new_id};
use yunnao_identity::{Principal, Role};
use yunnao_store::{DbResultExt, nullable_real, sqlx};

use crate::workflow::{Action, Actor, State};

/// Where an incident came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A resident or enterprise through the platform API.
    Citizen,
    /// Open311 GeoReport v2.
    Open311,
    /// A critical sensor alarm.
    Alarm,
    /// A grid worker's patrol report.
    Patrol,
    /// The 12345 hotline (bulk import).
    Hotline,
    /// Staff or a connected system through the platform API.
    Api,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Citizen => "citizen",
            Source::Open311 => "open311",
            Source::Alarm => "alarm",
            Source::Patrol => "patrol",
            Source::Hotline => "hotline",
            Source::Api => "api",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Location {
    /// WGS84 longitude.
    pub lon: f64,
    /// WGS84 latitude.
    pub lat: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct GridPlace {
    pub grid_code: String,
    pub district_code: String,
    pub district_name: String,
    pub street_code: String,
    pub community_code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Incident {
    pub id: String,
    pub service_code: String,
    pub service_name: String,
    pub source: String,
    pub description: String,
    pub address: String,
    pub location: Option<Location>,
    pub grid: Option<GridPlace>,
    /// Reported outside Qingdao's districts (sensor alarms only; people are refused).
    pub out_of_area: bool,
    pub state: State,
    /// 受理, 立案, …
    pub state_name: String,
    /// Handling department.
    pub department: Option<String>,
    /// Username of the grid worker who checks the result.
    pub grid_worker: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub media_urls: Vec<String>,
    /// Ids of stored photos (`GET /api/v1/governance/media/{id}`).
    pub photos: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub dispatched_at: Option<String>,
    pub warn_at: Option<String>,
    pub due_at: Option<String>,
    /// Open and past its time limit.
    pub overdue: bool,
    pub escalated_at: Option<String>,
    pub handled_at: Option<String>,
    pub closed_at: Option<String>,
    pub rework_count: i64,
    pub merged_into: Option<String>,
    pub status_notes: String,
    pub satisfaction: Option<i64>,
    pub alarm_cleared_at: Option<String>,
    /// For Open311 `tokens/{token}`.
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct IncidentEvent {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub actor_department: String,
    pub action: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub comment: String,
    pub detail: serde_json::Value,
}

/// A nearby open incident of the same subclass, offered for merging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Similar {
    pub id: String,
    pub state: State,
    pub description: String,
    pub distance_m: f64,
    pub created_at: String,
}

/// Everything needed to open an incident, whatever its source.
#[derive(Debug, Clone)]
pub struct Report {
    pub source: Source,
    /// Deduplication key within the source (alarm id, hotline ticket number).
    pub source_ref: Option<String>,
    pub service_code: String,
    pub description: String,
    pub address: String,
    pub location: Option<Location>,
    pub attributes: BTreeMap<String, String>,
    pub media_urls: Vec<String>,
    /// (id, department) of the reporting principal.
    pub reporter: Option<(String, String)>,
    pub actor: String,
    /// Personal data (names, phone, email): sealed with SM4-GCM before it is stored.
    pub contact: Option<serde_json::Value>,
    /// When it was reported, if not now (hotline records).
    pub reported_at_ms: Option<i64>,
    pub photos: Vec<Photo>,
    /// For sensor alarms: the device's department, the fallback handler.
    pub owner_department: Option<String>,
    /// Sensor alarms outside the city go to the out-of-area queue instead of being refused.
    pub allow_out_of_area: bool,
}

impl Report {
    pub fn new(source: Source, service_code: &str, description: &str, actor: &str) -> Self {
        Self {
            source,
            source_ref: None,
            service_code: service_code.to_owned(),
            description: description.to_owned(),
            address: String::new(),
            location: None,
            attributes: BTreeMap::new(),
            media_urls: Vec::new(),
            reporter: None,
            actor: actor.to_owned(),
            contact: None,
            reported_at_ms: None,
            photos: Vec::new(),
            owner_department: None,
            allow_out_of_area: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Photo {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

pub const MAX_PHOTO_BYTES: usize = 5 * 1024 * 1024;
pub const MAX_PHOTOS: usize = 6;

/// The content type a photo's first bytes prove (JPEG, PNG, WebP), if any.
pub fn photo_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedIncident {
    pub incident: Incident,
    /// False when the report repeated one already open (same alarm or hotline ticket).
    pub created: bool,
    /// Nearby open incidents of the same subclass: candidates for merging.
    pub similar: Vec<Similar>,
}

/// A workflow step.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionInput {
    /// register, reject, dispatch, accept, send_back, reassign, complete, rework, close, merge.
    pub action: String,
    /// Required: why (kept in the history and the audit).
    pub comment: String,
    /// For dispatch (optional: the rule's department by default) and reassign (required).
    pub department: Option<String>,
    /// For merge: the incident this one duplicates.
    pub into: Option<String>,
    /// Photos of the step (a worker's proof of the work, a checker's of the result); the web
    /// UI sends them, stored with the case in the step's transaction.
    #[serde(skip)]
    pub photos: Vec<Photo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncidentDetail {
    pub incident: Incident,
    pub events: Vec<IncidentEvent>,
    pub similar: Vec<Similar>,
    /// Names and phone of the reporter: shown to the command centre only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<serde_json::Value>,
}

/// Published on `governance.incident.{action}.{district code or "none"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncidentChanged {
    pub incident_id: String,
    pub action: String,
    pub state: State,
    pub service_code: String,
    pub district_code: Option<String>,
    pub department: Option<String>,
    /// The grid worker the case is with (absent from events of older nodes).
    #[serde(default)]
    pub grid_worker: Option<String>,
    pub at_ms: i64,
}

impl yunnao_bus::Event for IncidentChanged {
    const TYPE: &'static str = "governance.incident.changed";
    const VERSION: u32 = 1;
    fn subject(&self) -> String {
        format!(
            "governance.incident.{}.{}",
            self.action,
            self.district_code.as_deref().unwrap_or("none")
        )
    }
}

pub(crate) const COLUMNS: &str = "id, source, source_ref, service_code, description, address, lon, lat, grid_code, district_code, street_code, community_code, out_of_area, state, department, grid_worker, reporter, reporter_department, contact_sealed, attributes, media_urls, token, created_at_ms, updated_at_ms, dispatched_at_ms, warn_at_ms, due_at_ms, warned_at_ms, overdue_at_ms, handled_at_ms, closed_at_ms, rework_count, merged_into, status_notes, satisfaction, alarm_cleared_at_ms";

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Row {
    pub id: String,
    pub source: String,
    #[allow(dead_code)]
    pub source_ref: Option<String>,
    pub service_code: String,
    pub description: String,
    pub address: String,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub grid_code: Option<String>,
    pub district_code: Option<String>,
    pub street_code: Option<String>,
    pub community_code: Option<String>,
    pub out_of_area: i64,
    pub state: String,
    pub department: Option<String>,
    pub grid_worker: Option<String>,
    pub reporter: Option<String>,
    #[allow(dead_code)]
    pub reporter_department: Option<String>,
    pub contact_sealed: Option<String>,
    pub attributes: String,
    pub media_urls: String,
    pub token: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub dispatched_at_ms: Option<i64>,
    pub warn_at_ms: Option<i64>,
    pub due_at_ms: Option<i64>,
    #[allow(dead_code)]
    pub warned_at_ms: Option<i64>,
    pub overdue_at_ms: Option<i64>,
    pub handled_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    pub rework_count: i64,
    pub merged_into: Option<String>,
    pub status_notes: String,
    pub satisfaction: Option<i64>,
    pub alarm_cleared_at_ms: Option<i64>,
}

impl Row {
    pub fn state(&self) -> State {
        State::parse(&self.state).unwrap_or(State::Received)
    }
}

/// The moment in CST, as every date in this hub's answers.
fn time(ms: i64) -> String {
    crate::calendar::to_cst_rfc3339(ms)
}

type EventRow = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
);

/// Who the caller is to an incident.
struct Standing {
    centre: bool,
    handler: bool,
    verifier: bool,
}

impl Standing {
    fn allows(&self, by: Actor) -> bool {
        match by {
            Actor::Centre => self.centre,
            Actor::Handler => self.handler,
            Actor::Verifier => self.verifier,
        }
    }
}

impl Governance {
    /// Staff of the command centre (and platform admins): they register, dispatch and close.
    pub fn is_centre(&self, principal: &Principal) -> bool {
        principal.is_platform_admin()
            || (principal.department == self.config.centre
                && (principal.has_role(Role::Operator) || principal.has_role(Role::DeptAdmin)))
            || principal.has_scope("governance:centre")
    }

    fn standing(&self, principal: &Principal, row: &Row) -> Standing {
        self.standing_on(
            principal,
            row.department.as_deref(),
            row.grid_worker.as_deref(),
        )
    }

    fn standing_on(
        &self,
        principal: &Principal,
        department: Option<&str>,
        grid_worker: Option<&str>,
    ) -> Standing {
        let centre = self.is_centre(principal);
        let staff = principal.has_role(Role::Operator) || principal.has_role(Role::DeptAdmin);
        Standing {
            centre,
            handler: centre || (staff && department == Some(principal.department.as_str())),
            verifier: centre
                || (principal.has_role(Role::GridWorker)
                    && grid_worker == Some(principal.name.as_str())),
        }
    }

    /// Whether `principal` may take `action` on the incident by who they are to it (the
    /// workflow table's `by`); whether the incident's state allows it is [`State::actions`].
    pub fn may_take(&self, principal: &Principal, incident: &Incident, action: Action) -> bool {
        let standing = self.standing_on(
            principal,
            incident.department.as_deref(),
            incident.grid_worker.as_deref(),
        );
        standing.allows(action.step().by)
    }

    /// The steps `principal` may take on the incident now, in the workflow's order: what a page
    /// offers, so that it offers nothing the API would refuse.
    pub fn offered(&self, principal: &Principal, incident: &Incident) -> Vec<Action> {
        incident
            .state
            .actions()
            .filter(|action| self.may_take(principal, incident, *action))
            .collect()
    }

    /// Whether `principal` may see the incident: the centre, the handling department, the
    /// assigned grid worker, the reporter.
    pub(crate) fn can_see(&self, principal: &Principal, row: &Row) -> bool {
        let standing = self.standing(principal, row);
        standing.handler
            || standing.verifier
            || row.reporter.as_deref() == Some(principal.id.as_str())
            || ((principal.has_role(Role::Operator) || principal.has_role(Role::DeptAdmin))
                && row.department.as_deref() == Some(principal.department.as_str()))
    }

    pub(crate) fn view(&self, row: &Row, categories: &[Category], photos: Vec<String>) -> Incident {
        let state = row.state();
        let now = now_ms();
        let grid = match (&row.grid_code, &row.district_code) {
            (Some(code), Some(district)) => Some(GridPlace {
                grid_code: code.clone(),
                district_code: district.clone(),
                district_name: self
                    .grid
                    .districts
                    .iter()
                    .find(|d| &d.code == district)
                    .map(|d| d.name.clone())
                    .unwrap_or_default(),
                street_code: row.street_code.clone().unwrap_or_default(),
                community_code: row.community_code.clone().unwrap_or_default(),
            }),
            _ => None,
        };
        Incident {
            id: row.id.clone(),
            service_code: row.service_code.clone(),
            service_name: categories
                .iter()
                .find(|c| c.service_code == row.service_code)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            source: row.source.clone(),
            description: row.description.clone(),
            address: row.address.clone(),
            location: match (row.lon, row.lat) {
                (Some(lon), Some(lat)) => Some(Location { lon, lat }),
                _ => None,
            },
            grid,
            out_of_area: row.out_of_area != 0,
            state,
            state_name: state.name_zh().to_owned(),
            department: row.department.clone(),
            grid_worker: row.grid_worker.clone(),
            attributes: serde_json::from_str(&row.attributes).unwrap_or_default(),
            media_urls: serde_json::from_str(&row.media_urls).unwrap_or_default(),
            photos,
            created_at: time(row.created_at_ms),
            updated_at: time(row.updated_at_ms),
            dispatched_at: row.dispatched_at_ms.map(time),
            warn_at: row.warn_at_ms.map(time),
            due_at: row.due_at_ms.map(time),
            overdue: matches!(state, State::Dispatched | State::Handling)
                && row.due_at_ms.is_some_and(|due| due <= now),
            escalated_at: row.overdue_at_ms.map(time),
            handled_at: row.handled_at_ms.map(time),
            closed_at: row.closed_at_ms.map(time),
            rework_count: row.rework_count,
            merged_into: row.merged_into.clone(),
            status_notes: row.status_notes.clone(),
            satisfaction: row.satisfaction,
            alarm_cleared_at: row.alarm_cleared_at_ms.map(time),
            token: row.token.clone(),
        }
    }

    pub(crate) async fn row(&self, id: &str) -> Result<Option<Row>, Problem> {
        sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM gov_incidents WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .db()
    }

    pub(crate) async fn photo_ids(&self, incident_id: &str) -> Result<Vec<String>, Problem> {
        Ok(self
            .photo_ids_of(&[incident_id])
            .await?
            .remove(incident_id)
            .unwrap_or_default())
    }

    /// Photo ids of several incidents, one query per 500 (a page of a queue is one read).
    pub(crate) async fn photo_ids_of(
        &self,
        incident_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<String>>, Problem> {
        let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
        for chunk in incident_ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(format!(
                "SELECT incident_id, id FROM gov_media WHERE incident_id IN ({}) ORDER BY at_ms, id",
                placeholders.join(", ")
            )));
            for id in chunk {
                query = query.bind(*id);
            }
            for (incident, id) in query.fetch_all(self.db.pool()).await.db()? {
                out.entry(incident).or_default().push(id);
            }
        }
        Ok(out)
    }

    /// One incident as the caller may see it.
    pub async fn incident(
        &self,
        id: &str,
        principal: &Principal,
    ) -> Result<IncidentDetail, Problem> {
        let row = self
            .row(id)
            .await?
            .filter(|row| self.can_see(principal, row))
            .ok_or_else(|| Problem::not_found(format!("no incident {id} you may see")))?;
        let categories = self.categories().await?;
        let events: Vec<EventRow> =
            sqlx::query_as(
                "SELECT seq, at_ms, actor, actor_department, action, from_state, to_state, comment, detail \
                 FROM gov_incident_events WHERE incident_id = $1 ORDER BY seq",
            )
            .bind(id)
            .fetch_all(self.db.pool())
            .await
            .db()?;
        let similar = match (row.lon, row.lat, row.state().is_open()) {
            (Some(lon), Some(lat), true) => {
                self.similar(&row.service_code, lon, lat, Some(&row.id))
                    .await?
            }
            _ => Vec::new(),
        };
        let contact = if self.is_centre(principal) {
            self.unseal_contact(&row)
        } else {
            None
        };
        Ok(IncidentDetail {
            incident: self.view(&row, &categories, self.photo_ids(id).await?),
            events: events
                .into_iter()
                .map(
                    |(
                        seq,
                        at,
                        actor,
                        actor_department,
                        action,
                        from_state,
                        to_state,
                        comment,
                        detail,
                    )| {
                        IncidentEvent {
                            seq,
                            at: time(at),
                            actor,
                            actor_department,
                            action,
                            from_state,
                            to_state,
                            comment,
                            detail: serde_json::from_str(&detail).unwrap_or_default(),
                        }
                    },
                )
                .collect(),
            similar,
            contact,
        })
    }

    fn unseal_contact(&self, row: &Row) -> Option<serde_json::Value> {
        let sealed = hex::decode(row.contact_sealed.as_deref()?).ok()?;
        let plain = self.contacts.decrypt(&sealed, row.id.as_bytes()).ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// Open incidents of `service_code` within the merge radius of (lon, lat).
    pub async fn similar(
        &self,
        service_code: &str,
        lon: f64,
        lat: f64,
        except: Option<&str>,
    ) -> Result<Vec<Similar>, Problem> {
        let radius = self.config.merge_radius_m;
        let dlat = radius / 111_320.0;
        let dlon = radius / (111_320.0 * lat.to_radians().cos().max(0.01));
        let rows: Vec<(String, String, String, f64, f64, i64)> = sqlx::query_as(
            "SELECT id, state, description, lon, lat, created_at_ms FROM gov_incidents \
             WHERE service_code = $1 AND state NOT IN ('closed', 'rejected') \
             AND lon BETWEEN CAST($2 AS DOUBLE PRECISION) AND CAST($3 AS DOUBLE PRECISION) \
             AND lat BETWEEN CAST($4 AS DOUBLE PRECISION) AND CAST($5 AS DOUBLE PRECISION) \
             ORDER BY created_at_ms LIMIT 50",
        )
        .bind(service_code)
        .bind(nullable_real(Some(lon - dlon)))
        .bind(nullable_real(Some(lon + dlon)))
        .bind(nullable_real(Some(lat - dlat)))
        .bind(nullable_real(Some(lat + dlat)))
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(rows
            .into_iter()
            .filter(|(id, ..)| Some(id.as_str()) != except)
            .filter_map(|(id, state, description, olon, olat, created)| {
                let distance = haversine_m(lon, lat, olon, olat);
                (distance <= radius).then(|| Similar {
                    id,
                    state: State::parse(&state).unwrap_or(State::Received),
                    description,
                    distance_m: (distance * 10.0).round() / 10.0,
                    created_at: time(created),
                })
            })
            .collect())
    }

    fn validate_report(&self, report: &Report, category: &Category) -> Result<(), Problem> {
        if report.actor.chars().count() > 200 {
            return Err(Problem::validation("the reporter's name is too long"));
        }
        if report.description.trim().is_empty() {
            return Err(Problem::validation("description is required"));
        }
        if report.description.chars().count() > 4000 {
            return Err(Problem::validation(
                "description is longer than 4,000 characters",
            ));
        }
        if report.address.chars().count() > 500 {
            return Err(Problem::validation("address is longer than 500 characters"));
        }
        if report.media_urls.len() > 10 || report.media_urls.iter().any(|u| u.len() > 2000) {
            return Err(Problem::validation(
                "at most 10 media URLs of up to 2,000 characters",
            ));
        }
        if let Some(url) = report.media_urls.iter().find(|u| !is_web_url(u)) {
            return Err(Problem::validation(format!(
                "media URL {:?} is not an http(s) URL",
                url.chars().take(100).collect::<String>()
            )));
        }
        if report
            .source_ref
            .as_ref()
            .is_some_and(|r| r.chars().count() > 200)
        {
            return Err(Problem::validation(
                "source_ref is longer than 200 characters",
            ));
        }
        if let Some(serde_json::Value::Object(contact)) = &report.contact
            && let Some((field, _)) = contact
                .iter()
                .find(|(_, v)| v.as_str().is_some_and(|v| v.chars().count() > 200))
        {
            return Err(Problem::validation(format!(
                "{field} is longer than 200 characters"
            )));
        }
        if report.attributes.len() > 50 || report.attributes.keys().any(|k| k.chars().count() > 100)
        {
            return Err(Problem::validation(
                "at most 50 attributes with names of up to 100 characters",
            ));
        }
        for attribute in &category.attributes {
            let value = report.attributes.get(&attribute.code).map(|v| v.trim());
            match value {
                None | Some("") if attribute.required => {
                    return Err(Problem::validation(format!(
                        "attribute {} ({}) is required for service {}",
                        attribute.code, attribute.description, category.service_code
                    )));
                }
                Some(v) if !v.is_empty() => {
                    let ok = match attribute.datatype.as_str() {
                        "number" => v.parse::<f64>().is_ok_and(f64::is_finite),
                        "datetime" => parse_rfc3339_ms(v).is_some(),
                        "singlevaluelist" => attribute.values.iter().any(|x| x == v),
                        "multivaluelist" => v
                            .split(',')
                            .all(|part| attribute.values.iter().any(|x| x == part.trim())),
                        _ => v.chars().count() <= 2000,
                    };
                    if !ok {
                        return Err(Problem::validation(format!(
                            "attribute {} is not a valid {}",
                            attribute.code, attribute.datatype
                        )));
                    }
                }
                _ => {}
            }
        }
        if let Some(unknown) = report
            .attributes
            .keys()
            .find(|k| !category.attributes.iter().any(|a| &a.code == *k))
        {
            return Err(Problem::validation(format!(
                "service {} has no attribute {unknown:?}",
                category.service_code
            )));
        }
        if report.photos.len() > MAX_PHOTOS {
            return Err(Problem::validation(format!("at most {MAX_PHOTOS} photos")));
        }
        Ok(())
    }

    /// Opens an incident. Where the location resolves to a grid and auto-dispatch is on, it is
    /// registered and dispatched in the same transaction (by "system", recorded as such).
    pub async fn report(&self, report: Report) -> Result<CreatedIncident, Problem> {
        let category = self
            .category(&report.service_code)
            .await?
            .filter(|c| c.active)
            .ok_or_else(|| {
                Problem::of(
                    "not-found",
                    format!("unknown service code {:?}", report.service_code),
                )
            })?;
        self.validate_report(&report, &category)?;
        let place = match report.location {
            Some(Location { lon, lat }) => {
                if !lon.is_finite() || !lat.is_finite() || lon.abs() > 180.0 || lat.abs() > 90.0 {
                    return Err(Problem::validation(format!(
                        "({lon}, {lat}) is not a WGS84 longitude and latitude"
                    )));
                }
                match self.grid.lookup(lon, lat) {
                    Some(grid) => Some(grid),
                    None if report.allow_out_of_area => None,
                    None => {
                        return Err(Problem::of(
                            "out-of-area",
                            format!(
                                "the point (lon {lon}, lat {lat}) lies outside Qingdao's ten districts; this platform handles cases inside the city only"
                            ),
                        ));
                    }
                }
            }
            None => None,
        };
        if let Some(source_ref) = &report.source_ref
            && let Some(existing) = self.by_source(report.source, source_ref).await?
        {
            let categories = self.categories().await?;
            return Ok(CreatedIncident {
                incident: self.view(&existing, &categories, self.photo_ids(&existing.id).await?),
                created: false,
                similar: Vec::new(),
            });
        }
        let now = now_ms();
        let created_at = report.reported_at_ms.unwrap_or(now);
        let id = new_id();
        let token = new_id();
        let contact_sealed = match &report.contact {
            Some(contact) => Some(hex::encode(
                self.contacts
                    .encrypt(json(contact)?.as_bytes(), id.as_bytes())
                    .map_err(|e| Problem::internal(e.to_string()))?,
            )),
            None => None,
        };
        let out_of_area = report.location.is_some() && place.is_none();
        // Decided before the write transaction, so its reads do not hold the writer: the
        // dispatch rule, else (sensor alarms) the device's owner, else the subclass's department.
        let dispatch = match (&place, self.config.auto_dispatch) {
            (Some(place), true) => {
                let department = self
                    .rule_department(&category, Some(&place.street_code))
                    .await?
                    .or_else(|| report.owner_department.clone())
                    .unwrap_or_else(|| category.department.clone());
                Some((place, department, self.calendar().await?))
            }
            _ => None,
        };
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO gov_incidents (id, source, source_ref, service_code, description, address, lon, lat, grid_code, district_code, street_code, community_code, \
             out_of_area, state, reporter, reporter_department, contact_sealed, attributes, media_urls, token, created_at_ms, updated_at_ms, rework_count, status_notes) \
             VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS DOUBLE PRECISION), CAST($8 AS DOUBLE PRECISION), $9, $10, $11, $12, $13, 'received', $14, $15, $16, $17, $18, $19, $20, $21, 0, '')",
        )
        .bind(&id)
        .bind(report.source.as_str())
        .bind(&report.source_ref)
        .bind(&category.service_code)
        .bind(report.description.trim())
        .bind(report.address.trim())
        .bind(nullable_real(report.location.map(|l| l.lon)))
        .bind(nullable_real(report.location.map(|l| l.lat)))
        .bind(place.as_ref().map(|p| p.code.clone()))
        .bind(place.as_ref().map(|p| p.district_code.clone()))
        .bind(place.as_ref().map(|p| p.street_code.clone()))
        .bind(place.as_ref().map(|p| p.community_code.clone()))
        .bind(i64::from(out_of_area))
        .bind(report.reporter.as_ref().map(|r| r.0.clone()))
        .bind(report.reporter.as_ref().map(|r| r.1.clone()))
        .bind(contact_sealed)
        .bind(json(&report.attributes)?)
        .bind(json(&report.media_urls)?)
        .bind(&token)
        .bind(created_at)
        .bind(now)
        .execute(&mut **tx)
        .await;
        match inserted {
            Ok(_) => {}
            // Another node took the same alarm or ticket a moment ago.
            Err(e) if report.source_ref.is_some() && is_unique_violation(&e) => {
                drop(tx);
                let source_ref = report.source_ref.as_deref().unwrap_or_default();
                let existing = self
                    .by_source(report.source, source_ref)
                    .await?
                    .ok_or_else(|| Problem::internal("duplicate incident vanished"))?;
                let categories = self.categories().await?;
                return Ok(CreatedIncident {
                    incident: self.view(
                        &existing,
                        &categories,
                        self.photo_ids(&existing.id).await?,
                    ),
                    created: false,
                    similar: Vec::new(),
                });
            }
            Err(e) => return Err(e).db(),
        }
        let actor_department = report
            .reporter
            .as_ref()
            .map(|r| r.1.clone())
            .unwrap_or_default();
        append_event(
            &mut tx,
            &id,
            now,
            (&report.actor, &actor_department),
            "report",
            None,
            Some(State::Received),
            &format!("{} 上报", source_name(report.source)),
            serde_json::json!({"source": report.source.as_str()}),
        )
        .await?;
        store_photos(&mut tx, &id, &report.photos, &report.actor, now).await?;
        let mut action = "report";
        if let Some((place, department, calendar)) = &dispatch {
            sqlx::query("UPDATE gov_incidents SET state = 'registered' WHERE id = $1")
                .bind(&id)
                .execute(&mut **tx)
                .await
                .db()?;
            append_event(
                &mut tx,
                &id,
                now,
                ("system", &self.config.centre),
                "register",
                Some(State::Received),
                Some(State::Registered),
                "自动立案: 位置已核实到网格",
                serde_json::json!({"grid_code": place.code}),
            )
            .await?;
            self.dispatch_in(
                &mut tx,
                &id,
                &category,
                department,
                Some(&place.code),
                calendar,
                now,
            )
            .await?;
            append_event(
                &mut tx,
                &id,
                now,
                ("system", &self.config.centre),
                "dispatch",
                Some(State::Registered),
                Some(State::Dispatched),
                "自动派遣: 按派遣规则",
                serde_json::json!({"department": department}),
            )
            .await?;
            action = "dispatch";
        }
        tx.commit().await?;
        let row = self
            .row(&id)
            .await?
            .ok_or_else(|| Problem::internal("incident vanished after commit"))?;
        self.publish(&row, action).await;
        let similar = match report.location {
            Some(l) if place.is_some() => {
                self.similar(&category.service_code, l.lon, l.lat, Some(&id))
                    .await?
            }
            _ => Vec::new(),
        };
        let categories = self.categories().await?;
        Ok(CreatedIncident {
            incident: self.view(&row, &categories, self.photo_ids(&id).await?),
            created: true,
            similar,
        })
    }

    /// The case each of these alarms became, by alarm id (alarms that raised none are absent).
    pub async fn cases_of_alarms(
        &self,
        alarm_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, String>, Problem> {
        let mut found = std::collections::HashMap::new();
        for chunk in alarm_ids.chunks(500) {
            let marks = (2..chunk.len() + 2)
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(format!(
                "SELECT source_ref, id FROM gov_incidents WHERE source = $1 AND source_ref IN ({marks})"
            )))
            .bind(Source::Alarm.as_str());
            for id in chunk {
                query = query.bind(*id);
            }
            found.extend(query.fetch_all(self.db.pool()).await.db()?);
        }
        Ok(found)
    }

    pub(crate) async fn by_source(
        &self,
        source: Source,
        source_ref: &str,
    ) -> Result<Option<Row>, Problem> {
        sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM gov_incidents WHERE source = $1 AND source_ref = $2"
        )))
        .bind(source.as_str())
        .bind(source_ref)
        .fetch_optional(self.db.pool())
        .await
        .db()
    }

    /// Sets department, grid worker and the time limit (from now, on the calendar).
    #[allow(clippy::too_many_arguments)]
    async fn dispatch_in(
        &self,
        tx: &mut yunnao_store::WriteTx,
        id: &str,
        category: &Category,
        department: &str,
        grid_code: Option<&str>,
        calendar: &WorkCalendar,
        now: i64,
    ) -> Result<(), Problem> {
        let worker = grid_code.and_then(|code| {
            self.assignments()
                .workers_of(code)
                .and_then(|w| w.first().map(|(_, username)| username.clone()))
        });
        let minutes = category.deadline_minutes;
        let due = calendar.add(now, minutes, category.clock());
        // The warning at 80% of the time limit (to the second for short natural limits).
        let warn = match category.clock() {
            crate::calendar::Clock::Natural => now + minutes * 48_000,
            clock => calendar.add(now, minutes * 8 / 10, clock),
        };
        sqlx::query(
            "UPDATE gov_incidents SET state = 'dispatched', department = $2, grid_worker = $3, dispatched_at_ms = $4, \
             warn_at_ms = $5, due_at_ms = $6, warned_at_ms = NULL, overdue_at_ms = NULL, handled_at_ms = NULL, updated_at_ms = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(department)
        .bind(worker)
        .bind(now)
        .bind(warn)
        .bind(due)
        .execute(&mut ***tx)
        .await
        .db()?;
        Ok(())
    }

    /// One workflow step by `principal`. Illegal steps are 409, steps by the wrong role 403.
    pub async fn transition(
        &self,
        id: &str,
        input: TransitionInput,
        principal: &Principal,
    ) -> Result<Incident, Problem> {
        let comment = input.comment.trim();
        if comment.is_empty() {
            return Err(Problem::validation(
                "comment is required: say why (it is kept in the case history)",
            ));
        }
        if comment.chars().count() > 2000 {
            return Err(Problem::validation(
                "comment is longer than 2,000 characters",
            ));
        }
        let action = Action::parse(&input.action)?;
        let now = now_ms();
        // Only a dispatch sets a time limit; read the calendar before taking the writer.
        let calendar = match action.names_department() {
            true => Some(self.calendar().await?),
            false => None,
        };
        let mut tx = self.db.begin_write().await?;
        let lock = self.db.dialect().for_update();
        let row = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM gov_incidents WHERE id = $1{lock}"
        )))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .db()?
        .filter(|row| self.can_see(principal, row))
        .ok_or_else(|| Problem::not_found(format!("no incident {id} you may see")))?;
        let state = row.state();
        let standing = self.standing(principal, &row);
        let step = action.step();
        let may = standing.allows(step.by);
        let to = step.to;
        if !may {
            return Err(Problem::forbidden(format!(
                "{} may not {} this incident: {}",
                principal.name,
                action.as_str(),
                step.by.who()
            )));
        }
        if !step.from.contains(&state) {
            return Err(Problem::of(
                "illegal-transition",
                format!(
                    "{} is not possible while the incident is {} ({}); it needs {}",
                    action.as_str(),
                    state.as_str(),
                    state.name_zh(),
                    step.from
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )
            .with_extension("state", state.as_str()));
        }
        let mut detail = serde_json::json!({});
        let category = self
            .category(&row.service_code)
            .await?
            .ok_or_else(|| Problem::internal("incident of an unknown category"))?;
        match action {
            Action::Dispatch | Action::Reassign => {
                let department = match (action, &input.department) {
                    (_, Some(d)) => d.clone(),
                    (Action::Dispatch, None) => self
                        .rule_department(&category, row.street_code.as_deref())
                        .await?
                        .unwrap_or_else(|| category.department.clone()),
                    _ => {
                        return Err(Problem::validation(
                            "reassign needs department: the department that takes the case over",
                        ));
                    }
                };
                if !self.identity.department_exists(&department).await? {
                    return Err(Problem::validation(format!(
                        "department {department:?} does not exist"
                    )));
                }
                self.dispatch_in(
                    &mut tx,
                    id,
                    &category,
                    &department,
                    row.grid_code.as_deref(),
                    calendar
                        .as_ref()
                        .ok_or_else(|| Problem::internal("no calendar for a dispatch"))?,
                    now,
                )
                .await?;
                detail = serde_json::json!({"department": department, "previous_department": row.department});
            }
            Action::SendBack => {
                sqlx::query(
                    "UPDATE gov_incidents SET state = 'registered', department = NULL, warn_at_ms = NULL, due_at_ms = NULL, updated_at_ms = $2 WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .execute(&mut **tx)
                .await
                .db()?;
                detail = serde_json::json!({"previous_department": row.department});
            }
            Action::Merge => {
                let into = input.into.as_deref().ok_or_else(|| {
                    Problem::validation("merge needs into: the incident this one repeats")
                })?;
                if into == id {
                    return Err(Problem::validation(
                        "an incident cannot be merged into itself",
                    ));
                }
                let target = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM gov_incidents WHERE id = $1"
                )))
                .bind(into)
                .fetch_optional(&mut **tx)
                .await
                .db()?
                .ok_or_else(|| Problem::validation(format!("no incident {into} to merge into")))?;
                if !target.state().is_open() {
                    return Err(Problem::of(
                        "illegal-transition",
                        format!(
                            "{into} is {}: merge into an open incident",
                            target.state().as_str()
                        ),
                    ));
                }
                sqlx::query(
                    "UPDATE gov_incidents SET state = 'closed', merged_into = $2, closed_at_ms = $3, updated_at_ms = $3, status_notes = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(into)
                .bind(now)
                .bind(format!("与案件 {into} 合并: {comment}"))
                .execute(&mut **tx)
                .await
                .db()?;
                detail = serde_json::json!({"into": into});
            }
            _ => {
                let extra = match action {
                    Action::Complete => ", handled_at_ms = $2",
                    Action::Close => ", closed_at_ms = $2",
                    Action::Rework => ", rework_count = rework_count + 1, handled_at_ms = NULL",
                    _ => "",
                };
                let notes = match action {
                    Action::Reject | Action::Close => ", status_notes = $4",
                    _ => "",
                };
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE gov_incidents SET state = $3, updated_at_ms = $2{extra}{notes} WHERE id = $1"
                )))
                .bind(id)
                .bind(now)
                .bind(to.as_str())
                .bind(comment)
                .execute(&mut **tx)
                .await
                .db()?;
            }
        }
        if input.photos.len() > MAX_PHOTOS {
            return Err(Problem::validation(format!("at most {MAX_PHOTOS} photos")));
        }
        store_photos(&mut tx, id, &input.photos, &principal.name, now).await?;
        append_event(
            &mut tx,
            id,
            now,
            (&principal.name, &principal.department),
            action.as_str(),
            Some(state),
            Some(to),
            comment,
            detail,
        )
        .await?;
        tx.commit().await?;
        let row = self
            .row(id)
            .await?
            .ok_or_else(|| Problem::internal("incident vanished after commit"))?;
        self.publish(&row, action.as_str()).await;
        let categories = self.categories().await?;
        Ok(self.view(&row, &categories, self.photo_ids(id).await?))
    }

    /// The reporter rates a closed incident (1–5).
    pub async fn rate(
        &self,
        id: &str,
        satisfaction: i64,
        comment: &str,
        principal: &Principal,
    ) -> Result<Incident, Problem> {
        if !(1..=5).contains(&satisfaction) {
            return Err(Problem::validation(
                "satisfaction is 1 (very unsatisfied) to 5 (very satisfied)",
            ));
        }
        let row = self
            .row(id)
            .await?
            .filter(|row| self.can_see(principal, row))
            .ok_or_else(|| Problem::not_found(format!("no incident {id} you may see")))?;
        if row.reporter.as_deref() != Some(principal.id.as_str()) {
            return Err(Problem::forbidden("only the reporter rates an incident"));
        }
        if row.state() != State::Closed {
            return Err(Problem::of(
                "illegal-transition",
                format!(
                    "the incident is {}: rate it once it is closed",
                    row.state().as_str()
                ),
            ));
        }
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE gov_incidents SET satisfaction = $2, updated_at_ms = $3 WHERE id = $1")
            .bind(id)
            .bind(satisfaction)
            .bind(now)
            .execute(&mut **tx)
            .await
            .db()?;
        append_event(
            &mut tx,
            id,
            now,
            (&principal.name, &principal.department),
            "rate",
            None,
            None,
            comment.trim(),
            serde_json::json!({"satisfaction": satisfaction}),
        )
        .await?;
        tx.commit().await?;
        let row = self
            .row(id)
            .await?
            .ok_or_else(|| Problem::internal("incident vanished"))?;
        let categories = self.categories().await?;
        Ok(self.view(&row, &categories, self.photo_ids(id).await?))
    }

    /// Notes on the alarm's incident that the sensor alarm has cleared (the case goes on: someone
    /// still checks the cause).
    pub async fn alarm_cleared(&self, alarm_id: &str, at_ms: i64) -> Result<bool, Problem> {
        let Some(row) = self.by_source(Source::Alarm, alarm_id).await? else {
            return Ok(false);
        };
        if row.alarm_cleared_at_ms.is_some() {
            return Ok(false);
        }
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE gov_incidents SET alarm_cleared_at_ms = $2, updated_at_ms = $2 WHERE id = $1 AND alarm_cleared_at_ms IS NULL",
        )
        .bind(&row.id)
        .bind(at_ms)
        .execute(&mut **tx)
        .await
        .db()?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        append_event(
            &mut tx,
            &row.id,
            at_ms,
            ("system", &self.config.centre),
            "alarm_cleared",
            None,
            None,
            "传感器告警已解除",
            serde_json::json!({"alarm_id": alarm_id}),
        )
        .await?;
        tx.commit().await?;
        self.publish(&row, "alarm_cleared").await;
        Ok(true)
    }

    pub(crate) async fn publish(&self, row: &Row, action: &str) {
        let event = IncidentChanged {
            incident_id: row.id.clone(),
            action: action.to_owned(),
            state: row.state(),
            service_code: row.service_code.clone(),
            district_code: row.district_code.clone(),
            department: row.department.clone(),
            grid_worker: row.grid_worker.clone(),
            at_ms: now_ms(),
        };
        if let Err(e) = self.bus.publish(&event).await {
            tracing::warn!(error = %e, "publishing an incident change failed");
        }
    }
}

/// A case's photos, in the transaction of the report or step they came with.
async fn store_photos(
    tx: &mut yunnao_store::WriteTx,
    incident_id: &str,
    photos: &[Photo],
    by: &str,
    at_ms: i64,
) -> Result<(), Problem> {
    for photo in photos {
        sqlx::query(
            "INSERT INTO gov_media (id, incident_id, content_type, bytes, size, uploaded_by, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new_id())
        .bind(incident_id)
        .bind(&photo.content_type)
        .bind(photo.bytes.clone())
        .bind(photo.bytes.len() as i64)
        .bind(by)
        .bind(at_ms)
        .execute(&mut ***tx)
        .await
        .db()?;
    }
    Ok(())
}

fn source_name(source: Source) -> &'static str {
    match source {
        Source::Citizen => "市民",
        Source::Open311 => "Open311",
        Source::Alarm => "传感器告警",
        Source::Patrol => "网格员巡查",
        Source::Hotline => "12345热线",
        Source::Api => "接口",
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn append_event(
    tx: &mut yunnao_store::WriteTx,
    id: &str,
    at_ms: i64,
    (actor, department): (&str, &str),
    action: &str,
    from: Option<State>,
    to: Option<State>,
    comment: &str,
    detail: serde_json::Value,
) -> Result<(), Problem> {
    let (seq,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(MAX(seq), 0) + 1 AS BIGINT) FROM gov_incident_events WHERE incident_id = $1",
    )
    .bind(id)
    .fetch_one(&mut ***tx)
    .await
    .db()?;
    sqlx::query(
        "INSERT INTO gov_incident_events (incident_id, seq, at_ms, actor, actor_department, action, from_state, to_state, comment, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id)
    .bind(seq)
    .bind(at_ms)
    .bind(actor)
    .bind(department)
    .bind(action)
    .bind(from.map(|s| s.as_str()))
    .bind(to.map(|s| s.as_str()))
    .bind(comment)
    .bind(json(&detail)?)
    .execute(&mut ***tx)
    .await
    .db()?;
    Ok(())
}

/// Great-circle distance in metres.
pub fn haversine_m(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().asin()
}

/// An absolute http(s) URL with a host and nothing a page could mistake for markup or a
/// script (`javascript:`, `file:`, `data:` and the like are refused).
pub(crate) fn is_web_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty()
        && !url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "<>\"'`\\".contains(c))
}

/// Free text shown to the public with personal data masked: runs of 7 or more digits (phone
/// numbers, 18-digit ID numbers with their final X) keep their first three and last two
/// characters, e-mail addresses their first character and domain.
pub fn mask_personal(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            // A number, with the separators phone numbers are written with.
            let mut j = i;
            let mut digits = 0;
            while j < chars.len()
                && (chars[j].is_ascii_digit()
                    || (matches!(chars[j], '-' | ' ')
                        && chars.get(j + 1).is_some_and(char::is_ascii_digit))
                    || (matches!(chars[j], 'X' | 'x') && digits == 17))
            {
                if chars[j].is_ascii_alphanumeric() {
                    digits += 1;
                }
                j += 1;
            }
            let run: Vec<char> = chars[i..j]
                .iter()
                .copied()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            if digits >= 7 {
                out.extend(&run[..3]);
                out.extend(std::iter::repeat_n('*', run.len() - 5));
                out.extend(&run[run.len() - 2..]);
            } else {
                out.extend(&chars[i..j]);
            }
            i = j;
            continue;
        }
        if c == '@' {
            // Mask the local part already written out, back to the word's start.
            let local: String = out
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || "._%+-".contains(*c))
                .collect();
            let domain_ahead = chars.get(i + 1).is_some_and(|c| c.is_ascii_alphanumeric());
            if !local.is_empty() && domain_ahead {
                let keep = out.len() - local.len();
                out.truncate(keep);
                let first = local.chars().last().unwrap_or('*');
                out.push(first);
                out.push_str("***");
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod public_text_tests {
    use super::{is_web_url, mask_personal};

    #[test]
    fn personal_data_is_masked_in_public_text() {
        for (text, masked) in [
            ("电话13812345678请回电", "电话138******78请回电"),
            ("call 0532-8888 6666", "call 053*******66"),
            ("身份证370202199001011234", "身份证370*************34"),
            ("身份证 37020219900101123X", "身份证 370*************3X"),
            (
                "邮箱 zhang.san@example.cn 谢谢",
                "邮箱 z***@example.cn 谢谢",
            ),
            ("五四广场 3 号楼 2 单元", "五四广场 3 号楼 2 单元"),
            ("2026年12月6日 10:30", "2026年12月6日 10:30"),
            ("@someone", "@someone"),
        ] {
            assert_eq!(mask_personal(text), masked, "{text}");
        }
    }

    #[test]
    fn only_web_urls_are_media() {
        for url in ["https://img.example.cn/a.jpg", "http://10.0.0.1:8080/p?x=1"] {
            assert!(is_web_url(url), "{url}");
        }
        for url in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "data:image/png;base64,AAAA",
            "https://",
            "https://x.cn/\"><script>",
            "ftp://x.cn/a",
            "https://x.cn/a b",
        ] {
            assert!(!is_web_url(url), "{url}");
        }
    }
}
