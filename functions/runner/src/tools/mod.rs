//! The built-in toolset `agent_toolset_20260401`: `bash`, `read`, `write`, `edit`,
//! `glob`, `grep`, byte-exact with the Python reference (tools spec).
//!
//! A [`Tool`] takes the call's JSON input and returns a [`ToolOutput`] (content blocks
//! and `is_error`). The [`ToolRegistry`] owns the tools of one session, enforces the
//! runner-wide 150 s per-call deadline (`tool '<name>' timed out`) and answers only
//! the names it holds (anything else is "not owned", spec control-plane §11.3).

pub mod bash;
pub mod edit;
pub mod fserr;
pub mod glob;
pub mod grep;
pub mod input;
pub mod paths;
pub mod pyrepr;
pub mod read;
pub mod write;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cma_shared::types::{ContentBlock, NO_OUTPUT};
use serde_json::Value;

pub use paths::Roots;

/// Runner-wide per-call deadline (tools spec §2.3).
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(150);

/// Result of one tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    pub is_error: bool,
    pub content: Vec<ContentBlock>,
}

impl ToolOutput {
    /// Success with text (`(no output)` when empty).
    pub fn ok(text: impl Into<String>) -> Self {
        Self::text(false, text.into())
    }

    /// Tool error with text (`(no output)` when empty).
    pub fn err(text: impl Into<String>) -> Self {
        Self::text(true, text.into())
    }

    fn text(is_error: bool, text: String) -> Self {
        let text = if text.is_empty() {
            NO_OUTPUT.to_owned()
        } else {
            text
        };
        Self {
            is_error,
            content: vec![ContentBlock::Text { text }],
        }
    }

    /// Success with one media block.
    pub fn block(block: ContentBlock) -> Self {
        Self {
            is_error: false,
            content: vec![block],
        }
    }

    /// The text of a single-text-block output (tests, logs).
    pub fn as_text(&self) -> Option<&str> {
        match self.content.as_slice() {
            [ContentBlock::Text { text }] => Some(text),
            _ => None,
        }
    }
}

/// Per-session context shared by the tools.
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// The workdir as configured (bash's initial cwd).
    pub workdir: PathBuf,
    /// Confinement roots for the file tools.
    pub roots: Roots,
    /// Environment for subprocesses (already scrubbed, see [`scrubbed_env`]).
    pub env: Vec<(OsString, OsString)>,
    /// Text read/edit cap (`max_file_bytes`, 256 KiB).
    pub max_file_bytes: u64,
}

impl ToolContext {
    pub fn new(workdir: impl Into<PathBuf>) -> Self {
        let workdir = workdir.into();
        Self {
            roots: Roots::new(&workdir),
            workdir,
            env: scrubbed_env(std::env::vars_os()),
            max_file_bytes: 262_144,
        }
    }
}

/// Variables never passed to tool subprocesses: every `ANTHROPIC_*` (reference
/// behaviour, spec §2.8) and, deliberately beyond the reference, the AWS credential
/// and task-metadata variables a Fargate task or a Lambda carries.
pub fn is_secret_var(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("ANTHROPIC_")
        || upper.starts_with("AWS_CONTAINER_")
        || upper.starts_with("ECS_CONTAINER_METADATA_URI")
        || matches!(
            upper.as_str(),
            "AWS_ACCESS_KEY_ID"
                | "AWS_SECRET_ACCESS_KEY"
                | "AWS_SESSION_TOKEN"
                | "AWS_SECURITY_TOKEN"
                | "AWS_WEB_IDENTITY_TOKEN_FILE"
                | "AWS_ROLE_ARN"
                | "AWS_LAMBDA_RUNTIME_API"
        )
}

/// The process environment minus [`is_secret_var`] names.
pub fn scrubbed_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    vars.into_iter()
        .filter(|(k, _)| !is_secret_var(&k.to_string_lossy()))
        .collect()
}

/// One tool.
#[async_trait::async_trait]
pub trait Tool: Send + Sync {
    fn name(&self) -> &'static str;
    async fn call(&self, input: &Value) -> ToolOutput;
    /// Kill subprocesses; called at teardown.
    async fn shutdown(&self) {}
}

/// The tools of one session, by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    timeout: Option<Duration>,
}

impl ToolRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn register(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.name().to_owned(), tool);
    }

    pub fn owns(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.tools.keys().map(String::as_str).collect()
    }

    /// Run a call under the per-call deadline. `None` when the name is not owned.
    pub async fn call(&self, name: &str, input: &Value) -> Option<ToolOutput> {
        let tool = self.tools.get(name)?;
        let deadline = self.timeout.unwrap_or(TOOL_TIMEOUT);
        Some(
            match tokio::time::timeout(deadline, tool.call(input)).await {
                Ok(out) => out,
                Err(_) => ToolOutput::err(format!("tool {} timed out", pyrepr::py_repr(name))),
            },
        )
    }

    pub async fn shutdown(&self) {
        for t in self.tools.values() {
            t.shutdown().await;
        }
    }
}

/// The built-in toolset for one session: `bash`, `read`, `write`, `edit`, `glob`, `grep`.
pub fn builtin_registry(ctx: Arc<ToolContext>) -> ToolRegistry {
    let mut r = ToolRegistry::new();
    r.register(Arc::new(bash::BashTool::new(ctx.clone())));
    r.register(Arc::new(read::ReadTool::new(ctx.clone())));
    r.register(Arc::new(write::WriteTool::new(ctx.clone())));
    r.register(Arc::new(edit::EditTool::new(ctx.clone())));
    r.register(Arc::new(glob::GlobTool::new(ctx.clone())));
    r.register(Arc::new(grep::GrepTool::new(ctx)));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy;

    #[async_trait::async_trait]
    impl Tool for Sleepy {
        fn name(&self) -> &'static str {
            "bash"
        }
        async fn call(&self, _input: &Value) -> ToolOutput {
            tokio::time::sleep(Duration::from_secs(10)).await;
            ToolOutput::ok("late")
        }
    }

    #[tokio::test]
    async fn deadline_and_ownership() {
        let mut r = ToolRegistry::new().with_timeout(Duration::from_millis(50));
        r.register(Arc::new(Sleepy));
        let out = r.call("bash", &Value::Null).await.unwrap();
        assert_eq!(out, ToolOutput::err("tool 'bash' timed out"));
        assert!(r.call("web_fetch", &Value::Null).await.is_none());
        assert!(r.owns("bash") && !r.owns("read"));
    }

    #[test]
    fn empty_text_is_no_output() {
        assert_eq!(ToolOutput::ok("").as_text(), Some("(no output)"));
        assert_eq!(ToolOutput::err("").as_text(), Some("(no output)"));
    }

    #[test]
    fn secret_vars_are_scrubbed() {
        let vars = [
            ("ANTHROPIC_WORK_SECRET", "x"),
            ("anthropic_api_key", "x"),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "x"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("ECS_CONTAINER_METADATA_URI_V4", "x"),
            ("PATH", "/bin"),
            ("AWS_REGION", "eu-west-1"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept: Vec<_> = scrubbed_env(vars).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            kept,
            vec![OsString::from("PATH"), OsString::from("AWS_REGION")]
        );
    }
}
