//! Fixtures for llm-service's integration tests: [`Service`] starts the real
//! binary on 127.0.0.1 with a free port, reads back the address it logs, and
//! kills it on drop; [`Client`] talks HTTP to it without treating 4xx/5xx as
//! errors; [`fake_ollama::FakeOllama`] stands in for Ollama. Waiting is
//! always for an event under a deadline, never a sleep.

pub mod clients;
pub mod fake_ollama;
pub mod keys;
pub mod ndjson;
pub mod otlp;
pub mod pool;
pub mod redis_cluster;
pub mod redis_server;
pub mod small_model;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the service may take to compile its component and listen.
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// The only variables a test's service inherits from the shell running the
/// tests; everything else it gets is what the test sets, so a developer's
/// BACKEND_BASE_URL or ADMIN_TOKEN never reaches a test.
pub const INHERITED_VARIABLES: &[&str] = &["PATH", "HOME", "RUST_LOG"];

/// The log lines a running service has written (stderr, JSON).
#[derive(Default)]
struct LogBook {
    lines: Mutex<Vec<serde_json::Value>>,
    changed: Condvar,
}

/// A running `llm-service` process.
pub struct Service {
    child: Child,
    addr: SocketAddr,
    logs: Arc<LogBook>,
}

/// How to start a [`Service`].
pub struct ServiceBuilder {
    command: Command,
}

impl Service {
    /// A builder for the binary at `binary` (pass `env!("CARGO_BIN_EXE_llm-service")`).
    pub fn builder(binary: impl AsRef<Path>) -> ServiceBuilder {
        let mut command = Command::new(binary.as_ref());
        command.env_clear();
        for variable in INHERITED_VARIABLES {
            if let Some(value) = std::env::var_os(variable) {
                command.env(variable, value);
            }
        }
        command
            .env("LLM_SERVICE_PORT", "0")
            .env("LLM_SERVICE_BIND", "127.0.0.1")
            .env("ADMIN_PORT", "0")
            .env("ADMIN_BIND", "127.0.0.1")
            .env("COMPILED_CACHE_DIR", fresh_directory())
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        ServiceBuilder { command }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:ADMIN_PORT` + `path`, from the admin API's start-up line.
    pub fn admin_url(&self, path: &str) -> String {
        let line = self.wait_for_log(Duration::from_secs(5), |line| line["message"] == "admin API listening");
        format!("http://{}{path}", line["addr"].as_str().expect("addr field"))
    }

    /// Calls the admin API with `Authorization: Bearer token`.
    pub fn admin(&self, token: &str, method: &str, path: &str, body: &[u8]) -> Reply {
        let authorization = format!("Bearer {token}");
        Client::new().send_with_headers(
            method,
            &self.admin_url(path),
            &[("authorization", &authorization)],
            body,
        )
    }

    /// The address the service listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// POST /generate with `body`.
    pub fn generate(&self, body: &serde_json::Value) -> Reply {
        Client::new().send("POST", &self.url("/generate"), body.to_string().as_bytes())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|status| status.success()), "kill -TERM failed");
    }

    /// Kills the process at once (SIGKILL): no drain, no goodbye.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill -KILL llm-service");
        self.child.wait().expect("waiting for the killed llm-service");
    }

    /// Waits for the process to exit, up to `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for llm-service") {
                return status;
            }
            assert!(Instant::now() < until, "llm-service did not exit within {deadline:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until a log line satisfies `matches`, up to `deadline`, and returns it.
    pub fn wait_for_log(
        &self,
        deadline: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_for_log(&self.logs, deadline, matches)
            .unwrap_or_else(|| panic!("no matching log line within {deadline:?}; logs: {:#?}", self.logs()))
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs.lines.lock().unwrap().clone()
    }
}

impl ServiceBuilder {
    /// Sets an environment variable for the service.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    /// Sets each of `pairs` as an environment variable for the service.
    pub fn envs(mut self, pairs: &[(&str, &str)]) -> Self {
        for (key, value) in pairs {
            self.command.env(key, value);
        }
        self
    }

    /// Serves the component at `path` instead of the built-in handler.
    pub fn component(mut self, path: &str) -> Self {
        self.command.args(["--component", path]);
        self
    }

    /// Runs the service with at most `limit` open files (RLIMIT_NOFILE).
    pub fn open_files_limit(mut self, limit: u64) -> Self {
        use std::os::unix::process::CommandExt;
        let limit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
        // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
        unsafe {
            self.command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        self
    }

    /// Starts the process and waits until it listens.
    pub fn start(mut self) -> Service {
        let mut child = self.command.spawn().expect("spawning llm-service");
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(LogBook::default());
        std::thread::spawn({
            let logs = logs.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let value = serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
                    logs.lines.lock().unwrap().push(value);
                    logs.changed.notify_all();
                }
            }
        });
        let listening =
            wait_for_log(&logs, START_DEADLINE, |line| line["message"] == "llm-service listening");
        let Some(listening) = listening else {
            let _ = child.kill();
            panic!("llm-service did not start; logs: {:#?}", logs.lines.lock().unwrap());
        };
        let addr = listening["addr"].as_str().expect("addr field").parse().expect("addr parses");
        Service { child, addr, logs }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of the component at `component`, in `dir`, with a custom section
/// named after `label` appended: a valid component that behaves the same
/// under another sha256, i.e. another version.
pub fn component_variant(component: &str, dir: &Path, label: &str) -> std::path::PathBuf {
    let mut bytes = std::fs::read(component).unwrap();
    let name = format!("llm-service-test-{label}");
    let size = 1 + name.len() + label.len();
    assert!(size < 128, "one-byte LEB128 lengths");
    bytes.extend([0, size as u8, name.len() as u8]);
    bytes.extend(name.as_bytes());
    bytes.extend(label.as_bytes());
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{label}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A directory no other test uses (for the compiled-component cache).
pub fn fresh_directory() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("llm-service-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let dir = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn wait_for_log(
    logs: &LogBook,
    deadline: Duration,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let until = Instant::now() + deadline;
    let mut lines = logs.lines.lock().unwrap();
    loop {
        if let Some(found) = lines.iter().find(|line| matches(line)) {
            return Some(found.clone());
        }
        let left = until.checked_duration_since(Instant::now())?;
        lines = logs.changed.wait_timeout(lines, left).unwrap().0;
    }
}

/// A finished HTTP exchange.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Response headers, names lower case.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl Reply {
    /// The body parsed as JSON (panics with the body if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// An HTTP client that returns every status as a [`Reply`].
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// A client with a 60 s overall timeout per call.
    pub fn new() -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self { agent }
    }

    /// GET `url`, again while it answers 503 (the in-flight limit), until
    /// it is admitted: tests that fill the service's slots use it so their
    /// own probes cannot crowd out the requests that are meant to fill them.
    pub fn get_admitted(&self, url: &str) -> Reply {
        loop {
            let reply = self.get(url);
            if reply.status != 503 {
                return reply;
            }
        }
    }

    /// GET `url`; a transport failure is an `Err` instead of a panic.
    pub fn try_get(&self, url: &str) -> Result<Reply, String> {
        self.agent.get(url).call().map(reply).map_err(|error| error.to_string())
    }

    /// GET `url`.
    pub fn get(&self, url: &str) -> Reply {
        reply(self.agent.get(url).call().unwrap_or_else(|error| panic!("GET {url}: {error}")))
    }

    /// `count` identical POSTs of `body` to `url` at once, each from a
    /// client of its own; their replies, in order.
    pub fn post_concurrently(count: usize, url: &str, body: &str) -> Vec<Reply> {
        let threads: Vec<_> = (0..count)
            .map(|_| {
                let (url, body) = (url.to_string(), body.to_string());
                std::thread::spawn(move || Client::new().send("POST", &url, body.as_bytes()))
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().expect("a sender panicked")).collect()
    }

    /// `method` `url` with `body` (sent with a Content-Length).
    pub fn send(&self, method: &str, url: &str, body: &[u8]) -> Reply {
        self.send_with_headers(method, url, &[], body)
    }

    /// `method` `url` with `body`; a transport failure (no answer at all)
    /// is an `Err` instead of a panic.
    pub fn try_send(&self, method: &str, url: &str, body: &[u8]) -> Result<Reply, String> {
        let request = ureq::http::Request::builder().method(method).uri(url).body(body.to_vec()).unwrap();
        self.agent.run(request).map(reply).map_err(|error| error.to_string())
    }

    /// `method` `url` with extra `headers` and `body`.
    pub fn send_with_headers(&self, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body.to_vec()).unwrap();
        reply(self.agent.run(request).unwrap_or_else(|error| panic!("{method} {url}: {error}")))
    }

    /// POST `url` with `body` sent chunked (no Content-Length).
    pub fn post_chunked(&self, url: &str, body: &[u8]) -> Reply {
        let mut reader = body;
        let response = self
            .agent
            .post(url)
            .send(ureq::SendBody::from_reader(&mut reader))
            .unwrap_or_else(|error| panic!("POST {url}: {error}"));
        reply(response)
    }
}

fn reply(mut response: ureq::http::Response<ureq::Body>) -> Reply {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), value.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Reply { status, headers, body }
}
