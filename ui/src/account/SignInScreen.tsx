// The sign-in screen: in Supabase mode, one button per provider (the server runs the PKCE
// flow); in local mode, the existing instructions for the `lucid serve` link.
import { useEffect, useState } from 'react';
import { SignIn as LocalSignIn } from '../pages/SignIn';
import { authOptions, type AccountApi, type AuthOptions } from './session';

const LABELS: Record<string, string> = { google: 'Google', github: 'GitHub', gitlab: 'GitLab' };

export function SignInScreen({ api, expired, reason }: { api: AccountApi; expired: boolean; reason?: string }) {
  const [options, setOptions] = useState<AuthOptions | null>(null);
  const [failed, setFailed] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    authOptions(api).then(
      (o) => live && setOptions(o),
      (e: unknown) => live && setFailed(e instanceof Error ? e.message : String(e)),
    );
    return () => {
      live = false;
    };
  }, [api]);

  if (failed) {
    return (
      <main className="page signin" id="main">
        <h1>Sign in to Lucid</h1>
        <p role="alert">Lucid is not reachable ({failed}). Is the server running?</p>
      </main>
    );
  }
  if (!options) {
    return (
      <main className="page signin" id="main" aria-busy="true">
        <p>Loading…</p>
      </main>
    );
  }
  if (options.mode !== 'supabase') return <LocalSignIn expired={expired} />;

  return (
    <main className="page signin" id="main">
      <h1>{expired ? 'Your session has ended' : 'Sign in to Lucid'}</h1>
      {expired && (
        <p role="status">
          {reason ? `${reason} ` : ''}Sign in again to continue; what you were typing is kept.
        </p>
      )}
      <ul className="providers">
        {options.providers.map((p) => (
          <li key={p}>
            <a className="button provider" href={`${api.base}/api/v1/auth/sign-in/${encodeURIComponent(p)}`}>
              Continue with {LABELS[p] ?? p}
            </a>
          </li>
        ))}
      </ul>
    </main>
  );
}
