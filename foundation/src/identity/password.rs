//! Password hashing with argon2id (PHC strings). Hashing is CPU- and memory-heavy on purpose,
//! so callers run it on the blocking pool.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, iterations: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        Ok(Self { params })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    pub fn hash(&self, password: &str) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        self.argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
    }

    /// Verifies with the parameters recorded in the stored hash, so raising the cost later keeps
    /// old hashes working. A malformed stored hash verifies as false.
    pub fn verify(&self, password: &str, stored: &str) -> bool {
        match PasswordHash::new(stored) {
            Ok(parsed) => self
                .argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Spends the time of one verification; used for unknown usernames so timing does not tell
    /// which usernames exist.
    pub fn waste_verification(&self, password: &str) {
        let dummy =
            DUMMY_HASH.get_or_init(|| self.hash("not-a-real-password-1").unwrap_or_default());
        let _ = self.verify(password, dummy);
    }
}

static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let hasher = PasswordHasher::new(64, 1).unwrap();
        let stored = hasher.hash("abc12345").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(hasher.verify("abc12345", &stored));
        assert!(!hasher.verify("abc12346", &stored));
        assert!(!hasher.verify("abc12345", "not a hash"));
        // A hash made with other costs still verifies.
        let stronger = PasswordHasher::new(128, 2).unwrap();
        assert!(stronger.verify("abc12345", &stored));
    }
}
