//! RFC 9457 problem documents.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// An `application/problem+json` response: `type` is `{type_base}{slug}`, `title` a short
/// summary, `detail` what to do. None of them may quote the request (it can carry tokens or PHI).
pub fn problem(
    status: StatusCode,
    type_base: &str,
    slug: &str,
    title: &str,
    detail: &str,
) -> Response {
    let body = json!({
        "type": format!("{type_base}{slug}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_has_its_media_type_and_fields() {
        let r = problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "https://visitbridge.example/problems/",
            "too-large",
            "Too large",
            "send less",
        );
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            HeaderValue::from_static("application/problem+json")
        );
    }
}
