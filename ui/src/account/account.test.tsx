import { act, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { App } from '../App';
import { AccountBadge } from './AccountBadge';
import { readDraft, useDraft } from './draft';
import { loadSession, SessionKeeper, storedSession, type AccountApi, type AccountSession } from './session';
import { SignInScreen } from './SignInScreen';

const now = () => Math.floor(Date.now() / 1000);

function session(over: Partial<AccountSession> = {}): AccountSession {
  return {
    accessToken: 'access-1',
    refreshToken: 'refresh-1',
    expiresAt: now() + 3600,
    user: { id: 'u1', email: 'grace@example.test', name: 'Grace Hopper', avatarUrl: 'https://a.test/g.png', provider: 'github' },
    ...over,
  };
}

function api(routes: Record<string, (init?: RequestInit) => Response>): AccountApi & { calls: string[] } {
  const calls: string[] = [];
  const fetch = vi.fn((url: string | URL | Request, init?: RequestInit) => {
    const path = String(url);
    calls.push(path);
    const route = routes[path];
    return Promise.resolve(route ? route(init) : new Response('{"detail":"no route"}', { status: 404 }));
  }) as unknown as typeof window.fetch;
  return { fetch, base: '', calls };
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

afterEach(() => {
  sessionStorage.clear();
  vi.useRealTimers();
});

describe('session from the callback', () => {
  it('takes the session from the fragment, stores it and strips it from the address bar', () => {
    const s = session();
    window.history.replaceState(null, '', `/#session=${encodeURIComponent(JSON.stringify(s))}`);
    expect(loadSession()).toEqual(s);
    expect(window.location.href).not.toContain('session');
    expect(storedSession()).toEqual(s);
  });

  it('ignores a damaged fragment', () => {
    window.history.replaceState(null, '', '/#session=%7Bnot-json');
    expect(loadSession()).toBeNull();
    window.history.replaceState(null, '', `/#session=${encodeURIComponent('{"accessToken":1}')}`);
    expect(loadSession()).toBeNull();
  });
});

describe('SessionKeeper', () => {
  it('refreshes by the wall clock (e.g. after a sleep) and stores the rotated session', async () => {
    localStorage.setItem('lucid.session', JSON.stringify(session()));
    const fresh = session({ accessToken: 'access-2', refreshToken: 'refresh-2', expiresAt: now() + 7200 });
    let body = '';
    const a = api({
      '/api/v1/auth/refresh': (init) => {
        body = String(init?.body);
        return json(fresh);
      },
    });
    const onChange = vi.fn();
    // Not due: nothing happens.
    const keeper = new SessionKeeper({ api: a, onChange });
    expect(await keeper.refreshIfDue()).toEqual(session());
    expect(a.calls).toEqual([]);
    keeper.stop();
    // Two hours later by the wall clock: refreshed at once.
    const woke = new SessionKeeper({ api: a, onChange, now: () => Date.now() + 2 * 3600 * 1000 });
    expect(await woke.refreshIfDue()).toEqual(fresh);
    woke.stop();
    expect(JSON.parse(body)).toEqual({ refreshToken: 'refresh-1' });
    expect(storedSession()).toEqual(fresh);
    expect(onChange).toHaveBeenCalledWith(fresh);
  });

  it('reports a session that cannot be refreshed and forgets it', async () => {
    localStorage.setItem('lucid.session', JSON.stringify(session({ expiresAt: now() - 10 })));
    const a = api({ '/api/v1/auth/refresh': () => json({ detail: 'Invalid Refresh Token: Already Used' }, 401) });
    const onChange = vi.fn();
    const keeper = new SessionKeeper({ api: a, onChange });
    expect(await keeper.refreshIfDue()).toBeNull();
    keeper.stop();
    expect(onChange).toHaveBeenCalledWith(null, 'Invalid Refresh Token: Already Used');
    expect(storedSession()).toBeNull();
  });

  it('keeps the session when the server is only unreachable', async () => {
    localStorage.setItem('lucid.session', JSON.stringify(session({ expiresAt: now() - 10 })));
    const a = api({ '/api/v1/auth/refresh': () => json({ detail: 'Supabase Auth could not be reached' }, 502) });
    const onChange = vi.fn();
    const keeper = new SessionKeeper({ api: a, onChange });
    expect(await keeper.refreshIfDue()).not.toBeNull();
    keeper.stop();
    expect(onChange).not.toHaveBeenCalled();
    expect(storedSession()).not.toBeNull();
  });
});

describe('sign-in screen', () => {
  it('offers the three providers in Supabase mode', async () => {
    const a = api({ '/api/v1/auth/options': () => json({ mode: 'supabase', providers: ['google', 'github', 'gitlab'] }) });
    render(<SignInScreen api={a} expired={false} />);
    const links = await screen.findAllByRole('link', { name: /Continue with/ });
    expect(links.map((l) => l.getAttribute('href'))).toEqual([
      '/api/v1/auth/sign-in/google',
      '/api/v1/auth/sign-in/github',
      '/api/v1/auth/sign-in/gitlab',
    ]);
    expect(screen.getByText('Continue with GitHub')).toBeTruthy();
  });

  it('is hidden in local mode (the lucid serve link instructions instead)', async () => {
    const a = api({ '/api/v1/auth/options': () => json({ mode: 'local', providers: [] }) });
    render(<SignInScreen api={a} expired={false} />);
    expect(await screen.findByText(/lucid serve --print-token/)).toBeTruthy();
    expect(screen.queryByRole('link', { name: /Continue with/ })).toBeNull();
  });

  it('says the session ended and that the draft is kept', async () => {
    const a = api({ '/api/v1/auth/options': () => json({ mode: 'supabase', providers: ['github'] }) });
    render(<SignInScreen api={a} expired reason="Invalid Refresh Token: Session Expired" />);
    expect(await screen.findByText('Your session has ended')).toBeTruthy();
    expect(screen.getByRole('status').textContent).toContain('what you were typing is kept');
  });
});

describe('account badge', () => {
  it('shows the avatar, name and email, and signs out', () => {
    const onSignOut = vi.fn();
    const { container } = render(<AccountBadge user={session().user} onSignOut={onSignOut} />);
    expect(screen.getByText('Grace Hopper')).toBeTruthy();
    expect(screen.getByText('grace@example.test')).toBeTruthy();
    expect(container.querySelector('img')?.getAttribute('src')).toBe('https://a.test/g.png');
    fireEvent.click(screen.getByRole('button', { name: 'Sign out' }));
    expect(onSignOut).toHaveBeenCalled();
  });
});

describe('drafts', () => {
  function Box() {
    const [text, setText] = useDraft('t');
    return <textarea aria-label="box" value={text} onChange={(e) => setText(e.target.value)} />;
  }

  it('survive the field being unmounted (the sign-in screen replacing the app)', () => {
    const first = render(<Box />);
    fireEvent.change(screen.getByLabelText('box'), { target: { value: 'half-written task' } });
    first.unmount();
    expect(readDraft('t')).toBe('half-written task');
    render(<Box />);
    expect((screen.getByLabelText('box') as HTMLTextAreaElement).value).toBe('half-written task');
  });
});

describe('App in Supabase mode', () => {
  it('an ended session shows the sign-in screen and keeps the task draft', async () => {
    window.history.replaceState(null, '', '/ui/');
    localStorage.setItem('lucid.session', JSON.stringify(session({ expiresAt: now() - 5 })));
    sessionStorage.setItem('lucid.draft.new-task', 'fix the flaky test');
    const fetch = vi.fn((url: string | URL | Request) => {
      const path = String(url).replace(window.location.origin, '');
      if (path === '/api/v1/auth/refresh') return Promise.resolve(json({ detail: 'Invalid Refresh Token: Session Expired' }, 401));
      if (path === '/api/v1/auth/options') return Promise.resolve(json({ mode: 'supabase', providers: ['google', 'github', 'gitlab'] }));
      return Promise.resolve(json({ detail: 'Token expired' }, 401));
    });
    vi.stubGlobal('fetch', fetch);
    try {
      await act(async () => {
        render(<App />);
      });
      await waitFor(() => expect(screen.getByText('Your session has ended')).toBeTruthy());
      expect(screen.getAllByRole('link', { name: /Continue with/ })).toHaveLength(3);
      expect(sessionStorage.getItem('lucid.draft.new-task')).toBe('fix the flaky test');
      expect(storedSession()).toBeNull();
    } finally {
      vi.unstubAllGlobals();
    }
  });
});
