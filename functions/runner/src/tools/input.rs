//! Input validation with the reference's lax coercion (tools spec §2.1).
//!
//! The reference validates each call's `input` with Pydantic v2 in lax mode. We
//! accept exactly the inputs it accepts; any rejection (wrong type, missing required
//! field, any extra key) is the error text `ValueError('Invalid arguments for
//! function <tool>')` and the tool does not run.

use serde_json::{Map, Value};

/// Expected type of one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Bool,
    IntList,
}

/// A parameter: name, type, required.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
}

pub const fn req(name: &'static str, kind: Kind) -> Param {
    Param {
        name,
        kind,
        required: true,
    }
}

pub const fn opt(name: &'static str, kind: Kind) -> Param {
    Param {
        name,
        kind,
        required: false,
    }
}

/// A coerced argument value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Str(String),
    Int(i64),
    Bool(bool),
    IntList(Vec<i64>),
}

/// Validated arguments (absent and `null` optional parameters are simply missing).
#[derive(Debug, Default, Clone)]
pub struct Args(Vec<(&'static str, Arg)>);

impl Args {
    fn get(&self, name: &str) -> Option<&Arg> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, a)| a)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Arg::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Arg::Int(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.get(name) {
            Some(Arg::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    pub fn int_list(&self, name: &str) -> Option<&[i64]> {
        match self.get(name) {
            Some(Arg::IntList(l)) => Some(l),
            _ => None,
        }
    }
}

/// The exact rejection text of the reference.
pub fn invalid_arguments(tool: &str) -> String {
    format!("ValueError('Invalid arguments for function {tool}')")
}

/// Validate `input` against `params` for tool `tool`.
pub fn validate(tool: &str, input: &Value, params: &[Param]) -> Result<Args, String> {
    let bad = || invalid_arguments(tool);
    let obj: &Map<String, Value> = match input {
        Value::Object(m) => m,
        Value::Null => &EMPTY,
        other => {
            return Err(format!(
                "TypeError('Input must be a dictionary, got {}')",
                py_type_name(other)
            ));
        }
    };
    if obj.keys().any(|k| !params.iter().any(|p| p.name == k)) {
        return Err(bad());
    }
    let mut args = Args::default();
    for p in params {
        match obj.get(p.name) {
            None | Some(Value::Null) if !p.required => {}
            None | Some(Value::Null) => return Err(bad()),
            Some(v) => {
                let arg = match p.kind {
                    Kind::Str => v.as_str().map(|s| Arg::Str(s.to_owned())),
                    Kind::Int => lax_int(v).map(Arg::Int),
                    Kind::Bool => lax_bool(v).map(Arg::Bool),
                    Kind::IntList => match v {
                        Value::Array(items) => items
                            .iter()
                            .map(lax_int)
                            .collect::<Option<Vec<_>>>()
                            .map(Arg::IntList),
                        _ => None,
                    },
                };
                args.0.push((p.name, arg.ok_or_else(bad)?));
            }
        }
    }
    Ok(args)
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

fn py_type_name(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "list",
        Value::String(_) => "str",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::Null => "NoneType",
        Value::Object(_) => "dict",
    }
}

/// Pydantic lax `int`: integers, integral floats, numeric strings, booleans.
pub fn lax_int(v: &Value) -> Option<i64> {
    match v {
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i)
            } else {
                let f = n.as_f64()?;
                (f.fract() == 0.0 && f.is_finite() && f.abs() < 9.2e18).then_some(f as i64)
            }
        }
        Value::String(s) => {
            let t = s.trim();
            let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
            let digits_only =
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_');
            if !digits_only
                || digits.starts_with('_')
                || digits.ends_with('_')
                || digits.contains("__")
            {
                return None;
            }
            t.replace('_', "").parse().ok()
        }
        _ => None,
    }
}

/// Pydantic lax `bool`.
pub fn lax_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "t" | "y" => Some(true),
            "false" | "no" | "off" | "0" | "f" | "n" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BASH: &[Param] = &[
        opt("command", Kind::Str),
        opt("restart", Kind::Bool),
        opt("timeout_ms", Kind::Int),
    ];
    const READ: &[Param] = &[
        req("file_path", Kind::Str),
        opt("view_range", Kind::IntList),
    ];

    #[test]
    fn ints() {
        for (v, want) in [
            (json!(2000), Some(2000)),
            (json!(2000.0), Some(2000)),
            (json!("2000"), Some(2000)),
            (json!(" 7 "), Some(7)),
            (json!("-5"), Some(-5)),
            (json!(true), Some(1)),
            (json!(false), Some(0)),
            (json!(1.5), None),
            (json!("abc"), None),
            (json!("1.5"), None),
            (json!(null), None),
            (json!([1]), None),
        ] {
            assert_eq!(lax_int(&v), want, "{v}");
        }
    }

    #[test]
    fn bools() {
        for s in ["true", "YES", "on", "1", "t", "Y"] {
            assert_eq!(lax_bool(&json!(s)), Some(true), "{s}");
        }
        for s in ["false", "No", "OFF", "0", "f", "n"] {
            assert_eq!(lax_bool(&json!(s)), Some(false), "{s}");
        }
        assert_eq!(lax_bool(&json!(1)), Some(true));
        assert_eq!(lax_bool(&json!(0)), Some(false));
        assert_eq!(lax_bool(&json!("maybe")), None);
        assert_eq!(lax_bool(&json!(2)), None);
    }

    #[test]
    fn spec_b22_b23_r26() {
        let e = invalid_arguments("bash");
        assert_eq!(e, "ValueError('Invalid arguments for function bash')");
        assert_eq!(
            validate("bash", &json!({"command": "echo x", "bogus": 1}), BASH).unwrap_err(),
            e
        );
        assert_eq!(
            validate("bash", &json!({"command": 123}), BASH).unwrap_err(),
            e
        );
        assert_eq!(
            validate("bash", &json!({"restart": "maybe"}), BASH).unwrap_err(),
            e
        );
        let a = validate(
            "bash",
            &json!({"command": "echo t", "timeout_ms": "2000"}),
            BASH,
        )
        .unwrap();
        assert_eq!(a.int("timeout_ms"), Some(2000));
        let a = validate(
            "bash",
            &json!({"command": null, "timeout_ms": 2000.0}),
            BASH,
        )
        .unwrap();
        assert_eq!((a.str("command"), a.int("timeout_ms")), (None, Some(2000)));
        let r = invalid_arguments("read");
        assert_eq!(
            validate("read", &json!({"file_path": "a", "extra": 1}), READ).unwrap_err(),
            r
        );
        assert_eq!(validate("read", &json!({}), READ).unwrap_err(), r);
        assert_eq!(
            validate("read", &json!({"file_path": 5}), READ).unwrap_err(),
            r
        );
        assert_eq!(
            validate(
                "read",
                &json!({"file_path": "a", "view_range": "1,2"}),
                READ
            )
            .unwrap_err(),
            r
        );
        assert_eq!(
            validate(
                "read",
                &json!({"file_path": "a", "view_range": [1, null]}),
                READ
            )
            .unwrap_err(),
            r
        );
        let a = validate(
            "read",
            &json!({"file_path": "a", "view_range": ["1", 2.0, true]}),
            READ,
        )
        .unwrap();
        assert_eq!(a.int_list("view_range"), Some(&[1, 2, 1][..]));
        assert_eq!(
            validate("read", &json!([1]), READ).unwrap_err(),
            "TypeError('Input must be a dictionary, got list')"
        );
    }
}
