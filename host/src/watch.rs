//! Watch mode: with COMPONENTS_DIR set, a new or changed `handler.wasm` in
//! that directory goes through the same [`HandlerInstaller`] as an upload.
//!
//! Changes are debounced: the file is read once it has been quiet for
//! [`SETTLE`] and its size is the same on two looks, so a file still being
//! written is not read (and one that is read half-written fails to compile
//! and is refused; the serving version stays). A file whose sha256 is the
//! serving version's is left alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::runtime::installer::HandlerInstaller;

/// The file watched in COMPONENTS_DIR.
pub const HANDLER_FILE: &str = "handler.wasm";
/// Quiet time before a changed file is read.
pub const SETTLE: Duration = Duration::from_millis(300);

/// Keeps the watch alive; dropping it stops watching.
pub struct DirectoryWatch {
    _watcher: notify::RecommendedWatcher,
    _task: tokio::task::JoinHandle<()>,
}

/// Starts watching `dir` for `handler.wasm`.
pub fn start(dir: &Path, installer: Arc<HandlerInstaller>) -> notify::Result<DirectoryWatch> {
    let (changed, mut changes) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event.paths.iter().any(|path| path.file_name().is_some_and(|name| name == HANDLER_FILE))
        {
            let _ = changed.send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let file = dir.join(HANDLER_FILE);
    tracing::info!(dir = %dir.display(), "watching for {HANDLER_FILE}");
    let task = tokio::spawn(async move {
        while changes.recv().await.is_some() {
            // Let the writer finish: wait until nothing happens for SETTLE.
            while let Ok(Some(())) = tokio::time::timeout(SETTLE, changes.recv()).await {}
            if let Some(bytes) = settled_contents(&file).await {
                install(&installer, &file, bytes).await;
            }
        }
    });
    Ok(DirectoryWatch { _watcher: watcher, _task: task })
}

/// The file's bytes once its size holds still across [`SETTLE`].
async fn settled_contents(file: &PathBuf) -> Option<Bytes> {
    loop {
        let before = tokio::fs::metadata(file).await.ok()?.len();
        tokio::time::sleep(SETTLE).await;
        let after = tokio::fs::metadata(file).await.ok()?.len();
        if before == after {
            return tokio::fs::read(file).await.ok().map(Bytes::from);
        }
    }
}

async fn install(installer: &HandlerInstaller, file: &Path, bytes: Bytes) {
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if installer.versions().current().component.sha256() == sha256 {
        return;
    }
    let source = format!("watch: {}", file.display());
    match installer.push(bytes, &source).await {
        Ok(version) => tracing::info!(number = version.number, %sha256, "watched handler installed"),
        Err(error) => {
            tracing::warn!(%error, file = %file.display(), "watched handler refused; the serving version stays")
        }
    }
}
