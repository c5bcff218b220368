import { describe, expect, it } from 'vitest';
import { loadToken } from './auth';

const b64 = (o: object) => btoa(JSON.stringify(o)).replace(/=+$/, '');
const jwt = (exp: number) => `h.${b64({ sub: 'local', exp })}.sig`;

describe('sign-in token', () => {
  it('takes the token from the link fragment, stores it and strips it from the URL', () => {
    const token = jwt(Math.floor(Date.now() / 1000) + 3600);
    window.history.replaceState(null, '', `/ui/#token=${token}`);
    expect(loadToken()).toEqual({ kind: 'ok', token });
    expect(window.location.href).not.toContain('token');
    expect(localStorage.getItem('lucid.token')).toBe(token);
  });

  it('reports a missing or expired token', () => {
    window.history.replaceState(null, '', '/ui/');
    expect(loadToken().kind).toBe('missing');
    localStorage.setItem('lucid.token', jwt(1000));
    expect(loadToken().kind).toBe('expired');
  });
});
