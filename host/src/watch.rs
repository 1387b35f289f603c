//! Watch mode. With COMPONENTS_DIR set, a new or changed `handler.wasm` in
//! that directory goes through the same [`HandlerInstaller`] as an upload.
//! With PLUGINS_DIR set, every `*.wasm` there is a prompt plugin: all are
//! loaded at start, and a new, changed or deleted file loads, reloads or
//! unloads its plugin through the same path as the admin API.
//!
//! Changes are debounced: files are read once the directory has been quiet
//! for [`SETTLE`] and a file's size is the same on two looks, so a file
//! still being written is not read (and one that is read half-written fails
//! to compile and is refused; the serving version stays). A file whose
//! sha256 is already serving is left alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::caps::plugins::PromptPlugins;
use crate::guest::compiled::sha256_hex;
use crate::runtime::installer::HandlerInstaller;

/// The file watched in COMPONENTS_DIR.
pub const HANDLER_FILE: &str = "handler.wasm";
/// Quiet time before a changed file is read.
pub const SETTLE: Duration = Duration::from_millis(300);

/// Keeps a watch alive; dropping it stops watching.
pub struct DirectoryWatch {
    _watcher: notify::RecommendedWatcher,
    _task: tokio::task::JoinHandle<()>,
}

/// Changes in `dir` to files `relevant` picks, as a channel of wake-ups.
fn changes_in(
    dir: &Path,
    relevant: fn(&Path) -> bool,
) -> notify::Result<(notify::RecommendedWatcher, mpsc::UnboundedReceiver<()>)> {
    let (changed, changes) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event.paths.iter().any(|path| relevant(path))
        {
            let _ = changed.send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok((watcher, changes))
}

/// Waits for the next burst of changes to end (nothing for [`SETTLE`]);
/// false once the watcher is gone.
async fn next_quiet(changes: &mut mpsc::UnboundedReceiver<()>) -> bool {
    if changes.recv().await.is_none() {
        return false;
    }
    while let Ok(Some(())) = tokio::time::timeout(SETTLE, changes.recv()).await {}
    true
}

/// The file's bytes once its size holds still across [`SETTLE`].
async fn settled_contents(file: &Path) -> Option<Bytes> {
    loop {
        let before = tokio::fs::metadata(file).await.ok()?.len();
        tokio::time::sleep(SETTLE).await;
        let after = tokio::fs::metadata(file).await.ok()?.len();
        if before == after {
            return tokio::fs::read(file).await.ok().map(Bytes::from);
        }
    }
}

/// Starts watching `dir` for `handler.wasm`.
pub fn start(dir: &Path, installer: Arc<HandlerInstaller>) -> notify::Result<DirectoryWatch> {
    let (watcher, mut changes) =
        changes_in(dir, |path| path.file_name().is_some_and(|name| name == HANDLER_FILE))?;
    let file = dir.join(HANDLER_FILE);
    tracing::info!(dir = %dir.display(), "watching for {HANDLER_FILE}");
    let task = tokio::spawn(async move {
        while next_quiet(&mut changes).await {
            if let Some(bytes) = settled_contents(&file).await {
                install(&installer, &file, bytes).await;
            }
        }
    });
    Ok(DirectoryWatch { _watcher: watcher, _task: task })
}

async fn install(installer: &HandlerInstaller, file: &Path, bytes: Bytes) {
    let sha256 = sha256_hex(&bytes);
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

fn is_wasm(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "wasm")
}

/// What PLUGINS_DIR has loaded: per file, the sha256 read and the plugin
/// name it loaded as.
struct PluginDirectory {
    dir: PathBuf,
    plugins: Arc<PromptPlugins>,
    loaded: HashMap<PathBuf, (String, String)>,
}

impl PluginDirectory {
    /// Brings the plugins in line with the directory. At start files are
    /// read at once; after a change, once they hold still.
    async fn sync(&mut self, settle: bool) {
        let mut present = Vec::new();
        if let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                if is_wasm(&entry.path()) {
                    present.push(entry.path());
                }
            }
        }
        present.sort();
        for file in &present {
            let bytes = if settle {
                settled_contents(file).await
            } else {
                tokio::fs::read(file).await.ok().map(Bytes::from)
            };
            if let Some(bytes) = bytes {
                self.load(file, bytes).await;
            }
        }
        let gone: Vec<PathBuf> = self.loaded.keys().filter(|file| !present.contains(file)).cloned().collect();
        for file in gone {
            if let Some((sha256, name)) = self.loaded.remove(&file) {
                self.unload_if_serving(&name, &sha256, &file);
            }
        }
    }

    async fn load(&mut self, file: &Path, bytes: Bytes) {
        let sha256 = sha256_hex(&bytes);
        if self.loaded.get(file).is_some_and(|(loaded, _)| *loaded == sha256) {
            return;
        }
        match self.plugins.push(bytes, &format!("watch: {}", file.display())).await {
            Ok(installed) => {
                let name = installed.plugin.manifest().name.clone();
                if let Some((old_sha256, old_name)) =
                    self.loaded.insert(file.to_path_buf(), (sha256, name.clone()))
                    && old_name != name
                {
                    self.unload_if_serving(&old_name, &old_sha256, file);
                }
            }
            Err(error) => {
                tracing::warn!(%error, file = %file.display(), "watched plugin refused; what served stays")
            }
        }
    }

    /// Unloads `name` if the version serving is the one `file` loaded (an
    /// upload through the admin API since then stays).
    fn unload_if_serving(&self, name: &str, sha256: &str, file: &Path) {
        let serving = self
            .plugins
            .list()
            .iter()
            .any(|plugin| plugin.manifest().name == name && plugin.sha256() == sha256);
        if serving {
            tracing::info!(plugin = name, file = %file.display(), "plugin file gone; unloading");
            self.plugins.remove(name);
        }
    }
}

/// Loads every plugin in `dir`, then keeps watching it.
pub async fn start_plugins(dir: &Path, plugins: Arc<PromptPlugins>) -> notify::Result<DirectoryWatch> {
    let (watcher, mut changes) = changes_in(dir, is_wasm)?;
    let mut directory = PluginDirectory { dir: dir.to_path_buf(), plugins, loaded: HashMap::new() };
    directory.sync(false).await;
    tracing::info!(dir = %dir.display(), plugins = directory.loaded.len(), "watching for plugins");
    let task = tokio::spawn(async move {
        while next_quiet(&mut changes).await {
            directory.sync(true).await;
        }
    });
    Ok(DirectoryWatch { _watcher: watcher, _task: task })
}
