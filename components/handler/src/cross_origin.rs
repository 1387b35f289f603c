//! A page on another origin must not change the service: a browser sends
//! a cross-origin `POST` with `text/plain` and no preflight, so without
//! this a page anyone visits could switch the model fleet-wide or clear the
//! cache. The routes that change state refuse a request whose `Origin` is
//! neither this service's own nor one `CORS_ALLOWED_ORIGINS` names
//! (comma-separated origins, or `*`). A request without `Origin` (curl,
//! the bots, any server-side client) is not a browser's and passes, as the
//! seed's bare `curl -X POST .../cache/clear` does. A leaf.

use llm_service_sdk::http::{Request, Response};

/// The routes that change what the service does for everyone.
const MUTATIONS: &[&str] = &["/model", "/cache/clear"];

/// The 403 for a cross-origin request to a route that changes state, or
/// `None` when it may go on.
pub fn refusal(request: &Request) -> Option<Response> {
    if request.method() != "POST" || !MUTATIONS.contains(&request.path()) {
        return None;
    }
    let origin = request.header("origin")?;
    let allowed = std::env::var("CORS_ALLOWED_ORIGINS").unwrap_or_default();
    if same_origin(origin, request.authority().as_deref()) || listed(origin, &allowed) {
        return None;
    }
    let message = format!(
        "{} changes the service, and a page on {origin} may not ask for it; name its origin in CORS_ALLOWED_ORIGINS to allow it",
        request.path()
    );
    Some(Response::error(403, &message))
}

/// Whether `origin` (`scheme://host[:port]`) is the service itself.
fn same_origin(origin: &str, authority: Option<&str>) -> bool {
    let Some((_, host)) = origin.split_once("://") else { return false };
    authority.is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// Whether `allowed` (comma-separated origins, or `*`) names `origin`.
fn listed(origin: &str, allowed: &str) -> bool {
    allowed.split(',').map(str::trim).any(|entry| entry == "*" || entry.eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_service_itself_and_the_listed_origins_pass() {
        assert!(same_origin("http://localhost:6001", Some("localhost:6001")));
        assert!(!same_origin("https://evil.example", Some("localhost:6001")));
        assert!(!same_origin("null", Some("localhost:6001")), "a sandboxed page's origin is no one's");
        assert!(listed("https://ops.example", "https://a.example, https://ops.example"));
        assert!(listed("https://anything.example", "*"));
        assert!(!listed("https://evil.example", ""));
    }
}
