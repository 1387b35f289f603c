//! docs/configuration.md is the binary's own configuration, generated from
//! its definitions: this test fails when they differ (`UPDATE_DOCS=1`
//! writes the page anew).

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");

#[test]
fn the_configuration_page_is_the_binarys_own() {
    let generated = llm_service::config_reference::markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(PAGE, &generated).expect("docs/configuration.md is writable");
    }
    let page = std::fs::read_to_string(PAGE).unwrap_or_default();
    assert!(
        page == generated,
        "docs/configuration.md differs from the binary's settings: run `UPDATE_DOCS=1 cargo test -p llm-service --test configuration`"
    );
    for setting in ["LLM_SERVICE_PORT", "REDIS_URL", "OLLAMA_MODEL", "ADMIN_TOKEN", "ADMIN_URL"] {
        assert!(page.contains(&format!("| `{setting}` |")), "{setting} has its row");
    }
}
