//! Cookies as both services read and write them, through the `cookie` crate: the values of a
//! request's `Cookie` headers, and `Set-Cookie` values that are always `Path=/` and `HttpOnly`.
//!
//! What the cookies hold stays with each service (sessions are stored under
//! `visitbridge_http::storage_key` of their id, CSRF tokens compared with
//! `visitbridge_http::Secret::constant_time_eq`).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use cookie::{Cookie, SameSite};

/// The `name=value` pairs of the request's `Cookie` headers, in order, without empty values
/// (a pair the `cookie` crate cannot parse is skipped).
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .filter_map(|c| Some((c.name_raw()?, c.value_raw()?)))
        .filter(|(_, v)| !v.is_empty())
}

/// The (first non-empty) value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookie_pairs(headers)
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `name=value` with `Path=/`, `HttpOnly` and `SameSite` (`Strict`, `Lax`
/// or `None`; anything else is `Lax`), `Max-Age` (whole seconds; none for a cookie that lasts the
/// browser session) and `Secure` when asked. Names and values are meant to be our own URL-safe
/// tokens; one that is not a valid header value gives an empty header value (which sets nothing).
pub fn set_cookie(
    name: &str,
    value: &str,
    same_site: &str,
    secure: bool,
    max_age: Option<Duration>,
) -> HeaderValue {
    let same_site = match same_site.to_ascii_lowercase().as_str() {
        "strict" => SameSite::Strict,
        "none" => SameSite::None,
        _ => SameSite::Lax,
    };
    let mut cookie = Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(same_site)
        .secure(secure);
    if let Some(age) = max_age {
        let seconds = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
        cookie = cookie.max_age(cookie::time::Duration::seconds(seconds));
    }
    HeaderValue::from_str(&cookie.build().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_cookie_among_many() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; s=; s=xyz; b=2"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(cookie(&headers, "s"), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), Some("3"));
        assert_eq!(cookie(&headers, "x"), None);
        assert_eq!(cookie_pairs(&headers).count(), 4);
    }

    /// The attributes of a `Set-Cookie` value, as a browser reads them (order does not matter).
    fn attributes(value: &HeaderValue) -> Vec<String> {
        let mut parts: Vec<String> = value
            .to_str()
            .unwrap()
            .split(';')
            .map(|p| p.trim().to_owned())
            .collect();
        parts[1..].sort();
        parts
    }

    #[test]
    fn set_cookie_values_are_http_only_with_the_asked_attributes() {
        let value = |secure, age| set_cookie("n", "v", "Lax", secure, age);
        assert_eq!(
            attributes(&value(true, Some(Duration::from_secs(60)))),
            [
                "n=v",
                "HttpOnly",
                "Max-Age=60",
                "Path=/",
                "SameSite=Lax",
                "Secure"
            ]
        );
        assert_eq!(
            attributes(&value(false, None)),
            ["n=v", "HttpOnly", "Path=/", "SameSite=Lax"]
        );
        assert_eq!(
            attributes(&set_cookie("n", "v", "None", true, None)),
            ["n=v", "HttpOnly", "Path=/", "SameSite=None", "Secure"]
        );
        assert_eq!(set_cookie("n", "a\nb", "Lax", true, None), "");
    }
}
