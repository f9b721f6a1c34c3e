//! The embedded MQTT 3.1.1 endpoint for devices, on rumqttc's packet codec.
//!
//! Why our own connection loop rather than an embedded broker: the rule is that a QoS 1
//! PUBACK (QoS 2 PUBREC) is sent only after the readings are committed, and brokers such as
//! rumqttd acknowledge on receipt. Devices here only publish telemetry, so the server needs
//! CONNECT (token as username, the ThingsBoard convention), PUBLISH at QoS 0/1/2, PINGREQ and
//! DISCONNECT; SUBSCRIBE is answered with a refusal.
//!
//! Each connection pipelines: it keeps reading while up to [`MAX_INFLIGHT`] messages wait for
//! their commit, and sends acknowledgements in arrival order as commits complete. A rejected
//! message (bad JSON, out of range, …) is acknowledged too, since resending it cannot help; it
//! is counted on the device and logged. A storage failure is never acknowledged: the
//! connection is closed so the device resends after reconnecting.
//!
//! Topics: `v1/devices/me/telemetry` (ThingsBoard) and `yunnao/devices/{device_id}/telemetry`
//! (must be the authenticated device's own id).

use crate::{DeviceInfo, IngestError, Sensing};
use futures::stream::FuturesOrdered;
use futures::{FutureExt, SinkExt, StreamExt};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Codec, ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, SubAck, SubscribeReasonCode,
};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// Messages per connection waiting for their commit before the connection stops reading.
pub const MAX_INFLIGHT: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const TB_TELEMETRY_TOPIC: &str = "v1/devices/me/telemetry";

/// Longest a connection may stay silent, whatever keep-alive it asked for (0 asks for none).
const MAX_IDLE: Duration = Duration::from_secs(600);

/// Serves devices on `listener` until the task is dropped, with at most `max_connections`
/// open at once: one more is answered CONNACK "server unavailable" and closed.
pub async fn serve(sensing: Sensing, listener: TcpListener, max_connections: usize) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tokio::spawn(refuse(stream));
                    continue;
                };
                let sensing = sensing.clone();
                tokio::spawn(async move {
                    if let Err(reason) = connection(sensing, stream).await {
                        tracing::debug!(%peer, %reason, "MQTT connection closed");
                    }
                    drop(permit);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A connection past the limit: its CONNECT (if it comes soon) is answered "server
/// unavailable", so the device backs off instead of waiting.
async fn refuse(stream: TcpStream) {
    let mut framed = Framed::new(
        stream,
        Codec {
            max_incoming_size: 64 * 1024,
            max_outgoing_size: 1024,
        },
    );
    let answer = async {
        if let Some(Ok(Packet::Connect(_))) = framed.next().await {
            let _ = framed
                .send(Packet::ConnAck(ConnAck::new(
                    ConnectReturnCode::ServiceUnavailable,
                    false,
                )))
                .await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), answer).await;
}

/// What to send once a message's commit resolves.
enum Ack {
    Nothing,
    Puback(u16),
    Pubrec(u16),
}

type Pending = Pin<Box<dyn Future<Output = (Ack, Result<usize, IngestError>)> + Send>>;

async fn connection(sensing: Sensing, stream: TcpStream) -> Result<(), String> {
    let codec = Codec {
        max_incoming_size: sensing.config.max_message_bytes + 1024,
        max_outgoing_size: 64 * 1024,
    };
    let mut framed = Framed::new(stream, codec);
    let connect = match tokio::time::timeout(CONNECT_TIMEOUT, framed.next()).await {
        Ok(Some(Ok(Packet::Connect(connect)))) => connect,
        Ok(Some(Ok(_))) => return Err("first packet was not CONNECT".into()),
        Ok(Some(Err(e))) => return Err(format!("bad packet: {e:?}")),
        Ok(None) => return Err("closed before CONNECT".into()),
        Err(_) => return Err("no CONNECT within 10 s".into()),
    };
    let token = connect
        .login
        .as_ref()
        .map(|l| l.username.clone())
        .unwrap_or_default();
    let device = match sensing.device_for_token(&token).await {
        Ok(Some(device)) => device,
        Ok(None) => {
            let _ = framed
                .send(Packet::ConnAck(ConnAck::new(
                    ConnectReturnCode::BadUserNamePassword,
                    false,
                )))
                .await;
            return Err("unknown device token".into());
        }
        Err(problem) => {
            let _ = framed
                .send(Packet::ConnAck(ConnAck::new(
                    ConnectReturnCode::ServiceUnavailable,
                    false,
                )))
                .await;
            return Err(problem.to_string());
        }
    };
    framed
        .send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
        .await
        .map_err(|e| format!("{e:?}"))?;
    let own_topic = format!("yunnao/devices/{}/telemetry", device.id);
    // MQTT-3.1.2-24: the server may close after 1.5 × keep-alive without traffic; a client
    // asking for none (0) or for hours still gets closed after MAX_IDLE of silence.
    let idle_limit = match connect.keep_alive {
        0 => MAX_IDLE,
        seconds => Duration::from_millis(u64::from(seconds) * 1500).min(MAX_IDLE),
    };
    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    // Shared by this connection's in-flight messages: one reference count each, no copies.
    let shared = std::sync::Arc::new(sensing);
    let device: std::sync::Arc<DeviceInfo> = std::sync::Arc::new(device);
    loop {
        tokio::select! {
            Some(first) = pending.next(), if !pending.is_empty() => {
                // Every acknowledgement that is ready goes out in one write.
                let mut done = Some(first);
                while let Some((ack, result)) = done {
                    if let Err(IngestError::Unavailable(reason)) = &result {
                        return Err(format!("storage unavailable, not acknowledged: {reason}"));
                    }
                    let packet = match ack {
                        Ack::Nothing => None,
                        Ack::Puback(pkid) => Some(Packet::PubAck(PubAck::new(pkid))),
                        Ack::Pubrec(pkid) => Some(Packet::PubRec(PubRec::new(pkid))),
                    };
                    if let Some(packet) = packet {
                        framed.feed(packet).await.map_err(|e| format!("{e:?}"))?;
                    }
                    done = if pending.is_empty() {
                        None
                    } else {
                        pending.next().now_or_never().flatten()
                    };
                }
                framed.flush().await.map_err(|e| format!("{e:?}"))?;
            }
            incoming = tokio::time::timeout(idle_limit, framed.next()), if pending.len() < MAX_INFLIGHT => {
                let packet = match incoming {
                    Err(_) => return Err("keep-alive expired".into()),
                    Ok(None) => break,
                    Ok(Some(Err(e))) => return Err(format!("bad packet: {e:?}")),
                    Ok(Some(Ok(packet))) => packet,
                };
                match packet {
                    Packet::Publish(publish) => {
                        let ack = match publish.qos {
                            QoS::AtMostOnce => Ack::Nothing,
                            QoS::AtLeastOnce => Ack::Puback(publish.pkid),
                            QoS::ExactlyOnce => Ack::Pubrec(publish.pkid),
                        };
                        let wrong_topic = (publish.topic != TB_TELEMETRY_TOPIC && publish.topic != own_topic)
                            .then(|| publish.topic.clone());
                        let sensing = shared.clone();
                        let device = device.clone();
                        pending.push_back(Box::pin(async move {
                            if let Some(topic) = wrong_topic {
                                let reason = format!("topic {topic:?} is not a telemetry topic of this device");
                                sensing.record_rejection(&device.id, &reason).await;
                                return (ack, Err(IngestError::Rejected(reason)));
                            }
                            let result = sensing.ingest(&device, &publish.payload).await;
                            (ack, result)
                        }));
                    }
                    Packet::PubRel(pubrel) => {
                        // QoS 2 step 3: the PUBREC already followed the commit.
                        framed.send(Packet::PubComp(PubComp::new(pubrel.pkid))).await.map_err(|e| format!("{e:?}"))?;
                    }
                    Packet::PingReq => {
                        framed.send(Packet::PingResp).await.map_err(|e| format!("{e:?}"))?;
                    }
                    Packet::Subscribe(subscribe) => {
                        let codes = subscribe.filters.iter().map(|_| SubscribeReasonCode::Failure).collect();
                        framed.send(Packet::SubAck(SubAck::new(subscribe.pkid, codes))).await.map_err(|e| format!("{e:?}"))?;
                    }
                    Packet::Disconnect => break,
                    Packet::Connect(_) => return Err("second CONNECT on one connection".into()),
                    _ => {}
                }
            }
        }
    }
    // Finish what was received before the client left, so nothing accepted is dropped.
    while let Some((_, result)) = pending.next().await {
        if let Err(IngestError::Unavailable(reason)) = result {
            return Err(reason);
        }
    }
    Ok(())
}
