//! The service under test, as an operator runs it: the release binary, its
//! log going to a file (so the bench does not pay for reading it), ready
//! when `GET /health` answers.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start may take before the bench gives up.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A running llm-service; killed when dropped.
pub struct ServiceProcess {
    child: Child,
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// Its admin address (when ADMIN_TOKEN is among the settings).
    pub admin_addr: SocketAddr,
    /// From spawning to the first 200 on /health.
    pub ready_after: Duration,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ServiceProcess {
    /// Starts `binary` with `settings` and waits for its first 200 on
    /// /health. The log goes to `log`.
    pub fn start(binary: &Path, settings: &[(&str, String)], log: &Path) -> anyhow::Result<Self> {
        let (port, admin_port) = (free_port()?, free_port()?);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let admin_addr = SocketAddr::from(([127, 0, 0, 1], admin_port));
        let mut command = Command::new(binary);
        // Only what the row sets: a shell's BACKEND_BASE_URL must not steer the bench.
        command.env_clear();
        for inherited in llm_service_test_support::INHERITED_VARIABLES {
            if let Some(value) = std::env::var_os(inherited) {
                command.env(inherited, value);
            }
        }
        command
            .env("LLM_SERVICE_PORT", port.to_string())
            .env("LLM_SERVICE_BIND", "127.0.0.1")
            .env("ADMIN_PORT", admin_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?);
        for (key, value) in settings {
            command.env(key, value);
        }
        let spawned = Instant::now();
        let mut child = command.spawn()?;
        loop {
            if health_is_ok(addr) {
                return Ok(Self { child, addr, admin_addr, ready_after: spawned.elapsed() });
            }
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("llm-service exited with {status} before answering; see {}", log.display());
            }
            if spawned.elapsed() > START_DEADLINE {
                let _ = child.kill();
                anyhow::bail!("llm-service did not answer /health within {START_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl ServiceProcess {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (up to a minute) for the exit.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(Instant::now() < until, "llm-service did not exit within a minute of SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether `GET /health` answers 200 right now.
fn health_is_ok(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of its own under the system's temporary directory, private
/// to this user (0700): the service keeps compiled components only in a
/// directory nobody else can write, and turns its cache off otherwise.
pub fn scratch_directory(name: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("llm-service-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    Ok(dir)
}
