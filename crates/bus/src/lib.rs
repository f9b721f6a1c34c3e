//! The event bus. Domain crates talk to each other through it, never through each other's
//! tables. Events are typed and versioned ([`Event`]), travel as [`Envelope`]s with a subject
//! such as `sensing.alarm.raised`, and subscribers select them with NATS-style patterns
//! (`*` one token, `>` the rest).
//!
//! Every subscription has a bounded buffer and an explicit [`LagPolicy`]:
//! - [`LagPolicy::Block`]: the publisher waits for room (for consumers that must see every
//!   event, such as the governance hub turning alarms into incidents);
//! - [`LagPolicy::DropNewest`]: the event is not queued for that subscriber, the loss is counted
//!   and the subscriber is told how many it missed (for live views that only need the latest).
//!
//! [`Bus`] is an enum of implementations chosen by URL (`memory://` today; `nats://` joins it
//! behind the same methods), so every implementation runs the same test suite.

mod memory;
mod pattern;

pub use memory::InProcessBus;
pub use pattern::{Pattern, PatternError};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A typed event. `TYPE` names it (`identity.user.created`); `VERSION` changes when the payload
/// changes incompatibly, so old subscribers can refuse what they do not understand.
pub trait Event: Serialize + DeserializeOwned {
    const TYPE: &'static str;
    const VERSION: u32;
    /// The subject it is published on, e.g. `identity.user.created.370200-bigdata`.
    fn subject(&self) -> String;
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub subject: String,
    pub event_type: String,
    pub version: u32,
    pub time_ms: i64,
    pub data: serde_json::Value,
}

impl Envelope {
    pub fn new<E: Event>(event: &E) -> Result<Self, BusError> {
        Ok(Self {
            id: yunnao_core::new_id(),
            subject: event.subject(),
            event_type: E::TYPE.to_owned(),
            version: E::VERSION,
            time_ms: yunnao_core::time::now_ms(),
            data: serde_json::to_value(event).map_err(|e| BusError::Encode(e.to_string()))?,
        })
    }

    /// Decodes the payload as `E`, refusing another type or version.
    pub fn decode<E: Event>(&self) -> Result<E, BusError> {
        if self.event_type != E::TYPE || self.version != E::VERSION {
            return Err(BusError::TypeMismatch {
                expected: format!("{}@{}", E::TYPE, E::VERSION),
                found: format!("{}@{}", self.event_type, self.version),
            });
        }
        serde_json::from_value(self.data.clone()).map_err(|e| BusError::Decode(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BusError {
    #[error("invalid subject pattern: {0}")]
    Pattern(#[from] PatternError),
    #[error("unsupported bus URL {0:?}: use memory://")]
    UnsupportedUrl(String),
    #[error("event does not encode: {0}")]
    Encode(String),
    #[error("event does not decode: {0}")]
    Decode(String),
    #[error("expected event {expected}, found {found}")]
    TypeMismatch { expected: String, found: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagPolicy {
    Block,
    DropNewest,
}

#[derive(Debug, Clone, Copy)]
pub struct SubscribeOptions {
    pub buffer: usize,
    pub lag: LagPolicy,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            buffer: 1024,
            lag: LagPolicy::DropNewest,
        }
    }
}

/// What a subscriber receives: an event, or word that it missed some.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Event(Envelope),
    /// `missed` events were dropped for this subscriber since the last delivery.
    Lagged {
        missed: u64,
    },
}

pub struct Subscription {
    pattern: Pattern,
    receiver: mpsc::Receiver<Envelope>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    reported: u64,
}

impl Subscription {
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The next delivery; `None` when the bus is gone. Queued events come first, because the
    /// events a full buffer dropped were newer than everything still queued; the gap is
    /// reported once the queue has drained.
    pub async fn next(&mut self) -> Option<Delivery> {
        match self.receiver.try_recv() {
            Ok(envelope) => return Some(Delivery::Event(envelope)),
            Err(mpsc::error::TryRecvError::Disconnected) => return self.take_lag(),
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        if let Some(lag) = self.take_lag() {
            return Some(lag);
        }
        match self.receiver.recv().await {
            Some(envelope) => Some(Delivery::Event(envelope)),
            None => self.take_lag(),
        }
    }

    /// The next event, skipping lag reports (for consumers that only count them).
    pub async fn next_event(&mut self) -> Option<Envelope> {
        loop {
            match self.next().await? {
                Delivery::Event(envelope) => return Some(envelope),
                Delivery::Lagged { .. } => continue,
            }
        }
    }

    /// Total events dropped for this subscriber so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn take_lag(&mut self) -> Option<Delivery> {
        let total = self.dropped();
        (total > self.reported).then(|| {
            let missed = total - self.reported;
            self.reported = total;
            Delivery::Lagged { missed }
        })
    }
}

/// The platform bus, chosen by URL.
#[derive(Clone, Debug)]
pub enum Bus {
    InProcess(InProcessBus),
}

impl Bus {
    pub fn from_url(url: &str) -> Result<Self, BusError> {
        match url {
            "memory://" | "memory" | "" => Ok(Bus::InProcess(InProcessBus::default())),
            other => Err(BusError::UnsupportedUrl(other.to_owned())),
        }
    }

    pub fn in_process() -> Self {
        Bus::InProcess(InProcessBus::default())
    }

    /// Publishes `event`. In process, an event nobody subscribed to is not even serialised.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<(), BusError> {
        match self {
            Bus::InProcess(bus) if !bus.has_subscriber(&event.subject()) => return Ok(()),
            _ => {}
        }
        self.publish_envelope(Envelope::new(event)?).await;
        Ok(())
    }

    pub async fn publish_envelope(&self, envelope: Envelope) {
        match self {
            Bus::InProcess(bus) => bus.publish(envelope).await,
        }
    }

    pub fn subscribe(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, BusError> {
        match self {
            Bus::InProcess(bus) => bus.subscribe(pattern, options),
        }
    }

    /// Events dropped across all subscribers (exported as a metric).
    pub fn dropped_total(&self) -> u64 {
        match self {
            Bus::InProcess(bus) => bus.dropped_total(),
        }
    }
}
