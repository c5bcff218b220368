/** Shown without a valid token: how to get a sign-in link. */
export function SignIn({ expired }: { expired: boolean }) {
  return (
    <main className="page signin" id="main">
      <h1>{expired ? 'Your sign-in has expired' : 'Sign in to Lucid'}</h1>
      <p>
        {expired
          ? 'The link you opened Lucid with is no longer valid.'
          : 'This browser has no Lucid sign-in yet.'}{' '}
        Open the link that <code>lucid serve</code> prints when it starts (it looks like{' '}
        <code>http://127.0.0.1:8000/#token=…</code>), or make a new one:
      </p>
      <pre className="code">lucid serve --print-token</pre>
      <p>
        then open <code>http://127.0.0.1:8000/#token=</code> followed by the printed token. Restarting{' '}
        <code>lucid serve</code> also prints a fresh link.
      </p>
    </main>
  );
}
