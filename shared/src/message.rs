//! The SQS message the webhook sends for each claimed item, and the KMS encryption
//! context of the work secret. The dispatcher and the runner must match both exactly.
//!
//! # Message body (JSON, one per claimed session item, format version 1)
//!
//! ```json
//! {
//!   "version": 1,
//!   "work_id": "work_…",
//!   "environment_id": "env_…",
//!   "session_id": "sesn_…",
//!   "acked_at": "2026-05-01T12:00:00.123Z",
//!   "work_secret_ciphertext": "<standard base64 (padded) of the KMS CiphertextBlob>"
//! }
//! ```
//!
//! * `work_secret_ciphertext` is present when a KMS key is configured (always in a
//!   deployment). In local plaintext mode it is replaced by `"work_secret": "<the item's
//!   secret exactly as poll returned it>"`. Exactly one of the two is present.
//! * The environment key is never in a message.
//! * `acked_at` is the Lambda's clock (RFC 3339, UTC) when the ack succeeded.
//! * Unknown fields must be ignored by readers; a reader that sees a `version` it does
//!   not know must not process the message (send it to the DLQ).
//! * FIFO queues (`QUEUE_URL` ending in `.fifo`): `MessageGroupId` = `session_id`,
//!   `MessageDeduplicationId` = `work_id`.
//!
//! # KMS encryption context
//!
//! `Encrypt` is called with the plaintext = UTF-8 bytes of the work secret (verbatim
//! from poll) and this encryption context (three string pairs, exact key names):
//!
//! | key              | value             |
//! |------------------|-------------------|
//! | `environment_id` | the environment id |
//! | `work_id`        | the work item id   |
//! | `session_id`     | the session id     |
//!
//! The runner decrypts `ANTHROPIC_WORK_SECRET_CIPHERTEXT` (the base64 text above,
//! passed through by the dispatcher) with the same three pairs built from its own
//! `ANTHROPIC_ENVIRONMENT_ID`, `ANTHROPIC_WORK_ID` and `ANTHROPIC_SESSION_ID`, so a
//! ciphertext copied into another item's task fails to decrypt.

use serde::{Deserialize, Serialize};

/// `version` of the message body.
pub const MESSAGE_VERSION: u32 = 1;

/// Encryption-context key for the environment id.
pub const CTX_ENVIRONMENT_ID: &str = "environment_id";
/// Encryption-context key for the work item id.
pub const CTX_WORK_ID: &str = "work_id";
/// Encryption-context key for the session id.
pub const CTX_SESSION_ID: &str = "session_id";

/// The item a secret belongs to; becomes the KMS encryption context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionContext {
    pub environment_id: String,
    pub work_id: String,
    pub session_id: String,
}

impl EncryptionContext {
    /// The exact key/value pairs passed to KMS.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (CTX_ENVIRONMENT_ID, self.environment_id.as_str()),
            (CTX_WORK_ID, self.work_id.as_str()),
            (CTX_SESSION_ID, self.session_id.as_str()),
        ]
    }
}

/// What a the webhook's `SecretSealer` produced.
#[derive(Clone, PartialEq, Eq)]
pub enum SealedSecret {
    /// KMS `CiphertextBlob` bytes.
    Ciphertext(Vec<u8>),
    /// The secret itself (plaintext mode only).
    Plaintext(crate::secret::WorkSecret),
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealedSecret::Ciphertext(b) => write!(f, "Ciphertext({} bytes)", b.len()),
            SealedSecret::Plaintext(_) => f.write_str("Plaintext([redacted])"),
        }
    }
}

/// The message body. `Debug` redacts the plaintext secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkMessage {
    pub version: u32,
    pub work_id: String,
    pub environment_id: String,
    pub session_id: String,
    pub acked_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_secret_ciphertext: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_secret: Option<String>,
}

impl std::fmt::Debug for WorkMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkMessage")
            .field("version", &self.version)
            .field("work_id", &self.work_id)
            .field("environment_id", &self.environment_id)
            .field("session_id", &self.session_id)
            .field("acked_at", &self.acked_at)
            .field(
                "work_secret_ciphertext",
                &self.work_secret_ciphertext.as_ref().map(|c| c.len()),
            )
            .field(
                "work_secret",
                &self.work_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl WorkMessage {
    pub fn new(ctx: &EncryptionContext, acked_at: String, sealed: &SealedSecret) -> Self {
        use base64::Engine as _;
        let (work_secret_ciphertext, work_secret) = match sealed {
            SealedSecret::Ciphertext(blob) => (
                Some(base64::engine::general_purpose::STANDARD.encode(blob)),
                None,
            ),
            SealedSecret::Plaintext(s) => (None, Some(s.expose().to_owned())),
        };
        WorkMessage {
            version: MESSAGE_VERSION,
            work_id: ctx.work_id.clone(),
            environment_id: ctx.environment_id.clone(),
            session_id: ctx.session_id.clone(),
            acked_at,
            work_secret_ciphertext,
            work_secret,
        }
    }

    /// The JSON body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a struct of strings always serialises")
    }

    /// The encryption context the runner must use to decrypt this message's secret.
    pub fn encryption_context(&self) -> EncryptionContext {
        EncryptionContext {
            environment_id: self.environment_id.clone(),
            work_id: self.work_id.clone(),
            session_id: self.session_id.clone(),
        }
    }
}

/// The SQS message as handed to the webhook's `Queue::send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// JSON body ([`WorkMessage::to_body`]).
    pub body: String,
    /// FIFO `MessageDeduplicationId` (the work id).
    pub deduplication_id: String,
    /// FIFO `MessageGroupId` (the session id).
    pub group_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_pinned() {
        let ctx = EncryptionContext {
            environment_id: "env_1".into(),
            work_id: "work_1".into(),
            session_id: "sesn_1".into(),
        };
        let m = WorkMessage::new(
            &ctx,
            "2026-05-01T12:00:00Z".into(),
            &SealedSecret::Ciphertext(vec![1, 2, 3]),
        );
        assert_eq!(
            m.to_body(),
            r#"{"version":1,"work_id":"work_1","environment_id":"env_1","session_id":"sesn_1","acked_at":"2026-05-01T12:00:00Z","work_secret_ciphertext":"AQID"}"#
        );
        let p = WorkMessage::new(
            &ctx,
            "t".into(),
            &SealedSecret::Plaintext(crate::secret::WorkSecret::new("s3cr3t")),
        );
        assert!(p.to_body().ends_with(r#""work_secret":"s3cr3t"}"#));
        assert!(!format!("{p:?}").contains("s3cr3t"));
        assert_eq!(
            ctx.pairs(),
            [
                ("environment_id", "env_1"),
                ("work_id", "work_1"),
                ("session_id", "sesn_1")
            ]
        );
        let back: WorkMessage = serde_json::from_str(&m.to_body()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.encryption_context(), ctx);
    }
}
