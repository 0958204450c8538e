//! `write` (tools spec §5): create or overwrite a UTF-8 text file.
//!
//! Order of checks: input validation (§2.1) → path resolution (§2.5, `write: <message>`)
//! → read-only roots (`write: {file_path} is inside read-only directory {root}`) →
//! create the missing parent directories → write the content byte-exact (no newline
//! translation, no BOM, nothing appended) → `wrote {n} bytes to {file_path}`, where
//! `{n}` is the number of Unicode code points of `content` (Python `len(str)`), not
//! bytes. `{file_path}` is always the string the model sent. OS errors are
//! `write: {file_path}: {reason}` with the §2.7 phrase.
//!
//! The tool writes the canonical path the resolution returned, so writing through an
//! in-bounds symlink rewrites its target and leaves the link a link; writing through a
//! dangling in-bounds link creates the target (and its missing parents).
//!
//! Parent directories are created like Python's `Path.mkdir(parents=True,
//! exist_ok=True)` (mode 0777 minus umask, i.e. 0755): a regular file where a
//! directory is needed gives `file already exists` when it is the immediate parent
//! (`write: a.txt/child: file already exists`) and `not a directory` deeper down —
//! the same phrases the reference produces.
//!
//! Decision (spec §5.2 [rec]): the file is written atomically by [`atomic_write`]
//! (temp file in the same directory, fsync, rename) instead of the reference's
//! in-place truncate-and-rewrite. To keep every observable result identical:
//! - an existing target's permission bits (and, best effort, owner) are copied onto the
//!   replacement; new files get 0666 minus umask (0644);
//! - a directory target fails with `is a directory` (as the reference's `open` would);
//! - an existing regular target that the runner could not open for writing fails with
//!   that open's error (`permission denied`, `read-only file system`, …), as in place;
//! - when the temp file cannot be created because the directory itself is not
//!   writable (`EACCES`/`EPERM`) but the target exists, the file is rewritten in place,
//!   exactly like the reference;
//! - an existing non-regular, non-directory target (FIFO, device) is written in place
//!   like the reference, except that it is opened non-blocking so that a FIFO without a
//!   reader fails (`no such device or address`) instead of hanging until the deadline.
//!
//! Hard links to the old file are detached from the new content; the model cannot
//! otherwise observe the difference.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::input::{Kind, Param, req, validate};
use super::{Tool, ToolContext, ToolOutput, fserr};

const PARAMS: &[Param] = &[req("file_path", Kind::Str), req("content", Kind::Str)];

/// The `write` tool.
pub struct WriteTool {
    ctx: Arc<ToolContext>,
}

impl WriteTool {
    pub fn new(ctx: Arc<ToolContext>) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl Tool for WriteTool {
    fn name(&self) -> &'static str {
        "write"
    }

    async fn call(&self, input: &Value) -> ToolOutput {
        let args = match validate("write", input, PARAMS) {
            Ok(a) => a,
            Err(e) => return ToolOutput::err(e),
        };
        let file_path = args.str("file_path").unwrap_or_default().to_owned();
        let content = args.str("content").unwrap_or_default().to_owned();
        let ctx = Arc::clone(&self.ctx);
        match tokio::task::spawn_blocking(move || write_blocking(&ctx, &file_path, &content)).await
        {
            Ok(Ok(text)) => ToolOutput::ok(text),
            Ok(Err(msg)) => ToolOutput::err(msg),
            Err(_) => ToolOutput::err("write: internal error"),
        }
    }
}

fn write_blocking(ctx: &ToolContext, file_path: &str, content: &str) -> Result<String, String> {
    let target = ctx
        .roots
        .resolve(file_path)
        .map_err(|e| format!("write: {e}"))?;
    if let Some(root) = ctx.roots.read_only_root_of(&target) {
        return Err(format!(
            "write: {file_path} is inside read-only directory {root}"
        ));
    }
    let fs_err = |e: io::Error| format!("write: {file_path}: {}", fserr::reason(&e));
    if let Some(parent) = target.parent() {
        mkdir_parents(parent).map_err(fs_err)?;
    }
    atomic_write(&target, content.as_bytes()).map_err(fs_err)?;
    Ok(format!(
        "wrote {} bytes to {file_path}",
        content.chars().count()
    ))
}

/// Python `Path.mkdir(parents=True, exist_ok=True)` with the default mode (0777 minus
/// umask): `EEXIST` on a non-directory is an error, `ENOENT` recurses to the parent.
pub(crate) fn mkdir_parents(dir: &Path) -> io::Result<()> {
    let mkdir = |d: &Path| DirBuilder::new().mode(0o777).create(d);
    let exist_ok = |d: &Path, e: io::Error| if d.is_dir() { Ok(()) } else { Err(e) };
    match mkdir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            match dir.parent() {
                Some(parent) if parent != dir => mkdir_parents(parent)?,
                _ => return Err(e),
            }
            mkdir(dir).or_else(|e| exist_ok(dir, e))
        }
        Err(e) => exist_ok(dir, e),
    }
}

/// What is at the target before the write.
enum Existing {
    None,
    Regular(fs::Metadata),
    Special,
}

/// Replace `path`'s content with `bytes` atomically: a temp file beside it, fsync,
/// rename. Preserves an existing file's permission bits (and, best effort, owner); a
/// new file gets 0666 minus umask. See the module doc for the in-place fallbacks that
/// keep the reference's error texts.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let existing = match fs::metadata(path) {
        Ok(md) if md.is_dir() => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
        Ok(md) if md.is_file() => {
            // The reference opens the file for writing in place: reproduce its errors.
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)?;
            Existing::Regular(md)
        }
        Ok(_) => Existing::Special,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Existing::None,
        Err(e) => return Err(e),
    };
    if matches!(existing, Existing::Special) {
        return write_in_place(path, bytes);
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let create_mode = if matches!(existing, Existing::Regular(_)) {
        0o600
    } else {
        0o666
    };
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(create_mode)
        .custom_flags(libc::O_CLOEXEC)
        .open(&tmp)
    {
        Ok(f) => f,
        Err(e)
            if matches!(existing, Existing::Regular(_))
                && matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) =>
        {
            // Directory not writable but the file is: the reference's in-place write works.
            return write_in_place(path, bytes);
        }
        Err(e) => return Err(e),
    };
    let result = fill_and_rename(&mut file, &tmp, path, bytes, &existing);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    drop(file);
    result?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn fill_and_rename(
    file: &mut File,
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
    existing: &Existing,
) -> io::Result<()> {
    file.write_all(bytes)?;
    if let Existing::Regular(md) = existing {
        let mine = file.metadata()?;
        if (mine.uid(), mine.gid()) != (md.uid(), md.gid()) {
            // Best effort: only possible with privileges; never fails the write.
            let _ = std::os::unix::fs::fchown(&*file, Some(md.uid()), Some(md.gid()));
        }
        file.set_permissions(fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    file.sync_all()?;
    fs::rename(tmp, path)
}

/// The reference's write: open (create, truncate) and write in place. Non-blocking
/// open so that a FIFO without a reader fails instead of hanging.
fn write_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o666)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    // Back to blocking writes (a pipe with a reader may be momentarily full).
    // SAFETY: plain fcntl on a file descriptor we own.
    unsafe {
        use std::os::fd::AsRawFd;
        let fd = f.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    f.write_all(bytes)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    struct Env {
        _dir: tempfile::TempDir,
        ws: PathBuf,
        outside: PathBuf,
    }

    fn env() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let ws = base.join("workspace");
        let outside = base.join("outside");
        fs::create_dir_all(&ws).unwrap();
        fs::create_dir_all(&outside).unwrap();
        Env {
            _dir: dir,
            ws,
            outside,
        }
    }

    fn tool(ws: &Path) -> WriteTool {
        WriteTool::new(Arc::new(ToolContext::new(ws)))
    }

    async fn run(t: &WriteTool, input: Value) -> (bool, String) {
        let out = t.call(&input).await;
        (out.is_error, out.as_text().unwrap().to_owned())
    }

    fn ok(s: &str) -> (bool, String) {
        (false, s.to_owned())
    }

    fn err(s: &str) -> (bool, String) {
        (true, s.to_owned())
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[tokio::test]
    async fn w1_w2_w4_w9_content_and_counts() {
        let e = env();
        let t = tool(&e.ws);
        assert_eq!(
            run(&t, json!({"file_path": "a.txt", "content": "hello\n"})).await,
            ok("wrote 6 bytes to a.txt")
        );
        assert_eq!(fs::read(e.ws.join("a.txt")).unwrap(), b"hello\n");
        assert_eq!(
            run(&t, json!({"file_path": "café.txt", "content": "é€😀"})).await,
            ok("wrote 3 bytes to café.txt")
        );
        assert_eq!(fs::read(e.ws.join("café.txt")).unwrap().len(), 9);
        assert_eq!(
            run(&t, json!({"file_path": "empty.txt", "content": ""})).await,
            ok("wrote 0 bytes to empty.txt")
        );
        assert_eq!(fs::metadata(e.ws.join("empty.txt")).unwrap().len(), 0);
        assert_eq!(
            run(&t, json!({"file_path": "crlf.txt", "content": "a\r\nb\n"})).await,
            ok("wrote 5 bytes to crlf.txt")
        );
        assert_eq!(fs::read(e.ws.join("crlf.txt")).unwrap(), b"a\r\nb\n");
        // Overwrite replaces the whole content; no temp file is left behind.
        assert_eq!(
            run(&t, json!({"file_path": "a.txt", "content": "x"})).await,
            ok("wrote 1 bytes to a.txt")
        );
        assert_eq!(fs::read(e.ws.join("a.txt")).unwrap(), b"x");
        let names: Vec<_> = fs::read_dir(&e.ws)
            .unwrap()
            .map(|d| d.unwrap().file_name())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.to_string_lossy().starts_with(".tmp-")),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn w3_parents_created_with_default_modes() {
        let e = env();
        let t = tool(&e.ws);
        assert_eq!(
            run(
                &t,
                json!({"file_path": "deep/new/dir/f.txt", "content": "x"})
            )
            .await,
            ok("wrote 1 bytes to deep/new/dir/f.txt")
        );
        assert_eq!(fs::read(e.ws.join("deep/new/dir/f.txt")).unwrap(), b"x");
        // umask-governed defaults (0755 / 0644 under the usual 022).
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .unwrap();
        assert_eq!(mode(&e.ws.join("deep/new")), 0o777 & !umask);
        assert_eq!(mode(&e.ws.join("deep/new/dir/f.txt")), 0o666 & !umask);
    }

    #[tokio::test]
    async fn w5_w6_os_errors() {
        let e = env();
        let t = tool(&e.ws);
        fs::create_dir(e.ws.join("deep")).unwrap();
        fs::write(e.ws.join("a.txt"), "a").unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "deep", "content": "x"})).await,
            err("write: deep: is a directory")
        );
        assert_eq!(
            run(&t, json!({"file_path": "", "content": "x"})).await,
            err("write: : is a directory")
        );
        assert_eq!(
            run(&t, json!({"file_path": "a.txt/child", "content": "x"})).await,
            err("write: a.txt/child: file already exists")
        );
        // Deeper below a file: Python's mkdir reports ENOTDIR.
        assert_eq!(
            run(&t, json!({"file_path": "a.txt/x/child", "content": "x"})).await,
            err("write: a.txt/x/child: not a directory")
        );
        assert_eq!(fs::read(e.ws.join("a.txt")).unwrap(), b"a");
    }

    #[tokio::test]
    async fn w7_w12_w14_outside_and_loops() {
        let e = env();
        let t = tool(&e.ws);
        fs::write(e.outside.join("secret"), "s").unwrap();
        symlink(e.outside.join("secret"), e.ws.join("link_out")).unwrap();
        symlink("loop2", e.ws.join("loop1")).unwrap();
        symlink("loop1", e.ws.join("loop2")).unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "../escape.txt", "content": "x"})).await,
            err("write: path '../escape.txt' is outside the session's working directory")
        );
        assert!(!e.ws.parent().unwrap().join("escape.txt").exists());
        assert_eq!(
            run(&t, json!({"file_path": "link_out", "content": "x"})).await,
            err("write: path 'link_out' is outside the session's working directory")
        );
        assert_eq!(fs::read(e.outside.join("secret")).unwrap(), b"s");
        assert_eq!(
            run(&t, json!({"file_path": "loop1/child.txt", "content": "x"})).await,
            err("write: path 'loop1/child.txt': too many levels of symbolic links")
        );
        let names: Vec<_> = fs::read_dir(&e.ws)
            .unwrap()
            .map(|d| d.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[tokio::test]
    async fn w8_read_only_root() {
        let e = env();
        fs::create_dir(e.ws.join("ro")).unwrap();
        fs::write(e.ws.join("ro/x.txt"), "keep").unwrap();
        let mut ctx = ToolContext::new(&e.ws);
        ctx.roots.read_only(&e.ws.join("ro"));
        let t = WriteTool::new(Arc::new(ctx));
        let want = format!(
            "write: ro/x.txt is inside read-only directory {}/ro",
            e.ws.display()
        );
        assert_eq!(
            run(&t, json!({"file_path": "ro/x.txt", "content": "x"})).await,
            err(&want)
        );
        assert_eq!(fs::read(e.ws.join("ro/x.txt")).unwrap(), b"keep");
        // Also for a new file under it.
        let want = format!(
            "write: ro/new.txt is inside read-only directory {}/ro",
            e.ws.display()
        );
        assert_eq!(
            run(&t, json!({"file_path": "ro/new.txt", "content": "x"})).await,
            err(&want)
        );
        assert!(!e.ws.join("ro/new.txt").exists());
    }

    #[tokio::test]
    async fn w10_w11_symlinks_in_bounds() {
        let e = env();
        let t = tool(&e.ws);
        fs::write(e.ws.join("a.txt"), "old").unwrap();
        symlink(e.ws.join("a.txt"), e.ws.join("lnk_in")).unwrap();
        symlink(e.ws.join("new/file.txt"), e.ws.join("dangling_in")).unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "lnk_in", "content": "new"})).await,
            ok("wrote 3 bytes to lnk_in")
        );
        assert_eq!(fs::read(e.ws.join("a.txt")).unwrap(), b"new");
        assert!(
            fs::symlink_metadata(e.ws.join("lnk_in"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            run(&t, json!({"file_path": "dangling_in", "content": "made"})).await,
            ok("wrote 4 bytes to dangling_in")
        );
        assert_eq!(fs::read(e.ws.join("new/file.txt")).unwrap(), b"made");
        assert!(
            fs::symlink_metadata(e.ws.join("dangling_in"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[tokio::test]
    async fn w13_mode_preserved() {
        let e = env();
        let t = tool(&e.ws);
        let p = e.ws.join("run.sh");
        fs::write(&p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "run.sh", "content": "echo hi\n"})).await,
            ok("wrote 8 bytes to run.sh")
        );
        assert_eq!(mode(&p), 0o755);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        run(&t, json!({"file_path": "run.sh", "content": "y"})).await;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(fs::read(&p).unwrap(), b"y");
    }

    #[tokio::test]
    async fn w15_invalid_arguments() {
        let e = env();
        let t = tool(&e.ws);
        let want = err("ValueError('Invalid arguments for function write')");
        for input in [
            json!({"file_path": "a.txt"}),
            json!({"file_path": "a.txt", "content": null}),
            json!({"file_path": "a.txt", "content": 5}),
            json!({"file_path": "a.txt", "content": "x", "extra": 1}),
        ] {
            assert_eq!(run(&t, input).await, want);
        }
        assert!(!e.ws.join("a.txt").exists());
    }

    #[tokio::test]
    async fn resolution_errors_are_prefixed() {
        let e = env();
        let t = tool(&e.ws);
        assert_eq!(
            run(&t, json!({"file_path": "a\u{0}b", "content": "x"})).await,
            err("write: embedded null byte")
        );
        assert_eq!(
            run(&t, json!({"file_path": "/etc/it's", "content": "x"})).await,
            err("write: path \"/etc/it's\" is outside the session's working directory")
        );
    }

    #[tokio::test]
    async fn fifo_target_does_not_hang() {
        let e = env();
        let t = tool(&e.ws);
        nix::unistd::mkfifo(
            &e.ws.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let out = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            run(&t, json!({"file_path": "fifo", "content": "x"})),
        )
        .await
        .expect("write to a reader-less FIFO must not hang");
        assert_eq!(out, err("write: fifo: no such device or address"));
    }

    #[test]
    fn atomic_write_in_unwritable_dir_falls_back_in_place() {
        // Only meaningful without CAP_DAC_OVERRIDE; as root the temp path is taken.
        let e = env();
        let d = e.ws.join("locked");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("f"), "old").unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o555)).unwrap();
        atomic_write(&d.join("f"), b"new").unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(fs::read(d.join("f")).unwrap(), b"new");
    }
}
