//! YAML in, with its nesting bounded before the parser sees it.
//!
//! `yaml-rust2` caps flow nesting (`[`, `{`) at 255 levels but builds block collections by
//! recursion, one pair of stack frames per level: a rule file of two thousand nested `- ` entries
//! overflowed a 2 MiB thread stack (found by the fuzz harness). Every nested block collection
//! starts at a column greater than its parent's, so the column where a line's content begins (after
//! its indentation and its `- `, `? ` and `: ` indicators) bounds the block depth; texts that go
//! past [`MAX_YAML_COLUMN`] are refused with the line that does.

use yaml_rust2::{Yaml, YamlLoader};

/// The widest indentation (spaces and block indicators) a line may open with. SigmaHQ's and
/// Hayabusa's rules stay under 20 columns.
pub const MAX_YAML_COLUMN: usize = 160;

/// The documents in `text`, or why not (its nesting, or the parser's error).
pub fn load(text: &str) -> Result<Vec<Yaml>, String> {
    if let Some((line, column)) = too_deep(text) {
        return Err(format!(
            "line {line} opens {column} columns deep (indentation and `- `, `? `, `: ` indicators); \
             at most {MAX_YAML_COLUMN} are accepted"
        ));
    }
    YamlLoader::load_from_str(text).map_err(|e| e.to_string())
}

/// The first line (1-based) whose content starts past [`MAX_YAML_COLUMN`], with that column.
fn too_deep(text: &str) -> Option<(usize, usize)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, content_column(l.as_bytes())))
        .find(|(_, column)| *column > MAX_YAML_COLUMN)
}

/// Where a line's content begins: past leading spaces and block indicators each followed by a space.
fn content_column(line: &[u8]) -> usize {
    let mut at = 0;
    loop {
        while line.get(at) == Some(&b' ') {
            at += 1;
        }
        match (line.get(at), line.get(at + 1)) {
            (Some(b'-' | b'?' | b':'), Some(b' ')) => at += 2,
            _ => return at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_column_skips_indentation_and_indicators() {
        assert_eq!(content_column(b"title: x"), 0);
        assert_eq!(content_column(b"    - '\\cmd.exe'"), 6);
        assert_eq!(content_column(b"  - - - x"), 8);
        assert_eq!(content_column(b"? - a"), 4);
        assert_eq!(content_column(b"  -x"), 2, "a dash without a space is content");
        assert_eq!(content_column(b"      "), 6);
    }

    /// Found by the fuzz harness: nested block entries under a selection recursed the parser off
    /// the stack of the thread loading the rule.
    #[test]
    fn deep_block_nesting_is_refused_before_the_parser_recurses() {
        let deep = format!("detection:\n  sel:\n   {}x\n  condition: sel\n", "- ".repeat(3000));
        let err = load(&deep).unwrap_err();
        assert!(err.contains("line 3") && err.contains("at most 160"), "{err}");
        let indented: String = (0..2000).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        assert!(load(&indented).unwrap_err().contains("line 162"));
        let fine = format!("a:\n{}x\n", "- ".repeat(MAX_YAML_COLUMN / 2));
        assert_eq!(load(&fine).unwrap().len(), 1, "nesting up to the bound parses");
    }
}
