//! Password hashing with argon2id, on a few threads of its own so that a flood of logins can
//! neither take the memory (19 MiB per hash) nor the blocking pool the store runs on.

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::oneshot;

/// The most memory a stored hash may ask for (blocks of 1 KiB): 256 MiB.
const MAX_BLOCKS: usize = 256 * 1024;

/// An argon2id hasher that keeps its working memory between hashes. The allocator never sees
/// the 19 MiB come and go, which glibc answered by keeping hundreds of MiB of freed blocks.
#[derive(Default)]
pub struct Hasher {
    memory: Vec<Block>,
}

impl Hasher {
    /// The PHC string of `password` hashed with a fresh salt and the default parameters.
    pub fn hash(&mut self, password: &str) -> String {
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::default();
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes).expect("a generated salt decodes");
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        self.compute(&argon, password, salt_bytes, &mut out).expect("argon2 with default parameters hashes any input");
        PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).expect("default parameters encode"),
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).expect("a 32-byte output")),
        }
        .to_string()
    }

    /// True when `password` matches the PHC string `stored` (compared in constant time).
    pub fn verify(&mut self, password: &str, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else { return false };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else { return false };
        let Ok(version) = parsed.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
        let Ok(params) = Params::try_from(&parsed) else { return false };
        let mut salt_bytes = [0u8; 64];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else { return false };
        let mut out = vec![0u8; expected.len()];
        let argon = Argon2::new(algorithm, version, params);
        self.compute(&argon, password, salt_bytes, &mut out).is_ok()
            && Output::new(&out).is_ok_and(|computed| computed == expected)
    }

    fn compute(&mut self, argon: &Argon2<'_>, password: &str, salt: &[u8], out: &mut [u8]) -> Result<(), ()> {
        let blocks = argon.params().block_count();
        if blocks > MAX_BLOCKS {
            return Err(());
        }
        if self.memory.len() < blocks {
            self.memory.resize(blocks, Block::default());
        }
        argon.hash_password_into_with_memory(password.as_bytes(), salt, out, &mut self.memory[..]).map_err(|_| ())
    }
}

/// Why the pool did not do a job.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Every thread is busy and the queue is full: answer "try again" instead of queueing more.
    #[error("password hashing is saturated")]
    Busy,
    /// The pool's threads are gone (the process is stopping).
    #[error("password hashing has stopped")]
    Stopped,
}

enum Job {
    Hash { password: String, reply: oneshot::Sender<String> },
    Verify { password: String, stored: Option<String>, reply: oneshot::Sender<bool> },
}

/// A fixed set of hashing threads behind a bounded queue. Verifying against an unknown user
/// (`stored` = `None`) hashes against a dummy hash, so it costs as long as a real check and
/// timing does not tell who has an account.
#[derive(Clone)]
pub struct PasswordPool {
    jobs: SyncSender<Job>,
}

impl PasswordPool {
    /// `threads` hashing threads (at least one) and room for `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize) -> Self {
        let (jobs, waiting) = sync_channel(queue);
        let waiting = Arc::new(Mutex::new(waiting));
        for n in 0..threads.max(1) {
            let waiting = waiting.clone();
            std::thread::Builder::new()
                .name(format!("roost-argon2-{n}"))
                .spawn(move || work(&waiting))
                .expect("spawn a password hashing thread");
        }
        Self { jobs }
    }

    /// Hashes `password` with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        answer.await.map_err(|_| PoolError::Stopped)
    }

    /// True when `password` matches `stored`; false, after the same work, when there is none.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Verify { password, stored, reply })?;
        answer.await.map_err(|_| PoolError::Stopped)
    }

    fn submit(&self, job: Job) -> Result<(), PoolError> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => PoolError::Busy,
            TrySendError::Disconnected(_) => PoolError::Stopped,
        })
    }
}

/// One hashing thread: takes jobs until every sender is gone.
fn work(waiting: &Mutex<Receiver<Job>>) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let mut hasher = Hasher::default();
    loop {
        let job = match waiting.lock().expect("password queue lock").recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        match job {
            Job::Hash { password, reply } => {
                let _ = reply.send(hasher.hash(&password));
            }
            Job::Verify { password, stored, reply } => {
                let valid = match stored {
                    Some(stored) => hasher.verify(&password, &stored),
                    None => {
                        let dummy = DUMMY.get_or_init(|| Hasher::default().hash("no account has this password"));
                        hasher.verify(&password, dummy);
                        false
                    }
                };
                let _ = reply.send(valid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_the_right_password_only_and_agrees_with_the_argon2_crate() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let mut hasher = Hasher::default();
        let stored = hasher.hash("correct horse");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(hasher.verify("correct horse", &stored));
        assert!(!hasher.verify("wrong", &stored));
        assert!(!hasher.verify("correct horse", "not a hash"));
        // hashes made before (by the crate's own hasher) still verify, and ours verify there
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default().hash_password(b"correct horse", &salt).unwrap().to_string();
        assert!(hasher.verify("correct horse", &theirs));
        let ours = PasswordHash::new(&stored).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &ours).is_ok());
    }

    #[tokio::test]
    async fn the_pool_hashes_and_verifies_and_refuses_past_its_queue() {
        let pool = PasswordPool::new(1, 1);
        let stored = pool.hash("correct horse".into()).await.unwrap();
        assert!(pool.verify("correct horse".into(), Some(stored.clone())).await.unwrap());
        assert!(!pool.verify("wrong".into(), Some(stored)).await.unwrap());
        assert!(!pool.verify("anything".into(), None).await.unwrap(), "no account: no match");
        // one running, one queued, the rest refused at once
        let mut jobs = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let pool = pool.clone();
            jobs.spawn(async move { pool.hash("x".repeat(8)).await });
        }
        let results = jobs.join_all().await;
        let busy = results.iter().filter(|r| matches!(r, Err(PoolError::Busy))).count();
        assert!(busy >= 7, "{results:?}");
    }
}
