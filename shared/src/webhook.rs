//! Standard Webhooks signature verification for Claude Managed Agents webhook
//! deliveries (spec `control-plane.md` §8.4, test vectors §8.5).
//!
//! # Algorithm
//!
//! 1. Read the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers
//!    (case-insensitively; [`http::HeaderMap`] already normalises names). A missing,
//!    empty or non-visible-ASCII value is [`VerifyError::MissingHeaders`].
//! 2. Parse the timestamp as base-10 integer Unix seconds (surrounding whitespace and a
//!    leading `+`/`-` allowed; anything else, including overflow, is
//!    [`VerifyError::InvalidHeaders`]). Reject `ts < now − 300` ([`VerifyError::TooOld`])
//!    and `ts > now + 300` ([`VerifyError::TooNew`]); exactly ±300 s is accepted. The
//!    window is checked *before* the signature, as the reference library does.
//! 3. Expected MAC = HMAC-SHA256(key, `"{id}.{ts}.{body}"`), where `ts` is the parsed
//!    integer re-rendered in decimal (so `+0123` signs as `123`, like the library's
//!    `int()`), and `body` is the exact raw bytes received (not necessarily UTF-8; never
//!    re-serialised). The content is fed to the MAC piecewise, never concatenated.
//! 4. The signature header is a list of `<version>,<base64 sig>` entries separated by
//!    ASCII spaces (empty entries ignored). Only `v1` entries count; the delivery is
//!    accepted if any of them decodes to the expected MAC.
//!
//! # Design decisions
//!
//! * **Strict `whsec_` prefix at config load.** [`WebhookVerifier::new`] insists on
//!   the (case-sensitive) `whsec_` prefix followed by standard-alphabet base64 (padding
//!   optional) of a non-empty key, so a mis-pasted secret fails at start-up instead of
//!   turning every delivery into a 401. Surrounding ASCII whitespace of the whole secret
//!   (a trailing newline from a secrets store) is trimmed first.
//!   [`WebhookVerifier::new_lenient`] mirrors the `standardwebhooks` library (prefix
//!   optional, the whole string is base64-decoded otherwise) and exists for parity tests.
//! * **Malformed entries are non-matching, never errors.** An entry without a comma, with
//!   an unknown version, with invalid base64 or with the wrong decoded length is simply
//!   skipped (the Python library would raise on an entry without a comma). The only
//!   outcome of a bad signature header is [`VerifyError::NoMatchingSignature`].
//! * **Constant-time comparison.** The expected MAC is computed once per delivery as a
//!   [`hmac::digest::CtOutput`], whose `==` is a constant-time comparison (`subtle`);
//!   candidate signatures are decoded into a fixed-size stack buffer, so verification
//!   allocates nothing proportional to attacker input and never panics.
//! * **The key never prints.** [`WebhookVerifier`]'s `Debug` is redacted.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::digest::{CtOutput, Output};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::WebhookSecret;

/// Accepted clock skew between the delivery's `webhook-timestamp` and now, in seconds.
pub const TOLERANCE_SECS: i64 = 300;

/// Prefix of a Standard Webhooks signing secret.
const SECRET_PREFIX: &str = "whsec_";

/// Header names (lower-case, as stored by [`http::HeaderMap`]).
const HEADER_ID: &str = "webhook-id";
const HEADER_TIMESTAMP: &str = "webhook-timestamp";
const HEADER_SIGNATURE: &str = "webhook-signature";

/// Length of an HMAC-SHA256 tag.
const MAC_LEN: usize = 32;

/// Longest base64 text worth decoding as a candidate tag: 32 bytes are 44 characters
/// padded (43 unpadded); anything longer cannot decode to exactly [`MAC_LEN`] bytes.
const MAX_SIG_B64_LEN: usize = 44;

/// Standard alphabet, padding optional, canonical trailing bits required.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// Verifies (and, for tests and the local demo, produces) Standard Webhooks signatures
/// with one decoded HMAC key. `Debug` never prints the key.
#[derive(Clone)]
pub struct WebhookVerifier {
    key: Vec<u8>,
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookVerifier { key: [redacted] }")
    }
}

/// Why a configured signing secret is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookConfigError {
    #[error(
        "webhook signing secret must start with `whsec_` (copy it from the Claude Console webhook settings)"
    )]
    MissingPrefix,
    #[error("webhook signing secret is not valid base64 after the `whsec_` prefix")]
    InvalidBase64,
    #[error("webhook signing secret decodes to an empty key")]
    EmptyKey,
}

/// Why a delivery was rejected. The messages are those of the `standardwebhooks`
/// library's `WebhookVerificationError`.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    #[error("Missing required headers")]
    MissingHeaders,
    #[error("Invalid Signature Headers")]
    InvalidHeaders,
    #[error("Message timestamp too old")]
    TooOld,
    #[error("Message timestamp too new")]
    TooNew,
    #[error("No matching signature found")]
    NoMatchingSignature,
}

impl WebhookVerifier {
    /// Strict constructor used for configuration: the secret must be `whsec_` (exact
    /// case) followed by standard base64 (padding optional) of a non-empty key.
    /// Surrounding ASCII whitespace of the whole secret is ignored.
    pub fn new(secret: &WebhookSecret) -> Result<Self, WebhookConfigError> {
        let raw = secret.expose().trim_ascii();
        let encoded = raw
            .strip_prefix(SECRET_PREFIX)
            .ok_or(WebhookConfigError::MissingPrefix)?;
        Self::from_base64(encoded)
    }

    /// Library-compatible constructor: strips `whsec_` if present, otherwise
    /// base64-decodes the whole string (never uses the text as raw key bytes).
    pub fn new_lenient(secret: &WebhookSecret) -> Result<Self, WebhookConfigError> {
        let raw = secret.expose().trim_ascii();
        let encoded = raw.strip_prefix(SECRET_PREFIX).unwrap_or(raw);
        Self::from_base64(encoded)
    }

    fn from_base64(encoded: &str) -> Result<Self, WebhookConfigError> {
        let key = BASE64
            .decode(encoded)
            .map_err(|_| WebhookConfigError::InvalidBase64)?;
        if key.is_empty() {
            return Err(WebhookConfigError::EmptyKey);
        }
        Ok(Self { key })
    }

    /// Verify a delivery per spec §8.4. `body` must be the exact raw bytes received;
    /// `now_unix` is the current time in Unix seconds (injected for tests).
    pub fn verify(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        let id = header_str(headers, HEADER_ID)?;
        let timestamp = header_str(headers, HEADER_TIMESTAMP)?;
        let signature = header_str(headers, HEADER_SIGNATURE)?;
        self.verify_parts(Some(id), Some(timestamp), Some(signature), body, now_unix)
    }

    /// [`verify`](Self::verify) with the three header values given directly
    /// (`None` = header missing).
    pub fn verify_parts(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        let (Some(id), Some(timestamp), Some(signature)) =
            (non_empty(id), non_empty(timestamp), non_empty(signature))
        else {
            return Err(VerifyError::MissingHeaders);
        };

        let ts = parse_timestamp(timestamp)?;
        if ts < now_unix.saturating_sub(TOLERANCE_SECS) {
            return Err(VerifyError::TooOld);
        }
        if ts > now_unix.saturating_add(TOLERANCE_SECS) {
            return Err(VerifyError::TooNew);
        }

        let expected = self.mac(id, ts, body);
        let mut matched = false;
        for entry in signature.split(' ').filter(|e| !e.is_empty()) {
            let Some(("v1", encoded)) = entry.split_once(',') else {
                continue;
            };
            let Some(candidate) = decode_tag(encoded) else {
                continue;
            };
            // Constant-time comparison; keep scanning so timing does not depend on
            // which entry matched.
            matched |= CtOutput::<HmacSha256>::new(candidate) == expected;
        }
        if matched {
            Ok(())
        } else {
            Err(VerifyError::NoMatchingSignature)
        }
    }

    /// The `webhook-signature` header value (`v1,<base64>`) for this key and
    /// (`id`, `timestamp`, `body`).
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).into_bytes();
        format!("v1,{}", BASE64.encode(tag))
    }

    /// HMAC-SHA256(key, `"{id}.{ts}.{body}"`), fed piecewise.
    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> CtOutput<HmacSha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize()
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|s| !s.is_empty())
}

/// A header as `&str`; missing, empty or not visible ASCII → `MissingHeaders`.
fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .ok_or(VerifyError::MissingHeaders)
}

/// Base-10 integer seconds, optional sign, surrounding whitespace ignored.
fn parse_timestamp(raw: &str) -> Result<i64, VerifyError> {
    // `i64::from_str` accepts exactly `[+-]?[0-9]+` and reports overflow as an error.
    raw.trim()
        .parse::<i64>()
        .map_err(|_| VerifyError::InvalidHeaders)
}

/// Decode one candidate tag into a stack buffer; `None` unless it is valid base64 of
/// exactly [`MAC_LEN`] bytes.
fn decode_tag(encoded: &str) -> Option<Output<HmacSha256>> {
    if encoded.len() > MAX_SIG_B64_LEN {
        return None;
    }
    // 44 base64 characters decode to at most 33 bytes (estimate); leave headroom.
    let mut buf = [0u8; 48];
    let n = BASE64.decode_slice(encoded, &mut buf).ok()?;
    let tag: [u8; MAC_LEN] = buf.get(..n)?.try_into().ok()?;
    Some(Output::<HmacSha256>::from(tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderName, HeaderValue};
    use proptest::prelude::*;
    use sha2::Digest as _;

    // ---- §8.5 fixtures ---------------------------------------------------------------

    const V1_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const V1_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const V1_TS: &str = "1614265330";
    const V1_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const V1_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const V1_NOW: i64 = 1_614_265_330;

    const V2_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const V2_SECRET_NO_PREFIX: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const V2_ID: &str = "msg_2Zx1Y9kAqGJm7Vb3";
    const V2_TS: &str = "1777636800";
    const V2_TS_INT: i64 = 1_777_636_800;
    const V2_BODY: &str = r#"{"type":"event","id":"wevt_011CZkZaBF1tNoB5wlCeusgy","created_at":"2026-05-01T12:00:00Z","data":{"type":"session.status_run_started","id":"sesn_011CZkZaBF1tNoB5wlCeusgy","organization_id":"org_01","workspace_id":"wrkspc_01"}}"#;
    const V2_SIG: &str = "v1,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDtE=";
    const V2_NOW: i64 = 1_777_636_810;

    const V3_ID: &str = "msg_multi";
    const V3_TS: &str = "1777636805";
    const V3_BODY: &str = "{\"type\": \"event\", \"id\": \"wevt_x\", \"created_at\": \"2026-05-01T12:00:05Z\", \"data\": {\"type\": \"session.status_idled\", \"id\": \"sesn_\u{00fc}\", \"organization_id\": \"org_01\", \"workspace_id\": \"wrkspc_01\"}}\n";
    const V3_CORRECT_SIG: &str = "v1,Xs7bCXf7SQzKcCPo7bfxMDTQEhXrgv9HqqIUQ02JcLw=";
    const V3_SIG_HEADER: &str = "v2,AAAA v1,N53MVIFWM6uObVc3GwXbO5+Oab17cNCk9l697QzbW0A= v1,Xs7bCXf7SQzKcCPo7bfxMDTQEhXrgv9HqqIUQ02JcLw=";
    const V3_NOW: i64 = 1_777_636_805;

    fn verifier(secret: &str) -> WebhookVerifier {
        WebhookVerifier::new(&WebhookSecret::new(secret)).expect("valid secret")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn v2_headers() -> HeaderMap {
        headers(&[
            ("webhook-id", V2_ID),
            ("webhook-timestamp", V2_TS),
            ("webhook-signature", V2_SIG),
        ])
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    // ---- accept vectors --------------------------------------------------------------

    #[test]
    fn v1_standard_webhooks_reference_vector() {
        let v = verifier(V1_SECRET);
        assert_eq!(
            v.key,
            [
                0x31, 0xf2, 0x90, 0xf6, 0xbf, 0x06, 0x29, 0x8a, 0xab, 0x4f, 0x08, 0xd4, 0x3c, 0x3f,
                0x08, 0x2c, 0xf6, 0x48, 0xa3, 0x62, 0xda, 0x2d, 0xa4, 0xb0
            ]
        );
        assert_eq!(V1_BODY.len(), 20);
        let h = headers(&[
            ("webhook-id", V1_ID),
            ("webhook-timestamp", V1_TS),
            ("webhook-signature", V1_SIG),
        ]);
        assert_eq!(v.verify(&h, V1_BODY, V1_NOW), Ok(()));
        assert_eq!(v.sign(V1_ID, V1_NOW, V1_BODY), V1_SIG);
    }

    #[test]
    fn v2_anthropic_envelope() {
        let v = verifier(V2_SECRET);
        assert_eq!(v.key, (0u8..32).collect::<Vec<_>>());
        assert_eq!(V2_BODY.len(), 225);
        assert_eq!(
            sha256_hex(V2_BODY.as_bytes()),
            "86a7b5acdc15f4b84fe90b5252705787d6be8f222f2be3e643cb3ece6300add0"
        );
        assert_eq!(v.verify(&v2_headers(), V2_BODY.as_bytes(), V2_NOW), Ok(()));
    }

    #[test]
    fn v2_signature_equals_sign_output() {
        let v = verifier(V2_SECRET);
        assert_eq!(v.sign(V2_ID, V2_TS_INT, V2_BODY.as_bytes()), V2_SIG);
    }

    #[test]
    fn v3_multiple_signatures_non_ascii_body_trailing_newline() {
        let body = V3_BODY.as_bytes();
        assert_eq!(body.len(), 189);
        assert_eq!(body.last(), Some(&0x0a));
        assert!(body.windows(2).any(|w| w == [0xc3, 0xbc]));
        assert_eq!(
            sha256_hex(body),
            "110b41b6c8e07dfff28b3d0f6847a5034adde54be43c83c05d157ccd02f39c25"
        );
        let v = verifier(V2_SECRET);
        let h = headers(&[
            ("webhook-id", V3_ID),
            ("webhook-timestamp", V3_TS),
            ("webhook-signature", V3_SIG_HEADER),
        ]);
        assert_eq!(v.verify(&h, body, V3_NOW), Ok(()));
        assert_eq!(v.sign(V3_ID, V3_NOW, body), V3_CORRECT_SIG);
        // The other-key entry alone does not match.
        let other_only = "v2,AAAA v1,N53MVIFWM6uObVc3GwXbO5+Oab17cNCk9l697QzbW0A=";
        assert_eq!(
            v.verify_parts(Some(V3_ID), Some(V3_TS), Some(other_only), body, V3_NOW),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn accept_secret_without_prefix_via_new_lenient() {
        let v = WebhookVerifier::new_lenient(&WebhookSecret::new(V2_SECRET_NO_PREFIX)).unwrap();
        assert_eq!(v.verify(&v2_headers(), V2_BODY.as_bytes(), V2_NOW), Ok(()));
        // Lenient also takes the prefixed form.
        let v = WebhookVerifier::new_lenient(&WebhookSecret::new(V2_SECRET)).unwrap();
        assert_eq!(v.verify(&v2_headers(), V2_BODY.as_bytes(), V2_NOW), Ok(()));
        // Strict config validation insists on the prefix.
        assert_eq!(
            WebhookVerifier::new(&WebhookSecret::new(V2_SECRET_NO_PREFIX)).unwrap_err(),
            WebhookConfigError::MissingPrefix
        );
    }

    #[test]
    fn accept_header_names_in_any_case() {
        let v = verifier(V2_SECRET);
        for (id, ts, sig) in [
            ("Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"),
            ("WEBHOOK-ID", "WEBHOOK-TIMESTAMP", "WEBHOOK-SIGNATURE"),
            ("wEbHoOk-iD", "webhook-TIMESTAMP", "Webhook-signature"),
        ] {
            let h = headers(&[(id, V2_ID), (ts, V2_TS), (sig, V2_SIG)]);
            assert_eq!(v.verify(&h, V2_BODY.as_bytes(), V2_NOW), Ok(()), "{id}");
        }
    }

    #[test]
    fn accept_now_exactly_plus_300() {
        let v = verifier(V2_SECRET);
        assert_eq!(
            v.verify(&v2_headers(), V2_BODY.as_bytes(), 1_777_637_100),
            Ok(())
        );
    }

    #[test]
    fn accept_now_exactly_minus_300() {
        let v = verifier(V2_SECRET);
        assert_eq!(
            v.verify(
                &v2_headers(),
                V2_BODY.as_bytes(),
                V2_TS_INT - TOLERANCE_SECS
            ),
            Ok(())
        );
    }

    // ---- reject vectors --------------------------------------------------------------

    #[test]
    fn r1_tampered_body() {
        let v = verifier(V2_SECRET);
        let body = V2_BODY.replace("run_started", "idled");
        assert_ne!(body, V2_BODY);
        assert_eq!(
            v.verify(&v2_headers(), body.as_bytes(), V2_NOW),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn r2_stale() {
        let v = verifier(V2_SECRET);
        assert_eq!(
            v.verify(&v2_headers(), V2_BODY.as_bytes(), 1_777_637_101),
            Err(VerifyError::TooOld)
        );
    }

    #[test]
    fn r3_future() {
        let v = verifier(V2_SECRET);
        assert_eq!(
            v.verify(&v2_headers(), V2_BODY.as_bytes(), 1_777_636_499),
            Err(VerifyError::TooNew)
        );
    }

    #[test]
    fn r4_missing_header() {
        let v = verifier(V2_SECRET);
        let mut h = v2_headers();
        h.remove("webhook-id");
        assert_eq!(
            v.verify(&h, V2_BODY.as_bytes(), V2_NOW),
            Err(VerifyError::MissingHeaders)
        );
        for drop in ["webhook-timestamp", "webhook-signature"] {
            let mut h = v2_headers();
            h.remove(drop);
            assert_eq!(
                v.verify(&h, V2_BODY.as_bytes(), V2_NOW),
                Err(VerifyError::MissingHeaders),
                "{drop}"
            );
        }
        assert_eq!(
            v.verify_parts(None, Some(V2_TS), Some(V2_SIG), V2_BODY.as_bytes(), V2_NOW),
            Err(VerifyError::MissingHeaders)
        );
    }

    #[test]
    fn r5_empty_signature_header() {
        let v = verifier(V2_SECRET);
        let h = headers(&[
            ("webhook-id", V2_ID),
            ("webhook-timestamp", V2_TS),
            ("webhook-signature", ""),
        ]);
        assert_eq!(
            v.verify(&h, V2_BODY.as_bytes(), V2_NOW),
            Err(VerifyError::MissingHeaders)
        );
        // Empty id / timestamp too.
        assert_eq!(
            v.verify_parts(
                Some(""),
                Some(V2_TS),
                Some(V2_SIG),
                V2_BODY.as_bytes(),
                V2_NOW
            ),
            Err(VerifyError::MissingHeaders)
        );
        assert_eq!(
            v.verify_parts(
                Some(V2_ID),
                Some(""),
                Some(V2_SIG),
                V2_BODY.as_bytes(),
                V2_NOW
            ),
            Err(VerifyError::MissingHeaders)
        );
    }

    #[test]
    fn r6_wrong_secret_prefix() {
        for secret in [
            "whsk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "WHSEC_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ] {
            let secret = WebhookSecret::new(secret);
            assert_eq!(
                WebhookVerifier::new(&secret).unwrap_err(),
                WebhookConfigError::MissingPrefix
            );
            match WebhookVerifier::new_lenient(&secret) {
                Err(_) => {}
                Ok(v) => assert_eq!(
                    v.verify(&v2_headers(), V2_BODY.as_bytes(), V2_NOW),
                    Err(VerifyError::NoMatchingSignature)
                ),
            }
        }
    }

    #[test]
    fn r7_wrong_key() {
        let secret = format!("whsec_{}", BASE64.encode([0x02u8; 32]));
        let v = verifier(&secret);
        assert_eq!(
            v.verify(&v2_headers(), V2_BODY.as_bytes(), V2_NOW),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn r8_only_non_v1_scheme() {
        let v = verifier(V2_SECRET);
        let h = headers(&[
            ("webhook-id", V2_ID),
            ("webhook-timestamp", V2_TS),
            (
                "webhook-signature",
                "v2,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDtE=",
            ),
        ]);
        assert_eq!(
            v.verify(&h, V2_BODY.as_bytes(), V2_NOW),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn r9_id_mismatch() {
        let v = verifier(V2_SECRET);
        let h = headers(&[
            ("webhook-id", "msg_other"),
            ("webhook-timestamp", V2_TS),
            ("webhook-signature", V2_SIG),
        ]);
        assert_eq!(
            v.verify(&h, V2_BODY.as_bytes(), V2_NOW),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn r10_bad_timestamp() {
        let v = verifier(V2_SECRET);
        let h = headers(&[
            ("webhook-id", V2_ID),
            ("webhook-timestamp", "abc"),
            ("webhook-signature", V2_SIG),
        ]);
        assert_eq!(
            v.verify(&h, V2_BODY.as_bytes(), V2_NOW),
            Err(VerifyError::InvalidHeaders)
        );
    }

    // ---- parsing edge cases ----------------------------------------------------------

    #[test]
    fn timestamp_forms() {
        let v = verifier(V2_SECRET);
        let body = V2_BODY.as_bytes();
        let check = |ts: &str| v.verify_parts(Some(V2_ID), Some(ts), Some(V2_SIG), body, V2_NOW);
        // Re-rendered in decimal before signing, like the library's `int()`.
        for ok in ["+1777636800", " 1777636800 ", "\t1777636800", "01777636800"] {
            assert_eq!(check(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "1777636800.0",
            "1.7776368e9",
            "0x69f4a4c0",
            "1_777_636_800",
            "+",
            "-",
            " ",
            "++1777636800",
            "99999999999999999999",
            "１７７７６３６８００",
        ] {
            assert_eq!(check(bad), Err(VerifyError::InvalidHeaders), "{bad:?}");
        }
        assert_eq!(check("-5"), Err(VerifyError::TooOld));
    }

    #[test]
    fn extreme_clock_values_do_not_overflow() {
        let v = verifier(V2_SECRET);
        let body = V2_BODY.as_bytes();
        let max = i64::MAX.to_string();
        let min = i64::MIN.to_string();
        assert_eq!(
            v.verify_parts(Some(V2_ID), Some(&max), Some(V2_SIG), body, i64::MIN),
            Err(VerifyError::TooNew)
        );
        assert_eq!(
            v.verify_parts(Some(V2_ID), Some(&min), Some(V2_SIG), body, i64::MAX),
            Err(VerifyError::TooOld)
        );
        let sig = v.sign(V2_ID, i64::MAX, body);
        assert_eq!(
            v.verify_parts(Some(V2_ID), Some(&max), Some(&sig), body, i64::MAX),
            Ok(())
        );
        let sig = v.sign(V2_ID, i64::MIN, body);
        assert_eq!(
            v.verify_parts(Some(V2_ID), Some(&min), Some(&sig), body, i64::MIN),
            Ok(())
        );
    }

    #[test]
    fn malformed_entries_are_non_matching_not_errors() {
        let v = verifier(V2_SECRET);
        let body = V2_BODY.as_bytes();
        let check = |sig: &str| v.verify_parts(Some(V2_ID), Some(V2_TS), Some(sig), body, V2_NOW);
        let good_b64 = V2_SIG.strip_prefix("v1,").unwrap();
        for bad in [
            "garbage",
            "v1",
            "v1,",
            ",",
            "v1,!!!!",
            "v1,AAAA",
            "V1,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDtE=",
            "v1 ,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDtE=",
            "v1,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDtE=AAAA",
            "v1,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDtF=",
            "v1,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDt",
            "v1,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDtE=,extra",
            "v1,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDtE=\t",
            "v1,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDtE==",
            "v1,1cYscx6ySHI0o5DZq6JgPydzQDO9ykx97f79uapiDtE-",
        ] {
            assert_eq!(check(bad), Err(VerifyError::NoMatchingSignature), "{bad:?}");
        }
        // Malformed entries around a good one do not prevent a match; extra spaces are fine;
        // padding is optional.
        for ok in [
            format!("garbage v1 ,, v1,!!!! v1,{good_b64}"),
            format!("  v1,{good_b64}   "),
            format!("v1,{}", good_b64.trim_end_matches('=')),
        ] {
            assert_eq!(check(&ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn non_visible_ascii_header_value_is_missing() {
        let v = verifier(V2_SECRET);
        let mut h = v2_headers();
        h.insert(
            "webhook-signature",
            HeaderValue::from_bytes(b"v1,\xff\xfe").unwrap(),
        );
        assert_eq!(
            v.verify(&h, V2_BODY.as_bytes(), V2_NOW),
            Err(VerifyError::MissingHeaders)
        );
    }

    // ---- configuration ---------------------------------------------------------------

    #[test]
    fn config_rejects_missing_prefix() {
        for s in ["", "AAEC", "whsec", "Whsec_AAEC", " whsk_AAEC"] {
            assert_eq!(
                WebhookVerifier::new(&WebhookSecret::new(s)).unwrap_err(),
                WebhookConfigError::MissingPrefix,
                "{s:?}"
            );
        }
    }

    #[test]
    fn config_rejects_bad_base64() {
        for s in [
            "whsec_not base64",
            "whsec_AAEC!",
            "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8-",
            "whsec_A",
            "whsec_AAE=C",
        ] {
            assert_eq!(
                WebhookVerifier::new(&WebhookSecret::new(s)).unwrap_err(),
                WebhookConfigError::InvalidBase64,
                "{s:?}"
            );
        }
        assert_eq!(
            WebhookVerifier::new_lenient(&WebhookSecret::new("not base64!")).unwrap_err(),
            WebhookConfigError::InvalidBase64
        );
    }

    #[test]
    fn config_rejects_empty_key() {
        for s in ["whsec_", " whsec_ \n"] {
            assert_eq!(
                WebhookVerifier::new(&WebhookSecret::new(s)).unwrap_err(),
                WebhookConfigError::EmptyKey,
                "{s:?}"
            );
        }
        assert_eq!(
            WebhookVerifier::new_lenient(&WebhookSecret::new("")).unwrap_err(),
            WebhookConfigError::EmptyKey
        );
    }

    #[test]
    fn config_accepts_unpadded_and_trims_surrounding_whitespace() {
        let unpadded = V2_SECRET.trim_end_matches('=');
        for s in [
            unpadded.to_owned(),
            format!("{V2_SECRET}\n"),
            format!("  {V2_SECRET}"),
        ] {
            let v = verifier(&s);
            assert_eq!(
                v.verify(&v2_headers(), V2_BODY.as_bytes(), V2_NOW),
                Ok(()),
                "{s:?}"
            );
        }
    }

    #[test]
    fn debug_does_not_print_key() {
        let v = verifier(V1_SECRET);
        let dbg = format!("{v:?}");
        assert!(dbg.contains("redacted"), "{dbg}");
        assert!(!dbg.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{dbg}");
        assert!(!dbg.contains("31f290") && !dbg.contains("49, 242"), "{dbg}");
        assert!(!dbg.contains("[49"), "{dbg}");
    }

    #[test]
    fn error_messages_match_library() {
        assert_eq!(
            VerifyError::MissingHeaders.to_string(),
            "Missing required headers"
        );
        assert_eq!(
            VerifyError::InvalidHeaders.to_string(),
            "Invalid Signature Headers"
        );
        assert_eq!(VerifyError::TooOld.to_string(), "Message timestamp too old");
        assert_eq!(VerifyError::TooNew.to_string(), "Message timestamp too new");
        assert_eq!(
            VerifyError::NoMatchingSignature.to_string(),
            "No matching signature found"
        );
    }

    // ---- sign round trip -------------------------------------------------------------

    #[test]
    fn sign_round_trip() {
        let v = verifier(V2_SECRET);
        let body = b"\x00\xff not utf-8 \xc3";
        let sig = v.sign("msg_rt", 1_700_000_000, body);
        assert!(sig.starts_with("v1,"));
        let h = headers(&[
            ("webhook-id", "msg_rt"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", &sig),
        ]);
        assert_eq!(v.verify(&h, body, 1_700_000_000), Ok(()));
        assert_eq!(
            v.verify(&h, body, 1_700_000_000 + 301),
            Err(VerifyError::TooOld)
        );
    }

    // ---- properties ------------------------------------------------------------------

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 256,
            // Never write regression files into the source tree.
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Deterministic noise of `len` chars from `seed`: arbitrary unicode scalars mixed
    /// with the characters that matter to the parser (spaces, commas, `v1`, base64).
    /// Generated from a seed rather than per-char strategies so 2 KB inputs stay cheap
    /// in debug builds.
    fn noise(seed: u64, len: usize) -> String {
        const INTERESTING: &[u8] = b" ,v1v2=+/AZaz09-_.\t";
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..len)
            .map(|_| {
                let r = next();
                match r % 4 {
                    0 => char::from_u32((r >> 8) as u32 % 0x11_0000).unwrap_or('\u{fffd}'),
                    1 => char::from(((r >> 8) % 0x80) as u8),
                    _ => char::from(INTERESTING[((r >> 8) as usize) % INTERESTING.len()]),
                }
            })
            .collect()
    }

    /// Deterministic base64-alphabet text (plus `-`, `_`, `=`) of `len` chars.
    fn base64ish(seed: u64, len: usize) -> String {
        const ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_";
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(ALPHABET[(state >> 8) as usize % ALPHABET.len()])
            })
            .collect()
    }

    /// Header-ish text: arbitrary unicode (short, shrinkable), seeded noise up to
    /// ~2 KB, or signature-shaped lists of `version,base64` entries.
    fn header_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            (any::<u64>(), 0usize..2048).prop_map(|(seed, len)| noise(seed, len)),
            proptest::collection::vec(
                (
                    prop::sample::select(&["v1", "v2", "", "V1", "v10", "x"][..]),
                    prop::sample::select(&[",", "", ",,"][..]),
                    (any::<u64>(), 0usize..50).prop_map(|(seed, len)| base64ish(seed, len)),
                    prop::sample::select(&[" ", "  ", ""][..]),
                ),
                0..40,
            )
            .prop_map(|parts| {
                parts
                    .into_iter()
                    .map(|(a, b, c, d)| format!("{a}{b}{c}{d}"))
                    .collect::<String>()
            }),
        ]
    }

    fn timestamp_text() -> impl Strategy<Value = String> {
        prop_oneof![
            (V2_TS_INT - 400..V2_TS_INT + 400).prop_map(|t| t.to_string()),
            any::<i64>().prop_map(|t| t.to_string()),
            header_text(),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn prop_arbitrary_input_never_panics_or_verifies(
            id in header_text(),
            ts in timestamp_text(),
            sig in header_text(),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            now in prop_oneof![Just(V2_NOW), any::<i64>()],
        ) {
            let v = verifier(V2_SECRET);
            let r = v.verify_parts(Some(&id), Some(&ts), Some(&sig), &body, now);
            prop_assert!(r.is_err());

            let mut h = HeaderMap::new();
            for (name, value) in [
                ("webhook-id", &id),
                ("webhook-timestamp", &ts),
                ("webhook-signature", &sig),
            ] {
                if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                    h.insert(name, value);
                }
            }
            prop_assert!(v.verify(&h, &body, now).is_err());
        }

        #[test]
        fn prop_random_v1_signatures_never_match(
            tags in proptest::collection::vec(proptest::array::uniform32(any::<u8>()), 1..8),
            body in proptest::collection::vec(any::<u8>(), 0..256),
            offset in -TOLERANCE_SECS..=TOLERANCE_SECS,
        ) {
            let v = verifier(V2_SECRET);
            let header = tags
                .iter()
                .map(|t| format!("v1,{}", BASE64.encode(t)))
                .collect::<Vec<_>>()
                .join(" ");
            let ts = (V2_NOW + offset).to_string();
            prop_assert_eq!(
                v.verify_parts(Some(V2_ID), Some(&ts), Some(&header), &body, V2_NOW),
                Err(VerifyError::NoMatchingSignature)
            );
        }

        #[test]
        fn prop_sign_verify_round_trip_and_byte_flip_rejects(
            id in "[^\\s]{1,64}",
            now in 0i64..4_000_000_000,
            offset in -TOLERANCE_SECS..=TOLERANCE_SECS,
            body in proptest::collection::vec(any::<u8>(), 1..512),
            flip_at in any::<prop::sample::Index>(),
            flip_mask in 1u8..=255,
        ) {
            let v = verifier(V2_SECRET);
            let ts = now + offset;
            let ts_text = ts.to_string();
            let sig = v.sign(&id, ts, &body);
            prop_assert_eq!(
                v.verify_parts(Some(&id), Some(&ts_text), Some(&sig), &body, now),
                Ok(())
            );

            let mut tampered = body.clone();
            let i = flip_at.index(tampered.len());
            tampered[i] ^= flip_mask;
            prop_assert_eq!(
                v.verify_parts(Some(&id), Some(&ts_text), Some(&sig), &tampered, now),
                Err(VerifyError::NoMatchingSignature)
            );
        }
    }
}
