-- Lucid's Supabase schema, part 2: saved GitHub/GitLab tokens (encrypted by the engine).
--
-- Re-runnable; upgrades a database holding the original's 002_integrations.sql in place.
-- Same access model as part 1: own rows only for `authenticated`, nothing for `anon`.

create table if not exists public.integrations (
  id                     uuid primary key default gen_random_uuid(),
  user_id                uuid not null references public.users (id) on delete cascade,
  -- `GITHUB` or `GITLAB`; one row per user and provider.
  provider               text not null,
  label                  text,
  -- AES-256-CBC ciphertext and IV, hex (the original's format).
  access_token_encrypted text not null,
  iv                     text not null,
  external_username      text,
  -- May end in `||<GitLab URL>` for self-hosted GitLab.
  scopes                 text,
  created_at             timestamptz not null default now()
);

-- One row per user and provider; its leading column serves the foreign key and `user_id = ?`
-- lookups, so the original's separate user_id index is redundant.
create unique index if not exists ix_integrations_user_provider
  on public.integrations (user_id, provider);
drop index if exists public.ix_integrations_user_id;

revoke all on table public.integrations from anon, authenticated;
grant select, insert, update, delete on table public.integrations to authenticated;
grant select, insert, update, delete on table public.integrations to service_role;

alter table public.integrations enable row level security;

drop policy if exists integrations_select on public.integrations;
create policy integrations_select on public.integrations
  for select to authenticated
  using (user_id = (select auth.uid()));

drop policy if exists integrations_insert on public.integrations;
create policy integrations_insert on public.integrations
  for insert to authenticated
  with check (user_id = (select auth.uid()));

drop policy if exists integrations_update on public.integrations;
create policy integrations_update on public.integrations
  for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));

drop policy if exists integrations_delete on public.integrations;
create policy integrations_delete on public.integrations
  for delete to authenticated
  using (user_id = (select auth.uid()));
