//! The runner: the binary inside each per-session Fargate task (or container, or
//! local process). It claims the work item's lease, serves the session's tool calls
//! with the built-in toolset, and force-stops the item when done.
//!
//! `main.rs` only wires configuration, logging and signals; the logic lives here:
//! [`config`] (inputs), [`lease`] (heartbeat loop), [`session`] (tool loop),
//! [`run`] (one item end to end), [`tools`] (the six tools), [`hygiene`] (secrets),
//! [`envelope`] (the KMS-encrypted work secret).

pub mod config;
pub mod envelope;
pub mod hygiene;
pub mod lease;
pub mod logging;
pub mod memory;
pub mod run;
pub mod session;
pub mod skills;
pub mod tools;
