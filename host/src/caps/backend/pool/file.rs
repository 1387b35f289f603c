//! BACKENDS_FILE: the nodes as TOML, read at start and again whenever its
//! contents change (checked every [`CHECK_EVERY`]), so nodes are added and
//! removed without a restart.
//!
//! ```toml
//! [[node]]
//! name = "gpu-a"                   # default: host:port
//! url = "http://10.0.0.5:11434"
//! slots = 4                        # generations at once (default 1)
//! weight = 2                       # share against its priority (default 1)
//! priority = 0                     # lower first (default 0)
//! protocol = "ollama"              # or "openai" (default "ollama")
//! models = ["llama3:8b"]           # default: whatever it lists
//! ```
//!
//! Polling rather than file events: an edit in place, a replacement by
//! rename and a Kubernetes ConfigMap's symlink swap all look the same to a
//! read, and one small read a second costs nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::Pool;
use super::node::NodeSpec;

/// How often the file is read for changes.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendsFile {
    node: Vec<NodeSpec>,
}

/// The nodes `text` describes.
pub fn parse(text: &str) -> Result<Vec<NodeSpec>, String> {
    let file: BackendsFile = toml::from_str(text).map_err(|error| error.to_string())?;
    if file.node.is_empty() {
        return Err("it lists no [[node]]".into());
    }
    Ok(file.node)
}

/// Reads and parses `path`.
pub fn read(path: &Path) -> Result<(Vec<NodeSpec>, String), String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let specs = parse(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    Ok((specs, text))
}

/// Applies changes of `path` to `pool` until dropped; a file that does not
/// parse is logged and the nodes stay as they were.
pub struct FileWatch(tokio::task::JoinHandle<()>);

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches `path` (last read as `seen`) for `pool`.
pub fn watch(path: PathBuf, seen: String, pool: Arc<Pool>) -> FileWatch {
    FileWatch(tokio::spawn(async move {
        let mut seen = seen;
        let mut unreadable = false;
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        loop {
            ticks.tick().await;
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(text) => text,
                // Said once per spell (a file being replaced is gone for a
                // moment; a deleted one stays gone), and the nodes stay.
                Err(error) => {
                    if !unreadable {
                        tracing::warn!(cap = "backend", file = %path.display(), %error, "BACKENDS_FILE cannot be read; the nodes stay as they were");
                    }
                    unreadable = true;
                    continue;
                }
            };
            unreadable = false;
            if text == seen {
                continue;
            }
            seen = text;
            match parse(&seen).and_then(|specs| pool.replace(specs)) {
                Ok(()) => {
                    tracing::info!(cap = "backend", file = %path.display(), "BACKENDS_FILE changed: nodes replaced")
                }
                Err(error) => {
                    tracing::warn!(cap = "backend", file = %path.display(), %error, "BACKENDS_FILE refused; the nodes stay as they were")
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::backend::pool::node::Protocol;

    #[test]
    fn the_documented_example_parses_and_defaults_apply() {
        let example: String = include_str!("file.rs")
            .lines()
            .skip_while(|line| !line.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|line| !line.starts_with("//! ```"))
            .map(|line| format!("{}\n", line.trim_start_matches("//!").trim()))
            .collect();
        let specs = parse(&example).unwrap();
        assert_eq!((specs[0].slots, specs[0].weight, specs[0].protocol), (4, 2, Protocol::Ollama));
        let minimal = parse("[[node]]\nurl = \"http://a:1\"").unwrap();
        assert_eq!((minimal[0].slots, minimal[0].weight, minimal[0].priority), (1, 1, 0));
        assert_eq!(minimal[0].models, None);
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        for bad in [
            "",
            "[[node]]\nurl = 5",
            "[[node]]\nurl = \"http://a:1\"\nslot = 2",
            "[[node]]\nurl = \"http://a:1\"\nprotocol = \"grpc\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
