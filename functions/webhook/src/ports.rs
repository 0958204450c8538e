//! The ports the drain talks through. Production adapters live in [`crate::aws`]
//! (and `cma_shared::ControlPlane` for the control plane); in-memory doubles in
//! [`crate::memory`].

use std::sync::Arc;

use async_trait::async_trait;
use cma_shared::client::{PollParams, StopOutcome};
use cma_shared::types::WorkItem;
use cma_shared::{ApiError, ControlPlane, EnvironmentKey, SecretString};

use crate::error::PortError;
use crate::message::{EncryptionContext, OutgoingMessage, SealedSecret};

/// The three control-plane calls the drain makes (spec §5.1, §5.2, §5.4), all
/// authenticated with the environment key.
#[async_trait]
pub trait ControlPlaneApi: Send + Sync {
    /// Non-blocking poll (no `block_ms`) with an explicit `reclaim_older_than_ms`.
    async fn poll(
        &self,
        environment_id: &str,
        reclaim_older_than_ms: u64,
        worker_id: &str,
    ) -> Result<Option<WorkItem>, ApiError>;

    async fn ack(&self, environment_id: &str, work_id: &str) -> Result<(), ApiError>;

    /// `stop {"force": true}`; 409 (already stopped) is success.
    async fn force_stop(
        &self,
        environment_id: &str,
        work_id: &str,
    ) -> Result<StopOutcome, ApiError>;
}

#[async_trait]
impl ControlPlaneApi for ControlPlane {
    async fn poll(
        &self,
        environment_id: &str,
        reclaim_older_than_ms: u64,
        worker_id: &str,
    ) -> Result<Option<WorkItem>, ApiError> {
        let params = PollParams {
            block_ms: None,
            reclaim_older_than_ms: Some(reclaim_older_than_ms),
        };
        ControlPlane::poll(self, environment_id, params, worker_id).await
    }

    async fn ack(&self, environment_id: &str, work_id: &str) -> Result<(), ApiError> {
        ControlPlane::ack(self, environment_id, work_id)
            .await
            .map(|_| ())
    }

    async fn force_stop(
        &self,
        environment_id: &str,
        work_id: &str,
    ) -> Result<StopOutcome, ApiError> {
        ControlPlane::stop(self, environment_id, work_id, true).await
    }
}

/// Makes a [`ControlPlaneApi`] that authenticates with a given environment key (the
/// key comes from a [`SecretSource`] and may rotate).
pub trait ControlPlaneFactory: Send + Sync {
    fn with_key(&self, key: &EnvironmentKey) -> Arc<dyn ControlPlaneApi>;
}

/// A base client (no credential) is its own factory: same connection pool, new bearer.
impl ControlPlaneFactory for ControlPlane {
    fn with_key(&self, key: &EnvironmentKey) -> Arc<dyn ControlPlaneApi> {
        Arc::new(self.with_bearer(SecretString::new(key.expose())))
    }
}

/// The dispatcher's queue: one message per claimed item.
#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), PortError>;
}

/// Protects the work secret on its way through SQS.
#[async_trait]
pub trait SecretSealer: Send + Sync {
    async fn seal(
        &self,
        secret: &cma_shared::secret::WorkSecret,
        context: &EncryptionContext,
    ) -> Result<SealedSecret, PortError>;
}

/// Sessions in flight on our side: queued messages plus running runner tasks.
#[async_trait]
pub trait CapacityGauge: Send + Sync {
    async fn in_flight(&self) -> Result<u64, PortError>;
}

/// One secret value (signing secret or environment key).
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The environment variable that configured this source (for error logs; the
    /// value is never logged).
    fn variable(&self) -> &'static str;

    async fn fetch(&self) -> Result<SecretString, PortError>;
}

/// Where metric lines (CloudWatch embedded metric format) go.
pub trait MetricsSink: Send + Sync {
    fn emit(&self, line: &str);
}
