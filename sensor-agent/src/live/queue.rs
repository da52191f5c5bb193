//! The queue from the sources' threads to the shipper: bounded (a full queue drops and the outlet
//! counts it), and waking the shipper only when it goes from drained to holding an event, so a quiet
//! agent sleeps until there is something to ship and a busy one is not woken once per event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// Whether the shipper has been told about what is queued, and how it is told.
#[derive(Default)]
struct Wake {
    /// An event arrived since the shipper last drained the queue.
    pending: AtomicBool,
    notify: tokio::sync::Notify,
}

/// A queue holding at most `capacity` events.
pub fn bounded(capacity: usize) -> (Sender, Drain) {
    let (tx, rx) = sync_channel(capacity.max(1));
    let wake = Arc::new(Wake::default());
    (Sender { tx, wake: Arc::clone(&wake) }, Drain { rx, wake })
}

/// The sources' end (cloned per source).
#[derive(Clone)]
pub struct Sender {
    tx: SyncSender<String>,
    wake: Arc<Wake>,
}

impl Sender {
    /// Queues one serialised event, or hands it back when the queue is full or the shipper gone.
    pub fn try_send(&self, line: String) -> Result<(), String> {
        self.tx.try_send(line).map_err(|e| match e {
            TrySendError::Full(l) | TrySendError::Disconnected(l) => l,
        })?;
        // The first event after a drain wakes the shipper; the rest ride on that wakeup.
        if !self.wake.pending.swap(true, Ordering::SeqCst) {
            self.wake.notify.notify_one();
        }
        Ok(())
    }
}

/// The shipper's end.
pub struct Drain {
    rx: Receiver<String>,
    wake: Arc<Wake>,
}

impl Drain {
    /// What is queued now. An event queued after this call wakes [`Drain::ready`] again: the flag
    /// is cleared before the queue is read, so no event can slip between the two.
    pub fn take(&self) -> std::sync::mpsc::TryIter<'_, String> {
        self.wake.pending.store(false, Ordering::SeqCst);
        self.rx.try_iter()
    }

    /// Returns once an event was queued since the last [`Drain::take`] (at once if one was).
    pub async fn ready(&self) {
        self.wake.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn the_first_event_after_a_drain_wakes_the_shipper_and_a_full_queue_hands_back() {
        let (tx, rx) = bounded(3);
        let idle = tokio::time::timeout(Duration::from_millis(50), rx.ready()).await;
        assert!(idle.is_err(), "an empty queue does not wake the shipper");
        let from_thread = tx.clone();
        std::thread::spawn(move || {
            for i in 0..4 {
                let sent = from_thread.try_send(format!("{i}"));
                assert_eq!(sent.is_err(), i == 3, "the fourth event finds the queue full");
            }
        })
        .join()
        .expect("the source thread");
        tokio::time::timeout(Duration::from_secs(5), rx.ready()).await.expect("woken by the first event");
        assert_eq!(rx.take().collect::<Vec<_>>(), ["0", "1", "2"]);
        let drained = tokio::time::timeout(Duration::from_millis(50), rx.ready()).await;
        assert!(drained.is_err(), "no wakeup is left over once the queue was drained");
        tx.try_send("4".into()).expect("room again");
        tokio::time::timeout(Duration::from_secs(5), rx.ready()).await.expect("woken again after the drain");
        assert_eq!(rx.take().count(), 1);
    }
}
