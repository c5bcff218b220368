//! A local Supabase project for tests: a fresh database on the process's throwaway
//! PostgreSQL 15 cluster with Supabase's `auth` stand-in and Lucid's migrations
//! (`supabase/migrations/`), a [`PostgrestStandIn`] in front of it, a project JWT secret, and
//! the anon and service keys (HS256 JWTs with the roles `anon` and `service_role`, as Supabase
//! issues them). Users are created the way Supabase Auth creates them (a row in
//! `auth.users`, whose trigger makes the profile) and get access tokens signed with the
//! project secret. [`SupabaseProject::start_with_auth`] also puts a
//! [`FakeSupabaseAuth`] in front: one project URL serving `/auth/v1` and `/rest/v1`, and a
//! user who signs in there is signed up in `auth.users` under the id its tokens carry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::jwks::TestKey;
use crate::postgres::{describe, PgCluster};
use crate::postgrest::{PostgrestStandIn, StandInConfig};
use crate::supabase_auth::{FakeSupabaseAuth, ProjectBackend, SignUpHook, SignedUpUser};

/// Lucid's migrations, applied by name order like the Supabase CLI does.
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../supabase/migrations");

pub struct SupabaseProject {
    pub jwt_secret: String,
    pub anon_key: String,
    pub service_key: String,
    pub rest: PostgrestStandIn,
    /// The project's Auth, when started with [`SupabaseProject::start_with_auth`].
    auth: Option<FakeSupabaseAuth>,
    admin: Client,
    dbname: String,
    /// Users made by [`SupabaseProject::user_named`], by name.
    named: Mutex<HashMap<String, String>>,
}

fn sign(secret: &str, claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a test token")
}

/// Every migration file's SQL, in name order.
pub fn migrations() -> Vec<(String, String)> {
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
    files
}

impl SupabaseProject {
    /// A new project (about a second: a database, the migrations, the stand-in).
    pub async fn start() -> SupabaseProject {
        Self::start_with_keys(&[]).await
    }

    /// Like [`SupabaseProject::start`], also publishing `keys` as the project's JWKS.
    pub async fn start_with_keys(keys: &[&TestKey]) -> SupabaseProject {
        let cluster = PgCluster::shared();
        let (dbname, admin) = cluster
            .supabase_database()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (name, sql) in migrations() {
            admin
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("migration {name} failed: {}", describe(&e)));
        }
        let jwt_secret = format!("project-secret-{}", uuid::Uuid::new_v4().simple());
        let far = chrono::Utc::now().timestamp() + 10 * 365 * 24 * 3600;
        let anon_key = sign(
            &jwt_secret,
            &json!({"iss": "supabase", "role": "anon", "exp": far}),
        );
        let service_key = sign(
            &jwt_secret,
            &json!({"iss": "supabase", "role": "service_role", "exp": far}),
        );
        let rest = PostgrestStandIn::start(StandInConfig {
            cluster,
            dbname: dbname.clone(),
            jwt_secret: jwt_secret.clone(),
            anon_key: anon_key.clone(),
            service_key: service_key.clone(),
            jwks: keys.iter().map(|k| k.jwk()).collect(),
        })
        .await;
        SupabaseProject {
            jwt_secret,
            anon_key,
            service_key,
            rest,
            auth: None,
            admin,
            dbname,
            named: Mutex::default(),
        }
    }

    /// A project with its Auth: a [`FakeSupabaseAuth`] (HS256 with the project secret, the
    /// project's anon key) whose URL is the project URL, forwarding `/rest/v1/*` to the
    /// PostgREST stand-in; each user it signs up is inserted into `auth.users` with the id of
    /// its tokens' `sub` (the migrations' trigger then makes the profile), as GoTrue does.
    pub async fn start_with_auth() -> SupabaseProject {
        let mut project = Self::start().await;
        let dbname = project.dbname.clone();
        let on_sign_up: SignUpHook = Arc::new(move |user: SignedUpUser| {
            let dbname = dbname.clone();
            Box::pin(async move { insert_signed_up_user(&dbname, &user).await })
        });
        let auth = FakeSupabaseAuth::start_for_project(
            &project.anon_key,
            project.jwt_secret.as_bytes(),
            None,
            ProjectBackend {
                rest_url: project.rest.base_url().to_string(),
                on_sign_up,
            },
        )
        .await;
        project.auth = Some(auth);
        project
    }

    /// The project's Auth.
    ///
    /// # Panics
    /// When the project was not started with [`SupabaseProject::start_with_auth`].
    pub fn auth(&self) -> &FakeSupabaseAuth {
        self.auth
            .as_ref()
            .expect("the project was started without Auth (use SupabaseProject::start_with_auth)")
    }

    /// `SUPABASE_URL` (the Auth's address when the project has one: it forwards `/rest/v1`).
    pub fn url(&self) -> &str {
        match &self.auth {
            Some(auth) => auth.url(),
            None => self.rest.base_url(),
        }
    }

    /// The four Supabase settings of Lucid's configuration.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SUPABASE_URL", self.url().to_string()),
            ("SUPABASE_ANON_KEY", self.anon_key.clone()),
            ("SUPABASE_JWT_SECRET", self.jwt_secret.clone()),
            ("SUPABASE_SERVICE_KEY", self.service_key.clone()),
        ]
    }

    /// A superuser connection to the project's database (to inspect or seed it, bypassing
    /// row-level security).
    pub fn admin(&self) -> &Client {
        &self.admin
    }

    /// The database's name on the shared cluster.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// Signs up a user (Supabase Auth's insert into `auth.users`) and returns its id.
    pub async fn create_user(&self, email: &str) -> String {
        let id = uuid::Uuid::new_v4();
        self.admin
            .execute(
                "insert into auth.users (id, aud, role, email, raw_user_meta_data) \
                 values ($1, 'authenticated', 'authenticated', $2, $3)",
                &[&id, &email, &json!({"full_name": email})],
            )
            .await
            .unwrap_or_else(|e| panic!("cannot create user {email}: {}", describe(&e)));
        id.to_string()
    }

    /// The id of the user called `name` (`<name>@example.test`), signed up on first use.
    /// Synchronous, for test helpers that make tokens without awaiting: the sign-up runs on
    /// its own thread and connection.
    pub fn user_named(&self, name: &str) -> String {
        let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = named.get(name) {
            return id.clone();
        }
        let id = uuid::Uuid::new_v4();
        let email = format!("{name}@example.test");
        let dbname = self.dbname.clone();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for the sign-up");
                    runtime.block_on(async {
                        let db = PgCluster::shared()
                            .connect(&dbname)
                            .await
                            .unwrap_or_else(|e| panic!("{e}"));
                        db.execute(
                            "insert into auth.users (id, aud, role, email, raw_user_meta_data) \
                             values ($1, 'authenticated', 'authenticated', $2, $3)",
                            &[&id, &email, &json!({"user_name": name})],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("cannot sign up {name}: {}", describe(&e)));
                    })
                })
                .join()
                .expect("sign-up thread")
        });
        named.insert(name.to_string(), id.to_string());
        id.to_string()
    }

    /// The profile (`public.users`) of `user_id`: email and name, if the user exists.
    pub async fn profile(&self, user_id: &str) -> Option<(Option<String>, Option<String>)> {
        let id = uuid::Uuid::parse_str(user_id).ok()?;
        self.admin
            .query_opt("select email, name from public.users where id = $1", &[&id])
            .await
            .unwrap_or_else(|e| panic!("cannot read the profile: {}", describe(&e)))
            .map(|row| (row.get(0), row.get(1)))
    }

    /// A Supabase access token for `user_id`, valid for `ttl` (HS256, project secret).
    pub fn token(&self, user_id: &str, ttl: Duration) -> String {
        let now = chrono::Utc::now().timestamp();
        self.token_expiring_at(user_id, now + ttl.as_secs() as i64)
    }

    /// A Supabase access token with the given `exp` (in the past for an expired one).
    pub fn token_expiring_at(&self, user_id: &str, exp: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        sign(
            &self.jwt_secret,
            &json!({
                "sub": user_id, "aud": "authenticated", "role": "authenticated",
                "iat": now.min(exp - 1), "exp": exp, "iss": format!("{}/auth/v1", self.url()),
            }),
        )
    }
}

/// GoTrue's sign-up: the user's row in `auth.users` (the trigger makes the profile).
async fn insert_signed_up_user(dbname: &str, user: &SignedUpUser) -> Result<(), String> {
    let id = uuid::Uuid::parse_str(&user.id).map_err(|e| e.to_string())?;
    let db = PgCluster::shared().connect(dbname).await?;
    db.execute(
        "insert into auth.users (id, aud, role, email, raw_user_meta_data) \
         values ($1, 'authenticated', 'authenticated', $2, $3)",
        &[&id, &user.email, &user.user_metadata],
    )
    .await
    .map(|_| ())
    .map_err(|e| describe(&e))
}
