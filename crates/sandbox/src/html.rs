//! Rendering the sandbox's HTML pages (askama templates in `templates/`), and its error page.

use askama::Template;
use axum::{
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
};

/// Renders `page`; a template failure is logged and answered with a plain 500.
pub(crate) fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not render a sandbox page");
            (StatusCode::INTERNAL_SERVER_ERROR, "something went wrong").into_response()
        }
    }
}

/// A page that explains why a request was refused (for a person in a browser).
#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage<'a> {
    pub(crate) product: &'a str,
    pub(crate) title: &'a str,
    pub(crate) message: &'a str,
}

/// The message page with `status`.
pub(crate) fn message(status: StatusCode, product: &str, title: &str, text: &str) -> Response {
    let mut response = render(&MessagePage {
        product,
        title,
        message: text,
    });
    *response.status_mut() = status;
    response
}

/// `303 See Other` to `location` (after a form POST).
pub(crate) fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// `302 Found` to `location` (OAuth redirects).
pub(crate) fn found(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
        .into_response()
}

/// A refusal already rendered in the shape of the service being played (OAuth JSON, an
/// OperationOutcome, a Graph error). Boxed, since a `Response` is large to move around in `Err`.
pub(crate) struct Refusal(Box<Response>);

impl From<Response> for Refusal {
    fn from(response: Response) -> Self {
        Self(Box::new(response))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}
