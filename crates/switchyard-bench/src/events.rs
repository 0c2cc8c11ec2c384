//! When switchyard-mysql made an instance writable, read from its tracing events: a
//! switchover reports its promotion as one phase, and this splits it without changing the
//! library.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The message switchyard-mysql logs (at `info`) once `read_only` is off again.
const FENCE_LIFTED: &str = "fence lifted";

/// A tracing layer that records when each instance's fence was lifted (by name, as the
/// `instance` field shows it). Clones share the record.
#[derive(Clone, Debug, Default)]
pub struct FenceLifted(Arc<Mutex<Vec<(String, Instant)>>>);

impl FenceLifted {
    /// The last time `instance` (its `Display`) was made writable between `from` and `to`.
    pub fn last_between(&self, instance: &str, from: Instant, to: Instant) -> Option<Instant> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|(name, at)| name == instance && *at >= from && *at <= to)
            .map(|(_, at)| *at)
    }

    fn push(&self, instance: String, at: Instant) {
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        log.push((instance, at));
        // A benchmark lifts a few fences per switchover: keep the recent ones.
        if log.len() > 1000 {
            log.drain(..500);
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    instance: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "instance" => self.instance = format!("{value:?}"),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "instance" => self.instance = value.to_owned(),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for FenceLifted {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("switchyard_mysql") {
            return;
        }
        let at = Instant::now();
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message == FENCE_LIFTED {
            self.push(fields.instance, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn records_lifted_fences_by_instance() {
        let log = FenceLifted::default();
        let subscriber = tracing_subscriber::registry().with(log.clone());
        let before = Instant::now();
        tracing::subscriber::with_default(subscriber, || {
            let instance = "n1 (127.0.0.1:3306)";
            tracing::info!(target: "switchyard_mysql::fence", instance = %instance, "fence lifted");
            tracing::info!(target: "switchyard_mysql::fence", instance = %instance, "fenced");
            tracing::info!(target: "elsewhere", instance = %instance, "fence lifted");
        });
        let after = Instant::now();
        assert!(
            log.last_between("n1 (127.0.0.1:3306)", before, after)
                .is_some()
        );
        assert_eq!(log.0.lock().expect("lock").len(), 1);
        assert!(
            log.last_between("n2 (127.0.0.1:3307)", before, after)
                .is_none()
        );
    }
}
