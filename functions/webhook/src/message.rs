//! The SQS message schema and the KMS encryption context live in the shared crate
//! (`cma_shared::message`) because the dispatcher reads what the webhook writes; this
//! module re-exports them under their old path.

pub use cma_shared::message::*;
