//! Web Push endpoints the server may call: https, and only on public addresses, so that a
//! registration cannot point the server at its own network (SSRF).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use url::Url;

/// How long resolving an endpoint's host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an endpoint is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("the endpoint is not a URL")]
    NotUrl,
    #[error("the endpoint must be https")]
    NotHttps,
    #[error("the endpoint's host does not resolve")]
    Unresolved,
    #[error("the endpoint resolves to {0}, a private, loopback or link-local address")]
    NotPublic(IpAddr),
}

/// What [`check`] does with a host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    /// Resolves it and judges every address (a registration).
    Resolve,
    /// Leaves it to the sending client's resolver ([`PublicOnly`]), which judges the addresses
    /// it connects to (a send: a pooled connection needs no lookup at all).
    LeaveToResolver,
}

/// The endpoint, when the server may send to it: `https://` on a host whose every address is
/// public. `allow_insecure_loopback` (tests only) also admits `http://` and loopback addresses.
pub(crate) async fn check(endpoint: &str, allow_insecure_loopback: bool, names: Names) -> Result<Url, EndpointError> {
    let url = Url::parse(endpoint).map_err(|_| EndpointError::NotUrl)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure_loopback => {}
        _ => return Err(EndpointError::NotHttps),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::NotUrl);
    }
    let host = url.host_str().ok_or(EndpointError::NotUrl)?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port_or_known_default().ok_or(EndpointError::NotUrl)?;
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) if names == Names::LeaveToResolver => return Ok(url),
        Err(_) => tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| EndpointError::Unresolved)?
            .map_err(|_| EndpointError::Unresolved)?
            .collect(),
    };
    permitted(&addresses, allow_insecure_loopback)?;
    if url.scheme() == "http" && !addresses.iter().all(|a| canonical(a.ip()).is_loopback()) {
        return Err(EndpointError::NotHttps);
    }
    Ok(url)
}

/// Ok when there are addresses and every one is public (or loopback, when allowed).
fn permitted(addresses: &[SocketAddr], allow_insecure_loopback: bool) -> Result<(), EndpointError> {
    if addresses.is_empty() {
        return Err(EndpointError::Unresolved);
    }
    for address in addresses {
        let ip = canonical(address.ip());
        if !(is_public(ip) || (allow_insecure_loopback && ip.is_loopback())) {
            return Err(EndpointError::NotPublic(ip));
        }
    }
    Ok(())
}

/// `scheme://host[:port]` of `url`: what a VAPID token is for, and what
/// `push.webpush.allowed_origins` lists.
pub(crate) fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// The resolver of the client that sends Web Push requests: it connects only to the addresses
/// it has just checked, so a host that resolved to a public address at registration and to a
/// private one now (DNS rebinding) is not reached.
pub(crate) struct PublicOnly {
    pub(crate) allow_insecure_loopback: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_insecure_loopback = self.allow_insecure_loopback;
        Box::pin(async move {
            let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name.as_str(), 0)))
                .await
                .map_err(|_| EndpointError::Unresolved)??;
            let addresses: Vec<SocketAddr> = resolved.collect();
            permitted(&addresses, allow_insecure_loopback)?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An IPv4 address mapped into IPv6 is judged as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is an address on the public internet.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: cloud metadata services live here
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || first == 0x2001 && ip.segments()[1] == 0xdb8 // documentation
        || ip.to_ipv4().is_some_and(|v4| !is_public_v4(v4)) && ip.segments()[..6] == [0; 6])
    // IPv4-compatible
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_public_https_endpoints() {
        let refused = |endpoint: &'static str| async move { check(endpoint, false, Names::Resolve).await.err() };
        assert_eq!(refused("http://push.example.test/x").await, Some(EndpointError::NotHttps));
        for endpoint in [
            "https://127.0.0.1/x",
            "https://10.0.0.1/x",
            "https://172.16.5.4/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
            "https://[::ffff:10.0.0.1]/x",
        ] {
            assert!(matches!(refused(endpoint).await, Some(EndpointError::NotPublic(_))), "{endpoint}");
        }
        assert_eq!(refused("https://user:pw@8.8.8.8/x").await, Some(EndpointError::NotUrl));
        assert_eq!(refused("not a url").await, Some(EndpointError::NotUrl));
        let check = |endpoint: &'static str, loopback: bool| check(endpoint, loopback, Names::Resolve);
        assert!(check("https://8.8.8.8/push", false).await.is_ok());
        assert!(check("https://[2606:4700::1111]/push", false).await.is_ok());
        assert!(check("http://127.0.0.1:8443/push", true).await.is_ok(), "tests only");
        assert_eq!(check("http://8.8.8.8/push", true).await.err(), Some(EndpointError::NotHttps));
        assert!(matches!(check("https://10.0.0.1/x", true).await, Err(EndpointError::NotPublic(_))));
        let at_send = |endpoint: &'static str| super::check(endpoint, false, Names::LeaveToResolver);
        assert!(at_send("https://localhost/x").await.is_ok(), "a name: judged by the resolver");
        assert!(matches!(at_send("https://10.0.0.1/x").await, Err(EndpointError::NotPublic(_))), "an address: here");
    }

    #[tokio::test]
    async fn the_sending_client_connects_only_to_public_addresses() {
        use reqwest::dns::Resolve;
        let strict = PublicOnly { allow_insecure_loopback: false };
        assert!(strict.resolve("localhost".parse().unwrap()).await.is_err(), "loopback by name");
        let testing = PublicOnly { allow_insecure_loopback: true };
        let addresses: Vec<_> = testing.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(addresses.iter().all(|a| a.ip().is_loopback()));
        assert_eq!(origin(&Url::parse("https://push.example:8443/a/b?c").unwrap()), "https://push.example:8443");
        assert_eq!(origin(&Url::parse("https://push.example:443/a").unwrap()), "https://push.example");
    }
}
