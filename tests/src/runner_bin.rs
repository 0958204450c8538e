//! Locating the workspace's `runner` binary from another crate's tests (the
//! dispatcher's process launcher, the local stack), where `CARGO_BIN_EXE_runner` is not
//! available.

use std::path::{Path, PathBuf};

/// `<target dir>/<profile>` of the running test binary (`…/debug/deps/<test>-<hash>`), falling
/// back to `CARGO_TARGET_DIR` or `<workspace>/target` plus `debug`.
fn profile_dir(workspace: &Path) -> PathBuf {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
    {
        return dir;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| workspace.join(t))
        .unwrap_or_else(|| workspace.join("target"));
    target.join("debug")
}

/// The runner binary: `CMA_RUNNER_BIN`, else `<target>/debug/runner` (`cargo nextest
/// run --workspace` builds it first), else built here with `cargo build -p runner`.
pub fn runner_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CMA_RUNNER_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "CMA_RUNNER_BIN={} is not a file",
            bin.display()
        );
        return bin;
    }
    // This crate is `<workspace>/tests`.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let profile = profile_dir(&workspace);
    let bin = profile.join("runner");
    if bin.is_file() {
        return bin;
    }
    eprintln!(
        "{} is missing: building it with `cargo build -p runner`",
        bin.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--locked", "-p", "runner", "--bin", "runner"])
        .current_dir(&workspace);
    if let Some(target) = profile.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let status = cmd.status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()) && bin.is_file(),
        "could not build the runner binary ({status:?}); run `cargo build -p runner` or set \
         CMA_RUNNER_BIN to a runner executable (expected {})",
        bin.display()
    );
    bin
}
