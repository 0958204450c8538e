//! Differential test: "The six tools, byte-exact with the reference toolset".
//!
//! One scripted session of well over 60 tool calls (all six tools, the interesting
//! cases of tools spec §13) runs twice over the same generated fixture tree at the
//! same absolute path: first through the Python reference worker (`anthropic`
//! 2.10.0, driven as a black box by `tests/reference/reference_worker.py`), then
//! through our `runner` binary, both against the fake control plane. The results are
//! compared call by call: `is_error` and the `content` JSON must be equal, except for
//! the documented divergences ([`DIVERGENCES`], each with a reason) and the known
//! tool bugs still to be fixed ([`KNOWN_MISMATCHES`], which must match exactly, so
//! that the list can only shrink). The score is printed.
//!
//! Debugging: env `CMA_DIFFERENTIAL_DUMP=<file>` writes every call with both results
//! (JSON lines).
//!
//! Requirements: env `CMA_REFERENCE_PYTHON` (a Python with `anthropic==2.10.0`, see
//! `tests/reference/requirements.txt`) and `rg` on `PATH` (the reference then uses its
//! ripgrep mode, which is what we implement). Without them the test is skipped, or
//! fails when env `CI` is set (`.ci/run` must provide both).
//!
//! Determinism: every fixture file and directory gets its own explicit mtime, so
//! `glob`'s newest-first order is fully defined; the glob/grep/read calls run before
//! anything is modified; no call prints PIDs, times or random values. Multi-file
//! `grep` output of ripgrep is in nondeterministic order (parallel search), so those
//! calls are compared as sorted line multisets ([`Cmp::SortedLines`]).
//!
//! When the test runs as root, both workers are run as uid/gid 65534 (`setpriv`), so
//! that a mode-000 file is really unreadable (divergence 4) and the file tools see
//! ordinary permissions; if that is impossible the unreadable-file call is left out.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cma_tests::fake::{FakeConfig, FakeControlPlane, ScriptStep, SessionScript};
use filetime::FileTime;
use serde_json::{Value, json};
use tokio::process::Command;

const RUNNER: &str = env!("CARGO_BIN_EXE_runner");
const DRIVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/reference/reference_worker.py"
);
/// Generous per-run limit (the reference is slow to start).
const RUN_LIMIT: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;

// --------------------------------------------------------------------------- script

/// How two results of one call are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    /// `is_error` and `content` JSON equal.
    Exact,
    /// `is_error` equal, one text block each, same lines in any order (ripgrep prints
    /// the files of a directory search in nondeterministic order).
    SortedLines,
}

struct Call {
    label: &'static str,
    tool: &'static str,
    input: Value,
    cmp: Cmp,
}

/// Builds the script. `ws` = workdir, `tmp` = its parent (holds `outside/`).
#[rustfmt::skip]
fn script(ws: &str, tmp: &str, unreadable: bool) -> Vec<Call> {
    let mut v = Vec::new();
    let mut add = |label: &'static str, tool: &'static str, input: Value, cmp: Cmp| {
        v.push(Call { label, tool, input, cmp })
    };
    let x = Cmp::Exact;

    // ---- glob (first: nothing has been modified yet, so every mtime is the fixture's)
    add("glob-star", "glob", json!({"pattern": "*"}), x);
    add("glob-dirs-only", "glob", json!({"pattern": "*/"}), x);
    add("glob-dotfiles", "glob", json!({"pattern": ".*"}), x);
    add("glob-py-recursive", "glob", json!({"pattern": "**/*.py"}), x);
    add("glob-src-recursive", "glob", json!({"pattern": "src/**/*.py"}), x);
    add("glob-src-star", "glob", json!({"pattern": "src/*"}), x);
    add("glob-dot-slash", "glob", json!({"pattern": "./src//*.py"}), x);
    add("glob-links-star", "glob", json!({"pattern": "links/*"}), x);
    add("glob-through-dir-link", "glob", json!({"pattern": "links/linkdir/*.py"}), x);
    add("glob-path-is-link", "glob", json!({"pattern": "*.py", "path": "links/linkdir"}), x);
    add("glob-path-src", "glob", json!({"pattern": "*.py", "path": "src"}), x);
    add("glob-unicode", "glob", json!({"pattern": "ünï/*"}), x);
    add("glob-200-cap", "glob", json!({"pattern": "many/*.txt"}), x);
    add("glob-question-class", "glob", json!({"pattern": "many/f0[0-4]?.txt"}), x);
    add("glob-negated-class", "glob", json!({"pattern": "data/[!abcdefgh]*"}), x);
    add("glob-no-braces", "glob", json!({"pattern": "src/{a,b}/*.py"}), x);
    add("glob-case-sensitive", "glob", json!({"pattern": "*.PY"}), x);
    add("glob-nomatch", "glob", json!({"pattern": "nomatch*"}), x);
    add("glob-unclosed-bracket", "glob", json!({"pattern": "["}), x);
    add("glob-dotdot", "glob", json!({"pattern": "../*"}), x);
    add("glob-dotdot-inner", "glob", json!({"pattern": "src/../*"}), x);
    add("glob-bracket-dots", "glob", json!({"pattern": "[.][.]/*"}), x);
    add("glob-absolute", "glob", json!({"pattern": "/tmp/*"}), x);
    add("glob-outside-link-contents", "glob", json!({"pattern": "links/link_out/*"}), x);
    add("glob-path-outside", "glob", json!({"pattern": "*", "path": "links/link_out"}), x);
    add("glob-path-missing", "glob", json!({"pattern": "*", "path": "missing"}), x);
    add("glob-path-file", "glob", json!({"pattern": "*", "path": "top.py"}), x);
    add("glob-empty-pattern", "glob", json!({"pattern": ""}), x);
    add("glob-literal", "glob", json!({"pattern": "top.py"}), x);
    add("glob-bad-args", "glob", json!({"pattern": "*", "bogus": 1}), x);
    add("glob-trailing-doublestar", "glob", json!({"pattern": "src/**"}), x);
    add("glob-doublestar-in-component", "glob", json!({"pattern": "sr**"}), x);

    // ---- grep (ripgrep mode)
    add("grep-single-file", "grep", json!({"pattern": "hello", "path": "data/hello.txt"}), x);
    add("grep-kept-only", "grep", json!({"pattern": "needle kept", "path": "repo"}), x);
    add("grep-node-modules", "grep", json!({"pattern": "needle nm", "path": "repo"}), x);
    add("grep-ignored-hidden", "grep", json!({"pattern": "needle (ignored|build|hidden|hdir|git)", "path": "repo"}), x);
    add("grep-walked-binary", "grep", json!({"pattern": "binary", "path": "repo"}), x);
    add("grep-explicit-binary", "grep", json!({"pattern": "needle", "path": "repo/bin.dat"}), x);
    add("grep-latin1-line", "grep", json!({"pattern": "needle caf", "path": "repo"}), x);
    add("grep-crlf-dollar", "grep", json!({"pattern": "crlf$", "path": "repo"}), x);
    add("grep-crlf-line", "grep", json!({"pattern": "needle crlf", "path": "repo"}), x);
    add("grep-case-insensitive", "grep", json!({"pattern": "(?i)HELLO", "path": "data/hello.txt"}), x);
    add("grep-no-smart-case", "grep", json!({"pattern": "HELLO", "path": "data/hello.txt"}), x);
    add("grep-dash-pattern", "grep", json!({"pattern": "-v", "path": "data/hello.txt"}), x);
    add("grep-unclosed-group", "grep", json!({"pattern": "(", "path": "data"}), x);
    add("grep-lookaround", "grep", json!({"pattern": "a(?=g)", "path": "data/hello.txt"}), x);
    add("grep-newline-pattern", "grep", json!({"pattern": "a\nb", "path": "data/hello.txt"}), x);
    add("grep-no-matches", "grep", json!({"pattern": "nomatch_xyz", "path": "repo"}), x);
    add("grep-missing-path", "grep", json!({"pattern": "x", "path": "missing"}), x);
    add("grep-outside-link", "grep", json!({"pattern": "x", "path": "links/link_out"}), x);
    add("grep-truncated", "grep", json!({"pattern": "row 1", "path": "data/bigrows.txt"}), x);
    add("grep-unicode-dir", "grep", json!({"pattern": "café", "path": "ünï"}), x);
    add("grep-bad-args", "grep", json!({"pattern": 5}), x);
    add("grep-tree-multi", "grep", json!({"pattern": "needle", "path": "repo"}), Cmp::SortedLines);
    add("grep-src-tree", "grep", json!({"pattern": "def ", "path": "src"}), Cmp::SortedLines);
    if unreadable {
        add("grep-partial-unreadable", "grep", json!({"pattern": "needle", "path": "gpart"}), x);
    }

    // ---- read
    add("read-whole", "read", json!({"file_path": "data/a.txt"}), x);
    add("read-range-2-3", "read", json!({"file_path": "data/a.txt", "view_range": [2, 3]}), x);
    add("read-range-2-0", "read", json!({"file_path": "data/a.txt", "view_range": [2, 0]}), x);
    add("read-range-0-1", "read", json!({"file_path": "data/a.txt", "view_range": [0, 1]}), x);
    add("read-range-empty", "read", json!({"file_path": "data/a.txt", "view_range": [3, 2]}), x);
    add("read-range-one-elem", "read", json!({"file_path": "data/a.txt", "view_range": [1]}), x);
    add("read-range-strings", "read", json!({"file_path": "data/a.txt", "view_range": ["1", "2"]}), x);
    add("read-absolute-inside", "read", json!({"file_path": format!("{ws}/data/a.txt")}), x);
    add("read-crlf-range", "read", json!({"file_path": "data/crlf.txt", "view_range": [1, 2]}), x);
    add("read-bom", "read", json!({"file_path": "data/bom.txt"}), x);
    add("read-nul-valid-utf8", "read", json!({"file_path": "data/nul.bin"}), x);
    add("read-invalid-utf8", "read", json!({"file_path": "data/latin1.txt"}), x);
    add("read-empty", "read", json!({"file_path": "data/empty.txt"}), x);
    add("read-big-no-range", "read", json!({"file_path": "data/big.txt"}), x);
    add("read-big-one-line", "read", json!({"file_path": "data/big.txt", "view_range": [1, 1]}), x);
    add("read-bigrows-head", "read", json!({"file_path": "data/bigrows.txt", "view_range": [1, 3]}), x);
    add("read-bigrows-tail", "read", json!({"file_path": "data/bigrows.txt", "view_range": [29999, 0]}), x);
    add("read-bigrows-chunk-boundary", "read", json!({"file_path": "data/bigrows.txt", "view_range": [6500, 7000]}), x);
    add("read-bigrows-too-much", "read", json!({"file_path": "data/bigrows.txt", "view_range": [1, 30000]}), x);
    add("read-bigrows-past-end", "read", json!({"file_path": "data/bigrows.txt", "view_range": [40000, 40001]}), x);
    add("read-png", "read", json!({"file_path": "data/img.png"}), x);
    add("read-png-upper", "read", json!({"file_path": "data/IMG2.PNG"}), x);
    add("read-pdf", "read", json!({"file_path": "data/doc.pdf"}), x);
    add("read-png-range", "read", json!({"file_path": "data/img.png", "view_range": [1, 2]}), x);
    add("read-fifo", "read", json!({"file_path": "data/fifo"}), x);
    add("read-dir", "read", json!({"file_path": "data"}), x);
    add("read-missing", "read", json!({"file_path": "missing.txt"}), x);
    add("read-link-inside", "read", json!({"file_path": "links/lnk_in"}), x);
    add("read-link-outside", "read", json!({"file_path": "links/link_out"}), x);
    add("read-dangling-outside", "read", json!({"file_path": "links/dangling_out"}), x);
    add("read-dangling-inside", "read", json!({"file_path": "links/dangling_in"}), x);
    add("read-dotdot-outside", "read", json!({"file_path": "../outside/secret"}), x);
    add("read-etc-passwd", "read", json!({"file_path": "/etc/passwd"}), x);
    add("read-tmp-outside-abs", "read", json!({"file_path": format!("{tmp}/outside/secret")}), x);
    add("read-loop", "read", json!({"file_path": "links/loop1"}), x);
    add("read-not-a-dir", "read", json!({"file_path": "data/a.txt/child"}), x);
    add("read-unicode-path", "read", json!({"file_path": "ünï/café.txt"}), x);
    add("read-quote-missing", "read", json!({"file_path": "it's.txt"}), x);
    add("read-quote-outside", "read", json!({"file_path": "../it's.txt"}), x);
    add("read-nul-in-path", "read", json!({"file_path": "a\u{0}b"}), x);
    add("read-extra-key", "read", json!({"file_path": "data/a.txt", "extra": 1}), x);

    // ---- write
    add("write-unicode-count", "write", json!({"file_path": "scratch/ünï/é.txt", "content": "é€😀"}), x);
    add("write-read-back-unicode", "read", json!({"file_path": "scratch/ünï/é.txt"}), x);
    add("write-parents", "write", json!({"file_path": "scratch/deep/new/dir/f.txt", "content": "x\n"}), x);
    add("write-empty", "write", json!({"file_path": "scratch/empty.txt", "content": ""}), x);
    add("write-crlf", "write", json!({"file_path": "scratch/crlf_w.txt", "content": "a\r\nb\n"}), x);
    add("write-read-back-crlf", "read", json!({"file_path": "scratch/crlf_w.txt"}), x);
    add("write-dir-target", "write", json!({"file_path": "scratch", "content": "x"}), x);
    add("write-parent-is-file", "write", json!({"file_path": "data/a.txt/child", "content": "x"}), x);
    add("write-escape", "write", json!({"file_path": "../escape.txt", "content": "x"}), x);
    add("write-link-outside", "write", json!({"file_path": "links/link_out", "content": "pwned"}), x);
    add("write-through-link", "write", json!({"file_path": "links/lnk_w", "content": "via link\n"}), x);
    add("write-read-link-target", "read", json!({"file_path": "scratch/target.txt"}), x);
    add("write-dangling-link", "write", json!({"file_path": "links/dangling_in", "content": "created\n"}), x);
    add("write-read-dangling-target", "read", json!({"file_path": "data/nothing.txt"}), x);
    add("write-keeps-mode", "write", json!({"file_path": "scratch/mode755.sh", "content": "#!/bin/sh\necho hi\n"}), x);
    add("write-loop", "write", json!({"file_path": "links/loop1/child.txt", "content": "x"}), x);
    add("write-missing-content", "write", json!({"file_path": "scratch/x.txt"}), x);

    // ---- edit
    add("edit-unique", "edit", json!({"file_path": "scratch/f.txt", "old_string": "bar", "new_string": "BAZ"}), x);
    add("edit-not-unique", "edit", json!({"file_path": "scratch/f.txt", "old_string": "foo", "new_string": "X"}), x);
    add("edit-replace-all", "edit", json!({"file_path": "scratch/f.txt", "old_string": "foo", "new_string": "X", "replace_all": true}), x);
    add("edit-read-back", "read", json!({"file_path": "scratch/f.txt"}), x);
    add("edit-not-found", "edit", json!({"file_path": "scratch/f.txt", "old_string": "zzz", "new_string": "y"}), x);
    add("edit-empty-old", "edit", json!({"file_path": "scratch/f.txt", "old_string": "", "new_string": "y"}), x);
    add("edit-non-overlapping", "edit", json!({"file_path": "scratch/aaa.txt", "old_string": "aa", "new_string": "b", "replace_all": "true"}), x);
    add("edit-literal-specials", "edit", json!({"file_path": "scratch/aaa.txt", "old_string": "ba", "new_string": "$1 \\1 \\g<0> $&"}), x);
    add("edit-read-back-specials", "read", json!({"file_path": "scratch/aaa.txt"}), x);
    add("edit-crlf-lf-needle", "edit", json!({"file_path": "scratch/crlf2.txt", "old_string": "one\ntwo", "new_string": "x"}), x);
    add("edit-crlf-crlf-needle", "edit", json!({"file_path": "scratch/crlf2.txt", "old_string": "one\r\ntwo", "new_string": "1\r\n2"}), x);
    add("edit-read-back-crlf", "read", json!({"file_path": "scratch/crlf2.txt"}), x);
    add("edit-same-string", "edit", json!({"file_path": "scratch/crlf2.txt", "old_string": "2", "new_string": "2"}), x);
    add("edit-binary", "edit", json!({"file_path": "scratch/bin.dat", "old_string": "a", "new_string": "b"}), x);
    add("edit-missing", "edit", json!({"file_path": "scratch/missing.txt", "old_string": "a", "new_string": "b"}), x);
    add("edit-directory", "edit", json!({"file_path": "scratch", "old_string": "a", "new_string": "b"}), x);
    add("edit-big", "edit", json!({"file_path": "data/big.txt", "old_string": "a", "new_string": "b"}), x);
    add("edit-outside", "edit", json!({"file_path": "links/link_out", "old_string": "top", "new_string": "x"}), x);
    add("edit-unicode", "edit", json!({"file_path": "ünï/café.txt", "old_string": "ünï", "new_string": "UNI"}), x);
    add("edit-read-back-unicode", "read", json!({"file_path": "ünï/café.txt"}), x);
    add("edit-keeps-mode", "edit", json!({"file_path": "scratch/mode755.sh", "old_string": "hi", "new_string": "ho"}), x);
    add("edit-missing-new", "edit", json!({"file_path": "scratch/f.txt", "old_string": "X"}), x);

    // ---- bash (last: the divergent calls kill or keep shells)
    add("bash-echo", "bash", json!({"command": "echo hello"}), x);
    add("bash-stderr-merge-exit", "bash", json!({"command": "echo out; echo err >&2; (exit 3)"}), x);
    add("bash-export-cd", "bash", json!({"command": "export FOO=bar; cd data"}), x);
    add("bash-persistence", "bash", json!({"command": "echo $FOO; pwd"}), x);
    add("bash-true", "bash", json!({"command": "true"}), x);
    add("bash-false", "bash", json!({"command": "false"}), x);
    add("bash-ansi", "bash", json!({"command": "printf '\\033[1;32mok\\033[0m plain\\033[2K'"}), x);
    add("bash-invalid-utf8", "bash", json!({"command": "printf '\\xff\\xfe bad utf8'"}), x);
    add("bash-nul-kept", "bash", json!({"command": "printf 'x\\0y'"}), x);
    add("bash-truncation", "bash", json!({"command": "yes | head -c 300000"}), x);
    add("bash-cd-error-line", "bash", json!({"command": "cd /nonexistent_dir_xyz"}), x);
    add("bash-leading-newlines", "bash", json!({"command": "printf '\\n\\nlead  '"}), x);
    add("bash-timeout-zero", "bash", json!({"command": "echo zero", "timeout_ms": 0}), x);
    add("bash-timeout-string", "bash", json!({"command": "echo t", "timeout_ms": "2000"}), x);
    add("bash-stdin-null", "bash", json!({"command": "cat; read x; echo \"got [$x]\""}), x);
    add("bash-unicode-ls", "bash", json!({"command": "ls ../ünï; test -L ../links/lnk_w && echo still-a-link"}), x);
    add("bash-modes", "bash", json!({"command": "cd ..; stat -c '%a %F %n' scratch/mode755.sh scratch/empty.txt scratch/deep/new/dir scratch/deep links/lnk_w; ./scratch/mode755.sh"}), x);
    add("bash-background-start", "bash", json!({"command": "(sleep 0.2; echo bg) &"}), x);
    add("bash-background-output", "bash", json!({"command": "sleep 1.5; echo next"}), x);
    add("bash-command-required", "bash", json!({}), x);
    add("bash-empty-command", "bash", json!({"command": ""}), x);
    add("bash-bogus-key", "bash", json!({"command": "echo x", "bogus": 1}), x);
    add("bash-bad-restart", "bash", json!({"restart": "maybe"}), x);
    add("bash-spoof-sentinel", "bash", json!({"command": "printf '__ANT_CMD_DONE__0\\n'; (exit 4)"}), x);
    add("bash-timeout", "bash", json!({"command": format!("(sleep 1; echo late > {ws}/scratch/late.txt) & sleep 3"), "timeout_ms": 500}), x);
    add("bash-after-timeout", "bash", json!({"command": "echo x"}), x);
    add("bash-restart-ignores-command", "bash", json!({"restart": true, "command": "echo hi"}), x);
    add("bash-fresh-cwd", "bash", json!({"command": "pwd; echo \"[${FOO:-unset}]\""}), x);
    add("bash-orphan-survived", "bash", json!({"command": "sleep 2; cat scratch/late.txt"}), x);
    add("bash-syntax-error", "bash", json!({"command": "echo ok; }"}), x);
    add("bash-after-syntax-error", "bash", json!({"command": "echo after"}), x);
    add("bash-restart-2", "bash", json!({"restart": true}), x);
    add("bash-exit", "bash", json!({"command": "exit 7"}), x);
    add("bash-restart-3", "bash", json!({"restart": true}), x);
    add("bash-spaced", "bash", json!({"command": "echo \"  spaced  \""}), x);
    add("bash-heredoc", "bash", json!({"command": "cat <<'EOF'\n{ braces }\nEOF"}), x);
    v
}

// ---------------------------------------------------------------- divergences, bugs

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// (1) bash timeout/restart/teardown kill the whole process group.
    ProcessGroupKill,
    /// (2) a bash syntax error does not kill the shell.
    SyntaxErrorKeepsShell,
    /// (3) `edit` with an empty `old_string`.
    EditEmptyOldString,
    /// (4) grep with matches and an unreadable file.
    GrepPartialError,
    /// `glob` follows Python 3.13 `pathlib` (tools spec §7.3); the reference's
    /// semantics depend on the Python running it (3.11 here; CI may differ).
    PythonGlobVersion,
}

/// A documented, intended difference from the reference. `ours` is what our runner
/// must return instead (`{WS}` = workdir, `{TMP}` = its parent).
struct Divergence {
    label: &'static str,
    kind: Kind,
    reason: &'static str,
    ours: (bool, &'static str),
}

const DIVERGENCES: &[Divergence] = &[
    Divergence {
        label: "glob-trailing-doublestar",
        kind: Kind::PythonGlobVersion,
        reason: "`**` as the final component: Python <= 3.12 pathlib yields directories only, \
                 3.13 (ours, spec §7.3) every file and directory below plus the root",
        ours: (
            false,
            "{WS}/src/x.py\n{WS}/src/a/y.py\n{WS}/src/a/notes.md\n{WS}/src/a/b/z.py\n{WS}/src/a/b\n{WS}/src/a\n{WS}/src",
        ),
    },
    Divergence {
        label: "glob-doublestar-in-component",
        kind: Kind::PythonGlobVersion,
        reason: "`**` inside a component: Python <= 3.12 raises `Invalid pattern: '**' can only \
                 be an entire path component`, 3.13 (ours, spec §7.3) treats it as `*`",
        ours: (false, "{WS}/src"),
    },
    Divergence {
        label: "bash-orphan-survived",
        kind: Kind::ProcessGroupKill,
        reason: "the timed-out call's background job `(sleep 1; echo late > …) &` is killed with \
                 the shell's process group in ours; the reference SIGKILLs only bash, so the \
                 orphan still writes scratch/late.txt",
        ours: (true, "cat: scratch/late.txt: No such file or directory"),
    },
    Divergence {
        label: "bash-syntax-error",
        kind: Kind::SyntaxErrorKeepsShell,
        reason: "ours rejects the command with bash's own parse error before it reaches the \
                 persistent shell (nothing runs); the reference runs `ok`, then its shell dies \
                 printing a parse error that quotes its wrapper (random sentinel)",
        ours: (
            true,
            "/bin/bash: line 1: syntax error near unexpected token `}'\n/bin/bash: line 1: `echo ok; }'",
        ),
    },
    Divergence {
        label: "bash-after-syntax-error",
        kind: Kind::SyntaxErrorKeepsShell,
        reason: "consequence of (2): our shell is still alive; the reference's is dead \
                 (`restart required`, or `(no output)` while the child is not reaped yet)",
        ours: (false, "after"),
    },
    Divergence {
        label: "edit-empty-old",
        kind: Kind::EditEmptyOldString,
        reason: "ours rejects an empty old_string (TS/Go guard); Python counts len+1 matches",
        ours: (true, "edit: old_string is required"),
    },
    Divergence {
        label: "grep-partial-unreadable",
        kind: Kind::GrepPartialError,
        reason: "rg exits 2 when a file is unreadable; the reference discards the matches and \
                 reports only rg's stderr, ours returns the matches followed by the error",
        ours: (
            true,
            "{WS}/gpart/a.txt:1:needle a\ngrep: rg failed: {WS}/gpart/secret.txt: Permission denied (os error 13)\n",
        ),
    },
];

/// Differences that are bugs in our tools (not intended). The test passes only if
/// exactly these calls differ exactly like this; fix the tool, then delete the entry.
/// Fields: label, reference (is_error, text), ours (is_error, text); `{WS}` = workdir.
/// Non-text content is rendered as its JSON.
struct KnownMismatch {
    label: &'static str,
    reference: (bool, &'static str),
    ours: (bool, &'static str),
}

const KNOWN_MISMATCHES: &[KnownMismatch] = &[];

// ----------------------------------------------------------------------- fixtures

/// Creates the fixture tree at `tmp/ws` (and `tmp/outside`, `tmp/home`), recording
/// every path so that each gets a distinct, explicit mtime at the end.
struct Fixture {
    tmp: PathBuf,
    ws: PathBuf,
    paths: Vec<PathBuf>,
}

impl Fixture {
    fn dir(&mut self, rel: &str) {
        let p = self.ws.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        self.paths.push(p);
    }

    fn file(&mut self, rel: &str, bytes: &[u8]) {
        let p = self.ws.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        self.paths.push(p);
    }

    fn link(&mut self, rel: &str, target: &str) {
        let p = self.ws.join(rel);
        std::os::unix::fs::symlink(target, &p).unwrap();
        self.paths.push(p);
    }
}

fn build_tree(tmp: &Path, unreadable: bool, drop_to: Option<u32>) -> PathBuf {
    let ws = tmp.join("ws");
    for d in ["ws", "outside", "home"] {
        let p = tmp.join(d);
        if p.exists() {
            // Restore permissions a run may have left, then remove.
            let _ = std::fs::set_permissions(
                p.join("gpart/secret.txt"),
                std::fs::Permissions::from_mode(0o600),
            );
            std::fs::remove_dir_all(&p).unwrap();
        }
    }
    std::fs::create_dir_all(tmp.join("outside")).unwrap();
    std::fs::write(tmp.join("outside/secret"), "top secret\n").unwrap();
    std::fs::create_dir_all(tmp.join("home")).unwrap();
    std::fs::create_dir_all(&ws).unwrap();
    let mut f = Fixture {
        tmp: tmp.to_path_buf(),
        ws: ws.clone(),
        paths: Vec::new(),
    };

    f.dir("data");
    f.file("data/a.txt", b"line1\nline2\nline3\n");
    f.file(
        "data/hello.txt",
        b"hello world\nsecond line\nsay hello again\n",
    );
    f.file("data/crlf.txt", b"line1\r\nline2\r\nhello crlf\r\n");
    f.file("data/bom.txt", "\u{feff}bom first\nsecond\n".as_bytes());
    f.file("data/nul.bin", b"ab\0cd\nhello\n");
    f.file("data/latin1.txt", b"caf\xe9 hello\n");
    f.file("data/empty.txt", b"");
    let mut big = vec![b'x'; 300_000];
    big.push(b'\n');
    f.file("data/big.txt", &big);
    let rows: String = (1..=30000).map(|i| format!("row {i}\n")).collect();
    assert_eq!(rows.len(), 288_894);
    f.file("data/bigrows.txt", rows.as_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend((0..=255u8).collect::<Vec<u8>>());
    f.file("data/img.png", &png);
    f.file("data/IMG2.PNG", b"\x89PNG\r\n\x1a\nnot really");
    f.file(
        "data/doc.pdf",
        b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n",
    );
    let fifo = ws.join("data/fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    f.paths.push(fifo);

    f.dir("ünï");
    f.file("ünï/café.txt", "café ünïcode\n".as_bytes());

    f.dir("src/a/b");
    f.file("src/x.py", b"def x():\n    return 1\n");
    f.file("src/a/y.py", b"def y():\n    return 2\n");
    f.file("src/a/b/z.py", b"def z():\n    return 3\n");
    f.file("src/a/notes.md", b"# notes\n");
    f.file(".hidden/h.py", b"def h(): pass\n");
    f.file(".dot.py", b"def dot(): pass\n");
    f.file("top.py", b"def top(): pass\n");
    f.file("node_modules/pkg/n.py", b"def n(): pass\n");

    f.file("repo/.git/HEAD", b"ref: refs/heads/main\n");
    f.file("repo/.git/g.py", b"needle git\n");
    f.file("repo/.gitignore", b"ignored.txt\nbuild/\n");
    f.file("repo/kept.txt", b"needle kept\nother\n");
    f.file("repo/ignored.txt", b"needle ignored\n");
    f.file("repo/build/out.txt", b"needle build\n");
    f.file("repo/.hidden.txt", b"needle hidden\n");
    f.file("repo/.hdir/h.txt", b"needle hdir\n");
    f.file("repo/node_modules/pkg/index.js", b"// needle nm\n");
    f.file("repo/bin.dat", b"needle\0binary\n");
    f.file("repo/latin.txt", b"needle caf\xe9\n");
    f.file("repo/crlf.txt", b"needle crlf\r\n");

    f.dir("many");
    for i in 0..250 {
        f.file(&format!("many/f{i:03}.txt"), format!("{i}\n").as_bytes());
    }

    f.dir("scratch");
    f.file("scratch/target.txt", b"old target\n");
    f.file("scratch/f.txt", b"foo bar foo\n");
    f.file("scratch/crlf2.txt", b"one\r\ntwo\r\n");
    f.file("scratch/aaa.txt", b"aaa");
    f.file("scratch/bin.dat", b"\xff\xfe\0\x01");
    f.file("scratch/mode755.sh", b"#!/bin/sh\necho old\n");
    std::fs::set_permissions(
        ws.join("scratch/mode755.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    f.dir("links");
    let tmp_s = f.tmp.display().to_string();
    f.link("links/lnk_in", "../data/a.txt");
    f.link("links/linkdir", "../src");
    f.link("links/link_out", &format!("{tmp_s}/outside/secret"));
    f.link("links/dangling_out", &format!("{tmp_s}/outside/nope"));
    f.link("links/dangling_in", "../data/nothing.txt");
    f.link("links/loop1", "loop2");
    f.link("links/loop2", "loop1");
    f.link("links/lnk_w", "../scratch/target.txt");

    if unreadable {
        f.dir("gpart");
        f.file("gpart/a.txt", b"needle a\n");
        f.file("gpart/secret.txt", b"needle secret\n");
    }

    // Every recorded path and each of its directories below `ws`. Mtimes are set only
    // now, after every entry exists, so creating entries no longer touches them.
    let mut all: Vec<PathBuf> = f
        .paths
        .iter()
        .flat_map(|p| {
            p.ancestors()
                .take_while(|a| *a != ws)
                .map(Path::to_path_buf)
        })
        .collect();
    all.sort();
    all.dedup();
    // Distinct mtimes, newest last in path order, 7 s apart, all in the past.
    for (i, p) in all.iter().enumerate() {
        let t = FileTime::from_unix_time(1_700_000_000 + 7 * i as i64, 0);
        filetime::set_symlink_file_times(p, t, t).unwrap();
    }
    if let Some(uid) = drop_to {
        for p in all.iter().chain([
            &ws,
            &tmp.join("outside"),
            &tmp.join("outside/secret"),
            &tmp.join("home"),
        ]) {
            std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
        }
    }
    if unreadable {
        std::fs::set_permissions(
            ws.join("gpart/secret.txt"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
    }
    let t = FileTime::from_unix_time(1_690_000_000, 0);
    filetime::set_file_times(&ws, t, t).unwrap();
    ws
}

// -------------------------------------------------------------------------- runs

#[derive(Clone, Copy, PartialEq, Eq)]
enum Impl {
    Reference,
    Ours,
}

struct Env {
    python: String,
    tmp: PathBuf,
    drop_to: Option<u32>,
    path_var: String,
}

/// Runs one implementation over the whole script; returns the results in call order.
async fn run(which: Impl, env: &Env, ws: &Path, calls: &[Call]) -> (Vec<Value>, Duration) {
    let fake = FakeControlPlane::start(FakeConfig {
        ping_interval: Duration::from_millis(500),
        ..FakeConfig::default()
    })
    .await;
    let steps = calls
        .iter()
        .map(|c| ScriptStep::tool(c.tool, c.input.clone()))
        .collect();
    let created = fake.create_session(SessionScript::new(steps));
    let (name, program, args): (&str, String, Vec<String>) = match which {
        Impl::Reference => (
            "reference",
            env.python.clone(),
            vec![
                DRIVER.into(),
                "--workdir".into(),
                ws.display().to_string(),
                "--max-idle".into(),
                "1".into(),
            ],
        ),
        Impl::Ours => (
            "runner",
            RUNNER.into(),
            vec![
                "--workdir".into(),
                ws.display().to_string(),
                "--max-idle".into(),
                "1s".into(),
                "--log-format".into(),
                "text".into(),
            ],
        ),
    };
    let mut cmd = match env.drop_to {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .args(["--clear-groups", "--"])
                .arg(&program);
            c
        }
        None => Command::new(&program),
    };
    let log = env.tmp.join(format!("{name}.log"));
    // Both get exactly the same environment (bash and rg inherit it, minus ANTHROPIC_*).
    cmd.args(&args)
        .env_clear()
        .env("PATH", &env.path_var)
        .env("HOME", env.tmp.join("home"))
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .env("ANTHROPIC_BASE_URL", fake.base_url())
        .env("ANTHROPIC_WORK_ID", &created.work_id)
        .env("ANTHROPIC_ENVIRONMENT_ID", fake.environment_id())
        .env("ANTHROPIC_SESSION_ID", &created.session_id)
        .env("ANTHROPIC_WORK_SECRET", &created.secret)
        .current_dir(&env.tmp)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(env.tmp.join(format!("{name}.err"))).unwrap())
        .kill_on_drop(true);
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name} ({program}): {e}"));
    let status = match tokio::time::timeout(RUN_LIMIT, child.wait()).await {
        Ok(s) => s.unwrap(),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            panic!(
                "{name} did not finish within {RUN_LIMIT:?} ({} of {} calls answered); stderr:\n{}",
                fake.results(&created.session_id).len(),
                calls.len(),
                read_log(env, name)
            );
        }
    };
    let took = t0.elapsed();
    let results = fake.results(&created.session_id);
    assert!(
        status.success() && results.len() == calls.len(),
        "{name} exited with {status}, answered {} of {} calls (next unanswered: {:?}); stderr:\n{}",
        results.len(),
        calls.len(),
        calls.get(results.len()).map(|c| (c.label, &c.input)),
        read_log(env, name)
    );
    (results, took)
}

fn read_log(env: &Env, name: &str) -> String {
    let s = std::fs::read_to_string(env.tmp.join(format!("{name}.err"))).unwrap_or_default();
    let tail: Vec<&str> = s.lines().rev().take(60).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

// -------------------------------------------------------------------- comparison

/// `(is_error, text)`: the text block, or the content JSON when it is not one text block;
/// absolute fixture paths replaced by `{WS}` / `{TMP}`.
fn render(r: &Value, ws: &str, tmp: &str) -> (bool, String) {
    let is_error = r["is_error"].as_bool().unwrap_or(false);
    let content = &r["content"];
    let text = match content.as_array().map(|a| a.as_slice()) {
        Some([one]) if one["type"] == "text" && one["text"].is_string() => {
            one["text"].as_str().unwrap().to_owned()
        }
        _ => serde_json::to_string(content).unwrap(),
    };
    (is_error, text.replace(ws, "{WS}").replace(tmp, "{TMP}"))
}

fn same(cmp: Cmp, a: &Value, b: &Value) -> bool {
    if a["is_error"] != b["is_error"] {
        return false;
    }
    match cmp {
        Cmp::Exact => a["content"] == b["content"],
        Cmp::SortedLines => {
            let lines = |v: &Value| -> Option<Vec<String>> {
                let c = v["content"].as_array()?;
                if c.len() != 1 || c[0]["type"] != "text" {
                    return None;
                }
                let mut l: Vec<String> = c[0]["text"]
                    .as_str()?
                    .split_inclusive('\n')
                    .map(str::to_owned)
                    .collect();
                l.sort();
                Some(l)
            };
            match (lines(a), lines(b)) {
                (Some(x), Some(y)) => x == y,
                _ => a["content"] == b["content"],
            }
        }
    }
}

/// Shows a text with escapes, cut to a readable length.
fn shown(is_error: bool, text: &str) -> String {
    const MAX: usize = 1500;
    let mut t: String = format!("{text:?}");
    if t.len() > MAX {
        let cut = (0..=MAX)
            .rev()
            .find(|i| t.is_char_boundary(*i))
            .unwrap_or(0);
        t = format!("{}… ({} chars in all)", &t[..cut], text.chars().count());
    }
    format!("is_error={is_error} text={t}")
}

fn find_rg(path_var: &str) -> Option<PathBuf> {
    path_var
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join("rg"))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn requirement_missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!(
            "differential test: {what} — .ci/run must provide it (see functions/runner/tests/differential.rs)"
        );
    }
    println!("differential: skipped: {what}");
}

/// Whether uid 65534 can run both programs (when the test runs as root).
fn can_drop_privileges(python: &str) -> bool {
    let ok = |prog: &str, args: &[&str]| {
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                prog,
            ])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    ok(python, &["-c", "import anthropic"])
        && ok(python, &[DRIVER, "--help"])
        && ok(RUNNER, &["--help"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_tools_match_the_reference() {
    let Some(python) = std::env::var("CMA_REFERENCE_PYTHON")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        return requirement_missing("set CMA_REFERENCE_PYTHON (a Python with anthropic==2.10.0)");
    };
    let path_var = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
    if find_rg(&path_var).is_none() {
        return requirement_missing(
            "rg (ripgrep) must be on PATH so the reference greps in ripgrep mode",
        );
    }
    let t_all = Instant::now();

    let root = unsafe { libc::geteuid() } == 0;
    let drop_to = (root && can_drop_privileges(&python)).then_some(NOBODY);
    // A mode-000 file is unreadable only without root's DAC override.
    let unreadable = !root || drop_to.is_some();
    if !unreadable {
        println!(
            "differential: note: running as root without setpriv; grep-partial-unreadable left out"
        );
    }

    let base = tempfile::Builder::new()
        .prefix("cma-differential-")
        .tempdir()
        .unwrap();
    let tmp = base.path().canonicalize().unwrap();
    if drop_to.is_some() {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let env = Env {
        python,
        tmp: tmp.clone(),
        drop_to,
        path_var,
    };
    let ws_s = tmp.join("ws").display().to_string();
    let tmp_s = tmp.display().to_string();
    let calls = script(&ws_s, &tmp_s, unreadable);
    assert!(calls.len() >= 60);
    let mut labels: Vec<&str> = calls.iter().map(|c| c.label).collect();
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), calls.len(), "labels are unique");
    for l in DIVERGENCES
        .iter()
        .map(|d| d.label)
        .chain(KNOWN_MISMATCHES.iter().map(|k| k.label))
    {
        assert!(
            l == "grep-partial-unreadable" || calls.iter().any(|c| c.label == l),
            "listed call {l} is not in the script"
        );
    }

    // Reference first, then ours, each over a freshly built identical tree.
    let ws = build_tree(&tmp, unreadable, drop_to);
    let (reference, t_ref) = run(Impl::Reference, &env, &ws, &calls).await;
    // Let the reference's orphans (divergence 1) finish before the tree is rebuilt.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ws2 = build_tree(&tmp, unreadable, drop_to);
    assert_eq!(ws, ws2);
    let (ours, t_ours) = run(Impl::Ours, &env, &ws, &calls).await;

    if let Some(dump) = std::env::var_os("CMA_DIFFERENTIAL_DUMP") {
        // Debugging aid: every call with both results, one JSON object per line.
        let lines: String = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let row = json!({"index": i, "label": c.label, "tool": c.tool, "input": c.input,
                    "reference": reference[i], "ours": ours[i]});
                format!("{row}\n")
            })
            .collect();
        std::fs::write(dump, lines).unwrap();
    }
    let mut identical = 0;
    let mut documented = 0;
    let mut known = 0;
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let kinds: BTreeMap<&str, &Divergence> = DIVERGENCES.iter().map(|d| (d.label, d)).collect();
    let bugs: BTreeMap<&str, &KnownMismatch> =
        KNOWN_MISMATCHES.iter().map(|k| (k.label, k)).collect();
    for (i, call) in calls.iter().enumerate() {
        let (r, o) = (&reference[i], &ours[i]);
        let (r_err, r_text) = render(r, &ws_s, &tmp_s);
        let (o_err, o_text) = render(o, &ws_s, &tmp_s);
        let header = format!("#{i} {} {} {}", call.label, call.tool, call.input);
        let header = header.replace(&ws_s, "{WS}").replace(&tmp_s, "{TMP}");
        if let Some(d) = kinds.get(call.label) {
            if (o_err, o_text.as_str()) != d.ours {
                problems.push(format!(
                    "{header}\n  documented divergence {:?}, but ours is not what it documents:\n  want ours: {}\n  ours:      {}\n  reference: {}",
                    d.kind,
                    shown(d.ours.0, d.ours.1),
                    shown(o_err, &o_text),
                    shown(r_err, &r_text)
                ));
            } else if same(call.cmp, r, o) {
                identical += 1;
                notes.push(format!(
                    "#{i} {}: documented divergence {:?} did not show",
                    call.label, d.kind
                ));
            } else {
                documented += 1;
                println!(
                    "differential: #{i} {} documented divergence {:?}: {}\n  reference: {}\n  ours:      {}",
                    call.label,
                    d.kind,
                    d.reason,
                    shown(r_err, &r_text),
                    shown(o_err, &o_text)
                );
            }
            continue;
        }
        let equal = same(call.cmp, r, o);
        match (bugs.get(call.label), equal) {
            (None, true) => identical += 1,
            (Some(_), true) => problems.push(format!(
                "{header}\n  listed in KNOWN_MISMATCHES but now identical: remove the entry\n  both: {}",
                shown(o_err, &o_text)
            )),
            (Some(k), false) if (r_err, r_text.as_str()) == k.reference && (o_err, o_text.as_str()) == k.ours => {
                known += 1;
                println!(
                    "differential: #{i} {} KNOWN MISMATCH (tool bug to fix)\n  reference: {}\n  ours:      {}",
                    call.label,
                    shown(r_err, &r_text),
                    shown(o_err, &o_text)
                );
            }
            (k, false) => problems.push(format!(
                "{header}\n  {}\n  reference: {}\n  ours:      {}",
                if k.is_some() {
                    "differs, but not as recorded in KNOWN_MISMATCHES"
                } else {
                    "UNEXPECTED difference"
                },
                shown(r_err, &r_text),
                shown(o_err, &o_text)
            )),
        }
    }
    for n in &notes {
        println!("differential: note: {n}");
    }
    println!(
        "differential: {identical}/{} identical, {documented} documented divergences, {known} known mismatches, {} unexpected (reference {:.1}s, ours {:.1}s, total {:.1}s{})",
        calls.len(),
        problems.len(),
        t_ref.as_secs_f64(),
        t_ours.as_secs_f64(),
        t_all.elapsed().as_secs_f64(),
        if drop_to.is_some() {
            ", as uid 65534"
        } else {
            ""
        }
    );
    // Restore what the cleanup needs.
    let _ = std::fs::set_permissions(
        ws.join("gpart/secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    );
    assert!(
        problems.is_empty(),
        "differential: {} unexpected:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}
