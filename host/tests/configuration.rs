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

/// The settings a deployment file gives the service: `KEY: value` lines
/// (the ConfigMap's data, Compose's environment maps, a `${KEY:-value}`
/// read as its fallback) and `- KEY=value` lines.
fn settings_in(text: &str) -> Vec<(String, String)> {
    let defaults = llm_service::config_reference::defaults();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let line = line.strip_prefix("- ").unwrap_or(line);
            let (key, value) = line.split_once(": ").or_else(|| line.split_once('='))?;
            let value = value.trim().trim_matches('"');
            let value = value
                .strip_prefix(&format!("${{{key}:-"))
                .and_then(|fallback| fallback.strip_suffix('}'))
                .unwrap_or(value);
            defaults.contains_key(key).then(|| (key.to_string(), value.to_string()))
        })
        .collect()
}

#[test]
fn the_configmap_and_env_files_set_only_what_differs_from_the_defaults() {
    let defaults = llm_service::config_reference::defaults();
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    // compose.yaml passes the seed's variables through from the shell with
    // their defaults as fallbacks (`${KEY:-default}`), and Compose cannot
    // pass an unset one through a map without setting it empty.
    for file in ["deploy/kubernetes/configmap.yaml", "deploy/compose/small-model.env"] {
        let text = std::fs::read_to_string(format!("{repo}/{file}"))
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        let settings = settings_in(&text);
        assert!(!settings.is_empty(), "{file} sets something: the parser reads it");
        for (key, value) in settings {
            assert_ne!(
                value, defaults[&key],
                "{file} sets {key} to its default: leave it to the binary (one place for each default)"
            );
        }
    }
}
