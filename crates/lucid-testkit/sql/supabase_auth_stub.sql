-- A stand-in for the parts of a Supabase database that Lucid's migrations and row-level
-- security rely on, for schema tests on a plain PostgreSQL 15 (see src/postgres.rs).
-- Written for these tests from Supabase's documented behaviour; it is not Supabase's code.
-- Re-runnable.

-- Roles. PostgREST connects as `authenticator` and switches to `anon` (no token),
-- `authenticated` (a user's token) or `service_role` (the service key, bypasses RLS).
-- Supabase Auth writes auth.users as `supabase_auth_admin`, which has no rights in public.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin nologin noinherit;
  end if;
end
$$;
grant anon, authenticated, service_role to authenticator;

-- The auth schema: the columns of auth.users that matter to triggers on it.
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create table if not exists auth.users (
  instance_id uuid,
  id uuid primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  phone text,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_sso_user boolean not null default false,
  is_anonymous boolean not null default false,
  email_confirmed_at timestamptz,
  last_sign_in_at timestamptz,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
grant usage on schema auth to supabase_auth_admin;
grant all on table auth.users to supabase_auth_admin;

-- Like Supabase: an email is unique among non-SSO users only.
create unique index if not exists users_email_partial_key on auth.users (email)
  where is_sso_user = false;

-- PostgREST puts the verified token's claims in `request.jwt.claims` (JSON text) for the
-- transaction; older versions used one `request.jwt.claim.<name>` setting per claim.
create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

create or replace function auth.uid() returns uuid
language sql stable
as $$
  select nullif(
    coalesce(
      current_setting('request.jwt.claim.sub', true),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    ),
    ''
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
  select nullif(
    coalesce(
      current_setting('request.jwt.claim.role', true),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    ),
    ''
  )::text
$$;

grant execute on function auth.jwt(), auth.uid(), auth.role()
  to anon, authenticated, service_role;

-- Supabase's default privileges on schema public: the API roles get every privilege on
-- what the migration owner creates there; row-level security does the filtering.
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public
  grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public
  grant all on sequences to anon, authenticated, service_role;
