//! Which backend a component may reach: exactly one scheme, host and port,
//! parsed once at start-up. Checked twice: on the request's URI, and again
//! in the resolver, which resolves nothing but the allowed host and drops
//! addresses that are not unicast or not on the allowed port.
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

use hyper_util::client::legacy::connect::dns::Name;

/// The one origin components may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    scheme: String,
    host: String,
    port: u16,
}

impl Allowlist {
    /// Allows the origin of `base_url` (its port defaults by scheme).
    pub fn for_base_url(base_url: &http::Uri) -> Self {
        let scheme = base_url.scheme_str().unwrap_or("http").to_ascii_lowercase();
        Self {
            port: base_url.port_u16().unwrap_or(default_port(&scheme)),
            host: base_url.host().unwrap_or_default().trim_matches(['[', ']']).to_ascii_lowercase(),
            scheme,
        }
    }

    /// Whether `uri` points at the allowed origin.
    pub fn permits(&self, uri: &http::Uri) -> bool {
        let Some(scheme) = uri.scheme_str().map(str::to_ascii_lowercase) else { return false };
        let port = uri.port_u16().unwrap_or(default_port(&scheme));
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).to_ascii_lowercase();
        scheme == self.scheme && host == self.host && port == self.port
    }

    /// Whether a resolved address may be connected to.
    fn permits_addr(&self, addr: &SocketAddr) -> bool {
        let ip = addr.ip();
        !(ip.is_unspecified() || ip.is_multicast()) && addr.port() == self.port
    }
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
            if host != allowlist.host {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{host} is not the backend"),
                ));
            }
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), allowlist.port))
                .await?
                .filter(|addr| allowlist.permits_addr(addr))
                .collect();
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
    fn resolved_addresses_must_be_on_the_allowed_port() {
        let allow = Allowlist::for_base_url(&"http://127.0.0.1:11434".parse().unwrap());
        assert!(allow.permits_addr(&"127.0.0.1:11434".parse().unwrap()));
        assert!(!allow.permits_addr(&"127.0.0.1:22".parse().unwrap()));
        assert!(!allow.permits_addr(&"0.0.0.0:11434".parse().unwrap()));
    }
}
