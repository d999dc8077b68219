//! Whatever the text, `parse` returns (never panics), and every located diagnostic points
//! inside the text.

use proptest::prelude::*;

const BASE: &str = include_str!("../../../examples/tls.toml");

fn check(text: &str) {
    if let Err(e) = voxgate_config::parse(text, "fuzz.toml") {
        let lines = text.split('\n').count();
        for d in e.diagnostics() {
            if let Some(l) = d.line {
                assert!(l >= 1 && l <= lines, "line {l} of {lines}: {d}");
            }
            assert!(d.column.is_none_or(|c| c >= 1), "{d}");
            let _ = d.to_string();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn mutated_example_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>(), 0u8..3), 1..8)
    ) {
        let mut chars: Vec<char> = BASE.chars().collect();
        for (at, c, op) in edits {
            if chars.is_empty() {
                break;
            }
            let i = at.index(chars.len());
            match op {
                0 => chars[i] = c,
                1 => { chars.insert(i, c); }
                _ => { chars.remove(i); }
            }
        }
        let text: String = chars.into_iter().collect();
        check(&text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check(&text);
    }

    #[test]
    fn toml_shaped_text_never_panics(
        text in "(\\[\\[?[a-z_\\.]{1,12}\\]\\]?\n|[a-z_]{1,16} = (\"[a-z0-9:\\.\\[\\]]{0,20}\"|[0-9]{1,6}|true|\\[\\])\n){0,12}"
    ) {
        check(&text);
    }
}
