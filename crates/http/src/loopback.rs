//! Whether a URL names this machine: the one test behind "plain http only on loopback" rules.

use std::net::IpAddr;

use url::{Host, Url};

/// Whether `url`'s host is this machine: `localhost` or a name under `.localhost`, or a loopback
/// IPv4 (`127.0.0.0/8`) or IPv6 (`::1`) address. A URL without a host is not.
///
/// ```
/// use url::Url;
/// use visitbridge_http::is_loopback_url;
///
/// assert!(is_loopback_url(&Url::parse("http://127.0.0.1:8080/")?));
/// assert!(!is_loopback_url(&Url::parse("https://visits.example.org/")?));
/// # Ok::<(), url::ParseError>(())
/// ```
pub fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback(url: &str) -> bool {
        is_loopback_url(&Url::parse(url).unwrap())
    }

    #[test]
    fn loopback_names_and_addresses_are_this_machine() {
        for url in [
            "http://localhost/",
            "http://localhost:8090/x",
            "http://portal.localhost/",
            "http://127.0.0.1:8080/",
            "http://127.8.9.10/",
            "http://[::1]:8080/",
        ] {
            assert!(loopback(url), "{url}");
        }
    }

    #[test]
    fn other_hosts_and_hostless_urls_are_not() {
        for url in [
            "https://visits.example.org/",
            "http://localhost.example.org/",
            "http://notlocalhost/",
            "http://10.0.0.1/",
            "http://0.0.0.0/",
            "http://[::2]/",
            "http://[fe80::1]/",
            "data:text/plain,hello",
        ] {
            assert!(!loopback(url), "{url}");
        }
    }
}
