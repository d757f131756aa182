//! Encryption of secrets at rest: AES-256-GCM with a random nonce per value and the owning
//! row's id as associated data, so a ciphertext copied to another row does not decrypt.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

/// The server's secret key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

const PREFIX: &str = "v1:";

impl SecretBox {
    /// A key from 32 bytes.
    pub fn new(key: &[u8; 32]) -> SecretBox {
        SecretBox {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// Parses a key given as 64 hex digits or as base64 of 32 bytes.
    pub fn parse_key(text: &str) -> anyhow::Result<[u8; 32]> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).context("hex")?
        } else {
            STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
                .context("not hex or base64")?
        };
        match <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(k) => Ok(k),
            Err(_) => bail!("must be 32 bytes (64 hex digits, or 44 characters of base64)"),
        }
    }

    /// A new random key, as base64.
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    /// Encrypts `plain`, bound to `context` (the owning row's id and purpose).
    pub fn seal(&self, context: &str, plain: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce does not fail.
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// Decrypts a value sealed for `context`.
    pub fn open(&self, context: &str, sealed: &str) -> anyhow::Result<String> {
        let body = sealed
            .strip_prefix(PREFIX)
            .context("unknown ciphertext format")?;
        let bytes = STANDARD.decode(body).context("ciphertext is not base64")?;
        if bytes.len() < 12 + 16 {
            bail!("ciphertext too short");
        }
        let (nonce, ct) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().context("nonce")?;
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!("cannot decrypt: wrong BERTH_SECRET_KEY or corrupted data")
            })?;
        String::from_utf8(plain).context("decrypted secret is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let b = SecretBox::new(&[7u8; 32]);
        let sealed = b.seal("webhook:1:secret", "hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(b.open("webhook:1:secret", &sealed).unwrap(), "hunter2");
        assert!(b.open("webhook:2:secret", &sealed).is_err());
        let other = SecretBox::new(&[8u8; 32]);
        assert!(other.open("webhook:1:secret", &sealed).is_err());
        assert_ne!(
            sealed,
            b.seal("webhook:1:secret", "hunter2"),
            "random nonce"
        );
    }

    #[test]
    fn key_parsing() {
        assert!(SecretBox::parse_key(&"ab".repeat(32)).is_ok());
        assert!(SecretBox::parse_key(&SecretBox::generate_key()).is_ok());
        assert!(SecretBox::parse_key("short").is_err());
    }
}
