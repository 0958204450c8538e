//! The `grep` tool (tools spec §8.3, §13.6): ripgrep 13 semantics, in process, with
//! the ripgrep library crates (`ignore`, `grep-regex`, `grep-searcher`,
//! `grep-printer`). It behaves like the reference's
//! `rg --no-config -n --no-heading -e <pattern> -- <search>`.
//!
//! - `search` = `resolve(path)` (§2.5; failure ⇒ `grep: <message>`) or the workdir.
//! - Regex: Rust regex dialect as rg builds it (`multi_line`, Unicode, no octal, no
//!   case-insensitivity, no smart case, line terminator `\n`). A build failure is
//!   reported like rg 13's stderr: `grep: rg failed: <message>\n`, with rg's
//!   suggestions appended (multiline hint for a literal newline, PCRE2 hint for
//!   look-around and back-references).
//! - Walk: `ignore::WalkBuilder` with the standard filters (hidden entries skipped;
//!   `.gitignore`, `.git/info/exclude` and the global git excludes only inside a git
//!   repository; `.ignore`; `.rgignore`; ignore files of parent directories), symlinks
//!   not followed, single-threaded, entries sorted by file name so output is stable.
//!   The search root itself is searched whatever its name (rg's "explicit" subject);
//!   below it only regular files are searched.
//! - Binary files: a walked file with a NUL byte is skipped silently (rg's "quit"
//!   detection); a file named explicitly as `path` prints
//!   `binary file matches (found "\0" byte around offset N)` instead of lines.
//! - Output: `path:line:text\n` per matching line (absolute paths, because `search` is
//!   absolute), or `line:text\n` when `path` names a file; the line keeps its CR;
//!   decoded as UTF-8 with replacement; more than 102 400 characters ⇒ the first
//!   102 400 plus `\n[output truncated at 102400 bytes]`. Nothing matched ⇒
//!   `no matches`.
//! - Errors rg prints and that make it exit 2 (a missing `path`: `{abs path}: No such
//!   file or directory (os error 2)`; an unreadable file or directory:
//!   `{path}: Permission denied (os error 13)`) are collected, one line each, in
//!   ripgrep's `Display` format (std's `io::Error` text, which is what rg prints).
//!
//! Divergence 4 (project decision): when rg would exit 2 although it found matches
//! (an unreadable file among readable ones), the reference posts only
//! `grep: rg failed: <stderr>`. We return the (truncated) match output followed by
//! `grep: rg failed: ` and the error lines, each ending with `\n`, with
//! `is_error: true`. Without matches the text is exactly the reference's.
//!
//! Decision: rg 13 parsed the pattern as given, whereas `grep-regex` 0.1.14 parses
//! `(?:<pattern>)`. Syntax errors are therefore produced from the raw pattern (with the
//! `regex` crate, which uses the same parser and prints the same error layout), so
//! `(` reports `    (\n    ^` like rg 13, and a pattern such as `a)(b`, which the
//! wrapper would silently accept, is rejected as rg 13 rejects it. The literal-newline
//! error uses rg 13's wording `the literal '"\n"' is not allowed in a regex`. A raw
//! pattern that parses but fails only because of the wrapper (an `(?x)` pattern ending
//! in a `#` comment swallows the closing parenthesis) is retried with a trailing
//! newline, which extended mode ignores.
//! Decision: the environment is not consulted beyond what the `ignore` crate reads for
//! the global git excludes (`HOME`, `XDG_CONFIG_HOME`); there is no rg config file
//! (`--no-config`).
//! Decision: after the output cap is reached the search continues without storing
//! output, so that errors from later files are still reported (as rg would), while
//! memory stays bounded. The walk stops early when the call is abandoned (deadline).

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use grep_matcher::LineTerminator;
use grep_printer::StandardBuilder;
use grep_regex::{ErrorKind, RegexMatcher, RegexMatcherBuilder};
use grep_searcher::{BinaryDetection, SearcherBuilder};
use ignore::WalkBuilder;
use serde_json::Value;

use super::glob::CancelOnDrop;
use super::input::{Kind, opt, req, validate};
use super::{Tool, ToolContext, ToolOutput};

/// Output cap in characters (the notice says "bytes", as the reference does).
pub const OUTPUT_LIMIT: usize = 102_400;
/// Bytes of printer output kept: enough to hold more than [`OUTPUT_LIMIT`] characters
/// (≤ 4 bytes each) plus a cut multi-byte sequence.
const KEEP_BYTES: usize = 4 * OUTPUT_LIMIT + 8;

/// The `grep` tool.
pub struct GrepTool {
    ctx: Arc<ToolContext>,
}

impl GrepTool {
    pub fn new(ctx: Arc<ToolContext>) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl Tool for GrepTool {
    fn name(&self) -> &'static str {
        "grep"
    }

    async fn call(&self, input: &Value) -> ToolOutput {
        let args = match validate(
            "grep",
            input,
            &[req("pattern", Kind::Str), opt("path", Kind::Str)],
        ) {
            Ok(a) => a,
            Err(e) => return ToolOutput::err(e),
        };
        let pattern = args.str("pattern").unwrap_or_default().to_owned();
        let search = match args.str("path") {
            Some(p) if !p.is_empty() => match self.ctx.roots.resolve(p) {
                Ok(r) => r,
                Err(e) => return ToolOutput::err(format!("grep: {e}")),
            },
            _ => self.ctx.roots.root.clone(),
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let job =
            tokio::task::spawn_blocking(move || render(search_rg(&pattern, &search, &cancel)));
        match job.await {
            Ok(out) => out,
            Err(e) => ToolOutput::err(format!("grep: internal error: {e}")),
        }
    }
}

/// What an rg run produced (rg exit status 0/1 when `errors` is empty, else 2).
#[derive(Debug, Default)]
pub(crate) struct RgRun {
    /// Standard output, at most [`KEEP_BYTES`].
    pub stdout: Vec<u8>,
    /// Output was produced beyond `stdout`.
    pub overflowed: bool,
    /// At least one file matched.
    pub matched: bool,
    /// rg's error lines (without newline).
    pub errors: Vec<String>,
}

/// Build the matcher and search. Err = rg's fatal stderr message (without newline).
pub(crate) fn search_rg(
    pattern: &str,
    search: &Path,
    cancel: &AtomicBool,
) -> Result<RgRun, String> {
    let matcher = build_matcher(pattern)?;
    let mut searcher = SearcherBuilder::new()
        .line_terminator(LineTerminator::byte(b'\n'))
        .line_number(true)
        .binary_detection(BinaryDetection::quit(b'\x00'))
        .build();
    let with_path = search.is_dir();
    let mut printer = StandardBuilder::new()
        .heading(false)
        .path(with_path)
        .column(false)
        .build_no_color(CappedBuf::default());

    let mut walk = WalkBuilder::new(search);
    walk.standard_filters(true)
        .hidden(true)
        .parents(true)
        .ignore(true)
        .git_ignore(true)
        .git_global(true)
        .git_exclude(true)
        .require_git(true)
        .follow_links(false)
        .threads(1)
        .sort_by_file_name(|a, b| a.cmp(b));
    walk.add_custom_ignore_filename(".rgignore");

    let mut run = RgRun::default();
    for result in walk.build() {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let entry = match result {
            Ok(e) => e,
            Err(e) => {
                run.errors.push(walk_error_text(&e));
                continue;
            }
        };
        // Ignore-file parse problems (`entry.error()`) are warnings in rg: not exit 2.
        let file_type = entry.file_type();
        let explicit = entry.depth() == 0 && !file_type.is_some_and(|t| t.is_dir());
        if !explicit && !file_type.is_some_and(|t| t.is_file()) {
            continue;
        }
        searcher.set_binary_detection(if explicit {
            BinaryDetection::convert(b'\x00')
        } else {
            BinaryDetection::quit(b'\x00')
        });
        let path = entry.path();
        let mut sink = printer.sink_with_path(&matcher, path);
        let result = searcher.search_path(&matcher, path, &mut sink);
        run.matched |= sink.has_match();
        if let Err(e) = result {
            run.errors.push(format!("{}: {}", path.display(), e));
        }
    }
    let buf = printer.into_inner().into_inner();
    run.stdout = buf.data;
    run.overflowed = buf.overflowed;
    Ok(run)
}

/// An `ignore` walk error as rg 13 prints it: `{path}: {io error}`. The `ignore` crate
/// now wraps the `walkdir` error, whose `Display` adds `IO error for operation on
/// {path}: `; rg 13 printed only the underlying OS error.
fn walk_error_text(err: &ignore::Error) -> String {
    match err {
        ignore::Error::WithDepth { err, .. } => walk_error_text(err),
        ignore::Error::WithPath { path, err } => {
            format!("{}: {}", path.display(), walk_error_text(err))
        }
        ignore::Error::WithLineNumber { line, err } => {
            format!("line {line}: {}", walk_error_text(err))
        }
        ignore::Error::Partial(errs) => errs
            .iter()
            .map(walk_error_text)
            .collect::<Vec<_>>()
            .join("\n"),
        ignore::Error::Io(e) => {
            let inner = e.get_ref().and_then(|i| i.downcast_ref::<walkdir::Error>());
            match inner.and_then(walkdir::Error::io_error) {
                Some(io) => io.to_string(),
                None => e.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// rg 13's matcher, with its error text (see the module doc).
fn build_matcher(pattern: &str) -> Result<RegexMatcher, String> {
    let mut builder = RegexMatcherBuilder::new();
    builder
        .case_smart(false)
        .case_insensitive(false)
        .multi_line(true)
        .unicode(true)
        .octal(false)
        .line_terminator(Some(b'\n'))
        .dot_matches_new_line(false);
    let built = builder.build(pattern);
    if built.is_err() || pattern.contains(')') {
        if let Some(msg) = raw_syntax_error(pattern) {
            return Err(suggest(msg));
        }
    }
    match built {
        Ok(m) => Ok(m),
        Err(e) => {
            let msg = match e.kind() {
                ErrorKind::NotAllowed(lit) => {
                    format!("the literal '{lit:?}' is not allowed in a regex")
                }
                _ => match builder.build(&format!("{pattern}\n")) {
                    Ok(m) => return Ok(m),
                    Err(_) => e.to_string(),
                },
            };
            Err(suggest(msg))
        }
    }
}

/// The syntax error rg 13 reported for the pattern as given, if any.
fn raw_syntax_error(pattern: &str) -> Option<String> {
    // `size_limit(0)`: parse and translate only; compiling stops at once with a size
    // error, which means the syntax is fine.
    match regex::bytes::RegexBuilder::new(pattern)
        .unicode(true)
        .octal(false)
        .multi_line(true)
        .size_limit(0)
        .build()
    {
        Err(regex::Error::Syntax(s)) => Some(s),
        _ => None,
    }
}

/// rg's `suggest_multiline` then `suggest_pcre2`.
fn suggest(msg: String) -> String {
    let msg = if msg.contains("the literal") && msg.contains("not allowed") {
        format!(
            "{msg}\n\nConsider enabling multiline mode with the --multiline flag (or -U for short).\n\
             When multiline mode is enabled, new line characters can be matched."
        )
    } else {
        msg
    };
    if msg.contains("backreferences") || msg.contains("look-around") {
        format!(
            "{msg}\n\nConsider enabling PCRE2 with the --pcre2 flag, which can handle backreferences\n\
             and look-around."
        )
    } else {
        msg
    }
}

/// Turn an rg run into the tool result (§8.3 steps 3–5, divergence 4).
pub(crate) fn render(run: Result<RgRun, String>) -> ToolOutput {
    let run = match run {
        Ok(r) => r,
        Err(msg) => return ToolOutput::err(format!("grep: rg failed: {msg}\n")),
    };
    let mut text = String::from_utf8_lossy(&run.stdout).into_owned();
    if run.overflowed || text.chars().count() > OUTPUT_LIMIT {
        if let Some((cut, _)) = text.char_indices().nth(OUTPUT_LIMIT) {
            text.truncate(cut);
        }
        text.push_str(&format!("\n[output truncated at {OUTPUT_LIMIT} bytes]"));
    }
    if run.errors.is_empty() {
        return if run.matched {
            ToolOutput::ok(text)
        } else {
            ToolOutput::ok("no matches")
        };
    }
    if !run.matched {
        text.clear();
    }
    text.push_str("grep: rg failed: ");
    for e in &run.errors {
        text.push_str(e);
        text.push('\n');
    }
    ToolOutput::err(text)
}

/// Printer output kept up to [`KEEP_BYTES`]; the rest is counted as overflow.
#[derive(Default)]
struct CappedBuf {
    data: Vec<u8>,
    overflowed: bool,
}

impl io::Write for CappedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = KEEP_BYTES.saturating_sub(self.data.len());
        if buf.len() > room {
            self.overflowed = true;
        }
        self.data.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::PathBuf;

    struct Fixture {
        _dir: tempfile::TempDir,
        ws: PathBuf,
        outside: PathBuf,
        tool: GrepTool,
    }

    fn write(p: &Path, data: &[u8]) {
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(p, data).unwrap();
    }

    /// A git repository (`.git/` exists) with hidden, ignored, `node_modules` and
    /// binary files, symlinks, and a directory outside the workspace.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let ws = base.join("workspace");
        let outside = base.join("outside");
        fs::create_dir_all(ws.join(".git")).unwrap();
        write(&ws.join(".gitignore"), b"ignored.txt\n");
        write(&ws.join(".ignore"), b"ign2.txt\n");
        write(&ws.join(".rgignore"), b"ign3.txt\n");
        write(&ws.join("a.txt"), b"hello world\nbye\n");
        write(&ws.join("ignored.txt"), b"hello ignored\n");
        write(&ws.join("ign2.txt"), b"hello ign2\n");
        write(&ws.join("ign3.txt"), b"hello ign3\n");
        write(&ws.join(".hidden.txt"), b"hello hidden\n");
        write(&ws.join(".hdir/f.txt"), b"hello in hidden dir\n");
        write(&ws.join("node_modules/m.txt"), b"hello nm\n");
        write(&ws.join("bin.dat"), b"hello\0binary\n");
        write(&ws.join("sub/b.txt"), b"say hello\nHELLO upper\n");
        write(&outside.join("o.txt"), b"hello outside\n");
        symlink("a.txt", ws.join("flink")).unwrap();
        symlink("sub", ws.join("dlink")).unwrap();
        symlink(&outside, ws.join("linkout")).unwrap();
        let tool = GrepTool::new(Arc::new(ToolContext::new(&ws)));
        Fixture {
            _dir: dir,
            ws,
            outside,
            tool,
        }
    }

    impl Fixture {
        async fn call(&self, input: Value) -> ToolOutput {
            self.tool.call(&input).await
        }
        fn p(&self, rel: &str) -> String {
            format!("{}/{rel}", self.ws.display())
        }
    }

    #[tokio::test]
    async fn q1_q17_walk_filters_and_format() {
        let f = fixture();
        let expected = format!(
            "{}:1:hello world\n{}:1:hello nm\n{}:1:say hello\n",
            f.p("a.txt"),
            f.p("node_modules/m.txt"),
            f.p("sub/b.txt")
        );
        // Hidden, ignored (.gitignore, .ignore, .rgignore), binary, symlinked file and
        // symlinked directory entries are all absent.
        assert_eq!(
            f.call(json!({"pattern": "hello"})).await,
            ToolOutput::ok(expected.clone())
        );
        assert_eq!(
            f.call(json!({"pattern": "hello", "path": ""})).await,
            ToolOutput::ok(expected.clone())
        );
        assert_eq!(
            f.call(json!({"pattern": "hello", "path": null})).await,
            ToolOutput::ok(expected)
        );
    }

    #[tokio::test]
    async fn gitignore_needs_a_repository() {
        let f = fixture();
        fs::remove_dir(f.ws.join(".git")).unwrap();
        let out = f.call(json!({"pattern": "hello ignored"})).await;
        assert_eq!(
            out,
            ToolOutput::ok(format!("{}:1:hello ignored\n", f.p("ignored.txt")))
        );
        // `.ignore` and `.rgignore` apply everywhere.
        assert_eq!(
            f.call(json!({"pattern": "ign[23]"})).await,
            ToolOutput::ok("no matches")
        );
    }

    #[tokio::test]
    async fn q2_single_file_has_no_path() {
        let f = fixture();
        assert_eq!(
            f.call(json!({"pattern": "hello", "path": "a.txt"})).await,
            ToolOutput::ok("1:hello world\n")
        );
        // A symlink to a file, and a hidden / ignored file named explicitly.
        assert_eq!(
            f.call(json!({"pattern": "hello", "path": "flink"})).await,
            ToolOutput::ok("1:hello world\n")
        );
        assert_eq!(
            f.call(json!({"pattern": "hello", "path": "ignored.txt"}))
                .await,
            ToolOutput::ok("1:hello ignored\n")
        );
        // A hidden directory named explicitly is searched (its name is not filtered).
        assert_eq!(
            f.call(json!({"pattern": "hello", "path": ".hdir"})).await,
            ToolOutput::ok(format!("{}:1:hello in hidden dir\n", f.p(".hdir/f.txt")))
        );
    }

    #[tokio::test]
    async fn q3_q6_q7_q8_matching() {
        let f = fixture();
        assert_eq!(
            f.call(json!({"pattern": "nomatch_xyz"})).await,
            ToolOutput::ok("no matches")
        );
        assert_eq!(
            f.call(json!({"pattern": "(?i)HELLO", "path": "sub"})).await,
            ToolOutput::ok(format!(
                "{}:1:say hello\n{}:2:HELLO upper\n",
                f.p("sub/b.txt"),
                f.p("sub/b.txt")
            ))
        );
        assert_eq!(
            f.call(json!({"pattern": "HELLO", "path": "a.txt"})).await,
            ToolOutput::ok("no matches")
        );
        write(&f.ws.join("flags.txt"), b"use -v here\nnothing\n");
        assert_eq!(
            f.call(json!({"pattern": "-v", "path": "flags.txt"})).await,
            ToolOutput::ok("1:use -v here\n")
        );
        // `^`/`$` are per line.
        assert_eq!(
            f.call(json!({"pattern": "^bye$", "path": "a.txt"})).await,
            ToolOutput::ok("2:bye\n")
        );
        // The empty pattern matches every line.
        assert_eq!(
            f.call(json!({"pattern": "", "path": "a.txt"})).await,
            ToolOutput::ok("1:hello world\n2:bye\n")
        );
    }

    #[tokio::test]
    async fn q4_q5_q16_regex_errors() {
        let f = fixture();
        assert_eq!(
            f.call(json!({"pattern": "("})).await,
            ToolOutput::err(
                "grep: rg failed: regex parse error:\n    (\n    ^\nerror: unclosed group\n"
            )
        );
        let pcre = "\n\nConsider enabling PCRE2 with the --pcre2 flag, which can handle backreferences\nand look-around.\n";
        assert_eq!(
            f.call(json!({"pattern": "a(?=g)"})).await,
            ToolOutput::err(format!(
                "grep: rg failed: regex parse error:\n    a(?=g)\n     ^^^\nerror: look-around, including look-ahead and look-behind, is not supported{pcre}"
            ))
        );
        assert_eq!(
            f.call(json!({"pattern": "(a)\\1"})).await,
            ToolOutput::err(format!(
                "grep: rg failed: regex parse error:\n    (a)\\1\n       ^^\nerror: backreferences are not supported{pcre}"
            ))
        );
        // rg 13 parsed the pattern unwrapped: an unbalanced `)` is an error.
        assert_eq!(
            f.call(json!({"pattern": "a)(b"})).await,
            ToolOutput::err(
                "grep: rg failed: regex parse error:\n    a)(b\n     ^\nerror: unopened group\n"
            )
        );
        assert_eq!(
            f.call(json!({"pattern": "a\nb"})).await,
            ToolOutput::err(
                "grep: rg failed: the literal '\"\\n\"' is not allowed in a regex\n\n\
                 Consider enabling multiline mode with the --multiline flag (or -U for short).\n\
                 When multiline mode is enabled, new line characters can be matched.\n"
            )
        );
        // The regex error wins over a missing path, as in rg (arguments first).
        assert!(
            f.call(json!({"pattern": "(", "path": "missing"}))
                .await
                .as_text()
                .unwrap()
                .contains("unclosed group")
        );
        // Extended mode with a trailing comment works as in rg 13.
        assert_eq!(
            f.call(json!({"pattern": "(?x) bye # the word", "path": "a.txt"}))
                .await,
            ToolOutput::ok("2:bye\n")
        );
        assert_eq!(
            f.call(json!({"pattern": 1})).await,
            ToolOutput::err("ValueError('Invalid arguments for function grep')")
        );
    }

    #[tokio::test]
    async fn q9_q10_q18_paths() {
        let f = fixture();
        assert_eq!(
            f.call(json!({"pattern": "hello", "path": "missing"})).await,
            ToolOutput::err(format!(
                "grep: rg failed: {}: No such file or directory (os error 2)\n",
                f.p("missing")
            ))
        );
        assert_eq!(
            f.call(json!({"pattern": "hello", "path": "linkout"})).await,
            ToolOutput::err("grep: path 'linkout' is outside the session's working directory")
        );
        assert_eq!(
            f.call(json!({"pattern": "hello", "path": "a\u{0}"})).await,
            ToolOutput::err("grep: embedded null byte")
        );
        let mut ctx = ToolContext::new(&f.ws);
        ctx.roots.allow(&f.outside);
        let tool = GrepTool::new(Arc::new(ctx));
        let out = tool
            .call(&json!({"pattern": "hello", "path": f.outside.to_str().unwrap()}))
            .await;
        assert_eq!(
            out,
            ToolOutput::ok(format!("{}/o.txt:1:hello outside\n", f.outside.display()))
        );
    }

    #[tokio::test]
    async fn q11_q12_crlf_and_invalid_utf8() {
        let f = fixture();
        write(&f.ws.join("crlf.txt"), b"hello crlf\r\nsecond\r\n");
        assert_eq!(
            f.call(json!({"pattern": "crlf$", "path": "crlf.txt"}))
                .await,
            ToolOutput::ok("no matches")
        );
        assert_eq!(
            f.call(json!({"pattern": "hello", "path": "crlf.txt"}))
                .await,
            ToolOutput::ok("1:hello crlf\r\n")
        );
        write(&f.ws.join("latin1.txt"), b"caf\xe9 hello\n");
        assert_eq!(
            f.call(json!({"pattern": "hello", "path": "latin1.txt"}))
                .await,
            ToolOutput::ok("1:caf\u{FFFD} hello\n")
        );
        // A last line without a newline still ends with one.
        write(&f.ws.join("nonl.txt"), b"x\nhello end");
        assert_eq!(
            f.call(json!({"pattern": "end", "path": "nonl.txt"})).await,
            ToolOutput::ok("2:hello end\n")
        );
    }

    #[tokio::test]
    async fn q13_output_cap() {
        let f = fixture();
        let line = format!("hello {}\n", "é".repeat(60));
        write(&f.ws.join("big/many.txt"), line.repeat(3_000).as_bytes());
        let path = f.p("big/many.txt");
        let full: String = (1..=3_000).map(|n| format!("{path}:{n}:{line}")).collect();
        assert!(full.chars().count() > OUTPUT_LIMIT);
        let out = f.call(json!({"pattern": "hello", "path": "big"})).await;
        assert!(!out.is_error);
        let text = out.as_text().unwrap();
        let head: String = full.chars().take(OUTPUT_LIMIT).collect();
        assert_eq!(text, format!("{head}\n[output truncated at 102400 bytes]"));
        // Exactly at the limit: no notice.
        let exact = RgRun {
            stdout: "x".repeat(OUTPUT_LIMIT).into_bytes(),
            matched: true,
            ..RgRun::default()
        };
        assert_eq!(render(Ok(exact)), ToolOutput::ok("x".repeat(OUTPUT_LIMIT)));
    }

    #[tokio::test]
    async fn q14_explicit_binary_file() {
        let f = fixture();
        assert_eq!(
            f.call(json!({"pattern": "hello", "path": "bin.dat"})).await,
            ToolOutput::ok("binary file matches (found \"\\0\" byte around offset 5)\n")
        );
        assert_eq!(
            f.call(json!({"pattern": "nothere", "path": "bin.dat"}))
                .await,
            ToolOutput::ok("no matches")
        );
    }

    #[tokio::test]
    async fn q15_unreadable_file_among_matches() {
        let f = fixture();
        let locked = f.ws.join("sub/locked.txt");
        write(&locked, b"hello locked\n");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        let out = f.call(json!({"pattern": "hello", "path": "sub"})).await;
        let text = out.as_text().unwrap().to_owned();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o644)).unwrap();
        let euid = unsafe { libc::geteuid() };
        if euid == 0 {
            // Root reads mode-000 files: the file simply matches.
            assert!(!out.is_error);
            assert_eq!(
                text,
                format!(
                    "{}:1:say hello\n{}:1:hello locked\n",
                    f.p("sub/b.txt"),
                    f.p("sub/locked.txt")
                )
            );
        } else {
            // Divergence 4: matches, then rg's error line.
            assert!(out.is_error);
            assert_eq!(
                text,
                format!(
                    "{}:1:say hello\ngrep: rg failed: {}: Permission denied (os error 13)\n",
                    f.p("sub/b.txt"),
                    f.p("sub/locked.txt")
                )
            );
        }
    }

    #[test]
    fn q15_render_partial_errors() {
        // Divergence 4, independent of the runner's privileges.
        let run = RgRun {
            stdout: b"/w/a.txt:1:hello\n".to_vec(),
            matched: true,
            errors: vec![
                "/w/x: Permission denied (os error 13)".into(),
                "/w/d: Permission denied (os error 13)".into(),
            ],
            ..RgRun::default()
        };
        assert_eq!(
            render(Ok(run)),
            ToolOutput::err(
                "/w/a.txt:1:hello\ngrep: rg failed: /w/x: Permission denied (os error 13)\n\
                 /w/d: Permission denied (os error 13)\n"
            )
        );
        // Without matches: exactly the reference's text.
        let run = RgRun {
            errors: vec!["/w/x: Permission denied (os error 13)".into()],
            ..RgRun::default()
        };
        assert_eq!(
            render(Ok(run)),
            ToolOutput::err("grep: rg failed: /w/x: Permission denied (os error 13)\n")
        );
    }

    #[tokio::test]
    async fn q17_links_not_followed_inside_the_walk() {
        let f = fixture();
        let out = f.call(json!({"pattern": "hello"})).await;
        let text = out.as_text().unwrap();
        assert!(!text.contains("flink") && !text.contains("dlink") && !text.contains("outside"));
        // Also a link aimed outside the workspace is never read.
        assert!(!text.contains("o.txt"));
    }

    #[test]
    fn cancelled_search_stops() {
        let f = fixture();
        let cancel = AtomicBool::new(true);
        let run = search_rg("hello", &f.ws, &cancel).unwrap();
        assert!(!run.matched && run.errors.is_empty());
    }
}
