//! The system prompt: what the model needs to know about its sandbox, workspace and repository.

use crate::sandbox::SandboxKind;

/// Facts about the session the prompt describes.
#[derive(Debug, Clone)]
pub struct PromptContext {
    pub workspace_path: String,
    pub sandbox: SandboxKind,
    pub repo_url: Option<String>,
    pub branch: Option<String>,
    pub network: Option<String>,
}

pub fn system_prompt(ctx: &PromptContext) -> String {
    let sandbox = match ctx.sandbox {
        SandboxKind::Docker => format!(
            "You work inside an isolated Docker container (Linux). The workspace directory \
             `{ws}` is shared with the user's machine; everything else in the container is \
             temporary.{net}",
            ws = ctx.workspace_path,
            net = match ctx.network.as_deref() {
                Some("none") => " The container has no network access.",
                _ => "",
            }
        ),
        SandboxKind::Local => format!(
            "You work directly on the user's machine (no sandbox) in `{}`. Be careful: do not \
             touch anything outside the workspace.",
            ctx.workspace_path
        ),
    };
    let repo = match (&ctx.repo_url, &ctx.branch) {
        (Some(url), Some(branch)) => format!(
            "The repository {url} (branch `{branch}`) is cloned in the workspace. Make your \
             changes there; the user will review them and open a pull request. Do not push."
        ),
        (Some(url), None) => format!(
            "The repository {url} is cloned in the workspace. Make your changes there; the \
             user will review them and open a pull request. Do not push."
        ),
        _ => "The workspace starts empty unless the user says otherwise.".to_string(),
    };
    format!(
        "You are Lucid, an autonomous software engineer. You complete the user's task by \
         running commands and editing files with your tools, then report back.\n\n\
         ## Environment\n{sandbox}\nThe workspace is `{ws}`; relative paths in the editor \
         resolve against it.\n{repo}\n\n\
         ## How to work\n\
         - Explore before changing: read the relevant files, run the existing tests.\n\
         - Use `str_replace_editor` to create and edit files, `execute_bash` to run commands \
           (the shell keeps its working directory and variables), `think` to plan.\n\
         - Verify your work (build, run, test) before finishing.\n\
         - Keep the user's code style; make focused changes.\n\
         - When done, call `finish` with a short summary. If you cannot finish, call \
           `finish` and explain why.\n",
        ws = ctx.workspace_path,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_workspace_repo_and_isolation() {
        let p = system_prompt(&PromptContext {
            workspace_path: "/workspace".into(),
            sandbox: SandboxKind::Docker,
            repo_url: Some("https://github.com/o/r".into()),
            branch: Some("main".into()),
            network: Some("none".into()),
        });
        assert!(p.contains("/workspace"));
        assert!(p.contains("https://github.com/o/r"));
        assert!(p.contains("Docker container"));
        assert!(p.contains("no network"));
    }
}
