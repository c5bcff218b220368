//! What each Supabase migration file creates, read from the SQL itself: the tables of schema
//! `public` with their columns (from `create table` and `alter table … add column`), and the
//! functions (`create [or replace] function public.…`). The files are embedded at build time
//! (see `build.rs`), so the manifest always matches `supabase/migrations/`.
//!
//! The reader understands the SQL the migrations use: `--` and `/* */` comments, quoted
//! strings and identifiers, and dollar-quoted bodies (skipped whole). Statements of other
//! kinds are ignored.

include!(concat!(env!("OUT_DIR"), "/supabase_migrations.rs"));

/// One migration file and what it adds to schema `public`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The file name, e.g. `20261204000001_initial_schema.sql`.
    pub file: String,
    /// Tables (created here, or given columns here) and the columns this file adds.
    pub tables: Vec<TableColumns>,
    pub functions: Vec<Function>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumns {
    pub table: String,
    /// Whether this file creates the table (else it only adds columns).
    pub creates: bool,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// Trigger functions cannot be called through PostgREST.
    pub returns_trigger: bool,
}

/// The embedded migrations, in application order.
pub fn migrations() -> Vec<Migration> {
    MIGRATION_FILES
        .iter()
        .map(|(file, sql)| parse_migration(file, sql))
        .collect()
}

/// Reads what one migration file creates.
pub fn parse_migration(file: &str, sql: &str) -> Migration {
    let mut migration = Migration {
        file: file.to_string(),
        tables: Vec::new(),
        functions: Vec::new(),
    };
    for statement in statements(sql) {
        let tokens = tokenize(&statement);
        let words: Vec<String> = tokens.iter().map(|t| t.to_ascii_lowercase()).collect();
        let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
        if w(0) == "create" {
            let mut i = 1;
            if w(i) == "or" && w(i + 1) == "replace" {
                i += 2;
            }
            if matches!(w(i), "temp" | "temporary" | "unlogged") {
                i += 1;
            }
            match w(i) {
                "table" => {
                    i += 1;
                    if w(i) == "if" && w(i + 1) == "not" && w(i + 2) == "exists" {
                        i += 3;
                    }
                    if let Some((table, next)) = public_name(&tokens, i) {
                        if tokens.get(next).map(String::as_str) == Some("(") {
                            let columns = column_items(&tokens[next..])
                                .into_iter()
                                .filter_map(|item| column_name(&item))
                                .collect();
                            add_columns(&mut migration, &table, true, columns);
                        }
                    }
                }
                "function" => {
                    if let Some((name, _)) = public_name(&tokens, i + 1) {
                        let returns_trigger = words
                            .windows(2)
                            .any(|pair| pair[0] == "returns" && pair[1] == "trigger");
                        if !migration.functions.iter().any(|f| f.name == name) {
                            migration.functions.push(Function {
                                name,
                                returns_trigger,
                            });
                        }
                    }
                }
                _ => {}
            }
        } else if w(0) == "alter" && w(1) == "table" {
            let mut i = 2;
            if w(i) == "if" && w(i + 1) == "exists" {
                i += 2;
            }
            if w(i) == "only" {
                i += 1;
            }
            if let Some((table, next)) = public_name(&tokens, i) {
                let columns = top_level_items(&tokens[next..])
                    .into_iter()
                    .filter_map(|clause| added_column(&clause))
                    .collect::<Vec<_>>();
                if !columns.is_empty() {
                    add_columns(&mut migration, &table, false, columns);
                }
            }
        }
    }
    migration
}

fn add_columns(migration: &mut Migration, table: &str, creates: bool, columns: Vec<String>) {
    let entry = match migration.tables.iter_mut().find(|t| t.table == table) {
        Some(entry) => entry,
        None => {
            migration.tables.push(TableColumns {
                table: table.to_string(),
                creates,
                columns: Vec::new(),
            });
            migration.tables.last_mut().expect("just pushed")
        }
    };
    entry.creates |= creates;
    for column in columns {
        if !entry.columns.contains(&column) {
            entry.columns.push(column);
        }
    }
}

/// A table or function name at `tokens[i]` in schema `public` (written `public.name` or just
/// `name`), and the index after it. Names in other schemas give `None`.
fn public_name(tokens: &[String], i: usize) -> Option<(String, usize)> {
    let first = identifier(tokens.get(i)?)?;
    if tokens.get(i + 1).map(String::as_str) == Some(".") {
        let second = identifier(tokens.get(i + 2)?)?;
        (first == "public").then_some((second, i + 3))
    } else {
        Some((first, i + 1))
    }
}

/// An identifier, unquoted (`"Name"` keeps its case; bare words are folded to lower case).
fn identifier(token: &str) -> Option<String> {
    if let Some(inner) = token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Some(inner.replace("\"\"", "\""));
    }
    let ok = token
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    ok.then(|| token.to_ascii_lowercase())
}

/// The items of the parenthesised list that `tokens` starts with, split at its top-level
/// commas.
fn column_items(tokens: &[String]) -> Vec<Vec<String>> {
    let mut depth = 0usize;
    let mut items = vec![Vec::new()];
    for token in tokens {
        match token.as_str() {
            "(" => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            ")" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => {
                items.push(Vec::new());
                continue;
            }
            _ => {}
        }
        if depth >= 1 {
            items.last_mut().expect("never empty").push(token.clone());
        }
    }
    items.retain(|item| !item.is_empty());
    items
}

/// `tokens` split at commas outside parentheses.
fn top_level_items(tokens: &[String]) -> Vec<Vec<String>> {
    let mut depth = 0usize;
    let mut items = vec![Vec::new()];
    for token in tokens {
        match token.as_str() {
            "(" => depth += 1,
            ")" => depth = depth.saturating_sub(1),
            "," if depth == 0 => {
                items.push(Vec::new());
                continue;
            }
            _ => {}
        }
        items.last_mut().expect("never empty").push(token.clone());
    }
    items.retain(|item| !item.is_empty());
    items
}

/// The column a `create table` item defines (`None` for constraints and `like`).
fn column_name(item: &[String]) -> Option<String> {
    let first = item.first()?;
    let keyword = first.to_ascii_lowercase();
    if matches!(
        keyword.as_str(),
        "constraint" | "primary" | "unique" | "foreign" | "check" | "exclude" | "like"
    ) {
        return None;
    }
    identifier(first)
}

/// The column an `alter table` clause `add [column] [if not exists] name …` adds.
fn added_column(clause: &[String]) -> Option<String> {
    let lower: Vec<String> = clause.iter().map(|t| t.to_ascii_lowercase()).collect();
    if lower.first().map(String::as_str) != Some("add") {
        return None;
    }
    let mut i = 1;
    if lower.get(i).map(String::as_str) == Some("column") {
        i += 1;
    } else if matches!(
        lower.get(i).map(String::as_str),
        Some("constraint" | "primary" | "unique" | "foreign" | "check" | "exclude")
    ) {
        return None;
    }
    if lower.get(i).map(String::as_str) == Some("if")
        && lower.get(i + 1).map(String::as_str) == Some("not")
        && lower.get(i + 2).map(String::as_str) == Some("exists")
    {
        i += 3;
    }
    identifier(clause.get(i)?)
}

/// The file's statements with comments removed and every quoted string or dollar-quoted body
/// replaced by `''`, split at `;`.
fn statements(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            current.push(' ');
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            current.push(' ');
        } else if c == '\'' {
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' && chars.get(i + 1) == Some(&'\'') {
                    i += 2;
                } else if chars[i] == '\'' {
                    i += 1;
                    break;
                } else {
                    i += 1;
                }
            }
            current.push_str(" '' ");
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' && chars.get(i + 1) == Some(&'"') {
                    i += 2;
                } else if chars[i] == '"' {
                    i += 1;
                    break;
                } else {
                    i += 1;
                }
            }
            current.extend(&chars[start..i]);
        } else if c == '$' && dollar_tag(&chars, i).is_some() {
            let tag = dollar_tag(&chars, i).expect("checked");
            i += tag.len();
            while i < chars.len() && !chars[i..].starts_with(&tag) {
                i += 1;
            }
            i = (i + tag.len()).min(chars.len());
            current.push_str(" '' ");
        } else if c == ';' {
            out.push(std::mem::take(&mut current));
            i += 1;
        } else {
            current.push(c);
            i += 1;
        }
        // Every branch above advanced `i`.
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// `$tag$` (or `$$`) starting at `chars[i]`, as characters.
fn dollar_tag(chars: &[char], i: usize) -> Option<Vec<char>> {
    // A `$` right after an identifier character is part of that identifier (or `$1`).
    if i > 0 && (chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i + 1;
    while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    if chars.get(j) != Some(&'$') {
        return None;
    }
    if j > i + 1 && chars[i + 1].is_ascii_digit() {
        return None;
    }
    Some(chars[i..=j].to_vec())
}

/// Words, quoted identifiers, and single punctuation characters of a statement.
fn tokenize(statement: &str) -> Vec<String> {
    let chars: Vec<char> = statement.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' && chars.get(i + 1) == Some(&'"') {
                    i += 2;
                } else if chars[i] == '"' {
                    i += 1;
                    break;
                } else {
                    i += 1;
                }
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == '\'' && chars.get(i + 1) == Some(&'\'') {
            tokens.push("''".to_string());
            i += 2;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tables_columns_and_functions_past_comments_strings_and_bodies() {
        let sql = r#"
-- create table public.commented_out (x int);
/* create table public.also_not (y int); */
create or replace function public.touch() returns trigger language plpgsql as $$
begin
  -- create table public.inside_body (z int);
  new.updated_at := now(); return new;
end;
$$;
create function public.count_things(p text) returns bigint language sql as $fn$ select 1; $fn$;
create table if not exists public.things (
  id uuid primary key default gen_random_uuid(),
  "Label" text default 'a, b; c',
  amount numeric(10, 2) check (amount >= 0),
  owner uuid references public.users (id) on delete cascade,
  constraint things_owner_label unique (owner, "Label"),
  primary key (id)
);
create table auth.elsewhere (id int);
alter table public.things add column if not exists note text, add constraint c check (true),
  add column extra jsonb;
alter table only things add kind text;
alter table public.things drop column if exists old;
create index if not exists ix_things on public.things (owner);
"#;
        let m = parse_migration("1_things.sql", sql);
        assert_eq!(
            m.tables,
            vec![TableColumns {
                table: "things".into(),
                creates: true,
                columns: ["id", "Label", "amount", "owner", "note", "extra", "kind"]
                    .map(String::from)
                    .to_vec(),
            }]
        );
        assert_eq!(
            m.functions,
            vec![
                Function {
                    name: "touch".into(),
                    returns_trigger: true
                },
                Function {
                    name: "count_things".into(),
                    returns_trigger: false
                },
            ]
        );
    }

    #[test]
    fn a_file_that_only_adds_columns_owns_those_columns() {
        let m = parse_migration(
            "2_more.sql",
            "alter table public.chat_sessions add column if not exists pinned boolean;",
        );
        assert_eq!(
            m.tables,
            vec![TableColumns {
                table: "chat_sessions".into(),
                creates: false,
                columns: vec!["pinned".into()],
            }]
        );
    }

    #[test]
    fn the_embedded_migrations_are_the_repository_files_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../supabase/migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations directory")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = migrations().into_iter().map(|m| m.file).collect();
        assert_eq!(embedded, on_disk);
        let all = migrations();
        let table = |name: &str| {
            all.iter()
                .flat_map(|m| m.tables.iter())
                .filter(|t| t.table == name)
                .flat_map(|t| t.columns.iter().cloned())
                .collect::<Vec<_>>()
        };
        // The original's tables, with the columns Lucid reads and writes.
        for (name, columns) in [
            ("users", &["id", "email", "name", "avatar_url"][..]),
            (
                "chat_sessions",
                &[
                    "id",
                    "user_id",
                    "title",
                    "is_active",
                    "model",
                    "repo_url",
                    "branch",
                ][..],
            ),
            (
                "chat_messages",
                &[
                    "id",
                    "session_id",
                    "seq",
                    "role",
                    "content",
                    "metadata_json",
                ][..],
            ),
            (
                "integrations",
                &["id", "user_id", "provider", "access_token_encrypted", "iv"][..],
            ),
        ] {
            let found = table(name);
            for column in columns {
                assert!(
                    found.contains(&column.to_string()),
                    "{name}.{column} not in {found:?}"
                );
            }
        }
        let functions: Vec<String> = all
            .iter()
            .flat_map(|m| m.functions.iter().map(|f| f.name.clone()))
            .collect();
        assert!(
            functions.contains(&"set_updated_at".to_string()),
            "{functions:?}"
        );
        assert!(
            functions.contains(&"handle_new_user".to_string()),
            "{functions:?}"
        );
    }
}
