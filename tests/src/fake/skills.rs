//! Skills (control-plane spec §10.5, tools spec §9).
//!
//! * `GET /v1/skills/{skill_id}/versions/{version}` answers the
//!   `skill_version` object; `version` may be the alias `latest`, which
//!   resolves to the most recently registered version.
//! * `GET /v1/skills/{skill_id}/versions/{version_id}/content` answers the
//!   archive bytes (`content-type: application/octet-stream`) of a
//!   **concrete** version id. `latest` is not resolved here (404), so a runner
//!   that skips the retrieve call and downloads `latest` directly fails.
//!
//! Neither endpoint takes an `anthropic-beta` header (enforced by the HTTP
//! layer). Credentials: the environment key and every sessions token the
//! fake issued (not scoped to the session's `agent.skills`), unless the test
//! knob [`FakeControlPlane::set_skills_refuse_sessions_token`] is set, in
//! which case sessions tokens get `403 permission_error`.
//!
//! Decisions where the spec is silent:
//! * The fake does not check the `Accept` header of the download (the SDK
//!   sends `application/binary`; tests can assert it on the recorded request).
//! * Registering an already known version id again replaces its name and
//!   archive in place (it does not become the newest version).
//! * `description` is `"<name> (fake skill)"`; `created_at` is the
//!   registration time (RFC 3339, whole seconds).
//!
//! [`FakeControlPlane::set_skills_refuse_sessions_token`]: super::FakeControlPlane::set_skills_refuse_sessions_token

use std::collections::HashMap;
use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::util::rfc3339_secs;

/// One registered version of a skill.
pub(crate) struct SkillVersionRec {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) archive: bytes::Bytes,
    pub(crate) created_at: SystemTime,
}

/// All skills, each with its versions oldest first.
#[derive(Default)]
pub(crate) struct Skills {
    pub(crate) skills: HashMap<String, Vec<SkillVersionRec>>,
    /// Test knob: answer 403 to sessions tokens.
    pub(crate) refuse_sessions_token: bool,
}

impl Skills {
    /// Registers (or replaces) a version; a new version becomes `latest`.
    pub(crate) fn add(&mut self, skill_id: &str, version_id: &str, name: &str, archive: Vec<u8>) {
        let versions = self.skills.entry(skill_id.to_string()).or_default();
        let rec = SkillVersionRec {
            id: version_id.to_string(),
            name: name.to_string(),
            description: format!("{name} (fake skill)"),
            archive: archive.into(),
            created_at: SystemTime::now(),
        };
        match versions.iter_mut().find(|v| v.id == version_id) {
            Some(v) => *v = rec,
            None => versions.push(rec),
        }
    }

    fn versions(&self, skill_id: &str) -> Result<&[SkillVersionRec], ApiError> {
        self.skills
            .get(skill_id)
            .map(Vec::as_slice)
            .ok_or_else(|| ApiError::not_found(format!("skill {skill_id} not found")))
    }

    fn concrete(&self, skill_id: &str, version_id: &str) -> Result<&SkillVersionRec, ApiError> {
        self.versions(skill_id)?
            .iter()
            .find(|v| v.id == version_id)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "version {version_id} of skill {skill_id} not found"
                ))
            })
    }

    /// `GET /v1/skills/{skill_id}/versions/{version}` (`latest` allowed).
    pub(crate) fn retrieve(&self, skill_id: &str, version: &str) -> Result<Value, ApiError> {
        let v = if version == "latest" {
            self.versions(skill_id)?
                .last()
                .ok_or_else(|| ApiError::not_found(format!("skill {skill_id} has no versions")))?
        } else {
            self.concrete(skill_id, version)?
        };
        Ok(json!({
            "type": "skill_version",
            "id": v.id,
            "skill_id": skill_id,
            "name": v.name,
            "description": v.description,
            "created_at": rfc3339_secs(v.created_at),
        }))
    }

    /// `GET /v1/skills/{skill_id}/versions/{version_id}/content` (concrete id only).
    pub(crate) fn content(&self, skill_id: &str, version_id: &str) -> Result<Response, ApiError> {
        let v = self.concrete(skill_id, version_id)?;
        Ok(Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(v.archive.clone()))
            .expect("valid response"))
    }
}
