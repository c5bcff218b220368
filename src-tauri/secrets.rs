//! Secrets of the desktop app (provider API keys, the key that encrypts saved forge tokens, the
//! HTTP API's token secret) in the operating system's credential store, never in a file or a
//! log: the Secret Service on Linux desktops (the kernel keyutils store where there is none,
//! which keeps them only until the machine restarts), the macOS Keychain, the Windows
//! Credential Manager.

use std::sync::Arc;

use keyring_core::{Entry, Error as KeyringError};

/// The service name under which every Lucid secret is stored.
pub const SERVICE: &str = "dev.lucid.desktop";

/// Which store holds the secrets, for the settings page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub enum StoreKind {
    SecretService,
    KernelKeyutils,
    MacosKeychain,
    WindowsCredentialManager,
    /// Tests only: an in-memory store.
    Memory,
}

impl StoreKind {
    /// What a user should know about where secrets live.
    pub fn note(self) -> Option<&'static str> {
        match self {
            StoreKind::KernelKeyutils => Some(
                "No Secret Service (e.g. GNOME Keyring) is running: secrets are kept in the \
                 kernel keyring and last until this machine restarts.",
            ),
            StoreKind::Memory => Some("Secrets are kept in memory only (test store)."),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the credential store is not available: {0}")]
    Unavailable(String),
    #[error("could not use the credential store: {0}")]
    Store(String),
}

/// Access to the app's secrets.
#[derive(Clone)]
pub struct Secrets {
    kind: StoreKind,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").field("kind", &self.kind).finish()
    }
}

impl Secrets {
    /// Selects the platform's store (once per process).
    pub fn open_platform_store() -> Result<Self, SecretsError> {
        let kind = platform::install()?;
        Ok(Self { kind })
    }

    /// Uses keyring-core's in-memory mock store (tests).
    pub fn open_memory_store() -> Self {
        keyring_core::set_default_store(keyring_core::mock::Store::new().expect("mock store"));
        Self {
            kind: StoreKind::Memory,
        }
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// The secret named `name`, if set.
    pub fn get(&self, name: &str) -> Result<Option<String>, SecretsError> {
        match entry(name)?.get_password() {
            Ok(value) => Ok(Some(value)),
            Err(KeyringError::NoEntry) => Ok(None),
            Err(e) => Err(SecretsError::Store(e.to_string())),
        }
    }

    /// Stores `value` under `name` (an empty value deletes it).
    pub fn set(&self, name: &str, value: &str) -> Result<(), SecretsError> {
        if value.is_empty() {
            return self.delete(name);
        }
        entry(name)?
            .set_password(value)
            .map_err(|e| SecretsError::Store(e.to_string()))
    }

    pub fn delete(&self, name: &str) -> Result<(), SecretsError> {
        match entry(name)?.delete_credential() {
            Ok(()) | Err(KeyringError::NoEntry) => Ok(()),
            Err(e) => Err(SecretsError::Store(e.to_string())),
        }
    }

    /// The secret `name`, generated (32 random bytes, hex) and stored on first use.
    pub fn get_or_generate(&self, name: &str) -> Result<String, SecretsError> {
        if let Some(existing) = self.get(name)? {
            return Ok(existing);
        }
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let value = hex::encode(bytes);
        self.set(name, &value)?;
        Ok(value)
    }
}

fn entry(name: &str) -> Result<Entry, SecretsError> {
    Entry::new(SERVICE, name).map_err(|e| SecretsError::Store(e.to_string()))
}

/// Whether a freshly installed store answers (a missing entry is an answer).
fn store_answers() -> bool {
    match Entry::new(SERVICE, "lucid-store-probe").and_then(|e| e.get_password()) {
        Ok(_) | Err(KeyringError::NoEntry) => true,
        Err(_) => false,
    }
}

#[cfg(target_os = "linux")]
mod platform {
    use super::*;

    pub(super) fn install() -> Result<StoreKind, SecretsError> {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
            if let Ok(store) = zbus_secret_service_keyring_store::Store::new() {
                keyring_core::set_default_store(store as Arc<keyring_core::CredentialStore>);
                if store_answers() {
                    return Ok(StoreKind::SecretService);
                }
            }
        }
        // The process may have no session keyring yet: create it before the first entry.
        let _ = linux_keyutils::KeyRing::from_special_id(
            linux_keyutils::KeyRingIdentifier::Session,
            true,
        );
        let store = linux_keyutils_keyring_store::Store::new()
            .map_err(|e| SecretsError::Unavailable(e.to_string()))?;
        keyring_core::set_default_store(store as Arc<keyring_core::CredentialStore>);
        if store_answers() {
            Ok(StoreKind::KernelKeyutils)
        } else {
            Err(SecretsError::Unavailable(
                "neither the Secret Service nor the kernel keyring answers".into(),
            ))
        }
    }
}

#[cfg(target_os = "macos")]
mod platform {
    use super::*;

    pub(super) fn install() -> Result<StoreKind, SecretsError> {
        let store = apple_native_keyring_store::keychain::Store::new()
            .map_err(|e| SecretsError::Unavailable(e.to_string()))?;
        keyring_core::set_default_store(store as Arc<keyring_core::CredentialStore>);
        Ok(StoreKind::MacosKeychain)
    }
}

#[cfg(target_os = "windows")]
mod platform {
    use super::*;

    pub(super) fn install() -> Result<StoreKind, SecretsError> {
        let store = windows_native_keyring_store::Store::new()
            .map_err(|e| SecretsError::Unavailable(e.to_string()))?;
        keyring_core::set_default_store(store as Arc<keyring_core::CredentialStore>);
        Ok(StoreKind::WindowsCredentialManager)
    }
}
