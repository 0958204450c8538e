//! Shared test helpers.

/// The runner binary: `CMA_RUNNER_BIN`, else `<target>/debug/runner`, else built.
pub use cma_tests::runner_bin;
