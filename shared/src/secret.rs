//! Redacting wrappers for credentials, and work-secret decoding (spec §3.2).
//!
//! Every credential this project handles (environment key, sessions token, webhook
//! signing secret, the raw work secret) lives in a [`SecretString`]-based newtype whose
//! `Debug` prints `[redacted]` and which implements no `Display` at all, so a stray
//! `{:?}` in a log line, an error or a panic message cannot leak it. The only way to
//! get at the value is the explicit [`SecretString::expose`].

use std::fmt;

use base64::Engine as _;

/// A string that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value. Call it only where the value leaves the process as intended
    /// (an `Authorization` header, an HMAC key, a KMS plaintext).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

macro_rules! secret_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(SecretString);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(SecretString::new(value))
            }

            /// The raw value; see [`SecretString::expose`].
            pub fn expose(&self) -> &str {
                self.0.expose()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_newtype!(
    /// The long-lived key of one `self_hosted` environment (spec §3.1).
    EnvironmentKey
);
secret_newtype!(
    /// The per-item bearer decoded from the work secret (`sk-ant-req-…`, spec §3.2).
    SessionsToken
);
secret_newtype!(
    /// The Standard Webhooks signing secret (`whsec_…`, spec §8.4).
    WebhookSecret
);
secret_newtype!(
    /// The opaque per-item `secret` exactly as `poll` returned it.
    WorkSecret
);

impl WorkSecret {
    /// Decode the sessions token per spec §3.2. Any failure yields `None`, never an
    /// error (the caller falls back to the environment key per §3.3).
    pub fn sessions_token(&self) -> Option<SessionsToken> {
        decode_sessions_token(self.expose())
    }
}

/// Spec §3.2 decoding: base64url (or standard) JSON object → non-empty
/// `sessions_token`. Padding optional. Anything else → `None`.
pub fn decode_sessions_token(secret: &str) -> Option<SessionsToken> {
    let trimmed = secret.trim();
    if trimmed.is_empty() {
        return None;
    }
    let mut normalised: String = trimmed
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            other => other,
        })
        .collect();
    // Strip any existing padding and re-pad to a multiple of 4.
    while normalised.ends_with('=') {
        normalised.pop();
    }
    while normalised.len() % 4 != 0 {
        normalised.push('=');
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(normalised.as_bytes())
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let token = value.as_object()?.get("sessions_token")?.as_str()?;
    if token.is_empty() {
        return None;
    }
    Some(SessionsToken::new(token))
}

/// Encode a work secret the way the control plane does (base64url, no padding).
/// Used by the fake control plane and by tests.
pub fn encode_work_secret(sessions_token: &str, api_base_url: Option<&str>) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("sessions_token".into(), sessions_token.into());
    if let Some(url) = api_base_url {
        obj.insert("api_base_url".into(), url.into());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::Value::Object(obj).to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str) -> Option<String> {
        decode_sessions_token(s).map(|t| t.expose().to_owned())
    }

    #[test]
    fn spec_vector_with_api_base_url() {
        assert_eq!(
            tok(
                "eyJzZXNzaW9uc190b2tlbiI6InNrLWFudC1yZXEtRVhBTVBMRXRva2VuXzAxMjMiLCJhcGlfYmFzZV91cmwiOiJodHRwczovL2FwaS5hbnRocm9waWMuY29tIn0"
            )
            .as_deref(),
            Some("sk-ant-req-EXAMPLEtoken_0123")
        );
    }

    #[test]
    fn spec_vector_url_safe_unpadded() {
        assert_eq!(
            tok("eyJzZXNzaW9uc190b2tlbiI6InNrLWFudC1yZXEtPz8-Pn5-In0").as_deref(),
            Some("sk-ant-req-??>>~~")
        );
    }

    #[test]
    fn spec_vector_standard_padded() {
        assert_eq!(
            tok("eyJzZXNzaW9uc190b2tlbiI6InNrLWFudC1yZXEtPz8+Pn5+In0=").as_deref(),
            Some("sk-ant-req-??>>~~")
        );
    }

    #[test]
    fn spec_vectors_yielding_none() {
        assert_eq!(tok("W10"), None, "decodes to [] (not an object)");
        assert_eq!(tok("eyJzZXNzaW9uc190b2tlbiI6IiJ9"), None, "empty token");
        assert_eq!(tok("not base64!!"), None);
        assert_eq!(tok(""), None);
    }

    #[test]
    fn non_string_token_is_none() {
        let s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sessions_token":5}"#);
        assert_eq!(tok(&s), None);
    }

    #[test]
    fn encode_round_trips() {
        let s = encode_work_secret("sk-ant-req-abc", Some("https://x"));
        assert!(!s.contains('='));
        assert_eq!(tok(&s).as_deref(), Some("sk-ant-req-abc"));
    }

    #[test]
    fn debug_never_prints_value() {
        let token = SessionsToken::new("sk-ant-req-SECRET");
        let key = EnvironmentKey::new("sk-ant-env-SECRET");
        let wh = WebhookSecret::new("whsec_SECRET");
        let ws = WorkSecret::new("eyJSECRET");
        for s in [
            format!("{token:?}"),
            format!("{key:?}"),
            format!("{wh:?}"),
            format!("{ws:?}"),
            format!("{:?}", SecretString::new("SECRET")),
            format!("{:?}", Some(token.clone())),
        ] {
            assert!(!s.contains("SECRET"), "{s}");
            assert!(s.contains("redacted"), "{s}");
        }
    }
}
