//! Instance reuse: an instance answers the next request of its own
//! connection only, and never after it failed or wrote output.

use llm_service_test_support::{Client, Service};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MISBEHAVE: &str = env!("LLM_SERVICE_TEST_PROGRAM_MISBEHAVE");

#[test]
fn an_instance_serves_only_its_own_connection_and_never_after_a_failure() {
    let service = Service::builder(BINARY).component(MISBEHAVE).start();
    let (first, second) = (Client::new(), Client::new());
    // `/count` answers how many requests the answering instance has served.
    let count = |client: &Client| client.get(&service.url("/count")).body;

    assert_eq!([count(&first), count(&first), count(&first)], ["1", "2", "3"], "kept on its connection");
    assert_eq!(count(&second), "1", "another connection gets an instance of its own");
    assert_eq!(count(&first), "4");

    assert_eq!(first.get(&service.url("/trap")).status, 500);
    assert_eq!(count(&first), "1", "a trapped instance is dropped");
    assert_eq!(count(&first), "2");

    assert_eq!(first.get(&service.url("/print")).body, "printed");
    assert_eq!(count(&first), "1", "an instance that wrote output is dropped");
}

#[test]
fn a_kept_instance_of_a_replaced_handler_is_not_used() {
    const HANDLER: &str = env!("LLM_SERVICE_HANDLER_WASM");
    let service =
        Service::builder(BINARY).component(MISBEHAVE).env("ADMIN_TOKEN", "reuse-admin-token").start();
    let client = Client::new();
    assert_eq!(client.get(&service.url("/count")).body, "1");
    assert_eq!(client.get(&service.url("/count")).body, "2");

    let pushed =
        service.admin("reuse-admin-token", "PUT", "/components/handler", &std::fs::read(HANDLER).unwrap());
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    let sha256 = pushed.json()["sha256"].as_str().unwrap().to_string();

    // The same connection: the default handler answers (it has no /count).
    let after = client.get(&service.url("/count"));
    assert_eq!((after.status, after.header("x-handler-version")), (404, Some(&sha256[..12])));
}
