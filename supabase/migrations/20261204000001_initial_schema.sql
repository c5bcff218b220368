-- Lucid's Supabase schema, part 1: user profiles, chats and the session event log.
--
-- Every statement is re-runnable, and running this file on a database that holds the
-- original engine's 001_initial_schema.sql upgrades it in place (no data is lost).
-- Apply with the Supabase CLI (`supabase db push`) or `psql -1 -v ON_ERROR_STOP=1 -f`.
--
-- Access model: row-level security on every table; the `authenticated` role (a user's
-- Supabase access token through PostgREST) sees and changes only its own rows, `anon` has no
-- access at all, `service_role` (the service key) bypasses RLS.

-- ---------------------------------------------------------------------------------------
-- updated_at maintenance
-- ---------------------------------------------------------------------------------------

-- Touches nothing but the row being written, so it runs with the caller's rights.
create or replace function public.set_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end;
$$;

-- ---------------------------------------------------------------------------------------
-- public.users: one profile per Supabase Auth user
-- ---------------------------------------------------------------------------------------

create table if not exists public.users (
  id         uuid primary key references auth.users (id) on delete cascade,
  -- Not unique and optional: an OAuth identity may come without an email, and two
  -- identities may carry the same one. auth.users is the authority on identity.
  email      text,
  name       text,
  avatar_url text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- Upgrade from the original schema: `email text not null unique` plus an index duplicating
-- the unique constraint made sign-up fail for such identities.
alter table public.users alter column email drop not null;
alter table public.users drop constraint if exists users_email_key;
drop index if exists public.ix_users_email;

create or replace trigger users_updated_at
  before update on public.users
  for each row execute function public.set_updated_at();

-- Creates the profile when Supabase Auth creates a user (first sign-in). Runs as the
-- function's owner: the signing-up user has no rights on public.users yet. It must never
-- make sign-up fail, hence no constraint that OAuth metadata could violate.
create or replace function public.handle_new_user()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  meta jsonb := coalesce(new.raw_user_meta_data, '{}'::jsonb);
begin
  insert into public.users (id, email, name, avatar_url)
  values (
    new.id,
    coalesce(nullif(new.email, ''), nullif(meta ->> 'email', '')),
    coalesce(
      nullif(meta ->> 'full_name', ''),
      nullif(meta ->> 'name', ''),
      nullif(meta ->> 'user_name', '')
    ),
    coalesce(nullif(meta ->> 'avatar_url', ''), nullif(meta ->> 'picture', ''))
  )
  on conflict (id) do nothing;
  return new;
end;
$$;

-- A trigger function is not an API: nobody calls it through PostgREST.
revoke all on function public.handle_new_user() from public, anon, authenticated;

create or replace trigger on_auth_user_created
  after insert on auth.users
  for each row execute function public.handle_new_user();

-- ---------------------------------------------------------------------------------------
-- public.chat_sessions: one chat per agent session, with the session's metadata
-- ---------------------------------------------------------------------------------------

create table if not exists public.chat_sessions (
  id               uuid primary key default gen_random_uuid(),
  user_id          uuid not null references public.users (id) on delete cascade,
  agent_session_id text,
  project_id       text,
  title            varchar(255),
  model_provider   varchar(50),
  -- Lucid's session metadata (the original had none of these).
  model            text,
  repo_url         text,
  branch           text,
  is_active        boolean not null default true,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now()
);

alter table public.chat_sessions add column if not exists model text;
alter table public.chat_sessions add column if not exists repo_url text;
alter table public.chat_sessions add column if not exists branch text;

-- The user's chats, most recently updated first (also serves every `user_id = ?` lookup and
-- the foreign key, so the original's single-column index is redundant).
create index if not exists ix_chat_sessions_user_updated
  on public.chat_sessions (user_id, updated_at desc);
-- The chat of an agent session.
create index if not exists ix_chat_sessions_user_agent_session
  on public.chat_sessions (user_id, agent_session_id);
drop index if exists public.ix_chat_sessions_user_id;

create or replace trigger chat_sessions_updated_at
  before update on public.chat_sessions
  for each row execute function public.set_updated_at();

-- ---------------------------------------------------------------------------------------
-- public.chat_messages: the session event log
-- ---------------------------------------------------------------------------------------

-- One row per event: `seq` is the event's gap-free position in its session (unique per
-- chat, so a retried batch is skipped with `on conflict (session_id, seq) do nothing`),
-- `metadata_json` the full event (kind-specific fields and seq), `content` its text.
-- Rows written by the original engine have no seq.
create table if not exists public.chat_messages (
  id            uuid primary key default gen_random_uuid(),
  session_id    uuid not null references public.chat_sessions (id) on delete cascade,
  seq           bigint check (seq >= 0),
  role          varchar(20) not null,
  content       text not null,
  event_type    varchar(100),
  metadata_json jsonb,
  created_at    timestamptz not null default now()
);

alter table public.chat_messages add column if not exists seq bigint check (seq >= 0);

-- Replay (`seq > since` in order) and idempotent appends; its leading column serves the
-- foreign key and every per-chat lookup, so the original's session_id index is redundant.
create unique index if not exists chat_messages_session_seq_key
  on public.chat_messages (session_id, seq);
drop index if exists public.ix_chat_messages_session_id;

-- ---------------------------------------------------------------------------------------
-- Privileges: no anonymous access; users go through RLS; TRUNCATE (which ignores RLS),
-- REFERENCES and TRIGGER are for the owner only.
-- ---------------------------------------------------------------------------------------

revoke all on table public.users, public.chat_sessions, public.chat_messages
  from anon, authenticated;
grant select, insert, update, delete on table
  public.users, public.chat_sessions, public.chat_messages
  to authenticated;
grant select, insert, update, delete on table
  public.users, public.chat_sessions, public.chat_messages
  to service_role;

-- ---------------------------------------------------------------------------------------
-- Row-level security. `(select auth.uid())` is evaluated once per statement instead of
-- once per row (Supabase's recommendation). Policy names follow the original's, so its
-- policies are replaced rather than left beside these.
-- ---------------------------------------------------------------------------------------

alter table public.users enable row level security;
alter table public.chat_sessions enable row level security;
alter table public.chat_messages enable row level security;

drop policy if exists users_select_own on public.users;
create policy users_select_own on public.users
  for select to authenticated
  using (id = (select auth.uid()));

drop policy if exists users_insert_own on public.users;
create policy users_insert_own on public.users
  for insert to authenticated
  with check (id = (select auth.uid()));

drop policy if exists users_update_own on public.users;
create policy users_update_own on public.users
  for update to authenticated
  using (id = (select auth.uid()))
  with check (id = (select auth.uid()));

drop policy if exists users_delete_own on public.users;
create policy users_delete_own on public.users
  for delete to authenticated
  using (id = (select auth.uid()));

drop policy if exists sessions_select on public.chat_sessions;
create policy sessions_select on public.chat_sessions
  for select to authenticated
  using (user_id = (select auth.uid()));

drop policy if exists sessions_insert on public.chat_sessions;
create policy sessions_insert on public.chat_sessions
  for insert to authenticated
  with check (user_id = (select auth.uid()));

drop policy if exists sessions_update on public.chat_sessions;
create policy sessions_update on public.chat_sessions
  for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));

drop policy if exists sessions_delete on public.chat_sessions;
create policy sessions_delete on public.chat_sessions
  for delete to authenticated
  using (user_id = (select auth.uid()));

-- A message belongs to whoever owns its chat.
drop policy if exists messages_select on public.chat_messages;
create policy messages_select on public.chat_messages
  for select to authenticated
  using (exists (
    select 1 from public.chat_sessions s
    where s.id = chat_messages.session_id and s.user_id = (select auth.uid())
  ));

drop policy if exists messages_insert on public.chat_messages;
create policy messages_insert on public.chat_messages
  for insert to authenticated
  with check (exists (
    select 1 from public.chat_sessions s
    where s.id = chat_messages.session_id and s.user_id = (select auth.uid())
  ));

drop policy if exists messages_update on public.chat_messages;
create policy messages_update on public.chat_messages
  for update to authenticated
  using (exists (
    select 1 from public.chat_sessions s
    where s.id = chat_messages.session_id and s.user_id = (select auth.uid())
  ))
  with check (exists (
    select 1 from public.chat_sessions s
    where s.id = chat_messages.session_id and s.user_id = (select auth.uid())
  ));

drop policy if exists messages_delete on public.chat_messages;
create policy messages_delete on public.chat_messages
  for delete to authenticated
  using (exists (
    select 1 from public.chat_sessions s
    where s.id = chat_messages.session_id and s.user_id = (select auth.uid())
  ));
