//! Text from a model file made safe for a terminal.
use std::borrow::Cow;

/// `s` with every character that could move the cursor, recolour or rewrite
/// the terminal, or reorder what is shown escaped as `\u{..}` (or `\n`, `\r`,
/// `\t`, `\0`): C0 and C1 controls with ESC (ANSI and OSC sequences), line
/// and paragraph separators, bidirectional overrides and isolates, and
/// invisible format characters. Names in tables and errors pass through here,
/// so a name cannot forge table rows or hide what it is.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}' // Arabic letter mark
            | '\u{200b}'..='\u{200f}' // zero-width spaces and joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{feff}' // zero-width no-break space
        )
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn controls_bidi_and_separators_are_escaped() {
        assert_eq!(escape("conv1.weight"), "conv1.weight");
        assert_eq!(escape("a\u{1b}[31mred\u{1b}]0;title\u{7}"), "a\\u{1b}[31mred\\u{1b}]0;title\\u{7}");
        assert_eq!(escape("row\nforged\r\t\0"), "row\\nforged\\r\\t\\0");
        assert_eq!(escape("x\u{202e}gpj.exe\u{2066}"), "x\\u{202e}gpj.exe\\u{2066}");
        assert_eq!(escape("\u{9b}31m\u{7f}"), "\\u{9b}31m\\u{7f}");
        assert_eq!(escape("日本語 é"), "日本語 é", "printable text stays as it is");
    }
}
