//! Readable rendering of tool calls and results (the demo's transcript).

use std::time::Duration;

use serde_json::Value;

/// Lines of a result shown in the transcript; the rest is counted.
pub const RESULT_LINES: usize = 6;
/// Longest line shown (characters); longer lines are cut with `…`.
pub const LINE_WIDTH: usize = 96;

/// Cut `s` to `max` characters (adding `…`).
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn first_line(s: &str) -> (&str, bool) {
    match s.split_once('\n') {
        Some((a, rest)) => (a, !rest.trim().is_empty()),
        None => (s, false),
    }
}

fn quoted_first_line(s: &str, max: usize) -> String {
    let (line, more) = first_line(s);
    let mut q = format!("{:?}", clip(line, max));
    if more {
        q.push_str(" +…");
    }
    q
}

/// One line describing a call's input: the command, the path, the pattern.
pub fn input_summary(tool: &str, input: &Value) -> String {
    let s = |k: &str| input.get(k).and_then(Value::as_str);
    match tool {
        "bash" => match s("command") {
            Some(c) => {
                let (line, more) = first_line(c);
                let mut out = clip(line, 80);
                if more {
                    out.push_str(" …");
                }
                out
            }
            None if input.get("restart").and_then(Value::as_bool) == Some(true) => {
                "(restart the shell)".into()
            }
            None => compact(input),
        },
        "read" => {
            let mut out = s("file_path").unwrap_or("?").to_owned();
            if let Some(r) = input.get("view_range") {
                out.push_str(&format!(" lines {r}"));
            }
            out
        }
        "write" => {
            let content = s("content").unwrap_or("");
            format!(
                "{} ({} lines, {} bytes)",
                s("file_path").unwrap_or("?"),
                content.lines().count(),
                content.len()
            )
        }
        "edit" => format!(
            "{}: {} → {}",
            s("file_path").unwrap_or("?"),
            quoted_first_line(s("old_string").unwrap_or(""), 32),
            quoted_first_line(s("new_string").unwrap_or(""), 32),
        ),
        "glob" | "grep" => match s("path") {
            Some(p) => format!("{:?} in {p}", s("pattern").unwrap_or("?")),
            None => format!("{:?}", s("pattern").unwrap_or("?")),
        },
        _ => compact(input),
    }
}

fn compact(v: &Value) -> String {
    clip(&v.to_string(), 80)
}

/// The text of a `user.tool_result` (its `text` blocks joined; other blocks named).
pub fn result_text(result: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(blocks) = result.get("content").and_then(Value::as_array) {
        for b in blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => parts.push(b["text"].as_str().unwrap_or_default().to_owned()),
                Some(other) => parts.push(format!("[{other} block]")),
                None => {}
            }
        }
    } else if let Some(s) = result.get("content").and_then(Value::as_str) {
        parts.push(s.to_owned());
    }
    parts.join("\n")
}

/// The first [`RESULT_LINES`] lines of `text`, clipped, and how many lines were left out.
pub fn result_preview(text: &str) -> (Vec<String>, usize) {
    let lines: Vec<&str> = text.trim_end_matches('\n').lines().collect();
    let shown = lines
        .iter()
        .take(RESULT_LINES)
        .map(|l| clip(l, LINE_WIDTH))
        .collect();
    (shown, lines.len().saturating_sub(RESULT_LINES))
}

/// `12.3 ms`, `1.24 s`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 999.5 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// `+0.123s` (offset from the webhook delivery).
pub fn fmt_offset(d: Duration) -> String {
    format!("+{:.3}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries() {
        assert_eq!(
            input_summary("bash", &json!({"command": "ls -l\necho hi"})),
            "ls -l …"
        );
        assert_eq!(
            input_summary(
                "write",
                &json!({"file_path": "a/b.sh", "content": "x\ny\n"})
            ),
            "a/b.sh (2 lines, 4 bytes)"
        );
        assert_eq!(
            input_summary(
                "edit",
                &json!({"file_path": "f", "old_string": "a", "new_string": "b\nc"})
            ),
            "f: \"a\" → \"b\" +…"
        );
        assert_eq!(
            input_summary("grep", &json!({"pattern": "greet", "path": "p"})),
            "\"greet\" in p"
        );
        assert_eq!(
            input_summary("glob", &json!({"pattern": "**/*.sh"})),
            "\"**/*.sh\""
        );
        assert_eq!(
            input_summary("read", &json!({"file_path": "x", "view_range": [1, 2]})),
            "x lines [1,2]"
        );
        assert_eq!(input_summary("custom", &json!({"a": 1})), "{\"a\":1}");
    }

    #[test]
    fn previews() {
        let r = json!({"content": [{"type": "text", "text": "1\n2\n3\n4\n5\n6\n7\n8\n"}]});
        let (lines, more) = result_preview(&result_text(&r));
        assert_eq!(lines, ["1", "2", "3", "4", "5", "6"]);
        assert_eq!(more, 2);
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(fmt_duration(Duration::from_micros(1500)), "1.5 ms");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2.50 s");
    }
}
