//! `cma-local`: the self-hosted execution pipeline on one machine.
//!
//! * [`demo`]: `cma-local demo` (the README's first command): the fake control plane
//!   with a scripted session, a signed webhook delivery POSTed to the webhook Lambda's
//!   handler served on loopback, an in-memory queue, the dispatcher's logic with the
//!   Docker launcher (when an engine and the runner image are there) or the process
//!   launcher, and the runner doing the real tool calls; a transcript with timings.
//! * [`serve`]: `cma-local serve`: a real environment from a laptop or a VM (poll or
//!   webhook mode) with the same launchers.
//! * [`bench`]: `cma-local bench`: webhook delivery → first tool result, per launcher.
//!
//! Building blocks: [`stack`] (the webhook handler with local ports, served over
//! HTTP), [`dispatch`] (queue → launcher through the dispatcher crate's
//! `dispatch_parsed`), [`launchers`] (choosing and wiring the Docker or process
//! launcher), [`transcript`] (rendering calls and results), [`cli`].
//!
//! A developer tool: it embeds the fake control plane (`cma-tests`) and is never
//! deployed to Lambda.

// `ApiError` (from cma-shared) is large; it only travels on error paths.
#![allow(clippy::result_large_err)]

pub mod bench;
pub mod cli;
pub mod demo;
pub mod dispatch;
pub mod launchers;
pub mod serve;
pub mod stack;
pub mod transcript;
