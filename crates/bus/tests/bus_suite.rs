//! The bus contract. Every implementation in `Bus` runs these tests.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use yunnao_bus::*;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct AlarmRaised {
    device: String,
    level: f64,
}

impl Event for AlarmRaised {
    const TYPE: &'static str = "sensing.alarm.raised";
    const VERSION: u32 = 1;
    fn subject(&self) -> String {
        format!("sensing.alarm.raised.{}", self.device)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct AlarmRaisedV2 {
    device: String,
}

impl Event for AlarmRaisedV2 {
    const TYPE: &'static str = "sensing.alarm.raised";
    const VERSION: u32 = 2;
    fn subject(&self) -> String {
        format!("sensing.alarm.raised.{}", self.device)
    }
}

fn buses() -> Vec<(&'static str, Bus)> {
    vec![("in-process", Bus::from_url("memory://").expect("bus"))]
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .expect("delivery within 5 s")
}

#[tokio::test]
async fn typed_events_reach_matching_subscribers_only() {
    for (name, bus) in buses() {
        let mut all = bus
            .subscribe("sensing.>", SubscribeOptions::default())
            .expect("sub");
        let mut one = bus
            .subscribe("sensing.alarm.raised.gauge-1", SubscribeOptions::default())
            .expect("sub");
        let mut other = bus
            .subscribe("governance.>", SubscribeOptions::default())
            .expect("sub");

        for device in ["gauge-1", "gauge-2"] {
            bus.publish(&AlarmRaised {
                device: device.into(),
                level: 4.6,
            })
            .await
            .expect("publish");
        }

        let first = within(all.next_event()).await.expect("event");
        assert_eq!(first.event_type, "sensing.alarm.raised", "{name}");
        assert_eq!(
            first.decode::<AlarmRaised>().expect("decode").device,
            "gauge-1"
        );
        let second = within(all.next_event()).await.expect("event");
        assert_eq!(
            second.decode::<AlarmRaised>().expect("decode").device,
            "gauge-2"
        );
        let only = within(one.next_event()).await.expect("event");
        assert_eq!(only.subject, "sensing.alarm.raised.gauge-1");
        assert!(
            tokio::time::timeout(Duration::from_millis(100), other.next())
                .await
                .is_err(),
            "{name}: non-matching subscriber got an event"
        );
        // The version is part of the contract.
        assert!(matches!(
            only.decode::<AlarmRaisedV2>(),
            Err(BusError::TypeMismatch { .. })
        ));
    }
}

#[tokio::test]
async fn drop_newest_counts_and_reports_what_a_slow_subscriber_missed() {
    for (name, bus) in buses() {
        let mut slow = bus
            .subscribe(
                "sensing.>",
                SubscribeOptions {
                    buffer: 4,
                    lag: LagPolicy::DropNewest,
                },
            )
            .expect("sub");
        for i in 0..10 {
            bus.publish(&AlarmRaised {
                device: format!("d{i}"),
                level: 1.0,
            })
            .await
            .expect("publish");
        }
        let mut seen = Vec::new();
        for _ in 0..4 {
            match within(slow.next()).await.expect("delivery") {
                Delivery::Event(e) => seen.push(e.decode::<AlarmRaised>().expect("decode").device),
                Delivery::Lagged { .. } => panic!("{name}: lag reported before queued events"),
            }
        }
        assert_eq!(
            seen,
            ["d0", "d1", "d2", "d3"],
            "{name}: oldest kept, in order"
        );
        assert_eq!(
            within(slow.next()).await,
            Some(Delivery::Lagged { missed: 6 }),
            "{name}"
        );
        assert_eq!(slow.dropped(), 6);
        assert_eq!(bus.dropped_total(), 6);
    }
}

#[tokio::test]
async fn block_policy_loses_nothing_under_a_slow_subscriber() {
    for (name, bus) in buses() {
        let mut careful = bus
            .subscribe(
                "sensing.>",
                SubscribeOptions {
                    buffer: 2,
                    lag: LagPolicy::Block,
                },
            )
            .expect("sub");
        let publisher = {
            let bus = bus.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    bus.publish(&AlarmRaised {
                        device: format!("d{i}"),
                        level: 1.0,
                    })
                    .await
                    .expect("publish");
                }
            })
        };
        for i in 0..200 {
            let event = within(careful.next_event()).await.expect("event");
            assert_eq!(
                event.decode::<AlarmRaised>().expect("decode").device,
                format!("d{i}"),
                "{name}"
            );
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        publisher.await.expect("publisher");
        assert_eq!(careful.dropped(), 0);
    }
}

#[tokio::test]
async fn dropped_subscriptions_do_not_block_publishers() {
    for (_name, bus) in buses() {
        let blocked = bus
            .subscribe(
                ">",
                SubscribeOptions {
                    buffer: 1,
                    lag: LagPolicy::Block,
                },
            )
            .expect("sub");
        drop(blocked);
        for i in 0..10 {
            within(bus.publish(&AlarmRaised {
                device: format!("d{i}"),
                level: 0.0,
            }))
            .await
            .expect("publish");
        }
    }
}

#[test]
fn bad_patterns_and_urls_are_refused() {
    let bus = Bus::in_process();
    assert!(bus.subscribe("a..b", SubscribeOptions::default()).is_err());
    assert!(matches!(
        Bus::from_url("kafka://x"),
        Err(BusError::UnsupportedUrl(_))
    ));
}
