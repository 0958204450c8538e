//! Workspace test support: a fake Claude Managed Agents control plane.
//!
//! See [`fake`]; the `fake-control-plane` binary serves one for local demos.

pub mod fake;
pub mod runner_bin;

pub use runner_bin::runner_bin;
