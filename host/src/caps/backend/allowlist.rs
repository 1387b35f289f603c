//! Which backends the host may reach: the origins (scheme, host, port) of
//! the configured model servers, and only those. Set at start-up, and
//! replaced when BACKENDS_FILE changes. Checked twice: on the request's URI,
//! and again in the resolver, which resolves nothing but an allowed host and
//! drops addresses that are not unicast or not on that host's allowed ports.
//!
//! ```
//! use llm_service::caps::backend::allowlist::Allowlist;
//! let allow = Allowlist::for_base_url(&"http://localhost:11434".parse().unwrap());
//! assert!(allow.permits(&"http://localhost:11434/api/generate".parse().unwrap()));
//! assert!(!allow.permits(&"http://localhost:11435/api/generate".parse().unwrap()));
//! assert!(!allow.permits(&"http://example.com/".parse().unwrap()));
//! assert!(!allow.permits(&"https://localhost:11434/".parse().unwrap()));
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use hyper_util::client::legacy::connect::dns::Name;

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn of(uri: &http::Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        Some(Self {
            port: uri.port_u16().unwrap_or(default_port(&scheme)),
            host: uri.host().unwrap_or_default().trim_matches(['[', ']']).to_ascii_lowercase(),
            scheme,
        })
    }
}

/// The origins components' backend calls may reach.
#[derive(Debug)]
pub struct Allowlist {
    origins: ArcSwap<Vec<Origin>>,
}

impl Allowlist {
    /// Allows the origin of `base_url` (its port defaults by scheme).
    pub fn for_base_url(base_url: &http::Uri) -> Self {
        Self::for_base_urls(std::slice::from_ref(base_url))
    }

    /// Allows the origins of `base_urls`.
    pub fn for_base_urls(base_urls: &[http::Uri]) -> Self {
        Self { origins: ArcSwap::from_pointee(base_urls.iter().filter_map(Origin::of).collect()) }
    }

    /// Allows the origins of `base_urls` from now on, and no other.
    pub fn replace(&self, base_urls: &[http::Uri]) {
        self.origins.store(Arc::new(base_urls.iter().filter_map(Origin::of).collect()));
    }

    /// Whether `uri` points at an allowed origin.
    pub fn permits(&self, uri: &http::Uri) -> bool {
        Origin::of(uri).is_some_and(|origin| self.origins.load().contains(&origin))
    }

    fn permits_host(&self, host: &str) -> bool {
        self.origins.load().iter().any(|origin| origin.host == host)
    }
}

/// Whether a resolved address may be connected to: unicast only.
fn permits_ip(addr: &SocketAddr) -> bool {
    let ip = addr.ip();
    !(ip.is_unspecified() || ip.is_multicast())
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// The connector's resolver: resolves only the allowed host.
#[derive(Debug, Clone)]
pub struct AllowlistResolver {
    allowlist: Arc<Allowlist>,
}

impl AllowlistResolver {
    /// A resolver for `allowlist`.
    pub fn new(allowlist: Arc<Allowlist>) -> Self {
        Self { allowlist }
    }
}

impl tower_service::Service<Name> for AllowlistResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allowlist = self.allowlist.clone();
        Box::pin(async move {
            let host = name.as_str().trim_matches(['[', ']']).to_ascii_lowercase();
            if !allowlist.permits_host(&host) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{host} is not the backend"),
                ));
            }
            // The connector puts the URI's port on each address, and the URI
            // was checked against the allowed origins before it was sent.
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.filter(permits_ip).collect();
            if addrs.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{host} resolves to no allowed address"),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_follow_the_scheme() {
        let allow = Allowlist::for_base_url(&"http://backend".parse().unwrap());
        assert!(allow.permits(&"http://backend:80/x".parse().unwrap()));
        assert!(!allow.permits(&"http://backend:8080/x".parse().unwrap()));
    }

    #[test]
    fn ipv6_literals_compare_without_brackets() {
        let allow = Allowlist::for_base_url(&"http://[::1]:11434".parse().unwrap());
        assert!(allow.permits(&"http://[::1]:11434/api/tags".parse().unwrap()));
    }

    #[test]
    fn resolved_addresses_must_be_unicast() {
        assert!(permits_ip(&"127.0.0.1:11434".parse().unwrap()));
        assert!(!permits_ip(&"0.0.0.0:11434".parse().unwrap()));
        assert!(!permits_ip(&"224.0.0.1:11434".parse().unwrap()));
    }

    #[test]
    fn several_origins_and_a_replacement() {
        let urls: Vec<http::Uri> =
            ["http://127.0.0.1:1", "http://127.0.0.1:2"].map(|url| url.parse().unwrap()).into();
        let allow = Allowlist::for_base_urls(&urls);
        assert!(allow.permits(&"http://127.0.0.1:2/api/tags".parse().unwrap()));
        assert!(!allow.permits(&"http://127.0.0.1:3/api/tags".parse().unwrap()));
        allow.replace(&urls[..1]);
        assert!(!allow.permits(&"http://127.0.0.1:2/api/tags".parse().unwrap()), "removed");
        assert!(allow.permits_host("127.0.0.1") && !allow.permits_host("example.com"));
    }
}
