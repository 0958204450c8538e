//! The runner side of the work-secret KMS envelope (issue 6).
//!
//! The webhook encrypts each claimed item's work secret with KMS `Encrypt` under
//! `WORK_SECRET_KMS_KEY_ID`, with the encryption context
//! `{"environment_id", "work_id", "session_id"}` of that item, and puts the ciphertext
//! blob, base64 (standard alphabet, padded), in the SQS message. The dispatcher passes it
//! to the task as `ANTHROPIC_WORK_SECRET_CIPHERTEXT`; the runner decrypts it here, with
//! the same context, before any control-plane call, and then treats the plaintext
//! exactly as `ANTHROPIC_WORK_SECRET` ([`crate::config::decrypted_credential`]).
//!
//! A ciphertext made for another item (or a stale message) fails KMS's context check
//! (`InvalidCiphertextException`), so a task can only ever open the secret of the item it
//! was started for. Neither the plaintext nor the ciphertext is ever logged: both travel
//! as [`SecretString`], and the errors below carry only KMS's error code and message.
//!
//! The KMS client is built only when a ciphertext is given (the plain path pays nothing),
//! from the AWS SDK's default chain: the task role in Fargate, `AWS_ACCESS_KEY_ID`/… for
//! local runs, `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_KMS` honoured (moto in tests).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use cma_shared::SecretString;

use crate::config::WORK_SECRET_CIPHERTEXT_VAR;

// Encryption-context keys. They must equal the webhook's `CTX_ENVIRONMENT_ID`,
// `CTX_WORK_ID` and `CTX_SESSION_ID` in `functions/webhook/src/message.rs` (same names,
// same values); duplicated here so the runner does not depend on the webhook crate.
/// Encryption-context key for the environment id.
pub const CTX_ENVIRONMENT_ID: &str = "environment_id";
/// Encryption-context key for the work item id.
pub const CTX_WORK_ID: &str = "work_id";
/// Encryption-context key for the session id.
pub const CTX_SESSION_ID: &str = "session_id";

/// Upper bound on the whole decryption (credential lookup, retries included).
pub const DECRYPT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to check when KMS refuses or cannot be reached.
const CHECK: &str = "check that the task role has kms:Decrypt on the work-secret key, allowed for this \
encryption context (environment_id, work_id, session_id), and that the message was made for this \
work item (it may be stale or for another item)";

/// Why the work secret could not be decrypted. `Display` is one line saying what to
/// check; it never contains the ciphertext or the plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error(
        "{WORK_SECRET_CIPHERTEXT_VAR} is not valid base64 (standard alphabet): check what the dispatcher passed"
    )]
    BadBase64,
    #[error("KMS refused to decrypt {WORK_SECRET_CIPHERTEXT_VAR}: {code}: {message}; {CHECK}")]
    Rejected { code: String, message: String },
    #[error(
        "cannot decrypt {WORK_SECRET_CIPHERTEXT_VAR} with KMS: {detail}; check the task's AWS credentials \
(the task role, which needs kms:Decrypt on the work-secret key), its region, and that KMS is reachable"
    )]
    Unavailable { detail: String },
    #[error(
        "cannot decrypt {WORK_SECRET_CIPHERTEXT_VAR} with KMS: no answer within {0:?}; check that KMS and the \
task's credential endpoint are reachable"
    )]
    TimedOut(Duration),
    #[error("KMS returned no plaintext or a non-UTF-8 one for {WORK_SECRET_CIPHERTEXT_VAR}")]
    BadPlaintext,
}

/// Opens a work-secret ciphertext. The KMS implementation is [`KmsDecryptor`]; tests
/// substitute their own.
#[async_trait::async_trait]
pub trait SecretDecryptor: Send + Sync {
    async fn decrypt(
        &self,
        ciphertext_b64: &str,
        context: &[(&str, &str)],
    ) -> Result<SecretString, DecryptError>;
}

/// The encryption context of one item, in the webhook's key names.
pub fn encryption_context<'a>(
    environment_id: &'a str,
    work_id: &'a str,
    session_id: &'a str,
) -> [(&'static str, &'a str); 3] {
    [
        (CTX_ENVIRONMENT_ID, environment_id),
        (CTX_WORK_ID, work_id),
        (CTX_SESSION_ID, session_id),
    ]
}

/// Decrypt the item's work secret with `decryptor`, bounded by `timeout`.
pub async fn open_work_secret(
    decryptor: &dyn SecretDecryptor,
    ciphertext: &SecretString,
    environment_id: &str,
    work_id: &str,
    session_id: &str,
    timeout: Duration,
) -> Result<SecretString, DecryptError> {
    let context = encryption_context(environment_id, work_id, session_id);
    tokio::time::timeout(timeout, decryptor.decrypt(ciphertext.expose(), &context))
        .await
        .unwrap_or(Err(DecryptError::TimedOut(timeout)))
}

/// Base64 (standard alphabet; padding optional, surrounding whitespace ignored) → bytes.
pub fn decode_ciphertext(ciphertext_b64: &str) -> Result<Vec<u8>, DecryptError> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    match ENGINE.decode(ciphertext_b64.trim()) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        _ => Err(DecryptError::BadBase64),
    }
}

/// [`SecretDecryptor`] over AWS KMS `Decrypt`, configured from the SDK's default chain
/// when first used.
#[derive(Debug, Default)]
pub struct KmsDecryptor {
    _private: (),
}

impl KmsDecryptor {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl SecretDecryptor for KmsDecryptor {
    async fn decrypt(
        &self,
        ciphertext_b64: &str,
        context: &[(&str, &str)],
    ) -> Result<SecretString, DecryptError> {
        // Reject garbage before touching AWS at all.
        let blob = decode_ciphertext(ciphertext_b64)?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let client = aws_sdk_kms::Client::new(&sdk);
        let context: HashMap<String, String> = context
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let out = client
            .decrypt()
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob))
            .set_encryption_context(Some(context))
            .send()
            .await
            .map_err(sdk_error)?;
        let plaintext = out.plaintext.ok_or(DecryptError::BadPlaintext)?;
        String::from_utf8(plaintext.into_inner())
            .map(SecretString::new)
            .map_err(|_| DecryptError::BadPlaintext)
    }
}

/// KMS said no (a service error) → [`DecryptError::Rejected`] with its code and message;
/// anything else (no credentials, no region, network) → [`DecryptError::Unavailable`].
fn sdk_error<E, R>(e: aws_sdk_kms::error::SdkError<E, R>) -> DecryptError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_kms::error::SdkError;
    match e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            DecryptError::Rejected {
                code: err.code().unwrap_or("unknown error").to_owned(),
                message: one_line(err.message().unwrap_or("no message")),
            }
        }
        other => DecryptError::Unavailable {
            detail: one_line(&error_chain(&other)),
        },
    }
}

/// `Display` of an error and its sources, joined with ": ". Never `Debug`: the SDK's
/// `Debug` forms carry raw responses, whose body could hold a plaintext.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn base64_padding_optional_garbage_rejected() {
        assert_eq!(decode_ciphertext("AQID").unwrap(), vec![1, 2, 3]);
        assert_eq!(decode_ciphertext(" AQIDBA==\n").unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(decode_ciphertext("AQIDBA").unwrap(), vec![1, 2, 3, 4]);
        for bad in ["", "   ", "%%%not base64%%%", "AQ-_", "A"] {
            assert_eq!(
                decode_ciphertext(bad),
                Err(DecryptError::BadBase64),
                "{bad:?}"
            );
        }
    }

    type Pairs = Vec<(String, String)>;

    #[derive(Default)]
    struct Recording {
        seen: Mutex<Vec<(String, Pairs)>>,
    }

    #[async_trait::async_trait]
    impl SecretDecryptor for Recording {
        async fn decrypt(
            &self,
            ciphertext_b64: &str,
            context: &[(&str, &str)],
        ) -> Result<SecretString, DecryptError> {
            self.seen.lock().unwrap().push((
                ciphertext_b64.to_owned(),
                context
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ));
            Ok(SecretString::new("plain"))
        }
    }

    #[tokio::test]
    async fn passes_the_items_context() {
        let d = Recording::default();
        let out = open_work_secret(
            &d,
            &SecretString::new("Y2lwaGVy"),
            "env_1",
            "work_1",
            "sesn_1",
            DECRYPT_TIMEOUT,
        )
        .await
        .unwrap();
        assert_eq!(out.expose(), "plain");
        let seen = d.seen.lock().unwrap();
        assert_eq!(seen[0].0, "Y2lwaGVy");
        let pairs = |v: &[(&str, &str)]| -> Pairs {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        assert_eq!(
            seen[0].1,
            pairs(&[
                ("environment_id", "env_1"),
                ("work_id", "work_1"),
                ("session_id", "sesn_1")
            ])
        );
    }

    struct Stuck;

    #[async_trait::async_trait]
    impl SecretDecryptor for Stuck {
        async fn decrypt(&self, _: &str, _: &[(&str, &str)]) -> Result<SecretString, DecryptError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn bounded_by_the_timeout() {
        let t = Duration::from_millis(50);
        let e = open_work_secret(&Stuck, &SecretString::new("x"), "e", "w", "s", t)
            .await
            .unwrap_err();
        assert_eq!(e, DecryptError::TimedOut(t));
    }

    #[test]
    fn messages_are_one_line_and_say_what_to_check() {
        let e = DecryptError::Rejected {
            code: "InvalidCiphertextException".into(),
            message: "".into(),
        }
        .to_string();
        assert!(!e.contains('\n'));
        assert!(e.contains("ANTHROPIC_WORK_SECRET_CIPHERTEXT"), "{e}");
        assert!(e.contains("kms:Decrypt") && e.contains("stale"), "{e}");
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
