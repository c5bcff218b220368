//! Encryption of forge tokens at rest, byte-compatible with the original engine and frontend.
//!
//! Format: AES-256-CBC with PKCS#7 padding; key = SHA-256 of the UTF-8 bytes of
//! `ENCRYPTION_KEY`; a fresh random 16-byte IV per encryption; ciphertext and IV stored as
//! lowercase hex in two separate values (`access_token_encrypted`, `iv`).
//!
//! The format has no MAC (inherited from the original for compatibility): a wrong key or a
//! tampered row is detected only through bad padding or invalid UTF-8, and every such failure
//! is reported as the same [`CryptoError::Undecryptable`] so callers cannot tell them apart.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use rand::RngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// AES block size and IV length in bytes.
const BLOCK: usize = 16;

/// Why a token could not be encrypted or decrypted. Messages never contain key material,
/// plaintext or ciphertext.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    #[error(
        "ENCRYPTION_KEY is not set: set it (to the same value as the frontend's ENCRYPTION_KEY) to store forge tokens"
    )]
    MissingKey,
    #[error("stored {field} is not valid hex")]
    InvalidHex { field: &'static str },
    #[error("stored iv must be 16 bytes (32 hex characters), got {len} bytes")]
    InvalidIvLength { len: usize },
    #[error("stored ciphertext length {len} is not a non-zero multiple of 16 bytes")]
    InvalidCiphertextLength { len: usize },
    /// Bad padding or non-UTF-8 plaintext: a wrong ENCRYPTION_KEY or a corrupted row.
    #[error("stored token cannot be decrypted (wrong ENCRYPTION_KEY or corrupted data)")]
    Undecryptable,
}

/// A token encrypted for storage: lowercase hex ciphertext and lowercase hex IV.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedToken {
    /// Hex ciphertext (column `access_token_encrypted`).
    pub ciphertext_hex: String,
    /// Hex IV, 32 characters (column `iv`).
    pub iv_hex: String,
}

impl std::fmt::Debug for EncryptedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedToken")
            .field("ciphertext_len", &self.ciphertext_hex.len())
            .field("iv_hex", &self.iv_hex)
            .finish()
    }
}

/// Encrypts and decrypts forge tokens with the key derived from `ENCRYPTION_KEY`.
///
/// Built without a key it still exists (so the engine can start), but every operation fails
/// with [`CryptoError::MissingKey`].
#[derive(Clone)]
pub struct TokenCipher {
    key: Option<[u8; 32]>,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCipher")
            .field("configured", &self.key.is_some())
            .finish()
    }
}

impl TokenCipher {
    /// Derives the AES key as SHA-256 of the UTF-8 bytes of `encryption_key`. `None` or an
    /// empty string leave the cipher unconfigured.
    pub fn new(encryption_key: Option<&str>) -> Self {
        let key = encryption_key
            .filter(|k| !k.is_empty())
            .map(|k| Sha256::digest(k.as_bytes()).into());
        Self { key }
    }

    /// Whether an `ENCRYPTION_KEY` was provided.
    pub fn is_configured(&self) -> bool {
        self.key.is_some()
    }

    fn key(&self) -> Result<&[u8; 32], CryptoError> {
        self.key.as_ref().ok_or(CryptoError::MissingKey)
    }

    /// Encrypts `plaintext` with a fresh random IV.
    pub fn encrypt(&self, plaintext: &str) -> Result<EncryptedToken, CryptoError> {
        let key = self.key()?;
        let mut iv = [0u8; BLOCK];
        rand::rng().fill_bytes(&mut iv);
        let ciphertext = Aes256CbcEnc::new(key.into(), &iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes());
        Ok(EncryptedToken {
            ciphertext_hex: hex::encode(ciphertext),
            iv_hex: hex::encode(iv),
        })
    }

    /// Decrypts a stored token. Any malformed input is an error, never a panic.
    pub fn decrypt(&self, ciphertext_hex: &str, iv_hex: &str) -> Result<String, CryptoError> {
        let key = self.key()?;
        let iv = hex::decode(iv_hex.trim()).map_err(|_| CryptoError::InvalidHex { field: "iv" })?;
        let iv: [u8; BLOCK] = iv
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::InvalidIvLength { len: iv.len() })?;
        let ciphertext =
            hex::decode(ciphertext_hex.trim()).map_err(|_| CryptoError::InvalidHex {
                field: "access_token_encrypted",
            })?;
        if ciphertext.is_empty() || ciphertext.len() % BLOCK != 0 {
            return Err(CryptoError::InvalidCiphertextLength {
                len: ciphertext.len(),
            });
        }
        let plaintext = Aes256CbcDec::new(key.into(), &iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext)
            .map_err(|_| CryptoError::Undecryptable)?;
        String::from_utf8(plaintext).map_err(|_| CryptoError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    const KEY: &str = "a-shared-secret-between-frontend-and-engine";
    const TOKEN: &str = "ghp_fake-16C7e42F-292c6912-E7710c83-834A";

    fn key_hex(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    /// Runs `openssl enc -aes-256-cbc` with an explicit key and IV (no salt, raw bytes).
    fn openssl(decrypt: bool, key: &str, iv_hex: &str, input: &[u8]) -> Vec<u8> {
        let mut cmd = Command::new("/usr/bin/openssl");
        cmd.args(["enc", "-aes-256-cbc", "-K", &key_hex(key), "-iv", iv_hex]);
        if decrypt {
            cmd.arg("-d");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    #[test]
    fn round_trip() {
        let c = TokenCipher::new(Some(KEY));
        for plain in [TOKEN, "", "x", "exactly-16-bytes", "ünïcødé token ✓"] {
            let enc = c.encrypt(plain).unwrap();
            assert_eq!(c.decrypt(&enc.ciphertext_hex, &enc.iv_hex).unwrap(), plain);
        }
    }

    #[test]
    fn output_is_lowercase_hex_with_a_32_char_iv() {
        let enc = TokenCipher::new(Some(KEY)).encrypt(TOKEN).unwrap();
        assert_eq!(enc.iv_hex.len(), 32);
        // 40-byte token → 48 bytes with PKCS#7 padding → 96 hex characters.
        assert_eq!(enc.ciphertext_hex.len(), 96);
        for s in [&enc.iv_hex, &enc.ciphertext_hex] {
            assert!(s
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        }
    }

    #[test]
    fn every_call_uses_a_fresh_iv_and_gives_a_different_ciphertext() {
        let c = TokenCipher::new(Some(KEY));
        let a = c.encrypt(TOKEN).unwrap();
        let b = c.encrypt(TOKEN).unwrap();
        assert_ne!(a.iv_hex, b.iv_hex);
        assert_ne!(a.ciphertext_hex, b.ciphertext_hex);
        assert_eq!(c.decrypt(&a.ciphertext_hex, &a.iv_hex).unwrap(), TOKEN);
        assert_eq!(c.decrypt(&b.ciphertext_hex, &b.iv_hex).unwrap(), TOKEN);
    }

    #[test]
    fn missing_key_is_a_clear_error() {
        for c in [TokenCipher::new(None), TokenCipher::new(Some(""))] {
            assert!(!c.is_configured());
            let err = c.encrypt(TOKEN).unwrap_err();
            assert_eq!(err, CryptoError::MissingKey);
            assert!(err.to_string().contains("ENCRYPTION_KEY"));
            assert_eq!(
                c.decrypt("00", "00000000000000000000000000000000")
                    .unwrap_err(),
                CryptoError::MissingKey
            );
        }
    }

    #[test]
    fn corrupted_rows_are_errors_not_panics() {
        let c = TokenCipher::new(Some(KEY));
        let enc = c.encrypt(TOKEN).unwrap();
        let iv = enc.iv_hex.as_str();
        let ct = enc.ciphertext_hex.as_str();

        assert!(matches!(
            c.decrypt(ct, "zz").unwrap_err(),
            CryptoError::InvalidHex { field: "iv" }
        ));
        assert_eq!(
            c.decrypt(ct, "abcd").unwrap_err(),
            CryptoError::InvalidIvLength { len: 2 }
        );
        assert!(matches!(
            c.decrypt("not hex!", iv).unwrap_err(),
            CryptoError::InvalidHex { .. }
        ));
        assert_eq!(
            c.decrypt(&ct[..ct.len() - 2], iv).unwrap_err(),
            CryptoError::InvalidCiphertextLength { len: 47 }
        );
        assert_eq!(
            c.decrypt("", iv).unwrap_err(),
            CryptoError::InvalidCiphertextLength { len: 0 }
        );
        // Flipping a bit of the last block destroys the padding.
        let mut bytes = hex::decode(ct).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert_eq!(
            c.decrypt(&hex::encode(&bytes), iv).unwrap_err(),
            CryptoError::Undecryptable
        );
        // Valid padding but invalid UTF-8 plaintext.
        let raw = Aes256CbcEnc::new(c.key().unwrap().into(), &[7u8; 16].into())
            .encrypt_padded_vec_mut::<Pkcs7>(&[0xff, 0xfe, 0x80]);
        assert_eq!(
            c.decrypt(&hex::encode(raw), &hex::encode([7u8; 16]))
                .unwrap_err(),
            CryptoError::Undecryptable
        );
    }

    #[test]
    fn a_wrong_key_never_yields_the_token() {
        let right = TokenCipher::new(Some(KEY));
        let wrong = TokenCipher::new(Some("another key"));
        // Bad padding is the usual outcome; whatever happens, the token must not come back.
        for _ in 0..64 {
            let enc = right.encrypt(TOKEN).unwrap();
            if let Ok(text) = wrong.decrypt(&enc.ciphertext_hex, &enc.iv_hex) {
                assert_ne!(text, TOKEN);
            }
        }
    }

    #[test]
    fn uppercase_hex_from_other_writers_is_accepted() {
        let c = TokenCipher::new(Some(KEY));
        let enc = c.encrypt(TOKEN).unwrap();
        let up = c
            .decrypt(
                &enc.ciphertext_hex.to_uppercase(),
                &enc.iv_hex.to_uppercase(),
            )
            .unwrap();
        assert_eq!(up, TOKEN);
    }

    #[test]
    fn openssl_encrypts_and_token_cipher_decrypts() {
        let iv_hex = "000102030405060708090a0b0c0d0e0f";
        let ciphertext = openssl(false, KEY, iv_hex, TOKEN.as_bytes());
        let c = TokenCipher::new(Some(KEY));
        assert_eq!(c.decrypt(&hex::encode(&ciphertext), iv_hex).unwrap(), TOKEN);
    }

    #[test]
    fn token_cipher_encrypts_and_openssl_decrypts() {
        let c = TokenCipher::new(Some(KEY));
        let enc = c.encrypt(TOKEN).unwrap();
        let ciphertext = hex::decode(&enc.ciphertext_hex).unwrap();
        let plain = openssl(true, KEY, &enc.iv_hex, &ciphertext);
        assert_eq!(plain, TOKEN.as_bytes());
        // Same key, same IV → identical bytes to openssl's own encryption.
        assert_eq!(
            openssl(false, KEY, &enc.iv_hex, TOKEN.as_bytes()),
            ciphertext
        );
    }
}
