// Drives the fake Supabase Auth with the official @supabase/auth-js client: if the fake's
// endpoints, JSON or error bodies drift from GoTrue's, the official client fails here.
// Run by the Rust test `auth_js_fidelity` (crates/lucid-testkit/tests/auth_js_fidelity.rs)
// with SUPABASE_URL and SUPABASE_ANON_KEY set; prints one line per check, exits 1 on failure.
import { GoTrueClient } from '@supabase/auth-js'

const base = process.env.SUPABASE_URL
const anonKey = process.env.SUPABASE_ANON_KEY
const expectAsymmetric = process.env.EXPECT_ASYMMETRIC === '1'
if (!base || !anonKey) {
  console.error('SUPABASE_URL and SUPABASE_ANON_KEY must be set')
  process.exit(2)
}

function memoryStorage() {
  const items = new Map()
  return {
    items,
    getItem: async (k) => (items.has(k) ? items.get(k) : null),
    setItem: async (k, v) => void items.set(k, v),
    removeItem: async (k) => void items.delete(k),
  }
}

function client(storage = memoryStorage()) {
  const c = new GoTrueClient({
    url: `${base}/auth/v1`,
    headers: { apikey: anonKey, Authorization: `Bearer ${anonKey}` },
    flowType: 'pkce',
    storage,
    storageKey: `fidelity-${Math.random()}`,
    persistSession: true,
    autoRefreshToken: false,
    detectSessionInUrl: false,
  })
  return { c, storage }
}

function check(cond, what, detail) {
  if (!cond) {
    console.error(`FAIL: ${what}${detail === undefined ? '' : `: ${JSON.stringify(detail)}`}`)
    process.exit(1)
  }
  console.log(`ok: ${what}`)
}

// The "browser": follows the authorize link to the provider and back, returns the callback URL.
async function authorize(url) {
  const res = await fetch(url, { redirect: 'manual' })
  check(res.status === 303 || res.status === 302, 'authorize redirects', res.status)
  return new URL(res.headers.get('location'))
}

const redirectTo = 'http://127.0.0.1:9/auth/callback?state=opaque-state'

async function signIn(provider) {
  const { c, storage } = client()
  const { data, error } = await c.signInWithOAuth({
    provider,
    options: { redirectTo, skipBrowserRedirect: true },
  })
  check(!error && data.url, `signInWithOAuth(${provider}) gives an authorize URL`, error)
  const authorizeUrl = new URL(data.url)
  check(authorizeUrl.searchParams.get('code_challenge_method') === 's256', 'PKCE s256 challenge')
  const back = await authorize(data.url)
  check(back.searchParams.get('state') === 'opaque-state', 'the redirect keeps its own query', back.href)
  const code = back.searchParams.get('code')
  check(!!code, 'the redirect carries a code', back.href)
  return { c, storage, code }
}

// 1. PKCE sign-in and code exchange.
const { c, code } = await signIn('github')
const exchanged = await c.exchangeCodeForSession(code)
check(!exchanged.error, 'exchangeCodeForSession succeeds', exchanged.error)
const session = exchanged.data.session
check(session.token_type === 'bearer' && session.expires_in > 0 && session.expires_at > 0, 'session shape', session)
check(exchanged.data.user.email === 'grace@example.test', 'the user comes with the session', exchanged.data.user)
check(exchanged.data.user.app_metadata.provider === 'github', 'app_metadata.provider')
check(exchanged.data.user.user_metadata.avatar_url?.startsWith('https://'), 'user_metadata.avatar_url')

// 2. getUser and getClaims (JWKS verification for asymmetric keys).
const got = await c.getUser()
check(!got.error && got.data.user.id === exchanged.data.user.id, 'getUser', got.error)
const claims = await c.getClaims()
check(!claims.error && claims.data.claims.sub === got.data.user.id, 'getClaims verifies the access token', claims.error)
check(claims.data.claims.aud === 'authenticated' && claims.data.claims.role === 'authenticated', 'claims audience and role')
check((claims.data.header.alg !== 'HS256') === expectAsymmetric, `signed ${claims.data.header.alg}`)

// 3. Replayed code.
{
  const { c: other, storage } = client()
  await other.signInWithOAuth({ provider: 'github', options: { redirectTo, skipBrowserRedirect: true } })
  // The verifier the first client used is gone; give this client a verifier and replay the
  // already-exchanged code.
  const key = [...storage.items.keys()].find((k) => k.endsWith('-code-verifier'))
  const replay = await other.exchangeCodeForSession(code)
  check(replay.error?.code === 'flow_state_not_found' && replay.error.status === 404, 'a replayed code is refused', replay.error)
  check(!!key, 'the client had stored its verifier')
}

// 4. Wrong verifier.
{
  const { c: other, storage, code: freshCode } = await signIn('google')
  const key = [...storage.items.keys()].find((k) => k.endsWith('-code-verifier'))
  await storage.setItem(key, 'a'.repeat(64))
  const wrong = await other.exchangeCodeForSession(freshCode)
  check(wrong.error?.code === 'bad_code_verifier' && wrong.error.status === 400, 'a wrong verifier is refused', wrong.error)
  check(wrong.error.message === 'code challenge does not match previously saved code verifier', "GoTrue's message")
}

// 5. Refresh rotation.
const refreshed = await c.refreshSession()
check(!refreshed.error, 'refreshSession succeeds', refreshed.error)
check(refreshed.data.session.refresh_token !== session.refresh_token, 'the refresh token rotates')
{
  // The spent token, presented by someone else: refused as reuse, and the session is revoked.
  const { c: thief } = client()
  const reused = await thief.refreshSession({ refresh_token: session.refresh_token })
  check(reused.error?.code === 'refresh_token_already_used', 'a reused refresh token is refused', reused.error)
  check(reused.error.message === 'Invalid Refresh Token: Already Used', "GoTrue's reuse message")
}
{
  // Reuse detection revoked the family: the newest token is dead too.
  const { c: again } = client()
  const after = await again.refreshSession({ refresh_token: refreshed.data.session.refresh_token })
  check(after.error?.code === 'refresh_token_not_found', 'reuse detection revoked the session', after.error)
}

// 6. A fresh session, then sign-out (global) revokes it.
{
  const { c: s2, code: c2 } = await signIn('gitlab')
  const ex = await s2.exchangeCodeForSession(c2)
  check(!ex.error && ex.data.user.email === 'alan@example.test', 'second sign-in (gitlab)', ex.error)
  const token = ex.data.session.access_token
  const refresh = ex.data.session.refresh_token
  const out = await s2.signOut()
  check(!out.error, 'signOut succeeds', out.error)
  const { data: after } = await s2.getSession()
  check(after.session === null, 'the client forgot the session')
  const { c: probe } = client()
  const user = await probe.getUser(token)
  // auth-js turns GoTrue's `session_not_found` into AuthSessionMissingError.
  check(user.error?.name === 'AuthSessionMissingError', 'the old access token no longer has a session', user.error)
  const r = await probe.refreshSession({ refresh_token: refresh })
  check(r.error?.code === 'refresh_token_not_found', 'the refresh token is revoked', r.error)
}

console.log('auth-js fidelity: all checks passed')
