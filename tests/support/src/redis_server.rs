//! A real `redis-server` (the KeyDB stand-in) on a free loopback port, with
//! nothing persisted; killed on drop. Tests kill and restart it to check how
//! the service rides out an outage.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long redis-server may take to answer PING after starting.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// A cluster node's bus listens 10000 ports above it, so its own port must
/// be at most this (redis-server refuses to start otherwise).
const HIGHEST_CLUSTER_PORT: u16 = 55_535;

/// A running redis-server.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts redis-server with `extra` arguments too (cluster mode, say).
    pub fn start_with(extra: &[&str]) -> Self {
        let highest = if extra.contains(&"--cluster-enabled") { HIGHEST_CLUSTER_PORT } else { u16::MAX };
        let port = loop {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            if port <= highest {
                break port;
            }
        };
        let mut server = Self { port, child: None, extra: extra.iter().map(|arg| arg.to_string()).collect() };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): an outage, not a shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its connections and answers
    /// nothing, as a hung server does. [`resume`](Self::resume) thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let until = Instant::now() + START_DEADLINE;
        while !self.answers_ping() {
            if let Some(exited) = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                panic!("redis-server on port {} exited at start: {exited}", self.port);
            }
            assert!(Instant::now() < until, "redis-server did not answer PING within {START_DEADLINE:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one command (inline protocol) and returns the raw reply.
    pub fn command(&self, line: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("redis-server is up");
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut reply = vec![0u8; 64 * 1024];
        let read = stream.read(&mut reply).unwrap_or(0);
        String::from_utf8_lossy(&reply[..read]).into_owned()
    }

    /// How many keys the server holds.
    pub fn key_count(&self) -> usize {
        let reply = self.command("DBSIZE");
        reply.trim().trim_start_matches(':').parse().unwrap_or_else(|_| panic!("DBSIZE said {reply:?}"))
    }

    /// How many cached answers (`llm_response:` keys) the server holds; the
    /// service's other keys (its event stream, the fleet's model) are not.
    pub fn answer_count(&self) -> usize {
        // KEYS is fine on a test's handful of keys; the reply starts "*N".
        let reply = self.command("KEYS llm_response:*");
        let count = reply.lines().next().unwrap_or_default().trim_start_matches('*');
        count.parse().unwrap_or_else(|_| panic!("KEYS said {reply:?}"))
    }

    fn answers_ping(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.command("PING").starts_with("+PONG")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
