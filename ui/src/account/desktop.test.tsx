import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { DesktopAccount, type AccountCommands, type DesktopAccountState } from './DesktopAccount';

const grace = { id: 'u1', email: 'grace@example.test', name: 'Grace Hopper', avatarUrl: null, provider: 'github' };

function shell(initial: DesktopAccountState) {
  let state = initial;
  const calls: { cmd: string; args?: Record<string, unknown> }[] = [];
  const api: AccountCommands = {
    accountState: () => {
      calls.push({ cmd: 'account_state' });
      return Promise.resolve(state);
    },
    startSignIn: (provider, loopback) => {
      calls.push({ cmd: 'start_sign_in', args: { provider, loopback } });
      return Promise.resolve('https://auth.example.test/authorize?x');
    },
    signInLink: (provider) => {
      calls.push({ cmd: 'sign_in_link', args: { provider } });
      return Promise.resolve('https://auth.example.test/authorize?copy');
    },
    signOut: () => {
      calls.push({ cmd: 'sign_out' });
      state = { ...state, user: null };
      return Promise.resolve(null);
    },
  };
  return { api, calls, set: (s: Partial<DesktopAccountState>) => (state = { ...state, ...s }) };
}

const app = (badge: unknown) => (
  <div>
    app {badge ? 'with badge' : 'without badge'}
    {badge as never}
  </div>
);

describe('desktop account', () => {
  it('local mode shows the app without sign-in', async () => {
    const s = shell({ mode: 'local', providers: [], user: null, reconnecting: false, lastError: null });
    render(<DesktopAccount api={s.api}>{app}</DesktopAccount>);
    expect(await screen.findByText(/app without badge/)).toBeTruthy();
  });

  it('signs in through the system browser, shows the account and signs out', async () => {
    const s = shell({ mode: 'supabase', providers: ['google', 'github', 'gitlab'], user: null, reconnecting: false, lastError: null });
    render(
      <DesktopAccount api={s.api} pollMs={20}>
        {app}
      </DesktopAccount>,
    );
    fireEvent.click(await screen.findByRole('button', { name: 'Continue with GitHub' }));
    await screen.findByText(/Finish signing in in your browser/);
    expect(s.calls).toContainEqual({ cmd: 'start_sign_in', args: { provider: 'github', loopback: false } });
    // The deep link arrives in the shell; the next look finds the user.
    s.set({ user: grace });
    expect(await screen.findByText('Grace Hopper')).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Sign out' }));
    await screen.findByRole('button', { name: 'Continue with Google' });
    expect(s.calls.some((c) => c.cmd === 'sign_out')).toBe(true);
  });

  it('goes back to sign-in when the session ends while signed in', async () => {
    const s = shell({ mode: 'supabase', providers: ['github'], user: grace, reconnecting: false, lastError: null });
    render(
      <DesktopAccount api={s.api} recheckMs={20}>
        {app}
      </DesktopAccount>,
    );
    expect(await screen.findByText('Grace Hopper')).toBeTruthy();
    s.set({ user: null, lastError: 'Your session has ended; sign in again.' });
    expect((await screen.findByRole('alert')).textContent).toContain('session has ended');
    expect(screen.getByRole('button', { name: 'Continue with GitHub' })).toBeTruthy();
  });

  it('offers the loopback fallback and a copyable link, and shows why a link was refused', async () => {
    const s = shell({
      mode: 'supabase',
      providers: ['gitlab'],
      user: null,
      reconnecting: false,
      lastError: 'This sign-in link was already used. If you are not signed in, start the sign-in again.',
    });
    const writeText = vi.fn(() => Promise.resolve());
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true });
    render(<DesktopAccount api={s.api}>{app}</DesktopAccount>);
    expect((await screen.findByRole('alert')).textContent).toContain('already used');
    fireEvent.click(screen.getByRole('button', { name: 'GitLab through a local address' }));
    await waitFor(() => expect(s.calls).toContainEqual({ cmd: 'start_sign_in', args: { provider: 'gitlab', loopback: true } }));
    fireEvent.click(screen.getByRole('button', { name: 'Copy GitLab sign-in link' }));
    await screen.findByText(/Sign-in link copied/);
    expect(writeText).toHaveBeenCalledWith('https://auth.example.test/authorize?copy');
  });

  it('while offline at start-up it waits for the stored session instead of asking to sign in', async () => {
    const s = shell({ mode: 'supabase', providers: ['google'], user: null, reconnecting: true, lastError: null });
    render(
      <DesktopAccount api={s.api} pollMs={20}>
        {app}
      </DesktopAccount>,
    );
    expect((await screen.findByRole('status')).textContent).toContain('cannot reach your Supabase project');
    expect(screen.queryByRole('button', { name: 'Continue with Google' })).toBeNull();
    // Supabase is reachable again: the restored session opens the app.
    s.set({ reconnecting: false, user: grace });
    expect(await screen.findByText('Grace Hopper')).toBeTruthy();
  });

  it('while reconnecting the stored session can be forgotten to sign in again', async () => {
    const s = shell({ mode: 'supabase', providers: ['gitlab'], user: null, reconnecting: true, lastError: null });
    const signOut = s.api.signOut;
    s.api.signOut = () => {
      s.set({ reconnecting: false });
      return signOut();
    };
    render(<DesktopAccount api={s.api}>{app}</DesktopAccount>);
    fireEvent.click(await screen.findByRole('button', { name: 'Forget this session and sign in again' }));
    expect(await screen.findByRole('button', { name: 'Continue with GitLab' })).toBeTruthy();
    expect(s.calls.some((c) => c.cmd === 'sign_out')).toBe(true);
  });
});
