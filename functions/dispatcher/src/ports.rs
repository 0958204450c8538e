//! The small traits the batch handler talks through besides [`crate::Launcher`].
//! Production adapters live in [`crate::aws`]; in-memory doubles in [`crate::memory`].
//! The clock is `cma_shared::retry::Clock` (`unix_now` for the stale-claim guard,
//! `now` for latencies).

use std::time::Duration;

use async_trait::async_trait;

use crate::error::PortError;

/// SQS `ChangeMessageVisibility` on the queue the batch came from.
#[async_trait]
pub trait Visibility: Send + Sync {
    /// Make the message (by receipt handle) invisible for `timeout` from now.
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), PortError>;
}

/// Where metric lines (CloudWatch embedded metric format) go.
pub trait MetricsSink: Send + Sync {
    fn emit(&self, line: &str);
}
