//! Request recording.

use std::time::Instant;

use super::util::parse_query;

/// One request as the fake received it, with the status it answered.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path without the query, as received (still percent-encoded).
    pub path: String,
    /// Raw query string, `""` if none.
    pub query: String,
    /// Lower-cased header names with their values, in order received.
    pub headers: Vec<(String, String)>,
    /// Raw request body.
    pub body: bytes::Bytes,
    /// Status the fake answered.
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
}

impl RecordedRequest {
    /// First value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Percent-decoded query pairs in order (`+` decodes to a space).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(&self.query)
    }

    /// First decoded value of a query parameter.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Body parsed as JSON (`None` if empty or not JSON).
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}
