//! The desktop app's secrets in the real platform credential store. On a Linux machine
//! without a Secret Service (CI, servers) that is the kernel keyutils store, and the settings
//! page says that secrets last until the machine restarts.

use lucid_desktop::secrets::{Secrets, StoreKind};

#[test]
fn secrets_round_trip_through_the_platform_store() {
    // No desktop session here: the Secret Service is not asked.
    std::env::remove_var("DBUS_SESSION_BUS_ADDRESS");
    let secrets = Secrets::open_platform_store().expect("a credential store");
    assert_eq!(secrets.kind(), StoreKind::KernelKeyutils);
    assert!(secrets.kind().note().unwrap().contains("restarts"));

    let name = format!("lucid-test-{}", std::process::id());
    assert_eq!(secrets.get(&name).unwrap(), None);
    secrets.set(&name, "sk-fake-keyring-value").unwrap();
    assert_eq!(
        secrets.get(&name).unwrap().as_deref(),
        Some("sk-fake-keyring-value")
    );
    // A second handle (as after an app restart in the same login session) sees it too.
    let again = Secrets::open_platform_store().unwrap();
    assert_eq!(
        again.get(&name).unwrap().as_deref(),
        Some("sk-fake-keyring-value")
    );
    secrets.set(&name, "").unwrap();
    assert_eq!(secrets.get(&name).unwrap(), None);
    secrets.delete(&name).unwrap();

    let generated = format!("{name}-generated");
    let first = secrets.get_or_generate(&generated).unwrap();
    assert_eq!(first.len(), 64);
    assert_eq!(secrets.get_or_generate(&generated).unwrap(), first);
    secrets.delete(&generated).unwrap();
}
