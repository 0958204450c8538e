//! Path resolution and confinement for the file tools (tools spec §2.5).
//!
//! `resolve` normalises lexically, then canonicalises following every symlink
//! (including a dangling final one, with a 40-hop limit), then checks containment in
//! the workdir or one of the allowed roots by path components. The tools operate on
//! the canonical path, so an in-workdir link aimed outside is refused at check time.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::fserr;
use super::pyrepr::py_repr;

/// Maximum symlink hops while resolving a dangling chain.
const MAX_HOPS: u32 = 40;

/// Where the file tools may operate.
#[derive(Debug, Clone)]
pub struct Roots {
    /// `realpath(workdir)`.
    pub root: PathBuf,
    /// Canonical extra roots (memory stores).
    pub allowed: Vec<PathBuf>,
    /// Read-only roots: (canonical, as configured for messages).
    pub read_only: Vec<(PathBuf, String)>,
}

impl Roots {
    pub fn new(workdir: &Path) -> Self {
        Self {
            root: canonical_or_self(workdir),
            allowed: Vec::new(),
            read_only: Vec::new(),
        }
    }

    pub fn allow(&mut self, dir: &Path) {
        self.allowed.push(canonical_or_self(dir));
    }

    pub fn read_only(&mut self, dir: &Path) {
        self.read_only
            .push((canonical_or_self(dir), dir.to_string_lossy().into_owned()));
    }

    /// The read-only root containing `canonical`, as configured.
    pub fn read_only_root_of(&self, canonical: &Path) -> Option<&str> {
        self.read_only
            .iter()
            .find(|(c, _)| canonical.starts_with(c))
            .map(|(_, shown)| shown.as_str())
    }

    /// Resolve `p` (as the model sent it). Errors are the message after `<tool>: `.
    pub fn resolve(&self, p: &str) -> Result<PathBuf, String> {
        if p.contains('\0') {
            return Err("embedded null byte".into());
        }
        let candidate = if p.starts_with('/') {
            PathBuf::from(p)
        } else {
            let mut s = self.root.as_os_str().as_bytes().to_vec();
            s.push(b'/');
            s.extend_from_slice(p.as_bytes());
            PathBuf::from(OsStr::from_bytes(&s))
        };
        let normal = normpath(candidate.as_os_str().as_bytes());
        let canonical = canonicalize_following(Path::new(OsStr::from_bytes(&normal)))
            .map_err(|e| format!("path {}: {}", py_repr(p), fserr::reason(&e)))?;
        let inside = canonical.starts_with(&self.root)
            || self.allowed.iter().any(|r| canonical.starts_with(r));
        if !inside {
            return Err(if self.allowed.is_empty() {
                format!(
                    "path {} is outside the session's working directory",
                    py_repr(p)
                )
            } else {
                format!(
                    "path {} is outside the session's working directory and its other permitted directories",
                    py_repr(p)
                )
            });
        }
        Ok(canonical)
    }
}

fn canonical_or_self(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| PathBuf::from(OsStr::from_bytes(&normpath(p.as_os_str().as_bytes()))))
}

/// POSIX `os.path.normpath` on bytes.
pub fn normpath(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let initial = if path.starts_with(b"//") && !path.starts_with(b"///") {
        2
    } else if path.starts_with(b"/") {
        1
    } else {
        0
    };
    let mut comps: Vec<&[u8]> = Vec::new();
    for comp in path.split(|b| *b == b'/') {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        if comp != b".." || (initial == 0 && comps.is_empty()) || comps.last() == Some(&&b".."[..])
        {
            comps.push(comp);
        } else if !comps.is_empty() {
            comps.pop();
        }
    }
    let mut out = vec![b'/'; initial];
    out.extend_from_slice(&comps.join(&b'/'));
    if out.is_empty() { b".".to_vec() } else { out }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// Canonicalise following every symlink, including dangling ones (spec §2.5 step 4).
pub fn canonicalize_following(path: &Path) -> io::Result<PathBuf> {
    let mut prefix = path.to_path_buf();
    let mut tail: Vec<Vec<u8>> = Vec::new(); // missing components, innermost last pushed first
    let mut hops = 0u32;
    loop {
        match std::fs::canonicalize(&prefix) {
            Ok(real) => {
                let mut out = real;
                for comp in tail.iter().rev() {
                    out.push(OsStr::from_bytes(comp));
                }
                return Ok(out);
            }
            Err(e) if !is_missing(&e) => return Err(e),
            Err(orig) => match std::fs::symlink_metadata(&prefix) {
                Err(e2) if is_missing(&e2) => {
                    let (Some(parent), Some(name)) = (prefix.parent(), prefix.file_name()) else {
                        return Err(orig);
                    };
                    tail.push(name.as_bytes().to_vec());
                    prefix = parent.to_path_buf();
                }
                Err(e2) => return Err(e2),
                Ok(md) if !md.file_type().is_symlink() => return Err(orig),
                Ok(_) => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = std::fs::read_link(&prefix)?;
                    let parent = prefix.parent().unwrap_or(Path::new("/"));
                    let parent_real = std::fs::canonicalize(parent)?;
                    let mut joined = parent_real.join(target).into_os_string().into_vec();
                    for comp in tail.iter().rev() {
                        joined.push(b'/');
                        joined.extend_from_slice(comp);
                    }
                    tail.clear();
                    prefix = PathBuf::from(OsStr::from_bytes(&normpath(&joined)));
                }
            },
        }
    }
}

use std::os::unix::ffi::OsStringExt;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn n(s: &str) -> String {
        String::from_utf8(normpath(s.as_bytes())).unwrap()
    }

    #[test]
    fn normpath_like_python() {
        assert_eq!(n("/a/b/../c"), "/a/c");
        assert_eq!(n("/../x"), "/x");
        assert_eq!(n("//ws/a/"), "//ws/a");
        assert_eq!(n("///ws"), "/ws");
        assert_eq!(n("a/./b//c/"), "a/b/c");
        assert_eq!(n("../a"), "../a");
        assert_eq!(n(""), ".");
        assert_eq!(n("/"), "/");
    }

    struct Tree {
        _dir: tempfile::TempDir,
        ws: PathBuf,
        outside: PathBuf,
    }

    fn tree() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let ws = base.join("workspace");
        let outside = base.join("outside");
        std::fs::create_dir_all(ws.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(ws.join("a.txt"), "a").unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        symlink(ws.join("a.txt"), ws.join("lnk_in")).unwrap();
        symlink(outside.join("secret"), ws.join("link_out")).unwrap();
        symlink(outside.join("nope"), ws.join("dangling_out")).unwrap();
        symlink(ws.join("new/file.txt"), ws.join("dangling_in")).unwrap();
        symlink("loop2", ws.join("loop1")).unwrap();
        symlink("loop1", ws.join("loop2")).unwrap();
        Tree {
            _dir: dir,
            ws,
            outside,
        }
    }

    #[test]
    fn resolution_table() {
        let t = tree();
        let r = Roots::new(&t.ws);
        assert_eq!(r.resolve("a.txt").unwrap(), t.ws.join("a.txt"));
        assert_eq!(r.resolve("a.txt/").unwrap(), t.ws.join("a.txt"));
        assert_eq!(
            r.resolve(&format!("{}/a.txt", t.ws.display())).unwrap(),
            t.ws.join("a.txt")
        );
        assert_eq!(
            r.resolve(&format!("/{}/a.txt", t.ws.display())).unwrap(),
            t.ws.join("a.txt")
        );
        assert_eq!(r.resolve("../workspace/a.txt").unwrap(), t.ws.join("a.txt"));
        assert_eq!(r.resolve("lnk_in").unwrap(), t.ws.join("a.txt"));
        assert_eq!(r.resolve("").unwrap(), t.ws);
        assert_eq!(
            r.resolve("missing/deep.txt").unwrap(),
            t.ws.join("missing/deep.txt")
        );
        assert_eq!(r.resolve("dangling_in").unwrap(), t.ws.join("new/file.txt"));
        assert_eq!(r.resolve("~/x").unwrap(), t.ws.join("~/x"));
        let out = "is outside the session's working directory";
        assert_eq!(
            r.resolve("link_out").unwrap_err(),
            format!("path 'link_out' {out}")
        );
        assert_eq!(
            r.resolve("dangling_out").unwrap_err(),
            format!("path 'dangling_out' {out}")
        );
        assert_eq!(
            r.resolve("../outside/secret").unwrap_err(),
            format!("path '../outside/secret' {out}")
        );
        assert_eq!(
            r.resolve("/etc/passwd").unwrap_err(),
            format!("path '/etc/passwd' {out}")
        );
        assert_eq!(
            r.resolve("it's/../../x").unwrap_err(),
            format!("path \"it's/../../x\" {out}")
        );
        assert_eq!(
            r.resolve("loop1").unwrap_err(),
            "path 'loop1': too many levels of symbolic links"
        );
        assert_eq!(r.resolve("a\0b").unwrap_err(), "embedded null byte");
        let long = "x".repeat(300);
        assert_eq!(
            r.resolve(&long).unwrap_err(),
            format!("path '{long}': file name too long")
        );
        // `/work` does not contain `/work2`.
        let sibling = format!("{}2/x", t.ws.display());
        assert!(r.resolve(&sibling).unwrap_err().ends_with(out));
    }

    #[test]
    fn allowed_roots_change_the_message() {
        let t = tree();
        let mut r = Roots::new(&t.ws);
        r.allow(&t.outside);
        assert_eq!(r.resolve("link_out").unwrap(), t.outside.join("secret"));
        assert_eq!(
            r.resolve("/etc/passwd").unwrap_err(),
            "path '/etc/passwd' is outside the session's working directory and its other permitted directories"
        );
        r.read_only(&t.outside);
        assert!(r.read_only_root_of(&t.outside.join("secret")).is_some());
        assert!(r.read_only_root_of(&t.ws.join("a.txt")).is_none());
    }
}
