//! Dispatcher: turns each SQS work message into one runner (see [`launcher`]).

pub mod launcher;

pub use launcher::{LaunchError, LaunchOutcome, LaunchRequest, LaunchSecret, Launcher};
