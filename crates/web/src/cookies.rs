//! Cookies as both services read and write them: the values of a request's `Cookie` headers,
//! and `Set-Cookie` values that are always `Path=/` and `HttpOnly`.
//!
//! What the cookies hold stays with each service (sessions are stored under
//! `visitbridge_http::storage_key` of their id, CSRF tokens compared with
//! `visitbridge_http::Secret::constant_time_eq`).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};

/// The `name=value` pairs of the request's `Cookie` headers, in order, without empty values.
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(_, v)| !v.is_empty())
}

/// The (first non-empty) value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookie_pairs(headers)
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `name=value; Path=/; HttpOnly; SameSite=…`, then `Max-Age` (whole
/// seconds; none for a cookie that lasts the browser session) and `Secure` when asked. Names and
/// values are meant to be our own URL-safe tokens; one that is not a valid header value gives an
/// empty header value (which sets nothing).
pub fn set_cookie(
    name: &str,
    value: &str,
    same_site: &str,
    secure: bool,
    max_age: Option<Duration>,
) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
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

    #[test]
    fn set_cookie_values_are_http_only_with_the_asked_attributes() {
        let value = |secure, age| set_cookie("n", "v", "Lax", secure, age);
        assert_eq!(
            value(true, Some(Duration::from_secs(60))),
            "n=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
        assert_eq!(value(false, None), "n=v; Path=/; HttpOnly; SameSite=Lax");
        assert_eq!(set_cookie("n", "a\nb", "Lax", true, None), "");
    }
}
