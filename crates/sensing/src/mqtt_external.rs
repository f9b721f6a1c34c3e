//! Consuming device telemetry from an external MQTT broker (Mosquitto here, EMQX in a large
//! city) instead of serving MQTT ourselves.
//!
//! Every node subscribes to `$share/yunnao/{prefix}/devices/+/telemetry` with QoS 1, so the
//! broker splits the device load across nodes. Acknowledgements are manual: a node acks a
//! message to the broker only after its readings are committed (or refused as invalid, since
//! redelivery cannot fix those). Durability in this mode: the device's PUBACK comes from the
//! broker, so it means "the broker has it"; from there to us delivery is at-least-once — if a
//! node dies before committing, the broker redelivers the unacknowledged message (to this node
//! when it reconnects with its persistent session, or to another group member). Whether the
//! broker itself survives a crash with the message depends on its persistence settings.
//!
//! The broker authenticates devices; the device id is taken from the topic.

use crate::{DeviceInfo, IngestError, Sensing};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ExternalMqtt {
    /// `mqtt://host:port`
    pub url: String,
    /// Stable per node, so the broker keeps this node's session across restarts.
    pub client_id: String,
    /// Topic prefix: devices publish to `{prefix}/devices/{device_id}/telemetry`.
    pub topic_prefix: String,
    /// Shared-subscription group; every node of one deployment uses the same.
    pub group: String,
}

fn host_port(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| format!("broker URL {url:?} must start with mqtt://"))?;
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) => Ok((
            host.to_owned(),
            port.parse().map_err(|_| format!("bad port in {url:?}"))?,
        )),
        None => Ok((rest.to_owned(), 1883)),
    }
}

/// Starts the consumer; returns a counter of messages taken from the broker.
pub fn start(sensing: Sensing, config: ExternalMqtt) -> Result<Arc<AtomicU64>, String> {
    let (host, port) = host_port(&config.url)?;
    let mut options = MqttOptions::new(config.client_id.clone(), host, port);
    options.set_clean_session(false);
    options.set_manual_acks(true);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(200);
    options.set_max_packet_size(sensing.config.max_message_bytes + 1024, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let filter = format!(
        "$share/{}/{}/devices/+/telemetry",
        config.group, config.topic_prefix
    );
    let prefix = format!("{}/devices/", config.topic_prefix);
    tokio::spawn(async move {
        let mut devices: HashMap<String, (Option<DeviceInfo>, Instant)> = HashMap::new();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Err(error) = client.subscribe(filter.clone(), QoS::AtLeastOnce).await {
                        tracing::error!(%error, "external MQTT subscribe failed");
                    }
                    tracing::info!(%filter, "consuming device telemetry from the external broker");
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let device_id = publish
                        .topic
                        .strip_prefix(&prefix)
                        .and_then(|rest| rest.strip_suffix("/telemetry"))
                        .unwrap_or("")
                        .to_owned();
                    let stale = devices
                        .get(&device_id)
                        .is_none_or(|(_, at)| at.elapsed() > Duration::from_secs(60));
                    if stale {
                        match sensing.device_info(&device_id).await {
                            Ok(info) => {
                                devices.insert(device_id.clone(), (info, Instant::now()));
                            }
                            Err(problem) => {
                                // Not acknowledged: the broker redelivers after reconnect.
                                tracing::error!(%problem, "device lookup failed");
                                continue;
                            }
                        }
                    }
                    let device = devices.get(&device_id).and_then(|(info, _)| info.clone());
                    let sensing = sensing.clone();
                    let client = client.clone();
                    tokio::spawn(async move {
                        let outcome = match &device {
                            Some(device) => {
                                sensing.ingest(device, &publish.payload).await.map(|_| ())
                            }
                            None => Err(IngestError::UnknownToken),
                        };
                        match outcome {
                            Err(IngestError::Unavailable(reason)) => {
                                tracing::error!(%reason, "commit failed; leaving the message unacknowledged");
                            }
                            other => {
                                if let Err(IngestError::UnknownToken) = other {
                                    tracing::warn!(topic = %publish.topic, "telemetry for an unknown device dropped");
                                }
                                if let Err(error) = client.ack(&publish).await {
                                    tracing::error!(%error, "ack to broker failed");
                                }
                            }
                        }
                    });
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "external MQTT connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(received)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_broker_urls() {
        assert_eq!(
            super::host_port("mqtt://127.0.0.1:1883"),
            Ok(("127.0.0.1".into(), 1883))
        );
        assert_eq!(
            super::host_port("mqtt://broker"),
            Ok(("broker".into(), 1883))
        );
        assert!(super::host_port("http://x").is_err());
        assert!(super::host_port("mqtt://x:port").is_err());
    }
}
