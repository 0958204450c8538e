//! In-process, hostile-archive-safe extraction of one skill archive (tools spec §9
//! steps 5–8). Synchronous and self-contained so it can be unit-tested and run on
//! `tokio::task::spawn_blocking`.
//!
//! Algorithm of [`extract_archive`]:
//!
//! 1. **Sniff** the format from magic bytes: `PK\x03\x04` / `PK\x05\x06` ⇒ zip;
//!    `1f 8b` ⇒ tar.gz; `BZh` ⇒ tar.bz2; `fd 37 7a 58 5a 00` ⇒ tar.xz; otherwise zip
//!    if an end-of-central-directory record is found in the last 64 KiB (what Python's
//!    `zipfile.is_zipfile` checks, so self-extracting/prefixed zips work), else plain
//!    tar. A file with a `ustar` header magic is a tar before that scan (Python would
//!    call a plain tar whose last member is a zip file a zip). An empty file is
//!    rejected.
//! 2. **Pass 1 (plan)**: read every member header (zip: the central directory; tar:
//!    the whole stream, data skipped). Count members against
//!    [`SkillLimits::max_entries`], classify them (regular file / directory / skipped)
//!    and validate *every* name, skipped members included: an absolute name, a `..`
//!    component or a NUL byte rejects the whole skill. Then decide wrapper stripping.
//! 3. **Pass 2 (extract)** into a fresh `stage` directory (0700): directories 0700,
//!    files opened with `O_CREAT|O_EXCL|O_NOFOLLOW` (a pre-planted symlink cannot
//!    redirect a write) and `fchmod`ed to 0755 (any exec bit in the archive) or 0644,
//!    so setuid/setgid/sticky/group-write never survive. Every byte written is counted
//!    against [`SkillLimits::max_total_bytes`] as it is decompressed.
//!
//! On any error the stage directory is removed again; nothing is ever written outside
//! it.
//!
//! Tar parsing uses `tar`'s *raw* entry iterator plus our own GNU long-name / PAX
//! `path` handling, in both passes, so that (a) both passes see exactly the same member
//! list by construction (pass 2 also re-checks each name against the plan) and (b) the
//! metadata members (`L`, `K`, `x`, `g`) are size-checked (≤ 1 MiB) before they are
//! read into memory — `tar`'s cooked iterator would buffer a hostile 500 MB long name.
//! The decompressed tar stream is capped at `max_total_bytes + max_entries × 8 KiB +
//! 1 MiB` (headers and padding), which bounds the CPU spent on a decompression bomb in
//! either pass. An xz stream whose dictionary would need more than 128 MiB is refused
//! before allocation.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use tar::EntryType;

use super::SkillLimits;

/// Largest GNU long-name/long-link or PAX header member we read into memory.
const MAX_META_BYTES: u64 = 1024 * 1024;
/// Per-member allowance for tar headers, padding and extension headers in the cap on
/// the decompressed tar stream.
const TAR_OVERHEAD_PER_ENTRY: u64 = 8 * 1024;
/// Fixed allowance (end-of-archive blocks, record padding) in that cap.
const TAR_OVERHEAD_FIXED: u64 = 1024 * 1024;
/// xz decoder memory limit (KiB): covers every `xz -0 … -9e` preset (64 MiB dictionary).
const XZ_MEM_LIMIT_KB: u32 = 128 * 1024;
/// Copy buffer size.
const BUF_SIZE: usize = 64 * 1024;

/// Why a skill archive was rejected. The whole skill is skipped for any of these.
#[derive(Debug, thiserror::Error)]
pub enum SkillError {
    /// A member is absolute, has a `..` component or contains a NUL byte.
    #[error("unsafe member name {0:?} (absolute path, `..` component or NUL byte)")]
    UnsafeMember(String),
    #[error("archive has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("archive expands to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("corrupt or truncated archive: {0}")]
    Corrupt(String),
    #[error("unsupported archive: {0}")]
    Unsupported(String),
    /// Two members collide (a file where a directory is needed, or vice versa).
    #[error("conflicting member {0:?}")]
    Conflict(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl SkillError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Detected archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Zip,
    Tar,
    TarGz,
    TarBz2,
    TarXz,
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Zip => "zip",
            Self::Tar => "tar",
            Self::TarGz => "tar.gz",
            Self::TarBz2 => "tar.bz2",
            Self::TarXz => "tar.xz",
        })
    }
}

/// What [`extract_archive`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractReport {
    pub format: ArchiveFormat,
    /// Regular files written.
    pub files: u64,
    /// Directories created below the stage.
    pub dirs: u64,
    /// Bytes written (decompressed).
    pub bytes: u64,
    /// The stripped wrapper directory, if any (lossy UTF-8).
    pub stripped_prefix: Option<String>,
    /// Members not extracted, as `name (reason)` (symlinks, hard links, devices …).
    pub skipped_members: Vec<String>,
}

/// Extract `archive` into the new directory `stage` (which must not exist; its parent
/// must). On error `stage` is removed again.
pub fn extract_archive(
    archive: &Path,
    stage: &Path,
    limits: &SkillLimits,
) -> Result<ExtractReport, SkillError> {
    let mut created = false;
    let result = extract_inner(archive, stage, limits, &mut created);
    if result.is_err() && created {
        if let Err(e) = fs::remove_dir_all(stage) {
            tracing::warn!(stage = %stage.display(), error = %e, "could not remove a failed skill stage");
        }
    }
    result
}

fn extract_inner(
    archive: &Path,
    stage: &Path,
    limits: &SkillLimits,
    created: &mut bool,
) -> Result<ExtractReport, SkillError> {
    let mut file = File::open(archive).map_err(|e| SkillError::io("open archive", e))?;
    let format = sniff(&mut file)?;
    match format {
        ArchiveFormat::Zip => extract_zip(file, stage, limits, created),
        _ => extract_tar(&file, format, stage, limits, created),
    }
}

// ---------------------------------------------------------------------------
// Format sniffing
// ---------------------------------------------------------------------------

fn sniff(file: &mut File) -> Result<ArchiveFormat, SkillError> {
    let mut head = [0u8; 512];
    let n = read_up_to(file, &mut head).map_err(|e| SkillError::io("read archive", e))?;
    let head = &head[..n];
    if n == 0 {
        return Err(SkillError::Corrupt("empty archive".into()));
    }
    let format = if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        ArchiveFormat::Zip
    } else if head.starts_with(&[0x1f, 0x8b]) {
        ArchiveFormat::TarGz
    } else if head.starts_with(b"BZh") {
        ArchiveFormat::TarBz2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        ArchiveFormat::TarXz
    } else if head.get(257..262) == Some(&b"ustar"[..]) {
        // A ustar/GNU header: a tar, even if a zip member near its end would make the
        // end-of-central-directory scan below say "zip".
        ArchiveFormat::Tar
    } else if zip_declared_entries(file)
        .map_err(|e| SkillError::io("read archive", e))?
        .is_some()
    {
        ArchiveFormat::Zip
    } else {
        ArchiveFormat::Tar
    };
    file.seek(SeekFrom::Start(0))
        .map_err(|e| SkillError::io("seek archive", e))?;
    Ok(format)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn le16(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 2)
        .map(|s| u64::from(u16::from_le_bytes([s[0], s[1]])))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

/// Find the zip end-of-central-directory record in the last 64 KiB and return the
/// declared total number of entries (zip64-aware). `None` = not a zip.
///
/// Checked before `zip` parses the central directory, so a hostile count cannot make
/// it materialise millions of entries in memory.
fn zip_declared_entries(file: &mut File) -> io::Result<Option<u64>> {
    const EOCD: &[u8] = b"PK\x05\x06";
    let len = file.metadata()?.len();
    if len < 22 {
        return Ok(None);
    }
    let tail_len = len.min(22 + 65_535);
    let tail_start = len - tail_len;
    file.seek(SeekFrom::Start(tail_start))?;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact(&mut tail)?;
    let Some(pos) = (0..=tail.len() - 22)
        .rev()
        .find(|&p| &tail[p..p + 4] == EOCD)
    else {
        return Ok(None);
    };
    let entries16 = le16(&tail, pos + 10).unwrap_or(0);
    if entries16 != 0xffff {
        return Ok(Some(entries16));
    }
    // zip64: locator 20 bytes before the EOCD record.
    let zip64 = (|| -> io::Result<Option<u64>> {
        let Some(loc) = pos.checked_sub(20) else {
            return Ok(None);
        };
        if &tail[loc..loc + 4] != b"PK\x06\x07" {
            return Ok(None);
        }
        let Some(off) = le64(&tail, loc + 8) else {
            return Ok(None);
        };
        if off.saturating_add(56) > len {
            return Ok(None);
        }
        file.seek(SeekFrom::Start(off))?;
        let mut rec = [0u8; 56];
        file.read_exact(&mut rec)?;
        if &rec[..4] != b"PK\x06\x06" {
            return Ok(None);
        }
        Ok(le64(&rec, 32))
    })()?;
    Ok(Some(zip64.unwrap_or(entries16)))
}

// ---------------------------------------------------------------------------
// Plan: name validation, classification, wrapper stripping
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File { exec: bool },
    Skip(&'static str),
}

/// One member as read in pass 1.
struct RawMember {
    name: Vec<u8>,
    kind: Kind,
}

/// A member to create, relative to the stage.
#[derive(Debug, Clone)]
struct Target {
    comps: Vec<Vec<u8>>,
    kind: Kind,
}

struct Plan {
    /// Raw names, index-aligned with the archive's members (tar pass-2 check).
    names: Vec<Vec<u8>>,
    targets: Vec<Option<Target>>,
    stripped_prefix: Option<String>,
    skipped: Vec<String>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Split a member name into its components: backslashes count as `/`, empty and `.`
/// components are dropped; absolute names, `..` components and NUL bytes are unsafe.
fn normalize(name: &[u8]) -> Result<Vec<Vec<u8>>, SkillError> {
    let unsafe_name = || SkillError::UnsafeMember(lossy(name));
    if name.contains(&0) {
        return Err(unsafe_name());
    }
    let name: Vec<u8> = name
        .iter()
        .map(|&b| if b == b'\\' { b'/' } else { b })
        .collect();
    if name.first() == Some(&b'/') {
        return Err(unsafe_name());
    }
    let mut comps = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_name()),
            c => comps.push(c.to_vec()),
        }
    }
    Ok(comps)
}

fn build_plan(raw: Vec<RawMember>) -> Result<Plan, SkillError> {
    // Validate every name before anything else.
    let mut normalized = Vec::with_capacity(raw.len());
    for m in &raw {
        normalized.push(normalize(&m.name)?);
    }
    let plain = || {
        raw.iter()
            .zip(&normalized)
            .filter(|(m, c)| !matches!(m.kind, Kind::Skip(_)) && !c.is_empty())
    };
    let top = plain().next().map(|(_, c)| c[0].clone());
    let strip = top.as_ref().is_some_and(|top| {
        plain().all(|(m, c)| &c[0] == top && (c.len() > 1 || m.kind == Kind::Dir))
            && plain().any(|(_, c)| c.len() > 1)
    });
    let mut names = Vec::with_capacity(raw.len());
    let mut targets = Vec::with_capacity(raw.len());
    let mut skipped = Vec::new();
    for (m, comps) in raw.into_iter().zip(normalized) {
        let target = match m.kind {
            Kind::Skip(reason) => {
                skipped.push(format!("{} ({reason})", lossy(&m.name)));
                None
            }
            kind => {
                let comps = if strip && !comps.is_empty() {
                    comps[1..].to_vec()
                } else {
                    comps
                };
                (!comps.is_empty()).then_some(Target { comps, kind })
            }
        };
        names.push(m.name);
        targets.push(target);
    }
    Ok(Plan {
        names,
        targets,
        stripped_prefix: if strip { top.map(|t| lossy(&t)) } else { None },
        skipped,
    })
}

// ---------------------------------------------------------------------------
// Stage: confined directory/file creation with byte accounting
// ---------------------------------------------------------------------------

struct Stage {
    root: PathBuf,
    known_dirs: HashSet<Vec<Vec<u8>>>,
    limit: u64,
    bytes: u64,
    files: u64,
    dirs: u64,
    buf: Vec<u8>,
}

fn display_comps(comps: &[Vec<u8>]) -> String {
    lossy(&comps.join(&b'/'))
}

impl Stage {
    fn create(root: &Path, limits: &SkillLimits, created: &mut bool) -> Result<Self, SkillError> {
        DirBuilder::new()
            .mode(0o700)
            .create(root)
            .map_err(|e| SkillError::io("create stage directory", e))?;
        *created = true;
        fs::set_permissions(root, Permissions::from_mode(0o700))
            .map_err(|e| SkillError::io("chmod stage directory", e))?;
        Ok(Self {
            root: root.to_path_buf(),
            known_dirs: HashSet::new(),
            limit: limits.max_total_bytes,
            bytes: 0,
            files: 0,
            dirs: 0,
            buf: vec![0; BUF_SIZE],
        })
    }

    /// The path of `comps` below the stage; re-checks confinement.
    fn path(&self, comps: &[Vec<u8>]) -> Result<PathBuf, SkillError> {
        let mut p = self.root.clone();
        for c in comps {
            let c = OsStr::from_bytes(c);
            let ok = !c.is_empty()
                && c != "."
                && c != ".."
                && !c.as_bytes().contains(&b'/')
                && !c.as_bytes().contains(&0);
            if !ok {
                return Err(SkillError::UnsafeMember(display_comps(comps)));
            }
            p.push(c);
        }
        if !p.starts_with(&self.root) {
            return Err(SkillError::UnsafeMember(display_comps(comps)));
        }
        Ok(p)
    }

    fn ensure_dir(&mut self, comps: &[Vec<u8>]) -> Result<(), SkillError> {
        for i in 1..=comps.len() {
            if self.known_dirs.contains(&comps[..i]) {
                continue;
            }
            let p = self.path(&comps[..i])?;
            match DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => {
                    fs::set_permissions(&p, Permissions::from_mode(0o700))
                        .map_err(|e| SkillError::io("chmod directory", e))?;
                    self.dirs += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let md = fs::symlink_metadata(&p)
                        .map_err(|e| SkillError::io("stat directory", e))?;
                    if !md.file_type().is_dir() {
                        return Err(SkillError::Conflict(display_comps(&comps[..i])));
                    }
                }
                Err(e) => {
                    return Err(SkillError::io(
                        format!("create directory {:?}", display_comps(&comps[..i])),
                        e,
                    ));
                }
            }
            self.known_dirs.insert(comps[..i].to_vec());
        }
        Ok(())
    }

    fn open_new(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    }

    /// Create `comps` as a new regular file with the contents of `data`.
    /// `is_tripped` tells whether a read error came from the stream cap.
    fn write_file(
        &mut self,
        comps: &[Vec<u8>],
        exec: bool,
        data: &mut dyn Read,
        is_tripped: &dyn Fn() -> bool,
    ) -> Result<(), SkillError> {
        let (_, parent) = comps.split_last().expect("targets are never empty");
        self.ensure_dir(parent)?;
        let path = self.path(comps)?;
        let shown = display_comps(comps);
        let mut file = match Self::open_new(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A duplicate member: like tar, the later one wins — but only over a
                // regular file we wrote, never through a directory or symlink.
                let md = fs::symlink_metadata(&path).map_err(|e| SkillError::io("stat file", e))?;
                if !md.file_type().is_file() {
                    return Err(SkillError::Conflict(shown));
                }
                fs::remove_file(&path).map_err(|e| SkillError::io("replace file", e))?;
                self.files -= 1;
                Self::open_new(&path)
                    .map_err(|e| SkillError::io(format!("create file {shown:?}"), e))?
            }
            Err(e) => return Err(SkillError::io(format!("create file {shown:?}"), e)),
        };
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) if is_tripped() => return Err(SkillError::TooLarge { limit: self.limit }),
                Err(e) => return Err(SkillError::Corrupt(format!("reading {shown:?}: {e}"))),
            };
            if self.bytes.saturating_add(n as u64) > self.limit {
                return Err(SkillError::TooLarge { limit: self.limit });
            }
            self.bytes += n as u64;
            file.write_all(&self.buf[..n])
                .map_err(|e| SkillError::io(format!("write file {shown:?}"), e))?;
        }
        let md = file
            .metadata()
            .map_err(|e| SkillError::io("stat file", e))?;
        if md.nlink() != 1 || !md.file_type().is_file() {
            return Err(SkillError::Conflict(shown));
        }
        let mode = if exec { 0o755 } else { 0o644 };
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| SkillError::io("chmod file", e))?;
        self.files += 1;
        Ok(())
    }

    fn report(
        self,
        format: ArchiveFormat,
        stripped_prefix: Option<String>,
        skipped: Vec<String>,
    ) -> ExtractReport {
        ExtractReport {
            format,
            files: self.files,
            dirs: self.dirs,
            bytes: self.bytes,
            stripped_prefix,
            skipped_members: skipped,
        }
    }
}

// ---------------------------------------------------------------------------
// zip
// ---------------------------------------------------------------------------

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFSOCK: u32 = 0o140_000;

fn zip_kind(name: &str, mode: Option<u32>) -> Kind {
    let mode = mode.unwrap_or(0);
    let exec = mode & 0o111 != 0;
    let dir_name = name.ends_with('/') || name.ends_with('\\');
    match mode & S_IFMT {
        0 | S_IFREG if dir_name => Kind::Dir,
        0 | S_IFREG => Kind::File { exec },
        S_IFDIR => Kind::Dir,
        S_IFLNK => Kind::Skip("symlink"),
        S_IFCHR | S_IFBLK => Kind::Skip("device"),
        S_IFIFO => Kind::Skip("fifo"),
        S_IFSOCK => Kind::Skip("socket"),
        _ => Kind::Skip("unknown file type"),
    }
}

fn zip_error(e: zip::result::ZipError) -> SkillError {
    use zip::result::ZipError;
    match e {
        ZipError::UnsupportedArchive(m) => SkillError::Unsupported(format!("zip: {m}")),
        ZipError::Io(e) => SkillError::Corrupt(format!("zip: {e}")),
        e => SkillError::Corrupt(format!("zip: {e}")),
    }
}

fn extract_zip(
    mut file: File,
    stage: &Path,
    limits: &SkillLimits,
    created: &mut bool,
) -> Result<ExtractReport, SkillError> {
    let declared = zip_declared_entries(&mut file).map_err(|e| SkillError::io("read zip", e))?;
    if declared.is_some_and(|n| n > limits.max_entries) {
        return Err(SkillError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| SkillError::io("seek zip", e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_error)?;
    if zip.len() as u64 > limits.max_entries {
        return Err(SkillError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    // Pass 1: names and types from the central directory.
    let mut raw = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(zip_error)?;
        raw.push(RawMember {
            name: entry.name().as_bytes().to_vec(),
            kind: zip_kind(entry.name(), entry.unix_mode()),
        });
    }
    let plan = build_plan(raw)?;
    // Pass 2.
    let mut st = Stage::create(stage, limits, created)?;
    for (i, target) in plan.targets.iter().enumerate() {
        let Some(t) = target else { continue };
        match t.kind {
            Kind::Dir => st.ensure_dir(&t.comps)?,
            Kind::File { exec } => {
                let mut entry = zip.by_index(i).map_err(zip_error)?;
                st.write_file(&t.comps, exec, &mut entry, &|| false)?;
            }
            Kind::Skip(_) => {}
        }
    }
    Ok(st.report(ArchiveFormat::Zip, plan.stripped_prefix, plan.skipped))
}

// ---------------------------------------------------------------------------
// tar (+ gzip / bzip2 / xz)
// ---------------------------------------------------------------------------

/// A reader that fails once more than `remaining` bytes would be read, recording that
/// in `tripped` (errors pass through `tar`, which may rewrap them).
struct CappedReader<R> {
    inner: R,
    remaining: u64,
    tripped: Rc<Cell<bool>>,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.tripped.set(true);
                    Err(io::Error::other("archive stream exceeds the size cap"))
                }
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn tar_stream<'a>(
    file: &'a File,
    format: ArchiveFormat,
    cap: u64,
    tripped: &Rc<Cell<bool>>,
) -> Result<CappedReader<Box<dyn Read + 'a>>, SkillError> {
    let mut f = file;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| SkillError::io("seek archive", e))?;
    let buffered = BufReader::new(f);
    let inner: Box<dyn Read + 'a> = match format {
        ArchiveFormat::TarGz => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        ArchiveFormat::TarBz2 => Box::new(bzip2::read::MultiBzDecoder::new(buffered)),
        ArchiveFormat::TarXz => Box::new(lzma_rust2::XzReader::new_mem_limit(
            buffered,
            true,
            XZ_MEM_LIMIT_KB,
        )),
        ArchiveFormat::Tar | ArchiveFormat::Zip => Box::new(buffered),
    };
    tripped.set(false);
    Ok(CappedReader {
        inner,
        remaining: cap,
        tripped: Rc::clone(tripped),
    })
}

/// Header facts of one tar member (after long-name / PAX `path` resolution).
struct TarMember {
    name: Vec<u8>,
    etype: EntryType,
    mode: u32,
    size: u64,
}

fn tar_kind(etype: EntryType, mode: u32) -> Kind {
    match etype {
        EntryType::Regular | EntryType::Continuous => Kind::File {
            exec: mode & 0o111 != 0,
        },
        EntryType::Directory => Kind::Dir,
        EntryType::Symlink => Kind::Skip("symlink"),
        EntryType::Link => Kind::Skip("hard link"),
        EntryType::Char | EntryType::Block => Kind::Skip("device"),
        EntryType::Fifo => Kind::Skip("fifo"),
        EntryType::GNUSparse => Kind::Skip("sparse file"),
        _ => Kind::Skip("unsupported member type"),
    }
}

fn read_meta(entry: &mut impl Read, size: u64, what: &str) -> Result<Vec<u8>, SkillError> {
    if size > MAX_META_BYTES {
        return Err(SkillError::Unsupported(format!(
            "{what} of {size} bytes (limit {MAX_META_BYTES})"
        )));
    }
    let mut v = Vec::with_capacity(size as usize);
    entry
        .read_to_end(&mut v)
        .map_err(|e| SkillError::Corrupt(format!("reading {what}: {e}")))?;
    Ok(v)
}

fn strip_nuls(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// Walk the members of a tar stream with `tar`'s raw iterator, resolving GNU long
/// names and PAX `path` records ourselves (identically in both passes).
fn walk_tar(
    reader: &mut dyn Read,
    tripped: &Rc<Cell<bool>>,
    limit: u64,
    visit: &mut dyn FnMut(TarMember, &mut dyn Read) -> Result<(), SkillError>,
) -> Result<(), SkillError> {
    let map = |e: io::Error| {
        if tripped.get() {
            SkillError::TooLarge { limit }
        } else {
            SkillError::Corrupt(format!("tar: {e}"))
        }
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(map)?.raw(true);
    let mut long_name: Option<Vec<u8>> = None;
    let mut pax_path: Option<Vec<u8>> = None;
    let mut pending_meta = false;
    for entry in entries {
        let mut entry = entry.map_err(map)?;
        let etype = entry.header().entry_type();
        let size = entry.header().entry_size().map_err(map)?;
        match etype {
            EntryType::GNULongName => {
                if long_name.is_some() {
                    return Err(SkillError::Corrupt(
                        "two GNU long names for one member".into(),
                    ));
                }
                long_name = Some(strip_nuls(read_meta(&mut entry, size, "GNU long name")?));
                pending_meta = true;
            }
            EntryType::GNULongLink => {
                read_meta(&mut entry, size, "GNU long link name")?;
                pending_meta = true;
            }
            EntryType::XHeader => {
                let data = read_meta(&mut entry, size, "PAX header")?;
                for rec in tar::PaxExtensions::new(&data) {
                    let rec = rec.map_err(|e| SkillError::Corrupt(format!("PAX header: {e}")))?;
                    match rec.key_bytes() {
                        b"path" => pax_path = Some(rec.value_bytes().to_vec()),
                        // The raw iterator would not apply a PAX size override, so the
                        // two views of the stream would diverge: refuse it (only
                        // needed for members > 8 GiB, far above any cap).
                        b"size" => {
                            return Err(SkillError::Unsupported(
                                "PAX size override (member larger than 8 GiB)".into(),
                            ));
                        }
                        _ => {}
                    }
                }
                pending_meta = true;
            }
            EntryType::XGlobalHeader => {
                // Archive-wide metadata, not a member. Read (bounded) so an oversized
                // one is refused; the contents are unused.
                read_meta(&mut entry, size, "PAX global header")?;
            }
            _ => {
                let name = match (long_name.take(), pax_path.take()) {
                    (Some(n), _) => n,
                    (None, Some(p)) => p,
                    (None, None) => entry.header().path_bytes().into_owned(),
                };
                pending_meta = false;
                let mode = entry.header().mode().unwrap_or(0);
                visit(
                    TarMember {
                        name,
                        etype,
                        mode,
                        size,
                    },
                    &mut entry,
                )?;
            }
        }
    }
    if pending_meta {
        return Err(SkillError::Corrupt(
            "extension header without a following member".into(),
        ));
    }
    Ok(())
}

fn extract_tar(
    file: &File,
    format: ArchiveFormat,
    stage: &Path,
    limits: &SkillLimits,
    created: &mut bool,
) -> Result<ExtractReport, SkillError> {
    let cap = limits
        .max_total_bytes
        .saturating_add(limits.max_entries.saturating_mul(TAR_OVERHEAD_PER_ENTRY))
        .saturating_add(TAR_OVERHEAD_FIXED);
    let tripped = Rc::new(Cell::new(false));
    let limit = limits.max_total_bytes;

    // Pass 1: every header, data skipped.
    let mut raw = Vec::new();
    let mut declared: u64 = 0;
    {
        let mut stream = tar_stream(file, format, cap, &tripped)?;
        walk_tar(&mut stream, &tripped, limit, &mut |m, _| {
            if raw.len() as u64 >= limits.max_entries {
                return Err(SkillError::TooManyEntries {
                    limit: limits.max_entries,
                });
            }
            let kind = tar_kind(m.etype, m.mode);
            if let Kind::File { .. } = kind {
                declared = declared.saturating_add(m.size);
                if declared > limit {
                    return Err(SkillError::TooLarge { limit });
                }
            }
            raw.push(RawMember { name: m.name, kind });
            Ok(())
        })?;
    }
    let plan = build_plan(raw)?;

    // Pass 2: extract.
    let mut st = Stage::create(stage, limits, created)?;
    let mut stream = tar_stream(file, format, cap, &tripped)?;
    let mut index = 0usize;
    let is_tripped = || tripped.get();
    walk_tar(&mut stream, &tripped, limit, &mut |m, data| {
        let i = index;
        index += 1;
        if plan.names.get(i) != Some(&m.name) {
            return Err(SkillError::Corrupt(
                "member list differs between passes".into(),
            ));
        }
        match &plan.targets[i] {
            None => Ok(()),
            Some(t) => match t.kind {
                Kind::Dir => st.ensure_dir(&t.comps),
                Kind::File { exec } => st.write_file(&t.comps, exec, data, &is_tripped),
                Kind::Skip(_) => Ok(()),
            },
        }
    })?;
    if index != plan.names.len() {
        return Err(SkillError::Corrupt(
            "member list differs between passes".into(),
        ));
    }
    Ok(st.report(format, plan.stripped_prefix, plan.skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::os::unix::fs::symlink;

    use zip::write::SimpleFileOptions;

    fn limits() -> SkillLimits {
        SkillLimits::default()
    }

    fn small(bytes: u64, entries: u64) -> SkillLimits {
        SkillLimits {
            max_total_bytes: bytes,
            max_entries: entries,
        }
    }

    /// Write `bytes` as the archive in a fresh temp dir; return (dir, archive, stage).
    fn setup(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        fs::write(&archive, bytes).unwrap();
        let stage = dir.path().join("stage");
        (dir, archive, stage)
    }

    fn run(
        bytes: &[u8],
        limits: &SkillLimits,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        Result<ExtractReport, SkillError>,
    ) {
        let (dir, archive, stage) = setup(bytes);
        let r = extract_archive(&archive, &stage, limits);
        (dir, stage, r)
    }

    /// Every path below `root`, relative, sorted; directories end with `/`.
    fn tree(root: &Path) -> Vec<String> {
        let mut v: Vec<String> = walkdir::WalkDir::new(root)
            .min_depth(1)
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if e.file_type().is_dir() {
                    format!("{rel}/")
                } else {
                    rel
                }
            })
            .collect();
        v.sort();
        v
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// Only the archive (and nothing else) is left beside the failed stage.
    fn assert_nothing_written(dir: &tempfile::TempDir) {
        assert_eq!(tree(dir.path()), vec!["archive".to_string()]);
    }

    // ---- builders -------------------------------------------------------

    enum Z<'a> {
        File(&'a str, &'a [u8], Option<u32>),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
    }

    fn zip_bytes(members: &[Z]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let base =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for m in members {
            match m {
                Z::File(name, data, perm) => {
                    let o = match perm {
                        Some(p) => base.unix_permissions(*p),
                        None => base,
                    };
                    w.start_file(*name, o).unwrap();
                    w.write_all(data).unwrap();
                }
                Z::Dir(name) => w.add_directory(*name, base).unwrap(),
                Z::Symlink(name, target) => w.add_symlink(*name, *target, base).unwrap(),
            }
        }
        w.finish().unwrap().into_inner()
    }

    #[derive(Clone, Copy)]
    enum T<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Fifo(&'a str),
        /// Name written verbatim into the header (bypasses the builder's checks).
        RawFile(&'a [u8], &'a [u8]),
    }

    fn header(etype: EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(etype);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(0);
        h
    }

    fn tar_bytes(members: &[T]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for m in members {
            match *m {
                T::File(name, data, mode) => {
                    let mut h = header(EntryType::Regular, data.len() as u64, mode);
                    b.append_data(&mut h, name, data).unwrap();
                }
                T::Dir(name) => {
                    let mut h = header(EntryType::Directory, 0, 0o755);
                    b.append_data(&mut h, name, io::empty()).unwrap();
                }
                T::Symlink(name, target) => {
                    let mut h = header(EntryType::Symlink, 0, 0o777);
                    b.append_link(&mut h, name, target).unwrap();
                }
                T::Hardlink(name, target) => {
                    let mut h = header(EntryType::Link, 0, 0o644);
                    b.append_link(&mut h, name, target).unwrap();
                }
                T::Fifo(name) => {
                    let mut h = header(EntryType::Fifo, 0, 0o644);
                    b.append_data(&mut h, name, io::empty()).unwrap();
                }
                T::RawFile(name, data) => {
                    let mut h = header(EntryType::Regular, data.len() as u64, 0o644);
                    let gnu = h.as_gnu_mut().unwrap();
                    gnu.name = [0; 100];
                    gnu.name[..name.len()].copy_from_slice(name);
                    h.set_cksum();
                    b.append(&h, data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn bz2(data: &[u8]) -> Vec<u8> {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut e =
            lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    const SKILL: &[u8] = b"---\nname: pdf\n---\n# PDF\n";

    fn wrapped_tar() -> Vec<u8> {
        tar_bytes(&[
            T::Dir("pdf/"),
            T::File("pdf/SKILL.md", SKILL, 0o644),
            T::Dir("pdf/scripts/"),
            T::File("pdf/scripts/run.sh", b"#!/bin/sh\necho hi\n", 0o755),
        ])
    }

    // ---- formats and wrapper stripping ---------------------------------

    #[test]
    fn zip_with_top_folder_is_stripped() {
        let bytes = zip_bytes(&[
            Z::Dir("pdf/"),
            Z::File("pdf/SKILL.md", SKILL, Some(0o644)),
            Z::File("pdf/scripts/run.sh", b"#!/bin/sh\n", Some(0o755)),
        ]);
        let (_d, stage, r) = run(&bytes, &limits());
        let r = r.unwrap();
        assert_eq!(r.format, ArchiveFormat::Zip);
        assert_eq!(r.stripped_prefix.as_deref(), Some("pdf"));
        assert_eq!(r.files, 2);
        assert_eq!(tree(&stage), ["SKILL.md", "scripts/", "scripts/run.sh"]);
        assert_eq!(fs::read(stage.join("SKILL.md")).unwrap(), SKILL);
        assert_eq!(r.bytes, (SKILL.len() + 10) as u64);
    }

    #[test]
    fn zip_without_directory_entries_is_stripped_too() {
        let bytes = zip_bytes(&[Z::File("pdf/SKILL.md", SKILL, None)]);
        let (_d, stage, r) = run(&bytes, &limits());
        assert_eq!(r.unwrap().stripped_prefix.as_deref(), Some("pdf"));
        assert_eq!(tree(&stage), ["SKILL.md"]);
    }

    #[test]
    fn tar_gz_with_top_folder_is_stripped() {
        let (_d, stage, r) = run(&gz(&wrapped_tar()), &limits());
        let r = r.unwrap();
        assert_eq!(r.format, ArchiveFormat::TarGz);
        assert_eq!(r.stripped_prefix.as_deref(), Some("pdf"));
        assert_eq!(tree(&stage), ["SKILL.md", "scripts/", "scripts/run.sh"]);
        assert_eq!(
            fs::read(stage.join("scripts/run.sh")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
    }

    #[test]
    fn tar_bz2_and_tar_xz_and_plain_tar() {
        for (bytes, format) in [
            (bz2(&wrapped_tar()), ArchiveFormat::TarBz2),
            (xz(&wrapped_tar()), ArchiveFormat::TarXz),
            (wrapped_tar(), ArchiveFormat::Tar),
        ] {
            let (_d, stage, r) = run(&bytes, &limits());
            let r = r.unwrap();
            assert_eq!(r.format, format);
            assert_eq!(
                tree(&stage),
                ["SKILL.md", "scripts/", "scripts/run.sh"],
                "{format}"
            );
            assert_eq!(fs::read(stage.join("SKILL.md")).unwrap(), SKILL);
        }
    }

    #[test]
    fn flat_and_multi_root_archives_are_kept_as_is() {
        let flat = zip_bytes(&[
            Z::File("SKILL.md", SKILL, None),
            Z::File("ref.md", b"r", None),
        ]);
        let (_d, stage, r) = run(&flat, &limits());
        assert_eq!(r.unwrap().stripped_prefix, None);
        assert_eq!(tree(&stage), ["SKILL.md", "ref.md"]);

        let multi = tar_bytes(&[
            T::File("a/SKILL.md", SKILL, 0o644),
            T::File("b/x", b"x", 0o644),
        ]);
        let (_d, stage, r) = run(&multi, &limits());
        assert_eq!(r.unwrap().stripped_prefix, None);
        assert_eq!(tree(&stage), ["a/", "a/SKILL.md", "b/", "b/x"]);

        // A single top-level *file* is not a wrapper.
        let single = tar_bytes(&[T::File("SKILL.md", SKILL, 0o644)]);
        let (_d, stage, r) = run(&single, &limits());
        assert_eq!(r.unwrap().stripped_prefix, None);
        assert_eq!(tree(&stage), ["SKILL.md"]);

        // A lone directory with nothing below it is not stripped either.
        let lone = tar_bytes(&[T::Dir("pdf/")]);
        let (_d, stage, r) = run(&lone, &limits());
        assert_eq!(r.unwrap().stripped_prefix, None);
        assert_eq!(tree(&stage), ["pdf/"]);
    }

    #[test]
    fn skipped_members_do_not_prevent_stripping() {
        let bytes = tar_bytes(&[
            T::File("pdf/SKILL.md", SKILL, 0o644),
            T::Symlink("evil", "/etc/passwd"),
        ]);
        let (_d, stage, r) = run(&bytes, &limits());
        let r = r.unwrap();
        assert_eq!(r.stripped_prefix.as_deref(), Some("pdf"));
        assert_eq!(tree(&stage), ["SKILL.md"]);
        assert_eq!(r.skipped_members, ["evil (symlink)"]);
    }

    #[test]
    fn dot_components_and_backslashes_are_normalised() {
        let bytes = zip_bytes(&[
            Z::File("./pdf/./SKILL.md", SKILL, None),
            Z::File("pdf\\scripts\\x.py", b"x", None),
        ]);
        let (_d, stage, r) = run(&bytes, &limits());
        assert_eq!(r.unwrap().stripped_prefix.as_deref(), Some("pdf"));
        assert_eq!(tree(&stage), ["SKILL.md", "scripts/", "scripts/x.py"]);
    }

    #[test]
    fn long_names_via_gnu_and_pax_headers() {
        let long = format!("pdf/{}/SKILL.md", "d".repeat(150));
        // GNU long name (the builder emits an `L` member for > 100 bytes).
        let gnu = tar_bytes(&[T::File(&long, SKILL, 0o644)]);
        let (_d, stage, r) = run(&gnu, &limits());
        r.unwrap();
        assert_eq!(fs::read(stage.join(&long[4..])).unwrap(), SKILL);

        // PAX `path` record.
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("path", long.as_bytes())])
            .unwrap();
        let mut h = header(EntryType::Regular, SKILL.len() as u64, 0o644);
        h.set_path("short").unwrap();
        h.set_cksum();
        b.append(&h, SKILL).unwrap();
        let (_d, stage, r) = run(&b.into_inner().unwrap(), &limits());
        r.unwrap();
        assert_eq!(fs::read(stage.join(&long[4..])).unwrap(), SKILL);
    }

    // ---- modes ------------------------------------------------------------

    #[test]
    fn modes_exec_plain_setuid_and_dirs() {
        let bytes = tar_bytes(&[
            T::Dir("pdf/"),
            T::File("pdf/run.sh", b"x", 0o700),
            T::File("pdf/plain.md", b"x", 0o664),
            T::File("pdf/suid", b"x", 0o4755),
            T::File("pdf/sgid-gw", b"x", 0o2674),
            T::File("pdf/sticky", b"x", 0o1600),
            T::File("pdf/nested/deep/f", b"x", 0o010),
        ]);
        let (_d, stage, r) = run(&bytes, &limits());
        r.unwrap();
        assert_eq!(mode(&stage), 0o700);
        assert_eq!(mode(&stage.join("run.sh")), 0o755);
        assert_eq!(mode(&stage.join("plain.md")), 0o644);
        assert_eq!(mode(&stage.join("suid")), 0o755);
        assert_eq!(mode(&stage.join("sgid-gw")), 0o755);
        assert_eq!(mode(&stage.join("sticky")), 0o644);
        assert_eq!(mode(&stage.join("nested")), 0o700);
        assert_eq!(mode(&stage.join("nested/deep")), 0o700);
        assert_eq!(mode(&stage.join("nested/deep/f")), 0o755);
    }

    #[test]
    fn zip_modes_follow_the_exec_bit() {
        let bytes = zip_bytes(&[
            Z::File("a/run.sh", b"x", Some(0o755)),
            Z::File("a/doc.md", b"x", Some(0o666)),
            Z::File("a/nomode", b"x", None),
            Z::Dir("a/sub/"),
        ]);
        let (_d, stage, r) = run(&bytes, &limits());
        r.unwrap();
        assert_eq!(mode(&stage.join("run.sh")), 0o755);
        assert_eq!(mode(&stage.join("doc.md")), 0o644);
        assert_eq!(mode(&stage.join("nomode")), 0o644);
        assert_eq!(mode(&stage.join("sub")), 0o700);
    }

    #[test]
    fn zip_kind_classification() {
        assert_eq!(zip_kind("a", None), Kind::File { exec: false });
        assert_eq!(zip_kind("a/", None), Kind::Dir);
        assert_eq!(zip_kind("a", Some(0o100_755)), Kind::File { exec: true });
        assert_eq!(zip_kind("a", Some(0o755)), Kind::File { exec: true });
        assert_eq!(zip_kind("a", Some(0o040_755)), Kind::Dir);
        assert_eq!(zip_kind("a", Some(0o120_777)), Kind::Skip("symlink"));
        assert_eq!(zip_kind("a", Some(0o140_777)), Kind::Skip("socket"));
        assert_eq!(zip_kind("a", Some(0o010_644)), Kind::Skip("fifo"));
        assert_eq!(zip_kind("a", Some(0o020_644)), Kind::Skip("device"));
        assert_eq!(zip_kind("a", Some(0o060_644)), Kind::Skip("device"));
    }

    // ---- unsafe names -----------------------------------------------------

    #[test]
    fn zip_slip_rejects_the_whole_skill() {
        for name in [
            "../evil",
            "pdf/../../evil",
            "pdf\\..\\..\\evil",
            "/etc/evil",
            "\\evil",
        ] {
            let bytes = zip_bytes(&[
                Z::File("pdf/SKILL.md", SKILL, None),
                Z::File(name, b"x", None),
            ]);
            let (d, _stage, r) = run(&bytes, &limits());
            assert!(
                matches!(r, Err(SkillError::UnsafeMember(_))),
                "{name}: {r:?}"
            );
            assert_nothing_written(&d);
            assert!(!d.path().parent().unwrap().join("evil").exists());
        }
    }

    #[test]
    fn tar_slip_and_absolute_members_reject_the_whole_skill() {
        for name in [&b"../evil"[..], b"pdf/../../evil", b"/etc/evil", b"a/.."] {
            let bytes = tar_bytes(&[
                T::File("pdf/SKILL.md", SKILL, 0o644),
                T::RawFile(name, b"x"),
            ]);
            let (d, _stage, r) = run(&gz(&bytes), &limits());
            assert!(matches!(r, Err(SkillError::UnsafeMember(_))), "{r:?}");
            assert_nothing_written(&d);
        }
        // Even as a skipped member type (a symlink), and even when it comes first.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(EntryType::Symlink, 0, 0o777);
        h.as_gnu_mut().unwrap().name[..7].copy_from_slice(b"../link");
        h.set_link_name("x").unwrap();
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
        let mut h = header(EntryType::Regular, 1, 0o644);
        h.set_path("ok").unwrap();
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let (d, _stage, r) = run(&b.into_inner().unwrap(), &limits());
        assert!(matches!(r, Err(SkillError::UnsafeMember(_))), "{r:?}");
        assert_nothing_written(&d);
    }

    #[test]
    fn normalize_rules() {
        let n = |s: &[u8]| normalize(s).map(|c| c.iter().map(|c| lossy(c)).collect::<Vec<_>>());
        assert_eq!(n(b"a/b").unwrap(), ["a", "b"]);
        assert_eq!(n(b"./a//b/.").unwrap(), ["a", "b"]);
        assert_eq!(n(b"a\\b").unwrap(), ["a", "b"]);
        assert!(n(b"./").unwrap().is_empty());
        assert_eq!(n(b"a..b/..c").unwrap(), ["a..b", "..c"]);
        assert!(n(b"/a").is_err());
        assert!(n(b"\\a").is_err());
        assert!(n(b"a/../b").is_err());
        assert!(n(b"..").is_err());
        assert!(n(b"a\0b").is_err());
    }

    // ---- links and special members ---------------------------------------

    #[test]
    fn zip_symlink_member_is_skipped() {
        let bytes = zip_bytes(&[
            Z::File("pdf/SKILL.md", SKILL, Some(0o644)),
            Z::Symlink("pdf/passwd", "/etc/passwd"),
        ]);
        let (_d, stage, r) = run(&bytes, &limits());
        let r = r.unwrap();
        assert_eq!(tree(&stage), ["SKILL.md"]);
        assert_eq!(r.skipped_members, ["pdf/passwd (symlink)"]);
    }

    #[test]
    fn tar_symlink_hardlink_and_fifo_are_skipped() {
        let bytes = tar_bytes(&[
            T::File("pdf/SKILL.md", SKILL, 0o644),
            T::Symlink("pdf/passwd", "/etc/passwd"),
            T::Hardlink("pdf/hard", "pdf/SKILL.md"),
            T::Fifo("pdf/fifo"),
            T::File("pdf/ref.md", b"ref", 0o644),
        ]);
        let (_d, stage, r) = run(&bytes, &limits());
        let r = r.unwrap();
        assert_eq!(tree(&stage), ["SKILL.md", "ref.md"]);
        assert_eq!(
            r.skipped_members,
            [
                "pdf/passwd (symlink)",
                "pdf/hard (hard link)",
                "pdf/fifo (fifo)"
            ]
        );
        assert_eq!(fs::metadata(stage.join("SKILL.md")).unwrap().nlink(), 1);
    }

    #[test]
    fn a_pre_planted_symlink_cannot_redirect_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"original").unwrap();
        let mut created = false;
        let mut st = Stage::create(&dir.path().join("stage"), &limits(), &mut created).unwrap();
        symlink(&outside, dir.path().join("stage/x")).unwrap();
        symlink(dir.path(), dir.path().join("stage/d")).unwrap();
        let r = st.write_file(&[b"x".to_vec()], false, &mut &b"evil"[..], &|| false);
        assert!(matches!(r, Err(SkillError::Conflict(_))), "{r:?}");
        let r = st.write_file(
            &[b"d".to_vec(), b"y".to_vec()],
            false,
            &mut &b"evil"[..],
            &|| false,
        );
        assert!(matches!(r, Err(SkillError::Conflict(_))), "{r:?}");
        assert_eq!(fs::read(&outside).unwrap(), b"original");
        assert!(!dir.path().join("y").exists());
    }

    #[test]
    fn duplicate_file_later_wins_and_file_dir_clash_is_rejected() {
        let dup = tar_bytes(&[
            T::File("a", b"first", 0o644),
            T::File("a", b"second", 0o755),
        ]);
        let (_d, stage, r) = run(&dup, &limits());
        assert_eq!(r.unwrap().files, 1);
        assert_eq!(fs::read(stage.join("a")).unwrap(), b"second");
        assert_eq!(mode(&stage.join("a")), 0o755);

        let clash = tar_bytes(&[T::File("a", b"f", 0o644), T::File("a/b", b"g", 0o644)]);
        let (d, _stage, r) = run(&clash, &limits());
        assert!(matches!(r, Err(SkillError::Conflict(_))), "{r:?}");
        assert_nothing_written(&d);

        let clash = tar_bytes(&[
            T::Dir("x/a/"),
            T::File("x/a", b"f", 0o644),
            T::File("y", b"", 0o644),
        ]);
        let (_d, _stage, r) = run(&clash, &limits());
        assert!(matches!(r, Err(SkillError::Conflict(_))), "{r:?}");
    }

    // ---- limits ------------------------------------------------------------

    #[test]
    fn too_many_entries() {
        let members: Vec<String> = (0..6).map(|i| format!("pdf/f{i}")).collect();
        let z: Vec<Z> = members.iter().map(|n| Z::File(n, b"x", None)).collect();
        let (d, _s, r) = run(&zip_bytes(&z), &small(1 << 20, 5));
        assert!(
            matches!(r, Err(SkillError::TooManyEntries { limit: 5 })),
            "{r:?}"
        );
        assert_nothing_written(&d);
        // Exactly at the limit is fine.
        let (_d, _s, r) = run(&zip_bytes(&z), &small(1 << 20, 6));
        r.unwrap();

        let t: Vec<T> = members.iter().map(|n| T::File(n, b"x", 0o644)).collect();
        let (d, _s, r) = run(&gz(&tar_bytes(&t)), &small(1 << 20, 5));
        assert!(
            matches!(r, Err(SkillError::TooManyEntries { limit: 5 })),
            "{r:?}"
        );
        assert_nothing_written(&d);
        // Skipped members count too.
        let t = [
            T::File("a", b"x", 0o644),
            T::Symlink("b", "a"),
            T::Symlink("c", "a"),
        ];
        let (_d, _s, r) = run(&tar_bytes(&t), &small(1 << 20, 2));
        assert!(
            matches!(r, Err(SkillError::TooManyEntries { limit: 2 })),
            "{r:?}"
        );
    }

    #[test]
    fn too_many_bytes() {
        let data = vec![b'a'; 3000];
        // Each file fits, the sum does not: counted while writing.
        let z = zip_bytes(&[Z::File("a", &data, None), Z::File("b", &data, None)]);
        let (d, _s, r) = run(&z, &small(5000, 100));
        assert!(
            matches!(r, Err(SkillError::TooLarge { limit: 5000 })),
            "{r:?}"
        );
        assert_nothing_written(&d);
        let (_d, _s, r) = run(&z, &small(6000, 100));
        assert_eq!(r.unwrap().bytes, 6000);

        let t = tar_bytes(&[T::File("a", &data, 0o644), T::File("b", &data, 0o644)]);
        let (d, _s, r) = run(&bz2(&t), &small(5000, 100));
        assert!(
            matches!(r, Err(SkillError::TooLarge { limit: 5000 })),
            "{r:?}"
        );
        assert_nothing_written(&d);
    }

    #[test]
    fn zip_and_gzip_bombs_are_rejected() {
        let zeros = vec![0u8; 8 << 20];
        let z = zip_bytes(&[Z::File("bomb", &zeros, None)]);
        assert!(z.len() < 100_000);
        let (d, _s, r) = run(&z, &small(1 << 20, 100));
        assert!(matches!(r, Err(SkillError::TooLarge { .. })), "{r:?}");
        assert_nothing_written(&d);

        let t = gz(&tar_bytes(&[T::File("pdf/bomb", &zeros, 0o644)]));
        assert!(t.len() < 100_000);
        let (d, _s, r) = run(&t, &small(1 << 20, 100));
        assert!(matches!(r, Err(SkillError::TooLarge { .. })), "{r:?}");
        assert_nothing_written(&d);

        // Data hidden behind a member that is never extracted (a symlink with a
        // payload): caught by the cap on the decompressed stream.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(EntryType::Symlink, zeros.len() as u64, 0o777);
        h.set_path("link").unwrap();
        h.set_cksum();
        b.append(&h, &zeros[..]).unwrap();
        let t = xz(&b.into_inner().unwrap());
        let (d, _s, r) = run(&t, &small(64 << 10, 10));
        assert!(matches!(r, Err(SkillError::TooLarge { .. })), "{r:?}");
        assert_nothing_written(&d);
    }

    #[test]
    fn oversized_long_name_is_refused_before_buffering() {
        let mut raw = tar_bytes(&[]);
        raw.clear();
        let mut h = header(EntryType::GNULongName, 2 << 20, 0o644);
        h.set_path("././@LongLink").unwrap();
        h.set_cksum();
        raw.extend_from_slice(h.as_bytes());
        raw.extend(std::iter::repeat_n(b'a', 2 << 20));
        raw.extend(std::iter::repeat_n(0u8, 1024));
        let (d, _s, r) = run(&gz(&raw), &limits());
        assert!(matches!(r, Err(SkillError::Unsupported(_))), "{r:?}");
        assert_nothing_written(&d);
    }

    #[test]
    fn declared_zip_entry_count_is_checked_before_parsing() {
        let mut z = zip_bytes(&[Z::File("a", b"x", None)]);
        // Patch the EOCD "total entries" fields to 60000.
        let pos = z.windows(4).rposition(|w| w == b"PK\x05\x06").unwrap();
        z[pos + 8..pos + 10].copy_from_slice(&60000u16.to_le_bytes());
        z[pos + 10..pos + 12].copy_from_slice(&60000u16.to_le_bytes());
        let (_d, _s, r) = run(&z, &limits());
        assert!(matches!(r, Err(SkillError::TooManyEntries { .. })), "{r:?}");
    }

    // ---- corrupt input ----------------------------------------------------

    #[test]
    fn truncated_and_corrupt_archives_are_rejected_cleanly() {
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let t = tar_bytes(&[
            T::File("pdf/SKILL.md", SKILL, 0o644),
            T::File("pdf/data", &big, 0o644),
        ]);
        let z = zip_bytes(&[
            Z::File("pdf/SKILL.md", SKILL, None),
            Z::File("pdf/data", &big, None),
        ]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("tar.gz", gz(&t)[..gz(&t).len() / 2].to_vec()),
            ("tar.bz2", bz2(&t)[..bz2(&t).len() / 2].to_vec()),
            ("tar.xz", xz(&t)[..xz(&t).len() / 2].to_vec()),
            ("tar", t[..t.len() / 2].to_vec()),
            ("zip", z[..z.len() / 2].to_vec()),
            ("empty", Vec::new()),
            (
                "garbage",
                b"this is not an archive at all, not even close......".repeat(20),
            ),
        ];
        for (what, bytes) in cases {
            let (d, _s, r) = run(&bytes, &limits());
            assert!(matches!(r, Err(SkillError::Corrupt(_))), "{what}: {r:?}");
            assert_nothing_written(&d);
        }
    }

    #[test]
    fn corrupt_zip_data_is_detected_by_crc() {
        let data = b"hello hello hello hello".repeat(10);
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        z.start_file(
            "a",
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored),
        )
        .unwrap();
        z.write_all(&data).unwrap();
        let mut z = z.finish().unwrap().into_inner();
        let pos = z.windows(5).position(|w| w == b"hello").unwrap();
        z[pos] = b'j';
        let (d, _s, r) = run(&z, &limits());
        assert!(matches!(r, Err(SkillError::Corrupt(_))), "{r:?}");
        assert_nothing_written(&d);
    }

    #[test]
    fn plain_tar_ending_with_a_zip_member_is_still_a_tar() {
        let inner = zip_bytes(&[Z::File("x", b"x", None)]);
        let t = tar_bytes(&[
            T::File("pdf/SKILL.md", SKILL, 0o644),
            T::File("pdf/template.zip", &inner, 0o644),
        ]);
        let (_d, stage, r) = run(&t, &limits());
        assert_eq!(r.unwrap().format, ArchiveFormat::Tar);
        assert_eq!(fs::read(stage.join("template.zip")).unwrap(), inner);
    }

    #[test]
    fn prefixed_zip_is_found_by_its_central_directory() {
        let mut bytes = b"#!/bin/sh\nexit 0\n".to_vec();
        bytes.extend(zip_bytes(&[Z::File("pdf/SKILL.md", SKILL, None)]));
        let (_d, stage, r) = run(&bytes, &limits());
        assert_eq!(r.unwrap().format, ArchiveFormat::Zip);
        assert_eq!(tree(&stage), ["SKILL.md"]);
    }

    #[test]
    fn stage_must_not_exist() {
        let (_d, archive, stage) = setup(&tar_bytes(&[T::File("a", b"x", 0o644)]));
        fs::create_dir(&stage).unwrap();
        fs::write(stage.join("keep"), b"k").unwrap();
        let r = extract_archive(&archive, &stage, &limits());
        assert!(matches!(r, Err(SkillError::Io { .. })), "{r:?}");
        assert!(
            stage.join("keep").exists(),
            "a stage we did not create is left alone"
        );
    }
}
