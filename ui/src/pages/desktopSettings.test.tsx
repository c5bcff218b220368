import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import type { Settings_Serialize, SettingsView_Serialize } from '../generated/commands';
import { DesktopSettings, type SettingsCommands } from './DesktopSettings';

const settings: Settings_Serialize = {
  defaultProvider: null,
  defaultModel: null,
  anthropicBaseUrl: null,
  googleBaseUrl: null,
  llmBaseUrl: null,
  sandboxImage: null,
  sandboxMemoryLimit: null,
  sandboxCpuLimit: null,
  dockerNetwork: null,
  httpApi: { enabled: false, host: '127.0.0.1', port: 8000 },
};

function shell() {
  let view: SettingsView_Serialize = {
    settings,
    keysSet: [],
    secretStore: 'kernelKeyutils',
    secretStoreNote: 'The kernel keyring forgets them when the machine restarts.',
    restartRequired: false,
    httpApi: null,
  };
  const keys = new Map<string, string>();
  const saved: Settings_Serialize[] = [];
  const api: SettingsCommands = {
    getSettings: () => Promise.resolve(view),
    setProviderKey: ({ provider, key }) => {
      if (key.includes(' ')) return Promise.reject({ status: 400, message: 'The key must be a single line.' });
      if (key) keys.set(provider, key);
      else keys.delete(provider);
      view = { ...view, keysSet: [...keys.keys()] };
      return Promise.resolve(view);
    },
    saveSettings: (s) => {
      const next = s as Settings_Serialize;
      saved.push(next);
      view = {
        ...view,
        settings: next,
        restartRequired: next.sandboxImage !== null,
        httpApi: next.httpApi.enabled ? { url: `http://${next.httpApi.host}:${next.httpApi.port}/`, token: 'api-token-1234' } : null,
      };
      return Promise.resolve(view);
    },
  };
  return { api, keys, saved };
}

describe('desktop settings', () => {
  it('saves and removes a provider key without ever showing it', async () => {
    const s = shell();
    render(<DesktopSettings api={s.api} />);
    expect((await screen.findByTestId('key-state-anthropic')).textContent).toBe('(not set)');
    expect(screen.getByText(/kernel keyring forgets them/)).toBeTruthy();
    const input = screen.getByLabelText(/^Anthropic \(/) as HTMLInputElement;
    expect(input.type).toBe('password');
    fireEvent.change(input, { target: { value: '  sk-ant-test-key  ' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save Anthropic key' }));
    await waitFor(() => expect(screen.getByTestId('key-state-anthropic').textContent).toBe('(set)'));
    expect(s.keys.get('anthropic')).toBe('sk-ant-test-key');
    expect(input.value).toBe('');
    expect(document.body.textContent).not.toContain('sk-ant-test-key');
    fireEvent.click(screen.getByRole('button', { name: 'Remove Anthropic key' }));
    await waitFor(() => expect(screen.getByTestId('key-state-anthropic').textContent).toBe('(not set)'));
    expect(s.keys.has('anthropic')).toBe(false);
    expect(screen.getByText(/new sessions no longer use it/)).toBeTruthy();
  });

  it('shows why a key was refused', async () => {
    const s = shell();
    render(<DesktopSettings api={s.api} />);
    fireEvent.change(await screen.findByLabelText(/^Google Gemini \(/), { target: { value: 'two words' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save Google Gemini key' }));
    expect((await screen.findByRole('alert')).textContent).toContain('single line');
  });

  it('saves defaults and sandbox settings, says when a restart is needed, and shows the HTTP API', async () => {
    const s = shell();
    const writeText = vi.fn(() => Promise.resolve());
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true });
    render(<DesktopSettings api={s.api} />);
    fireEvent.change(await screen.findByLabelText('Default provider'), { target: { value: 'google' } });
    fireEvent.change(screen.getByLabelText('Default model'), { target: { value: ' gemini-2.5-pro ' } });
    fireEvent.change(screen.getByLabelText('Image'), { target: { value: 'my/sandbox:1' } });
    fireEvent.click(screen.getByLabelText(/Serve the HTTP API/));
    fireEvent.change(screen.getByLabelText('Port'), { target: { value: '8123' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save settings' }));
    expect((await screen.findByText(/Restart Lucid to apply/)).textContent).toBeTruthy();
    const [saved] = s.saved;
    if (!saved) throw new Error('nothing was saved');
    expect(saved.defaultProvider).toBe('google');
    expect(saved.defaultModel).toBe('gemini-2.5-pro');
    expect(saved.sandboxImage).toBe('my/sandbox:1');
    expect(saved.sandboxMemoryLimit).toBeNull();
    expect(saved.httpApi).toEqual({ enabled: true, host: '127.0.0.1', port: 8123 });
    expect((await screen.findByTestId('http-api')).textContent).toContain('http://127.0.0.1:8123/');
    expect(screen.getByTestId('http-api').textContent).not.toContain('api-token-1234');
    fireEvent.click(screen.getByRole('button', { name: 'Copy token' }));
    expect(writeText).toHaveBeenCalledWith('api-token-1234');
    expect(await screen.findByText('Token copied.')).toBeTruthy();
  });

  it('when the HTTP API cannot start, says so, shows that it is not running and keeps the form', async () => {
    const s = shell();
    const running: SettingsView_Serialize = {
      ...(await s.api.getSettings()),
      httpApi: { url: 'http://127.0.0.1:8000/', token: 'api-token-1234' },
    };
    let current = running;
    const api: SettingsCommands = {
      ...s.api,
      getSettings: () => Promise.resolve(current),
      saveSettings: () => {
        current = { ...running, httpApi: null };
        return Promise.reject({ status: 503, message: 'Saved, but the HTTP API could not start: address in use' });
      },
    };
    render(<DesktopSettings api={api} />);
    expect((await screen.findByTestId('http-api')).textContent).toContain('http://127.0.0.1:8000/');
    fireEvent.change(screen.getByLabelText('Port'), { target: { value: '8081' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save settings' }));
    expect((await screen.findByRole('alert')).textContent).toContain('could not start');
    await waitFor(() => expect(screen.queryByTestId('http-api')).toBeNull());
    expect((screen.getByLabelText('Port') as HTMLInputElement).value).toBe('8081');
  });

  it('refuses a port that is not one and tells the page when something changed', async () => {
    const s = shell();
    const changed = vi.fn();
    render(<DesktopSettings api={s.api} onChange={changed} />);
    fireEvent.change(await screen.findByLabelText('Port'), { target: { value: '' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save settings' }));
    expect((await screen.findByRole('alert')).textContent).toContain('1 to 65535');
    expect(s.saved).toHaveLength(0);
    fireEvent.change(screen.getByLabelText('Port'), { target: { value: '8080' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save settings' }));
    await waitFor(() => expect(changed).toHaveBeenCalledTimes(1));
    expect(s.saved[0]?.httpApi.port).toBe(8080);
    fireEvent.change(screen.getByLabelText(/^OpenAI-compatible \(/), { target: { value: 'sk-local' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save OpenAI-compatible key' }));
    await waitFor(() => expect(changed).toHaveBeenCalledTimes(2));
  });
});
