//! Python `repr()` of a string (tools spec §2.6), used for `{p!r}` in path messages.

use unicode_general_category::{GeneralCategory, get_general_category};

/// `repr(s)` exactly as CPython renders a `str`.
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => {
                let cp = c as u32;
                if cp <= 0xff {
                    out.push_str(&format!("\\x{cp:02x}"));
                } else if cp <= 0xffff {
                    out.push_str(&format!("\\u{cp:04x}"));
                } else {
                    out.push_str(&format!("\\U{cp:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// CPython's `str.isprintable` per character: everything except categories
/// Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs other than U+0020.
fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::py_repr;

    #[test]
    fn spec_examples() {
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a\tb"), "'a\\tb'");
        assert_eq!(py_repr("ünï.txt"), "'ünï.txt'");
        assert_eq!(py_repr("plain"), "'plain'");
        assert_eq!(py_repr("both'\""), "'both\\'\"'");
        assert_eq!(py_repr("back\\slash"), "'back\\\\slash'");
        assert_eq!(
            py_repr("\u{7}\u{a0}\u{200b}\u{2028}\u{e000}\u{10ffff}"),
            "'\\x07\\xa0\\u200b\\u2028\\ue000\\U0010ffff'"
        );
        assert_eq!(py_repr("nl\nret\r"), "'nl\\nret\\r'");
        assert_eq!(py_repr("😀 ok"), "'😀 ok'");
        assert_eq!(py_repr(""), "''");
    }
}
