//! Benchmark (not a test): our built-in `grep`/`glob` against the Python reference
//! tools (`anthropic==2.10.0`, `beta_agent_toolset_20260401`, driven in-process by a
//! small Python driver, as a black box), plus the memory boundedness of our tool path.
//!
//! Run by hand:
//!
//! ```text
//! cargo bench -p runner --bench tools
//! CMA_REFERENCE_PYTHON=/path/to/venv/bin/python cargo bench -p runner --bench tools
//! ```
//!
//! `CMA_REFERENCE_PYTHON` (default `/tmp/refvenv/bin/python`) must have
//! `anthropic==2.10.0`; when it is missing the reference columns are skipped. The
//! reference grep runs in ripgrep mode only when `rg` is on `PATH` (checked and
//! printed). `CMA_BENCH_SIZES` overrides the tree sizes (default `2000,20000`).
//!
//! Speed: each call is made once to warm up, then 5 timed times; median (min..max)
//! in ms. Ours: `runner::tools::builtin_registry(..).call(name, &input)` in a tokio
//! runtime. Reference: the same calls on `beta_agent_toolset_20260401(
//! AgentToolContext(workdir=...))` tools in one Python process (interpreter start-up
//! and import excluded).
//!
//! Memory: each case is one tool call in a fresh process (this binary re-executed as
//! `__tool`), spawned through a second re-execution (`__spawn`, a fresh small process)
//! that `wait4`s it: on Linux a child's `ru_maxrss` also covers the pre-`exec` memory
//! of the process it was forked from, so spawning from this (large) bench process
//! would inflate every figure. `ru_maxrss` = max over the process and the descendants
//! it waited for (bash and its pipeline); the child also reports its own VmHWM.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use runner::tools::{ToolContext, builtin_registry};
use serde_json::{Value, json};

const DEFAULT_PYTHON: &str = "/tmp/refvenv/bin/python";
const REPS: usize = 5;

const REFERENCE_DRIVER: &str = r#"
import asyncio, json, shutil, statistics, sys, time
from anthropic.lib.tools.agent_toolset import AgentToolContext, beta_agent_toolset_20260401

req = json.load(sys.stdin)
tools = {t.name: t for t in beta_agent_toolset_20260401(AgentToolContext(workdir=req["workdir"]))}

async def once(name, inp):
    t0 = time.perf_counter()
    try:
        out, err = await tools[name].call(inp), False
    except Exception as e:  # the session runner turns this into an error result
        out, err = repr(e), True
    dt = (time.perf_counter() - t0) * 1000.0
    if not isinstance(out, str):
        out = json.dumps(out, default=str)
    return dt, out, err

async def main():
    res = []
    for c in req["calls"]:
        await once(c["name"], c["input"])  # warm-up
        times = []
        for _ in range(req["reps"]):
            dt, out, err = await once(c["name"], c["input"])
            times.append(dt)
        res.append({"times_ms": times, "output": out, "is_error": err})
    for t in tools.values():
        close = getattr(t, "close", None)
        if close is not None:
            r = close()
            if asyncio.iscoroutine(r):
                await r
    print(json.dumps({"rg": shutil.which("rg"), "results": res}))

asyncio.run(main())
"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("__spawn") => trampoline(&args[2..]),
        Some("__tool") => one_tool_call(&args[2..]),
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(bench());
}

// ---------------------------------------------------------------- helpers

fn vmhwm_self_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `__spawn PROG ARGS...`: spawn PROG (stdout inherited), wait4 it, print
/// `@@done MAXRSS_KIB STATUS`.
fn trampoline(cmd: &[String]) -> ! {
    let child = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is valid; pointers are valid for the call.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let code = if r != pid {
        -100
    } else if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@@done {} {code}", ru.ru_maxrss);
    let _ = out.flush();
    std::process::exit(0)
}

/// `__tool WORKDIR NAME INPUT_JSON`: one call through the registry; prints
/// `@@tool OUT_CHARS IS_ERROR VMHWM_KIB` (preceded by the output text itself when
/// `CMA_BENCH_PRINT` is set — handy to inspect a call by hand).
fn one_tool_call(args: &[String]) -> ! {
    let workdir = PathBuf::from(&args[0]);
    let name = args[1].clone();
    let input: Value = serde_json::from_str(&args[2]).expect("input json");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (chars, is_error) = rt.block_on(async {
        let reg = builtin_registry(Arc::new(ToolContext::new(workdir)));
        let out = reg.call(&name, &input).await.expect("owned tool");
        let chars = out.as_text().map(|t| t.chars().count()).unwrap_or(0);
        if std::env::var_os("CMA_BENCH_PRINT").is_some() {
            println!("{}", out.as_text().unwrap_or_default());
        }
        reg.shutdown().await;
        (chars, out.is_error)
    });
    drop(rt);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@@tool {chars} {is_error} {}", vmhwm_self_kib());
    let _ = out.flush();
    std::process::exit(0)
}

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

fn fmt_times(v: &[f64]) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.2} ({:.2}..{:.2})", median(v), min, max)
}

// ---------------------------------------------------------------- tree

const FILES_PER_DIR: usize = 20;

/// A tree of `n` regular files in nested directories (plus ~70 hidden / ignored
/// extras). 1 file in 10 has one `needle_<k>` line; files are 30 lines of text.
fn make_tree(root: &Path, n: usize) -> usize {
    let leaves = n.div_ceil(FILES_PER_DIR);
    let tops = (leaves as f64).sqrt().ceil() as usize;
    let mut written = 0;
    let mut body = String::new();
    for leaf in 0..leaves {
        let mut dir = root.join(format!("pkg{:02}", leaf % tops));
        dir.push(format!("mod{:03}", leaf / tops));
        if leaf % 7 == 3 {
            dir.push("nested/inner");
        }
        std::fs::create_dir_all(&dir).unwrap();
        for j in 0..FILES_PER_DIR {
            if written == n {
                break;
            }
            let k = leaf * FILES_PER_DIR + j;
            let ext = if j % 10 == 9 {
                "md"
            } else if j % 4 == 1 {
                "rs"
            } else {
                "txt"
            };
            body.clear();
            for line in 0..30 {
                if line == 7 && k % 10 == 0 {
                    body.push_str(&format!("let x = needle_{k}; // the needle line {line}\n"));
                } else {
                    body.push_str(&format!(
                        "line {line} of file {k}: lorem ipsum dolor sit amet consectetur\n"
                    ));
                }
            }
            std::fs::write(dir.join(format!("f{j:02}.{ext}")), &body).unwrap();
            written += 1;
        }
    }
    // Hidden and ignored extras (with needles).
    let mut extras = 0;
    std::fs::write(root.join(".gitignore"), "ignored/\n*.log\n").unwrap();
    std::fs::write(root.join(".ignore"), "skipme/\n").unwrap();
    for d in [".hidden", "ignored", "skipme", ".git_like/objects"] {
        let dir = root.join(d);
        std::fs::create_dir_all(&dir).unwrap();
        for j in 0..15 {
            std::fs::write(
                dir.join(format!("x{j}.txt")),
                format!("hidden or ignored needle_{j}\n"),
            )
            .unwrap();
            extras += 1;
        }
    }
    for j in 0..5 {
        std::fs::write(root.join(format!("pkg00/run{j}.log")), "log needle_0\n").unwrap();
        std::fs::write(root.join(format!("pkg00/.dot{j}.txt")), "dot needle_0\n").unwrap();
        extras += 2;
    }
    written + extras + 2
}

// ---------------------------------------------------------------- reference

struct RefResult {
    times_ms: Vec<f64>,
    output: String,
    is_error: bool,
}

fn run_reference(
    python: &str,
    driver: &Path,
    workdir: &Path,
    calls: &[(&str, Value)],
) -> Result<(Option<String>, Vec<RefResult>), String> {
    let req = json!({
        "workdir": workdir.display().to_string(),
        "reps": REPS,
        "calls": calls.iter().map(|(n, i)| json!({"name": n, "input": i})).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new(python)
        .arg(driver)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {python}: {e}"))?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "reference driver failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let rg = v["rg"].as_str().map(str::to_owned);
    let res = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| RefResult {
            times_ms: r["times_ms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_f64().unwrap())
                .collect(),
            output: r["output"].as_str().unwrap_or_default().to_owned(),
            is_error: r["is_error"].as_bool().unwrap_or(false),
        })
        .collect();
    Ok((rg, res))
}

fn find_reference(python: &str) -> Option<String> {
    if !Path::new(python).exists() {
        println!(
            "reference: SKIPPED — python not found at {python} (set CMA_REFERENCE_PYTHON to a python \
             with anthropic==2.10.0)"
        );
        return None;
    }
    let o = std::process::Command::new(python)
        .args([
            "-c",
            "import anthropic, sys; print(anthropic.__version__, sys.version.split()[0])",
        ])
        .output()
        .ok()?;
    if !o.status.success() {
        println!("reference: SKIPPED — {python} cannot import anthropic");
        return None;
    }
    Some(String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// Whether glob output (one absolute path per line) is newest-mtime-first, and how
/// many adjacent pairs tie on mtime (ties may be broken in any order, spec G3).
fn mtime_order(out: &str) -> String {
    let m: Vec<Option<std::time::SystemTime>> = out
        .lines()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect();
    if m.iter().any(Option::is_none) {
        return "not all paths stat-able".into();
    }
    let m: Vec<_> = m.into_iter().flatten().collect();
    let desc = m.windows(2).all(|w| w[0] >= w[1]);
    let ties = m.windows(2).filter(|w| w[0] == w[1]).count();
    format!(
        "{}, {ties} adjacent mtime ties",
        if desc {
            "newest-first"
        } else {
            "NOT newest-first"
        }
    )
}

// ---------------------------------------------------------------- speed

async fn speed(python: Option<&str>, driver: Option<&Path>, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    let t = Instant::now();
    let total = make_tree(&root, n);
    let root = root.canonicalize().unwrap();
    println!();
    println!(
        "-- tree: {n} files (+{} hidden/ignored extras) in {} ({:.1} s to generate)",
        total - n,
        root.display(),
        t.elapsed().as_secs_f64()
    );
    let calls: Vec<(&str, Value)> = vec![
        ("grep", json!({"pattern": "needle_[0-9]+"})),
        ("grep", json!({"pattern": "zz_no_such_token_qq"})),
        (
            "grep",
            json!({"pattern": "needle_1[0-9]*", "path": "pkg01"}),
        ),
        ("glob", json!({"pattern": "**/*.txt"})),
        ("glob", json!({"pattern": "**/*.rs", "path": "pkg01"})),
        ("glob", json!({"pattern": "pkg0*/mod00*/**/f1?.md"})),
    ];

    // Ours.
    let reg = builtin_registry(Arc::new(ToolContext::new(root.clone())));
    let mut ours: Vec<(Vec<f64>, String, bool)> = Vec::new();
    for (name, input) in &calls {
        let _ = reg.call(name, input).await.unwrap();
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..REPS {
            let t = Instant::now();
            let out = reg.call(name, input).await.unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            last = Some(out);
        }
        let out = last.unwrap();
        ours.push((
            times,
            out.as_text().unwrap_or_default().to_owned(),
            out.is_error,
        ));
    }
    reg.shutdown().await;

    // Reference.
    let reference = match (python, driver) {
        (Some(p), Some(d)) => match run_reference(p, d, &root, &calls) {
            Ok((rg, res)) => {
                match &rg {
                    Some(rg) => println!("reference grep mode: ripgrep ({rg})"),
                    None => println!(
                        "reference grep mode: FALLBACK (no rg on PATH) — grep figures are not \
                         comparable to the target"
                    ),
                }
                Some(res)
            }
            Err(e) => {
                println!("reference: FAILED: {e}");
                None
            }
        },
        _ => None,
    };

    println!(
        "{:<6} {:<42} {:>22} {:>22} {:>9} {:>9}  {:<26} output",
        "tool",
        "input",
        "ours ms med (min..max)",
        "ref ms med (min..max)",
        "ours/ref",
        "ref/ours",
        "target"
    );
    for (i, (name, input)) in calls.iter().enumerate() {
        let (ot, oout, oerr) = &ours[i];
        let rr = reference.as_ref().map(|r| &r[i]);
        let (rt, ratio, inv) = match rr {
            Some(r) => {
                let q = median(ot) / median(&r.times_ms);
                (
                    fmt_times(&r.times_ms),
                    format!("{q:.3}"),
                    format!("{:.2}x", 1.0 / q),
                )
            }
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        let target = match (*name, rr) {
            ("grep", Some(r)) => format!(
                "ours/ref <= 1 {}",
                if median(ot) <= median(&r.times_ms) {
                    "(met)"
                } else {
                    "(NOT met)"
                }
            ),
            ("grep", None) => "ours/ref <= 1".into(),
            (_, Some(r)) => format!(
                "ref/ours >= 3 {}",
                if median(&r.times_ms) >= 3.0 * median(ot) {
                    "(met)"
                } else {
                    "(NOT met)"
                }
            ),
            (_, None) => "ref/ours >= 3".into(),
        };
        let lines = oout.lines().count();
        let parity = match rr {
            None => String::new(),
            Some(r) if r.output == *oout && r.is_error == *oerr => "identical to ref".into(),
            Some(r) => {
                let mut a: Vec<&str> = oout.lines().collect();
                let mut b: Vec<&str> = r.output.lines().collect();
                a.sort_unstable();
                b.sort_unstable();
                let mut p = if a == b {
                    "same lines as ref, different order".to_owned()
                } else {
                    format!(
                        "DIFFERS from ref ({} vs {} lines, is_error {} vs {})",
                        lines,
                        r.output.lines().count(),
                        oerr,
                        r.is_error
                    )
                };
                if *name == "glob" {
                    p.push_str(&format!(
                        " [ours {}; ref {}]",
                        mtime_order(oout),
                        mtime_order(&r.output)
                    ));
                }
                p
            }
        };
        println!(
            "{:<6} {:<42} {:>22} {:>22} {:>9} {:>9}  {:<26} {} lines, {} chars{}; {}",
            name,
            input.to_string(),
            fmt_times(ot),
            rt,
            ratio,
            inv,
            target,
            lines,
            oout.chars().count(),
            if *oerr { ", is_error" } else { "" },
            parity
        );
    }
}

// ---------------------------------------------------------------- memory

struct MemRun {
    maxrss_kib: i64,
    vmhwm_kib: u64,
    chars: usize,
    is_error: bool,
}

fn mem_run(workdir: &Path, name: &str, input: &Value) -> Option<MemRun> {
    let me = std::env::current_exe().unwrap();
    let out = std::process::Command::new(&me)
        .arg("__spawn")
        .arg(&me)
        .arg("__tool")
        .arg(workdir)
        .arg(name)
        .arg(input.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tool = None;
    let mut done = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            Some(&"@@tool") => {
                tool = Some((f[1].parse().ok()?, f[2] == "true", f[3].parse().ok()?))
            }
            Some(&"@@done") => done = Some((f[1].parse::<i64>().ok()?, f[2].parse::<i32>().ok()?)),
            _ => {}
        }
    }
    let (chars, is_error, vmhwm_kib) = tool?;
    let (maxrss_kib, code) = done?;
    if code != 0 {
        return None;
    }
    Some(MemRun {
        maxrss_kib,
        vmhwm_kib,
        chars,
        is_error,
    })
}

fn memory() {
    println!();
    println!("-- memory boundedness of our tool path (one call per fresh process; median of 3)");
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let ws = ws.canonicalize().unwrap();
    // 2 000 000 bytes: 20 000 lines of 100 bytes.
    let mut big = String::with_capacity(2_000_000);
    for i in 0..20_000 {
        let head = format!("{i:06} ");
        big.push_str(&head);
        big.push_str(&"y".repeat(99 - head.len()));
        big.push('\n');
    }
    assert_eq!(big.len(), 2_000_000);
    std::fs::write(ws.join("big.txt"), &big).unwrap();
    std::fs::write(ws.join("small.txt"), "one\ntwo\nthree\n").unwrap();

    // (label, tool, input)
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "trivial bash (echo hi)",
            "bash",
            json!({"command": "echo hi"}),
        ),
        (
            "trivial read (14-byte file)",
            "read",
            json!({"file_path": "small.txt"}),
        ),
        (
            "bash, 1 MB of output",
            "bash",
            json!({"command": r"head -c 1000000 /dev/zero | tr '\0' 'x'"}),
        ),
        (
            "bash, 10 MB of output",
            "bash",
            json!({"command": r"head -c 10000000 /dev/zero | tr '\0' 'x'"}),
        ),
        (
            "read 2 MB file, view_range [10000,10100]",
            "read",
            json!({"file_path": "big.txt", "view_range": [10000, 10100]}),
        ),
        (
            "read 2 MB file, view_range [18001,20000]",
            "read",
            json!({"file_path": "big.txt", "view_range": [18001, 20000]}),
        ),
        (
            "read 2 MB file, whole (over the cap)",
            "read",
            json!({"file_path": "big.txt"}),
        ),
    ];
    let mut floor = Vec::new();
    for _ in 0..3 {
        let me = std::env::current_exe().unwrap();
        if let Ok(o) = std::process::Command::new(&me)
            .args(["__spawn", "/bin/true"])
            .output()
        {
            let t = String::from_utf8_lossy(&o.stdout);
            if let Some(v) = t
                .lines()
                .find_map(|l| l.strip_prefix("@@done "))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
            {
                floor.push(v);
            }
        }
    }
    println!(
        "ru_maxrss floor (/bin/true through the same trampoline): {:.0} KiB",
        median(&floor)
    );
    println!(
        "{:<42} {:>14} {:>10} {:>14} {:>10} {:>9}  result",
        "case", "ru_maxrss KiB", "delta", "VmHWM(self)", "delta", ""
    );
    let mut base: Option<(f64, f64)> = None;
    let mut read_base: Option<(f64, f64)> = None;
    for (label, name, input) in &cases {
        let runs: Vec<MemRun> = (0..3).filter_map(|_| mem_run(&ws, name, input)).collect();
        if runs.is_empty() {
            println!("{label:<42} FAILED");
            continue;
        }
        let rss = median(&runs.iter().map(|r| r.maxrss_kib as f64).collect::<Vec<_>>());
        let hwm = median(&runs.iter().map(|r| r.vmhwm_kib as f64).collect::<Vec<_>>());
        if *name == "bash" && base.is_none() {
            base = Some((rss, hwm));
        }
        if *name == "read" && read_base.is_none() {
            read_base = Some((rss, hwm));
        }
        let (b_rss, b_hwm) = if *name == "read" {
            read_base.unwrap()
        } else {
            base.unwrap()
        };
        println!(
            "{:<42} {:>14.0} {:>+10.0} {:>14.0} {:>+10.0} {:>9}  {} chars{}",
            label,
            rss,
            rss - b_rss,
            hwm,
            hwm - b_hwm,
            "",
            runs[0].chars,
            if runs[0].is_error { ", is_error" } else { "" }
        );
    }
    if let (Some((a, b)), Some((c, d))) = (base, read_base) {
        println!(
            "(deltas are against the trivial call of the same tool; trivial read vs trivial bash: \
             {:+.0} / {:+.0} KiB)",
            c - a,
            d - b
        );
    }
    println!(
        "notes: ru_maxrss = max(process, waited-for descendants such as bash) incl. the trampoline \
         floor; VmHWM = the tool process alone (its own peak since exec)."
    );
}

async fn bench() {
    println!("== tools: grep/glob vs reference, and memory boundedness ==");
    let python = std::env::var("CMA_REFERENCE_PYTHON").unwrap_or_else(|_| DEFAULT_PYTHON.into());
    let rg = std::process::Command::new("sh")
        .args(["-c", "command -v rg && rg --version | head -1"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).replace('\n', " "))
        .unwrap_or_default();
    println!(
        "rg on PATH: {}",
        if rg.trim().is_empty() {
            "NO (the reference grep would use its Python fallback)"
        } else {
            rg.trim()
        }
    );
    let scratch = tempfile::tempdir().unwrap();
    let (py, driver) = match find_reference(&python) {
        Some(v) => {
            println!(
                "reference: {python} (anthropic, python: {v}); in-process driver, warm-up 1 + {REPS} timed"
            );
            let d = scratch.path().join("reference_tools_driver.py");
            std::fs::write(&d, REFERENCE_DRIVER).unwrap();
            (Some(python.as_str()), Some(d))
        }
        None => (None, None),
    };
    println!(
        "ours: runner::tools::builtin_registry, warm-up 1 + {REPS} timed, tokio multi-thread (2 workers)"
    );
    let sizes: Vec<usize> = std::env::var("CMA_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![2000, 20000]);
    for n in sizes {
        speed(py, driver.as_deref(), n).await;
    }
    memory();
}
