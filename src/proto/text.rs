//! Text that came from the network, made safe to print.
//!
//! Owns: [`printable`], the one rule by which every string a server chose (error codes,
//! messages, request ids, keys it lists) is cut to a bound and stripped of anything a terminal
//! or a log reader would interpret: C0 and C1 controls (ESC/CSI sequences, CR, LF, which would
//! forge a log line in journald), DEL, and the Unicode bidirectional overrides that reorder
//! what a person reads. Must not: decide whether a string is *valid* for the protocol (that is
//! [`crate::proto::xml::token_ok`]); it only makes text harmless to show.

/// `s` cut to at most `max` bytes of input (on a character boundary), with every control or
/// bidirectional-override character written as a visible escape (`\n`, `\r`, `\t`, `\x1b`,
/// `\u{202e}`) and `\` written as `\\`, so the result is one line that means what it shows.
pub fn printable(s: &str, max: usize) -> String {
    let s = super::xml::cut(s, max);
    if !s.chars().any(needs_escape) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
        || c == '\u{2028}'
        || c == '\u{2029}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(
            printable("Access denied: bucket acl", 512),
            "Access denied: bucket acl"
        );
        assert_eq!(printable("日本語のメッセージ", 512), "日本語のメッセージ");
    }

    #[test]
    fn terminal_sequences_and_line_breaks_are_escaped() {
        let hostile = "x\x1b[2J\x1b]0;pwned\x07\nossup: info: uploaded /etc/shadow\r\u{9b}31m";
        let out = printable(hostile, 512);
        assert!(out.chars().all(|c| !c.is_control()), "{out:?}");
        assert_eq!(
            out,
            "x\\x1b[2J\\x1b]0;pwned\\x07\\nossup: info: uploaded /etc/shadow\\r\\u{9b}31m"
        );
    }

    #[test]
    fn bidi_overrides_and_backslashes_are_escaped() {
        assert_eq!(printable("a\u{202e}b", 64), "a\\u{202e}b");
        assert_eq!(printable("a\u{2028}b", 64), "a\\u{2028}b");
        assert_eq!(printable(r"a\nb", 64), r"a\\nb");
        assert_eq!(printable("a\u{2066}", 64), "a\\u{2066}");
        assert_eq!(printable("plain", 64), "plain");
    }

    #[test]
    fn the_input_is_cut_before_escaping() {
        let out = printable(&"\x1b".repeat(1000), 10);
        assert_eq!(out, "\\x1b".repeat(10));
        assert_eq!(printable("ééé", 3), "é");
    }
}
