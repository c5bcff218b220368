//! Validation of what Lucid's commits are made of: the identity and the message.

use super::error::GitError;
use super::GitIdentity;

/// Longest commit message accepted.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest identity name or e-mail accepted.
const MAX_IDENTITY_CHARS: usize = 256;

pub(super) fn validate_identity(identity: &GitIdentity) -> Result<(), GitError> {
    for (what, value) in [("name", &identity.name), ("e-mail", &identity.email)] {
        let value = value.trim();
        if value.is_empty() {
            return Err(GitError::InvalidInput(format!(
                "the commit author {what} is empty"
            )));
        }
        if value.chars().count() > MAX_IDENTITY_CHARS
            || value
                .chars()
                .any(|c| c.is_control() || c == '<' || c == '>')
        {
            return Err(GitError::InvalidInput(format!(
                "the commit author {what} is too long or contains '<', '>' or control characters"
            )));
        }
    }
    Ok(())
}

pub(super) fn validate_message(message: &str) -> Result<(), GitError> {
    if message.trim().is_empty() {
        return Err(GitError::InvalidInput("the commit message is empty".into()));
    }
    if message.len() > MAX_MESSAGE_BYTES || message.contains('\0') {
        return Err(GitError::InvalidInput(
            "the commit message is too long or contains NUL characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, email: &str) -> GitIdentity {
        GitIdentity {
            name: name.into(),
            email: email.into(),
        }
    }

    #[test]
    fn identity_and_message_are_validated() {
        validate_identity(&id("Lucid", "lucid@example.com")).unwrap();
        assert!(validate_identity(&id("", "a@b")).is_err());
        assert!(validate_identity(&id("a", " ")).is_err());
        assert!(validate_identity(&id("a <evil@x>", "a@b")).is_err());
        assert!(validate_identity(&id("a\nb", "a@b")).is_err());
        validate_message("Fix the bug\n\n# Details kept").unwrap();
        assert!(validate_message("  \n").is_err());
        assert!(validate_message("a\0b").is_err());
        assert!(validate_message(&"x".repeat(MAX_MESSAGE_BYTES + 1)).is_err());
    }
}
