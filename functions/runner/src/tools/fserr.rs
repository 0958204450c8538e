//! File-system error phrases (tools spec §2.7): `{op}: {file_path}: {reason}`.
//!
//! Never Rust's `io::Error` `Display` (it appends ` (os error N)`).

use std::ffi::CStr;
use std::io;

/// The reason text for an OS error, as the reference prints it.
pub fn reason(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => reason_for_errno(code),
        None => match err.kind() {
            io::ErrorKind::NotFound => "no such file or directory".into(),
            io::ErrorKind::PermissionDenied => "permission denied".into(),
            io::ErrorKind::AlreadyExists => "file already exists".into(),
            io::ErrorKind::IsADirectory => "is a directory".into(),
            io::ErrorKind::NotADirectory => "not a directory".into(),
            _ => "i/o error".into(),
        },
    }
}

pub fn reason_for_errno(code: i32) -> String {
    match code {
        libc::ENOENT => "no such file or directory".into(),
        libc::ENOTDIR => "not a directory".into(),
        libc::EISDIR => "is a directory".into(),
        libc::EACCES | libc::EPERM => "permission denied".into(),
        libc::EEXIST => "file already exists".into(),
        libc::ELOOP => "too many levels of symbolic links".into(),
        other => strerror(other).unwrap_or_else(|| "i/o error".into()),
    }
}

fn strerror(code: i32) -> Option<String> {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: the XSI/GNU-independent `__xpg_strerror_r` is not exposed portably, but
    // glibc's `strerror_r` (GNU flavour via libc crate binding) may return a pointer
    // to a static string instead of filling `buf`; handle both by reading the return.
    let ptr = unsafe { gnu_strerror_r(code, buf.as_mut_ptr(), buf.len()) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: strerror_r returns a NUL-terminated string (either `buf` or static).
    let text = unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .to_lowercase();
    if text.is_empty() || text.starts_with("unknown error") {
        return None;
    }
    Some(text)
}

unsafe extern "C" {
    #[link_name = "__xpg_strerror_r"]
    fn xpg_strerror_r(
        errnum: libc::c_int,
        buf: *mut libc::c_char,
        buflen: libc::size_t,
    ) -> libc::c_int;
}

/// XSI `strerror_r`: always fills `buf`.
unsafe fn gnu_strerror_r(code: i32, buf: *mut libc::c_char, len: usize) -> *const libc::c_char {
    // SAFETY: `buf` is valid for `len` bytes.
    let rc = unsafe { xpg_strerror_r(code, buf, len) };
    if rc != 0 { std::ptr::null() } else { buf }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases() {
        assert_eq!(reason_for_errno(libc::ENOENT), "no such file or directory");
        assert_eq!(reason_for_errno(libc::EPERM), "permission denied");
        assert_eq!(reason_for_errno(libc::EEXIST), "file already exists");
        assert_eq!(reason_for_errno(libc::ENAMETOOLONG), "file name too long");
        assert_eq!(reason_for_errno(libc::ENOSPC), "no space left on device");
        assert_eq!(reason_for_errno(libc::EROFS), "read-only file system");
        assert_eq!(reason_for_errno(libc::EIO), "input/output error");
        assert_eq!(reason_for_errno(99999), "i/o error");
        let e = io::Error::from_raw_os_error(libc::ENOTDIR);
        assert_eq!(reason(&e), "not a directory");
    }
}
