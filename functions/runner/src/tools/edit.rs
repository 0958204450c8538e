//! `edit` (tools spec §6): replace an exact substring of a UTF-8 text file.
//!
//! Order of checks (§6.2): input validation (§2.1) → empty `old_string` (see below) →
//! path resolution (§2.5, `edit: <message>`) → read-only roots (`edit: {file_path} is
//! inside read-only directory {root}`) → `stat` following symlinks (`edit: {file_path}:
//! {reason}`; not a regular file ⇒ `edit: {file_path}: not a regular file`, decided
//! without opening) → size cap (`max_file_bytes`) → strict UTF-8 → count the
//! non-overlapping occurrences left to right (`str::matches`, identical to Python's
//! `str.count`) → 0 ⇒ `edit: old_string not found in {file_path}`; more than one without
//! `replace_all` ⇒ `edit: old_string appears {count} times in {file_path} (must be
//! unique)` → replace (all, or the first: `str::replace` / `str::replacen(…, 1)`, no
//! `$1`/`\1` expansion) → write back → `edited {file_path} ({k} replacement(s))`.
//! No diff or snippet is returned; line endings are not normalised.
//!
//! Divergence 3 (decided by the project): an empty `old_string` is rejected with
//! `edit: old_string is required` (the TS/Go reference guard) instead of Python's
//! `len+1` matches. Decision: like the TS reference, the guard runs right after input
//! validation, before path resolution — so it wins over every path or file error.
//!
//! Decision: the write-back uses the same atomic write as `write`
//! ([`super::write::atomic_write`]: temp file, fsync, rename, permission bits
//! preserved) instead of the reference's in-place rewrite; its OS errors are
//! `edit: {file_path}: {reason}`.

use std::fs;
use std::io::{self, Read};
use std::sync::Arc;

use serde_json::Value;

use super::input::{Kind, Param, opt, req, validate};
use super::read::open_regular;
use super::write::atomic_write;
use super::{Tool, ToolContext, ToolOutput, fserr};

const PARAMS: &[Param] = &[
    req("file_path", Kind::Str),
    req("old_string", Kind::Str),
    req("new_string", Kind::Str),
    opt("replace_all", Kind::Bool),
];

/// The `edit` tool.
pub struct EditTool {
    ctx: Arc<ToolContext>,
}

impl EditTool {
    pub fn new(ctx: Arc<ToolContext>) -> Self {
        Self { ctx }
    }
}

struct Request {
    file_path: String,
    old: String,
    new: String,
    replace_all: bool,
}

#[async_trait::async_trait]
impl Tool for EditTool {
    fn name(&self) -> &'static str {
        "edit"
    }

    async fn call(&self, input: &Value) -> ToolOutput {
        let args = match validate("edit", input, PARAMS) {
            Ok(a) => a,
            Err(e) => return ToolOutput::err(e),
        };
        let req = Request {
            file_path: args.str("file_path").unwrap_or_default().to_owned(),
            old: args.str("old_string").unwrap_or_default().to_owned(),
            new: args.str("new_string").unwrap_or_default().to_owned(),
            replace_all: args.bool("replace_all").unwrap_or(false),
        };
        if req.old.is_empty() {
            return ToolOutput::err("edit: old_string is required");
        }
        let ctx = Arc::clone(&self.ctx);
        match tokio::task::spawn_blocking(move || edit_blocking(&ctx, &req)).await {
            Ok(Ok(text)) => ToolOutput::ok(text),
            Ok(Err(msg)) => ToolOutput::err(msg),
            Err(_) => ToolOutput::err("edit: internal error"),
        }
    }
}

fn edit_blocking(ctx: &ToolContext, req: &Request) -> Result<String, String> {
    let file_path = req.file_path.as_str();
    let target = ctx
        .roots
        .resolve(file_path)
        .map_err(|e| format!("edit: {e}"))?;
    if let Some(root) = ctx.roots.read_only_root_of(&target) {
        return Err(format!(
            "edit: {file_path} is inside read-only directory {root}"
        ));
    }
    let fs_err = |e: io::Error| format!("edit: {file_path}: {}", fserr::reason(&e));
    let not_regular = || format!("edit: {file_path}: not a regular file");
    let meta = fs::metadata(&target).map_err(fs_err)?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let (size, limit) = (meta.len(), ctx.max_file_bytes);
    if size > limit {
        return Err(format!(
            "edit: {file_path} is {size} bytes, exceeds {limit}-byte limit. The edit tool loads the whole file and cannot modify a file this large."
        ));
    }
    let mut f = open_regular(&target)
        .map_err(fs_err)?
        .ok_or_else(not_regular)?;
    let mut bytes = Vec::with_capacity(size as usize);
    f.read_to_end(&mut bytes).map_err(fs_err)?;
    drop(f);
    let text = String::from_utf8(bytes).map_err(|_| {
        format!("edit: {file_path}: not valid UTF-8 text (cannot edit binary files)")
    })?;
    let count = text.matches(req.old.as_str()).count();
    if count == 0 {
        return Err(format!("edit: old_string not found in {file_path}"));
    }
    if !req.replace_all && count > 1 {
        return Err(format!(
            "edit: old_string appears {count} times in {file_path} (must be unique)"
        ));
    }
    let updated = if req.replace_all {
        text.replace(req.old.as_str(), &req.new)
    } else {
        text.replacen(req.old.as_str(), &req.new, 1)
    };
    atomic_write(&target, updated.as_bytes()).map_err(fs_err)?;
    let k = if req.replace_all { count } else { 1 };
    Ok(format!("edited {file_path} ({k} replacement(s))"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    use std::path::{Path, PathBuf};

    struct Env {
        _dir: tempfile::TempDir,
        ws: PathBuf,
    }

    fn env() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap().join("workspace");
        fs::create_dir_all(&ws).unwrap();
        fs::write(ws.join("f.txt"), "foo bar foo").unwrap();
        Env { _dir: dir, ws }
    }

    fn tool(ws: &Path) -> EditTool {
        EditTool::new(Arc::new(ToolContext::new(ws)))
    }

    async fn run(t: &EditTool, input: Value) -> (bool, String) {
        let out = t.call(&input).await;
        (out.is_error, out.as_text().unwrap().to_owned())
    }

    fn ok(s: &str) -> (bool, String) {
        (false, s.to_owned())
    }

    fn err(s: &str) -> (bool, String) {
        (true, s.to_owned())
    }

    fn body(e: &Env, name: &str) -> String {
        fs::read_to_string(e.ws.join(name)).unwrap()
    }

    fn call(old: &str, new: &str) -> Value {
        json!({"file_path": "f.txt", "old_string": old, "new_string": new})
    }

    #[tokio::test]
    async fn e1_e2_e3_e4_unique_all_missing() {
        let e = env();
        let t = tool(&e.ws);
        assert_eq!(
            run(&t, call("foo", "X")).await,
            err("edit: old_string appears 2 times in f.txt (must be unique)")
        );
        assert_eq!(body(&e, "f.txt"), "foo bar foo");
        assert_eq!(
            run(&t, call("zzz", "X")).await,
            err("edit: old_string not found in f.txt")
        );
        assert_eq!(
            run(&t, call("bar", "BAZ")).await,
            ok("edited f.txt (1 replacement(s))")
        );
        assert_eq!(body(&e, "f.txt"), "foo BAZ foo");
        let mut all = call("foo", "X");
        all["replace_all"] = json!(true);
        assert_eq!(run(&t, all).await, ok("edited f.txt (2 replacement(s))"));
        assert_eq!(body(&e, "f.txt"), "X BAZ X");
    }

    #[tokio::test]
    async fn e5_e6_e8_literal_semantics() {
        let e = env();
        let t = tool(&e.ws);
        fs::write(e.ws.join("a.txt"), "aaa").unwrap();
        let input = json!({"file_path": "a.txt", "old_string": "aa", "new_string": "b", "replace_all": true});
        assert_eq!(run(&t, input).await, ok("edited a.txt (1 replacement(s))"));
        assert_eq!(body(&e, "a.txt"), "ba");
        assert_eq!(
            run(&t, call("bar", "$1 \\1 \\g<0> $&")).await,
            ok("edited f.txt (1 replacement(s))")
        );
        assert_eq!(body(&e, "f.txt"), "foo $1 \\1 \\g<0> $& foo");
        assert_eq!(
            run(&t, call(" \\1 ", " \\1 ")).await,
            ok("edited f.txt (1 replacement(s))")
        );
        assert_eq!(body(&e, "f.txt"), "foo $1 \\1 \\g<0> $& foo");
        // Unicode and regex metacharacters are plain text.
        fs::write(e.ws.join("u.txt"), "ünï (.*) ünï").unwrap();
        let input = json!({"file_path": "u.txt", "old_string": "(.*)", "new_string": "😀"});
        assert_eq!(run(&t, input).await, ok("edited u.txt (1 replacement(s))"));
        assert_eq!(body(&e, "u.txt"), "ünï 😀 ünï");
    }

    #[tokio::test]
    async fn e7_line_endings_not_normalised() {
        let e = env();
        let t = tool(&e.ws);
        fs::write(e.ws.join("crlf2.txt"), "one\r\ntwo\r\n").unwrap();
        let input = json!({"file_path": "crlf2.txt", "old_string": "one\ntwo", "new_string": "x"});
        assert_eq!(
            run(&t, input).await,
            err("edit: old_string not found in crlf2.txt")
        );
        let input =
            json!({"file_path": "crlf2.txt", "old_string": "one\r\ntwo", "new_string": "x"});
        assert_eq!(
            run(&t, input).await,
            ok("edited crlf2.txt (1 replacement(s))")
        );
        assert_eq!(fs::read(e.ws.join("crlf2.txt")).unwrap(), b"x\r\n");
    }

    #[tokio::test]
    async fn e9_empty_old_string_is_required() {
        // Divergence 3: rejected, checked before path resolution.
        let e = env();
        let t = tool(&e.ws);
        fs::write(e.ws.join("empty.txt"), "").unwrap();
        let want = err("edit: old_string is required");
        for p in ["empty.txt", "f.txt", "missing.txt", "/etc/passwd"] {
            let input = json!({"file_path": p, "old_string": "", "new_string": "x"});
            assert_eq!(run(&t, input).await, want, "{p}");
            let input =
                json!({"file_path": p, "old_string": "", "new_string": "x", "replace_all": true});
            assert_eq!(run(&t, input).await, want, "{p}");
        }
        assert_eq!(body(&e, "empty.txt"), "");
        assert_eq!(body(&e, "f.txt"), "foo bar foo");
    }

    #[tokio::test]
    async fn e10_e11_e12_file_errors() {
        let e = env();
        let t = tool(&e.ws);
        fs::write(e.ws.join("bin.dat"), [0xff, 0xfe, 0x00]).unwrap();
        fs::write(e.ws.join("big.txt"), "x".repeat(300_000)).unwrap();
        fs::create_dir(e.ws.join("deep")).unwrap();
        nix::unistd::mkfifo(
            &e.ws.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let edit = |p: &str| json!({"file_path": p, "old_string": "x", "new_string": "y"});
        assert_eq!(
            run(&t, edit("bin.dat")).await,
            err("edit: bin.dat: not valid UTF-8 text (cannot edit binary files)")
        );
        assert_eq!(
            run(&t, edit("big.txt")).await,
            err(
                "edit: big.txt is 300000 bytes, exceeds 262144-byte limit. The edit tool loads the whole file and cannot modify a file this large."
            )
        );
        assert_eq!(
            run(&t, edit("missing.txt")).await,
            err("edit: missing.txt: no such file or directory")
        );
        assert_eq!(
            run(&t, edit("deep")).await,
            err("edit: deep: not a regular file")
        );
        assert_eq!(
            run(&t, edit("fifo")).await,
            err("edit: fifo: not a regular file")
        );
        assert_eq!(
            run(&t, edit("f.txt/child")).await,
            err("edit: f.txt/child: not a directory")
        );
        assert_eq!(
            run(&t, edit("../x.txt")).await,
            err("edit: path '../x.txt' is outside the session's working directory")
        );
        assert_eq!(
            run(&t, edit("a\u{0}b")).await,
            err("edit: embedded null byte")
        );
    }

    #[tokio::test]
    async fn e13_read_only_root() {
        let e = env();
        fs::create_dir(e.ws.join("ro")).unwrap();
        fs::write(e.ws.join("ro/x.txt"), "keep x").unwrap();
        let mut ctx = ToolContext::new(&e.ws);
        ctx.roots.read_only(&e.ws.join("ro"));
        let t = EditTool::new(Arc::new(ctx));
        let input = json!({"file_path": "ro/x.txt", "old_string": "x", "new_string": "y"});
        let want = format!(
            "edit: ro/x.txt is inside read-only directory {}/ro",
            e.ws.display()
        );
        assert_eq!(run(&t, input).await, err(&want));
        assert_eq!(body(&e, "ro/x.txt"), "keep x");
    }

    #[tokio::test]
    async fn e14_replace_all_coercion() {
        let e = env();
        let t = tool(&e.ws);
        for (flag, truthy) in [
            (json!("true"), true),
            (json!(1), true),
            (json!(null), false),
            (json!("off"), false),
        ] {
            fs::write(e.ws.join("f.txt"), "foo bar foo").unwrap();
            let input = json!({"file_path": "f.txt", "old_string": "foo", "new_string": "X", "replace_all": flag});
            let want = if truthy {
                ok("edited f.txt (2 replacement(s))")
            } else {
                err("edit: old_string appears 2 times in f.txt (must be unique)")
            };
            assert_eq!(run(&t, input).await, want, "{flag}");
        }
    }

    #[tokio::test]
    async fn e15_mode_preserved_and_symlink_kept() {
        let e = env();
        let t = tool(&e.ws);
        let p = e.ws.join("f.txt");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        symlink(&p, e.ws.join("lnk")).unwrap();
        let input = json!({"file_path": "lnk", "old_string": "bar", "new_string": "BAR"});
        assert_eq!(run(&t, input).await, ok("edited lnk (1 replacement(s))"));
        assert_eq!(body(&e, "f.txt"), "foo BAR foo");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o755);
        assert!(
            fs::symlink_metadata(e.ws.join("lnk"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[tokio::test]
    async fn e16_invalid_arguments() {
        let e = env();
        let t = tool(&e.ws);
        let want = err("ValueError('Invalid arguments for function edit')");
        for input in [
            json!({"file_path": "f.txt", "old_string": "foo"}),
            json!({"file_path": "f.txt", "old_string": "foo", "new_string": null}),
            json!({"file_path": "f.txt", "old_string": "foo", "new_string": 1}),
            json!({"file_path": "f.txt", "old_string": "foo", "new_string": "x", "replace_all": "maybe"}),
            json!({"file_path": "f.txt", "old_string": "foo", "new_string": "x", "extra": 1}),
        ] {
            assert_eq!(run(&t, input.clone()).await, want, "{input}");
        }
        assert_eq!(body(&e, "f.txt"), "foo bar foo");
    }
}
