//! `cargo bench -p local --bench stack`: the local stack's time from webhook delivery
//! to first tool result with the process launcher and with the Docker launcher (the
//! Docker half is skipped with a message without an engine or the image). Prints
//! figures, asserts nothing. Same code as `cma-local bench`.
//!
//! The runner binary: `CMA_RUNNER_BIN`, else `<target>/release/runner` (build it with
//! `cargo build --release -p runner`), else `<target>/debug/runner`.

use std::path::PathBuf;

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no options.
    let mut opts = local::bench::BenchOptions::default();
    if let Some(runs) = std::env::var("CMA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.runs = runs;
    }
    if std::env::var_os("CMA_RUNNER_BIN").is_none() {
        // target/release/deps/stack-… → target/{release,debug}/runner
        let exe = std::env::current_exe().expect("current exe");
        let target = exe
            .ancestors()
            .nth(3)
            .map(PathBuf::from)
            .expect("target dir");
        opts.launcher.runner_bin = ["release", "debug"]
            .iter()
            .map(|p| target.join(p).join("runner"))
            .find(|p| p.is_file());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(local::bench::run(&opts, &mut std::io::stdout()));
}
