//! Branch names: a conservative subset of what `git check-ref-format --branch` accepts, checked
//! in Rust so that nothing option-like or revision-like (`-x`, `@{-1}`, `a..b`) reaches git.

use super::error::GitError;

/// Longest branch name accepted.
const MAX_BRANCH_LEN: usize = 200;

/// The branch Lucid commits a session's work to: `lucid/<first 8 characters of the id>`.
/// Characters other than ASCII letters, digits, `-` and `_` are skipped.
pub fn branch_for_session(session_id: &str) -> String {
    let short: String = session_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(8)
        .collect();
    if short.is_empty() {
        "lucid/session".to_string()
    } else {
        format!("lucid/{short}")
    }
}

/// Checks that `name` is a plain branch name: ASCII letters, digits and `-_./+`, components
/// separated by single `/`, none starting with `.` or ending with `.lock`, no `..`, not
/// starting with `-`, not ending with `.` or `/`, not `@` or `HEAD`.
pub fn validate_branch_name(name: &str) -> Result<(), GitError> {
    let reject = |reason: &str| GitError::InvalidBranch {
        name: name.chars().take(MAX_BRANCH_LEN).collect(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(reject("it is empty"));
    }
    if name.len() > MAX_BRANCH_LEN {
        return Err(reject("it is too long"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '+')))
    {
        return Err(reject(&format!("character {c:?} is not allowed")));
    }
    if name.starts_with('-') {
        return Err(reject("it must not start with '-'"));
    }
    if name == "@" || name == "HEAD" {
        return Err(reject("it is reserved"));
    }
    if name.contains("..") {
        return Err(reject("it must not contain '..'"));
    }
    if name.ends_with('.') {
        return Err(reject("it must not end with '.'"));
    }
    for component in name.split('/') {
        if component.is_empty() {
            return Err(reject("it must not start or end with '/' or contain '//'"));
        }
        if component.starts_with('.') {
            return Err(reject("a component must not start with '.'"));
        }
        if component.ends_with(".lock") {
            return Err(reject("a component must not end with '.lock'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_branch_uses_the_first_eight_characters() {
        assert_eq!(
            branch_for_session("3f2a9c1e-7b4d-4e2a-9f00-123456789abc"),
            "lucid/3f2a9c1e"
        );
        assert_eq!(branch_for_session("abc"), "lucid/abc");
        assert_eq!(branch_for_session("a/b c.d-e_f:gh"), "lucid/abcd-e_f");
        assert_eq!(branch_for_session("///"), "lucid/session");
        validate_branch_name(&branch_for_session("3f2a9c1e-7b4d")).unwrap();
    }

    #[test]
    fn accepts_ordinary_branch_names() {
        for name in [
            "main",
            "lucid/3f2a9c1e",
            "feature/x-1_2",
            "release-1.2",
            "a+b",
        ] {
            validate_branch_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn rejects_option_like_and_revision_like_names() {
        for name in [
            "",
            "-f",
            "--upload-pack=x",
            "@",
            "HEAD",
            "@{-1}",
            "a..b",
            "a b",
            "a\nb",
            "a~1",
            "a^",
            "a:b",
            "a*",
            "a?",
            "a[",
            "a\\b",
            "/a",
            "a/",
            "a//b",
            "a/.b",
            ".a",
            "a.lock",
            "a/b.lock/c",
            "a.",
            "é",
        ] {
            assert!(validate_branch_name(name).is_err(), "{name:?} was accepted");
        }
        assert!(validate_branch_name(&"a".repeat(201)).is_err());
    }
}
