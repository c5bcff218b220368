//! The Supabase migrations (`supabase/migrations/`) on a real PostgreSQL 15 with a
//! Supabase-style `auth` schema (see `lucid_testkit::postgres`): they apply twice, create the
//! expected objects, create profiles on sign-up, upgrade the original's schema, keep the event
//! log replayable, and row-level security keeps every user to their own rows.
//!
//! All tests share one throwaway cluster (one database each); the whole file runs in seconds.

use std::collections::BTreeSet;

use lucid_testkit::postgres::tokio_postgres::{Client, Error, Transaction};
use lucid_testkit::postgres::{describe, sqlstate, PgCluster};
use serde_json::{json, Value};
use uuid::Uuid;

const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/supabase/migrations");
/// `insufficient_privilege`: both "permission denied" and "new row violates row-level
/// security policy".
const DENIED: &str = "42501";

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// The migration files in the order the Supabase CLI applies them (by name).
fn migrations() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(MIGRATIONS_DIR)
        .unwrap_or_else(|e| panic!("cannot read {MIGRATIONS_DIR}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let sql = std::fs::read_to_string(&path).expect("migration text");
            (name, sql)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migrations in {MIGRATIONS_DIR}");
    files
}

/// Applies every migration; each file runs as one implicit transaction (simple protocol).
async fn apply_migrations(db: &Client) {
    for (name, sql) in migrations() {
        db.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("migration {name} failed: {}", describe(&e)));
    }
}

/// A fresh database with the auth stub, without Lucid's schema.
async fn supabase_db() -> Client {
    let (_name, db) = PgCluster::shared()
        .supabase_database()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    db
}

/// A fresh database with the auth stub and the migrations applied.
async fn migrated_db() -> Client {
    let db = supabase_db().await;
    apply_migrations(&db).await;
    db
}

/// Inserts a Supabase Auth user (as Supabase Auth does, role `supabase_auth_admin`, which has
/// no rights on public tables: the profile trigger must work as its definer).
async fn sign_up(db: &mut Client, email: Option<&str>, meta: Value, sso: bool) -> Uuid {
    let id = Uuid::new_v4();
    let tx = db.transaction().await.expect("begin");
    tx.batch_execute("set local role supabase_auth_admin")
        .await
        .expect("set role");
    tx.execute(
        "insert into auth.users (id, aud, role, email, raw_user_meta_data, raw_app_meta_data, \
         is_sso_user) values ($1, 'authenticated', 'authenticated', $2, $3, $4, $5)",
        &[
            &id,
            &email,
            &meta,
            &json!({"provider": "github", "providers": ["github"]}),
            &sso,
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("sign-up of {email:?} failed: {}", describe(&e)));
    tx.commit().await.expect("commit");
    id
}

/// Who runs a statement, the way PostgREST sets it up for a request.
#[derive(Clone, Copy, Debug)]
enum Who {
    Anon,
    User(Uuid),
    /// `authenticated` with a token that has no `sub`.
    NoSub,
    Service,
}

/// Opens a transaction as `who`: `set local role` and `request.jwt.claims` like PostgREST.
/// Dropping it rolls everything back.
async fn begin_as(db: &mut Client, who: Who) -> Transaction<'_> {
    let (role, claims) = match who {
        Who::Anon => ("anon", json!({"role": "anon"})),
        Who::User(id) => (
            "authenticated",
            json!({"sub": id, "role": "authenticated", "aud": "authenticated"}),
        ),
        Who::NoSub => (
            "authenticated",
            json!({"role": "authenticated", "aud": "authenticated"}),
        ),
        Who::Service => ("service_role", json!({"role": "service_role"})),
    };
    let tx = db.transaction().await.expect("begin");
    tx.batch_execute(&format!("set local role {role}"))
        .await
        .expect("set role");
    tx.execute(
        "select set_config('request.jwt.claims', $1, true)",
        &[&claims.to_string()],
    )
    .await
    .expect("set claims");
    tx
}

/// Runs one statement as `who` in a transaction that is rolled back.
async fn exec_as(db: &mut Client, who: Who, sql: &str) -> Result<u64, Error> {
    let tx = begin_as(db, who).await;
    tx.execute(sql, &[]).await
}

/// Runs `select count(*) ...` as `who` (rolled back).
async fn count_as(db: &mut Client, who: Who, sql: &str) -> Result<i64, Error> {
    let tx = begin_as(db, who).await;
    let row = tx.query_one(sql, &[]).await?;
    Ok(row.get(0))
}

async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

#[track_caller]
fn assert_denied<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected to be refused, but it succeeded ({value:?})"),
        Err(e) => assert_eq!(
            sqlstate(&e),
            Some(DENIED),
            "{what}: expected SQLSTATE {DENIED}, got {}",
            describe(&e)
        ),
    }
}

#[track_caller]
fn ok<T>(result: Result<T, Error>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {}", describe(&e)))
}

/// One user's rows in every table.
#[derive(Clone, Copy, Debug)]
struct Owner {
    user: Uuid,
    chat: Uuid,
    message: Uuid,
    integration: Uuid,
}

async fn seed_owner(db: &mut Client, label: &str) -> Owner {
    let user = sign_up(
        db,
        Some(&format!("{label}@example.test")),
        json!({"full_name": format!("User {label}")}),
        false,
    )
    .await;
    let (chat, message, integration) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    db.execute(
        "insert into public.chat_sessions (id, user_id, agent_session_id, title, model_provider, \
         model, repo_url, branch) values ($1, $2, 'agent-1', 'task', 'anthropic', 'claude', \
         'https://github.com/o/r', 'main')",
        &[&chat, &user],
    )
    .await
    .unwrap_or_else(|e| panic!("seed chat: {}", describe(&e)));
    db.execute(
        "insert into public.chat_messages (id, session_id, seq, role, content, event_type, \
         metadata_json) values ($1, $2, 1, 'user', 'do it', 'InitialTask', '{\"seq\":1}')",
        &[&message, &chat],
    )
    .await
    .unwrap_or_else(|e| panic!("seed message: {}", describe(&e)));
    db.execute(
        "insert into public.integrations (id, user_id, provider, access_token_encrypted, iv) \
         values ($1, $2, 'GITHUB', 'deadbeef', '00112233445566778899aabbccddeeff')",
        &[&integration, &user],
    )
    .await
    .unwrap_or_else(|e| panic!("seed integration: {}", describe(&e)));
    Owner {
        user,
        chat,
        message,
        integration,
    }
}

/// A table of Lucid's schema and how a row of it belongs to a user.
#[derive(Clone, Copy, Debug)]
enum Table {
    Users,
    ChatSessions,
    ChatMessages,
    Integrations,
}

const TABLES: [Table; 4] = [
    Table::Users,
    Table::ChatSessions,
    Table::ChatMessages,
    Table::Integrations,
];

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Users => "public.users",
            Table::ChatSessions => "public.chat_sessions",
            Table::ChatMessages => "public.chat_messages",
            Table::Integrations => "public.integrations",
        }
    }

    /// The owner's row in this table.
    fn row_of(self, o: &Owner) -> Uuid {
        match self {
            Table::Users => o.user,
            Table::ChatSessions => o.chat,
            Table::ChatMessages => o.message,
            Table::Integrations => o.integration,
        }
    }

    /// The column tying a row to its owner, and its value for `o`.
    fn owner_col(self, o: &Owner) -> (&'static str, Uuid) {
        match self {
            Table::Users => ("id", o.user),
            Table::ChatSessions | Table::Integrations => ("user_id", o.user),
            Table::ChatMessages => ("session_id", o.chat),
        }
    }

    /// A harmless change to a row.
    fn touch(self) -> &'static str {
        match self {
            Table::Users => "name = 'changed'",
            Table::ChatSessions => "title = 'changed'",
            Table::ChatMessages => "content = 'changed'",
            Table::Integrations => "label = 'changed'",
        }
    }

    /// A new row belonging to `o`.
    fn insert_for(self, o: &Owner) -> String {
        match self {
            Table::Users => format!(
                "insert into public.users (id, email, name) values ('{}', 'x@example.test', 'x')",
                o.user
            ),
            Table::ChatSessions => format!(
                "insert into public.chat_sessions (user_id, title) values ('{}', 'new')",
                o.user
            ),
            Table::ChatMessages => format!(
                "insert into public.chat_messages (session_id, seq, role, content) \
                 values ('{}', 2, 'assistant', 'new')",
                o.chat
            ),
            Table::Integrations => format!(
                "insert into public.integrations (user_id, provider, access_token_encrypted, iv) \
                 values ('{}', 'GITLAB', 'aa', 'bb')",
                o.user
            ),
        }
    }

    fn key(self) -> &'static str {
        "id"
    }
}

struct Fixture {
    db: Client,
    a: Owner,
    b: Owner,
}

async fn fixture() -> Fixture {
    let mut db = migrated_db().await;
    let a = seed_owner(&mut db, "a").await;
    let b = seed_owner(&mut db, "b").await;
    Fixture { db, a, b }
}

// ---------------------------------------------------------------------------------------
// Migrations and catalog
// ---------------------------------------------------------------------------------------

#[test]
fn migration_files_are_named_like_the_supabase_cli_expects() {
    for (name, _) in migrations() {
        let (version, rest) = name.split_once('_').unwrap_or(("", ""));
        assert!(
            version.len() == 14
                && version.bytes().all(|b| b.is_ascii_digit())
                && rest.ends_with(".sql")
                && rest.len() > 4,
            "{name}: expected <YYYYMMDDHHMMSS>_<name>.sql"
        );
    }
}

/// Everything a re-run could duplicate or change, as text.
async fn catalog_snapshot(db: &Client) -> Vec<String> {
    let sql = "
        select 'policy ' || tablename || '.' || policyname || ' ' || cmd || ' ' ||
               roles::text || ' ' || coalesce(qual, '') || ' / ' || coalesce(with_check, '')
          from pg_policies where schemaname = 'public'
        union all
        select 'index ' || indexdef from pg_indexes where schemaname = 'public'
        union all
        select 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' ||
               pg_get_constraintdef(oid)
          from pg_constraint where connamespace = 'public'::regnamespace
        union all
        select 'trigger ' || tgrelid::regclass::text || ' ' || tgname
          from pg_trigger where not tgisinternal
        union all
        select 'function ' || p.oid::regprocedure::text || ' ' || p.prosecdef::text || ' ' ||
               coalesce(array_to_string(p.proconfig, ','), '') || ' ' ||
               coalesce(array_to_string(p.proacl, ','), '')
          from pg_proc p where p.pronamespace = 'public'::regnamespace
        union all
        select 'acl ' || c.relname || ' ' || coalesce(array_to_string(c.relacl, ','), '')
          from pg_class c where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'
        order by 1";
    db.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("snapshot: {}", describe(&e)))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn migrations_apply_twice_without_error_or_change() {
    let db = migrated_db().await;
    let first = catalog_snapshot(&db).await;
    apply_migrations(&db).await;
    let second = catalog_snapshot(&db).await;
    assert_eq!(first, second, "a second run changed the schema");
    // And a third time inside one transaction, as `psql -1` or the CLI would.
    let all: String = migrations()
        .into_iter()
        .map(|(_, sql)| sql + "\n")
        .collect();
    db.batch_execute(&format!("begin;\n{all}\ncommit;"))
        .await
        .unwrap_or_else(|e| panic!("third run: {}", describe(&e)));
    assert_eq!(first, catalog_snapshot(&db).await);
}

async fn columns(db: &Client, table: &str) -> Vec<(String, String, bool)> {
    db.query(
        "select column_name::text, data_type::text, is_nullable = 'YES' \
           from information_schema.columns \
          where table_schema = 'public' and table_name = $1 order by ordinal_position",
        &[&table],
    )
    .await
    .expect("columns")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[tokio::test]
async fn tables_columns_functions_and_triggers_exist() {
    let db = migrated_db().await;
    let expect = |cols: &[(&str, &str, bool)]| -> Vec<(String, String, bool)> {
        cols.iter()
            .map(|(n, t, null)| (n.to_string(), t.to_string(), *null))
            .collect()
    };
    const TS: &str = "timestamp with time zone";
    assert_eq!(
        columns(&db, "users").await,
        expect(&[
            ("id", "uuid", false),
            ("email", "text", true),
            ("name", "text", true),
            ("avatar_url", "text", true),
            ("created_at", TS, false),
            ("updated_at", TS, false),
        ])
    );
    assert_eq!(
        columns(&db, "chat_sessions").await,
        expect(&[
            ("id", "uuid", false),
            ("user_id", "uuid", false),
            ("agent_session_id", "text", true),
            ("project_id", "text", true),
            ("title", "character varying", true),
            ("model_provider", "character varying", true),
            ("model", "text", true),
            ("repo_url", "text", true),
            ("branch", "text", true),
            ("is_active", "boolean", false),
            ("created_at", TS, false),
            ("updated_at", TS, false),
        ])
    );
    assert_eq!(
        columns(&db, "chat_messages").await,
        expect(&[
            ("id", "uuid", false),
            ("session_id", "uuid", false),
            ("seq", "bigint", true),
            ("role", "character varying", false),
            ("content", "text", false),
            ("event_type", "character varying", true),
            ("metadata_json", "jsonb", true),
            ("created_at", TS, false),
        ])
    );
    assert_eq!(
        columns(&db, "integrations").await,
        expect(&[
            ("id", "uuid", false),
            ("user_id", "uuid", false),
            ("provider", "text", false),
            ("label", "text", true),
            ("access_token_encrypted", "text", false),
            ("iv", "text", false),
            ("external_username", "text", true),
            ("scopes", "text", true),
            ("created_at", TS, false),
        ])
    );

    // Functions: fixed empty search_path; the sign-up trigger runs as its definer and is not
    // callable by API roles.
    let rows = db
        .query(
            "select proname::text, prosecdef, coalesce(proconfig, '{}')::text[], \
                    has_function_privilege('authenticated', oid, 'execute'), \
                    has_function_privilege('anon', oid, 'execute') \
               from pg_proc where pronamespace = 'public'::regnamespace order by 1",
            &[],
        )
        .await
        .expect("functions");
    let functions: Vec<(String, bool, Vec<String>, bool, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let names: Vec<&str> = functions.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names, ["handle_new_user", "set_updated_at"]);
    for (name, _, config, _, _) in &functions {
        assert_eq!(
            config,
            &vec![r#"search_path="""#.to_string()],
            "{name}: search_path"
        );
    }
    let handle = &functions[0];
    assert!(handle.1, "handle_new_user must be security definer");
    assert!(
        !handle.3 && !handle.4,
        "API roles must not execute handle_new_user"
    );

    let triggers: BTreeSet<String> = db
        .query(
            "select tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text \
               from pg_trigger where not tgisinternal",
            &[],
        )
        .await
        .expect("triggers")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: BTreeSet<String> = [
        "auth.users on_auth_user_created O",
        "users users_updated_at O",
        "chat_sessions chat_sessions_updated_at O",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(triggers, expected);
}

#[tokio::test]
async fn every_table_has_rls_and_four_policies_using_the_cached_uid() {
    let db = migrated_db().await;
    for table in ["users", "chat_sessions", "chat_messages", "integrations"] {
        let row = db
            .query_one(
                "select relrowsecurity from pg_class where oid = ('public.' || $1)::regclass",
                &[&table],
            )
            .await
            .expect("relrowsecurity");
        assert!(row.get::<_, bool>(0), "{table}: RLS is off");
        let policies = db
            .query(
                "select cmd::text, roles::text[], coalesce(qual, ''), coalesce(with_check, '') \
                   from pg_policies where schemaname = 'public' and tablename = $1 order by 1",
                &[&table],
            )
            .await
            .expect("policies");
        let cmds: Vec<String> = policies.iter().map(|r| r.get(0)).collect();
        assert_eq!(
            cmds,
            ["DELETE", "INSERT", "SELECT", "UPDATE"],
            "{table}: one policy per command"
        );
        for policy in &policies {
            let cmd: String = policy.get(0);
            let roles: Vec<String> = policy.get(1);
            assert_eq!(roles, ["authenticated"], "{table} {cmd}: roles");
            for expr in [policy.get::<_, String>(2), policy.get::<_, String>(3)] {
                // `(select auth.uid())` deparses as `( SELECT auth.uid() AS uid)`.
                let bare = expr.matches("auth.uid()").count();
                let wrapped = expr.matches("SELECT auth.uid() AS uid").count();
                assert_eq!(bare, wrapped, "{table} {cmd}: bare auth.uid() in {expr}");
            }
        }
    }
}

#[tokio::test]
async fn no_redundant_indexes_and_foreign_keys_are_indexed() {
    let db = migrated_db().await;
    let rows = db
        .query(
            "select c.relname::text, i.indexrelid::regclass::text, i.indisunique, \
                    i.indkey::int2[], i.indpred is not null \
               from pg_index i join pg_class c on c.oid = i.indrelid \
              where c.relnamespace = 'public'::regnamespace",
            &[],
        )
        .await
        .expect("indexes");
    let indexes: Vec<(String, String, bool, Vec<i16>, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    for a in &indexes {
        for b in &indexes {
            if a.1 == b.1 || a.0 != b.0 || a.4 || b.4 {
                continue;
            }
            let prefix = b.3.starts_with(&a.3);
            // A unique index on a prefix enforces something; a plain one only duplicates.
            assert!(
                !(a.3 == b.3 || (prefix && !a.2)),
                "index {} on {} is redundant with {}",
                a.1,
                a.0,
                b.1
            );
        }
    }
    let names: BTreeSet<&str> = indexes.iter().map(|i| i.1.as_str()).collect();
    for name in [
        "chat_messages_session_seq_key",
        "ix_integrations_user_provider",
        "ix_chat_sessions_user_updated",
        "ix_chat_sessions_user_agent_session",
    ] {
        assert!(names.contains(name), "missing index {name}: {names:?}");
    }
    // Every foreign key's column leads some index (cascading deletes stay cheap).
    let unindexed = count(
        &db,
        "select count(*) from pg_constraint k \
          where k.contype = 'f' and k.connamespace = 'public'::regnamespace \
            and not exists (select 1 from pg_index i where i.indrelid = k.conrelid \
                             and i.indkey[0] = k.conkey[1])",
    )
    .await;
    assert_eq!(unindexed, 0, "a foreign key without an index");
}

// ---------------------------------------------------------------------------------------
// Sign-up trigger
// ---------------------------------------------------------------------------------------

async fn profile(
    db: &Client,
    id: Uuid,
) -> Option<(Option<String>, Option<String>, Option<String>)> {
    db.query_opt(
        "select email, name, avatar_url from public.users where id = $1",
        &[&id],
    )
    .await
    .expect("profile")
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[tokio::test]
async fn sign_up_creates_the_profile_from_oauth_metadata() {
    let mut db = migrated_db().await;
    // Google-style metadata.
    let google = sign_up(
        &mut db,
        Some("ada@example.test"),
        json!({"full_name": "Ada Lovelace", "name": "Ada", "avatar_url": "https://img/ada.png"}),
        false,
    )
    .await;
    assert_eq!(
        profile(&db, google).await,
        Some((
            some("ada@example.test"),
            some("Ada Lovelace"),
            some("https://img/ada.png")
        ))
    );
    // `name` and `picture` when full_name / avatar_url are absent.
    let other = sign_up(
        &mut db,
        Some("bob@example.test"),
        json!({"name": "Bob", "picture": "https://img/bob.png"}),
        false,
    )
    .await;
    assert_eq!(
        profile(&db, other).await,
        Some((
            some("bob@example.test"),
            some("Bob"),
            some("https://img/bob.png")
        ))
    );
    // GitHub without a public email: no email anywhere, only a login.
    let no_email = sign_up(&mut db, None, json!({"user_name": "octocat"}), false).await;
    assert_eq!(
        profile(&db, no_email).await,
        Some((None, some("octocat"), None))
    );
    // No metadata at all.
    let bare = sign_up(&mut db, None, Value::Null, false).await;
    assert_eq!(profile(&db, bare).await, Some((None, None, None)));
    // Email only in the metadata.
    let meta_email = sign_up(
        &mut db,
        None,
        json!({"email": "meta@example.test", "full_name": "Meta"}),
        false,
    )
    .await;
    assert_eq!(
        profile(&db, meta_email).await,
        Some((some("meta@example.test"), some("Meta"), None))
    );
    // The same email as an existing profile (another identity, e.g. SSO): still signs up.
    let twin = sign_up(
        &mut db,
        Some("ada@example.test"),
        json!({"full_name": "Ada (SSO)"}),
        true,
    )
    .await;
    assert_eq!(
        profile(&db, twin).await,
        Some((some("ada@example.test"), some("Ada (SSO)"), None))
    );
    assert_eq!(
        count(
            &db,
            "select count(*) from public.users where email = 'ada@example.test'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn updated_at_is_maintained() {
    let mut f = fixture().await;
    let db = &mut f.db;
    db.batch_execute(
        "update public.chat_sessions set updated_at = '2000-01-01', created_at = '2000-01-01'; \
         update public.users set updated_at = '2000-01-01'",
    )
    .await
    .expect("backdate");
    // The trigger overrides whatever the update set.
    let stale = count(
        db,
        "select count(*) from public.chat_sessions where updated_at < '2001-01-01'",
    )
    .await;
    assert_eq!(stale, 0);
    let tx = begin_as(db, Who::User(f.a.user)).await;
    tx.execute(
        "update public.chat_sessions set title = 'renamed' where id = $1",
        &[&f.a.chat],
    )
    .await
    .expect("rename");
    let row = tx
        .query_one(
            "select updated_at > created_at from public.chat_sessions where id = $1",
            &[&f.a.chat],
        )
        .await
        .expect("read");
    assert!(row.get::<_, bool>(0));
}

// ---------------------------------------------------------------------------------------
// Row-level security
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_user_cannot_touch_another_users_rows_in_any_table() {
    let mut f = fixture().await;
    for (me, other) in [(f.a, f.b), (f.b, f.a)] {
        let who = Who::User(me.user);
        for table in TABLES {
            let t = table.name();
            let (col, other_owner) = table.owner_col(&other);
            let other_row = table.row_of(&other);
            let my_row = table.row_of(&me);
            let what = |action: &str| format!("{t}: {action} as {:?}", me.user);

            // Read: only my own rows are visible, never theirs.
            let seen = ok(
                count_as(&mut f.db, who, &format!("select count(*) from {t}")).await,
                &what("count"),
            );
            assert_eq!(seen, 1, "{}", what("sees only its own row"));
            let theirs = ok(
                count_as(
                    &mut f.db,
                    who,
                    &format!("select count(*) from {t} where {col} = '{other_owner}'"),
                )
                .await,
                &what("select other's"),
            );
            assert_eq!(theirs, 0, "{}", what("sees another user's rows"));

            // Insert a row belonging to them.
            assert_denied(
                exec_as(&mut f.db, who, &table.insert_for(&other)).await,
                &what("insert for another user"),
            );

            // Update or delete their row: nothing matches.
            let updated = ok(
                exec_as(
                    &mut f.db,
                    who,
                    &format!(
                        "update {t} set {} where {} = '{other_row}'",
                        table.touch(),
                        table.key()
                    ),
                )
                .await,
                &what("update other's"),
            );
            assert_eq!(updated, 0, "{}", what("updated another user's row"));
            let deleted = ok(
                exec_as(
                    &mut f.db,
                    who,
                    &format!("delete from {t} where {} = '{other_row}'", table.key()),
                )
                .await,
                &what("delete other's"),
            );
            assert_eq!(deleted, 0, "{}", what("deleted another user's row"));
            let everything = ok(
                exec_as(
                    &mut f.db,
                    who,
                    &format!(
                        "delete from {t} where {col} <> '{}'",
                        table.owner_col(&me).1
                    ),
                )
                .await,
                &what("delete all others'"),
            );
            assert_eq!(everything, 0, "{}", what("deleted other users' rows"));
            // Without a WHERE clause no column is read, so the SELECT policy does not
            // filter: only the UPDATE / DELETE policies keep the statement to my rows.
            let all_updated = ok(
                exec_as(&mut f.db, who, &format!("update {t} set {}", table.touch())).await,
                &what("update all"),
            );
            assert_eq!(
                all_updated,
                1,
                "{}",
                what("an unfiltered update reached others")
            );
            let all_deleted = ok(
                exec_as(&mut f.db, who, &format!("delete from {t}")).await,
                &what("delete all"),
            );
            assert_eq!(
                all_deleted,
                1,
                "{}",
                what("an unfiltered delete reached others")
            );

            // Move my own row over to them.
            assert_denied(
                exec_as(
                    &mut f.db,
                    who,
                    &format!(
                        "update {t} set {col} = '{other_owner}' where {} = '{my_row}'",
                        table.key()
                    ),
                )
                .await,
                &what("move own row to another user"),
            );
            // The same without a WHERE clause: no column is read, so only the UPDATE
            // policy's WITH CHECK (not the SELECT policy) stands in the way.
            assert_denied(
                exec_as(
                    &mut f.db,
                    who,
                    &format!("update {t} set {col} = '{other_owner}'"),
                )
                .await,
                &what("move all own rows to another user"),
            );

            // Truncate ignores RLS: not granted.
            assert_denied(
                exec_as(&mut f.db, who, &format!("truncate {t} cascade")).await,
                &what("truncate"),
            );
        }
    }
    // A token without a subject sees and writes nothing.
    for table in TABLES {
        let t = table.name();
        let seen = ok(
            count_as(&mut f.db, Who::NoSub, &format!("select count(*) from {t}")).await,
            t,
        );
        assert_eq!(seen, 0, "{t}: visible without a sub claim");
        assert_denied(
            exec_as(&mut f.db, Who::NoSub, &table.insert_for(&f.a)).await,
            &format!("{t}: insert without a sub claim"),
        );
    }
    // Nothing of either user changed (every attempt above was refused or rolled back).
    for table in TABLES {
        let t = table.name();
        assert_eq!(
            count(&f.db, &format!("select count(*) from {t}")).await,
            2,
            "{t}"
        );
        assert_eq!(
            count(
                &f.db,
                &format!(
                    "select count(*) from {t} where {}::text like 'changed%'",
                    table.touch().split(' ').next().unwrap()
                )
            )
            .await,
            0,
            "{t}"
        );
    }
}

#[tokio::test]
async fn a_user_can_read_insert_update_and_delete_their_own_rows() {
    let mut f = fixture().await;
    let me = f.a;
    let who = Who::User(me.user);
    for table in TABLES {
        let t = table.name();
        let (col, owner) = table.owner_col(&me);
        let row = table.row_of(&me);

        // Select.
        let seen = ok(
            count_as(
                &mut f.db,
                who,
                &format!("select count(*) from {t} where {} = '{row}'", table.key()),
            )
            .await,
            &format!("{t}: select own"),
        );
        assert_eq!(seen, 1, "{t}: own row not visible");

        // Update, and the change is visible.
        let tx = begin_as(&mut f.db, who).await;
        let n = ok(
            tx.execute(
                &format!(
                    "update {t} set {} where {} = '{row}'",
                    table.touch(),
                    table.key()
                ),
                &[],
            )
            .await,
            &format!("{t}: update own"),
        );
        assert_eq!(n, 1, "{t}: update own");
        drop(tx);

        // Insert (the profile exists already: delete it first, then re-create it).
        let tx = begin_as(&mut f.db, who).await;
        if let Table::Users = table {
            ok(
                tx.execute("delete from public.users where id = $1", &[&me.user])
                    .await,
                "delete own profile",
            );
        }
        let n = ok(
            tx.execute(&table.insert_for(&me), &[]).await,
            &format!("{t}: insert own"),
        );
        assert_eq!(n, 1);
        let mine = tx
            .query_one(
                &format!("select count(*) from {t} where {col} = '{owner}'"),
                &[],
            )
            .await
            .expect("count");
        assert!(mine.get::<_, i64>(0) >= 1);
        drop(tx);

        // Delete.
        let n = ok(
            exec_as(
                &mut f.db,
                who,
                &format!("delete from {t} where {} = '{row}'", table.key()),
            )
            .await,
            &format!("{t}: delete own"),
        );
        assert_eq!(n, 1, "{t}: delete own");
    }
    // Upsert of a token, as the store does it: insert … on conflict (user_id, provider).
    let tx = begin_as(&mut f.db, who).await;
    ok(
        tx.execute(
            "insert into public.integrations (user_id, provider, access_token_encrypted, iv) \
             values ($1, 'GITHUB', 'new', 'iv2') on conflict (user_id, provider) do update \
             set access_token_encrypted = excluded.access_token_encrypted, iv = excluded.iv",
            &[&me.user],
        )
        .await,
        "upsert own integration",
    );
    let row = tx
        .query_one(
            "select count(*), max(access_token_encrypted) from public.integrations",
            &[],
        )
        .await
        .expect("read back");
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, String>(1), "new");
}

#[tokio::test]
async fn anon_can_neither_read_nor_write() {
    let mut f = fixture().await;
    for table in TABLES {
        let t = table.name();
        assert_denied(
            count_as(&mut f.db, Who::Anon, &format!("select count(*) from {t}")).await,
            &format!("{t}: anon select"),
        );
        assert_denied(
            exec_as(&mut f.db, Who::Anon, &table.insert_for(&f.a)).await,
            &format!("{t}: anon insert"),
        );
        assert_denied(
            exec_as(
                &mut f.db,
                Who::Anon,
                &format!("update {t} set {}", table.touch()),
            )
            .await,
            &format!("{t}: anon update"),
        );
        assert_denied(
            exec_as(&mut f.db, Who::Anon, &format!("delete from {t}")).await,
            &format!("{t}: anon delete"),
        );
    }
}

#[tokio::test]
async fn service_role_sees_and_writes_everything() {
    let mut f = fixture().await;
    for table in TABLES {
        let t = table.name();
        let seen = ok(
            count_as(
                &mut f.db,
                Who::Service,
                &format!("select count(*) from {t}"),
            )
            .await,
            t,
        );
        assert_eq!(seen, 2, "{t}: service_role sees every user's rows");
        let n = ok(
            exec_as(
                &mut f.db,
                Who::Service,
                &format!("update {t} set {}", table.touch()),
            )
            .await,
            t,
        );
        assert_eq!(n, 2, "{t}: service_role updates every row");
    }
    // It writes for any user (the internal-key path, with explicit user filters).
    let tx = begin_as(&mut f.db, Who::Service).await;
    ok(
        tx.execute(
            "insert into public.chat_messages (session_id, seq, role, content) values ($1, 2, 'assistant', 'x')",
            &[&f.b.chat],
        )
        .await,
        "service insert",
    );
}

#[tokio::test]
async fn deleting_the_auth_user_deletes_all_their_rows() {
    let f = fixture().await;
    f.db.execute("delete from auth.users where id = $1", &[&f.a.user])
        .await
        .expect("delete auth user");
    for table in TABLES {
        let t = table.name();
        let (col, a_owner) = table.owner_col(&f.a);
        assert_eq!(
            count(
                &f.db,
                &format!("select count(*) from {t} where {col} = '{a_owner}'")
            )
            .await,
            0,
            "{t}: rows of the deleted user remain"
        );
        let (_, b_owner) = table.owner_col(&f.b);
        assert_eq!(
            count(
                &f.db,
                &format!("select count(*) from {t} where {col} = '{b_owner}'")
            )
            .await,
            1,
            "{t}: another user's rows went too"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Event log
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_event_log_replays_in_seq_order_and_retried_batches_do_not_duplicate() {
    let mut f = fixture().await;
    let chat = f.a.chat;
    let tx = begin_as(&mut f.db, Who::User(f.a.user)).await;
    let append = "insert into public.chat_messages \
                  (session_id, seq, role, content, event_type, metadata_json) \
                  select $1, s, 'assistant', 'event ' || s, 'CmdRunAction', \
                         jsonb_build_object('seq', s, 'kind', 'command_run', 'command', 'ls') \
                    from generate_series($2::bigint, $3::bigint) s \
                  on conflict (session_id, seq) do nothing";
    let n = ok(tx.execute(append, &[&chat, &2i64, &6i64]).await, "append");
    assert_eq!(n, 5);
    // The same batch again (a retry after a lost answer), overlapping the next one.
    let n = ok(tx.execute(append, &[&chat, &4i64, &8i64]).await, "retry");
    assert_eq!(n, 2, "only seq 7 and 8 are new");
    let rows = tx
        .query(
            "select seq, content, metadata_json from public.chat_messages \
              where session_id = $1 and seq > $2 order by seq limit 100",
            &[&chat, &3i64],
        )
        .await
        .expect("replay");
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(seqs, [4, 5, 6, 7, 8]);
    let meta: Value = rows[0].get(2);
    assert_eq!(
        meta,
        json!({"seq": 4, "kind": "command_run", "command": "ls"})
    );
    let last: i64 = tx
        .query_one(
            "select coalesce(max(seq), 0) from public.chat_messages where session_id = $1",
            &[&chat],
        )
        .await
        .expect("last seq")
        .get(0);
    assert_eq!(last, 8);
    // A plain duplicate is a unique violation, a negative seq a check violation.
    let dup = tx
        .execute(
            "insert into public.chat_messages (session_id, seq, role, content) values ($1, 4, 'user', 'x')",
            &[&chat],
        )
        .await;
    assert_eq!(
        dup.as_ref().err().and_then(sqlstate),
        Some("23505"),
        "{dup:?}"
    );
    drop(tx);
    let tx = begin_as(&mut f.db, Who::User(f.a.user)).await;
    let negative = tx
        .execute(
            "insert into public.chat_messages (session_id, seq, role, content) values ($1, -1, 'user', 'x')",
            &[&chat],
        )
        .await;
    assert_eq!(
        negative.as_ref().err().and_then(sqlstate),
        Some("23514"),
        "{negative:?}"
    );
    drop(tx);
    // The same seq in another chat is fine; messages without seq (the original's) coexist.
    let tx = begin_as(&mut f.db, Who::User(f.b.user)).await;
    ok(
        tx.execute(
            "insert into public.chat_messages (session_id, seq, role, content) values ($1, 4, 'user', 'x'), ($1, null, 'user', 'y'), ($1, null, 'user', 'z')",
            &[&f.b.chat],
        )
        .await,
        "other chat",
    );
}

// ---------------------------------------------------------------------------------------
// Upgrade from the original engine's schema
// ---------------------------------------------------------------------------------------

/// The original engine's migrations 001 and 002 as its specification describes them
/// (written for this test): non-idempotent policies, `email not null unique`, redundant
/// indexes, bare `auth.uid()`.
const ORIGINAL_SCHEMA: &str = r#"
create or replace function set_updated_at() returns trigger language plpgsql as $$
begin new.updated_at = now(); return new; end $$;
create table if not exists users (
  id uuid primary key references auth.users (id) on delete cascade,
  email text not null unique, name text, avatar_url text,
  created_at timestamptz default now(), updated_at timestamptz default now());
create index if not exists ix_users_email on users (email);
alter table users enable row level security;
create policy users_select_own on users for select using (id = auth.uid());
create policy users_update_own on users for update using (id = auth.uid()) with check (id = auth.uid());
create or replace trigger users_updated_at before update on users for each row execute function set_updated_at();
create or replace function handle_new_user() returns trigger language plpgsql security definer
set search_path = public as $$
begin
  insert into public.users (id, email, name, avatar_url) values (new.id, new.email,
    coalesce(new.raw_user_meta_data->>'full_name', new.raw_user_meta_data->>'name'),
    coalesce(new.raw_user_meta_data->>'avatar_url', new.raw_user_meta_data->>'picture'))
  on conflict (id) do nothing;
  return new;
end $$;
create or replace trigger on_auth_user_created after insert on auth.users for each row execute function handle_new_user();
create table if not exists chat_sessions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references users (id) on delete cascade,
  agent_session_id text, project_id text, title varchar(255), model_provider varchar(50),
  is_active boolean default true, created_at timestamptz default now(), updated_at timestamptz default now());
create index if not exists ix_chat_sessions_user_id on chat_sessions (user_id);
alter table chat_sessions enable row level security;
create policy sessions_select on chat_sessions for select using (user_id = auth.uid());
create policy sessions_insert on chat_sessions for insert with check (user_id = auth.uid());
create policy sessions_update on chat_sessions for update using (user_id = auth.uid()) with check (user_id = auth.uid());
create policy sessions_delete on chat_sessions for delete using (user_id = auth.uid());
create or replace trigger chat_sessions_updated_at before update on chat_sessions for each row execute function set_updated_at();
create table if not exists chat_messages (
  id uuid primary key default gen_random_uuid(),
  session_id uuid not null references chat_sessions (id) on delete cascade,
  role varchar(20) not null, content text not null, event_type varchar(100), metadata_json jsonb,
  created_at timestamptz default now());
create index if not exists ix_chat_messages_session_id on chat_messages (session_id);
alter table chat_messages enable row level security;
create policy messages_select on chat_messages for select using (session_id in (select id from chat_sessions where user_id = auth.uid()));
create policy messages_insert on chat_messages for insert with check (session_id in (select id from chat_sessions where user_id = auth.uid()));
create policy messages_delete on chat_messages for delete using (session_id in (select id from chat_sessions where user_id = auth.uid()));
create table if not exists integrations (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references users (id) on delete cascade,
  provider text not null, label text, access_token_encrypted text not null, iv text not null,
  external_username text, scopes text, created_at timestamptz default now());
create unique index if not exists ix_integrations_user_provider on integrations (user_id, provider);
create index if not exists ix_integrations_user_id on integrations (user_id);
alter table integrations enable row level security;
create policy integrations_select on integrations for select using (user_id = auth.uid());
create policy integrations_insert on integrations for insert with check (user_id = auth.uid());
create policy integrations_update on integrations for update using (user_id = auth.uid()) with check (user_id = auth.uid());
create policy integrations_delete on integrations for delete using (user_id = auth.uid());
"#;

#[tokio::test]
async fn the_original_schema_is_upgraded_in_place() {
    let mut db = supabase_db().await;
    db.batch_execute(ORIGINAL_SCHEMA)
        .await
        .unwrap_or_else(|e| panic!("original schema: {}", describe(&e)));
    let user = sign_up(
        &mut db,
        Some("old@example.test"),
        json!({"name": "Old"}),
        false,
    )
    .await;
    let chat = Uuid::new_v4();
    db.execute(
        "insert into chat_sessions (id, user_id, title) values ($1, $2, 'old chat')",
        &[&chat, &user],
    )
    .await
    .expect("old chat");
    db.execute(
        "insert into chat_messages (session_id, role, content, event_type) values ($1, 'user', 'old task', 'InitialTask')",
        &[&chat],
    )
    .await
    .expect("old message");

    apply_migrations(&db).await;
    apply_migrations(&db).await;

    // Data kept.
    assert_eq!(
        count(
            &db,
            "select count(*) from public.chat_messages where seq is null"
        )
        .await,
        1
    );
    assert_eq!(
        profile(&db, user).await,
        Some((some("old@example.test"), some("Old"), None))
    );
    // The schema is now the same as a fresh install's.
    let fresh = migrated_db().await;
    assert_eq!(catalog_snapshot(&db).await, catalog_snapshot(&fresh).await);
    // And sign-up without an email works.
    let no_email = sign_up(&mut db, None, json!({}), false).await;
    assert_eq!(profile(&db, no_email).await, Some((None, None, None)));
}
