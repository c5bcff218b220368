import { useEffect, useRef, useSyncExternalStore } from 'react';
import { useVirtualizer } from '@tanstack/react-virtual';
import { TimelineItem } from './items';
import type { TimelineModel } from './model';

/** The session's timeline as a virtualised list that follows new items while at the bottom. */
export function Timeline({ model }: { model: TimelineModel }) {
  useSyncExternalStore(model.subscribe, model.getVersion);
  const items = model.items;
  const parentRef = useRef<HTMLDivElement>(null);
  const following = useRef(true);
  const virtualizer = useVirtualizer({
    count: items.length,
    getScrollElement: () => parentRef.current,
    estimateSize: () => 72,
    overscan: 6,
    getItemKey: (i) => items[i]?.key ?? i,
  });

  useEffect(() => {
    if (following.current && items.length > 0) {
      virtualizer.scrollToIndex(items.length - 1, { align: 'end' });
    }
  }, [items.length, virtualizer]);

  const onScroll = () => {
    const el = parentRef.current;
    if (!el) return;
    following.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  };

  return (
    <div
      ref={parentRef}
      className="timeline"
      onScroll={onScroll}
      tabIndex={0}
      role="log"
      aria-label="Session timeline"
      aria-live="off"
      data-testid="timeline"
      data-count={items.length}
      data-last-seq={model.summary.lastSeq}
    >
      <div style={{ height: virtualizer.getTotalSize(), position: 'relative', width: '100%' }}>
        {virtualizer.getVirtualItems().map((row) => {
          const item = items[row.index];
          if (!item) return null;
          return (
            <div
              key={row.key}
              data-index={row.index}
              ref={virtualizer.measureElement}
              className="row"
              style={{ position: 'absolute', top: 0, left: 0, width: '100%', transform: `translateY(${row.start}px)` }}
            >
              <TimelineItem item={item} />
            </div>
          );
        })}
      </div>
    </div>
  );
}
