//! Shared helpers of the node's integration tests: start the real `rayltics`
//! binary on port 0 ([`Node`]), and talk raw HTTP/1.1 to it over TCP
//! ([`Conn`], [`Resp`], [`parse_responses`]).
//!
//! One suite, two stores: with `RAYLTICS_TEST_STORAGE=postgres` every node
//! runs with `storage = "postgres"` on `RAYLTICS_TEST_PG_URL`, in a schema
//! of its own that is derived from (and kept in) its data directory, so a
//! node restarted on the same data directory finds its state again
//! ([`NodeBuilder::postgres`] asks for it in one test).
//!
//! [`api`] adds a JSON client of the REST API.
//!
//! Every test file is its own crate and uses a different subset of these
//! (hence `dead_code`); `pub` marks the module's interface for those files.
#![allow(dead_code, unreachable_pub)]

pub mod api;
pub mod ws;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The admin that [`NodeBuilder::commerce`] bootstraps.
pub const ADMIN_EMAIL: &str = "admin@rayltics.test";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// How long a node may take to print its `listening` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Default wait for any single answer from the node.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The `rayltics` binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_rayltics")
}

/// A fresh, unique, not-yet-created directory under the system temp dir.
pub fn unique_temp_path(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    std::env::temp_dir().join(format!(
        "rayltics-test-{what}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A `rayltics` command with a clean `RAYLTICS_*` environment (the caller's
/// own settings must not leak into a test), piped output, and a kill when the
/// test process dies.
pub fn command() -> Command {
    let mut cmd = Command::new(binary());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RAYLTICS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    kill_with_parent(&mut cmd);
    cmd
}

/// How to start a [`Node`].
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    shards: usize,
    env: Vec<(String, String)>,
    args: Vec<String>,
    data_dir: Option<PathBuf>,
    postgres: bool,
}

/// The PostgreSQL server of the tests (`infra/local/up.sh pg`, then
/// `. $RAYLTICS_INFRA_DIR/env.sh`).
pub fn test_pg_url() -> Option<String> {
    std::env::var("RAYLTICS_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Whether this run puts every node on PostgreSQL
/// (`RAYLTICS_TEST_STORAGE=postgres`).
pub fn storage_is_postgres() -> bool {
    std::env::var("RAYLTICS_TEST_STORAGE").is_ok_and(|s| s == "postgres")
}

/// File in a test node's data directory naming its PostgreSQL schema.
const PG_SCHEMA_FILE: &str = "test-pg-schema";

/// The schema of the node on `data_dir`: the one recorded there, or a new
/// unique one (recorded for a restart on the same directory).
fn pg_schema_for(data_dir: &Path) -> String {
    let file = data_dir.join(PG_SCHEMA_FILE);
    if let Ok(name) = std::fs::read_to_string(&file) {
        return name.trim().to_owned();
    }
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let name = format!(
        "t_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    std::fs::create_dir_all(data_dir).expect("create the node's data dir");
    std::fs::write(&file, &name).expect("record the node's schema");
    name
}

/// Drops a test schema (best effort, bounded: `psql` with a lock timeout).
pub fn drop_pg_schema(url: &str, schema: &str) {
    let _ = Command::new("psql")
        .args(["-q", "-X", "-v", "ON_ERROR_STOP=1", url, "-c"])
        .arg(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .env("PGOPTIONS", "-c lock_timeout=2000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl NodeBuilder {
    /// Runs with `storage = "postgres"` on `RAYLTICS_TEST_PG_URL` whatever
    /// `RAYLTICS_TEST_STORAGE` says (panics without a server).
    pub fn postgres(mut self) -> Self {
        self.postgres = true;
        self
    }

    /// Shard threads (`--shards`); default 2.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// An extra environment variable, e.g. `RAYLTICS_HTTP__MAX_HEADERS`.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// An extra `serve` argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs on `dir` (e.g. a restart on a killed node's data) and leaves it
    /// in place on drop; default: a fresh temp dir removed on drop.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// The commerce test set-up: an admin (`ADMIN_EMAIL` / `ADMIN_PASSWORD`)
    /// and cheap argon2 parameters (tests hash many passwords).
    pub fn commerce(self) -> Self {
        self.env("RAYLTICS_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("RAYLTICS_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RAYLTICS_COMMERCE__ARGON2_MEMORY_KIB", 64)
            .env("RAYLTICS_COMMERCE__ARGON2_ITERATIONS", 1)
            .env("RAYLTICS_COMMERCE__LOGIN_BURST", 1000)
    }

    /// Spawns the binary and waits for its `listening` line.
    pub fn start(self) -> Node {
        let keep_data = self.data_dir.is_some();
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| unique_temp_path("data"));
        let mut cmd = command();
        cmd.arg("serve")
            .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
            .args(["--shards", &self.shards.to_string()])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&self.args);
        let chose_storage = self.env.iter().any(|(k, _)| k == "RAYLTICS_STORAGE");
        let mut pg = None;
        if self.postgres || (storage_is_postgres() && !chose_storage) {
            let url = test_pg_url().expect(
                "a postgres node needs RAYLTICS_TEST_PG_URL (infra/local/up.sh pg, then . \
                 $RAYLTICS_INFRA_DIR/env.sh)",
            );
            let schema = pg_schema_for(&data_dir);
            cmd.env("RAYLTICS_STORAGE", "postgres")
                .env("RAYLTICS_POSTGRES__URL", &url)
                .env("RAYLTICS_POSTGRES__SCHEMA", &schema);
            pg = Some((url, schema));
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("spawn the rayltics binary");

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        let (line_tx, line_rx) = mpsc::channel();
        let mut out_pipe = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut chunk = [0u8; 1024];
            let mut sent = false;
            while let Ok(n) = out_pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&chunk[..n]);
                if !sent && let Some(end) = all.iter().position(|b| *b == b'\n') {
                    let _ = line_tx.send(String::from_utf8_lossy(&all[..end]).into_owned());
                    sent = true;
                }
            }
        });

        let mut node = Node {
            child,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            shards: 0,
            stderr,
            data_dir,
            keep_data,
            pg,
        };
        let line = match line_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let status = node.child.try_wait().ok().flatten();
                panic!(
                    "rayltics did not print its listening line within {START_TIMEOUT:?} \
                     ({e}; exit status {status:?})\n--- stderr tail ---\n{}",
                    node.stderr_tail()
                );
            }
        };
        let parsed = parse_listening_line(&line);
        let Some((http, grpc, shards)) = parsed else {
            panic!(
                "unexpected first stdout line {line:?}\n--- stderr tail ---\n{}",
                node.stderr_tail()
            );
        };
        node.http = http;
        node.grpc = grpc;
        node.shards = shards;
        node
    }
}

/// `rayltics listening http=HOST:PORT grpc=HOST:PORT shards=N`.
fn parse_listening_line(line: &str) -> Option<(SocketAddr, SocketAddr, usize)> {
    let rest = line.strip_prefix("rayltics listening ")?;
    let mut parts = rest.split(' ');
    let http = parts.next()?.strip_prefix("http=")?.parse().ok()?;
    let grpc = parts.next()?.strip_prefix("grpc=")?.parse().ok()?;
    let shards = parts.next()?.strip_prefix("shards=")?.parse().ok()?;
    parts.next().is_none().then_some((http, grpc, shards))
}

/// Kills the child if the thread that spawned it dies (e.g. the test run is
/// interrupted), so no node outlives the tests. The spawning thread is the
/// test's own thread, which outlives the [`Node`].
fn kill_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs in the hook.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A running `rayltics serve` child process, killed on drop.
#[derive(Debug)]
pub struct Node {
    child: Child,
    /// The bound HTTP address.
    pub http: SocketAddr,
    /// The bound gRPC address.
    pub grpc: SocketAddr,
    /// Shards it reported.
    pub shards: usize,
    stderr: Arc<Mutex<Vec<u8>>>,
    data_dir: PathBuf,
    keep_data: bool,
    /// `(url, schema)` when the node runs on PostgreSQL.
    pg: Option<(String, String)>,
}

impl Node {
    /// Options for a node with 2 shards and default limits.
    pub fn builder() -> NodeBuilder {
        NodeBuilder {
            shards: 2,
            env: Vec::new(),
            args: Vec::new(),
            data_dir: None,
            postgres: false,
        }
    }

    /// A node with 2 shards and default limits.
    pub fn start() -> Node {
        Self::builder().start()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `(url, schema)` of its PostgreSQL store, if it runs on one.
    pub fn postgres(&self) -> Option<(&str, &str)> {
        self.pg.as_ref().map(|(u, s)| (u.as_str(), s.as_str()))
    }

    /// `http://127.0.0.1:PORT` of the gRPC listener.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Sends SIGTERM (graceful drain).
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `signal` to the node.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit; panics (with the stderr tail) if it
    /// is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "rayltics (pid {}) still running {timeout:?} after the wait began\n\
                     --- stderr tail ---\n{}",
                    self.pid(),
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the node logged to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The last few KiB of stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let all = self.stderr();
        let mut start = all.len().saturating_sub(4000);
        while !all.is_char_boundary(start) {
            start += 1;
        }
        all[start..].to_owned()
    }

    /// A new raw-TCP connection to the HTTP port.
    pub fn connect(&self) -> Conn {
        Conn::open(self.http)
    }

    /// One `GET path` on a fresh connection.
    pub fn get(&self, path: &str) -> Resp {
        self.connect().request(&get(path))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
            if let Some((url, schema)) = &self.pg {
                drop_pg_schema(url, schema);
            }
        }
    }
}

/// Runs `rayltics` to completion with `args` and `env` (for commands that
/// must exit, like a rejected configuration); kills it after `timeout`.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> RunOutput {
    let mut cmd = command();
    cmd.args(args).envs(env.iter().copied());
    let mut child = cmd.spawn().expect("spawn the rayltics binary");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rayltics {args:?} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    RunOutput {
        status,
        stdout: String::from_utf8_lossy(&out_thread.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_thread.join().unwrap()).into_owned(),
    }
}

/// What [`run_to_exit`] saw.
#[derive(Debug)]
pub struct RunOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// All of stdout.
    pub stdout: String,
    /// All of stderr.
    pub stderr: String,
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 over TCP
// ---------------------------------------------------------------------------

/// `GET path HTTP/1.1` with a Host header.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// How a read with a deadline ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// The peer closed (FIN or reset).
    Closed,
    /// The deadline passed with the connection still open.
    TimedOut,
}

/// A raw-TCP client connection with its unparsed input.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

impl Conn {
    /// Connects (panics on failure).
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream,
            buf: Vec::new(),
            closed: false,
        }
    }

    /// Writes all of `bytes` (panics on failure).
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the node");
    }

    /// Writes `bytes`, ignoring errors (the node may already have closed).
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Half-closes our side.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Sends `bytes` and reads one response.
    pub fn request(&mut self, bytes: &[u8]) -> Resp {
        self.send(bytes);
        self.read_response()
    }

    /// Reads one complete response (body framed by Content-Length).
    pub fn read_response(&mut self) -> Resp {
        self.read_response_inner(false)
    }

    /// Reads one response to a HEAD request (no body whatever the length).
    pub fn read_head_response(&mut self) -> Resp {
        self.read_response_inner(true)
    }

    fn read_response_inner(&mut self, head_only: bool) -> Resp {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Some((resp, used)) = parse_response(&self.buf, head_only) {
                self.buf.drain(..used);
                return resp;
            }
            if self.closed {
                panic!(
                    "connection closed before a complete response; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
            if self.fill(deadline) == Some(ReadEnd::TimedOut) {
                panic!(
                    "no complete response within {IO_TIMEOUT:?}; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Reads until `n` complete responses are buffered, then returns them.
    pub fn read_responses(&mut self, n: usize, timeout: Duration) -> Vec<Resp> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if let Some((resp, used)) = parse_response(&self.buf, false) {
                self.buf.drain(..used);
                out.push(resp);
                continue;
            }
            if self.closed || self.fill(deadline) == Some(ReadEnd::TimedOut) {
                panic!(
                    "got {} of {n} responses (closed: {}); unparsed {:?}",
                    out.len(),
                    self.closed,
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
        out
    }

    /// Reads exactly `n` raw bytes.
    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + IO_TIMEOUT;
        while self.buf.len() < n {
            if self.closed || self.fill(deadline) == Some(ReadEnd::TimedOut) {
                panic!(
                    "wanted {n} bytes, got {:?} (closed: {})",
                    String::from_utf8_lossy(&self.buf),
                    self.closed
                );
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Reads until the peer closes or `timeout` passes; returns everything
    /// unparsed so far and how it ended.
    pub fn read_until_close(&mut self, timeout: Duration) -> (Vec<u8>, ReadEnd) {
        let deadline = Instant::now() + timeout;
        while !self.closed {
            if self.fill(deadline) == Some(ReadEnd::TimedOut) {
                return (std::mem::take(&mut self.buf), ReadEnd::TimedOut);
            }
        }
        (std::mem::take(&mut self.buf), ReadEnd::Closed)
    }

    /// Asserts the node closes the connection within `timeout` without
    /// sending anything more.
    pub fn expect_closed(&mut self, timeout: Duration) {
        let (rest, end) = self.read_until_close(timeout);
        assert_eq!(
            end,
            ReadEnd::Closed,
            "connection still open after {timeout:?}"
        );
        assert!(
            rest.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Asserts the connection stays open (nothing arrives, no close) for `d`.
    pub fn expect_open_for(&mut self, d: Duration) {
        let (rest, end) = self.read_until_close(d);
        assert_eq!(end, ReadEnd::TimedOut, "connection closed within {d:?}");
        self.buf = rest;
    }

    /// One read with the deadline: `None` after data, else how it ended.
    fn fill(&mut self, deadline: Instant) -> Option<ReadEnd> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Some(ReadEnd::TimedOut);
        }
        self.stream
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.closed = true;
                Some(ReadEnd::Closed)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                None
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Some(ReadEnd::TimedOut)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => None,
            Err(_) => {
                // Reset or similar: the peer is gone.
                self.closed = true;
                Some(ReadEnd::Closed)
            }
        }
    }
}

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Resp {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// Whether the response carries `connection: close`.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// Asserts an RFC 9457 problem with `status` and machine `code`.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "status of {:?} {:?}",
            self.reason,
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "content-type of a {status}"
        );
        let p = self.json();
        assert_eq!(p["status"], status, "problem.status in {p}");
        assert_eq!(p["code"], code, "problem.code in {p}");
        for field in ["type", "title", "detail"] {
            assert!(
                p[field].as_str().is_some_and(|s| !s.is_empty()),
                "problem.{field} missing in {p}"
            );
        }
    }
}

/// Parses one response from the front of `buf`: `Some((resp, bytes used))`
/// once complete. `head_only`: the response to a HEAD (no body bytes).
pub fn parse_response(buf: &[u8], head_only: bool) -> Option<(Resp, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).expect("response head is UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    assert_eq!(version, "HTTP/1.1", "status line {status_line:?}");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let reason = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {l:?}"));
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>().expect("numeric content-length"));
    let no_body = head_only || (100..200).contains(&status) || status == 204 || status == 304;
    let body_len = if no_body { 0 } else { length.unwrap_or(0) };
    let start = end + 4;
    if buf.len() < start + body_len {
        return None;
    }
    Some((
        Resp {
            status,
            reason,
            headers,
            body: buf[start..start + body_len].to_vec(),
        },
        start + body_len,
    ))
}

/// Every complete response in `bytes`, in order; panics on trailing junk.
pub fn parse_responses(bytes: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some((resp, used)) = parse_response(&bytes[at..], false) else {
            panic!(
                "incomplete response after {} complete ones: {:?}",
                out.len(),
                String::from_utf8_lossy(&bytes[at..])
            );
        };
        out.push(resp);
        at += used;
    }
    out
}

/// The status codes of every response in `bytes`.
pub fn statuses(bytes: &[u8]) -> Vec<u16> {
    parse_responses(bytes).iter().map(|r| r.status).collect()
}

/// Sends `bytes` on a fresh connection and returns everything the node
/// answers until it closes (panics if it does not close within `timeout`).
pub fn exchange_until_close(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let mut conn = Conn::open(addr);
    // The node may answer and close before all of a large input is written.
    let _ = conn.try_send(bytes);
    let (out, end) = conn.read_until_close(timeout);
    assert_eq!(
        end,
        ReadEnd::Closed,
        "connection still open after {timeout:?}; got {:?}",
        String::from_utf8_lossy(&out)
    );
    out
}
