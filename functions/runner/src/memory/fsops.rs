//! File-system side of the memory stores: path rules, atomic writes, the marker,
//! and the hashing scan (tools spec §10.3–10.4). Everything here is synchronous;
//! callers run it on the blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use walkdir::WalkDir;

/// The marker file at each store root (never synced, never listed).
pub const MARKER_NAME: &str = ".anthropic-memory-store";

/// Hashes of files whose `max(mtime, ctime)` is younger than this (relative to
/// the scan start) are not cached (tools spec §10.4).
pub const CACHE_MIN_AGE: Duration = Duration::from_secs(2);

/// Local files above this size are refused without asking the server (which caps
/// memories at 102 400 bytes and would answer 413); it only saves reading and
/// sending very large files.
pub const LOCAL_UPLOAD_CAP: u64 = 1024 * 1024;

/// Exact marker content: `version 1\n<memory_store_id>`, no trailing newline.
pub fn marker_content(store_id: &str) -> String {
    format!("version 1\n{store_id}")
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// A relative memory path we are willing to write or upload: non-empty, not
/// absolute, no NUL, and every `/`-separated component non-empty and neither `.`
/// nor `..` (so the local name and the remote name are the same string).
pub fn valid_rel(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.starts_with('/')
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Checks a `mount_path`: absolute, no `.`/`..` components, no NUL, not `/`.
/// Repeated and trailing slashes are tolerated (they name the same directory).
pub fn clean_mount_path(raw: &str) -> Option<PathBuf> {
    if !raw.starts_with('/') || raw.contains('\0') {
        return None;
    }
    // `Path::components` silently drops interior `.`; check the raw text.
    if raw.split('/').any(|c| c == "." || c == "..") {
        return None;
    }
    let p: PathBuf = Path::new(raw).components().collect();
    if p.components().all(|c| matches!(c, Component::RootDir)) {
        return None;
    }
    Some(p)
}

/// Reduces a display name to one safe path component: trimmed; `/`, `\` and
/// control characters replaced by `_`; at most 255 bytes (cut at a character
/// boundary). `None` when nothing usable remains (empty, `.`, `..`).
pub fn safe_component(name: &str) -> Option<String> {
    let mapped: String = name
        .trim()
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mut s = mapped.trim().to_owned();
    if s.len() > 255 {
        let mut cut = 255;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    if s.is_empty() || s == "." || s == ".." {
        None
    } else {
        Some(s)
    }
}

/// `.fs-<16 lowercase hex>.tmp`: our atomic-write temp files (skipped by the scan).
pub fn is_temp_name(name: &str) -> bool {
    name.strip_prefix(".fs-")
        .and_then(|r| r.strip_suffix(".tmp"))
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn temp_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!(".fs-{}.tmp", &id[..16])
}

fn not_a_directory(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!("{} is not a directory", p.display()),
    )
}

/// Creates the missing parent directories of `rel` below `root` (mode 0700). The
/// root itself must already be a real directory (a vanished root is never
/// re-created here); an existing component that is not a directory (including a
/// symlink) is refused. Returns the parent directory.
fn ensure_parents(root: &Path, rel: &str) -> io::Result<PathBuf> {
    let md = fs::symlink_metadata(root)?;
    if !md.is_dir() {
        return Err(not_a_directory(root));
    }
    let mut cur = root.to_path_buf();
    let mut parts: Vec<&str> = rel.split('/').collect();
    parts.pop();
    for part in parts {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Err(not_a_directory(&cur)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match DirBuilder::new().mode(0o700).create(&cur) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        if !fs::symlink_metadata(&cur)?.is_dir() {
                            return Err(not_a_directory(&cur));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

/// Writes `bytes` to `root/rel` atomically: a temp file `.fs-<16 hex>.tmp` in the
/// target's directory opened `O_CREAT|O_EXCL|O_NOFOLLOW` mode 0600, then renamed
/// over the target (a symlink at the target is replaced, never followed).
pub fn atomic_write(root: &Path, rel: &str, bytes: &[u8]) -> io::Result<()> {
    if !valid_rel(rel) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refused path {rel:?} (absolute, empty, `.` or `..` component)"),
        ));
    }
    let parent = ensure_parents(root, rel)?;
    let target = root.join(rel);
    let tmp = parent.join(temp_name());
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.flush());
    drop(f);
    let result = written.and_then(|()| fs::rename(&tmp, &target));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes the marker file at the root.
pub fn write_marker(root: &Path, store_id: &str) -> io::Result<()> {
    atomic_write(root, MARKER_NAME, marker_content(store_id).as_bytes())
}

/// Opens a regular file without following a final symlink.
fn open_nofollow(path: &Path) -> io::Result<fs::File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Reads a whole file without following a final symlink.
pub fn read_nofollow(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open_nofollow(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Streams a regular file through SHA-256 without following a final symlink.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut f = open_nofollow(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// `true` iff the root is a real directory and its marker is a regular file whose
/// SHA-256 equals `marker_sha`.
pub fn marker_valid(root: &Path, marker_sha: &str) -> bool {
    match fs::symlink_metadata(root) {
        Ok(md) if md.is_dir() => {}
        _ => return false,
    }
    hash_file(&root.join(MARKER_NAME)).is_ok_and(|h| h == marker_sha)
}

/// The current hash of `root/rel` if it is a regular file (`None` if absent or not
/// a regular file).
pub fn local_sha(root: &Path, rel: &str) -> io::Result<Option<String>> {
    let p = root.join(rel);
    match fs::symlink_metadata(&p) {
        Ok(md) if md.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    match hash_file(&p) {
        Ok(h) => Ok(Some(h)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `true` if nothing (not even a dangling symlink) exists at `root/rel`.
pub fn is_absent(root: &Path, rel: &str) -> bool {
    matches!(fs::symlink_metadata(root.join(rel)), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// One cached hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    mtime_ns: i128,
    ctime_ns: i128,
    size: u64,
    sha: String,
}

pub type HashCache = HashMap<String, CacheEntry>;

/// What the root itself is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootState {
    Missing,
    /// Exists but is not a real directory (a file, or a symlink: never followed).
    NotADirectory,
    Directory,
}

/// Result of one scan.
#[derive(Debug, Clone)]
pub struct Scan {
    pub root: RootState,
    /// The marker exists as a regular file with the right hash.
    pub marker_ok: bool,
    /// Relative path (`/`-separated) → SHA-256 of every regular file but the marker.
    pub files: BTreeMap<String, String>,
    /// Set when the walk could not be completed (permission error, …): the listing
    /// is then not trustworthy enough to infer deletions.
    pub error: Option<String>,
    /// Entries not synced: symlinks, FIFOs, sockets, devices, non-UTF-8 names,
    /// our own temp files.
    pub skipped: Vec<String>,
    /// How many files were actually read (cache misses).
    pub hashed: usize,
}

fn ns(secs: i64, nsec: i64) -> i128 {
    i128::from(secs) * 1_000_000_000 + i128::from(nsec)
}

/// Walks `root` without following symlinks (not even the root) and hashes every
/// regular file; see [`Scan`]. Hashes are reused from `cache` when
/// `(mtime_ns, ctime_ns, size)` is unchanged, and cached only for files whose
/// `max(mtime, ctime)` is more than `min_age` older than the scan start.
pub fn scan(root: &Path, marker_sha: &str, cache: &mut HashCache, min_age: Duration) -> Scan {
    let start_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let mut out = Scan {
        root: RootState::Missing,
        marker_ok: false,
        files: BTreeMap::new(),
        error: None,
        skipped: Vec::new(),
        hashed: 0,
    };
    match fs::symlink_metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            cache.clear();
            return out;
        }
        Err(e) => {
            out.root = RootState::NotADirectory;
            out.error = Some(format!("cannot stat {}: {e}", root.display()));
            return out;
        }
        Ok(md) if !md.is_dir() => {
            out.root = RootState::NotADirectory;
            cache.clear();
            return out;
        }
        Ok(_) => out.root = RootState::Directory,
    }
    let walk = WalkDir::new(root)
        .follow_links(false)
        .follow_root_links(false)
        .min_depth(1)
        .sort_by_file_name();
    for entry in walk {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                if e.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound) {
                    continue;
                }
                out.error
                    .get_or_insert_with(|| format!("walking {}: {e}", root.display()));
                continue;
            }
        };
        let ft = entry.file_type();
        if ft.is_dir() {
            continue;
        }
        let Some(rel) = entry.path().strip_prefix(root).ok().and_then(Path::to_str) else {
            out.skipped
                .push(entry.path().to_string_lossy().into_owned());
            continue;
        };
        let rel = rel.to_owned();
        if entry.depth() == 1 && rel == MARKER_NAME {
            out.marker_ok = ft.is_file() && hash_file(entry.path()).is_ok_and(|h| h == marker_sha);
            continue;
        }
        if !ft.is_file() || is_temp_name(&entry.file_name().to_string_lossy()) {
            out.skipped.push(rel);
            continue;
        }
        let md = match entry.metadata() {
            Ok(md) => md,
            Err(e) if e.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound) => {
                continue;
            }
            Err(e) => {
                out.error.get_or_insert_with(|| format!("stat {rel}: {e}"));
                continue;
            }
        };
        let (mtime_ns, ctime_ns) = (
            ns(md.mtime(), md.mtime_nsec()),
            ns(md.ctime(), md.ctime_nsec()),
        );
        let size = md.size();
        let cached = cache
            .get(&rel)
            .filter(|c| c.mtime_ns == mtime_ns && c.ctime_ns == ctime_ns && c.size == size)
            .map(|c| c.sha.clone());
        let sha = match cached {
            Some(sha) => sha,
            None => match hash_file(entry.path()) {
                Ok(sha) => {
                    out.hashed += 1;
                    if mtime_ns.max(ctime_ns) + (min_age.as_nanos() as i128) < start_ns {
                        cache.insert(
                            rel.clone(),
                            CacheEntry {
                                mtime_ns,
                                ctime_ns,
                                size,
                                sha: sha.clone(),
                            },
                        );
                    } else {
                        cache.remove(&rel);
                    }
                    sha
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                // Replaced by a symlink / special file between readdir and open.
                Err(e)
                    if e.raw_os_error() == Some(libc::ELOOP)
                        || e.kind() == io::ErrorKind::InvalidInput =>
                {
                    out.skipped.push(rel);
                    continue;
                }
                Err(e) => {
                    out.error
                        .get_or_insert_with(|| format!("reading {rel}: {e}"));
                    continue;
                }
            },
        };
        out.files.insert(rel, sha);
    }
    cache.retain(|k, _| out.files.contains_key(k));
    out
}

/// `true` if anything but directories and the root marker exists below `root`
/// (symlinks and special files count). Used to decide whether an untrusted root
/// may be removed at teardown.
pub fn has_entries_besides_marker(root: &Path) -> bool {
    let walk = WalkDir::new(root)
        .follow_links(false)
        .follow_root_links(false)
        .min_depth(1);
    for entry in walk {
        match entry {
            Ok(e) if e.file_type().is_dir() => {}
            Ok(e) if e.depth() == 1 && e.file_name() == MARKER_NAME => {}
            Ok(_) => return true,
            // Unreadable: assume something is there.
            Err(_) => return true,
        }
    }
    false
}

/// Removes a store root: a real directory recursively (never following symlinks),
/// anything else (e.g. a symlink put there by the agent) as a single entry.
pub fn remove_root(root: &Path) -> io::Result<()> {
    match fs::symlink_metadata(root) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(root),
        Ok(_) => fs::remove_file(root),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `root` and its missing ancestors with mode 0700; returns the ancestors
/// that did not exist before (deepest first), so they can be removed again.
pub fn create_root(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    let mut cur = root.parent();
    while let Some(p) = cur {
        match fs::symlink_metadata(p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                created.push(p.to_path_buf());
                cur = p.parent();
            }
            _ => break,
        }
    }
    let res = DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        // `recursive` tolerates an existing directory; the caller checked it was
        // absent. The umask may have cleared bits: make it exactly 0700.
        .and_then(|()| {
            fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        });
    if let Err(e) = res {
        let _ = fs::remove_dir(root);
        for a in &created {
            let _ = fs::remove_dir(a);
        }
        return Err(e);
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_marker() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(marker_content("memstore_1"), "version 1\nmemstore_1");
    }

    #[test]
    fn rel_rules() {
        for ok in ["a", "a/b.md", ".hidden", "a/.x/y", "..a", "a b"] {
            assert!(valid_rel(ok), "{ok}");
        }
        for bad in ["", "/a", "a/../b", "..", ".", "a//b", "a/", "./a", "a\0b"] {
            assert!(!valid_rel(bad), "{bad:?}");
        }
    }

    #[test]
    fn mount_path_rules() {
        assert_eq!(
            clean_mount_path("/mnt/memory/x"),
            Some(PathBuf::from("/mnt/memory/x"))
        );
        assert_eq!(
            clean_mount_path("/mnt//memory/x/"),
            Some(PathBuf::from("/mnt/memory/x"))
        );
        for bad in [
            "mnt/x",
            "",
            "/",
            "//",
            "/mnt/../x",
            "/mnt/./x",
            "/a/..",
            "/a\0",
        ] {
            assert_eq!(clean_mount_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn safe_component_rules() {
        assert_eq!(
            safe_component(" User Prefs ").as_deref(),
            Some("User Prefs")
        );
        assert_eq!(safe_component("a/b\\c\td").as_deref(), Some("a_b_c_d"));
        assert_eq!(safe_component("../x").as_deref(), Some(".._x"));
        for none in ["", "  ", ".", ".."] {
            assert_eq!(safe_component(none), None, "{none:?}");
        }
        let long = "é".repeat(200);
        let s = safe_component(&long).unwrap();
        assert!(s.len() <= 255 && s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn temp_names() {
        let n = temp_name();
        assert!(is_temp_name(&n), "{n}");
        assert!(!is_temp_name(".fs-123.tmp"));
        assert!(!is_temp_name("fs-0123456789abcdef.tmp"));
    }

    #[test]
    fn atomic_write_creates_private_parents_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        fs::create_dir(&root).unwrap();
        atomic_write(&root, "a/b/c.md", b"hi").unwrap();
        assert_eq!(fs::read(root.join("a/b/c.md")).unwrap(), b"hi");
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&root.join("a")), 0o700);
        assert_eq!(mode(&root.join("a/b")), 0o700);
        assert_eq!(mode(&root.join("a/b/c.md")), 0o600);
        assert!(atomic_write(&root, "../x", b"").is_err());
        assert!(atomic_write(&root, "/etc/x", b"").is_err());
        // A symlinked parent is refused, never followed.
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        assert!(atomic_write(&root, "link/x", b"").is_err());
        assert!(!outside.join("x").exists());
        // A vanished root is not re-created.
        let gone = dir.path().join("gone");
        assert!(atomic_write(&gone, "x", b"").is_err());
        assert!(!gone.exists());
        // No temp files left behind.
        let leftovers: Vec<_> = WalkDir::new(&root)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| is_temp_name(&e.file_name().to_string_lossy()))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn scan_hashes_skips_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_marker(root, "ms").unwrap();
        let msha = sha256_hex(marker_content("ms").as_bytes());
        atomic_write(root, "a.md", b"A").unwrap();
        atomic_write(root, "d/b.md", b"B").unwrap();
        std::os::unix::fs::symlink("a.md", root.join("sym")).unwrap();
        fs::write(root.join(".fs-0123456789abcdef.tmp"), b"t").unwrap();
        let mut cache = HashCache::new();
        let s = scan(root, &msha, &mut cache, Duration::ZERO);
        assert!(s.marker_ok && s.error.is_none());
        assert_eq!(s.root, RootState::Directory);
        assert_eq!(
            s.files.keys().cloned().collect::<Vec<_>>(),
            vec!["a.md", "d/b.md"]
        );
        assert_eq!(s.files["a.md"], sha256_hex(b"A"));
        assert_eq!(s.hashed, 2);
        assert!(s.skipped.contains(&"sym".to_owned()));
        // Second scan: served from the cache (files are "old enough" with min_age 0).
        let s2 = scan(root, &msha, &mut cache, Duration::ZERO);
        assert_eq!(s2.hashed, 0);
        assert_eq!(s2.files, s.files);
        // A young file is never cached.
        let s3 = scan(
            root,
            &msha,
            &mut HashCache::new(),
            Duration::from_secs(3600),
        );
        let mut c = HashCache::new();
        let _ = scan(root, &msha, &mut c, Duration::from_secs(3600));
        assert!(c.is_empty());
        assert_eq!(s3.hashed, 2);
        // A changed file is re-hashed.
        atomic_write(root, "a.md", b"A2").unwrap();
        let s4 = scan(root, &msha, &mut cache, Duration::ZERO);
        assert_eq!(s4.files["a.md"], sha256_hex(b"A2"));
        assert_eq!(s4.hashed, 1);
        // Wrong marker.
        atomic_write(root, MARKER_NAME, b"version 1\nother").unwrap();
        assert!(!scan(root, &msha, &mut cache, Duration::ZERO).marker_ok);
        assert!(!marker_valid(root, &msha));
    }

    #[test]
    fn scan_of_symlinked_root_does_not_descend() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::write(real.join("x"), b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let s = scan(&link, "", &mut HashCache::new(), Duration::ZERO);
        assert_eq!(s.root, RootState::NotADirectory);
        assert!(s.files.is_empty());
        remove_root(&link).unwrap();
        assert!(real.join("x").exists());
    }
}
