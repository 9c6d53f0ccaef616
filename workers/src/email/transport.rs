//! Handing a mail over: SMTP through lettre's connection (plain SMTP,
//! optional AUTH) over our own pool of `TCP_NODELAY` sockets, or an `.eml`
//! file written atomically (temp file, fdatasync, rename, directory fsync).
//!
//! Why our own pool: lettre writes a message's body and its end-of-data
//! marker in two writes. With Nagle on (lettre's own transport does not set
//! `TCP_NODELAY`) the marker waits for the server's delayed ACK, about 40-50
//! ms per mail, which capped the sender near 150 mails/s (BENCHMARKS.md,
//! "Order -> email latency").

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::{Arc, Mutex};

use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;

use crate::config::{EmailConfig, MailTransport};
use crate::error::WorkerError;

/// Why a mail was not handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// Try again later (server away, 4xx, timeout, disk full).
    Transient(String),
    /// The server refused this mail for good (5xx): retrying cannot help.
    Permanent(String),
}

/// Where mails go.
#[derive(Clone)]
pub enum Outbox {
    /// An SMTP server.
    Smtp(Arc<SmtpPool>),
    /// `{event_id}.eml` files in a directory.
    Eml(PathBuf),
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp(_) => f.write_str("Outbox::Smtp"),
            Self::Eml(dir) => f.debug_tuple("Outbox::Eml").field(dir).finish(),
        }
    }
}

impl Outbox {
    /// The outbox `cfg` describes; `eml_dir` is where `.eml` files go.
    pub fn new(cfg: &EmailConfig, eml_dir: &Path) -> Result<Self, WorkerError> {
        match cfg.transport {
            MailTransport::Eml => {
                std::fs::create_dir_all(eml_dir).map_err(|e| WorkerError::io(eml_dir, e))?;
                Ok(Self::Eml(eml_dir.to_owned()))
            }
            MailTransport::Smtp => Ok(Self::Smtp(Arc::new(SmtpPool {
                host: cfg.smtp_host.clone(),
                port: cfg.smtp_port,
                timeout: Duration::from_millis(cfg.smtp_timeout_ms),
                credentials: (!cfg.smtp_username.is_empty()).then(|| {
                    Credentials::new(cfg.smtp_username.clone(), cfg.smtp_password.clone())
                }),
                hello: ClientId::default(),
                idle: Mutex::new(Vec::new()),
            }))),
        }
    }

    /// Hands `mail` (the effect of `event_id`) over.
    pub async fn deliver(&self, event_id: &str, mail: Message) -> Result<(), DeliveryError> {
        match self {
            Self::Smtp(pool) => pool.send(&mail).await,
            Self::Eml(dir) => {
                let path = dir.join(eml_file_name(event_id));
                let bytes = mail.formatted();
                tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
                    .await
                    .map_err(|e| DeliveryError::Transient(e.to_string()))?
                    .map_err(|e| DeliveryError::Transient(e.to_string()))
            }
        }
    }
}

/// Open SMTP connections kept between mails; more are opened when several
/// mails go out at once (the email sender bounds that by its concurrency).
const MAX_IDLE: usize = 64;

/// SMTP connections to one server, reused between mails.
pub struct SmtpPool {
    host: String,
    port: u16,
    timeout: Duration,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Vec<AsyncSmtpConnection>>,
}

impl std::fmt::Debug for SmtpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpPool")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl SmtpPool {
    /// Sends `mail` on an idle connection, or a new one. A reused
    /// connection that fails (the server may have closed it while idle) is
    /// replaced once at once; other failures go to the caller's retry.
    async fn send(&self, mail: &Message) -> Result<(), DeliveryError> {
        let bytes = mail.formatted();
        if let Some(conn) = self.take_idle() {
            match self.send_on(conn, mail, &bytes).await {
                Ok(conn) => {
                    self.put_back(conn);
                    return Ok(());
                }
                Err(refused @ DeliveryError::Permanent(_)) => return Err(refused),
                // Perhaps closed by the server while idle: a new session.
                Err(DeliveryError::Transient(_)) => {}
            }
        }
        let conn = self.connect().await?;
        let conn = self.send_on(conn, mail, &bytes).await?;
        self.put_back(conn);
        Ok(())
    }

    async fn send_on(
        &self,
        mut conn: AsyncSmtpConnection,
        mail: &Message,
        bytes: &[u8],
    ) -> Result<AsyncSmtpConnection, DeliveryError> {
        match tokio::time::timeout(self.timeout, conn.send(mail.envelope(), bytes)).await {
            Ok(Ok(_)) => Ok(conn),
            Ok(Err(e)) if e.is_permanent() => {
                // The session is still usable after a refused mail.
                self.put_back(conn);
                Err(DeliveryError::Permanent(e.to_string()))
            }
            Ok(Err(e)) => Err(DeliveryError::Transient(e.to_string())),
            Err(_) => Err(DeliveryError::Transient(format!(
                "no answer from {}:{} within {:?}",
                self.host, self.port, self.timeout
            ))),
        }
    }

    /// A new session: TCP with `TCP_NODELAY`, EHLO, AUTH when configured.
    async fn connect(&self) -> Result<AsyncSmtpConnection, DeliveryError> {
        let transient = |e: &dyn std::fmt::Display| {
            DeliveryError::Transient(format!("SMTP {}:{}: {e}", self.host, self.port))
        };
        let session = async {
            let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| transient(&e))?;
            stream.set_nodelay(true).map_err(|e| transient(&e))?;
            let mut conn =
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                    .await
                    .map_err(|e| transient(&e))?;
            if let Some(c) = &self.credentials {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], c)
                    .await
                    .map_err(|e| transient(&e))?;
            }
            Ok(conn)
        };
        tokio::time::timeout(self.timeout, session)
            .await
            .map_err(|_| transient(&"connection timed out"))?
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put_back(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// `{event_id}.eml`, with anything but `[A-Za-z0-9._-]` hex-escaped (an
/// event id comes from a header and must not name another path).
pub fn eml_file_name(event_id: &str) -> String {
    let mut name = String::with_capacity(event_id.len() + 4);
    for b in event_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !name.is_empty()) {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(".eml");
    name
}

/// Writes `bytes` to `path` so that readers see all or nothing, durably.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), WorkerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(|e| WorkerError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| WorkerError::io(&tmp, e))?;
    f.sync_data().map_err(|e| WorkerError::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| WorkerError::io(path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WorkerError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_escape_the_directory() {
        assert_eq!(
            eml_file_name("0190a0b1-7c2d-7e3f-8a9b-0c1d2e3f4a5b"),
            "0190a0b1-7c2d-7e3f-8a9b-0c1d2e3f4a5b.eml"
        );
        assert_eq!(eml_file_name("../x/y"), "%2E.%2Fx%2Fy.eml");
        assert_eq!(eml_file_name(""), ".eml");
    }

    #[test]
    fn atomic_write_leaves_only_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.eml");
        write_atomically(&p, b"hello").expect("write");
        write_atomically(&p, b"again").expect("overwrite");
        assert_eq!(std::fs::read(&p).expect("read"), b"again");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }
}
