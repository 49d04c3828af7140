//! Cryptography for data at rest: AES-256-GCM encryption of sensitive fields with a key ring
//! (rotation: the first key encrypts, every key decrypts), a keyed hash (HMAC-SHA256) to find a
//! record by an encrypted value, and random tokens.
//!
//! Ciphertext format: `v1.<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id travels with
//! the value, so rows written under an old key stay readable after a new key is put first.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{AeadCore, Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key specification {0:?} is not kid:base64(32 bytes)")]
    BadKeySpec(String),
    #[error("no field encryption key configured")]
    NoKeys,
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext was written with unknown key {0:?}")]
    UnknownKey(String),
    #[error("ciphertext failed authentication")]
    Tampered,
}

/// AES-256-GCM key ring for sensitive fields.
#[derive(Clone)]
pub struct FieldCipher {
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("FieldCipher").field("kids", &kids).finish()
    }
}

impl FieldCipher {
    /// Parses `kid:base64key,kid2:base64key2`; the first key encrypts.
    pub fn from_spec(spec: &str) -> Result<Self, CryptoError> {
        let mut keys = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kid, b64) = part
                .split_once(':')
                .ok_or_else(|| CryptoError::BadKeySpec(redact_spec(part)))?;
            let valid_kid = !kid.is_empty()
                && kid.len() <= 16
                && kid.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let bytes = STANDARD
                .decode(b64)
                .map_err(|_| CryptoError::BadKeySpec(redact_spec(part)))?;
            if !valid_kid || bytes.len() != 32 {
                return Err(CryptoError::BadKeySpec(redact_spec(part)));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| CryptoError::BadKeySpec(redact_spec(part)))?;
            keys.push((kid.to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err(CryptoError::NoKeys);
        }
        Ok(Self { keys })
    }

    /// Key id of the key that encrypts new values.
    pub fn primary_kid(&self) -> &str {
        &self.keys[0].0
    }

    pub fn encrypt(&self, plaintext: &str) -> String {
        let (kid, cipher) = &self.keys[0];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a valid key and a fresh nonce only fails for inputs over 64 GiB.
        let sealed = cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .expect("AES-GCM encryption of a short field cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("v1.{kid}.{}", URL_SAFE_NO_PAD.encode(blob))
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        let mut parts = stored.splitn(3, '.');
        let (Some("v1"), Some(kid), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Malformed);
        };
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| CryptoError::Malformed)?;
        if blob.len() < 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(12);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| CryptoError::Tampered)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Malformed)
    }

    /// True when `stored` was written under a key other than the primary one.
    pub fn needs_reencryption(&self, stored: &str) -> bool {
        stored
            .split('.')
            .nth(1)
            .is_some_and(|kid| kid != self.primary_kid())
    }
}

fn redact_spec(part: &str) -> String {
    part.split(':').next().unwrap_or_default().to_owned() + ":***"
}

/// HMAC-SHA256 over normalised values, to find rows by an encrypted field.
#[derive(Clone)]
pub struct LookupHasher {
    key: Vec<u8>,
}

impl std::fmt::Debug for LookupHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LookupHasher(***)")
    }
}

impl LookupHasher {
    pub fn from_base64(b64: &str) -> Result<Self, CryptoError> {
        let key = STANDARD
            .decode(b64.trim())
            .map_err(|_| CryptoError::BadKeySpec("lookup_key:***".into()))?;
        if key.len() < 32 {
            return Err(CryptoError::BadKeySpec("lookup_key:***".into()));
        }
        Ok(Self { key })
    }

    /// Hex HMAC of `domain` and `value`; the domain keeps phone and ID hashes apart.
    pub fn hash(&self, domain: &str, value: &str) -> String {
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The key material of one deployment.
#[derive(Debug, Clone)]
pub struct Keys {
    pub fields: FieldCipher,
    pub lookup: LookupHasher,
}

impl Keys {
    pub fn from_config(field_keys: &str, lookup_key: &str) -> Result<Self, CryptoError> {
        Ok(Self {
            fields: FieldCipher::from_spec(field_keys)?,
            lookup: LookupHasher::from_base64(lookup_key)?,
        })
    }

    /// Fresh random keys, for tests and the first embedded run.
    pub fn generate() -> (String, String) {
        (
            format!("k1:{}", STANDARD.encode(random_bytes::<32>())),
            STANDARD.encode(random_bytes::<32>()),
        )
    }

    /// Reads `{data_dir}/secrets.toml`, creating it (mode 0600) with fresh keys the first time.
    pub fn load_or_create_file(path: &Path) -> anyhow::Result<(String, String)> {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct SecretsFile {
            field_keys: String,
            lookup_key: String,
        }
        if path.exists() {
            let text = std::fs::read_to_string(path)?;
            let file: SecretsFile = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not valid: {e}", path.display()))?;
            return Ok((file.field_keys, file.lookup_key));
        }
        let (field_keys, lookup_key) = Self::generate();
        let text = format!(
            "# Generated by livecamp on first start. Keep this file secret and backed up:\n\
             # without it, encrypted ID and phone numbers cannot be read.\n{}",
            toml::to_string(&SecretsFile {
                field_keys: field_keys.clone(),
                lookup_key: lookup_key.clone(),
            })?
        );
        write_private_file(path, &text)?;
        Ok((field_keys, lookup_key))
    }
}

/// Writes a file readable by its owner only.
pub fn write_private_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A random URL-safe token with 256 bits of entropy.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        let (f, l) = Keys::generate();
        Keys::from_config(&f, &l).expect("generated keys are valid")
    }

    #[test]
    fn round_trip_and_nonce_uniqueness() {
        let k = keys();
        let a = k.fields.encrypt("220102199003071234");
        let b = k.fields.encrypt("220102199003071234");
        assert_ne!(a, b, "each encryption uses a fresh nonce");
        assert!(a.starts_with("v1.k1."));
        assert_eq!(k.fields.decrypt(&a).unwrap(), "220102199003071234");
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let spec_old = Keys::generate().0;
        let spec_new = Keys::generate().0.replace("k1:", "k2:");
        let ring_old = FieldCipher::from_spec(&spec_old).unwrap();
        let stored = ring_old.encrypt("13800001234");
        // Put the new key first and keep the old one: old rows still decrypt.
        let ring_new = FieldCipher::from_spec(&format!("{spec_new},{spec_old}")).unwrap();
        assert_eq!(ring_new.primary_kid(), "k2");
        assert_eq!(ring_new.decrypt(&stored).unwrap(), "13800001234");
        assert!(ring_new.needs_reencryption(&stored));
        assert!(!ring_new.needs_reencryption(&ring_new.encrypt("x")));
        // A ring without the old key says which key is missing.
        let only_new = FieldCipher::from_spec(&spec_new).unwrap();
        assert!(matches!(
            only_new.decrypt(&stored),
            Err(CryptoError::UnknownKey(k)) if k == "k1"
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let k = keys();
        let mut stored = k.fields.encrypt("secret");
        let last = stored.pop().unwrap();
        stored.push(if last == 'A' { 'B' } else { 'A' });
        assert!(k.fields.decrypt(&stored).is_err());
        assert!(matches!(
            k.fields.decrypt("garbage"),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn bad_specs_are_rejected_without_echoing_the_key() {
        let err = FieldCipher::from_spec("k1:c2hvcnQ=")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("c2hvcnQ"));
        assert!(FieldCipher::from_spec("").is_err());
        assert!(FieldCipher::from_spec("nocolon").is_err());
    }

    #[test]
    fn lookup_hash_is_keyed_and_domain_separated() {
        let a = keys();
        let b = keys();
        assert_eq!(a.lookup.hash("id", "x"), a.lookup.hash("id", "x"));
        assert_ne!(a.lookup.hash("id", "x"), a.lookup.hash("phone", "x"));
        assert_ne!(a.lookup.hash("id", "x"), b.lookup.hash("id", "x"));
    }
}
