//! Shortening long tool outputs before they go back to the model: the head and the tail are
//! kept (where errors and summaries usually are) around a marker saying how much was left out.
//! The full output is stored elsewhere; this only bounds what the model reads.

/// Share of the kept budget given to the head; the tail gets the rest.
const HEAD_SHARE_PERCENT: usize = 60;

fn chars_marker(omitted: usize) -> String {
    format!("\n[... {omitted} characters omitted ...]\n")
}

fn lines_marker(omitted: usize) -> String {
    format!("[... {omitted} lines omitted ...]\n")
}

/// Returns `text` unchanged if it has at most `max_chars` characters; otherwise about 60% of
/// the budget from its start and 40% from its end around a
/// `[... N characters omitted ...]` marker. The result never exceeds `max_chars` characters
/// (marker included) and never splits a character. With a budget too small for the marker,
/// only the first `max_chars` characters are kept.
pub fn truncate_for_model(text: &str, max_chars: usize) -> String {
    let total = text.chars().count();
    if total <= max_chars {
        return text.to_string();
    }
    // The marker for `total` omitted characters is at least as long as the real one.
    let marker_budget = chars_marker(total).chars().count();
    if marker_budget >= max_chars {
        return text.chars().take(max_chars).collect();
    }
    let keep = max_chars - marker_budget;
    let head = keep * HEAD_SHARE_PERCENT / 100;
    let tail = keep - head;
    let omitted = total - keep;
    let head_end = byte_offset_of_char(text, head);
    let tail_start = byte_offset_of_char(text, total - tail);
    let mut out = String::with_capacity(head_end + (text.len() - tail_start) + marker_budget);
    out.push_str(&text[..head_end]);
    out.push_str(&chars_marker(omitted));
    out.push_str(&text[tail_start..]);
    out
}

/// Keeps the first and last lines of `text` when it has more than `max_lines` lines (60% head,
/// 40% tail of the budget, at least one line of each when the budget allows), replacing the
/// middle with a `[... N lines omitted ...]` line. Line endings are preserved.
pub fn truncate_lines(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    if lines.len() <= max_lines {
        return text.to_string();
    }
    if max_lines == 0 {
        return lines_marker(lines.len());
    }
    let head = (max_lines * HEAD_SHARE_PERCENT / 100).max(1).min(max_lines);
    let tail = max_lines - head;
    let omitted = lines.len() - head - tail;
    let mut out: String = lines[..head].concat();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&lines_marker(omitted));
    out.push_str(&lines[lines.len() - tail..].concat());
    out
}

/// Byte offset of the `n`-th character of `text` (its length if `n` is past the end).
fn byte_offset_of_char(text: &str, n: usize) -> usize {
    text.char_indices().nth(n).map_or(text.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_unchanged() {
        assert_eq!(truncate_for_model("hello", 5), "hello");
        assert_eq!(truncate_for_model("", 0), "");
        assert_eq!(truncate_for_model("héllo", 10), "héllo");
    }

    #[test]
    fn keeps_head_and_tail_with_marker() {
        let text: String = (0..1000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let out = truncate_for_model(&text, 200);
        assert!(out.chars().count() <= 200, "{}", out.chars().count());
        let marker_start = out.find("\n[... ").unwrap();
        let marker_end = out.find(" characters omitted ...]\n").unwrap() + 25;
        let head = &out[..marker_start];
        let tail = &out[marker_end..];
        assert!(text.starts_with(head));
        assert!(text.ends_with(tail));
        let omitted: usize = out[marker_start + 6..marker_end - 25].parse().unwrap();
        assert_eq!(head.len() + tail.len() + omitted, 1000);
        // 60 / 40 split of the kept part.
        assert_eq!(head.len(), (head.len() + tail.len()) * 60 / 100);
    }

    #[test]
    fn never_splits_multibyte_characters() {
        let text = "é😀中".repeat(500);
        for max in [0, 1, 5, 30, 31, 32, 33, 100, 777] {
            let out = truncate_for_model(&text, max);
            assert!(out.chars().count() <= max, "max {max}");
            // It is a valid String by construction; also check the kept ends are real text.
            if let Some(i) = out.find("\n[... ") {
                assert!(text.starts_with(&out[..i]));
                let j = out.find("omitted ...]\n").unwrap() + "omitted ...]\n".len();
                assert!(text.ends_with(&out[j..]));
            }
        }
    }

    #[test]
    fn tiny_budgets_keep_the_start_only() {
        assert_eq!(truncate_for_model("abcdefghij", 3), "abc");
        assert_eq!(truncate_for_model("abcdefghij", 0), "");
    }

    #[test]
    fn line_truncation() {
        let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let out = truncate_lines(&text, 10);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[0], "line 1");
        assert_eq!(lines[5], "line 6");
        assert_eq!(lines[6], "[... 90 lines omitted ...]");
        assert_eq!(lines[7], "line 97");
        assert_eq!(lines[10], "line 100");
        assert_eq!(truncate_lines("a\nb\n", 2), "a\nb\n");
        assert_eq!(
            truncate_lines("a\nb\nc", 1),
            "a\n[... 2 lines omitted ...]\n"
        );
        assert_eq!(truncate_lines("a\nb", 0), "[... 2 lines omitted ...]\n");
    }
}
