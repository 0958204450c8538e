//! `read` (tools spec §4): return a file's text exactly as stored, a line range of it,
//! or an image/PDF as one base64 content block.
//!
//! Order of checks (§4.2): input validation (§2.1) → path resolution (§2.5,
//! `read: <message>`) → `view_range` length (non-empty and ≠ 2 ⇒ `read: view_range
//! must be [start_line, end_line]`) → `stat` following symlinks (`read: {file_path}:
//! {reason}`; anything but a regular file ⇒ `read: {file_path}: not a regular file`,
//! decided without opening it, so a FIFO never blocks) → media type from the canonical
//! path's extension (§4.5) → size caps → strict UTF-8 decoding. No line numbers, no
//! header: the text is returned verbatim (BOM, CR and all); an empty result is sent as
//! `(no output)`.
//!
//! Line ranges use Python slice semantics over `text.split("\n")` (§4.3). A text file
//! larger than the cap is only readable with a `view_range`, through the streamed reader
//! (§4.4): 64 KiB chunks, only the selected lines kept, the result byte-identical to
//! the in-memory path, the selected bytes themselves capped.
//!
//! Files are opened `O_NONBLOCK` and re-checked with `fstat`, so even a file swapped for
//! a FIFO between `stat` and `open` cannot hang the call.
//!
//! Decision (`max_file_bytes` and media, §4.5): [`ToolContext::max_file_bytes`] is
//! always set. The value 262 144 ([`DEFAULT_MAX_FILE_BYTES`]) is treated as "the
//! default" and does not apply to images/PDFs (their own caps 3 932 160 / 20 971 520
//! do); any other configured value is treated as configured explicitly and also bounds
//! media (the smaller limit wins). Configuring exactly 262 144 therefore behaves like
//! the default.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use cma_shared::types::{ContentBlock, MediaSource};
use serde_json::Value;

use super::input::{Kind, Param, opt, req, validate};
use super::{Tool, ToolContext, ToolOutput, fserr};

const PARAMS: &[Param] = &[
    req("file_path", Kind::Str),
    opt("view_range", Kind::IntList),
];

/// The reference's default text cap; not applied to media (module doc).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 262_144;
/// Default image cap: `(5 242 880 // 4) * 3` raw bytes (5 MiB of base64).
pub const MAX_IMAGE_BYTES: u64 = (5_242_880 / 4) * 3;
/// Default PDF cap (raw bytes).
pub const MAX_PDF_BYTES: u64 = 20_971_520;
/// Chunk size of the streamed line-range reader.
pub const READ_STREAM_CHUNK_BYTES: usize = 65_536;

/// The `read` tool.
pub struct ReadTool {
    ctx: Arc<ToolContext>,
}

impl ReadTool {
    pub fn new(ctx: Arc<ToolContext>) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl Tool for ReadTool {
    fn name(&self) -> &'static str {
        "read"
    }

    async fn call(&self, input: &Value) -> ToolOutput {
        let args = match validate("read", input, PARAMS) {
            Ok(a) => a,
            Err(e) => return ToolOutput::err(e),
        };
        let file_path = args.str("file_path").unwrap_or_default().to_owned();
        let view_range = args
            .int_list("view_range")
            .map(<[i64]>::to_vec)
            .unwrap_or_default();
        let ctx = Arc::clone(&self.ctx);
        match tokio::task::spawn_blocking(move || read_blocking(&ctx, &file_path, &view_range))
            .await
        {
            Ok(Ok(out)) => out,
            Ok(Err(msg)) => ToolOutput::err(msg),
            Err(_) => ToolOutput::err("read: internal error"),
        }
    }
}

fn read_blocking(
    ctx: &ToolContext,
    file_path: &str,
    view_range: &[i64],
) -> Result<ToolOutput, String> {
    let target = ctx
        .roots
        .resolve(file_path)
        .map_err(|e| format!("read: {e}"))?;
    let range = match view_range {
        [] => None,
        [a, b] => Some((*a, *b)),
        _ => return Err("read: view_range must be [start_line, end_line]".into()),
    };
    let fs_err = |e: io::Error| format!("read: {file_path}: {}", fserr::reason(&e));
    let not_regular = || format!("read: {file_path}: not a regular file");
    let meta = fs::metadata(&target).map_err(fs_err)?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let size = meta.len();

    if let Some(media_type) = media_type_of(&target) {
        if range.is_some() {
            return Err("read: view_range is not supported for image/PDF files".into());
        }
        let mut limit = if media_type == "application/pdf" {
            MAX_PDF_BYTES
        } else {
            MAX_IMAGE_BYTES
        };
        if ctx.max_file_bytes != DEFAULT_MAX_FILE_BYTES {
            limit = limit.min(ctx.max_file_bytes);
        }
        if size > limit {
            return Err(format!(
                "read: {file_path} is {size} bytes, exceeds {limit}-byte limit for image/PDF files."
            ));
        }
        let mut f = open_regular(&target)
            .map_err(fs_err)?
            .ok_or_else(not_regular)?;
        let mut bytes = Vec::with_capacity(size as usize);
        f.read_to_end(&mut bytes).map_err(fs_err)?;
        let source = MediaSource::base64(
            media_type,
            base64::engine::general_purpose::STANDARD.encode(&bytes),
        );
        return Ok(ToolOutput::block(if media_type == "application/pdf" {
            ContentBlock::Document { source }
        } else {
            ContentBlock::Image { source }
        }));
    }

    let limit = ctx.max_file_bytes;
    let invalid_utf8 = || {
        format!(
            "read: {file_path}: not valid UTF-8 text (binary files are only supported for image/PDF extensions)"
        )
    };
    if size > limit {
        let Some((start_line, end_line)) = range else {
            return Err(format!(
                "read: {file_path} is {size} bytes, exceeds {limit}-byte limit. Use the view_range parameter to read specific line ranges, e.g. view_range: [1, 500]."
            ));
        };
        let collector = LineRangeCollector::new(file_path, start_line, end_line, limit);
        if collector.range_is_empty() {
            return Ok(ToolOutput::ok(""));
        }
        let f = open_regular(&target)
            .map_err(fs_err)?
            .ok_or_else(not_regular)?;
        let bytes = collector.run(f, READ_STREAM_CHUNK_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|_| invalid_utf8())?;
        return Ok(ToolOutput::ok(text));
    }

    let mut f = open_regular(&target)
        .map_err(fs_err)?
        .ok_or_else(not_regular)?;
    let mut bytes = Vec::with_capacity(size as usize);
    f.read_to_end(&mut bytes).map_err(fs_err)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid_utf8())?;
    Ok(ToolOutput::ok(match range {
        None => text,
        Some((a, b)) => slice_lines(&text, a, b),
    }))
}

/// Open `path` for reading without ever blocking (`O_NONBLOCK`), then confirm with
/// `fstat` that it is a regular file (`Ok(None)` otherwise).
pub(crate) fn open_regular(path: &Path) -> io::Result<Option<File>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    Ok(f.metadata()?.is_file().then_some(f))
}

/// Media type by the final component's suffix (Python `Path.suffix`, lower-cased): the
/// part from the last `.`, if that dot is neither the first nor the last character.
fn media_type_of(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.as_bytes();
    let dot = name.iter().rposition(|b| *b == b'.')?;
    if dot == 0 || dot + 1 >= name.len() {
        return None;
    }
    let suffix = String::from_utf8_lossy(&name[dot..]).to_lowercase();
    Some(match suffix.as_str() {
        ".png" => "image/png",
        ".jpg" | ".jpeg" => "image/jpeg",
        ".gif" => "image/gif",
        ".webp" => "image/webp",
        ".pdf" => "application/pdf",
        _ => return None,
    })
}

/// In-memory line range (§4.3): `"\n".join(text.split("\n")[start:end])` with
/// `start = max(0, a - 1)`, `end = b if b > 0 else len(lines)`, Python slice clamping.
pub(crate) fn slice_lines(text: &str, start_line: i64, end_line: i64) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let n = lines.len();
    let start = usize::try_from(start_line.saturating_sub(1).max(0))
        .unwrap_or(usize::MAX)
        .min(n);
    let end = if end_line > 0 {
        usize::try_from(end_line).unwrap_or(usize::MAX).min(n)
    } else {
        n
    };
    if start >= end {
        return String::new();
    }
    lines[start..end].join("\n")
}

/// Streamed line-range reader (§4.4), a port of the reference's `LineRangeCollector`.
struct LineRangeCollector<'a> {
    file_path: &'a str,
    start_line: i64,
    end_line: i64,
    /// 0-based first line.
    start: u64,
    /// 0-based end (exclusive); `u64::MAX` for "to the end".
    end: u64,
    limit: u64,
    line: u64,
    collected: Vec<u8>,
}

impl<'a> LineRangeCollector<'a> {
    fn new(file_path: &'a str, start_line: i64, end_line: i64, limit: u64) -> Self {
        Self {
            file_path,
            start_line,
            end_line,
            start: u64::try_from(start_line.saturating_sub(1).max(0)).unwrap_or(0),
            end: if end_line > 0 {
                end_line as u64
            } else {
                u64::MAX
            },
            limit,
            line: 0,
            collected: Vec::new(),
        }
    }

    fn range_is_empty(&self) -> bool {
        self.end <= self.start
    }

    fn range_is_collected(&self) -> bool {
        self.line >= self.end
    }

    /// Scan `reader` in `chunk`-byte reads; the selected bytes (not yet decoded).
    fn run(mut self, mut reader: impl Read, chunk: usize) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; chunk];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {}: {}", self.file_path, fserr::reason(&e))),
            };
            self.collect_from(&buf[..n])?;
            if self.range_is_collected() {
                break;
            }
        }
        Ok(self.collected)
    }

    fn collect_from(&mut self, chunk: &[u8]) -> Result<(), String> {
        let mut line_start = 0;
        while line_start < chunk.len() && !self.range_is_collected() {
            let newline = memchr::memchr(b'\n', &chunk[line_start..]).map(|i| i + line_start);
            let line_end = newline.unwrap_or(chunk.len());
            if self.line >= self.start {
                self.collect(&chunk[line_start..line_end], newline.is_some())?;
            }
            let Some(nl) = newline else { break };
            self.line += 1;
            line_start = nl + 1;
        }
        Ok(())
    }

    fn collect(&mut self, line: &[u8], newline_terminated: bool) -> Result<(), String> {
        self.collected.extend_from_slice(line);
        if newline_terminated && self.line + 1 < self.end {
            self.collected.push(b'\n');
        }
        if self.collected.len() as u64 > self.limit {
            return Err(self.over_limit_error());
        }
        Ok(())
    }

    fn over_limit_error(&self) -> String {
        let (file_path, limit) = (self.file_path, self.limit);
        if self.end - self.start == 1 {
            format!(
                "read: line {} of {file_path} alone exceeds {limit}-byte limit. The read tool cannot return part of a line, so view_range cannot narrow this further.",
                self.start + 1
            )
        } else {
            format!(
                "read: view_range [{}, {}] of {file_path} exceeds {limit}-byte limit. Narrow the view_range to read a smaller portion.",
                self.start_line, self.end_line
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;
    use std::time::Duration;

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
        fs::write(ws.join("a.txt"), "line1\nline2\nline3\n").unwrap();
        Env {
            _dir: dir,
            ws,
            outside,
        }
    }

    fn tool(ws: &Path) -> ReadTool {
        ReadTool::new(Arc::new(ToolContext::new(ws)))
    }

    async fn run(t: &ReadTool, input: Value) -> (bool, String) {
        let out = tokio::time::timeout(Duration::from_secs(10), t.call(&input))
            .await
            .expect("read hung");
        (
            out.is_error,
            out.as_text().expect("one text block").to_owned(),
        )
    }

    fn ok(s: &str) -> (bool, String) {
        (false, s.to_owned())
    }

    fn err(s: &str) -> (bool, String) {
        (true, s.to_owned())
    }

    #[tokio::test]
    async fn r1_r2_r3_r5_ranges() {
        let e = env();
        let t = tool(&e.ws);
        let whole = "line1\nline2\nline3\n";
        assert_eq!(run(&t, json!({"file_path": "a.txt"})).await, ok(whole));
        for (range, want) in [
            (json!([2, 3]), "line2\nline3"),
            (json!([2, 2]), "line2"),
            (json!([2, 0]), "line2\nline3\n"),
            (json!([2, -1]), "line2\nline3\n"),
            (json!([1, 100]), whole),
            (json!([0, 1]), "line1"),
            (json!([-5, 1]), "line1"),
            (json!(["1", "2"]), "line1\nline2"),
            (json!([1.0, 2.0]), "line1\nline2"),
            (json!([true, 2]), "line1\nline2"),
            (json!([]), whole),
            (json!(null), whole),
            (json!([3, 2]), "(no output)"),
            (json!([10, 20]), "(no output)"),
            (json!([4, 4]), "(no output)"),
        ] {
            assert_eq!(
                run(&t, json!({"file_path": "a.txt", "view_range": range})).await,
                ok(want),
                "{range}"
            );
        }
    }

    #[tokio::test]
    async fn r4_view_range_length() {
        let e = env();
        let t = tool(&e.ws);
        let want = err("read: view_range must be [start_line, end_line]");
        assert_eq!(
            run(&t, json!({"file_path": "a.txt", "view_range": [1]})).await,
            want
        );
        assert_eq!(
            run(&t, json!({"file_path": "a.txt", "view_range": [1, 2, 3]})).await,
            want
        );
        // Checked after resolution, before touching the file.
        assert_eq!(
            run(&t, json!({"file_path": "missing.txt", "view_range": [1]})).await,
            want
        );
        assert_eq!(
            run(&t, json!({"file_path": "/etc/passwd", "view_range": [1]})).await,
            err("read: path '/etc/passwd' is outside the session's working directory")
        );
    }

    #[tokio::test]
    async fn r6_x4_empty_file_is_no_output() {
        let e = env();
        let t = tool(&e.ws);
        fs::write(e.ws.join("empty.txt"), "").unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "empty.txt"})).await,
            ok("(no output)")
        );
        assert_eq!(
            run(&t, json!({"file_path": "empty.txt", "view_range": [1, 1]})).await,
            ok("(no output)")
        );
    }

    #[tokio::test]
    async fn r7_r8_r9_encoding() {
        let e = env();
        let t = tool(&e.ws);
        fs::write(e.ws.join("crlf.txt"), "line1\r\nline2\r\n").unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "crlf.txt", "view_range": [1, 2]})).await,
            ok("line1\r\nline2\r")
        );
        fs::write(e.ws.join("cr.txt"), "a\rb\nc").unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "cr.txt", "view_range": [1, 1]})).await,
            ok("a\rb")
        );
        fs::write(e.ws.join("bom.txt"), "\u{feff}hi").unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "bom.txt"})).await,
            ok("\u{feff}hi")
        );
        fs::write(e.ws.join("bin.dat"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "bin.dat"})).await,
            err(
                "read: bin.dat: not valid UTF-8 text (binary files are only supported for image/PDF extensions)"
            )
        );
        // In-memory path: invalid bytes anywhere fail, even outside the range.
        fs::write(e.ws.join("half.txt"), b"ok\n\xff\n").unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "half.txt", "view_range": [1, 1]})).await,
            err(
                "read: half.txt: not valid UTF-8 text (binary files are only supported for image/PDF extensions)"
            )
        );
    }

    #[tokio::test]
    async fn r10_r11_big_single_line() {
        let e = env();
        let t = tool(&e.ws);
        fs::write(e.ws.join("big.txt"), "x".repeat(300_001)).unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "big.txt"})).await,
            err(
                "read: big.txt is 300001 bytes, exceeds 262144-byte limit. Use the view_range parameter to read specific line ranges, e.g. view_range: [1, 500]."
            )
        );
        assert_eq!(
            run(&t, json!({"file_path": "big.txt", "view_range": [1, 1]})).await,
            err(
                "read: line 1 of big.txt alone exceeds 262144-byte limit. The read tool cannot return part of a line, so view_range cannot narrow this further."
            )
        );
        // Open-ended range on the same line: the general message.
        assert_eq!(
            run(&t, json!({"file_path": "big.txt", "view_range": [1, 0]})).await,
            err(
                "read: view_range [1, 0] of big.txt exceeds 262144-byte limit. Narrow the view_range to read a smaller portion."
            )
        );
    }

    fn rows(n: usize) -> String {
        (1..=n).map(|i| format!("row {i}\n")).collect()
    }

    #[tokio::test]
    async fn r12_streamed_rows() {
        let e = env();
        let t = tool(&e.ws);
        let text = rows(30_000);
        assert_eq!(text.len(), 288_894);
        fs::write(e.ws.join("bigrows.txt"), &text).unwrap();
        let r = |v: Value| json!({"file_path": "bigrows.txt", "view_range": v});
        assert_eq!(run(&t, r(json!([1, 3]))).await, ok("row 1\nrow 2\nrow 3"));
        assert_eq!(
            run(&t, r(json!([29999, 0]))).await,
            ok("row 29999\nrow 30000\n")
        );
        assert_eq!(
            run(&t, r(json!([29999, 40000]))).await,
            ok("row 29999\nrow 30000\n")
        );
        assert_eq!(run(&t, r(json!([40000, 40001]))).await, ok("(no output)"));
        assert_eq!(run(&t, r(json!([5, 4]))).await, ok("(no output)"));
        assert_eq!(
            run(&t, r(json!([1, 30000]))).await,
            err(
                "read: view_range [1, 30000] of bigrows.txt exceeds 262144-byte limit. Narrow the view_range to read a smaller portion."
            )
        );
        // Numbers as sent (after coercion).
        assert_eq!(
            run(&t, r(json!(["-3", 0]))).await,
            err(
                "read: view_range [-3, 0] of bigrows.txt exceeds 262144-byte limit. Narrow the view_range to read a smaller portion."
            )
        );
        // Streamed path: invalid bytes outside the range are not detected, inside they are.
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"\xff\xfe\n");
        fs::write(e.ws.join("bigrows.txt"), &bytes).unwrap();
        assert_eq!(run(&t, r(json!([2, 2]))).await, ok("row 2"));
        assert_eq!(
            run(&t, r(json!([30001, 30001]))).await,
            err(
                "read: bigrows.txt: not valid UTF-8 text (binary files are only supported for image/PDF extensions)"
            )
        );
    }

    #[tokio::test]
    async fn r13_chunk_boundaries_match_in_memory() {
        let e = env();
        let t = tool(&e.ws);
        // Lines of varying length so boundaries fall mid-line and right after LFs.
        let mut text = String::new();
        let mut i = 0usize;
        while text.len() < 300_000 {
            text.push_str(&format!("{i:06}{}\r", "é".repeat(i % 37)));
            text.push('\n');
            i += 1;
        }
        text.push_str("tail without newline");
        fs::write(e.ws.join("big.txt"), &text).unwrap();
        // The line containing byte 65 536 and ranges straddling it.
        let line_at = |off: usize| {
            text.as_bytes()[..off]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as i64
                + 1
        };
        let b1 = line_at(65_536);
        let b2 = line_at(131_072);
        let last = text.split('\n').count() as i64;
        for (a, b) in [
            (b1, b1),
            (b1 - 1, b1 + 1),
            (b1 - 50, b1 + 50),
            (b1, b2),
            (b2 - 3, b2),
            (last - 2, 0),
            (last - 2, last + 10),
            (last, last),
            (1, 2),
        ] {
            let want = slice_lines(&text, a, b);
            let got = run(&t, json!({"file_path": "big.txt", "view_range": [a, b]})).await;
            let want = if want.is_empty() {
                "(no output)".to_owned()
            } else {
                want
            };
            assert_eq!(got, (false, want), "[{a}, {b}]");
        }
        // And the collector itself against the in-memory slice for many chunk sizes.
        let cut = (20_000..).find(|i| text.is_char_boundary(*i)).unwrap();
        let small = &text[..cut];
        let n = small.split('\n').count() as i64;
        for chunk in [1, 2, 3, 7, 64, 4096] {
            for (a, b) in [
                (1, 1),
                (1, 3),
                (2, 0),
                (n - 1, 0),
                (n, n),
                (5, 4),
                (0, 2),
                (n + 1, 0),
                (3, n + 5),
            ] {
                let c = LineRangeCollector::new("f", a, b, u64::MAX);
                let got = if c.range_is_empty() {
                    Vec::new()
                } else {
                    c.run(small.as_bytes(), chunk).unwrap()
                };
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    slice_lines(small, a, b),
                    "chunk {chunk} [{a}, {b}]"
                );
            }
        }
    }

    #[tokio::test]
    async fn r14_directory_and_fifo_without_hanging() {
        let e = env();
        let t = tool(&e.ws);
        fs::create_dir(e.ws.join("sub")).unwrap();
        nix::unistd::mkfifo(
            &e.ws.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "sub"})).await,
            err("read: sub: not a regular file")
        );
        assert_eq!(
            run(&t, json!({"file_path": "fifo"})).await,
            err("read: fifo: not a regular file")
        );
        assert_eq!(
            run(&t, json!({"file_path": "fifo", "view_range": [1, 2]})).await,
            err("read: fifo: not a regular file")
        );
        assert_eq!(
            run(&t, json!({"file_path": ""})).await,
            err("read: : not a regular file")
        );
        // open_regular never blocks on a FIFO either.
        assert!(open_regular(&e.ws.join("fifo")).unwrap().is_none());
    }

    #[tokio::test]
    async fn r15_r21_os_errors() {
        let e = env();
        let t = tool(&e.ws);
        symlink(e.ws.join("gone.txt"), e.ws.join("dangling")).unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "missing.txt"})).await,
            err("read: missing.txt: no such file or directory")
        );
        assert_eq!(
            run(&t, json!({"file_path": "a.txt/child"})).await,
            err("read: a.txt/child: not a directory")
        );
        assert_eq!(
            run(&t, json!({"file_path": "dangling"})).await,
            err("read: dangling: no such file or directory")
        );
    }

    #[tokio::test]
    async fn r16_r17_r18_symlinks_and_confinement() {
        let e = env();
        let t = tool(&e.ws);
        fs::write(e.outside.join("secret"), "s").unwrap();
        symlink(e.ws.join("a.txt"), e.ws.join("lnk_in")).unwrap();
        symlink(e.outside.join("secret"), e.ws.join("link_out")).unwrap();
        symlink(e.outside.join("nope"), e.ws.join("dangling_out")).unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "lnk_in"})).await,
            ok("line1\nline2\nline3\n")
        );
        let out = "is outside the session's working directory";
        assert_eq!(
            run(&t, json!({"file_path": "link_out"})).await,
            err(&format!("read: path 'link_out' {out}"))
        );
        assert_eq!(
            run(&t, json!({"file_path": "dangling_out"})).await,
            err(&format!("read: path 'dangling_out' {out}"))
        );
        assert_eq!(
            run(&t, json!({"file_path": "../outside/x"})).await,
            err(&format!("read: path '../outside/x' {out}"))
        );
        assert_eq!(
            run(&t, json!({"file_path": "/etc/passwd"})).await,
            err(&format!("read: path '/etc/passwd' {out}"))
        );
        // Accepted spellings of an inside path.
        let abs = format!("{}/a.txt", e.ws.display());
        for p in [abs.as_str(), "a.txt/", "../workspace/a.txt"] {
            assert_eq!(
                run(&t, json!({"file_path": p})).await,
                ok("line1\nline2\nline3\n"),
                "{p}"
            );
        }
    }

    #[tokio::test]
    async fn r19_allowed_roots_message() {
        let e = env();
        let notes = e.outside.join("notes");
        fs::create_dir(&notes).unwrap();
        fs::write(notes.join("n.md"), "note").unwrap();
        let mut ctx = ToolContext::new(&e.ws);
        ctx.roots.allow(&notes);
        let t = ReadTool::new(Arc::new(ctx));
        assert_eq!(
            run(&t, json!({"file_path": "/etc/passwd"})).await,
            err(
                "read: path '/etc/passwd' is outside the session's working directory and its other permitted directories"
            )
        );
        let p = format!("{}/n.md", notes.display());
        assert_eq!(run(&t, json!({"file_path": p})).await, ok("note"));
    }

    #[tokio::test]
    async fn r20_r27_r28_path_errors() {
        let e = env();
        let t = tool(&e.ws);
        symlink("loop2", e.ws.join("loop1")).unwrap();
        symlink("loop1", e.ws.join("loop2")).unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "loop1"})).await,
            err("read: path 'loop1': too many levels of symbolic links")
        );
        assert_eq!(
            run(&t, json!({"file_path": "a\u{0}.txt"})).await,
            err("read: embedded null byte")
        );
        assert_eq!(
            run(&t, json!({"file_path": "it's.txt"})).await,
            err("read: it's.txt: no such file or directory")
        );
        assert_eq!(
            run(&t, json!({"file_path": "../it's.txt"})).await,
            err("read: path \"../it's.txt\" is outside the session's working directory")
        );
        let long = "x".repeat(300);
        assert_eq!(
            run(&t, json!({"file_path": long})).await,
            err(&format!("read: path '{long}': file name too long"))
        );
    }

    fn media(out: &ToolOutput) -> (&'static str, String, String) {
        assert!(!out.is_error);
        match out.content.as_slice() {
            [ContentBlock::Image { source }] => {
                ("image", source.media_type.clone(), source.data.clone())
            }
            [ContentBlock::Document { source }] => {
                ("document", source.media_type.clone(), source.data.clone())
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn r22_r23_r24_media_blocks() {
        let e = env();
        let t = tool(&e.ws);
        let png = [0x89u8, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00];
        fs::write(e.ws.join("img.png"), png).unwrap();
        fs::write(e.ws.join("IMG.PNG"), png).unwrap();
        fs::write(e.ws.join("doc.pdf"), b"%PDF-1.4\n").unwrap();
        fs::write(e.ws.join("x.jpg"), "just text").unwrap();
        fs::write(e.ws.join("p.JPEG"), "j").unwrap();
        fs::write(e.ws.join("g.gif"), "g").unwrap();
        fs::write(e.ws.join("w.webp"), "w").unwrap();
        fs::write(e.ws.join(".png"), "dotfile").unwrap();
        fs::write(e.ws.join("name."), "trailing dot").unwrap();
        symlink(e.ws.join("img.png"), e.ws.join("pic")).unwrap();
        symlink(e.ws.join("a.txt"), e.ws.join("fake.png")).unwrap();
        let b64 = "iVBORw0KGgoA";
        for p in ["img.png", "IMG.PNG", "pic"] {
            let out = t.call(&json!({"file_path": p})).await;
            assert_eq!(
                media(&out),
                ("image", "image/png".into(), b64.into()),
                "{p}"
            );
        }
        let out = t.call(&json!({"file_path": "doc.pdf"})).await;
        assert_eq!(
            media(&out),
            ("document", "application/pdf".into(), "JVBERi0xLjQK".into())
        );
        let json = serde_json::to_value(&out.content).unwrap();
        assert_eq!(
            json,
            json!([{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}}])
        );
        // Not sniffed: a text file named .jpg is an image.
        let out = t.call(&json!({"file_path": "x.jpg"})).await;
        assert_eq!(
            media(&out),
            ("image", "image/jpeg".into(), "anVzdCB0ZXh0".into())
        );
        assert_eq!(
            media(&t.call(&json!({"file_path": "p.JPEG"})).await).1,
            "image/jpeg"
        );
        assert_eq!(
            media(&t.call(&json!({"file_path": "g.gif"})).await).1,
            "image/gif"
        );
        assert_eq!(
            media(&t.call(&json!({"file_path": "w.webp"})).await).1,
            "image/webp"
        );
        // Media type by the canonical path: a link named .png to a text file is text.
        assert_eq!(
            run(&t, json!({"file_path": "fake.png"})).await,
            ok("line1\nline2\nline3\n")
        );
        assert_eq!(run(&t, json!({"file_path": ".png"})).await, ok("dotfile"));
        assert_eq!(
            run(&t, json!({"file_path": "name."})).await,
            ok("trailing dot")
        );
        assert_eq!(
            run(&t, json!({"file_path": "img.png", "view_range": [1, 2]})).await,
            err("read: view_range is not supported for image/PDF files")
        );
        // Empty range is "no range".
        assert_eq!(
            media(
                &t.call(&json!({"file_path": "img.png", "view_range": []}))
                    .await
            )
            .1,
            "image/png"
        );
    }

    #[tokio::test]
    async fn r25_media_caps() {
        let e = env();
        let t = tool(&e.ws);
        let f = File::create(e.ws.join("x.png")).unwrap();
        f.set_len(4_000_000).unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "x.png"})).await,
            err("read: x.png is 4000000 bytes, exceeds 3932160-byte limit for image/PDF files.")
        );
        // Exactly at the cap is fine, and the 256 KiB default does not apply to media.
        let f = File::create(e.ws.join("ok.png")).unwrap();
        f.set_len(MAX_IMAGE_BYTES).unwrap();
        let out = t.call(&json!({"file_path": "ok.png"})).await;
        assert_eq!(media(&out).2.len(), 5_242_880);
        let f = File::create(e.ws.join("big.pdf")).unwrap();
        f.set_len(MAX_PDF_BYTES + 1).unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "big.pdf"})).await,
            err(
                "read: big.pdf is 20971521 bytes, exceeds 20971520-byte limit for image/PDF files."
            )
        );
        // A non-default max_file_bytes also bounds media (the smaller wins) and text.
        let mut ctx = ToolContext::new(&e.ws);
        ctx.max_file_bytes = 1000;
        let t = ReadTool::new(Arc::new(ctx));
        assert_eq!(
            run(&t, json!({"file_path": "ok.png"})).await,
            err("read: ok.png is 3932160 bytes, exceeds 1000-byte limit for image/PDF files.")
        );
        fs::write(e.ws.join("t.txt"), "y".repeat(1001)).unwrap();
        assert_eq!(
            run(&t, json!({"file_path": "t.txt"})).await,
            err(
                "read: t.txt is 1001 bytes, exceeds 1000-byte limit. Use the view_range parameter to read specific line ranges, e.g. view_range: [1, 500]."
            )
        );
    }

    #[tokio::test]
    async fn r26_invalid_arguments() {
        let e = env();
        let t = tool(&e.ws);
        let want = err("ValueError('Invalid arguments for function read')");
        for input in [
            json!({"file_path": "a", "extra": 1}),
            json!({}),
            json!({"file_path": 5}),
            json!({"file_path": "a.txt", "view_range": "1,2"}),
            json!({"file_path": "a.txt", "view_range": [1, null]}),
            json!({"file_path": "a.txt", "view_range": [1.5, 2]}),
        ] {
            assert_eq!(run(&t, input.clone()).await, want, "{input}");
        }
    }

    #[test]
    fn suffix_rules() {
        assert_eq!(media_type_of(Path::new("/w/a.b.PNG")), Some("image/png"));
        assert_eq!(media_type_of(Path::new("/w/.pdf")), None);
        assert_eq!(media_type_of(Path::new("/w/x.")), None);
        assert_eq!(media_type_of(Path::new("/w/x.jpg.txt")), None);
        assert_eq!(media_type_of(Path::new("/w/noext")), None);
    }
}
