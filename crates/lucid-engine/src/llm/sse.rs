//! An incremental parser for server-sent events (`text/event-stream`), as the three providers
//! use them for streamed answers.
//!
//! Bytes go in as they arrive, in chunks of any size (a chunk may end inside a line, or inside
//! a UTF-8 character); complete events come out. Lines end with `\n`, `\r\n` or `\r`; an empty
//! line ends an event; `data:` lines of one event are joined with `\n`; comment lines (`:`) and
//! unknown fields are ignored; one space after the colon is dropped.

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (Anthropic names its events; the others do not).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Splits a byte stream into [`SseEvent`]s.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous byte was `\r` (a following `\n` belongs to the same line end).
    after_cr: bool,
    event: Option<String>,
    data: Vec<String>,
    /// Whether the current event has any field yet.
    started: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes; returns the events they completed, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    /// Whether bytes of an unfinished event are buffered (a stream ending now was cut).
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.started
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.started {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data).join("\n"),
                });
                self.started = false;
            }
            return;
        }
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => {
                self.event = Some(value.to_string());
                self.started = true;
            }
            "data" => {
                self.data.push(value.to_string());
                self.started = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_line_endings() {
        let mut p = SseParser::new();
        let stream = "event: message_start\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n: keep-alive\n\ndata:[DONE]\r\rdata: é\n\n";
        let bytes = stream.as_bytes();
        let mut events = Vec::new();
        // One byte at a time: lines, CRLF pairs and the UTF-8 `é` are cut everywhere.
        for b in bytes {
            events.extend(p.push(std::slice::from_ref(b)));
        }
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":\n1}".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
                SseEvent {
                    event: None,
                    data: "é".into()
                },
            ]
        );
        assert!(!p.has_partial());
        assert!(p.push(b"data: {\"cut").is_empty());
        assert!(p.has_partial());
    }
}
