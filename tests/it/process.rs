//! The real `berth` binary as a child process, for the tests that stop, kill or restart
//! it (`ops.rs`, `ops_disable.rs`, `delivery.rs`, `scale.rs`), and a fresh database for
//! each such test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;

use crate::helpers::{ADMIN_TOKEN, Backend, PgDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
/// The same key on every start, so a copy of the database (or a restart) opens with it.
pub const KEY: &str = "00000000000000000000000000000000000000000000000000000000000000a1";

/// `berth serve` as a child process, with its log lines collected.
pub struct Server {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `berth serve` on `data_dir` (and `database_url` when given) with `envs` on top
    /// of test defaults, and waits until it listens.
    pub async fn start(
        data_dir: &std::path::Path,
        database_url: Option<&str>,
        envs: &[(&str, &str)],
    ) -> Server {
        Server::start_with(data_dir, database_url, &[], envs).await
    }

    /// As `start`, with `args` after `serve` (e.g. `--role worker`).
    pub async fn start_with(
        data_dir: &std::path::Path,
        database_url: Option<&str>,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Server {
        Server::spawn(data_dir, database_url, args, envs, None).await
    }

    /// As `start` on SQLite, with the child's soft open-file limit set to `nofile` (its hard
    /// limit left as it is), as a default systemd unit or login shell would give it.
    pub async fn start_with_nofile(
        data_dir: &std::path::Path,
        nofile: u64,
        envs: &[(&str, &str)],
    ) -> Server {
        Server::spawn(data_dir, None, &[], envs, Some(nofile)).await
    }

    async fn spawn(
        data_dir: &std::path::Path,
        database_url: Option<&str>,
        args: &[&str],
        envs: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir);
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        cmd.env_remove("BERTH_DATABASE_URL")
            .env_remove("BERTH_CONFIG")
            .env("BERTH_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("BERTH_SECRET_KEY", KEY)
            .env("BERTH_ALLOWED_TARGET_CIDRS", "127.0.0.0/8")
            .env("BERTH_DELIVERY_POLL_INTERVAL", "100ms")
            .env("BERTH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if let Some(soft) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the forked child before exec and makes only the
            // getrlimit and setrlimit system calls (async-signal-safe); it allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
                    let hard = getrlimit(Resource::Nofile).maximum;
                    setrlimit(
                        Resource::Nofile,
                        Rlimit {
                            current: Some(soft),
                            maximum: hard,
                        },
                    )
                    .map_err(std::io::Error::from)
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn berth");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // Keep draining so the server never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = berth::app::listening_url(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(url.to_owned());
                }
                lines.lock().expect("log lock").push(line);
            }
        });
        let base = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("berth did not start within 60 s")
            .expect("berth exited before listening");
        Server {
            child,
            base,
            client: reqwest::Client::new(),
            log,
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await.expect("body");
        Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            retry_after,
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let a = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(
            a.status == 200 || a.status == 201,
            "POST {path}: {} {}",
            a.status,
            a.body
        );
        a.body
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGSTOP: the process freezes where it is (a stall, a long GC-like pause), its
    /// sockets and leases still open, until [`Server::resume`].
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Sends SIGCONT to a paused process.
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), signal)
            .expect("signal the server");
    }

    /// Waits until a log line contains `needle` (panics after `timeout`); answers it.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with `{needle}` within {timeout:?}:\n{}",
                self.log().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "berth did not exit within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
}

/// A fresh database for one test: a data directory, and on PostgreSQL a database of its own.
pub struct Db {
    pub dir: tempfile::TempDir,
    pub pg: Option<PgDatabase>,
}

impl Db {
    pub async fn new(backend: Backend) -> Db {
        berth::init_crypto();
        Db {
            dir: tempfile::tempdir().expect("temp dir"),
            pg: match backend {
                Backend::Sqlite => None,
                Backend::Postgres => Some(PgDatabase::create().await),
            },
        }
    }

    pub fn url(&self) -> Option<&str> {
        self.pg.as_ref().map(|p| p.url.as_str())
    }

    /// A direct connection, for checks the API cannot make (leases, attempt rows).
    pub async fn connect(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        let url = match &self.pg {
            Some(pg) => pg.url.clone(),
            None => format!("sqlite://{}", self.dir.path().join("berth.db").display()),
        };
        sqlx::AnyConnection::connect(&url)
            .await
            .expect("connect to the test database")
    }
}
