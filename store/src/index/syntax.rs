//! Query syntax the parser could not take safely, refused before parsing.

use super::IndexError;

/// Query syntax nested deeper than this is refused before parsing (the parser recurses per level).
pub const MAX_QUERY_DEPTH: usize = 32;
/// Query syntax longer than this is refused before parsing.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// Refuses query syntax the parser could not take safely: nesting (parentheses outside quoted
/// phrases) deeper than [`MAX_QUERY_DEPTH`], or text longer than [`MAX_QUERY_BYTES`].
pub(super) fn query_shape(q: &str) -> Result<(), IndexError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(IndexError::BadQuery(format!(
            "the query is {} bytes; the limit is {MAX_QUERY_BYTES}",
            q.len()
        )));
    }
    let (mut depth, mut deepest, mut quoted, mut escaped) = (0usize, 0usize, false, false);
    for c in q.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_QUERY_DEPTH {
        return Err(IndexError::BadQuery(format!(
            "the query nests {deepest} levels deep; the limit is {MAX_QUERY_DEPTH}"
        )));
    }
    Ok(())
}
