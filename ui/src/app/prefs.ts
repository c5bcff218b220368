// Per-user preferences kept in this browser.
import { useCallback, useSyncExternalStore } from 'react';

export type Theme = 'light' | 'dark' | 'system';
export interface Prefs {
  provider: string;
  model: string;
  theme: Theme;
}

const KEY = 'lucid.prefs';
const DEFAULTS: Prefs = { provider: '', model: '', theme: 'system' };
const listeners = new Set<() => void>();
let cache: Prefs | null = null;

export function readPrefs(): Prefs {
  if (cache) return cache;
  try {
    cache = { ...DEFAULTS, ...(JSON.parse(localStorage.getItem(KEY) ?? '{}') as Partial<Prefs>) };
  } catch {
    cache = DEFAULTS;
  }
  return cache;
}

export function writePrefs(update: Partial<Prefs>): void {
  cache = { ...readPrefs(), ...update };
  localStorage.setItem(KEY, JSON.stringify(cache));
  applyTheme(cache.theme);
  listeners.forEach((fn) => fn());
}

export function applyTheme(theme: Theme): void {
  const dark =
    theme === 'dark' || (theme === 'system' && window.matchMedia?.('(prefers-color-scheme: dark)').matches);
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
}

export function usePrefs(): [Prefs, (u: Partial<Prefs>) => void] {
  const prefs = useSyncExternalStore(
    useCallback((fn: () => void) => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    }, []),
    readPrefs,
  );
  return [prefs, writePrefs];
}

/** Repository and branch of sessions started from this browser (the API does not list them). */
export interface SessionMeta {
  repoUrl?: string;
  provider?: string;
  branch?: string;
  fullName?: string;
}

export function saveSessionMeta(sessionId: string, meta: SessionMeta): void {
  localStorage.setItem(`lucid.session.${sessionId}`, JSON.stringify(meta));
}

export function sessionMeta(sessionId: string): SessionMeta | null {
  try {
    return JSON.parse(localStorage.getItem(`lucid.session.${sessionId}`) ?? 'null') as SessionMeta | null;
  } catch {
    return null;
  }
}
