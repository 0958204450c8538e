//! Secret hygiene for the runner process (spec control-plane §3.5, tools §2.8).
//!
//! * Tool subprocesses get the environment minus every `ANTHROPIC_*` and AWS
//!   credential variable ([`crate::tools::scrubbed_env`]).
//! * The runner removes the `ANTHROPIC_*` variables from its own environment right
//!   after reading them, and marks itself non-dumpable (`PR_SET_DUMPABLE = 0`): a tool
//!   process running as the same uid can then neither `ptrace` the runner nor read
//!   `/proc/<runner pid>/environ` or `/proc/<runner pid>/mem` (the kernel makes those
//!   files owned by root once the process is non-dumpable).

/// Mark this process non-dumpable. Returns false if the kernel refused.
pub fn make_non_dumpable() -> bool {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 }
}

/// Whether this process is currently dumpable.
pub fn is_dumpable() -> bool {
    // SAFETY: prctl(PR_GET_DUMPABLE) takes no pointers.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 }
}

/// Remove every `ANTHROPIC_*` variable from this process's environment.
///
/// # Safety
/// Must run while the process is single-threaded (before the tokio runtime starts),
/// like every `std::env::remove_var` call.
pub unsafe fn scrub_own_environment() {
    let names: Vec<_> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| crate::tools::is_secret_var(&k.to_string_lossy()))
        .collect();
    for k in names {
        // SAFETY: the caller guarantees single-threadedness.
        unsafe { std::env::remove_var(k) };
    }
}
