// The desktop app's own settings (shown on the Settings page inside the app): provider API
// keys in the OS credential store (never shown back), default provider and model, provider
// base URLs, the sandbox, and the optional HTTP API with its address and token.
// Commands: src-tauri/commands/settings.rs.
import { useEffect, useState, type FormEvent } from 'react';
import { commands, type Settings_Serialize, type SettingsView_Serialize } from '../generated/commands';

/** The shell's settings commands (generated bindings; replaced in tests). */
export type SettingsCommands = Pick<typeof commands, 'getSettings' | 'saveSettings' | 'setProviderKey'>;

const PROVIDERS: { name: string; label: string }[] = [
  { name: 'anthropic', label: 'Anthropic' },
  { name: 'google', label: 'Google Gemini' },
  { name: 'openai', label: 'OpenAI-compatible' },
];

const STORES: Record<string, string> = {
  secretService: 'the Secret Service (your desktop keyring)',
  kernelKeyutils: 'the kernel keyring',
  macosKeychain: 'the macOS Keychain',
  windowsCredentialManager: 'the Windows Credential Manager',
  memory: 'memory',
};

type TextField = Exclude<keyof Settings_Serialize, 'httpApi'>;

const FIELDS: { section: string; fields: { key: TextField; label: string; placeholder?: string }[] }[] = [
  {
    section: 'Models',
    fields: [
      { key: 'defaultModel', label: 'Default model', placeholder: "the provider's default" },
      { key: 'anthropicBaseUrl', label: 'Anthropic base URL', placeholder: 'https://api.anthropic.com' },
      { key: 'googleBaseUrl', label: 'Gemini base URL', placeholder: 'https://generativelanguage.googleapis.com' },
      { key: 'llmBaseUrl', label: 'OpenAI-compatible base URL', placeholder: 'e.g. http://127.0.0.1:11434/v1' },
    ],
  },
  {
    section: 'Sandbox',
    fields: [
      { key: 'sandboxImage', label: 'Image', placeholder: 'the default image' },
      { key: 'sandboxMemoryLimit', label: 'Memory limit', placeholder: 'e.g. 2g' },
      { key: 'sandboxCpuLimit', label: 'CPU limit', placeholder: 'e.g. 1.5' },
      { key: 'dockerNetwork', label: 'Docker network', placeholder: "Lucid's own (none = no network)" },
    ],
  },
];

export function DesktopSettings({
  api = commands,
  onChange,
}: {
  api?: SettingsCommands;
  /** Called after keys or settings changed (the page then refreshes the engine status). */
  onChange?: () => void;
}) {
  const [view, setView] = useState<SettingsView_Serialize | null>(null);
  const [form, setForm] = useState<Settings_Serialize | null>(null);
  // The port as typed (it may be empty while being edited).
  const [port, setPort] = useState('');
  const [keys, setKeys] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const show = (v: SettingsView_Serialize) => {
    setView(v);
    setForm(v.settings);
    setPort(String(v.settings.httpApi.port));
  };

  useEffect(() => {
    api.getSettings().then(show, (e: unknown) => setError(errorText(e)));
  }, [api]);

  if (error && !view) return <p role="alert">{error}</p>;
  if (!view || !form) return null;

  const store = STORES[view.secretStore] ?? view.secretStore;
  const saveKey = (provider: string, key: string) => {
    setError(null);
    api.setProviderKey({ provider, key }).then(
      (v) => {
        setView(v);
        setKeys((k) => ({ ...k, [provider]: '' }));
        setNotice(
          key
            ? `Key saved in ${store}; new sessions use it.`
            : `Key removed from ${store}; new sessions no longer use it.`,
        );
        onChange?.();
      },
      (e: unknown) => {
        setNotice(null);
        setError(errorText(e));
      },
    );
  };
  const portNumber = Number(port);
  const portValid = /^\d+$/.test(port.trim()) && portNumber >= 1 && portNumber <= 65535;
  const save = (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (!portValid) {
      setNotice(null);
      setError('The HTTP API port must be a number from 1 to 65535.');
      return;
    }
    const cleaned = { ...form, httpApi: { ...form.httpApi, port: portNumber } };
    for (const { fields } of FIELDS) for (const { key } of fields) cleaned[key] = cleaned[key]?.trim() || null;
    cleaned.defaultProvider = cleaned.defaultProvider || null;
    api.saveSettings(cleaned).then(
      (v) => {
        show(v);
        setNotice(v.restartRequired ? 'Saved. Restart Lucid to apply the sandbox and base URL changes.' : 'Saved.');
        onChange?.();
      },
      (err: unknown) => {
        setNotice(null);
        setError(errorText(err));
        // Saved with the HTTP API failing to start, perhaps: show what runs now, keeping what
        // the user typed in the form.
        api.getSettings().then(setView, () => undefined);
      },
    );
  };
  const set = (key: TextField, value: string) => setForm({ ...form, [key]: value });
  const copy = (text: string, what: string) => {
    if (!navigator.clipboard) {
      setError('The clipboard is not available here; select the text instead.');
      return;
    }
    navigator.clipboard.writeText(text).then(
      () => setNotice(`${what} copied.`),
      () => setError('Could not copy to the clipboard.'),
    );
  };

  return (
    <div className="desktop-settings">
      <h2>API keys</h2>
      <p>
        Kept in {store}, never in a file and never shown again.
        {view.secretStoreNote && <> {view.secretStoreNote}</>}
      </p>
      <ul className="provider-keys">
        {PROVIDERS.map(({ name, label }) => {
          const isSet = view.keysSet.includes(name);
          return (
            <li key={name}>
              <form
                onSubmit={(e) => {
                  e.preventDefault();
                  if (keys[name]?.trim()) saveKey(name, keys[name].trim());
                }}
              >
                <label htmlFor={`key-${name}`}>
                  {label} <span data-testid={`key-state-${name}`}>({isSet ? 'set' : 'not set'})</span>
                </label>
                <input
                  id={`key-${name}`}
                  type="password"
                  autoComplete="off"
                  value={keys[name] ?? ''}
                  placeholder={isSet ? 'replace the saved key' : 'paste the API key'}
                  onChange={(e) => setKeys({ ...keys, [name]: e.target.value })}
                />
                <button type="submit" disabled={!keys[name]?.trim()}>
                  Save {label} key
                </button>
                {isSet && (
                  <button type="button" onClick={() => saveKey(name, '')}>
                    Remove {label} key
                  </button>
                )}
              </form>
            </li>
          );
        })}
      </ul>

      <form onSubmit={save}>
        <h2>Defaults and sandbox</h2>
        <div className="field">
          <label htmlFor="set-provider">Default provider</label>
          <select
            id="set-provider"
            value={form.defaultProvider ?? ''}
            onChange={(e) => setForm({ ...form, defaultProvider: e.target.value || null })}
          >
            <option value="">Engine default</option>
            {PROVIDERS.map(({ name, label }) => (
              <option key={name} value={name}>
                {label}
              </option>
            ))}
          </select>
        </div>
        {FIELDS.map(({ section, fields }) => (
          <fieldset key={section}>
            <legend>{section}</legend>
            {fields.map(({ key, label, placeholder }) => (
              <div className="field" key={key}>
                <label htmlFor={`set-${key}`}>{label}</label>
                <input
                  id={`set-${key}`}
                  value={form[key] ?? ''}
                  placeholder={placeholder}
                  onChange={(e) => set(key, e.target.value)}
                />
              </div>
            ))}
          </fieldset>
        ))}
        <fieldset>
          <legend>HTTP API</legend>
          <div className="field">
            <label>
              <input
                type="checkbox"
                checked={form.httpApi.enabled}
                onChange={(e) => setForm({ ...form, httpApi: { ...form.httpApi, enabled: e.target.checked } })}
              />{' '}
              Serve the HTTP API and web UI (for other clients on this machine or network)
            </label>
          </div>
          <div className="row-fields">
            <div className="field">
              <label htmlFor="set-api-host">Address</label>
              <input
                id="set-api-host"
                value={form.httpApi.host}
                onChange={(e) => setForm({ ...form, httpApi: { ...form.httpApi, host: e.target.value } })}
              />
            </div>
            <div className="field">
              <label htmlFor="set-api-port">Port</label>
              <input
                id="set-api-port"
                inputMode="numeric"
                aria-invalid={!portValid}
                value={port}
                onChange={(e) => setPort(e.target.value)}
              />
            </div>
          </div>
          {view.httpApi && (
            <dl className="facts" data-testid="http-api">
              <dt>URL</dt>
              <dd>
                <code>{view.httpApi.url}</code>{' '}
                <button type="button" onClick={() => copy(view.httpApi?.url ?? '', 'URL')}>
                  Copy URL
                </button>
              </dd>
              <dt>Token</dt>
              <dd>
                <button type="button" onClick={() => copy(view.httpApi?.token ?? '', 'Token')}>
                  Copy token
                </button>
              </dd>
            </dl>
          )}
        </fieldset>
        <button type="submit">Save settings</button>
      </form>
      {view.restartRequired && <p role="status">Some saved settings apply after Lucid restarts.</p>}
      {notice && <p role="status">{notice}</p>}
      {error && <p role="alert">{error}</p>}
    </div>
  );
}

function errorText(e: unknown): string {
  if (e && typeof e === 'object' && 'message' in e && typeof e.message === 'string') return e.message;
  return String(e);
}
