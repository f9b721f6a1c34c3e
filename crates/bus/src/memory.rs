//! The in-process bus: a list of subscribers, each with its own bounded channel.

use crate::{BusError, Envelope, LagPolicy, Pattern, SubscribeOptions, Subscription};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

#[derive(Clone, Default, Debug)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

#[derive(Default, Debug)]
struct Inner {
    subscribers: Mutex<Vec<Subscriber>>,
    dropped_total: AtomicU64,
}

#[derive(Debug)]
struct Subscriber {
    pattern: Pattern,
    sender: mpsc::Sender<Envelope>,
    lag: LagPolicy,
    dropped: Arc<AtomicU64>,
}

impl InProcessBus {
    pub fn subscribe(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, BusError> {
        let pattern = Pattern::parse(pattern)?;
        let (sender, receiver) = mpsc::channel(options.buffer.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        self.lock().push(Subscriber {
            pattern: pattern.clone(),
            sender,
            lag: options.lag,
            dropped: dropped.clone(),
        });
        Ok(Subscription {
            pattern,
            receiver,
            dropped,
            reported: 0,
        })
    }

    pub async fn publish(&self, envelope: Envelope) {
        // Collect targets under the lock, send outside it: a blocking subscriber must not stall
        // subscribe() or other publishers' bookkeeping.
        let mut blocking = Vec::new();
        {
            let mut subscribers = self.lock();
            subscribers.retain(|s| !s.sender.is_closed());
            for subscriber in subscribers
                .iter()
                .filter(|s| s.pattern.matches(&envelope.subject))
            {
                match subscriber.lag {
                    LagPolicy::Block => blocking.push(subscriber.sender.clone()),
                    LagPolicy::DropNewest => {
                        if let Err(mpsc::error::TrySendError::Full(_)) =
                            subscriber.sender.try_send(envelope.clone())
                        {
                            subscriber.dropped.fetch_add(1, Ordering::Relaxed);
                            self.inner.dropped_total.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        for sender in blocking {
            // A closed receiver is simply gone; it is pruned on the next publish.
            let _ = sender.send(envelope.clone()).await;
        }
    }

    /// Whether any live subscription matches `subject`.
    pub fn has_subscriber(&self, subject: &str) -> bool {
        self.lock()
            .iter()
            .any(|s| !s.sender.is_closed() && s.pattern.matches(subject))
    }

    pub fn dropped_total(&self) -> u64 {
        self.inner.dropped_total.load(Ordering::Relaxed)
    }

    pub fn subscriber_count(&self) -> usize {
        let mut subscribers = self.lock();
        subscribers.retain(|s| !s.sender.is_closed());
        subscribers.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        // A panic while holding this lock cannot leave the list inconsistent (push/retain only).
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
