//! RFC 9457 problem details: the one error shape of the API.

use serde::Serialize;

use crate::response::Response;

/// An error answer: `application/problem+json` with a stable `code`.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// URI naming the problem type (derived from `code`).
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Stable snake_case machine code (`not_found`, `validation_failed`, ...).
    pub code: &'static str,
}

impl Problem {
    /// A problem with `status`, machine `code` and human `detail`.
    pub fn new(status: u16, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("https://rayltics.dev/problems/{code}"),
            title: crate::response::reason(status).to_owned(),
            status,
            detail: detail.into(),
            code,
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, "bad_request", detail)
    }

    /// 404 `not_found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not_found", detail)
    }

    /// 422 `validation_failed`.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(422, "validation_failed", detail)
    }

    /// The problem as a response.
    pub fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        Response::new(self.status).with_body("application/problem+json", body)
    }
}

impl From<Problem> for Response {
    fn from(p: Problem) -> Self {
        p.into_response()
    }
}
