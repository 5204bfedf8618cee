//! The client side of SCRAM (RFC 5802; SHA-256: RFC 7677) for foreign
//! logins, with the salted password kept.
//!
//! Deriving the salted password is the expensive part of a login: PBKDF2
//! with the server's iteration count (4,096 at least), about 1.2 ms of CPU
//! on the benchmark machine, more than half of everything the gateway does
//! per login (BENCHMARKS.md). It depends only on the password, the salt and
//! the count, which a server keeps until the password changes, so one
//! derivation serves every later login of the account; the gateway keeps it
//! in its database so that a restart's login storm derives nothing. (The
//! sasl crate accepts a derived secret, but its 0.5 checks are inverted and
//! refuse it exactly when it matches the server's salt and count.)
//!
//! The salted password is as good as the password for logging in to that
//! server, so it is treated like it: kept beside it, never logged, never
//! shown to a policy.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// `SCRAM-SHA-1`
    Sha1,
    /// `SCRAM-SHA-256`
    Sha256,
}

impl ScramHash {
    /// The SASL mechanism's name.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    /// The hash of a mechanism name, if it is one this client speaks.
    pub fn from_mechanism(name: &str) -> Option<ScramHash> {
        match name {
            "SCRAM-SHA-1" => Some(ScramHash::Sha1),
            "SCRAM-SHA-256" => Some(ScramHash::Sha256),
            _ => None,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramHash::Sha1 => run::<Hmac<Sha1>>(key, data),
            ScramHash::Sha256 => run::<Hmac<Sha256>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with this hash's HMAC. Takes
    /// milliseconds: call it off the async threads.
    pub fn salt_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.len()];
        let done = match self {
            ScramHash::Sha1 => {
                pbkdf2::pbkdf2::<Hmac<Sha1>>(password.as_bytes(), salt, iterations, &mut out)
            }
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2::<Hmac<Sha256>>(password.as_bytes(), salt, iterations, &mut out)
            }
        };
        done.expect("HMAC takes keys of any length");
        out
    }

    fn len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }
}

/// A salted password: `Hi(password, salt, iterations)` for one mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct SaltedPassword {
    /// The mechanism's hash.
    pub hash: ScramHash,
    /// The server's salt.
    pub salt: Vec<u8>,
    /// The server's iteration count.
    pub iterations: u32,
    /// The derived key.
    pub key: Vec<u8>,
}

impl fmt::Debug for SaltedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaltedPassword")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// How a SCRAM exchange went wrong on the client's side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The server's first message is not `r=…,s=…,i=…`, or is not UTF-8.
    #[error("the server's SCRAM challenge is malformed: {0}")]
    Malformed(&'static str),
    /// The server's nonce does not extend ours (RFC 5802 section 5.1).
    #[error("the server's SCRAM nonce does not extend ours")]
    Nonce,
    /// The server asks for an extension this client does not know (`m=`).
    #[error("the server requires a SCRAM extension")]
    Extension,
    /// The iteration count is too low to be safe (RFC 7677 asks for 4,096).
    #[error("the server's SCRAM iteration count {0} is below 4096")]
    WeakIterations(u32),
    /// The iteration count is more than this client derives for: a server
    /// could otherwise keep the gateway's CPU busy for as long as it likes.
    #[error("the server's SCRAM iteration count {0} is above {MAX_ITERATIONS}")]
    TooManyIterations(u32),
    /// The server's final message carries an error (`e=`).
    #[error("the server ended SCRAM with an error: {0}")]
    Server(String),
    /// The server did not prove it knows the password: it may not be the
    /// server it claims to be.
    #[error("the server's SCRAM signature is wrong")]
    Signature,
}

/// The parts of the server's first message a client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    nonce: String,
    /// The salt, decoded.
    pub salt: Vec<u8>,
    /// The iteration count.
    pub iterations: u32,
    message: String,
}

/// One SCRAM exchange, client side, without channel binding (`n,,`).
pub struct ScramClient {
    hash: ScramHash,
    nonce: String,
    first_bare: String,
    server_signature: Option<Vec<u8>>,
}

/// The most PBKDF2 iterations a login derives with: 244 times the RFC's
/// 4,096, far above what servers use. At the ~1.2 ms the benchmark machine
/// spends on 4,096 (SHA-1), that is ~0.3 s of CPU, once per kept key.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// The GS2 header of a client that does not support channel binding.
const GS2_HEADER: &str = "n,,";

impl ScramClient {
    /// Starts an exchange for `username` with a fresh client nonce.
    pub fn new(hash: ScramHash, username: &str) -> ScramClient {
        let bytes: [u8; 18] = rand::random();
        ScramClient::with_nonce(hash, username, B64.encode(bytes))
    }

    /// Starts an exchange with a given nonce (the RFCs' test vectors).
    pub fn with_nonce(hash: ScramHash, username: &str, nonce: String) -> ScramClient {
        // RFC 5802 section 5.1: `=` and `,` are escaped in the saslname.
        let name = username.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            hash,
            first_bare: format!("n={name},r={nonce}"),
            nonce,
            server_signature: None,
        }
    }

    /// The client's first message, sent with `<auth/>`.
    pub fn first(&self) -> Vec<u8> {
        format!("{GS2_HEADER}{}", self.first_bare).into_bytes()
    }

    /// Reads the server's first message (the first challenge).
    pub fn server_first(&self, challenge: &[u8]) -> Result<ServerFirst, ScramError> {
        let message = std::str::from_utf8(challenge)
            .map_err(|_| ScramError::Malformed("not UTF-8"))?
            .to_string();
        let mut fields = message.split(',');
        let mut next = |key: &'static str| {
            let field = fields.next().ok_or(ScramError::Malformed(key))?;
            if field.starts_with("m=") {
                return Err(ScramError::Extension);
            }
            field
                .strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .ok_or(ScramError::Malformed(key))
        };
        let nonce = next("r")?.to_string();
        let salt = B64
            .decode(next("s")?)
            .map_err(|_| ScramError::Malformed("s"))?;
        let iterations: u32 = next("i")?.parse().map_err(|_| ScramError::Malformed("i"))?;
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) {
            return Err(ScramError::Nonce);
        }
        if iterations < 4096 {
            return Err(ScramError::WeakIterations(iterations));
        }
        if iterations > MAX_ITERATIONS {
            return Err(ScramError::TooManyIterations(iterations));
        }
        Ok(ServerFirst {
            nonce,
            salt,
            iterations,
            message,
        })
    }

    /// The client's final message, proving it knows `salted`, which must
    /// be for this mechanism, salt and count.
    pub fn client_final(&mut self, server: &ServerFirst, salted: &SaltedPassword) -> Vec<u8> {
        let h = self.hash;
        let without_proof = format!("c={},r={}", B64.encode(GS2_HEADER), server.nonce);
        let auth_message = format!("{},{},{without_proof}", self.first_bare, server.message);
        let client_key = h.hmac(&salted.key, b"Client Key");
        let stored_key = h.hash(&client_key);
        let signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = h.hmac(&salted.key, b"Server Key");
        self.server_signature = Some(h.hmac(&server_key, auth_message.as_bytes()));
        format!("{without_proof},p={}", B64.encode(proof)).into_bytes()
    }

    /// Checks the server's final message (`v=…`): the server knew the
    /// password too.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let message =
            std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let first = message.split(',').next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            return Err(ScramError::Server(error.to_string()));
        }
        let given = first
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or(ScramError::Malformed("v"))?;
        match &self.server_signature {
            Some(expected) if *expected == given => Ok(()),
            _ => Err(ScramError::Signature),
        }
    }
}

/// How often logins derived a salted password and how often they reused
/// one, gateway-wide (the admin `stats` command).
#[derive(Debug, Default)]
pub struct Counters {
    /// PBKDF2 runs.
    pub derived: AtomicU64,
    /// Logins that reused a kept salted password.
    pub reused: AtomicU64,
}

impl Counters {
    /// (derived, reused) now.
    pub fn read(&self) -> (u64, u64) {
        (
            self.derived.load(Ordering::Relaxed),
            self.reused.load(Ordering::Relaxed),
        )
    }
}

/// The salted password of one account's foreign logins, shared by its
/// sessions; a new one is handed to `keep` (the database).
#[derive(Clone)]
pub struct SaltedCache {
    current: Arc<Mutex<Option<SaltedPassword>>>,
    counters: Arc<Counters>,
    keep: Arc<dyn Fn(SaltedPassword) + Send + Sync>,
}

impl fmt::Debug for SaltedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SaltedCache")
    }
}

impl SaltedCache {
    /// A cache starting from what was kept, if anything.
    pub fn new(
        kept: Option<SaltedPassword>,
        counters: Arc<Counters>,
        keep: impl Fn(SaltedPassword) + Send + Sync + 'static,
    ) -> SaltedCache {
        SaltedCache {
            current: Arc::new(Mutex::new(kept)),
            counters,
            keep: Arc::new(keep),
        }
    }

    /// The salted password in the cache now, if any.
    pub fn current(&self) -> Option<SaltedPassword> {
        self.lock().clone()
    }

    /// The salted password for this server's parameters: the kept one if
    /// it matches, otherwise derived (off the async threads) and kept.
    pub async fn salted(
        &self,
        hash: ScramHash,
        password: &str,
        server: &ServerFirst,
    ) -> SaltedPassword {
        let matching = |s: &&SaltedPassword| {
            s.hash == hash && s.salt == server.salt && s.iterations == server.iterations
        };
        if let Some(kept) = self.lock().as_ref().filter(matching).cloned() {
            self.counters.reused.fetch_add(1, Ordering::Relaxed);
            return kept;
        }
        let (password, salt, iterations) =
            (password.to_string(), server.salt.clone(), server.iterations);
        let key =
            tokio::task::spawn_blocking(move || hash.salt_password(&password, &salt, iterations))
                .await
                .expect("PBKDF2 does not panic");
        let salted = SaltedPassword {
            hash,
            salt: server.salt.clone(),
            iterations,
            key,
        };
        self.counters.derived.fetch_add(1, Ordering::Relaxed);
        *self.lock() = Some(salted.clone());
        (self.keep)(salted.clone());
        salted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SaltedPassword>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(
        hash: ScramHash,
        nonce: &str,
        server_first: &str,
        salted: Option<&SaltedPassword>,
    ) -> (ScramClient, ServerFirst, SaltedPassword, String) {
        let mut client = ScramClient::with_nonce(hash, "user", nonce.into());
        assert_eq!(client.first(), format!("n,,n=user,r={nonce}").into_bytes());
        let server = client.server_first(server_first.as_bytes()).expect("valid");
        let salted = salted.cloned().unwrap_or_else(|| SaltedPassword {
            hash,
            salt: server.salt.clone(),
            iterations: server.iterations,
            key: hash.salt_password("pencil", &server.salt, server.iterations),
        });
        let last = String::from_utf8(client.client_final(&server, &salted)).expect("UTF-8");
        (client, server, salted, last)
    }

    #[test]
    fn rfc5802_sha1_test_vector() {
        let (client, _, _, last) = exchange(
            ScramHash::Sha1,
            "fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            None,
        );
        assert_eq!(
            last,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        client
            .verify(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
            .expect("the server's signature");
        assert_eq!(
            client.verify(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(ScramError::Signature)
        );
        assert_eq!(
            client.verify(b"e=invalid-proof"),
            Err(ScramError::Server("invalid-proof".into()))
        );
    }

    #[test]
    fn rfc7677_sha256_test_vector() {
        let (client, _, _, last) = exchange(
            ScramHash::Sha256,
            "rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            None,
        );
        assert_eq!(
            last,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("the server's signature");
    }

    #[test]
    fn a_kept_salted_password_gives_the_same_proof_as_the_password() {
        let server_first = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
        let nonce = "fyko+d2lbbFgONRv9qkxdawL";
        let (_, _, salted, fresh) = exchange(ScramHash::Sha1, nonce, server_first, None);
        let (_, _, _, reused) = exchange(ScramHash::Sha1, nonce, server_first, Some(&salted));
        assert_eq!(fresh, reused);
    }

    #[test]
    fn a_bad_server_first_message_is_refused() {
        let client = ScramClient::with_nonce(ScramHash::Sha1, "user", "abc".into());
        let refused = |m: &str| client.server_first(m.as_bytes()).expect_err(m);
        assert_eq!(
            refused("r=xyz123,s=QSXCR+Q6sek8bf92,i=4096"),
            ScramError::Nonce
        );
        assert_eq!(
            refused("r=abc,s=QSXCR+Q6sek8bf92,i=4096"),
            ScramError::Nonce
        );
        assert_eq!(
            refused("m=ext,r=abcdef,s=QSXCR+Q6sek8bf92,i=4096"),
            ScramError::Extension
        );
        assert_eq!(
            refused("r=abcdef,s=QSXCR+Q6sek8bf92,i=1"),
            ScramError::WeakIterations(1)
        );
        assert_eq!(refused("r=abcdef,s=!!,i=4096"), ScramError::Malformed("s"));
        assert_eq!(
            refused("r=abcdef,s=QSXCR+Q6sek8bf92"),
            ScramError::Malformed("i")
        );
        assert_eq!(refused(""), ScramError::Malformed("r"));
        assert_eq!(
            client.server_first(&[0xff, 0xfe]),
            Err(ScramError::Malformed("not UTF-8"))
        );
    }

    #[test]
    fn usernames_escape_equals_and_comma() {
        let client = ScramClient::with_nonce(ScramHash::Sha1, "a=b,c", "n".into());
        assert_eq!(client.first(), b"n,,n=a=3Db=2Cc,r=n".to_vec());
    }

    #[tokio::test]
    async fn the_cache_derives_once_per_salt_and_keeps_what_it_derived() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(Counters::default());
        let cache = SaltedCache::new(None, counters.clone(), {
            let kept = kept.clone();
            move |s| kept.lock().expect("not poisoned").push(s)
        });
        let client = ScramClient::with_nonce(ScramHash::Sha1, "user", "abc".into());
        let first = client
            .server_first(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096")
            .expect("valid");
        let a = cache.salted(ScramHash::Sha1, "pencil", &first).await;
        let b = cache.salted(ScramHash::Sha1, "pencil", &first).await;
        assert_eq!(a, b);
        assert_eq!(counters.derived.load(Ordering::Relaxed), 1);
        assert_eq!(counters.reused.load(Ordering::Relaxed), 1);
        assert_eq!(*kept.lock().expect("not poisoned"), vec![a.clone()]);
        // A new salt (the password was changed on the server) derives again.
        let other = client
            .server_first(b"r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .expect("valid");
        let c = cache.salted(ScramHash::Sha1, "pencil", &other).await;
        assert_ne!(c.key, a.key);
        assert_eq!(counters.derived.load(Ordering::Relaxed), 2);
        // So does another mechanism with the same salt.
        let d = cache.salted(ScramHash::Sha256, "pencil", &other).await;
        assert_eq!(d.key.len(), 32);
        assert_eq!(counters.derived.load(Ordering::Relaxed), 3);
        assert!(!format!("{d:?}").contains(&format!("{:?}", d.key)));
    }
}
