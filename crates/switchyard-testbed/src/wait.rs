//! Waiting on a condition with a deadline, instead of sleeping for a fixed
//! time.

use std::time::Duration;

use tokio::time::Instant;

/// The interval between two probes of [`wait_until`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The deadline passed before the condition held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition not reached within {waited:?}")]
pub struct Elapsed {
    /// How long was waited.
    pub waited: Duration,
}

/// Probes `condition` every [`POLL_INTERVAL`] until it returns `Some`, and
/// returns that value; gives up at `deadline`. The condition is probed at
/// least once, even if the deadline has already passed.
///
/// The condition is an async closure, so it may borrow mutably (a
/// connection, a counter): `wait_until(deadline, async || ...)`.
pub async fn wait_until<T, F>(deadline: Instant, mut condition: F) -> Result<T, Elapsed>
where
    F: AsyncFnMut() -> Option<T>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = condition().await {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Elapsed {
                waited: now - started,
            });
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

/// [`wait_until`] with a timeout instead of a deadline.
pub async fn wait_for<T, F>(timeout: Duration, condition: F) -> Result<T, Elapsed>
where
    F: AsyncFnMut() -> Option<T>,
{
    wait_until(Instant::now() + timeout, condition).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let mut probes = 0;
        let got = wait_for(Duration::from_secs(5), async || {
            probes += 1;
            (probes >= 3).then_some(probes)
        })
        .await;
        assert_eq!(got, Ok(3));
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline() {
        let got: Result<(), _> = wait_for(Duration::from_millis(120), async || None).await;
        let err = got.unwrap_err();
        assert!(err.waited >= Duration::from_millis(120));
    }
}
