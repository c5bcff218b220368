import { useEffect, useRef, useSyncExternalStore } from 'react';
import { useVirtualizer } from '@tanstack/react-virtual';
import { estimateHeight } from './estimate';
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
    estimateSize: (i) => estimateHeight(items[i]),
    overscan: 4,
    getItemKey: (i) => items[i]?.key ?? i,
  });

  const userScrolled = useRef(false);
  const totalSize = virtualizer.getTotalSize();

  // Stick to the bottom while following (also when rows get measured and grow).
  useEffect(() => {
    const el = parentRef.current;
    if (el && following.current && items.length > 0) el.scrollTop = el.scrollHeight;
  }, [items.length, totalSize]);

  // Only the user's own scrolling stops following; reaching the bottom resumes it.
  const onUserScroll = () => {
    userScrolled.current = true;
  };
  const onScroll = () => {
    const el = parentRef.current;
    if (!el) return;
    const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    if (atBottom) following.current = true;
    else if (userScrolled.current) following.current = false;
    userScrolled.current = false;
  };

  return (
    <div
      ref={parentRef}
      className="timeline"
      onScroll={onScroll}
      onWheel={onUserScroll}
      onTouchMove={onUserScroll}
      onPointerDown={onUserScroll}
      onKeyDown={onUserScroll}
      tabIndex={0}
      role="log"
      aria-label="Session timeline"
      aria-live="off"
      data-testid="timeline"
      data-count={items.length}
      data-last-seq={model.summary.lastSeq}
    >
      <div style={{ height: totalSize, position: 'relative', width: '100%' }}>
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
