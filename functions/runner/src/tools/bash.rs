//! The `bash` tool (tools spec §3): one persistent `/bin/bash --noprofile --norc` per
//! session, byte-exact with the Python reference except for the two project-decided
//! divergences below.
//!
//! # Behaviour
//!
//! - The shell is started lazily on the first call, with cwd = the session workdir,
//!   the environment **exactly** [`ToolContext::env`] (already scrubbed of
//!   `ANTHROPIC_*` and cloud credentials; the runner's own environment is cleared
//!   first) plus `PS1=""`, `PS2=""`, `TERM=dumb`. stdin is a pipe; stdout and stderr
//!   are the *same* pipe at the OS level (one `pipe2(O_CLOEXEC)`, its write end given
//!   as both fd 1 and fd 2), so the two streams interleave in write order.
//! - Each command is written as `{ <command>\n} </dev/null 2>&1; printf
//!   '\n<S'>%d\n' $?\n` with a per-call nonce sentinel (§3.3 steps 4–5) and the
//!   stream is read until the sentinel line, EOF or the deadline. The read buffer
//!   keeps the **tail** 102 400 bytes (`[output truncated]\n` prefix), is decoded
//!   lossily, ANSI CSI sequences are stripped, the text before the last sentinel
//!   loses its trailing LFs, and the exit status decides success vs error (it is never
//!   printed).
//! - The pipe is not drained between calls: output a background job writes between
//!   two calls is delivered with the next call (§3.5, row B21).
//! - `timeout_ms` absent/`null`/`0` ⇒ 120 s; negative ⇒ times out at once. On timeout
//!   the shell is killed and stays dead (`bash: bash session terminated; restart
//!   required`) until `restart: true`, which never runs `command` (B20).
//! - A dead shell (`exit`, `set -e; false`, killed…) is detected deterministically
//!   before every call (`waitid(WNOHANG|WNOWAIT)`), as the spec recommends (§3.6).
//! - Calls are serialised by a `tokio::sync::Mutex` (B25).
//! - Cancellation: if the call future is dropped while a command is in flight (the
//!   registry's 150 s deadline, lease loss, teardown), the in-flight shell is owned by
//!   the future and its `Drop` kills the whole process group synchronously; the
//!   session state already says "dead", so the next call reports
//!   `bash: bash session terminated; restart required` instead of reading stale
//!   output and an old sentinel.
//!
//! # Divergences from the reference (decided by the project)
//!
//! 1. **Process-group kill.** The shell is a process-group leader
//!    (`process_group(0)`); timeout, restart, cancellation and teardown do
//!    `killpg(pgid, SIGKILL)` and then reap the shell (≤ 2 s). The reference SIGKILLs
//!    only the bash PID and orphans its children (B7).
//! 2. **Syntax errors do not kill the shell.** Before a command is sent to the
//!    persistent shell it is parsed by short-lived `/bin/bash --noprofile --norc -n
//!    -O extglob` processes (same environment) reading the script on **stdin**:
//!    first the brace group the shell will really parse, `{ <command>\n}\n`; only
//!    if that fails, `<command>\n` on its own. If the standalone check fails too,
//!    its stderr (trailing newlines trimmed) is the result, with `is_error: true`;
//!    if only the wrapped form fails, the wrapped form's stderr is. Either way the
//!    persistent shell is not touched and stays usable.
//!    Decision: stdin rather than `-c` or a temp file, because then bash's message is
//!    `/bin/bash: line N: …` with N the line number *within the user's command* and
//!    the quoted line is the user's own (`/bin/bash: line 1: `echo ok; }'`) — the same
//!    `/bin/bash: line N:` shape the reference's persistent shell prints, without
//!    `-c:` or a host temp path. The wrapped form is checked (first, so a valid
//!    command costs one extra process) because some commands are valid alone yet
//!    break the wrapper. Consequences:
//!    - B18 `echo ok; }` ⇒ error `/bin/bash: line 1: syntax error near unexpected
//!      token `}'\n/bin/bash: line 1: `echo ok; }'`; `ok` is not printed (nothing
//!      ran) and the next call works.
//!    - B17 `echo "unterminated` is caught too (`/bin/bash: line 1: unexpected EOF
//!      while looking for matching `"'`) instead of hanging for 120 s and killing
//!      the shell — an intended consequence of the divergence.
//!    - Only in the wrapped form: a command that is only a comment or blank
//!      (`# note`, `"   "`) makes an empty `{ }` group — `/bin/bash: line 2: syntax
//!      error near unexpected token `}'\n/bin/bash: line 2: `}'` (the reference's
//!      shell dies); a trailing backslash (`echo a \`) or an unterminated
//!      here-document swallows the closing `}` — `… syntax error: unexpected end of
//!      file` (the reference waits for more input until its timeout and the shell is
//!      dead afterwards).
//!    - Decision: `-O extglob` is given to the checker so that extended globs are
//!      never rejected (a model may have run `shopt -s extglob` in an earlier call;
//!      enabling extglob only widens what parses). If the persistent shell does *not*
//!      have extglob on, such a command fails exactly as in the reference (the shell
//!      prints its parse error quoting the wrapper and dies). Other parse-affecting
//!      state of the persistent shell (aliases under `expand_aliases`) is not
//!      mirrored.
//!    - The checks run under the call's own deadline; if the deadline expires during
//!      a check the result is the ordinary timeout (shell killed, dead until
//!      restart), as if the command had been sent. Their stderr is kept with the
//!      same 102 400-byte tail cap as shell output.
//!
//! # Other decisions where the spec is open
//!
//! - Decision: the read loop stops only when the sentinel *and the newline after its
//!   exit code* are in the buffer (the reference stops at the sentinel and could in
//!   principle parse an exit code split across two reads as −1).
//! - Decision: a write to the shell's stdin that fails (the shell died between the
//!   liveness check and the write) is reported as `bash: bash session terminated;
//!   restart required`; a spawn failure is `bash: internal error: cannot start
//!   /bin/bash: <reason>` (§2.2 item 4 [rec]) and leaves the session "not started",
//!   so the next call tries again.
//! - Decision: a negative `timeout_ms` short-circuits to the timeout result without
//!   sending the command (the reference may get a few bytes of it executed before
//!   the kill; nothing observable in the result differs).
//! - `{secs}` in the timeout text is `timeout_ms as f64 / 1000.0` formatted with
//!   `{:?}`, which equals Python's `repr(timeout_ms / 1000)` for every
//!   `|timeout_ms| < 2^53`.
//! - Memory: the read buffer is allocated once per call with capacity
//!   102 400 + 32 768 bytes (the cap plus one read chunk) and never grows.

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use memchr::memmem;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use regex::Regex;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::fserr;
use super::input::{Kind, opt, validate};
use super::{Tool, ToolContext, ToolOutput};

/// The shell program (never looked up on `PATH`).
pub const BASH: &str = "/bin/bash";
/// Default per-call timeout when `timeout_ms` is absent, `null` or `0`.
pub const DEFAULT_TIMEOUT_MS: i64 = 120_000;
/// Raw output cap (tail kept).
pub const OUTPUT_CAP: usize = 102_400;
/// Read chunk (also the slack of the read buffer above [`OUTPUT_CAP`]).
const CHUNK: usize = 32 * 1024;
/// How long to wait for the killed shell to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(2);

const TRUNCATED_PREFIX: &str = "[output truncated]\n";
const RESTARTED: &str = "bash session restarted";
const COMMAND_REQUIRED: &str = "bash: command is required";
const TERMINATED: &str = "bash: bash session terminated; restart required";

/// ANSI CSI sequences (exactly the reference's pattern).
static ANSI_CSI: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\x1b\[[0-9;?]*[ -/]*[@-~]").expect("static regex"));

/// The `bash` tool: one persistent shell per session.
pub struct BashTool {
    ctx: Arc<ToolContext>,
    state: Mutex<State>,
    /// Process group of the live shell (0 = none), readable without the mutex so that
    /// [`Tool::shutdown`] can kill an in-flight command immediately.
    pgid: Arc<AtomicI32>,
}

enum State {
    /// No shell yet (lazy start on the next command).
    NotStarted,
    Running(Box<Shell>),
    /// Killed or exited; only `restart` brings it back.
    Dead,
}

/// A live shell: the process-group leader, its stdin and the merged output pipe.
struct Shell {
    child: Child,
    pgid: i32,
    stdin: ChildStdin,
    output: pipe::Receiver,
    reaped: bool,
    current: Arc<AtomicI32>,
}

impl Shell {
    /// Has the shell process exited? Does not reap it (`WNOWAIT`), so its PID (and
    /// thus the process-group id) cannot be reused before [`Shell::kill`] ran.
    fn has_exited(&self) -> bool {
        // SAFETY: plain syscall on a zeroed out-parameter.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                self.pgid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            r == 0 && info.si_pid() != 0
        }
    }

    /// SIGKILL the whole process group, then reap the leader (≤ 2 s).
    async fn kill(mut self) {
        self.current.store(0, Ordering::SeqCst);
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        if let Ok(Ok(_)) = tokio::time::timeout(REAP_WAIT, self.child.wait()).await {
            self.reaped = true;
        }
    }
}

impl Drop for Shell {
    /// Dropped without [`Shell::kill`] (the call future was cancelled mid-command, or
    /// the tool itself was dropped): kill the group synchronously. tokio's
    /// `kill_on_drop` + orphan queue then reap the leader.
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self
                .current
                .compare_exchange(self.pgid, 0, Ordering::SeqCst, Ordering::SeqCst);
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
    }
}

/// Outcome of sending one command to the shell.
enum Run {
    /// The stream was read to the sentinel line or to EOF.
    Done {
        buf: Vec<u8>,
        truncated: bool,
    },
    /// The shell's stdin is gone.
    WriteFailed,
    ReadFailed(std::io::Error),
}

impl BashTool {
    pub fn new(ctx: Arc<ToolContext>) -> Self {
        Self {
            ctx,
            state: Mutex::new(State::NotStarted),
            pgid: Arc::new(AtomicI32::new(0)),
        }
    }

    fn env_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .envs(self.ctx.env.iter().map(|(k, v)| (k, v)))
            .env("PS1", "")
            .env("PS2", "")
            .env("TERM", "dumb")
            .kill_on_drop(true);
        cmd
    }

    /// Start a fresh shell (process-group leader, merged stdout/stderr pipe).
    fn spawn(&self) -> std::io::Result<Box<Shell>> {
        let (read_end, write_end): (OwnedFd, OwnedFd) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let write_dup = write_end.try_clone()?;
        let output = pipe::Receiver::from_owned_fd(read_end)?;
        let mut child = {
            // The command (holding our copies of the write end) is dropped at the end
            // of this block, so EOF is seen once the shell and its children are gone.
            let mut cmd = self.env_command(BASH);
            cmd.args(["--noprofile", "--norc"])
                .current_dir(&self.ctx.workdir)
                .stdin(Stdio::piped())
                .stdout(Stdio::from(write_end))
                .stderr(Stdio::from(write_dup))
                .process_group(0);
            cmd.spawn()?
        };
        let pgid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| std::io::Error::other("shell exited at once"))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin pipe"))?;
        self.pgid.store(pgid, Ordering::SeqCst);
        Ok(Box::new(Shell {
            child,
            pgid,
            stdin,
            output,
            reaped: false,
            current: Arc::clone(&self.pgid),
        }))
    }

    /// Divergence 2: `Some(text)` = the parse error to return instead of running
    /// `command`. First the brace group the shell will actually parse
    /// (`{ <command>\n}\n`) is checked; only if that fails is the command checked on
    /// its own, whose message (when it fails too) quotes the user's own lines and
    /// line numbers. When only the wrapped form fails (a comment- or blank-only
    /// command, a trailing backslash, an unterminated here-document) the wrapped
    /// form's message is returned.
    async fn syntax_error(&self, command: &str) -> std::io::Result<Option<String>> {
        let wrapped = format!("{{ {command}\n}}\n");
        let Some(wrapped_err) = self.bash_n(wrapped.as_bytes()).await? else {
            return Ok(None);
        };
        let standalone = format!("{command}\n");
        Ok(Some(
            self.bash_n(standalone.as_bytes())
                .await?
                .unwrap_or(wrapped_err),
        ))
    }

    /// Run `bash -n -O extglob` on `script` (fed on stdin): `Some(stderr)` when it
    /// reports an error (non-zero exit), trailing newlines trimmed.
    async fn bash_n(&self, script: &[u8]) -> std::io::Result<Option<String>> {
        let mut cmd = self.env_command(BASH);
        cmd.args(["--noprofile", "--norc", "-n", "-O", "extglob"])
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let mut stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let write = async move {
            if let Some(s) = stdin.as_mut() {
                // bash -n stops at the first error and may close its stdin early.
                let _ = s.write_all(script).await;
            }
            drop(stdin);
        };
        let read = async move {
            match stderr {
                Some(mut e) => read_capped(&mut e, None).await,
                None => Ok((Vec::new(), false)),
            }
        };
        let ((), read) = tokio::join!(write, read);
        let (buf, truncated) = read?;
        let status = child.wait().await?;
        if status.success() {
            return Ok(None);
        }
        let mut text = String::from_utf8_lossy(&buf)
            .trim_end_matches('\n')
            .to_owned();
        if truncated {
            text.insert_str(0, TRUNCATED_PREFIX);
        }
        Ok(Some(text))
    }

    async fn run_command(&self, args: &super::input::Args) -> ToolOutput {
        let mut state = self.state.lock().await;

        if args.bool("restart") == Some(true) {
            if let State::Running(shell) = std::mem::replace(&mut *state, State::NotStarted) {
                shell.kill().await;
            }
            return match self.spawn() {
                Ok(shell) => {
                    *state = State::Running(shell);
                    ToolOutput::ok(RESTARTED)
                }
                Err(e) => ToolOutput::err(spawn_error(&e)),
            };
        }

        let command = match args.str("command") {
            Some(c) if !c.is_empty() => c,
            _ => return ToolOutput::err(COMMAND_REQUIRED),
        };

        match &*state {
            State::Dead => return ToolOutput::err(TERMINATED),
            State::Running(shell) if shell.has_exited() => {
                if let State::Running(shell) = std::mem::replace(&mut *state, State::Dead) {
                    shell.kill().await;
                }
                return ToolOutput::err(TERMINATED);
            }
            _ => {}
        }

        let timeout_ms = match args.int("timeout_ms") {
            None | Some(0) => DEFAULT_TIMEOUT_MS,
            Some(ms) => ms,
        };
        let timed_out = || {
            ToolOutput::err(format!(
                "bash: bash command timed out after {}s",
                py_secs(timeout_ms)
            ))
        };
        // `None` = a deadline beyond what `Instant` can represent (the registry's
        // 150 s deadline applies anyway).
        let deadline = if timeout_ms < 0 {
            Some(Instant::now())
        } else {
            Instant::now().checked_add(Duration::from_millis(timeout_ms as u64))
        };

        // Everything below runs against the deadline; on expiry the shell is killed
        // and stays dead.
        if timeout_ms < 0 {
            self.kill_into_dead(&mut state).await;
            return timed_out();
        }
        match with_deadline(deadline, self.syntax_error(command)).await {
            None => {
                self.kill_into_dead(&mut state).await;
                return timed_out();
            }
            Some(Err(e)) => return ToolOutput::err(spawn_error(&e)),
            Some(Ok(Some(text))) => return ToolOutput::err(text),
            Some(Ok(None)) => {}
        }

        if matches!(&*state, State::NotStarted) {
            match self.spawn() {
                Ok(shell) => *state = State::Running(shell),
                Err(e) => return ToolOutput::err(spawn_error(&e)),
            }
        }
        // Take the shell out of the session for the duration of the command: if this
        // future is dropped, the shell is dropped with it (killing its group) and the
        // session already reads "dead".
        let mut shell = match std::mem::replace(&mut *state, State::Dead) {
            State::Running(shell) => shell,
            _ => return ToolOutput::err(TERMINATED),
        };

        let sentinel = format!("__ANT_CMD_{}_DONE__", uuid::Uuid::new_v4().simple());
        let script = wrap(command, &sentinel);
        let run = with_deadline(deadline, async {
            if shell.stdin.write_all(script.as_bytes()).await.is_err()
                || shell.stdin.flush().await.is_err()
            {
                return Run::WriteFailed;
            }
            match read_capped(&mut shell.output, Some(sentinel.as_bytes())).await {
                Ok((buf, truncated)) => Run::Done { buf, truncated },
                Err(e) => Run::ReadFailed(e),
            }
        })
        .await;

        match run {
            None => {
                shell.kill().await;
                timed_out()
            }
            Some(Run::WriteFailed) => {
                shell.kill().await;
                ToolOutput::err(TERMINATED)
            }
            Some(Run::ReadFailed(e)) => {
                shell.kill().await;
                ToolOutput::err(format!(
                    "bash: internal error: reading shell output: {}",
                    fserr::reason(&e)
                ))
            }
            Some(Run::Done { buf, truncated }) => {
                *state = State::Running(shell);
                let (text, code) = finish(&buf, truncated, &sentinel);
                if code == 0 {
                    ToolOutput::ok(text)
                } else {
                    ToolOutput::err(text)
                }
            }
        }
    }

    async fn kill_into_dead(&self, state: &mut State) {
        if let State::Running(shell) = std::mem::replace(state, State::Dead) {
            shell.kill().await;
        }
    }
}

#[async_trait::async_trait]
impl Tool for BashTool {
    fn name(&self) -> &'static str {
        "bash"
    }

    async fn call(&self, input: &Value) -> ToolOutput {
        let args = match validate(
            "bash",
            input,
            &[
                opt("command", Kind::Str),
                opt("restart", Kind::Bool),
                opt("timeout_ms", Kind::Int),
            ],
        ) {
            Ok(a) => a,
            Err(e) => return ToolOutput::err(e),
        };
        self.run_command(&args).await
    }

    /// Kill the shell's process group and reap it. The group is killed before the
    /// session mutex is taken, so an in-flight command ends at once (EOF).
    async fn shutdown(&self) {
        let pgid = self.pgid.load(Ordering::SeqCst);
        if pgid > 0 {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        let mut state = self.state.lock().await;
        self.kill_into_dead(&mut state).await;
    }
}

fn spawn_error(e: &std::io::Error) -> String {
    format!(
        "bash: internal error: cannot start {BASH}: {}",
        fserr::reason(e)
    )
}

/// `Some(result)`, or `None` when the deadline passed first.
async fn with_deadline<T>(deadline: Option<Instant>, fut: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// `timeout_ms / 1000` formatted like a Python float repr (`1.0`, `0.333`, `-0.005`).
fn py_secs(ms: i64) -> String {
    format!("{:?}", ms as f64 / 1000.0)
}

/// The exact bytes written to the shell (§3.3 step 5): `S'` splits the sentinel with
/// `''` after its 8th character so the literal sentinel is never echoed back.
fn wrap(command: &str, sentinel: &str) -> String {
    let (head, tail) = sentinel.split_at(8);
    format!("{{ {command}\n}} </dev/null 2>&1; printf '\\n{head}''{tail}%d\\n' $?\n")
}

/// Read until `sentinel` followed by a newline (its exit-code line) is in the buffer
/// (when given), or EOF. Keeps the tail [`OUTPUT_CAP`] bytes; `true` = bytes were
/// dropped. The buffer never grows beyond `OUTPUT_CAP + CHUNK` bytes.
async fn read_capped<R: AsyncRead + Unpin>(
    r: &mut R,
    sentinel: Option<&[u8]>,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut buf: Vec<u8> = Vec::with_capacity(OUTPUT_CAP + CHUNK);
    let mut truncated = false;
    let mut scan_from = 0usize;
    let mut found: Option<usize> = None;
    loop {
        // Compact only when less than half a chunk is left, so a trickle of tiny
        // writes costs amortised O(1) moves per byte.
        if buf.len() > OUTPUT_CAP && buf.capacity() - buf.len() < CHUNK / 2 {
            let d = buf.len() - OUTPUT_CAP;
            buf.drain(..d);
            truncated = true;
            scan_from = scan_from.saturating_sub(d);
            found = found.and_then(|p| p.checked_sub(d));
        }
        if r.read_buf(&mut buf).await? == 0 {
            break;
        }
        let Some(sentinel) = sentinel else { continue };
        if found.is_none() {
            match memmem::find(&buf[scan_from..], sentinel) {
                Some(i) => found = Some(scan_from + i),
                None => scan_from = buf.len().saturating_sub(sentinel.len() - 1),
            }
        }
        if let Some(p) = found
            && memchr::memchr(b'\n', &buf[p + sentinel.len()..]).is_some()
        {
            break;
        }
    }
    if buf.len() > OUTPUT_CAP {
        buf.drain(..buf.len() - OUTPUT_CAP);
        truncated = true;
    }
    Ok((buf, truncated))
}

/// Python `str.isspace`: Unicode White_Space plus U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// §3.3 steps 9–11: the text and the exit code (−1 when unknown).
fn finish(buf: &[u8], truncated: bool, sentinel: &str) -> (String, i64) {
    let decoded = String::from_utf8_lossy(buf);
    let text = ANSI_CSI.replace_all(&decoded, "");
    match text.rfind(sentinel) {
        None => (text.trim_matches(is_py_space).to_owned(), -1),
        Some(p) => {
            let out = text[..p].trim_end_matches('\n');
            let rest = &text[p + sentinel.len()..];
            let first = rest.split('\n').next().unwrap_or("");
            let code = first.trim_matches(is_py_space).parse::<i64>().unwrap_or(-1);
            let out = if truncated {
                format!("{TRUNCATED_PREFIX}{out}")
            } else {
                out.to_owned()
            };
            (out, code)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;
    use crate::tools::{ToolRegistry, scrubbed_env};

    fn setup() -> (tempfile::TempDir, PathBuf, BashTool) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let tool = BashTool::new(Arc::new(ToolContext::new(&root)));
        (dir, root, tool)
    }

    async fn run(t: &BashTool, input: Value) -> (bool, String) {
        let out = t.call(&input).await;
        (out.is_error, out.as_text().unwrap().to_owned())
    }

    async fn cmd(t: &BashTool, c: &str) -> (bool, String) {
        run(t, json!({ "command": c })).await
    }

    fn ok(s: &str) -> (bool, String) {
        (
            false,
            if s.is_empty() { "(no output)" } else { s }.to_owned(),
        )
    }

    fn err(s: &str) -> (bool, String) {
        (true, s.to_owned())
    }

    /// Alive = exists and is not a zombie.
    fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let state = stat
                    .rsplit_once(')')
                    .map(|(_, r)| r.trim_start())
                    .unwrap_or("");
                !state.starts_with('Z') && !state.starts_with('X')
            }
            Err(_) => false,
        }
    }

    async fn wait_dead(pid: i32, within: Duration) -> bool {
        let end = std::time::Instant::now() + within;
        while std::time::Instant::now() < end {
            if !alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        !alive(pid)
    }

    #[test]
    fn secs_like_python_float() {
        assert_eq!(py_secs(1000), "1.0");
        assert_eq!(py_secs(333), "0.333");
        assert_eq!(py_secs(120_000), "120.0");
        assert_eq!(py_secs(1), "0.001");
        assert_eq!(py_secs(-5), "-0.005");
        assert_eq!(py_secs(1500), "1.5");
    }

    #[test]
    fn wrapper_bytes() {
        let s = "__ANT_CMD_0123456789abcdef0123456789abcdef_DONE__";
        assert_eq!(s.len(), 49);
        assert_eq!(
            wrap("echo hi", s),
            "{ echo hi\n} </dev/null 2>&1; printf '\\n__ANT_CM''D_0123456789abcdef0123456789abcdef_DONE__%d\\n' $?\n"
        );
    }

    #[test]
    fn finish_rules() {
        let s = "__ANT_CMD_x_DONE__";
        assert_eq!(
            finish(b"a\n\n\n__ANT_CMD_x_DONE__0\n", false, s),
            ("a".into(), 0)
        );
        assert_eq!(
            finish(b"\n\nlead  \r\n__ANT_CMD_x_DONE__3\nbg\n", true, s),
            ("[output truncated]\n\n\nlead  \r".into(), 3)
        );
        assert_eq!(finish(b" \x1b[31mdied \n", true, s), ("died".into(), -1));
        assert_eq!(finish(b"x\n__ANT_CMD_x_DONE__", false, s), ("x".into(), -1));
        assert_eq!(
            finish(
                b"\x1b]0;t\x07\tk\x1b[?25l\n__ANT_CMD_x_DONE__ 0 \n",
                false,
                s
            ),
            ("\x1b]0;t\x07\tk".into(), 0)
        );
    }

    // B1
    #[tokio::test]
    async fn b01_state_persists() {
        let (_d, _root, t) = setup();
        assert_eq!(cmd(&t, "export FOO=bar; cd /tmp").await, ok(""));
        assert_eq!(cmd(&t, "echo $FOO; pwd").await, ok("bar\n/tmp"));
    }

    // B2, B3, B4 and the §3.4 table
    #[tokio::test]
    async fn b02_b04_exit_status_and_merging() {
        let (_d, _root, t) = setup();
        assert_eq!(
            cmd(&t, "echo out; echo err >&2; (exit 3)").await,
            err("out\nerr")
        );
        assert_eq!(cmd(&t, "false").await, err("(no output)"));
        assert_eq!(cmd(&t, "true").await, ok("(no output)"));
        assert_eq!(cmd(&t, "echo hello").await, ok("hello"));
        assert_eq!(cmd(&t, "echo hi; (exit 3)").await, err("hi"));
        assert_eq!(cmd(&t, "echo -n nonl").await, ok("nonl"));
        assert_eq!(cmd(&t, "printf \"a\\n\\n\\n\"").await, ok("a"));
        assert_eq!(cmd(&t, "echo \"  spaced  \"").await, ok("  spaced  "));
        assert_eq!(cmd(&t, "printf \"x\\0y\"").await, ok("x\u{0}y"));
        assert_eq!(
            cmd(&t, "ls /nonexistent").await,
            err("ls: cannot access '/nonexistent': No such file or directory")
        );
        let (e, text) = cmd(&t, "cd /nonexistent").await;
        assert!(e);
        let re = Regex::new(r"^/bin/bash: line \d+: cd: /nonexistent: No such file or directory$")
            .unwrap();
        assert!(re.is_match(&text), "{text:?}");
    }

    // B5
    #[tokio::test]
    async fn b05_command_required() {
        let (_d, _root, t) = setup();
        for input in [
            json!({}),
            json!({"command": ""}),
            json!({"command": null}),
            Value::Null,
        ] {
            assert_eq!(run(&t, input).await, err(COMMAND_REQUIRED));
        }
    }

    // B6
    #[tokio::test]
    async fn b06_timeout_then_dead_then_restart() {
        let (_d, root, t) = setup();
        let start = std::time::Instant::now();
        assert_eq!(
            run(&t, json!({"command": "sleep 5", "timeout_ms": 1000})).await,
            err("bash: bash command timed out after 1.0s")
        );
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_millis(3000),
            "{took:?}"
        );
        assert_eq!(cmd(&t, "echo x").await, err(TERMINATED));
        assert_eq!(run(&t, json!({"restart": true})).await, ok(RESTARTED));
        assert_eq!(cmd(&t, "pwd").await, ok(root.to_str().unwrap()));
    }

    // B7 (scaled down from 30/60/35 s): the background job dies with the group.
    #[tokio::test]
    async fn b07_timeout_kills_process_group() {
        let (_d, root, t) = setup();
        let flag = root.join("flag");
        let c = format!("(sleep 2; touch {}) & sleep 60", flag.display());
        assert_eq!(
            run(&t, json!({"command": c, "timeout_ms": 500})).await,
            err("bash: bash command timed out after 0.5s")
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!flag.exists(), "background job survived the timeout");
    }

    // B8 / X1 (scaled down: a 500 ms registry deadline instead of 150 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn b08_registry_deadline_kills_shell() {
        let (_d, _root, t) = setup();
        let tool = Arc::new(t);
        let mut reg = ToolRegistry::new().with_timeout(Duration::from_millis(500));
        reg.register(tool.clone());
        let out = reg
            .call("bash", &json!({"command": "echo $$"}))
            .await
            .unwrap();
        let pid: i32 = out.as_text().unwrap().parse().unwrap();
        let out = reg
            .call(
                "bash",
                &json!({"command": "sleep 5; echo stale", "timeout_ms": 10000}),
            )
            .await
            .unwrap();
        assert_eq!(out, ToolOutput::err("tool 'bash' timed out"));
        assert!(
            wait_dead(pid, Duration::from_secs(2)).await,
            "shell survived cancellation"
        );
        let out = reg
            .call("bash", &json!({"command": "echo x"}))
            .await
            .unwrap();
        assert_eq!(out, ToolOutput::err(TERMINATED));
        let out = reg.call("bash", &json!({"restart": true})).await.unwrap();
        assert_eq!(out, ToolOutput::ok(RESTARTED));
        let out = reg
            .call("bash", &json!({"command": "echo fresh"}))
            .await
            .unwrap();
        assert_eq!(out, ToolOutput::ok("fresh"));
    }

    // B9, B23: timeout_ms coercion and default.
    #[tokio::test]
    async fn b09_b23_timeout_values() {
        let (_d, _root, t) = setup();
        assert_eq!(
            run(&t, json!({"command": "echo x", "timeout_ms": 0})).await,
            ok("x")
        );
        assert_eq!(
            run(&t, json!({"command": "echo x", "timeout_ms": null})).await,
            ok("x")
        );
        assert_eq!(
            run(&t, json!({"command": "echo t", "timeout_ms": "2000"})).await,
            ok("t")
        );
        assert_eq!(
            run(&t, json!({"command": "echo t", "timeout_ms": 2000.0})).await,
            ok("t")
        );
        // The coerced value is the one used.
        assert_eq!(
            run(&t, json!({"command": "sleep 5", "timeout_ms": "300"})).await,
            err("bash: bash command timed out after 0.3s")
        );
        assert_eq!(run(&t, json!({"restart": "yes"})).await, ok(RESTARTED));
        assert_eq!(
            run(&t, json!({"command": "sleep 5", "timeout_ms": 300.0})).await,
            err("bash: bash command timed out after 0.3s")
        );
        assert_eq!(run(&t, json!({"restart": 1})).await, ok(RESTARTED));
        // Negative: times out at once, shell dead afterwards.
        let start = std::time::Instant::now();
        assert_eq!(
            run(&t, json!({"command": "echo x", "timeout_ms": -5})).await,
            err("bash: bash command timed out after -0.005s")
        );
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(cmd(&t, "echo x").await, err(TERMINATED));
    }

    // B10
    #[tokio::test]
    async fn b10_output_truncated_tail_kept() {
        let (_d, _root, t) = setup();
        let (e, text) = cmd(&t, "yes | head -c 300000").await;
        assert!(!e);
        assert_eq!(text.chars().count(), 102_366);
        assert!(text.starts_with("[output truncated]\ny\ny\n"));
        assert!(text.ends_with("\ny"));
        assert!(text[19..].split('\n').all(|l| l == "y"));
    }

    // B11: a cut inside a 2-byte character yields a leading U+FFFD.
    #[tokio::test]
    async fn b11_truncation_splits_utf8() {
        let (_d, _root, t) = setup();
        let (e, text) = cmd(&t, "yes é | head -n 60000 | tr -d '\\n'; echo").await;
        assert!(!e);
        // 120 001 stream bytes + 52 sentinel bytes; the kept tail starts at odd offset
        // 17 653, i.e. on the continuation byte of an `é`.
        let expected = format!("[output truncated]\n\u{FFFD}{}", "é".repeat(51_173));
        assert_eq!(text, expected);
    }

    // B12, B13, B24
    #[tokio::test]
    async fn b12_b13_b24_decoding() {
        let (_d, _root, t) = setup();
        assert_eq!(cmd(&t, "printf '\\033[1;32mok\\033[0m'").await, ok("ok"));
        assert_eq!(
            cmd(&t, "printf \"\\033[31mred\\033[0m plain\"").await,
            ok("red plain")
        );
        assert_eq!(
            cmd(&t, "printf '\\xff\\xfe x'").await,
            ok("\u{FFFD}\u{FFFD} x")
        );
        assert_eq!(cmd(&t, "printf '\\n\\nlead  '").await, ok("\n\nlead  "));
        assert_eq!(
            cmd(&t, "printf '\\033]0;title\\007\\r\\tx\\033[?25l\\033[2K'").await,
            ok("\x1b]0;title\x07\r\tx")
        );
    }

    // B14
    #[tokio::test]
    async fn b14_stdin_is_dev_null() {
        let (_d, _root, t) = setup();
        assert_eq!(cmd(&t, "cat").await, ok("(no output)"));
        assert_eq!(cmd(&t, "read x; echo [$x]").await, ok("[]"));
        assert_eq!(cmd(&t, "read x; echo \"got [$x]\"").await, ok("got []"));
    }

    // B15: the environment is exactly the (scrubbed) context env + PS1/PS2/TERM.
    #[tokio::test]
    async fn b15_environment() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut vars: Vec<(OsString, OsString)> = vec![
            ("ANTHROPIC_API_KEY".into(), "secret".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "x".into()),
            ("KEEP_ME".into(), "1".into()),
        ];
        if let Some(path) = std::env::var_os("PATH") {
            vars.push(("PATH".into(), path));
        }
        let mut ctx = ToolContext::new(&root);
        ctx.env = scrubbed_env(vars);
        let t = BashTool::new(Arc::new(ctx));
        assert_eq!(
            cmd(&t, "echo ${ANTHROPIC_API_KEY:-unset} $TERM").await,
            ok("unset dumb")
        );
        let (e, env) = cmd(&t, "env").await;
        assert!(!e);
        assert!(
            !env.contains("ANTHROPIC_API_KEY") && !env.contains("AWS_SECRET_ACCESS_KEY"),
            "{env}"
        );
        assert!(env.lines().any(|l| l == "KEEP_ME=1"));
        assert!(env.lines().any(|l| l == "TERM=dumb"));
        // (bash itself unsets PS1/PS2 in a non-interactive shell.)
        assert_eq!(
            cmd(&t, "echo \"[$PS1][$PS2]\" $0").await,
            ok("[][] /bin/bash")
        );
        // Nothing else of the runner's environment leaks in.
        assert_eq!(
            cmd(&t, "echo ${HOME:-nohome} ${CARGO_PKG_NAME:-none}").await,
            ok("nohome none")
        );
    }

    // B16: the nonce cannot be spoofed.
    #[tokio::test]
    async fn b16_sentinel_not_spoofable() {
        let (_d, _root, t) = setup();
        assert_eq!(
            cmd(&t, "printf '__ANT_CMD_DONE__0\\n'; (exit 4)").await,
            err("__ANT_CMD_DONE__0")
        );
        let fake = "__ANT_CMD_0123456789abcdef0123456789abcdef_DONE__0";
        assert_eq!(
            cmd(&t, &format!("printf '{fake}\\nafter\\n'; (exit 3)")).await,
            err(&format!("{fake}\nafter"))
        );
        assert_eq!(
            cmd(&t, "printf '__ANT_CMD_DONE__7\\nafter\\n'; (exit 3)").await,
            err("__ANT_CMD_DONE__7\nafter")
        );
    }

    // B17 (divergence 2): an unterminated quote is a parse error reported at once.
    #[tokio::test]
    async fn b17_unterminated_quote_is_syntax_error() {
        let (_d, _root, t) = setup();
        let start = std::time::Instant::now();
        assert_eq!(
            cmd(&t, "echo \"unterminated").await,
            err("/bin/bash: line 1: unexpected EOF while looking for matching `\"'")
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(cmd(&t, "echo still alive").await, ok("still alive"));
    }

    // B18 (divergence 2): the shell survives a syntax error; nothing of it ran.
    #[tokio::test]
    async fn b18_syntax_error_keeps_shell() {
        let (_d, _root, t) = setup();
        assert_eq!(cmd(&t, "X=1").await, ok(""));
        assert_eq!(
            cmd(&t, "echo ok; }").await,
            err(
                "/bin/bash: line 1: syntax error near unexpected token `}'\n/bin/bash: line 1: `echo ok; }'"
            )
        );
        assert_eq!(
            cmd(&t, "if true; then").await,
            err("/bin/bash: line 2: syntax error: unexpected end of file")
        );
        assert_eq!(
            cmd(&t, "echo a\necho b; fi").await,
            err(
                "/bin/bash: line 2: syntax error near unexpected token `fi'\n/bin/bash: line 2: `echo b; fi'"
            )
        );
        // Valid alone but not inside the wrapper's brace group: the wrapped form's
        // message (the reference would die or hang until its timeout).
        let empty_group = err(
            "/bin/bash: line 2: syntax error near unexpected token `}'\n/bin/bash: line 2: `}'",
        );
        assert_eq!(cmd(&t, "# just a comment").await, empty_group);
        assert_eq!(cmd(&t, "   ").await, empty_group);
        assert_eq!(
            cmd(&t, "\n").await,
            err(
                "/bin/bash: line 3: syntax error near unexpected token `}'\n/bin/bash: line 3: `}'"
            )
        );
        assert_eq!(
            cmd(&t, "echo a \\").await,
            err("/bin/bash: line 3: syntax error: unexpected end of file")
        );
        assert_eq!(
            cmd(&t, "cat <<EOF\nhi").await,
            err(
                "/bin/bash: line 3: warning: here-document at line 1 delimited by end-of-file (wanted `EOF')\n/bin/bash: line 4: syntax error: unexpected end of file"
            )
        );
        assert_eq!(cmd(&t, "echo next $X").await, ok("next 1"));
    }

    // §3.6 "fine" row: heredocs, `echo {`, comments, multi-line commands, extglob.
    #[tokio::test]
    async fn valid_syntax_passes_check() {
        let (_d, _root, t) = setup();
        assert_eq!(
            cmd(&t, "cat <<EOF\nhello\n  there\nEOF").await,
            ok("hello\n  there")
        );
        assert_eq!(cmd(&t, "cat <<'EOF'\n$HOME }\nEOF\n").await, ok("$HOME }"));
        assert_eq!(cmd(&t, "echo {").await, ok("{"));
        assert_eq!(cmd(&t, "echo }").await, ok("}"));
        assert_eq!(cmd(&t, "# comment line\necho c # trailing").await, ok("c"));
        assert_eq!(cmd(&t, "echo a # trailing comment").await, ok("a"));
        assert_eq!(
            cmd(&t, "f() {\n  echo \"in f $1\"\n}\nf 1\n\nf 2").await,
            ok("in f 1\nin f 2")
        );
        assert_eq!(
            cmd(&t, "for i in 1 2; do\n echo $i\ndone").await,
            ok("1\n2")
        );
        assert_eq!(cmd(&t, "f 3").await, ok("in f 3"));
        assert_eq!(cmd(&t, "shopt -s extglob; touch a.txt b.log").await, ok(""));
        assert_eq!(cmd(&t, "ls !(*.txt)").await, ok("b.log"));
        assert_eq!(
            cmd(&t, "sleep 100 &\njobs").await,
            ok("[1]+  Running                 sleep 100 &")
        );
    }

    // B19
    #[tokio::test]
    async fn b19_exit_kills_session() {
        let (_d, _root, t) = setup();
        assert_eq!(cmd(&t, "exit 7").await, err("(no output)"));
        assert_eq!(cmd(&t, "echo hi").await, err(TERMINATED));
        assert_eq!(cmd(&t, "echo hi").await, err(TERMINATED));
        assert_eq!(run(&t, json!({"restart": true})).await, ok(RESTARTED));
        assert_eq!(cmd(&t, "echo partial; set -e; false").await, err("partial"));
        assert_eq!(cmd(&t, "echo hi").await, err(TERMINATED));
    }

    // B20
    #[tokio::test]
    async fn b20_restart_ignores_command() {
        let (_d, root, t) = setup();
        let c = format!("touch {}", root.join("ran").display());
        assert_eq!(
            run(&t, json!({"restart": true, "command": c})).await,
            ok(RESTARTED)
        );
        assert!(!root.join("ran").exists());
        // A restart also resets state.
        assert_eq!(cmd(&t, "export V=1; cd /").await, ok(""));
        assert_eq!(run(&t, json!({"restart": true})).await, ok(RESTARTED));
        assert_eq!(
            cmd(&t, "echo ${V:-unset}; pwd").await,
            ok(&format!("unset\n{}", root.display()))
        );
        assert_eq!(
            run(&t, json!({"restart": false, "command": "echo run"})).await,
            ok("run")
        );
    }

    // B21: output written between calls arrives with the next call.
    #[tokio::test]
    async fn b21_background_output_between_calls() {
        let (_d, _root, t) = setup();
        assert_eq!(cmd(&t, "(sleep 0.5; echo late) &").await, ok(""));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(cmd(&t, "echo next").await, ok("late\nnext"));
    }

    // B22
    #[tokio::test]
    async fn b22_invalid_arguments() {
        let (_d, _root, t) = setup();
        let bad = err("ValueError('Invalid arguments for function bash')");
        for input in [
            json!({"command": "echo x", "bogus": 1}),
            json!({"command": 123}),
            json!({"restart": "maybe"}),
            json!({"command": "echo x", "timeout_ms": 1.5}),
        ] {
            assert_eq!(run(&t, input).await, bad);
        }
    }

    // B25
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn b25_concurrent_calls_serialised() {
        let (_d, _root, t) = setup();
        let a = json!({"command": "echo a1; sleep 0.3; echo a2"});
        let b = json!({"command": "echo b1; sleep 0.1; echo b2"});
        let (ra, rb) = tokio::join!(t.call(&a), t.call(&b));
        assert_eq!(ra, ToolOutput::ok("a1\na2"));
        assert_eq!(rb, ToolOutput::ok("b1\nb2"));
    }

    // Divergence 1 on restart: children of the old shell die.
    #[tokio::test]
    async fn restart_kills_children() {
        let (_d, _root, t) = setup();
        let (e, pid) = cmd(&t, "sleep 100 & echo $!").await;
        assert!(!e);
        let pid: i32 = pid.parse().unwrap();
        assert!(alive(pid));
        assert_eq!(run(&t, json!({"restart": true})).await, ok(RESTARTED));
        assert!(
            wait_dead(pid, Duration::from_secs(2)).await,
            "background job survived restart"
        );
    }

    // Teardown: shutdown kills the group, even with a command in flight.
    #[tokio::test]
    async fn shutdown_kills_group_and_unblocks() {
        let (_d, _root, t) = setup();
        let t = Arc::new(t);
        let (_, pid) = cmd(&t, "sleep 100 & echo $!").await;
        let pid: i32 = pid.parse().unwrap();
        let t2 = t.clone();
        let call = tokio::spawn(async move { t2.call(&json!({"command": "sleep 60"})).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let start = std::time::Instant::now();
        t.shutdown().await;
        assert!(start.elapsed() < Duration::from_secs(3));
        let out = tokio::time::timeout(Duration::from_secs(3), call)
            .await
            .unwrap()
            .unwrap();
        assert!(out.is_error);
        assert!(wait_dead(pid, Duration::from_secs(2)).await);
        assert_eq!(cmd(&t, "echo x").await, err(TERMINATED));
    }

    // §3.6: `exec 1>/dev/null` hides the sentinel ⇒ timeout (reference behaviour).
    #[tokio::test]
    async fn redirected_stdout_times_out() {
        let (_d, _root, t) = setup();
        assert_eq!(
            run(
                &t,
                json!({"command": "exec 1>/dev/null", "timeout_ms": 300})
            )
            .await,
            err("bash: bash command timed out after 0.3s")
        );
        assert_eq!(cmd(&t, "echo x").await, err(TERMINATED));
    }

    // The workdir is the initial cwd, `$0` is /bin/bash, the shell is non-interactive.
    #[tokio::test]
    async fn shell_identity() {
        let (_d, root, t) = setup();
        assert_eq!(
            cmd(&t, "pwd; echo $0; case $- in *i*) echo interactive;; esac").await,
            ok(&format!("{}\n/bin/bash", root.display()))
        );
        let (_, pg) = cmd(
            &t,
            "ps -o pgid= -p $$ 2>/dev/null || cut -d' ' -f5 /proc/$$/stat",
        )
        .await;
        let (_, me) = cmd(&t, "echo $$").await;
        assert_eq!(pg.trim(), me);
    }
}
