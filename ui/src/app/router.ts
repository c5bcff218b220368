// A small history router: the app's pages live under /ui/ (the server answers every
// /ui/... path with the app, so a refresh loads the same page).
import { useSyncExternalStore } from 'react';

export type Route =
  | { page: 'new' }
  | { page: 'session'; sessionId: string }
  | { page: 'history' }
  | { page: 'integrations' }
  | { page: 'settings' };

export function parseRoute(pathname: string): Route {
  const path = pathname.replace(/^\/ui/, '').replace(/\/+$/, '');
  const m = /^\/s\/([A-Za-z0-9_-]+)$/.exec(path);
  if (m?.[1]) return { page: 'session', sessionId: m[1] };
  if (path === '/history') return { page: 'history' };
  if (path === '/integrations') return { page: 'integrations' };
  if (path === '/settings') return { page: 'settings' };
  return { page: 'new' };
}

export function routePath(route: Route): string {
  switch (route.page) {
    case 'session':
      return `/ui/s/${route.sessionId}`;
    case 'new':
      return '/ui/';
    default:
      return `/ui/${route.page}`;
  }
}

const listeners = new Set<() => void>();
window.addEventListener('popstate', () => listeners.forEach((fn) => fn()));

export function navigate(route: Route, replace = false): void {
  const path = routePath(route);
  if (replace) window.history.replaceState(null, '', path);
  else window.history.pushState(null, '', path);
  listeners.forEach((fn) => fn());
}

function subscribe(fn: () => void) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function useRoute(): Route {
  const path = useSyncExternalStore(subscribe, () => window.location.pathname);
  return parseRoute(path);
}
