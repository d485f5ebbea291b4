//! The safety net under the lock order: a write transaction PostgreSQL gave up on (a
//! deadlock, 40P01, or a serialization failure, 40001; [`ApiError::Contention`]) was
//! rolled back whole, so it runs again, a bounded number of times, before the client
//! gets 503 `unavailable`. Writes take their rows in one global order
//! (`Batch::apply`), so this should never be needed; it keeps a cycle we
//! did not foresee from becoming a 500.

use std::{future::Future, time::Duration};

use crate::error::ApiError;

/// How many times a write transaction runs at most.
pub const ATTEMPTS: u32 = 4;

/// Runs `attempt` (one whole transaction) until it does not fail with
/// [`ApiError::Contention`], at most [`ATTEMPTS`] times, pausing a little longer
/// each time so the other transaction can finish.
pub async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut run = 1;
    loop {
        match attempt().await {
            Err(ApiError::Contention(cause)) if run < ATTEMPTS => {
                tracing::warn!(cause = %cause, run, "transaction rolled back by the database; running it again");
                tokio::time::sleep(Duration::from_millis(5 * u64::from(run))).await;
                run += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn contention_is_retried_a_bounded_number_of_times() {
        let runs = Cell::new(0);
        let out: Result<(), ApiError> = retrying(|| {
            runs.set(runs.get() + 1);
            async { Err(ApiError::Contention("deadlock detected".into())) }
        })
        .await;
        assert!(matches!(out, Err(ApiError::Contention(_))));
        assert_eq!(runs.get(), ATTEMPTS);
    }

    #[tokio::test]
    async fn other_outcomes_are_not_retried() {
        let runs = Cell::new(0);
        let out: Result<(), ApiError> = retrying(|| {
            runs.set(runs.get() + 1);
            let n = runs.get();
            async move {
                if n < 2 {
                    Err(ApiError::Contention("x".into()))
                } else {
                    Err(ApiError::not_found("comment"))
                }
            }
        })
        .await;
        assert!(matches!(out, Err(ApiError::NotFound(_))));
        assert_eq!(runs.get(), 2);
    }
}
