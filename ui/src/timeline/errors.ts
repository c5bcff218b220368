// Engine errors in words a person can act on: the engine's message plus what to do.
const HINTS: [RegExp, string][] = [
  // Git first: a clone's "authentication failed" is about the forge token, not the model's key.
  [/could not clone|clone|push|repository/i,
    'Check that the repository and branch exist and that its integration token can read it (Integrations page).'],
  [/api key|authentication|unauthori[sz]ed|401|invalid x-api-key/i,
    'Check the provider\'s API key (ANTHROPIC_API_KEY, GOOGLE_API_KEY or LLM_API_KEY) and restart `lucid serve`.'],
  [/rate limit|429|overloaded|529/i, 'The model provider is busy or rate-limiting: wait a moment and send a follow-up to continue.'],
  [/docker/i, 'Start Docker (e.g. `sudo systemctl start docker`) or see Settings → Engine status.'],
  [/timed? ?out|timeout/i, 'The step took too long. Ask for a smaller step, or raise CONVERSATION_TIMEOUT.'],
  [/max(imum)? iterations|MAX_ITERATIONS/i, 'The agent hit its step limit: send a follow-up to let it continue, or raise MAX_ITERATIONS.'],
  [/\bgit\b/i, 'Check that the repository and branch exist and that its integration token can read it (Integrations page).'],
  [/not reachable|network|connect/i, 'Check the network and that the provider\'s base URL is right.'],
];

export function errorHint(message: string): string | null {
  for (const [re, hint] of HINTS) if (re.test(message)) return hint;
  return null;
}
