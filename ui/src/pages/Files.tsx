import { useEffect, useState } from 'react';
import { useTransport } from '../app/context';
import { highlight, languageForPath } from '../timeline/highlight';
import type { FileContent, FileNode } from '../transport/types';

function Tree({ nodes, onOpen, selected }: { nodes: FileNode[]; onOpen: (p: string) => void; selected: string | null }) {
  return (
    <ul className="tree">
      {nodes.map((n) =>
        n.type === 'folder' ? (
          <li key={n.path}>
            <details open>
              <summary>{n.name}/</summary>
              <Tree nodes={n.children ?? []} onOpen={onOpen} selected={selected} />
            </details>
          </li>
        ) : (
          <li key={n.path}>
            <button
              type="button"
              className={`file-link${selected === n.path ? ' selected' : ''}`}
              aria-current={selected === n.path ? 'true' : undefined}
              onClick={() => onOpen(n.path)}
            >
              {n.name}
            </button>
          </li>
        ),
      )}
    </ul>
  );
}

/** The session's workspace: a tree and a viewer, refreshed when `version` changes. */
export function Files({ sessionId, tree, version }: { sessionId: string; tree: FileNode[] | null; version: number }) {
  const transport = useTransport();
  const [selected, setSelected] = useState<string | null>(null);
  const [file, setFile] = useState<FileContent | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    if (!selected) return;
    let live = true;
    transport.readFile(sessionId, selected).then(
      (f) => {
        if (live) {
          setFile(f);
          setError(null);
        }
      },
      (e: unknown) => {
        if (live) setError(e instanceof Error ? e.message : String(e));
      },
    );
    return () => {
      live = false;
    };
  }, [transport, sessionId, selected, version]);

  return (
    <div className="files" aria-label="Workspace files">
      <h2 className="panel-title">Files</h2>
      {tree === null ? (
        <p className="muted small">Loading…</p>
      ) : tree.length === 0 ? (
        <p className="muted small">The workspace is empty.</p>
      ) : (
        <nav aria-label="File explorer">
          <Tree nodes={tree} onOpen={setSelected} selected={selected} />
        </nav>
      )}
      {selected && (
        <div className="viewer" data-testid="file-viewer">
          <div className="viewer-head">
            <code>{selected}</code>
            <button type="button" onClick={() => setSelected(null)} aria-label="Close file">
              ×
            </button>
          </div>
          {error && <p className="error-text">{error}</p>}
          {file && file.binary && <p className="muted">{file.content}</p>}
          {file && !file.binary && (
            <pre className="code file-content" tabIndex={0}>
              <code
                className="hljs"
                dangerouslySetInnerHTML={{ __html: highlight(file.content, languageForPath(selected)) }}
              />
            </pre>
          )}
          {file?.truncated && <p className="muted small">Only the beginning of this {file.size}-byte file is shown.</p>}
        </div>
      )}
    </div>
  );
}
