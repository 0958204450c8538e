//! Reading the webhook's SQS message (schema v1, [`cma_shared::message`]).
//!
//! The body is checked field by field on a `serde_json::Value` instead of being handed
//! to serde's derive: serde's error messages quote the offending value, and a body
//! carries a work secret (ciphertext, or plaintext in local mode) that must never reach
//! a log line. Every [`Malformed`] reason names a field, never a value.
//!
//! Rules (from the schema): `version` must be the integer 1 (any other number is
//! [`Malformed::UnknownVersion`]: not ours to process); `work_id`, `environment_id`,
//! `session_id` are non-empty strings without whitespace or control characters, at
//! most [`MAX_ID_LEN`] bytes; `acked_at` is RFC 3339; exactly one of
//! `work_secret_ciphertext` / `work_secret` is a non-empty string; unknown fields are
//! ignored.

use cma_shared::message::{MESSAGE_VERSION, WorkMessage};
use serde_json::Value;

use crate::time::parse_rfc3339_ms;

/// Longest accepted id (work, environment, session).
pub const MAX_ID_LEN: usize = 256;

/// Why a body is not a usable work message. Never contains a value from the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the SQS record has no body")]
    NoBody,
    #[error("body is not JSON (syntax error at line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("message version {0} is not supported (this dispatcher reads version 1)")]
    UnknownVersion(String),
    #[error("field `{0}` is missing")]
    MissingField(&'static str),
    #[error("field `{field}` {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    #[error("neither `work_secret_ciphertext` nor `work_secret` is present")]
    NoSecret,
    #[error("both `work_secret_ciphertext` and `work_secret` are present")]
    BothSecrets,
}

/// A valid message and its `acked_at` in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMessage {
    pub message: WorkMessage,
    pub acked_at_ms: i64,
}

fn id_field(
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<String, Malformed> {
    let v = obj.get(field).ok_or(Malformed::MissingField(field))?;
    let s = v.as_str().ok_or(Malformed::InvalidField {
        field,
        reason: "is not a string",
    })?;
    if s.is_empty() {
        return Err(Malformed::InvalidField {
            field,
            reason: "is empty",
        });
    }
    if s.len() > MAX_ID_LEN {
        return Err(Malformed::InvalidField {
            field,
            reason: "is longer than 256 bytes",
        });
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Malformed::InvalidField {
            field,
            reason: "contains whitespace or control characters",
        });
    }
    Ok(s.to_owned())
}

fn secret_field(
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, Malformed> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(Malformed::InvalidField {
            field,
            reason: "is empty",
        }),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Malformed::InvalidField {
            field,
            reason: "is not a string",
        }),
    }
}

/// Parse and validate one SQS body.
pub fn parse_body(body: &str) -> Result<ParsedMessage, Malformed> {
    let value: Value = serde_json::from_str(body).map_err(|e| Malformed::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let obj = value.as_object().ok_or(Malformed::NotAnObject)?;
    let version = obj
        .get("version")
        .ok_or(Malformed::MissingField("version"))?;
    match version.as_u64() {
        Some(v) if v == u64::from(MESSAGE_VERSION) => {}
        Some(v) => return Err(Malformed::UnknownVersion(v.to_string())),
        None if version.is_number() => return Err(Malformed::UnknownVersion("non-integer".into())),
        None => {
            return Err(Malformed::InvalidField {
                field: "version",
                reason: "is not a number",
            });
        }
    }
    let work_id = id_field(obj, "work_id")?;
    let environment_id = id_field(obj, "environment_id")?;
    let session_id = id_field(obj, "session_id")?;
    let acked_at = match obj.get("acked_at") {
        None => return Err(Malformed::MissingField("acked_at")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(Malformed::InvalidField {
                field: "acked_at",
                reason: "is not a string",
            });
        }
    };
    let acked_at_ms = parse_rfc3339_ms(&acked_at).ok_or(Malformed::InvalidField {
        field: "acked_at",
        reason: "is not an RFC 3339 timestamp",
    })?;
    let work_secret_ciphertext = secret_field(obj, "work_secret_ciphertext")?;
    let work_secret = secret_field(obj, "work_secret")?;
    match (&work_secret_ciphertext, &work_secret) {
        (None, None) => return Err(Malformed::NoSecret),
        (Some(_), Some(_)) => return Err(Malformed::BothSecrets),
        _ => {}
    }
    Ok(ParsedMessage {
        message: WorkMessage {
            version: MESSAGE_VERSION,
            work_id,
            environment_id,
            session_id,
            acked_at,
            work_secret_ciphertext,
            work_secret,
        },
        acked_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use cma_shared::message::{EncryptionContext, SealedSecret};
    use serde_json::json;

    use super::*;

    fn good() -> serde_json::Value {
        json!({
            "version": 1,
            "work_id": "work_1",
            "environment_id": "env_1",
            "session_id": "sesn_1",
            "acked_at": "2026-05-01T12:00:00.123Z",
            "work_secret_ciphertext": "AQID",
            "future_field": {"ignored": true}
        })
    }

    #[test]
    fn reads_what_the_webhook_writes() {
        let ctx = EncryptionContext {
            environment_id: "env_1".into(),
            work_id: "work_1".into(),
            session_id: "sesn_1".into(),
        };
        let m = WorkMessage::new(
            &ctx,
            "2026-05-01T12:00:00.123Z".into(),
            &SealedSecret::Ciphertext(vec![1, 2, 3]),
        );
        let p = parse_body(&m.to_body()).unwrap();
        assert_eq!(p.message, m);
        assert_eq!(p.acked_at_ms, 1_777_636_800_123);
        let plain = WorkMessage::new(
            &ctx,
            "2026-05-01T12:00:00Z".into(),
            &SealedSecret::Plaintext(cma_shared::secret::WorkSecret::new("s3cr3t")),
        );
        assert_eq!(
            parse_body(&plain.to_body()).unwrap().message.work_secret,
            Some("s3cr3t".into())
        );
        assert!(
            parse_body(&good().to_string()).is_ok(),
            "unknown fields ignored"
        );
    }

    #[test]
    fn every_problem_is_named_without_quoting_the_body() {
        let secret = "VERY-SECRET-VALUE-1234";
        let mut cases: Vec<(String, Malformed)> = vec![
            ("not json".into(), Malformed::NotJson { line: 1, column: 2 }),
            (
                format!("{{\"work_secret\":\"{secret}\""),
                Malformed::NotJson {
                    line: 1,
                    column: 39,
                },
            ),
            ("[1,2]".into(), Malformed::NotAnObject),
        ];
        let mut add = |f: &dyn Fn(&mut serde_json::Map<String, Value>), want: Malformed| {
            let mut v = good();
            f(v.as_object_mut().unwrap());
            cases.push((v.to_string(), want));
        };
        add(
            &|o| {
                o.insert("version".into(), json!(2));
            },
            Malformed::UnknownVersion("2".into()),
        );
        add(
            &|o| {
                o.insert("version".into(), json!(1.5));
            },
            Malformed::UnknownVersion("non-integer".into()),
        );
        add(
            &|o| {
                o.insert("version".into(), json!(secret));
            },
            Malformed::InvalidField {
                field: "version",
                reason: "is not a number",
            },
        );
        add(
            &|o| {
                o.remove("version");
            },
            Malformed::MissingField("version"),
        );
        add(
            &|o| {
                o.remove("session_id");
            },
            Malformed::MissingField("session_id"),
        );
        add(
            &|o| {
                o.insert("work_id".into(), json!(7));
            },
            Malformed::InvalidField {
                field: "work_id",
                reason: "is not a string",
            },
        );
        add(
            &|o| {
                o.insert("work_id".into(), json!(""));
            },
            Malformed::InvalidField {
                field: "work_id",
                reason: "is empty",
            },
        );
        add(
            &|o| {
                o.insert("environment_id".into(), json!("env 1"));
            },
            Malformed::InvalidField {
                field: "environment_id",
                reason: "contains whitespace or control characters",
            },
        );
        add(
            &|o| {
                o.insert("work_id".into(), json!("w".repeat(257)));
            },
            Malformed::InvalidField {
                field: "work_id",
                reason: "is longer than 256 bytes",
            },
        );
        add(
            &|o| {
                o.insert("acked_at".into(), json!("yesterday"));
            },
            Malformed::InvalidField {
                field: "acked_at",
                reason: "is not an RFC 3339 timestamp",
            },
        );
        add(
            &|o| {
                o.remove("acked_at");
            },
            Malformed::MissingField("acked_at"),
        );
        add(
            &|o| {
                o.remove("work_secret_ciphertext");
            },
            Malformed::NoSecret,
        );
        add(
            &|o| {
                o.insert("work_secret".into(), json!(secret));
            },
            Malformed::BothSecrets,
        );
        add(
            &|o| {
                o.insert("work_secret_ciphertext".into(), json!([secret]));
            },
            Malformed::InvalidField {
                field: "work_secret_ciphertext",
                reason: "is not a string",
            },
        );
        add(
            &|o| {
                o.insert("work_secret_ciphertext".into(), json!(""));
            },
            Malformed::InvalidField {
                field: "work_secret_ciphertext",
                reason: "is empty",
            },
        );
        for (body, want) in cases {
            let got = parse_body(&body).expect_err(&want.to_string());
            assert_eq!(got, want, "{body}");
            assert!(!got.to_string().contains(secret));
        }
    }
}
