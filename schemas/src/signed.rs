//! Signed objects the server distributes to agents (each tenant's policy, the operator's rule files):
//! an Ed25519 signature over a domain-separated message, so that whoever can write to the bus (the
//! key-value bucket, the object store) still cannot change what agents run. Agents verify against the
//! server key they were given (`cordon-agent --server-key`), never against a key the object carries.
//!
//! The signed message is `domain || 0x00 || payload`: a policy's signature cannot pass as a rule
//! bundle's. The payload is the exact JSON text that was signed (no re-serialisation).

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// The domain of a tenant's published policy.
pub const POLICY_DOMAIN: &str = "cordon.policy.v1";
/// The domain of the operator's rule bundle.
pub const RULES_DOMAIN: &str = "cordon.rules.v1";

/// Why a signed object is refused, or a key unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    /// The key bytes are not a key.
    #[error("bad key: {0}")]
    BadKey(String),
    /// Signed for another purpose.
    #[error("signed as {found:?}, expected {expected:?}")]
    Domain {
        /// What it was signed as.
        found: String,
        /// What the reader expects.
        expected: &'static str,
    },
    /// Signed by a key that is not the trusted one.
    #[error("signed by {found}, not by the server key {trusted}")]
    Signer {
        /// The object's key.
        found: String,
        /// The trusted key.
        trusted: String,
    },
    /// The signature does not verify over the payload.
    #[error("the signature does not match the payload")]
    Signature,
}

/// The server's signing key (Ed25519, PKCS#8).
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public())
    }
}

impl SigningKey {
    /// A new key; also its PKCS#8 bytes, to keep.
    pub fn generate() -> Result<(Self, Vec<u8>), SignError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| SignError::BadKey("no randomness".into()))?;
        let key = Self::from_pkcs8(pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    /// The key in PKCS#8 bytes.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self, SignError> {
        Ed25519KeyPair::from_pkcs8(bytes)
            .map(|pair| Self { pair })
            .map_err(|e| SignError::BadKey(e.to_string()))
    }

    /// The public key, as lower-case hex (what agents are given).
    pub fn public(&self) -> String {
        hex(self.pair.public_key().as_ref())
    }

    /// Signs `payload` (JSON text) for `domain`.
    pub fn sign(&self, domain: &str, payload: String) -> Signed {
        let sig = self.pair.sign(&message(domain, &payload));
        Signed { domain: domain.to_owned(), key: self.public(), sig: hex(sig.as_ref()), payload }
    }
}

/// A signed object as it travels.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    /// What it is ([`POLICY_DOMAIN`], [`RULES_DOMAIN`]).
    pub domain: String,
    /// The signer's public key (hex): informative; verification uses the trusted key.
    pub key: String,
    /// The Ed25519 signature (hex).
    pub sig: String,
    /// The signed JSON text.
    pub payload: String,
}

impl Signed {
    /// The payload, if this is a `domain` object signed by `trusted` (hex public key).
    pub fn verify(&self, domain: &'static str, trusted: &str) -> Result<&str, SignError> {
        if self.domain != domain {
            return Err(SignError::Domain { found: self.domain.clone(), expected: domain });
        }
        if !self.key.eq_ignore_ascii_case(trusted) {
            return Err(SignError::Signer { found: self.key.clone(), trusted: trusted.to_owned() });
        }
        verify_detached(domain, trusted, &self.payload, &self.sig)?;
        Ok(&self.payload)
    }
}

/// Checks `sig` (hex), by `key` (hex), over `domain`'s message for `payload`.
pub fn verify_detached(domain: &str, key: &str, payload: &str, sig: &str) -> Result<(), SignError> {
    let key = unhex(key).ok_or_else(|| SignError::BadKey(format!("{key:?} is not hex")))?;
    let sig = unhex(sig).ok_or(SignError::Signature)?;
    UnparsedPublicKey::new(&ED25519, key)
        .verify(&message(domain, payload), &sig)
        .map_err(|_| SignError::Signature)
}

/// Checks that `s` is a usable public key (hex of 32 bytes).
pub fn check_public_key(s: &str) -> Result<(), SignError> {
    match unhex(s) {
        Some(b) if b.len() == 32 => Ok(()),
        _ => Err(SignError::BadKey(format!("{s:?} is not a server key (64 hex digits)"))),
    }
}

fn message(domain: &str, payload: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + 1 + payload.len());
    m.extend_from_slice(domain.as_bytes());
    m.push(0);
    m.extend_from_slice(payload.as_bytes());
    m
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_object_verifies_only_as_itself_from_its_signer() {
        let (server, pkcs8) = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(again.public(), server.public());
        let s = server.sign(POLICY_DOMAIN, r#"{"version":2}"#.to_owned());
        assert_eq!(s.verify(POLICY_DOMAIN, &server.public()).unwrap(), r#"{"version":2}"#);
        assert!(check_public_key(&server.public()).is_ok());

        // Another purpose, another signer, a changed payload, a signer field that lies.
        assert!(matches!(s.verify(RULES_DOMAIN, &server.public()), Err(SignError::Domain { .. })));
        let (attacker, _) = SigningKey::generate().unwrap();
        assert!(matches!(s.verify(POLICY_DOMAIN, &attacker.public()), Err(SignError::Signer { .. })));
        let mut edited = s.clone();
        edited.payload = r#"{"version":3}"#.to_owned();
        assert_eq!(edited.verify(POLICY_DOMAIN, &server.public()), Err(SignError::Signature));
        let mut forged = attacker.sign(POLICY_DOMAIN, r#"{"version":9}"#.to_owned());
        forged.key = server.public();
        assert_eq!(forged.verify(POLICY_DOMAIN, &server.public()), Err(SignError::Signature));
        assert!(check_public_key("abc").is_err());
    }
}

/// The domain of an agent's enrollment proof.
pub const ENROLL_DOMAIN: &str = "cordon.enroll.v1";

/// An agent's own key (Ed25519), made at enrollment and kept on the endpoint: its public half is the
/// agent's identity ([`agent_id`]), and it proves possession by signing the enrollment request.
pub struct AgentKey {
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgentKey({})", self.public())
    }
}

impl AgentKey {
    /// A new key from the system's randomness.
    pub fn generate() -> Result<Self, SignError> {
        use ring::rand::SecureRandom;
        let mut seed = [0u8; 32];
        SystemRandom::new().fill(&mut seed).map_err(|_| SignError::BadKey("no randomness".into()))?;
        Self::from_seed(seed)
    }

    /// The key of a 32-byte seed (as kept on disk).
    pub fn from_seed(seed: [u8; 32]) -> Result<Self, SignError> {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| SignError::BadKey(e.to_string()))?;
        Ok(Self { seed, pair })
    }

    /// The seed, to keep (secret).
    pub fn seed(&self) -> [u8; 32] {
        self.seed
    }

    /// The public key, hex.
    pub fn public(&self) -> String {
        hex(self.pair.public_key().as_ref())
    }

    /// Its signature (hex) over `domain` and `payload`, checked by [`verify_detached`].
    pub fn sign_detached(&self, domain: &str, payload: &str) -> String {
        hex(self.pair.sign(&message(domain, payload)).as_ref())
    }

    /// The proof of possession for enrolling with `token` (hex signature).
    pub fn enroll_proof(&self, token: &str) -> String {
        hex(self.pair.sign(&enroll_message(token, &self.public())).as_ref())
    }
}

fn enroll_message(token: &str, public_key: &str) -> Vec<u8> {
    message(ENROLL_DOMAIN, &format!("{token}\n{}", public_key.to_ascii_lowercase()))
}

/// Checks an enrollment proof: `proof` is `public_key`'s signature over the token and the key.
pub fn verify_enroll_proof(token: &str, public_key: &str, proof: &str) -> Result<(), SignError> {
    check_public_key(public_key)?;
    let key = unhex(public_key).ok_or_else(|| SignError::BadKey(public_key.to_owned()))?;
    let sig = unhex(proof).ok_or(SignError::Signature)?;
    UnparsedPublicKey::new(&ED25519, key)
        .verify(&enroll_message(token, public_key), &sig)
        .map_err(|_| SignError::Signature)
}

/// The agent id a public key gives: `a` and the first 20 hex digits (80 bits) of its SHA-256, so an
/// agent cannot choose its id, and two keys do not share one.
pub fn agent_id(public_key: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public_key.to_ascii_lowercase().as_bytes());
    format!("a{}", &hex(d.as_ref())[..20])
}

#[cfg(test)]
mod enroll_tests {
    use super::*;

    #[test]
    fn an_enrollment_proof_binds_the_token_to_the_key_that_signed_it() {
        let k = AgentKey::generate().unwrap();
        let again = AgentKey::from_seed(k.seed()).unwrap();
        assert_eq!(again.public(), k.public());
        let proof = k.enroll_proof("cet_abc");
        assert!(verify_enroll_proof("cet_abc", &k.public(), &proof).is_ok());
        assert_eq!(verify_enroll_proof("cet_other", &k.public(), &proof), Err(SignError::Signature));
        let other = AgentKey::generate().unwrap();
        assert_eq!(verify_enroll_proof("cet_abc", &other.public(), &proof), Err(SignError::Signature));
        let id = agent_id(&k.public());
        assert_eq!(id.len(), 21);
        assert!(crate::AgentId::new(id.clone()).is_ok(), "usable in subjects");
        assert_ne!(id, agent_id(&other.public()));
    }
}
