//! The configuration reference, docs/configuration.md, made from the
//! command line's own definitions (each setting's variable, flag, default
//! and help are written once, in `config.rs` and the capabilities'
//! `config.rs` files), so the page and the binary cannot differ: a test
//! compares them.

use clap::CommandFactory;

use crate::config::Config;

/// What the page says before its tables.
const PREAMBLE: &str = "\
# Configuration

Every setting is an environment variable and the command-line flag beside
it (the flag wins). A value that does not parse stops the start with one
line naming it, and exit code 2. `llm-service --help` prints the same.
This page is generated from the binary's own definitions
(`host/src/config_reference.rs`); `cargo test -p llm-service --test
configuration` fails when it differs, and `UPDATE_DOCS=1` with that command
writes it anew.

Logging also reads `RUST_LOG` (a `tracing` filter; default `info`).
";

/// The reference page, as markdown.
pub fn markdown() -> String {
    let command = Config::command();
    let mut page = String::from(PREAMBLE);
    page.push_str("\n## The service\n\n");
    page.push_str(&table(&command));
    for sub in command.get_subcommands() {
        let rows = table(sub);
        if rows.lines().count() > 2 {
            page.push_str(&format!(
                "\n## `llm-service {}`\n\n{}\n\n",
                sub.get_name(),
                one_line(sub.get_about())
            ));
            page.push_str(&rows);
        }
    }
    page
}

/// Each variable of the service that has a default, and that default: the
/// one place deployment files are checked against (they set only what
/// differs).
pub fn defaults() -> std::collections::BTreeMap<String, String> {
    Config::command()
        .get_arguments()
        .filter_map(|arg| {
            let variable = arg.get_env()?.to_str()?.to_string();
            let defaults: Vec<String> =
                arg.get_default_values().iter().map(|value| value.to_string_lossy().into_owned()).collect();
            (!defaults.is_empty()).then(|| (variable, defaults.join(",")))
        })
        .collect()
}

/// One row per argument of `command` that has a variable.
fn table(command: &clap::Command) -> String {
    let mut rows = String::from("| variable | flag | default | meaning |\n|---|---|---|---|\n");
    for arg in command.get_arguments() {
        let Some(variable) = arg.get_env().and_then(|name| name.to_str()) else { continue };
        let flag = arg.get_long().map_or_else(String::new, |long| format!("`--{long}`"));
        let defaults: Vec<String> =
            arg.get_default_values().iter().map(|value| value.to_string_lossy().into_owned()).collect();
        let default = if defaults.is_empty() {
            "unset".to_string()
        } else if defaults.iter().all(String::is_empty) {
            "empty".to_string()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let mut meaning = one_line(arg.get_long_help().or(arg.get_help()));
        let choices: Vec<String> =
            arg.get_possible_values().iter().map(|value| format!("`{}`", value.get_name())).collect();
        let named = choices.first().is_some_and(|first| meaning.contains(first.as_str()));
        if !choices.is_empty() && !named {
            meaning.push_str(&format!(" (one of {})", choices.join(", ")));
        }
        rows.push_str(&format!("| `{variable}` | {flag} | {default} | {meaning} |\n"));
    }
    rows
}

/// A help text on one table line.
fn one_line(text: Option<&clap::builder::StyledStr>) -> String {
    let text = text.map(ToString::to_string).unwrap_or_default();
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}
