//! HTTP basic authentication against the bcrypt hashes of
//! `basic_auth_users`.
//!
//! bcrypt is slow on purpose: at cost 10 one verification takes tens of
//! milliseconds of CPU, far more than the scrape it guards. So, as
//! exporter-toolkit does, a verification that succeeded is remembered and
//! the next request with the same user and password skips bcrypt. What is
//! remembered is a keyed SHA-256 of user, stored hash and password (the key
//! is random per process), never the password; a cache hit compares that
//! digest only. Failures are not remembered: each wrong password costs a
//! bcrypt run, and those runs go one at a time, so a flood of bad guesses
//! takes at most one core from the collectors.
//!
//! A user that does not exist is checked against a decoy hash of the same
//! cost, so the response time does not tell which user names exist.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::values::ParseStr;

/// Verified credentials remembered at most; a handful of Prometheus servers
/// use one or two users each, so this is plenty, and it bounds memory.
pub const CACHE_ENTRIES: usize = 128;

/// The challenge sent with a 401, as RFC 7617 writes it.
pub const CHALLENGE: &str = "Basic realm=\"herakles-node-exporter\", charset=\"UTF-8\"";

/// The costs bcrypt defines (2^4 to 2^31 rounds).
const COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// A bcrypt hash, checked when the file is read. Never printed: `Debug`
/// shows `<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct BcryptHash {
    hash: String,
    cost: u32,
}

impl fmt::Debug for BcryptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl std::str::FromStr for BcryptHash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: bcrypt::HashParts = s.parse().map_err(|e| {
            format!("not a bcrypt hash ({e}); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`")
        })?;
        let cost = parts.get_cost();
        if !COSTS.contains(&cost) {
            return Err(format!("bcrypt cost {cost} is out of range {COSTS:?}"));
        }
        Ok(BcryptHash {
            hash: s.to_string(),
            cost,
        })
    }
}

impl<'de> Deserialize<'de> for BcryptHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParseStr::<BcryptHash>::new("a bcrypt hash"))
    }
}

/// `basic_auth_users`: user name to bcrypt hash.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Users(BTreeMap<String, BcryptHash>);

impl Users {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(UsersVisitor)
    }
}

struct UsersVisitor;

impl<'de> Visitor<'de> for UsersVisitor {
    type Value = Users;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of user names to bcrypt hashes")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Users, E> {
        Ok(Users::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Users, A::Error> {
        let mut users = BTreeMap::new();
        while let Some(UserName(name)) = map.next_key()? {
            let hash = map.next_value_seed(HashSeed {
                duplicate: users.contains_key(&name),
            })?;
            users.insert(name, hash);
        }
        Ok(Users(users))
    }
}

/// A user name: basic authentication cannot carry one with a colon.
struct UserName(String);

impl std::str::FromStr for UserName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains(':') {
            return Err(format!(
                "user name \"{s}\" has a colon, which HTTP basic authentication cannot send"
            ));
        }
        Ok(UserName(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParseStr::<UserName>::new("a user name"))
    }
}

/// A user's hash; a user listed twice is an error at the second hash.
struct HashSeed {
    duplicate: bool,
}

impl<'de> DeserializeSeed<'de> for HashSeed {
    type Value = BcryptHash;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<BcryptHash, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for HashSeed {
    type Value = BcryptHash;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a bcrypt hash")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<BcryptHash, E> {
        if self.duplicate {
            return Err(E::custom("this user is listed twice"));
        }
        v.parse().map_err(E::custom)
    }
}

/// Whether a request may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Granted,
    /// Answer with [`unauthorized`].
    Denied,
}

/// Checks `Authorization` headers against `basic_auth_users`. Build one per
/// web config and share it (`Arc`) between connections: its cache is what
/// makes repeated scrapes cheap.
pub struct BasicAuth {
    users: HashMap<String, BcryptHash>,
    /// Keyed digests of verified (user, hash, password).
    verified: Mutex<Verified>,
    /// The digest key, random per process.
    digest_key: [u8; 32],
    /// One bcrypt run at a time.
    gate: Arc<Semaphore>,
    /// Hash checked for unknown users; made on first use.
    decoy: OnceLock<String>,
    decoy_cost: u32,
    bcrypt_runs: AtomicU64,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What a request's credentials still need.
enum Pending {
    Decided(Access),
    Bcrypt {
        password: Vec<u8>,
        /// `None`: an unknown user, checked against the decoy.
        known: Option<(BcryptHash, [u8; 32])>,
    },
}

impl BasicAuth {
    /// `None` when there are no users: every request is allowed.
    pub fn new(users: &Users) -> Option<BasicAuth> {
        let decoy_cost = users.0.values().map(|h| h.cost).max()?;
        let mut digest_key = [0u8; 32];
        // The ring provider's system random source; if it failed, a zero
        // key only makes cache digests predictable, not wrong.
        let _ = rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut digest_key);
        Some(BasicAuth {
            users: users.0.clone().into_iter().collect(),
            verified: Mutex::new(Verified::default()),
            digest_key,
            gate: Arc::new(Semaphore::new(1)),
            decoy: OnceLock::new(),
            decoy_cost,
            bcrypt_runs: AtomicU64::new(0),
        })
    }

    /// Decide on a request's `Authorization` header. A cache hit or a
    /// missing or malformed header is answered at once; otherwise bcrypt
    /// runs on tokio's blocking pool, one run at a time.
    pub async fn check(self: &Arc<Self>, authorization: Option<&HeaderValue>) -> Access {
        let pending = match self.lookup(authorization) {
            Pending::Decided(access) => return access,
            pending => pending,
        };
        let Ok(permit) = Arc::clone(&self.gate).acquire_owned().await else {
            return Access::Denied;
        };
        let me = Arc::clone(self);
        // The permit moves into the closure: a client that hangs up while
        // its bcrypt runs does not let another run start beside it.
        tokio::task::spawn_blocking(move || {
            let access = me.finish(pending);
            drop(permit);
            access
        })
        .await
        .unwrap_or(Access::Denied)
    }

    /// [`BasicAuth::check`] on the calling thread, which may spend a bcrypt
    /// run: for tests and benchmarks, not for an async task.
    pub fn check_blocking(&self, authorization: Option<&HeaderValue>) -> Access {
        match self.lookup(authorization) {
            Pending::Decided(access) => access,
            pending => self.finish(pending),
        }
    }

    /// bcrypt verifications run so far (cache hits run none).
    pub fn bcrypt_runs(&self) -> u64 {
        self.bcrypt_runs.load(Ordering::Relaxed)
    }

    fn lookup(&self, authorization: Option<&HeaderValue>) -> Pending {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return Pending::Decided(Access::Denied);
        };
        let Some(hash) = self.users.get(&user) else {
            return Pending::Bcrypt {
                password,
                known: None,
            };
        };
        let digest = self.digest(&user, hash, &password);
        if self.is_verified(&digest) {
            return Pending::Decided(Access::Granted);
        }
        Pending::Bcrypt {
            password,
            known: Some((hash.clone(), digest)),
        }
    }

    fn finish(&self, pending: Pending) -> Access {
        let (password, known) = match pending {
            Pending::Decided(access) => return access,
            Pending::Bcrypt { password, known } => (password, known),
        };
        let hash = match &known {
            // Another request with the same credentials may have verified
            // them while this one waited for its turn.
            Some((_, digest)) if self.is_verified(digest) => return Access::Granted,
            Some((hash, _)) => hash.hash.as_str(),
            None => self.decoy(),
        };
        self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
        // bcrypt compares the recomputed hash in constant time.
        let matches = bcrypt::verify(&password, hash).unwrap_or(false);
        match known {
            Some((_, digest)) if matches => {
                self.remember(digest);
                Access::Granted
            }
            _ => Access::Denied,
        }
    }

    fn decoy(&self) -> &str {
        self.decoy.get_or_init(|| {
            let mut random = [0u8; 16];
            let _ = rustls::crypto::ring::default_provider()
                .secure_random
                .fill(&mut random);
            bcrypt::hash(random, self.decoy_cost).unwrap_or_default()
        })
    }

    fn digest(&self, user: &str, hash: &BcryptHash, password: &[u8]) -> [u8; 32] {
        let mut d = Sha256::new();
        d.update(self.digest_key);
        // Lengths first, so that no two (user, hash, password) triples
        // serialize alike.
        d.update((user.len() as u64).to_le_bytes());
        d.update(user.as_bytes());
        d.update((hash.hash.len() as u64).to_le_bytes());
        d.update(hash.hash.as_bytes());
        d.update(password);
        d.finalize().into()
    }

    fn is_verified(&self, digest: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set
            .contains(digest)
    }

    fn remember(&self, digest: [u8; 32]) {
        let mut v = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if v.set.insert(digest) {
            v.order.push_back(digest);
            if v.order.len() > CACHE_ENTRIES {
                if let Some(oldest) = v.order.pop_front() {
                    v.set.remove(&oldest);
                }
            }
        }
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.verified.lock().unwrap().set.len()
    }
}

/// Verified digests, oldest first.
#[derive(Default)]
struct Verified {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

/// User and password of an `Authorization: Basic` header, read as Go's
/// `Request.BasicAuth` reads them.
fn credentials(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let bytes = value.as_bytes();
    let (scheme, encoded) = (bytes.get(..6)?, &bytes[6..]);
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// The 401 answer for [`Access::Denied`], with the `WWW-Authenticate`
/// challenge that makes clients send credentials.
pub fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"Unauthorized\n")));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cost 4, the lowest, keeps the tests fast; the logic is the same.
    fn users(list: &[(&str, &str)]) -> Users {
        Users(
            list.iter()
                .map(|(u, p)| {
                    let hash = bcrypt::hash(p, 4).unwrap().parse().unwrap();
                    (u.to_string(), hash)
                })
                .collect(),
        )
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {token}")).unwrap()
    }

    #[test]
    fn credentials_are_read_as_go_reads_them() {
        assert_eq!(
            credentials(&basic("alice", "p:w")),
            Some(("alice".into(), b"p:w".to_vec()))
        );
        let lower = HeaderValue::from_static("basic YWxpY2U6cHc=");
        assert_eq!(credentials(&lower).unwrap().0, "alice");
        for bad in [
            "Bearer YWxpY2U6cHc=",
            "Basic !!!",
            "Basic YWxpY2U=",
            "Basic",
            "",
        ] {
            assert_eq!(credentials(&HeaderValue::from_static(bad)), None, "{bad}");
        }
    }

    #[test]
    fn a_cache_hit_runs_no_second_bcrypt() {
        let auth = BasicAuth::new(&users(&[("alice", "secret"), ("bob", "other")])).unwrap();
        let ok = basic("alice", "secret");
        assert_eq!(auth.check_blocking(Some(&ok)), Access::Granted);
        assert_eq!(auth.bcrypt_runs(), 1);
        for _ in 0..5 {
            assert_eq!(auth.check_blocking(Some(&ok)), Access::Granted);
        }
        assert_eq!(auth.bcrypt_runs(), 1, "verified credentials are cached");
        // Another user's password for alice is not a hit.
        assert_eq!(
            auth.check_blocking(Some(&basic("alice", "other"))),
            Access::Denied
        );
        assert_eq!(auth.bcrypt_runs(), 2);
    }

    #[test]
    fn failures_are_not_cached_and_unknown_users_pay_a_bcrypt() {
        let auth = BasicAuth::new(&users(&[("alice", "secret")])).unwrap();
        let wrong = basic("alice", "guess");
        assert_eq!(auth.check_blocking(Some(&wrong)), Access::Denied);
        assert_eq!(auth.check_blocking(Some(&wrong)), Access::Denied);
        assert_eq!(auth.bcrypt_runs(), 2);
        // An unknown user costs the same bcrypt run as a known one.
        assert_eq!(
            auth.check_blocking(Some(&basic("mallory", "secret"))),
            Access::Denied
        );
        assert_eq!(auth.bcrypt_runs(), 3);
        // No header, or another scheme: no bcrypt at all.
        assert_eq!(auth.check_blocking(None), Access::Denied);
        assert_eq!(
            auth.check_blocking(Some(&HeaderValue::from_static("Bearer x"))),
            Access::Denied
        );
        assert_eq!(auth.bcrypt_runs(), 3);
        assert_eq!(auth.cached(), 0);
    }

    #[test]
    fn the_cache_is_bounded() {
        let auth = BasicAuth::new(&users(&[("alice", "secret")])).unwrap();
        let hash = auth.users["alice"].clone();
        for i in 0..(CACHE_ENTRIES + 10) {
            auth.remember(auth.digest("alice", &hash, format!("p{i}").as_bytes()));
        }
        assert_eq!(auth.cached(), CACHE_ENTRIES);
        // The oldest went first.
        assert!(!auth.is_verified(&auth.digest("alice", &hash, b"p0")));
        assert!(auth.is_verified(&auth.digest("alice", &hash, b"p137")));
    }

    #[tokio::test]
    async fn check_runs_bcrypt_off_the_async_thread() {
        let auth = Arc::new(BasicAuth::new(&users(&[("alice", "secret")])).unwrap());
        let ok = basic("alice", "secret");
        let both = futures::future::join_all((0..4).map(|_| auth.check(Some(&ok)))).await;
        assert!(both.iter().all(|a| *a == Access::Granted));
        // Four concurrent requests, one at a time through the gate: the
        // first verifies, the others find it in the cache.
        assert_eq!(auth.bcrypt_runs(), 1);
        assert_eq!(auth.check(Some(&basic("alice", "x"))).await, Access::Denied);
    }

    #[test]
    fn hashes_are_checked_and_never_printed() {
        let e = "plaintext".parse::<BcryptHash>().unwrap_err();
        assert!(e.contains("not a bcrypt hash"), "{e}");
        let h = bcrypt::hash("pw", 4).unwrap();
        let parsed: BcryptHash = h.parse().unwrap();
        assert_eq!(format!("{parsed:?}"), "<secret>");
        let e = serde_norway::from_str::<Users>("a: x\n").unwrap_err();
        assert!(e.to_string().contains("line 1 column 4"), "{e}");
        let e = serde_norway::from_str::<Users>("'a:b': x\n").unwrap_err();
        assert!(e.to_string().contains("colon"), "{e}");
    }

    #[test]
    fn the_challenge_is_a_401_with_www_authenticate() {
        let r = unauthorized();
        assert_eq!(r.status(), 401);
        assert!(r.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic "));
    }
}
