// Text being typed survives an expired session: the sign-in screen replaces the app, and
// signing in again leaves the page for the provider. Drafts live in sessionStorage (this tab).
import { useEffect, useState } from 'react';

const PREFIX = 'lucid.draft.';

export function readDraft(name: string): string {
  try {
    return sessionStorage.getItem(PREFIX + name) ?? '';
  } catch {
    return '';
  }
}

export function writeDraft(name: string, value: string): void {
  try {
    if (value) sessionStorage.setItem(PREFIX + name, value);
    else sessionStorage.removeItem(PREFIX + name);
  } catch {
    // Storage full or disabled: the draft lives in memory only.
  }
}

/** `useState` for a text field whose content is kept across sign-ins. */
export function useDraft(name: string): [string, (value: string) => void] {
  const [value, setValue] = useState(() => readDraft(name));
  useEffect(() => writeDraft(name, value), [name, value]);
  return [value, setValue];
}
