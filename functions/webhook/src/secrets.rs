//! Secret sources and the per-execution-environment cache.
//!
//! * [`EnvSecret`]: the value came in an environment variable (local runs).
//! * [`crate::aws::SecretsManagerSecret`]: `GetSecretValue` on a secret id/ARN.
//! * [`CachedSecret`]: fetches once, reuses the parsed value for [`SECRET_CACHE_TTL`]
//!   (5 min), then fetches again (rotation is picked up within the TTL). If a refresh
//!   fails while a previous value exists, the previous value keeps serving and a
//!   warning is logged; without a previous value the error surfaces (500).
//!   A value that fails validation is never cached.
//!
//! [`SECRET_CACHE_TTL`]: crate::config::SECRET_CACHE_TTL

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cma_shared::SecretString;
use cma_shared::retry::Clock;

use crate::error::{ConfigError, Failure, PortError};
use crate::ports::SecretSource;

/// A secret given literally in an environment variable.
pub struct EnvSecret {
    variable: &'static str,
    value: SecretString,
}

impl EnvSecret {
    pub fn new(variable: &'static str, value: SecretString) -> Self {
        Self { variable, value }
    }
}

#[async_trait]
impl SecretSource for EnvSecret {
    fn variable(&self) -> &'static str {
        self.variable
    }

    async fn fetch(&self) -> Result<SecretString, PortError> {
        Ok(self.value.clone())
    }
}

/// Parses a fetched secret; an error names what is wrong, never the value.
pub type Parse<T> = fn(&'static str, &SecretString) -> Result<T, ConfigError>;

/// A [`SecretSource`] plus a parsed, cached value with a TTL.
pub struct CachedSecret<T: Clone + Send + Sync> {
    source: Arc<dyn SecretSource>,
    parse: Parse<T>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    cache: tokio::sync::Mutex<Option<(T, Instant)>>,
}

impl<T: Clone + Send + Sync> CachedSecret<T> {
    pub fn new(
        source: Arc<dyn SecretSource>,
        parse: Parse<T>,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            source,
            parse,
            ttl,
            clock,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    pub fn variable(&self) -> &'static str {
        self.source.variable()
    }

    /// The current value: cached if fresh, else fetched (one fetch at a time).
    pub async fn get(&self) -> Result<T, Failure> {
        let mut guard = self.cache.lock().await;
        let now = self.clock.now();
        if let Some((value, at)) = guard.as_ref()
            && now.saturating_duration_since(*at) < self.ttl
        {
            return Ok(value.clone());
        }
        let variable = self.source.variable();
        let fetched = match self.source.fetch().await {
            Ok(raw) => (self.parse)(variable, &raw).map_err(Failure::Config),
            Err(source) => Err(Failure::Secret { variable, source }),
        };
        match fetched {
            Ok(value) => {
                *guard = Some((value.clone(), now));
                Ok(value)
            }
            Err(e) => match guard.as_ref() {
                Some((stale, _)) if matches!(e, Failure::Secret { .. }) => {
                    tracing::warn!(
                        variable,
                        error = %e,
                        "secret refresh failed; keeping the previously fetched value"
                    );
                    Ok(stale.clone())
                }
                _ => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use cma_shared::retry::RecordingClock;

    use super::*;

    struct Counting {
        calls: AtomicU32,
        fail_from: u32,
    }

    #[async_trait]
    impl SecretSource for Counting {
        fn variable(&self) -> &'static str {
            "ENVIRONMENT_KEY_SECRET_ARN"
        }
        async fn fetch(&self) -> Result<SecretString, PortError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= self.fail_from {
                return Err(PortError::retryable("GetSecretValue", "boom"));
            }
            Ok(SecretString::new(format!("value-{n}")))
        }
    }

    fn parse(_: &'static str, s: &SecretString) -> Result<String, ConfigError> {
        Ok(s.expose().to_owned())
    }

    #[tokio::test]
    async fn caches_for_the_ttl_then_refetches_and_survives_a_failed_refresh() {
        let clock = RecordingClock::default();
        let src = Arc::new(Counting {
            calls: AtomicU32::new(0),
            fail_from: 3,
        });
        let c = CachedSecret::new(
            src.clone(),
            parse,
            Duration::from_secs(300),
            Arc::new(clock.clone()),
        );
        assert_eq!(c.get().await.unwrap(), "value-1");
        assert_eq!(c.get().await.unwrap(), "value-1");
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
        clock.sleep(Duration::from_secs(301)).await;
        assert_eq!(c.get().await.unwrap(), "value-2");
        clock.sleep(Duration::from_secs(301)).await;
        // Refresh fails: the stale value keeps serving.
        assert_eq!(c.get().await.unwrap(), "value-2");
        assert_eq!(src.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn first_fetch_failure_surfaces_with_the_variable() {
        let src = Arc::new(Counting {
            calls: AtomicU32::new(0),
            fail_from: 1,
        });
        let c = CachedSecret::new(
            src,
            parse,
            Duration::from_secs(300),
            Arc::new(RecordingClock::default()),
        );
        match c.get().await {
            Err(Failure::Secret { variable, source }) => {
                assert_eq!(variable, "ENVIRONMENT_KEY_SECRET_ARN");
                assert!(source.is_retryable());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
