//! A subscription as the client sends it (CIM 009 §5.2.12), typed: serde checks the shape and
//! names the path of what is wrong; `Subscription::parse` checks the meaning. Members this
//! broker does not serve are ignored, as the specification asks.

use crate::errors;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use yunnao_core::Problem;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionBody {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub id: Option<String>,
    pub subscription_name: Option<String>,
    pub description: Option<String>,
    pub entities: Option<Vec<EntitySelector>>,
    pub watched_attributes: Option<Vec<String>>,
    pub q: Option<String>,
    pub geo_q: Option<GeoQ>,
    pub csf: Option<String>,
    pub temporal_q: Option<TemporalQ>,
    pub notification_trigger: Option<Vec<String>>,
    pub notification: Option<NotificationParams>,
    pub expires_at: Option<String>,
    /// Seconds, kept as the client wrote them (`10` stays `10`, not `10.0`).
    pub time_interval: Option<Number>,
    pub throttling: Option<Number>,
    pub is_active: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntitySelector {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub id: Option<String>,
    pub id_pattern: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct GeoQ {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geometry: Option<String>,
    /// An array, or the same array written as a string (as in a query string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordinates: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub georel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geoproperty: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct TemporalQ {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeproperty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timerel: Option<String>,
    #[serde(rename = "timeAt", skip_serializing_if = "Option::is_none")]
    pub time_at: Option<String>,
    #[serde(rename = "endTimeAt", skip_serializing_if = "Option::is_none")]
    pub end_time_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationParams {
    pub attributes: Option<Vec<String>>,
    pub format: Option<String>,
    pub endpoint: Option<EndpointParams>,
    pub show_changes: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointParams {
    pub uri: Option<String>,
    pub accept: Option<String>,
    /// Key-value pairs for the transport (MQTT QoS, version); checked by the endpoint.
    pub notifier_info: Option<Value>,
}

impl SubscriptionBody {
    /// Reads a subscription; a member of the wrong type is refused with its path
    /// (`notification.endpoint.uri: invalid type: …`).
    pub fn read(body: &Value) -> Result<Self, Problem> {
        if !body.is_object() {
            return Err(errors::bad_request("a subscription is a JSON object"));
        }
        serde_path_to_error::deserialize(body)
            .map_err(|error| errors::bad_request(format!("{}: {}", error.path(), error.inner())))
    }
}
