//! The memory-store endpoints the sync needs (control-plane spec §10.6), behind a
//! trait so the sync algorithm can be tested without HTTP.

use async_trait::async_trait;
use cma_shared::client::ListMemoriesParams;
pub use cma_shared::client::{DeleteOutcome, MemoryView};
use cma_shared::types::Memory;
use cma_shared::{ApiError, ControlPlane};

/// `limit` of the initial (and re-)download listing (`view=full`).
pub const DOWNLOAD_PAGE_LIMIT: u32 = 20;
/// `limit` of the per-sync listing (`view=basic`).
pub const SYNC_PAGE_LIMIT: u32 = 100;

/// The memory endpoints of one control plane. Every `store` is a `memory_store_id`;
/// `path` arguments are API paths (leading `/`).
#[async_trait]
pub trait MemoryApi: Send + Sync {
    /// `GET /v1/memory_stores/{store}/memories?view=…&limit=…`, **every page**.
    async fn list(
        &self,
        store: &str,
        view: MemoryView,
        limit: u32,
    ) -> Result<Vec<Memory>, ApiError>;

    /// `GET /v1/memory_stores/{store}/memories/{memory_id}?view=full`.
    async fn get(&self, store: &str, memory_id: &str) -> Result<Memory, ApiError>;

    /// `POST /v1/memory_stores/{store}/memories {"path","content"}`.
    async fn create(&self, store: &str, path: &str, content: &str) -> Result<Memory, ApiError>;

    /// `POST /v1/memory_stores/{store}/memories/{memory_id}` with a `content_sha256`
    /// precondition (409 = changed remotely, 404 = gone).
    async fn update(
        &self,
        store: &str,
        memory_id: &str,
        content: &str,
        precondition_sha256: &str,
    ) -> Result<Memory, ApiError>;

    /// `DELETE /v1/memory_stores/{store}/memories/{memory_id}?expected_content_sha256=…`
    /// (404 ⇒ [`DeleteOutcome::NotFound`]; 409/412 ⇒ error: changed remotely).
    async fn delete(
        &self,
        store: &str,
        memory_id: &str,
        expected_sha256: &str,
    ) -> Result<DeleteOutcome, ApiError>;
}

/// The real client. It must be authenticated with the item's **sessions token**
/// (the memory endpoints refuse the environment key, tools spec §10.1); it already
/// sends `anthropic-beta: agent-memory-2026-07-22`.
#[async_trait]
impl MemoryApi for ControlPlane {
    async fn list(
        &self,
        store: &str,
        view: MemoryView,
        limit: u32,
    ) -> Result<Vec<Memory>, ApiError> {
        let params = ListMemoriesParams {
            view: Some(view),
            limit: Some(limit),
            ..ListMemoriesParams::default()
        };
        self.list_all_memories(store, &params).await
    }

    async fn get(&self, store: &str, memory_id: &str) -> Result<Memory, ApiError> {
        self.retrieve_memory(store, memory_id, MemoryView::Full)
            .await
    }

    async fn create(&self, store: &str, path: &str, content: &str) -> Result<Memory, ApiError> {
        self.create_memory(store, path, content).await
    }

    async fn update(
        &self,
        store: &str,
        memory_id: &str,
        content: &str,
        precondition_sha256: &str,
    ) -> Result<Memory, ApiError> {
        self.update_memory(store, memory_id, content, Some(precondition_sha256))
            .await
    }

    async fn delete(
        &self,
        store: &str,
        memory_id: &str,
        expected_sha256: &str,
    ) -> Result<DeleteOutcome, ApiError> {
        self.delete_memory(store, memory_id, Some(expected_sha256))
            .await
    }
}
