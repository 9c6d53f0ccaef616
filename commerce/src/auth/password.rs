//! Argon2id password hashing on a small pool of dedicated threads.
//!
//! A hash costs tens of milliseconds of CPU and ~19 MiB of memory, far too
//! long to run on a shard's event loop. [`PasswordHasher`] queues the work to
//! `argon2-{i}` threads through a bounded queue and hands the result back over
//! a `futures` oneshot channel, so awaiting it works on any runtime. A full
//! queue fails fast with [`AuthError::Busy`] instead of blocking the caller.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use futures::channel::oneshot;
use rand::RngCore;

use super::AuthError;

/// Upper bound on the memory cost (KiB) a stored hash may ask for: a corrupt
/// or hostile PHC string must not make a verify allocate gigabytes.
const MAX_VERIFY_MEMORY_KIB: u32 = 1 << 20;
/// Upper bound on the iterations a stored hash may ask for.
const MAX_VERIFY_ITERATIONS: u32 = 64;
/// Salt of the dummy hash used by [`PasswordHasher::verify_dummy`].
const DUMMY_SALT: &[u8; 16] = b"rayltics-dummy-s";

/// Argon2id cost parameters for new hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes over the memory.
    pub iterations: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// The OWASP recommendation: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, AuthError>>;

enum Job {
    Hash {
        password: String,
        reply: Reply<String>,
    },
    Verify {
        password: String,
        phc: String,
        reply: Reply<bool>,
    },
}

struct Inner {
    tx: SyncSender<Job>,
    dummy_phc: String,
    #[cfg(test)]
    rx: std::sync::Weak<Mutex<Receiver<Job>>>,
}

/// Handle to the argon2id worker pool. Cheap to clone, `Send + Sync`; the
/// worker threads exit once the last handle is dropped and the queue drains.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Starts `threads` workers named `argon2-{i}` behind a queue of `queue`
    /// pending jobs (0 = accept only when a worker is idle). New hashes use
    /// `params`; verification uses the parameters stored in each hash.
    pub fn start(threads: usize, queue: usize, params: Argon2Params) -> Result<Self, AuthError> {
        if threads == 0 {
            return Err(AuthError::Config(
                "password hasher needs at least one thread".into(),
            ));
        }
        let Argon2Params {
            memory_kib,
            iterations,
            parallelism,
        } = params;
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| AuthError::Config(format!("argon2 params {params:?}: {e}")))?;
        let dummy_phc = dummy_phc(&params)?;
        let (tx, rx) = mpsc::sync_channel(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let (rx, params) = (Arc::clone(&rx), params.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    worker(
                        &rx,
                        Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
                    )
                })
                .map_err(|e| AuthError::Config(format!("spawn argon2-{i}: {e}")))?;
        }
        #[cfg(test)]
        let inner = Inner {
            tx,
            dummy_phc,
            rx: Arc::downgrade(&rx),
        };
        #[cfg(not(test))]
        let inner = Inner { tx, dummy_phc };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Hashes `password` with a fresh random salt; returns the PHC string
    /// (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) to store.
    pub async fn hash(&self, password: String) -> Result<String, AuthError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        rx.await.map_err(|_| AuthError::Unavailable)?
    }

    /// Checks `password` against a stored PHC string. A wrong password is
    /// `Ok(false)`; a malformed or out-of-bounds PHC string is
    /// [`AuthError::Hash`].
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, AuthError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Verify {
            password,
            phc,
            reply,
        })?;
        rx.await.map_err(|_| AuthError::Unavailable)?
    }

    /// Spends the work of one real [`verify`](Self::verify) (same queue, same
    /// parameters as new hashes) against a fixed dummy hash, so a login for
    /// an unknown email takes as long as a wrong password. Returns the same
    /// errors as `verify` (notably [`AuthError::Busy`]) so the caller can
    /// answer exactly as it would for a known email.
    pub async fn verify_dummy(&self, password: String) -> Result<(), AuthError> {
        self.verify(password, self.inner.dummy_phc.clone())
            .await
            .map(|_| ())
    }

    fn submit(&self, job: Job) -> Result<(), AuthError> {
        match self.inner.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(AuthError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(AuthError::Unavailable),
        }
    }
}

/// A well-formed argon2id PHC string with the configured parameters whose
/// output (all zeroes) no password produces.
fn dummy_phc(params: &Params) -> Result<String, AuthError> {
    let err = |e: password_hash::Error| AuthError::Config(format!("dummy hash: {e}"));
    let salt = SaltString::encode_b64(DUMMY_SALT).map_err(err)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(err)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&[0u8; Params::DEFAULT_OUTPUT_LEN]).map_err(err)?),
    };
    Ok(hash.to_string())
}

fn worker(rx: &Mutex<Receiver<Job>>, argon: Argon2<'static>) {
    loop {
        // The lock is held only while waiting, never while hashing.
        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        // A panic inside argon2 must not shrink the pool; the dropped reply
        // turns into `Unavailable` for that one caller.
        let _ = catch_unwind(AssertUnwindSafe(|| run(&argon, job)));
    }
}

fn run(argon: &Argon2<'static>, job: Job) {
    match job {
        // A cancelled caller (client gone) does not get its work done.
        Job::Hash { password, reply } if !reply.is_canceled() => {
            let _ = reply.send(hash_password(argon, &password));
        }
        Job::Verify {
            password,
            phc,
            reply,
        } if !reply.is_canceled() => {
            let _ = reply.send(verify_password(argon, &password, &phc));
        }
        Job::Hash { .. } | Job::Verify { .. } => {}
    }
}

fn hash_password(argon: &Argon2<'static>, password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    let hash = argon.hash_password(password.as_bytes(), &salt);
    hash.map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

fn verify_password(argon: &Argon2<'static>, password: &str, phc: &str) -> Result<bool, AuthError> {
    let parsed =
        PasswordHash::new(phc).map_err(|e| AuthError::Hash(format!("malformed PHC: {e}")))?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(AuthError::Hash("PHC lacks a salt or a hash".into()));
    }
    let params =
        Params::try_from(&parsed).map_err(|e| AuthError::Hash(format!("PHC params: {e}")))?;
    if params.m_cost() > MAX_VERIFY_MEMORY_KIB || params.t_cost() > MAX_VERIFY_ITERATIONS {
        return Err(AuthError::Hash(format!(
            "PHC params out of bounds: {params:?}"
        )));
    }
    match argon.verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::Password) => Ok(false),
        Err(e) => Err(AuthError::Hash(e.to_string())),
    }
}

#[cfg(test)]
#[path = "password_tests.rs"]
mod tests;
