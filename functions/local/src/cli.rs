//! Command-line parsing (no argument-parser dependency, like the workspace's other
//! binaries).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::bench::BenchOptions;
use crate::demo::DemoOptions;
use crate::launchers::{Kind, LauncherSettings};
use crate::serve::{ServeMode, ServeOptions};

pub const USAGE: &str = "\
cma-local: the Claude Managed Agents self-hosted pipeline on one machine

usage:
  cma-local [demo] [OPTIONS]                      the whole pipeline on this machine, no cloud: a fake
                                                  control plane with a scripted session, the webhook
                                                  handler on 127.0.0.1, an in-memory queue, the
                                                  dispatcher and a runner doing the real tool calls
  cma-local serve --mode poll|webhook [OPTIONS]   serve a real self_hosted environment from this machine
  cma-local bench [OPTIONS]                       webhook delivery → first tool result, per launcher
  cma-local help

launcher options (demo, serve, bench):
  --launcher auto|docker|process  auto (default): Docker if an engine answers and the image exists,
                                  else the runner binary as a child process
  --image IMAGE                   runner image for Docker (default cma/runner:ci; build it with
                                  `bash .ci/docker-image.sh`)
  --runner PATH                   runner binary for the process launcher (default: CMA_RUNNER_BIN,
                                  else `runner` next to cma-local)
  --workdir-root DIR              process launcher: per-session workdirs and logs (demo: a temporary
                                  directory; serve: $HOME/.local/state/cma-local/sessions)
  --max-idle DURATION             the runner's --max-idle (demo 1s, serve 60s)

demo:
  --timeout DURATION              give up after this long (default 120s)
  --keep-workdirs                 keep the temporary workdirs and runner logs

serve (credentials from the environment only, never logged):
  ANTHROPIC_ENVIRONMENT_ID, ANTHROPIC_ENVIRONMENT_KEY (required), ANTHROPIC_BASE_URL (optional),
  ANTHROPIC_WEBHOOK_SIGNING_KEY (webhook mode)
  --mode poll|webhook             poll: always-on long poll; webhook: serve the webhook handler
  --max-concurrent N              runners at most (default 4)
  --block-ms N                    poll: block_ms of each poll, 1-999 (default 999)
  --listen ADDR                   webhook: listen address (default 0.0.0.0:8080)
  --sweep-interval DURATION       webhook: unsigned drain period, 0 disables (default 60s)
  --docker-network NAME           Docker network mode (serve: bridge; demo and bench: host)
  --runner-log-format json|text   the runners' log format (default text)

bench:
  --runs N                        measured runs per launcher after one cold run (default 10)
  --launcher both|docker|process  (default both; Docker is skipped with a message if unusable)

Durations: 500ms, 1s, 2m, or plain seconds.
";

/// A parsed command line.
#[derive(Debug, Clone)]
pub enum Command {
    Demo(DemoOptions),
    Serve(ServeOptions),
    Bench(BenchOptions),
    Help,
}

/// `500ms`, `1s`, `2m`, `1h`, or plain seconds (fractions allowed).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(v * mult))
}

fn default_serve_root() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })
        .unwrap_or_else(std::env::temp_dir);
    state.join("cma-local/sessions")
}

/// Parse argv without the program name.
pub fn parse<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args: Vec<String> = args.into_iter().map(Into::into).collect();
    let sub = match args.first().map(String::as_str) {
        None => "demo".to_owned(),
        Some(a) if a.starts_with('-') => "demo".to_owned(),
        Some(_) => args.remove(0),
    };
    if !matches!(sub.as_str(), "demo" | "serve" | "bench" | "help") {
        return Err(format!(
            "unknown command {sub:?} (demo, serve, bench, help)"
        ));
    }
    if sub == "help" || args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help);
    }

    let mut launcher = LauncherSettings::demo();
    let mut launcher_kind: Option<String> = None;
    let mut max_idle = None;
    let mut workdir_root = None;
    let mut timeout = Duration::from_secs(120);
    let mut keep = false;
    let mut mode = None;
    let mut max_concurrent = 4u64;
    let mut block_ms = 999u32;
    let mut listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 8080));
    let mut sweep_interval = Duration::from_secs(60);
    let mut network = None;
    let mut log_format = "text".to_owned();
    let mut runs = 10usize;

    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let dur = |name: &str, v: String| {
            parse_duration(&v)
                .ok_or_else(|| format!("{name}: expected a duration such as 1s, got {v:?}"))
        };
        let allowed = |cmds: &[&str]| -> Result<(), String> {
            if cmds.contains(&sub.as_str()) {
                Ok(())
            } else {
                Err(format!("{flag} does not apply to `{sub}`"))
            }
        };
        match flag.as_str() {
            "--launcher" => launcher_kind = Some(value("--launcher")?),
            "--image" => launcher.image = value("--image")?,
            "--runner" => launcher.runner_bin = Some(PathBuf::from(value("--runner")?)),
            "--workdir-root" => workdir_root = Some(PathBuf::from(value("--workdir-root")?)),
            "--max-idle" => {
                allowed(&["demo", "serve"])?;
                max_idle = Some(dur("--max-idle", value("--max-idle")?)?);
            }
            "--timeout" => {
                allowed(&["demo"])?;
                timeout = dur("--timeout", value("--timeout")?)?;
                if timeout.is_zero() {
                    return Err("--timeout must be positive".into());
                }
            }
            "--keep-workdirs" => {
                allowed(&["demo"])?;
                keep = true;
            }
            "--mode" => {
                allowed(&["serve"])?;
                mode = Some(match value("--mode")?.as_str() {
                    "poll" => ServeMode::Poll,
                    "webhook" => ServeMode::Webhook,
                    other => {
                        return Err(format!("--mode: expected poll or webhook, got {other:?}"));
                    }
                });
            }
            "--max-concurrent" => {
                allowed(&["serve"])?;
                max_concurrent = value("--max-concurrent")?
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or("--max-concurrent: expected a positive integer")?;
            }
            "--block-ms" => {
                allowed(&["serve"])?;
                block_ms = value("--block-ms")?
                    .parse()
                    .ok()
                    .filter(|n| (1..=999).contains(n))
                    .ok_or("--block-ms: expected 1-999")?;
            }
            "--listen" => {
                allowed(&["serve"])?;
                let v = value("--listen")?;
                listen = v.parse().map_err(|_| {
                    format!("--listen: expected HOST:PORT such as 0.0.0.0:8080, got {v:?}")
                })?;
            }
            "--sweep-interval" => {
                allowed(&["serve"])?;
                sweep_interval = dur("--sweep-interval", value("--sweep-interval")?)?;
            }
            "--docker-network" => network = Some(value("--docker-network")?),
            "--runner-log-format" => {
                allowed(&["serve"])?;
                log_format = value("--runner-log-format")?;
                if log_format != "json" && log_format != "text" {
                    return Err("--runner-log-format: expected json or text".into());
                }
            }
            "--runs" => {
                allowed(&["bench"])?;
                runs = value("--runs")?
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or("--runs: expected a positive integer")?;
            }
            other => return Err(format!("unknown argument {other:?} for `{sub}`")),
        }
    }

    match sub.as_str() {
        "demo" => {
            if let Some(k) = launcher_kind {
                launcher.kind = Kind::parse(&k)?;
            }
            if let Some(n) = network {
                launcher.docker_network = n;
            }
            launcher.max_idle = max_idle.unwrap_or(launcher.max_idle);
            launcher.base_dir = workdir_root;
            launcher.keep_workdirs = keep;
            Ok(Command::Demo(DemoOptions { launcher, timeout }))
        }
        "serve" => {
            let mode = mode.ok_or("serve needs --mode poll or --mode webhook")?;
            if let Some(k) = launcher_kind {
                launcher.kind = Kind::parse(&k)?;
            }
            launcher.docker_network = network.unwrap_or_else(|| "bridge".to_owned());
            launcher.max_idle = max_idle.unwrap_or(Duration::from_secs(60));
            launcher.base_dir = Some(workdir_root.unwrap_or_else(default_serve_root));
            launcher.keep_workdirs = true;
            launcher.log_format = log_format;
            let mut o = ServeOptions::new(mode, launcher);
            o.max_concurrent = max_concurrent;
            o.block_ms = block_ms;
            o.listen = listen;
            o.sweep_interval = sweep_interval;
            Ok(Command::Serve(o))
        }
        "bench" => {
            let kinds = match launcher_kind.as_deref().unwrap_or("both") {
                "both" => vec![Kind::Process, Kind::Docker],
                "docker" => vec![Kind::Docker],
                "process" => vec![Kind::Process],
                other => {
                    return Err(format!(
                        "--launcher: expected both, docker or process, got {other:?}"
                    ));
                }
            };
            if let Some(n) = network {
                launcher.docker_network = n;
            }
            launcher.base_dir = workdir_root;
            Ok(Command::Bench(BenchOptions {
                runs,
                kinds,
                launcher,
                ..BenchOptions::default()
            }))
        }
        _ => Ok(Command::Help),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_demo() {
        let Command::Demo(d) = parse(Vec::<String>::new()).unwrap() else {
            panic!("not demo")
        };
        assert_eq!(d.launcher.kind, Kind::Auto);
        assert_eq!(d.launcher.image, "cma/runner:ci");
        assert_eq!(d.launcher.docker_network, "host");
        assert_eq!(d.launcher.max_idle, Duration::from_secs(1));
        let Command::Demo(d) = parse(["--launcher", "process", "--timeout=30s"]).unwrap() else {
            panic!("not demo")
        };
        assert_eq!(d.launcher.kind, Kind::Process);
        assert_eq!(d.timeout, Duration::from_secs(30));
    }

    #[test]
    fn serve_flags() {
        let Command::Serve(s) = parse([
            "serve",
            "--mode",
            "webhook",
            "--listen",
            "127.0.0.1:9000",
            "--launcher",
            "docker",
            "--max-concurrent",
            "2",
        ])
        .unwrap() else {
            panic!("not serve")
        };
        assert_eq!(s.mode, ServeMode::Webhook);
        assert_eq!(s.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(s.max_concurrent, 2);
        assert_eq!(s.launcher.kind, Kind::Docker);
        assert_eq!(s.launcher.docker_network, "bridge");
        assert_eq!(s.launcher.max_idle, Duration::from_secs(60));
        assert!(s.launcher.base_dir.is_some());
    }

    #[test]
    fn errors_name_the_flag() {
        for (args, needle) in [
            (vec!["serve"], "--mode"),
            (vec!["serve", "--mode", "push"], "--mode"),
            (vec!["demo", "--launcher", "k8s"], "--launcher"),
            (vec!["demo", "--mode", "poll"], "--mode"),
            (
                vec!["serve", "--mode", "poll", "--block-ms", "0"],
                "--block-ms",
            ),
            (vec!["demo", "--timeout", "soon"], "--timeout"),
            (vec!["frobnicate"], "unknown command"),
            (vec!["demo", "--bogus"], "--bogus"),
        ] {
            let e = parse(args.clone()).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        assert!(matches!(parse(["help"]).unwrap(), Command::Help));
        assert!(matches!(parse(["serve", "-h"]).unwrap(), Command::Help));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("-1s"), None);
    }
}
