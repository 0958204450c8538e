//! Benchmark (not a test): the `runner` binary against the Python reference worker
//! (`anthropic==2.10.0`, driven as a black box through
//! `tests/reference/reference_worker.py`), both serving the same scripted session
//! (21 tool calls over a small tree) from the fake control plane.
//!
//! Run by hand:
//!
//! ```text
//! cargo bench -p runner --bench runner_vs_reference
//! CMA_REFERENCE_PYTHON=/path/to/venv/bin/python cargo bench -p runner --bench runner_vs_reference
//! ```
//!
//! `CMA_REFERENCE_PYTHON` (default `/tmp/refvenv/bin/python`) must have
//! `anthropic==2.10.0`; when it is missing the reference half is skipped.
//! `CMA_BENCH_RUNS` overrides N (default 5); `CMA_BENCH_WORKER_ENV="K=V ..."` adds
//! variables to both workers' environments (diagnosis, e.g. `MALLOC_ARENA_MAX=1`).
//!
//! Figures per worker, N runs each (plus one discarded warm-up run each, so both
//! start with a warm page cache; runs are interleaved ours/reference):
//! - spawn → first heartbeat request received by the fake;
//! - peak RSS: `ru_maxrss` from `wait4(2)`, i.e. the maximum over the worker process
//!   and every descendant it waited for (bash, rg, …) — a max, not a sum;
//! - VmHWM of the worker process itself (polled from `/proc/PID/status` every 20 ms;
//!   excludes descendants), as a cross-check, with the largest RssAnon and RssFile
//!   sampled (anonymous memory vs file-backed pages of the binary and libraries);
//! - total spawn → exit, and that total minus the 1 s idle window.
//!
//! Measurement detail: on Linux a child's `ru_maxrss` also covers the memory of the
//! process it was forked/vforked from, as it was before the `exec` (the kernel folds
//! the old mm's high-water mark into the new image's). Spawned directly from this
//! bench process (tokio + the fake) every worker would report at least this
//! process's RSS. So workers are spawned through a trampoline: this binary re-executed
//! as `__spawn`, a fresh small process that takes the spawn timestamp, spawns the
//! worker, `wait4`s it and reports. The floor that remains is measured and printed
//! (`/bin/true` through the same trampoline).
//!
//! Timestamps: the trampoline reports `CLOCK_MONOTONIC` nanoseconds; the fake's
//! `RecordedRequest::at` (`Instant`, also `CLOCK_MONOTONIC` on Linux) is mapped onto
//! the same clock through an anchor pair taken at start-up.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cma_tests::fake::{CreatedSession, FakeConfig, FakeControlPlane, ScriptStep, SessionScript};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const RUNNER: &str = env!("CARGO_BIN_EXE_runner");
const DEFAULT_PYTHON: &str = "/tmp/refvenv/bin/python";
const IDLE: Duration = Duration::from_secs(1);
const RUN_LIMIT: Duration = Duration::from_secs(90);

// Targets (printed, not asserted).
const TARGET_HEARTBEAT_RATIO: f64 = 1.0 / 5.0;
const TARGET_RSS_RATIO: f64 = 1.0 / 10.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__spawn") {
        trampoline(&args[2..]);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(bench());
}

// ---------------------------------------------------------------- trampoline

fn mono_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// `__spawn PROG ARGS...`: spawn PROG (stdin/stdout null, stderr inherited), print
/// `pid N`, wait4 it, print `done SPAWN_NS EXIT_NS MAXRSS_KIB STATUS` and exit.
fn trampoline(cmd: &[String]) -> ! {
    let mut out = std::io::stdout().lock();
    let t0 = mono_ns();
    let child = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "error spawn {}: {e}", cmd[0]);
            std::process::exit(1);
        }
    };
    let pid = child.id() as libc::pid_t;
    let _ = writeln!(out, "pid {pid}");
    let _ = out.flush();
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is a valid value; pointers are valid for the call.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let t1 = mono_ns();
    let code = if r != pid {
        -100
    } else if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    let _ = writeln!(out, "done {t0} {t1} {} {code}", ru.ru_maxrss);
    let _ = out.flush();
    std::process::exit(0)
}

struct Measured {
    spawn_ns: i128,
    exit_ns: i128,
    maxrss_kib: i64,
    vmhwm_kib: u64,
    /// Largest RssAnon / RssFile sampled.
    anon_kib: u64,
    file_kib: u64,
    code: i32,
}

/// `[VmHWM, RssAnon, RssFile]` in KiB from `/proc/PID/status` (`None` once gone or a zombie).
fn proc_mem_kib(pid: u32) -> Option<[u64; 3]> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some([field("VmHWM:")?, field("RssAnon:")?, field("RssFile:")?])
}

/// Runs `prog args` through the trampoline with `envs` (environment cleared first)
/// and the given stderr; returns `None` on timeout (the trampoline's group is killed).
async fn measure(
    prog: &str,
    args: &[String],
    envs: &[(String, String)],
    stderr: Stdio,
) -> Option<Measured> {
    let me = std::env::current_exe().expect("current_exe");
    let mut cmd = tokio::process::Command::new(me);
    cmd.arg("__spawn")
        .arg(prog)
        .args(args)
        .env_clear()
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn trampoline");
    let tramp_pid = child.id().expect("trampoline pid") as i32;
    let stdout = child.stdout.take().unwrap();
    let hwm = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let work = async {
        let mut lines = BufReader::new(stdout).lines();
        let mut poller: Option<tokio::task::JoinHandle<()>> = None;
        while let Ok(Some(line)) = lines.next_line().await {
            let mut it = line.split_whitespace();
            match it.next() {
                Some("pid") => {
                    let pid: u32 = it.next().unwrap().parse().unwrap();
                    let hwm = hwm.clone();
                    poller = Some(tokio::spawn(async move {
                        while let Some(v) = proc_mem_kib(pid) {
                            for (slot, v) in hwm.iter().zip(v) {
                                slot.fetch_max(v, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }));
                }
                Some("done") => {
                    let v: Vec<i128> = it.map(|x| x.parse().unwrap()).collect();
                    if let Some(p) = poller.take() {
                        p.abort();
                    }
                    return Some(Measured {
                        spawn_ns: v[0],
                        exit_ns: v[1],
                        maxrss_kib: v[2] as i64,
                        vmhwm_kib: hwm[0].load(Ordering::Relaxed),
                        anon_kib: hwm[1].load(Ordering::Relaxed),
                        file_kib: hwm[2].load(Ordering::Relaxed),
                        code: v[3] as i32,
                    });
                }
                _ => eprintln!("trampoline: {line}"),
            }
        }
        None
    };
    let res = tokio::time::timeout(RUN_LIMIT, work).await;
    let res = match res {
        Ok(r) => r,
        Err(_) => {
            // SAFETY: killpg on the process group we created (pgid = trampoline pid).
            unsafe { libc::killpg(tramp_pid, libc::SIGKILL) };
            None
        }
    };
    let _ = child.wait().await;
    res
}

// ---------------------------------------------------------------- clock mapping

#[derive(Clone, Copy)]
struct Clock {
    inst: Instant,
    ns: i128,
}

impl Clock {
    fn now() -> Self {
        Clock {
            inst: Instant::now(),
            ns: mono_ns(),
        }
    }
    fn ns_of(&self, t: Instant) -> i128 {
        if t >= self.inst {
            self.ns + (t - self.inst).as_nanos() as i128
        } else {
            self.ns - (self.inst - t).as_nanos() as i128
        }
    }
}

// ---------------------------------------------------------------- session

fn make_tree(ws: &Path) {
    let files: &[(&str, String)] = &[
        (
            "src/main.rs",
            "fn main() {\n    println!(\"hello\");\n}\n".into(),
        ),
        (
            "src/lib.rs",
            "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n// TODO: more\n".into(),
        ),
        ("src/util/a.rs", "pub fn helper() {}\n// TODO a\n".into()),
        ("src/util/b.rs", "pub fn other() -> u8 { 1 }\n".into()),
        ("src/util/c.txt", "Hello from c\n".into()),
        (
            "docs/readme.md",
            "# Readme\n\nHello, world.\nSecond paragraph.\n".into(),
        ),
        ("docs/guide.txt", "guide line 1\nguide line 2\n".into()),
    ];
    for (p, c) in files {
        let path = ws.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
    for i in 0..10 {
        let mut s = String::new();
        for l in 0..20 {
            if l % 7 == i % 7 {
                s.push_str(&format!("line {l} TODO item {i}\n"));
            } else {
                s.push_str(&format!("line {l} data {i}\n"));
            }
        }
        let path = ws.join(format!("data/{i}.txt"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, s).unwrap();
    }
}

fn script_steps() -> Vec<ScriptStep> {
    vec![
        ScriptStep::tool("bash", json!({"command": "echo hello"})),
        ScriptStep::tool("bash", json!({"command": "ls src src/util"})),
        ScriptStep::tool("bash", json!({"command": "cat docs/readme.md"})),
        ScriptStep::tool("bash", json!({"command": "cd src && basename \"$PWD\""})),
        ScriptStep::tool(
            "bash",
            json!({"command": "cd .. && export GREETING=hi && echo $GREETING"}),
        ),
        ScriptStep::tool(
            "write",
            json!({"file_path": "notes/a.txt", "content": "alpha\nbeta\ngamma\n"}),
        ),
        ScriptStep::tool("read", json!({"file_path": "notes/a.txt"})),
        ScriptStep::tool(
            "edit",
            json!({"file_path": "notes/a.txt", "old_string": "beta", "new_string": "BETA"}),
        ),
        ScriptStep::tool(
            "read",
            json!({"file_path": "notes/a.txt", "view_range": [2, 3]}),
        ),
        ScriptStep::tool("read", json!({"file_path": "src/main.rs"})),
        ScriptStep::tool(
            "write",
            json!({"file_path": "notes/b.md", "content": "x y x z x\n"}),
        ),
        ScriptStep::tool(
            "edit",
            json!({"file_path": "notes/b.md", "old_string": "x", "new_string": "X", "replace_all": true}),
        ),
        ScriptStep::tool("glob", json!({"pattern": "**/*.rs"})),
        ScriptStep::tool("glob", json!({"pattern": "**/*.txt"})),
        ScriptStep::tool("glob", json!({"pattern": "*.md", "path": "docs"})),
        ScriptStep::tool("grep", json!({"pattern": "fn \\w+"})),
        ScriptStep::tool("grep", json!({"pattern": "TODO", "path": "data"})),
        ScriptStep::tool("grep", json!({"pattern": "(?i)hello"})),
        ScriptStep::tool("bash", json!({"command": "wc -l data/*.txt | tail -1"})),
        ScriptStep::tool("bash", json!({"command": "echo $GREETING"})),
        ScriptStep::tool("bash", json!({"command": "false"})),
    ]
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Ours,
    Reference,
}

struct Reference {
    python: String,
    driver: PathBuf,
}

/// One figure extracted from a run.
type Metric = fn(&Run) -> Option<f64>;

struct Run {
    first_heartbeat_ms: Option<f64>,
    maxrss_kib: i64,
    vmhwm_kib: u64,
    /// Largest RssAnon / RssFile sampled.
    anon_kib: u64,
    file_kib: u64,
    total_ms: f64,
    ok: bool,
    note: String,
    results: Vec<Value>,
    workdir: String,
}

async fn one_run(who: Who, reference: Option<&Reference>, clock: Clock) -> Option<Run> {
    let fake = FakeControlPlane::start(FakeConfig {
        lease_ttl_seconds: 60,
        ping_interval: Duration::from_millis(200),
        ..FakeConfig::default()
    })
    .await;
    let n_steps = script_steps().len();
    let created: CreatedSession = fake.create_session(SessionScript::new(script_steps()));
    // The webhook's part: ack the queued item (state starting), as in production.
    fake.ack(&created.work_id).expect("ack");
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    make_tree(&ws);
    let ws = ws.canonicalize().unwrap();
    let log = dir.path().join("worker.log");
    let envs: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        ),
        ("HOME".into(), dir.path().display().to_string()),
        ("ANTHROPIC_WORK_ID".into(), created.work_id.clone()),
        ("ANTHROPIC_ENVIRONMENT_ID".into(), fake.environment_id()),
        ("ANTHROPIC_SESSION_ID".into(), created.session_id.clone()),
        ("ANTHROPIC_WORK_SECRET".into(), created.secret.clone()),
        ("ANTHROPIC_BASE_URL".into(), fake.base_url()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let mut envs = envs;
    envs.extend(extra_env());
    let ws_s = ws.display().to_string();
    let (prog, args): (String, Vec<String>) = match who {
        Who::Ours => (
            RUNNER.into(),
            vec![
                "--workdir".into(),
                ws_s.clone(),
                "--max-idle".into(),
                "1s".into(),
            ],
        ),
        Who::Reference => {
            let r = reference?;
            (
                r.python.clone(),
                vec![
                    r.driver.display().to_string(),
                    "--workdir".into(),
                    ws_s.clone(),
                    "--max-idle".into(),
                    "1".into(),
                ],
            )
        }
    };
    let stderr = Stdio::from(std::fs::File::create(&log).unwrap());
    let m = measure(&prog, &args, &envs, stderr).await;
    let Some(m) = m else {
        eprintln!(
            "{who:?}: run timed out after {RUN_LIMIT:?}; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        return None;
    };
    let hb_path = format!("/work/{}/heartbeat", created.work_id);
    let first_hb = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(&hb_path))
        .map(|r| clock.ns_of(r.at))
        .min();
    let results = fake.results(&created.session_id);
    let finished = fake.script_finished(&created.session_id);
    let mut note = String::new();
    if m.code != 0 {
        note.push_str(&format!("exit code {}; ", m.code));
    }
    if results.len() != n_steps || !finished {
        note.push_str(&format!(
            "{} of {n_steps} results, script_finished={finished}; ",
            results.len()
        ));
    }
    let ok = note.is_empty();
    if !ok {
        let logtext = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: String = logtext
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        note.push_str(&format!("log tail:\n{tail}"));
    }
    Some(Run {
        first_heartbeat_ms: first_hb.map(|t| (t - m.spawn_ns) as f64 / 1e6),
        maxrss_kib: m.maxrss_kib,
        vmhwm_kib: m.vmhwm_kib,
        anon_kib: m.anon_kib,
        file_kib: m.file_kib,
        total_ms: (m.exit_ns - m.spawn_ns) as f64 / 1e6,
        ok,
        note,
        results,
        workdir: ws_s,
    })
}

/// `CMA_BENCH_WORKER_ENV="K=V K2=V2"`: extra variables for both workers (diagnosis,
/// e.g. `MALLOC_ARENA_MAX=1`).
fn extra_env() -> Vec<(String, String)> {
    std::env::var("CMA_BENCH_WORKER_ENV")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

// ---------------------------------------------------------------- stats & printing

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn summary(v: &[f64], prec: usize) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.p$} [{:.p$} .. {:.p$}]", median(v), min, max, p = prec)
}

fn normalize(results: &[Value], ws: &str) -> Vec<String> {
    results
        .iter()
        .map(|r| {
            json!({"is_error": r["is_error"], "content": r["content"]})
                .to_string()
                .replace(ws, "<ws>")
        })
        .collect()
}

/// The result's text lines, sorted (rg's multi-threaded walk has no fixed order).
fn sorted_lines(r: &Value, ws: &str) -> (Value, Vec<String>) {
    let text = r["content"][0]["text"].as_str().unwrap_or_default();
    let mut lines: Vec<String> = text
        .replace(ws, "<ws>")
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    (r["is_error"].clone(), lines)
}

fn short(s: &str) -> String {
    let s: String = s.chars().take(160).collect();
    s
}

async fn bench() {
    let clock = Clock::now();
    let runs: usize = std::env::var("CMA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let n_steps = script_steps().len();
    println!("== runner_vs_reference ==");
    println!(
        "session: {n_steps} tool calls (bash, write, read, edit, glob, grep) over a small tree; \
         --max-idle 1s / 1; N={runs} runs each (+1 discarded warm-up each), interleaved"
    );
    println!("ours:      {RUNNER}");
    if !extra_env().is_empty() {
        println!("extra worker env (CMA_BENCH_WORKER_ENV): {:?}", extra_env());
    }

    // The reference: python + driver.
    let python = std::env::var("CMA_REFERENCE_PYTHON").unwrap_or_else(|_| DEFAULT_PYTHON.into());
    let driver =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/reference_worker.py");
    let reference = if !Path::new(&python).exists() {
        println!(
            "reference: SKIPPED — python not found at {python} (set CMA_REFERENCE_PYTHON to a python \
             with anthropic==2.10.0)"
        );
        None
    } else if !driver.exists() {
        println!("reference: SKIPPED — driver {} not found", driver.display());
        None
    } else {
        let v = std::process::Command::new(&python)
            .args([
                "-c",
                "import anthropic, sys; print(anthropic.__version__, sys.version.split()[0])",
            ])
            .output();
        match v {
            Ok(o) if o.status.success() => {
                let v = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                let mut parts = v.split_whitespace();
                let av = parts.next().unwrap_or("?");
                let pv = parts.next().unwrap_or("?");
                println!(
                    "reference: {python} (python {pv}, anthropic {av}) {}",
                    driver.canonicalize().unwrap_or(driver.clone()).display()
                );
                if av != "2.10.0" {
                    println!("reference: WARNING: expected anthropic 2.10.0, found {av}");
                }
                Some(Reference {
                    python: python.clone(),
                    driver: driver.clone(),
                })
            }
            _ => {
                println!(
                    "reference: SKIPPED — {python} cannot import anthropic (pip install anthropic==2.10.0)"
                );
                None
            }
        }
    };

    // Measurement floor of the trampoline.
    let mut floor = Vec::new();
    for _ in 0..3 {
        if let Some(m) = measure("/bin/true", &[], &[], Stdio::null()).await {
            floor.push(m.maxrss_kib as f64);
        }
    }
    println!(
        "ru_maxrss floor (/bin/true spawned through the same trampoline): {} KiB",
        summary(&floor, 0)
    );

    let mut ours: Vec<Run> = Vec::new();
    let mut refs: Vec<Run> = Vec::new();
    for i in 0..=runs {
        for who in [Who::Ours, Who::Reference] {
            if who == Who::Reference && reference.is_none() {
                continue;
            }
            let Some(r) = one_run(who, reference.as_ref(), clock).await else {
                continue;
            };
            let label = if i == 0 {
                "warm-up".to_owned()
            } else {
                format!("run {i}")
            };
            println!(
                "  {:<9} {:<7}: first heartbeat {:>8} ms  ru_maxrss {:>7} KiB  VmHWM(self) {:>7} KiB  total {:>8.1} ms{}",
                format!("{who:?}"),
                label,
                r.first_heartbeat_ms
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or_else(|| "none".into()),
                r.maxrss_kib,
                r.vmhwm_kib,
                r.total_ms,
                if r.ok {
                    String::new()
                } else {
                    format!("  FAILED: {}", r.note)
                }
            );
            if i == 0 {
                continue;
            }
            match who {
                Who::Ours => ours.push(r),
                Who::Reference => refs.push(r),
            }
        }
    }

    let col = |runs: &[Run], f: Metric| -> Vec<f64> {
        runs.iter().filter(|r| r.ok).filter_map(f).collect()
    };
    let hb: Metric = |r: &Run| r.first_heartbeat_ms;
    let rss: Metric = |r: &Run| Some(r.maxrss_kib as f64);
    let hwm: Metric = |r: &Run| Some(r.vmhwm_kib as f64);
    let anon: Metric = |r: &Run| Some(r.anon_kib as f64);
    let file: Metric = |r: &Run| Some(r.file_kib as f64);
    let total: Metric = |r: &Run| Some(r.total_ms);
    let busy: Metric = |r: &Run| Some(r.total_ms - IDLE.as_secs_f64() * 1000.0);
    let rows: [(&str, Metric, usize, &str); 7] = [
        (
            "spawn -> first heartbeat (ms)",
            hb,
            1,
            "ours/ref <= 0.20 (1/5)",
        ),
        (
            "peak RSS, wait4 ru_maxrss (KiB)",
            rss,
            0,
            "ours/ref <= 0.10 (1/10)",
        ),
        ("VmHWM of the worker itself (KiB)", hwm, 0, "-"),
        ("  of which RssAnon, max sampled", anon, 0, "-"),
        ("  of which RssFile, max sampled", file, 0, "-"),
        ("total spawn -> exit (ms)", total, 1, "-"),
        ("total - 1 s idle window (ms)", busy, 1, "-"),
    ];
    println!();
    println!(
        "{:<34} {:<34} {:<34} {:>9}  target",
        "metric: median [min .. max]",
        format!("ours (n={})", ours.iter().filter(|r| r.ok).count()),
        format!("reference (n={})", refs.iter().filter(|r| r.ok).count()),
        "ours/ref"
    );
    for (name, f, prec, target) in rows {
        let o = col(&ours, f);
        let r = col(&refs, f);
        let ratio = if o.is_empty() || r.is_empty() {
            "n/a".to_owned()
        } else {
            format!("{:.3}", median(&o) / median(&r))
        };
        let verdict = if o.is_empty() || r.is_empty() || target == "-" {
            String::new()
        } else {
            let lim = if name.starts_with("spawn") {
                TARGET_HEARTBEAT_RATIO
            } else {
                TARGET_RSS_RATIO
            };
            if median(&o) / median(&r) <= lim {
                "  (met)".into()
            } else {
                "  (NOT met)".into()
            }
        };
        println!(
            "{:<34} {:<34} {:<34} {:>9}  {}{}",
            name,
            summary(&o, prec),
            summary(&r, prec),
            ratio,
            target,
            verdict
        );
    }
    println!(
        "notes: ru_maxrss = max over the worker and the descendants it waited for (bash, rg, ...), \
         not a sum, and includes the trampoline floor above; VmHWM = the worker process alone; \
         RssAnon/RssFile (anonymous vs file-backed: binary, shared libraries) are sampled every \
         20 ms, so they are lower bounds."
    );

    // Informational: are the posted results the same? (run 1 of each)
    if let (Some(o), Some(r)) = (ours.iter().find(|r| r.ok), refs.iter().find(|r| r.ok)) {
        let a = normalize(&o.results, &o.workdir);
        let b = normalize(&r.results, &r.workdir);
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        println!(
            "result parity (first good run of each, workdir normalized): {same}/{} tool results identical",
            a.len().max(b.len())
        );
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            if x != y {
                let kind = if sorted_lines(&o.results[i], &o.workdir)
                    == sorted_lines(&r.results[i], &r.workdir)
                {
                    "same lines, different order"
                } else {
                    "DIFFERENT"
                };
                println!("  #{:<2} {kind}", i + 1);
                println!("      ours: {}", short(x));
                println!("      ref : {}", short(y));
            }
        }
    }
}
