import { memo, useMemo } from 'react';
import { Marked } from 'marked';
import DOMPurify from 'dompurify';
import { highlight } from './highlight';

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    code({ text, lang }) {
      const language = (lang ?? '').split(/\s/)[0] ?? '';
      return `<pre class="code"><code class="hljs">${highlight(text, language || undefined)}</code></pre>`;
    },
  },
});

/** Rendered HTML of recent texts: rows scrolled back into view are not parsed and sanitised
 * again (the most expensive part of showing an answer). */
const rendered = new Map<string, string>();
const RENDERED_MAX = 400;

/** `text` rendered and sanitised, from the cache when it was rendered recently (`cache`
 * off for text still being written: each version is shown once). */
export function renderMarkdown(text: string, cache = true): string {
  const hit = cache ? rendered.get(text) : undefined;
  if (hit !== undefined) {
    // Most recently used last.
    rendered.delete(text);
    rendered.set(text, hit);
    return hit;
  }
  const raw = marked.parse(text, { async: false });
  const html = DOMPurify.sanitize(raw, { USE_PROFILES: { html: true } });
  if (!cache) return html;
  rendered.set(text, html);
  if (rendered.size > RENDERED_MAX) {
    const oldest = rendered.keys().next().value;
    if (oldest !== undefined) rendered.delete(oldest);
  }
  return html;
}

/** Markdown from the model, rendered and sanitised (no scripts, no event handlers). */
export const Markdown = memo(function Markdown({ text, live = false }: { text: string; live?: boolean }) {
  const html = useMemo(() => renderMarkdown(text, !live), [text, live]);
  return <div className="markdown" dangerouslySetInnerHTML={{ __html: html }} />;
});
