//! The `glob` tool (tools spec §7, §13.5): Python 3.13 `pathlib.Path.glob` semantics.
//!
//! Input `pattern` (required) and `path` (optional; absent, `null` or `""` = the workdir).
//! Checks, in the reference's order: an absolute pattern and a `..` component are
//! refused; `path` is resolved with the common confinement rules (§2.5, failure ⇒
//! `glob: <message>`); a pattern with no component left (empty, `.`, `./`) is
//! `glob: Unacceptable pattern: {pattern!r}`.
//!
//! Matching mirrors CPython 3.13's `glob._Globber` selectors component by component:
//! - the pattern is split on `/`; empty and `.` components are dropped; a trailing `/`
//!   keeps only directories (following symlinks) and is not printed;
//! - `**` (a whole component; runs of them collapse) is zero or more directory levels.
//!   Its walk never descends into symlinked directories (`_no_recurse_symlinks`). As the
//!   final component it yields the starting directory itself plus every entry below it
//!   (files and directories, the 3.13 behaviour);
//! - a component without `*`, `?`, `[` is a literal: joined without listing the
//!   directory, so it follows a symlinked directory; a final literal must `lstat`;
//! - any other component is an fnmatch pattern matched against each directory entry
//!   name (a dot-name matches `*`; case-sensitive; no braces; no backslash escapes; an
//!   unclosed `[` is a literal `[`; `a**` is `a*`). A non-final wildcard component keeps
//!   entries that are directories after following symlinks.
//!
//! Per-component matching uses `glob::Pattern` (`case_sensitive`,
//! `require_literal_separator`, no literal leading dot). The component is first rewritten
//! so that the crate sees exactly what CPython's `fnmatch._translate` would mean: runs of
//! `*` collapse to one (the crate rejects `**` inside a component) and a `[` that
//! CPython would not close becomes `[[]` (a literal `[`; the crate would reject the
//! whole component). Bracket expressions CPython closes are passed through unchanged:
//! both find the same closing `]`, treat a leading `!` as negation, a `]` right after
//! `[`/`[!` as a member, and `-` ranges identically (reversed ranges match nothing).
//! `glob::Pattern` has no escape character, so `\` is an ordinary character, as in
//! Python.
//!
//! At most [`MATCH_CAP`] (50 000) matches are collected in walk order. Each is then
//! dropped unless its canonical path (every symlink resolved, §2.5's resolver) is the
//! search root or inside it; matches that cannot be canonicalised (loops) are dropped.
//! The rest are sorted newest modification time first (following symlinks; unreadable
//! ⇒ 0) and the first [`RESULT_LIMIT`] (200) printed as absolute paths — the canonical
//! search root joined with the path as matched (so `linksrc/a/y.py` keeps the link
//! name, while a `path` that is itself a symlink is replaced by its target) — joined
//! with `\n`, no trailing newline, no truncation notice. None ⇒ `no matches`. A
//! missing search root, or one that is a file, simply matches nothing.
//!
//! Decision: ties in modification time are broken by path (byte order) so the output
//! is deterministic (spec [rec]; the reference keeps walk order).
//! Decision: an empty or `.`-only pattern is `glob: Unacceptable pattern: {pattern!r}`
//! with the pattern as sent (spec [rec]; 3.13 would print `PosixPath('.')`).
//! Decision: duplicates are kept, as `pathlib` yields them (e.g. `**/*/**/x`).
//! Decision: a literal component containing NUL fails with `glob: embedded null byte`
//! when it is reached (CPython's `lstat`/`scandir` raise `ValueError` there).
//! Decision: file names that are not UTF-8 are matched and printed with one U+FFFD per
//! undecodable byte (Python's `surrogateescape` followed by the runner's replacement
//! of lone surrogates).
//! Memory stays bounded: the last component's directory listing is streamed, only
//! matching sub-directories of one directory are held while descending, and collection
//! stops at the cap. The walk runs on the blocking pool and stops early when the call
//! is abandoned (runner deadline).

use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::UNIX_EPOCH;

use glob::{MatchOptions, Pattern};
use serde_json::Value;

use super::input::{Kind, opt, req, validate};
use super::paths::canonicalize_following;
use super::pyrepr::py_repr;
use super::{Tool, ToolContext, ToolOutput};

/// Results printed (after sorting).
pub const RESULT_LIMIT: usize = 200;
/// Matches collected before the post-filter and the sort.
pub const MATCH_CAP: usize = 50_000;

const MATCH_OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// The `glob` tool.
pub struct GlobTool {
    ctx: Arc<ToolContext>,
}

impl GlobTool {
    pub fn new(ctx: Arc<ToolContext>) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl Tool for GlobTool {
    fn name(&self) -> &'static str {
        "glob"
    }

    async fn call(&self, input: &Value) -> ToolOutput {
        let args = match validate(
            "glob",
            input,
            &[req("pattern", Kind::Str), opt("path", Kind::Str)],
        ) {
            Ok(a) => a,
            Err(e) => return ToolOutput::err(e),
        };
        let pattern = args.str("pattern").unwrap_or_default().to_owned();
        if pattern.starts_with('/') {
            return ToolOutput::err(
                "glob: absolute pattern not permitted; pass a relative pattern (and optionally path)",
            );
        }
        if pattern.split('/').any(|c| c == "..") {
            return ToolOutput::err("glob: '..' is not permitted in the pattern");
        }
        let root = match args.str("path") {
            Some(p) if !p.is_empty() => match self.ctx.roots.resolve(p) {
                Ok(r) => r,
                Err(e) => return ToolOutput::err(format!("glob: {e}")),
            },
            _ => self.ctx.roots.root.clone(),
        };
        let Some(comps) = compile(&pattern) else {
            return ToolOutput::err(format!("glob: Unacceptable pattern: {}", py_repr(&pattern)));
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let job = tokio::task::spawn_blocking(move || run(&root, &comps, MATCH_CAP, &cancel));
        match job.await {
            Ok(Ok(text)) => ToolOutput::ok(text),
            Ok(Err(msg)) => ToolOutput::err(format!("glob: {msg}")),
            Err(e) => ToolOutput::err(format!("glob: internal error: {e}")),
        }
    }
}

/// Sets the flag when the owning call future is dropped (deadline), so the blocking
/// walk stops instead of running on unobserved.
pub(crate) struct CancelOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One pattern component.
#[derive(Debug)]
pub(crate) enum Comp {
    /// `**`: zero or more directories, symlinked directories not entered.
    Recursive,
    /// A component without wildcards.
    Literal(String),
    /// An fnmatch component.
    Wild(Pattern),
    /// The trailing `/`: the path must be a directory (following symlinks).
    Dir,
}

/// Split and classify the pattern; `None` when no component remains (unacceptable).
pub(crate) fn compile(pattern: &str) -> Option<Vec<Comp>> {
    let mut comps = Vec::new();
    for part in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if part == "**" {
            if !matches!(comps.last(), Some(Comp::Recursive)) {
                comps.push(Comp::Recursive);
            }
        } else if part.contains(['*', '?', '[']) {
            comps.push(Comp::Wild(component_pattern(part)));
        } else {
            comps.push(Comp::Literal(part.to_owned()));
        }
    }
    if comps.is_empty() {
        return None;
    }
    if pattern.ends_with('/') {
        comps.push(Comp::Dir);
    }
    Some(comps)
}

/// Rewrite one fnmatch component for `glob::Pattern` (see the module doc).
fn fnmatch_to_glob(part: &str) -> String {
    let chars: Vec<char> = part.chars().collect();
    let n = chars.len();
    let mut out = String::with_capacity(part.len() + 4);
    let mut i = 0;
    while i < n {
        let c = chars[i];
        i += 1;
        match c {
            // Outside brackets the output only ends with `*` when the last token was a
            // star (a bracket expression ends with `]`).
            '*' if out.ends_with('*') => {}
            '[' => {
                // CPython fnmatch: optional `!`, optional leading `]`, then up to `]`.
                let mut j = i;
                if j < n && chars[j] == '!' {
                    j += 1;
                }
                if j < n && chars[j] == ']' {
                    j += 1;
                }
                while j < n && chars[j] != ']' {
                    j += 1;
                }
                if j >= n {
                    out.push_str("[[]");
                } else {
                    out.extend(&chars[i - 1..=j]);
                    i = j + 1;
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn component_pattern(part: &str) -> Pattern {
    Pattern::new(&fnmatch_to_glob(part)).unwrap_or_else(|_| {
        // Not expected after the rewrite; fall back to matching the text literally.
        Pattern::new(&Pattern::escape(part)).expect("escaped pattern compiles")
    })
}

/// A match: the path relative to the search root, and whether it was reached only
/// through real directories and is not itself a symlink (then its canonical path is
/// known to be root/rel and needs no `realpath`).
struct Found {
    rel: PathBuf,
    clean: bool,
}

struct Walker<'a> {
    root: &'a Path,
    comps: &'a [Comp],
    cap: usize,
    cancel: &'a AtomicBool,
    found: Vec<Found>,
    error: Option<String>,
    done: bool,
}

impl Walker<'_> {
    fn full(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(rel)
        }
    }

    fn stop_requested(&mut self) -> bool {
        if self.cancel.load(Ordering::Relaxed) {
            self.done = true;
        }
        self.done
    }

    fn emit(&mut self, rel: PathBuf, clean: bool) {
        self.found.push(Found { rel, clean });
        if self.found.len() >= self.cap {
            self.done = true;
        }
    }

    /// Apply `comps[idx..]` to `rel`; `exists` = known to exist (came from a listing).
    fn select(&mut self, idx: usize, rel: PathBuf, exists: bool, clean: bool) {
        if self.stop_requested() {
            return;
        }
        let Some(comp) = self.comps.get(idx) else {
            if exists || fs::symlink_metadata(self.full(&rel)).is_ok() {
                self.emit(rel, clean);
            }
            return;
        };
        match comp {
            Comp::Literal(name) => {
                if name.contains('\0') {
                    self.error = Some("embedded null byte".into());
                    self.done = true;
                    return;
                }
                let child = rel.join(name);
                let clean = clean && is_real_entry(&self.full(&child));
                self.select(idx + 1, child, false, clean);
            }
            Comp::Dir => {
                if exists || is_dir_following(&self.full(&rel)) {
                    self.emit(rel, clean);
                }
            }
            Comp::Wild(pat) => self.wildcard(idx, pat, rel, clean),
            Comp::Recursive => self.recursive(idx, rel, exists, clean),
        }
    }

    fn wildcard(&mut self, idx: usize, pat: &Pattern, rel: PathBuf, clean: bool) {
        let dir_only = idx + 1 < self.comps.len();
        let Ok(listing) = fs::read_dir(self.full(&rel)) else {
            return;
        };
        if !dir_only {
            for entry in listing.flatten() {
                let name = entry.file_name();
                if !pat.matches_with(&lossy_per_byte(name.as_bytes()), MATCH_OPTIONS) {
                    continue;
                }
                let link = entry.file_type().map_or(true, |t| t.is_symlink());
                self.emit(rel.join(&name), clean && !link);
                if self.stop_requested() {
                    return;
                }
            }
            return;
        }
        // Hold only the matching sub-directories, and close the listing before descending.
        let mut dirs = Vec::new();
        for entry in listing.flatten() {
            let name = entry.file_name();
            if !pat.matches_with(&lossy_per_byte(name.as_bytes()), MATCH_OPTIONS) {
                continue;
            }
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_symlink() {
                if is_dir_following(&entry.path()) {
                    dirs.push((name, true));
                }
            } else if ft.is_dir() {
                dirs.push((name, false));
            }
        }
        for (name, link) in dirs {
            self.select(idx + 1, rel.join(name), true, clean && !link);
            if self.stop_requested() {
                return;
            }
        }
    }

    fn recursive(&mut self, idx: usize, rel: PathBuf, exists: bool, clean: bool) {
        let dir_only = idx + 1 < self.comps.len();
        // The starting directory itself (zero levels).
        if dir_only {
            self.select(idx + 1, rel.clone(), exists, clean);
        } else if exists || is_dir_following(&self.full(&rel)) {
            self.emit(rel.clone(), clean);
        }
        let mut stack = vec![rel];
        while let Some(dir) = stack.pop() {
            if self.stop_requested() {
                return;
            }
            let Ok(listing) = fs::read_dir(self.full(&dir)) else {
                continue;
            };
            if dir_only {
                let subdirs: Vec<PathBuf> = listing
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| dir.join(e.file_name()))
                    .collect();
                for sub in subdirs {
                    // Only real directories are walked: `clean` is unchanged.
                    self.select(idx + 1, sub.clone(), true, clean);
                    if self.stop_requested() {
                        return;
                    }
                    stack.push(sub);
                }
            } else {
                for entry in listing.flatten() {
                    let ft = entry.file_type().ok();
                    let child = dir.join(entry.file_name());
                    let link = ft.is_none_or(|t| t.is_symlink());
                    self.emit(child.clone(), clean && !link);
                    if self.stop_requested() {
                        return;
                    }
                    if ft.is_some_and(|t| t.is_dir()) {
                        stack.push(child);
                    }
                }
            }
        }
    }
}

fn is_dir_following(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_dir())
}

fn is_real_entry(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| !m.file_type().is_symlink())
}

/// Collect at most `cap` matches of `comps` under `root` (walk order, before the
/// post-filter). Err = the message after `glob: `.
fn collect(
    root: &Path,
    comps: &[Comp],
    cap: usize,
    cancel: &AtomicBool,
) -> Result<Vec<Found>, String> {
    let mut w = Walker {
        root,
        comps,
        cap,
        cancel,
        found: Vec::new(),
        error: None,
        done: false,
    };
    w.select(0, PathBuf::new(), false, true);
    match w.error {
        Some(e) => Err(e),
        None => Ok(w.found),
    }
}

/// The whole search: collect, confine, sort, print. Err = the message after `glob: `.
pub(crate) fn run(
    root: &Path,
    comps: &[Comp],
    cap: usize,
    cancel: &AtomicBool,
) -> Result<String, String> {
    let found = collect(root, comps, cap, cancel)?;
    let mut keyed: Vec<(i128, Vec<u8>)> = Vec::with_capacity(found.len());
    for f in found {
        let full = if f.rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(&f.rel)
        };
        if !f.clean {
            match canonicalize_following(&full) {
                Ok(c) if c.starts_with(root) => {}
                _ => continue,
            }
        }
        keyed.push((mtime_ns(&full), full.into_os_string().into_vec()));
    }
    if keyed.is_empty() {
        return Ok("no matches".to_owned());
    }
    keyed.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    keyed.truncate(RESULT_LIMIT);
    let lines: Vec<String> = keyed.iter().map(|(_, p)| lossy_per_byte(p)).collect();
    Ok(lines.join("\n"))
}

/// Modification time in nanoseconds since the epoch, following symlinks; 0 if unreadable.
fn mtime_ns(p: &Path) -> i128 {
    let Ok(t) = fs::metadata(p).and_then(|m| m.modified()) else {
        return 0;
    };
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// UTF-8 decode with one U+FFFD per undecodable byte.
pub(crate) fn lossy_per_byte(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(after.len());
                out.extend(std::iter::repeat_n('\u{FFFD}', bad));
                rest = &after[bad..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filetime::{FileTime, set_file_mtime};
    use serde_json::json;
    use std::collections::BTreeSet;
    use std::ffi::OsStr;
    use std::os::unix::fs::symlink;

    struct Fixture {
        _dir: tempfile::TempDir,
        ws: PathBuf,
        tool: GlobTool,
    }

    /// The §7.3 example tree, plus `sub/`, loop links and an outside directory.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let ws = base.join("workspace");
        let outside = base.join("outside");
        for d in ["src/a/b", ".hidden", ".git", "node_modules/pkg", "sub"] {
            fs::create_dir_all(ws.join(d)).unwrap();
        }
        fs::create_dir_all(&outside).unwrap();
        for f in [
            "src/x.py",
            "src/a/y.py",
            "src/a/b/z.py",
            ".hidden/h.py",
            ".git/g.py",
            "node_modules/pkg/n.py",
            "top.py",
            ".dot.py",
        ] {
            fs::write(ws.join(f), "x").unwrap();
        }
        fs::write(outside.join("o.py"), "o").unwrap();
        symlink("src", ws.join("linksrc")).unwrap();
        symlink(&outside, ws.join("linkout")).unwrap();
        symlink("loop2", ws.join("loop1")).unwrap();
        symlink("loop1", ws.join("loop2")).unwrap();
        let tool = GlobTool::new(Arc::new(ToolContext::new(&ws)));
        Fixture {
            _dir: dir,
            ws,
            tool,
        }
    }

    impl Fixture {
        async fn call(&self, input: Value) -> ToolOutput {
            self.tool.call(&input).await
        }

        async fn ok(&self, input: Value) -> String {
            let out = self.call(input).await;
            assert!(!out.is_error, "{out:?}");
            out.as_text().unwrap().to_owned()
        }

        /// The result as a set of paths relative to the workspace ("" = the root).
        async fn set(&self, input: Value) -> BTreeSet<String> {
            let text = self.ok(input).await;
            assert_ne!(text, "no matches");
            let ws = self.ws.to_str().unwrap();
            text.split('\n')
                .map(|l| {
                    let rest = l
                        .strip_prefix(ws)
                        .unwrap_or_else(|| panic!("{l} not under {ws}"));
                    rest.trim_start_matches('/').to_owned()
                })
                .collect()
        }
    }

    fn set_of(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn g1_recursive_py_searches_everything_but_links() {
        let f = fixture();
        assert_eq!(
            f.set(json!({"pattern": "**/*.py"})).await,
            set_of(&[
                ".dot.py",
                "top.py",
                ".git/g.py",
                "node_modules/pkg/n.py",
                ".hidden/h.py",
                "src/x.py",
                "src/a/y.py",
                "src/a/b/z.py"
            ])
        );
        assert_eq!(
            f.set(json!({"pattern": "*.py"})).await,
            set_of(&[".dot.py", "top.py"])
        );
        assert_eq!(
            f.set(json!({"pattern": "src/**/*.py"})).await,
            set_of(&["src/x.py", "src/a/y.py", "src/a/b/z.py"])
        );
        // A literal component follows the symlinked directory; `**` below it walks it.
        assert_eq!(
            f.set(json!({"pattern": "linksrc/**/*.py"})).await,
            set_of(&["linksrc/x.py", "linksrc/a/y.py", "linksrc/a/b/z.py"])
        );
        // A wildcard component follows it too; `**` does not.
        assert_eq!(
            f.set(json!({"pattern": "*/x.py"})).await,
            set_of(&["src/x.py", "linksrc/x.py"])
        );
        assert_eq!(
            f.set(json!({"pattern": "**/x.py"})).await,
            set_of(&["src/x.py"])
        );
        // Empty and `.` components are ignored.
        assert_eq!(
            f.set(json!({"pattern": "./src//x.py"})).await,
            set_of(&["src/x.py"])
        );
        assert_eq!(
            f.set(json!({"pattern": "src/*"})).await,
            set_of(&["src/a", "src/x.py"])
        );
        assert_eq!(
            f.set(json!({"pattern": "top.py"})).await,
            set_of(&["top.py"])
        );
        assert_eq!(
            f.set(json!({"pattern": "src", "path": null})).await,
            set_of(&["src"])
        );
    }

    #[tokio::test]
    async fn g2_star_includes_dot_entries_and_dirs_not_bad_links() {
        let f = fixture();
        assert_eq!(
            f.set(json!({"pattern": "*"})).await,
            set_of(&[
                "sub",
                ".dot.py",
                "top.py",
                ".git",
                ".hidden",
                "src",
                "linksrc",
                "node_modules"
            ])
        );
        // `a**` is `a*` (3.13); `***` is `*`.
        assert_eq!(
            f.set(json!({"pattern": "s**"})).await,
            set_of(&["src", "sub"])
        );
        assert_eq!(
            f.set(json!({"pattern": "src/***"})).await,
            set_of(&["src/a", "src/x.py"])
        );
    }

    #[tokio::test]
    async fn g3_newest_first_ties_by_path() {
        let f = fixture();
        let d = f.ws.join("ord");
        fs::create_dir(&d).unwrap();
        for (name, secs) in [
            ("a.txt", 1_000),
            ("b.txt", 3_000),
            ("c.txt", 2_000),
            ("d.txt", 2_000),
        ] {
            fs::write(d.join(name), "x").unwrap();
            set_file_mtime(d.join(name), FileTime::from_unix_time(secs, 0)).unwrap();
        }
        // Ordering follows the symlink's target.
        symlink("a.txt", d.join("e.txt")).unwrap();
        let text = f.ok(json!({"pattern": "ord/*.txt"})).await;
        let p = |n: &str| format!("{}/{n}", d.display());
        assert_eq!(
            text,
            [p("b.txt"), p("c.txt"), p("d.txt"), p("a.txt"), p("e.txt")].join("\n")
        );
    }

    #[tokio::test]
    async fn g4_250_matches_give_200_lines_no_notice() {
        let f = fixture();
        let d = f.ws.join("many");
        fs::create_dir(&d).unwrap();
        for i in 0..250 {
            let p = d.join(format!("f{i:03}"));
            fs::write(&p, "").unwrap();
            set_file_mtime(&p, FileTime::from_unix_time(1_000_000 + i, 0)).unwrap();
        }
        let text = f.ok(json!({"pattern": "many/*"})).await;
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines.len(), 200);
        assert_eq!(lines[0], format!("{}/f249", d.display()));
        assert_eq!(lines[199], format!("{}/f050", d.display()));
        assert!(!text.ends_with('\n'));
    }

    #[tokio::test]
    async fn g5_g8_g9_g10_g18_no_matches() {
        let f = fixture();
        for pattern in [
            "nomatch*",
            "[.][.]/*",
            "*.PY",
            "src/{a,b}/*.py",
            "[",
            "linkout/*",
            "loop1/*",
        ] {
            let out = f.call(json!({ "pattern": pattern })).await;
            assert_eq!(out, ToolOutput::ok("no matches"), "{pattern}");
        }
    }

    #[tokio::test]
    async fn g6_g7_g17_pattern_errors() {
        let f = fixture();
        let abs =
            "glob: absolute pattern not permitted; pass a relative pattern (and optionally path)";
        assert_eq!(
            f.call(json!({"pattern": "/tmp/*"})).await,
            ToolOutput::err(abs)
        );
        let dotdot = "glob: '..' is not permitted in the pattern";
        for pattern in ["../*", "src/../*", "a/.."] {
            assert_eq!(
                f.call(json!({ "pattern": pattern })).await,
                ToolOutput::err(dotdot)
            );
        }
        assert_eq!(
            f.call(json!({"pattern": ""})).await,
            ToolOutput::err("glob: Unacceptable pattern: ''")
        );
        assert_eq!(
            f.call(json!({"pattern": "."})).await,
            ToolOutput::err("glob: Unacceptable pattern: '.'")
        );
        assert_eq!(
            f.call(json!({"pattern": "./"})).await,
            ToolOutput::err("glob: Unacceptable pattern: './'")
        );
        // Path errors come before the unacceptable-pattern check, as in the reference.
        assert_eq!(
            f.call(json!({"pattern": "", "path": "/etc"})).await,
            ToolOutput::err("glob: path '/etc' is outside the session's working directory")
        );
        assert_eq!(
            f.call(json!({"pattern": "a\u{0}b"})).await,
            ToolOutput::err("glob: embedded null byte")
        );
        assert_eq!(
            f.call(json!({"pattern": 5})).await,
            ToolOutput::err("ValueError('Invalid arguments for function glob')")
        );
        assert_eq!(
            f.call(json!({"pattern": "*", "glob": "x"})).await,
            ToolOutput::err("ValueError('Invalid arguments for function glob')")
        );
    }

    #[tokio::test]
    async fn g11_trailing_slash_dirs_only() {
        let f = fixture();
        let text = f.ok(json!({"pattern": "*/"})).await;
        assert!(text.split('\n').all(|l| !l.ends_with('/')));
        assert_eq!(
            f.set(json!({"pattern": "*/"})).await,
            set_of(&[".git", ".hidden", "node_modules", "src", "sub", "linksrc"])
        );
        assert_eq!(
            f.set(json!({"pattern": "src/**/"})).await,
            set_of(&["src", "src/a", "src/a/b"])
        );
        assert_eq!(f.set(json!({"pattern": "src/"})).await, set_of(&["src"]));
        assert_eq!(
            f.call(json!({"pattern": "top.py/"})).await,
            ToolOutput::ok("no matches")
        );
    }

    #[tokio::test]
    async fn g12_final_double_star_is_everything_plus_root() {
        let f = fixture();
        assert_eq!(
            f.set(json!({"pattern": "src/**"})).await,
            set_of(&[
                "src",
                "src/x.py",
                "src/a",
                "src/a/y.py",
                "src/a/b",
                "src/a/b/z.py"
            ])
        );
        let all = f.set(json!({"pattern": "**"})).await;
        assert!(all.contains("") && all.contains("linksrc") && all.contains(".git/g.py"));
        assert!(
            !all.contains("linksrc/x.py") && !all.contains("linkout") && !all.contains("loop1")
        );
        assert_eq!(
            f.set(json!({"pattern": "**/**/top.py"})).await,
            set_of(&["top.py"])
        );
    }

    #[tokio::test]
    async fn g13_g14_g15_g16_paths() {
        let f = fixture();
        assert_eq!(
            f.call(json!({"pattern": "linkout/*"})).await,
            ToolOutput::ok("no matches")
        );
        assert_eq!(
            f.call(json!({"pattern": "*", "path": "linkout"})).await,
            ToolOutput::err("glob: path 'linkout' is outside the session's working directory")
        );
        for path in ["missing", "top.py"] {
            for pattern in ["*", "**", "x.py", "**/*.py"] {
                assert_eq!(
                    f.call(json!({ "pattern": pattern, "path": path })).await,
                    ToolOutput::ok("no matches"),
                    "{path} {pattern}"
                );
            }
        }
        assert_eq!(
            f.ok(json!({"pattern": "*.py", "path": "src"})).await,
            format!("{}/src/x.py", f.ws.display())
        );
        // A `path` that is a symlink is replaced by its target.
        assert_eq!(
            f.ok(json!({"pattern": "*.py", "path": "linksrc"})).await,
            format!("{}/src/x.py", f.ws.display())
        );
        // `""` and null mean the workdir.
        assert_eq!(
            f.set(json!({"pattern": "top.py", "path": ""})).await,
            set_of(&["top.py"])
        );
    }

    #[test]
    fn g18_fnmatch_components_like_cpython() {
        let m = |pat: &str, name: &str| component_pattern(pat).matches_with(name, MATCH_OPTIONS);
        // Unclosed `[` is a literal `[`, the rest stays a pattern.
        assert!(m("[", "["));
        assert!(m("[*", "[abc") && !m("[*", "abc"));
        assert!(m("*[", "ab[") && !m("*[", "ab"));
        assert!(m("[!]*", "[!]x") && !m("[!]*", "x"));
        assert!(m("[]", "[]"));
        // Bracket expressions.
        assert!(m("[]]", "]") && !m("[]]", "a"));
        assert!(m("[!]]", "a") && !m("[!]]", "]"));
        assert!(m("[a-c]x", "bx") && !m("[a-c]x", "dx"));
        assert!(m("[!a-c]", "d") && !m("[!a-c]", "b"));
        assert!(m("[a-]", "-") && m("[a-]", "a"));
        assert!(!m("[c-a]", "a") && !m("[c-a]", "b") && !m("[c-a]", "c"));
        assert!(m("[^a]", "^"));
        // No escapes, no braces, case-sensitive, dot-names match `*` and `?`.
        assert!(m("\\*", "\\x") && !m("\\*", "*"));
        assert!(m("{a,b}", "{a,b}") && !m("{a,b}", "a"));
        assert!(!m("*.PY", "x.py"));
        assert!(m("*", ".dot") && m("?dot", ".dot"));
        assert!(m("a**b", "axyzb") && m("***", "x"));
        // Through the tool: a file named `[ab` is found by the pattern `[ab`.
        assert_eq!(fnmatch_to_glob("[ab"), "[[]ab");
        assert_eq!(fnmatch_to_glob("a***[!x]*"), "a*[!x]*");
    }

    #[tokio::test]
    async fn g19_bounded_collection_and_output() {
        // Scaled down (creating 60 000 files takes several seconds): 3 000 files with a
        // collection cap of 1 000 prove that collection stops at the cap; the tool run
        // proves the 200-line output limit.
        let f = fixture();
        let d = f.ws.join("big");
        fs::create_dir(&d).unwrap();
        for i in 0..3_000 {
            fs::File::create(d.join(format!("f{i}"))).unwrap();
        }
        let comps = compile("big/*").unwrap();
        let cancel = AtomicBool::new(false);
        assert_eq!(collect(&f.ws, &comps, 1_000, &cancel).unwrap().len(), 1_000);
        let comps = compile("**").unwrap();
        assert_eq!(collect(&f.ws, &comps, 1_000, &cancel).unwrap().len(), 1_000);
        assert_eq!(
            run(&f.ws, &compile("big/*").unwrap(), 1_000, &cancel)
                .unwrap()
                .split('\n')
                .count(),
            200
        );
        let text = f.ok(json!({"pattern": "**/f*"})).await;
        assert_eq!(text.split('\n').count(), 200);
        assert_eq!(MATCH_CAP, 50_000);
        // An abandoned call stops the walk.
        cancel.store(true, Ordering::Relaxed);
        assert!(
            collect(&f.ws, &compile("**").unwrap(), 1_000, &cancel)
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn odd_names_and_dangling_links() {
        let f = fixture();
        fs::write(f.ws.join("[ab"), "").unwrap();
        assert_eq!(f.set(json!({"pattern": "[ab"})).await, set_of(&["[ab"]));
        fs::write(f.ws.join(OsStr::from_bytes(b"bad\xe2\x82.bin")), "").unwrap();
        assert_eq!(
            f.set(json!({"pattern": "bad*.bin"})).await,
            set_of(&["bad\u{FFFD}\u{FFFD}.bin"])
        );
        assert_eq!(
            f.set(json!({"pattern": "bad??.bin"})).await,
            set_of(&["bad\u{FFFD}\u{FFFD}.bin"])
        );
        // A dangling link aimed inside is kept (its target is inside), one aimed
        // outside is dropped.
        symlink("nowhere", f.ws.join("dang_in")).unwrap();
        symlink("/nonexistent/x", f.ws.join("dang_out")).unwrap();
        assert_eq!(
            f.set(json!({"pattern": "dang*"})).await,
            set_of(&["dang_in"])
        );
    }

    #[test]
    fn lossy_per_byte_replaces_each_byte() {
        assert_eq!(lossy_per_byte(b"a\xe2\x82b"), "a\u{FFFD}\u{FFFD}b");
        assert_eq!(lossy_per_byte(b"\xff"), "\u{FFFD}");
        assert_eq!(lossy_per_byte("ü".as_bytes()), "ü");
    }
}
