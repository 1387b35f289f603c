//! The real small model: SmolLM2-135M-Instruct behind llama.cpp's
//! OpenAI-compatible server (`scripts/smollm2_server.py`), started on a free
//! port and killed on drop. The Python environment comes from
//! `scripts/python-env.sh` (the test command runs it); its interpreter is
//! `LLM_SERVICE_TEST_PYTHON`, or `.venv/bin/python` in the repository.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Loading a 135M model takes well under a second; this allows a slow disk.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A running model server.
pub struct SmallModel {
    child: Child,
    url: String,
}

impl SmallModel {
    /// Starts the server and waits until it listens.
    pub fn start() -> Self {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = std::env::var_os("LLM_SERVICE_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(".venv/bin/python"));
        assert!(
            python.exists(),
            "no Python environment with the small model at {}: run scripts/python-env.sh (scripts/test.sh does)",
            python.display()
        );
        let mut child = Command::new(&python)
            .arg(repo.join("scripts/smollm2_server.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the small model server");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening ") {
                    let _ = sender.send(url.to_string());
                }
            }
        });
        match receiver.recv_timeout(START_DEADLINE) {
            Ok(url) => Self { child, url },
            Err(_) => {
                let _ = child.kill();
                panic!("the small model server did not listen within {START_DEADLINE:?}");
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The service `binary` with this server as its OpenAI-compatible
    /// backend and its model as the current one.
    pub fn gateway(&self, binary: &str) -> crate::ServiceBuilder {
        crate::Service::builder(binary)
            .env("BACKEND_KIND", "openai")
            .env("BACKEND_BASE_URL", self.url())
            .env("OLLAMA_MODEL", SMALL_MODEL_NAME)
    }
}

/// The name the server lists its model under.
pub const SMALL_MODEL_NAME: &str = "smollm2-135m-instruct";

impl Drop for SmallModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
