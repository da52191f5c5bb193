//! Value matchers: one Sigma field value with its modifiers, compiled once.
//!
//! Strings match case-insensitively unless `|cased`; `*` and `?` are wildcards in plain values (a
//! backslash escapes them); `contains`, `startswith` and `endswith` add the wildcards; the encoding
//! modifiers (`base64`, `base64offset`, `wide`/`utf16le`/`utf16be`/`utf16`, `windash`) expand a value
//! into the literal alternatives it can appear as, at compile time.

use super::event::Val;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};

/// Compiled regexes are capped so that no rule can make matching huge (the `regex` crate is linear
/// time already). 8 MiB admits SigmaHQ's largest (`\w{1,64}` over Unicode) and refuses bombs such as
/// `a{1000}{1000}`.
const REGEX_SIZE_LIMIT: usize = 8 << 20;

/// One literal pattern over a lower-cased (or, when cased, exact) string.
#[derive(Clone, Debug)]
pub(crate) enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// A glob with inner wildcards, as an anchored regex, and its longest literal run (which any
    /// matching text contains; empty when it has none).
    Glob(Regex, String),
    Regex(Regex),
}

/// `hay` contains `needle` (lower-case ASCII), ignoring ASCII case.
fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.len() < needle.len() {
        return false;
    }
    let first = needle[0];
    (0..=hay.len() - needle.len()).any(|i| {
        hay[i].to_ascii_lowercase() == first && hay[i..i + needle.len()].eq_ignore_ascii_case(needle)
    })
}

impl Pattern {
    /// A literal every text this pattern matches contains, when it has one: the prefilter's key.
    /// Regexes give none (they are always tested).
    pub(crate) fn literal(&self) -> Option<(&str, super::prefilter::Anchor)> {
        use super::prefilter::Anchor;
        let (l, a) = match self {
            Pattern::Exact(l) => (l, Anchor::Whole),
            Pattern::Prefix(l) => (l, Anchor::Start),
            Pattern::Suffix(l) => (l, Anchor::End),
            Pattern::Contains(l) | Pattern::Glob(_, l) => (l, Anchor::Anywhere),
            Pattern::Regex(_) => return None,
        };
        (!l.is_empty()).then_some((l.as_str(), a))
    }

    /// Matches an ASCII `s` as if it were lower-cased (`None`: this pattern needs the folded text).
    fn is_match_ascii_folded(&self, s: &str) -> Option<bool> {
        let h = s.as_bytes();
        Some(match self {
            Pattern::Exact(p) => h.eq_ignore_ascii_case(p.as_bytes()),
            Pattern::Prefix(p) => h.len() >= p.len() && h[..p.len()].eq_ignore_ascii_case(p.as_bytes()),
            Pattern::Suffix(p) => {
                h.len() >= p.len() && h[h.len() - p.len()..].eq_ignore_ascii_case(p.as_bytes())
            }
            Pattern::Contains(p) => contains_ignore_ascii_case(h, p.as_bytes()),
            Pattern::Glob(..) | Pattern::Regex(_) => return None,
        })
    }

    fn is_match(&self, s: &str) -> bool {
        match self {
            Pattern::Exact(p) => s == p,
            Pattern::Prefix(p) => s.starts_with(p.as_str()),
            Pattern::Suffix(p) => s.ends_with(p.as_str()),
            Pattern::Contains(p) => s.contains(p.as_str()),
            Pattern::Glob(r, _) | Pattern::Regex(r) => r.is_match(s),
        }
    }
}

/// Where a literal must sit in the text for its pattern to match (flags, as one literal can stand
/// for several patterns).
const WHOLE: u8 = 1;
const START: u8 = 2;
const END: u8 = 4;
const ANYWHERE: u8 = 8;

/// The literal patterns of one any-of test in one Aho-Corasick automaton, so a value list of a
/// hundred paths costs one pass over the text instead of a hundred comparisons.
#[derive(Clone, Debug)]
pub(crate) struct Literals {
    automaton: AhoCorasick,
    /// Per literal (pattern id): where it must sit ([`WHOLE`], [`START`], [`END`], [`ANYWHERE`]).
    anchors: Vec<u8>,
    /// The test's other patterns (globs, regexes, empty values), tried one by one.
    rest: Vec<Pattern>,
}

impl Literals {
    /// Below this many literals, comparing one by one is as fast.
    const MIN: usize = 4;

    fn build(groups: &[Vec<Pattern>], cased: bool) -> Option<Box<Self>> {
        let mut lits: Vec<&str> = Vec::new();
        let mut anchors: Vec<u8> = Vec::new();
        let mut rest = Vec::new();
        for p in groups.iter().flatten() {
            let (l, anchor) = match p {
                Pattern::Exact(l) => (l, WHOLE),
                Pattern::Prefix(l) => (l, START),
                Pattern::Suffix(l) => (l, END),
                Pattern::Contains(l) => (l, ANYWHERE),
                Pattern::Glob(..) | Pattern::Regex(_) => {
                    rest.push(p.clone());
                    continue;
                }
            };
            if l.is_empty() {
                rest.push(p.clone());
                continue;
            }
            match lits.iter().position(|x| *x == l.as_str()) {
                Some(i) => anchors[i] |= anchor,
                None => {
                    lits.push(l);
                    anchors.push(anchor);
                }
            }
        }
        if lits.len() < Self::MIN {
            return None;
        }
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(!cased)
            .match_kind(MatchKind::Standard)
            .build(&lits)
            .ok()?;
        Some(Box::new(Self { automaton, anchors, rest }))
    }

    /// Whether a literal sits where its pattern wants it in `s` (already lower-cased when the test
    /// is case-insensitive and `s` is not ASCII).
    fn is_match(&self, s: &str) -> bool {
        self.automaton.find_overlapping_iter(s).any(|m| {
            let a = self.anchors[m.pattern().as_usize()];
            let (start, end) = (m.start() == 0, m.end() == s.len());
            a & ANYWHERE != 0
                || (a & START != 0 && start)
                || (a & END != 0 && end)
                || (a & WHOLE != 0 && start && end)
        })
    }
}

/// A compiled value test for one field.
#[derive(Clone, Debug)]
pub(crate) enum ValueTest {
    /// Any (or, with `all`, every) group matches the field's text; a group matches when any of its
    /// patterns does (one Sigma value and the alternatives its modifiers expand it to). Built by
    /// [`ValueTest::text`], which puts many literal patterns into one automaton (`fast`).
    Text { groups: Vec<Vec<Pattern>>, all: bool, cased: bool, fast: Option<Box<Literals>> },
    /// The field's number compares with `n`.
    Num { op: NumOp, n: f64 },
    /// An integer value: equal as a number, or as text.
    Int(i64),
    /// A boolean value.
    Bool(bool),
    /// The field has no value: absent or JSON null (`field: null`; the empty string is not null).
    Null,
    /// `|exists: true/false`.
    Exists(bool),
    /// `|cidr`: the field is an IP address inside one of the networks.
    Cidr(Vec<Cidr>),
    /// `|fieldref`: equal to another field of the same event (index into the rule's field table).
    FieldRef(usize),
    /// The field is absent, or the test holds (pipeline conditions such as "the host's OS is
    /// Windows, when the event says").
    AbsentOr(Box<ValueTest>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NumOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// An IPv4 or IPv6 network.
#[derive(Clone, Debug)]
pub(crate) struct Cidr {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: std::net::IpAddr = a.trim().parse().map_err(|_| format!("{s:?} is not a CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix =
            if p.is_empty() { max } else { p.parse().map_err(|_| format!("{s:?} has a bad prefix"))? };
        if prefix > max {
            return Err(format!("{s:?} has a prefix longer than {max}"));
        }
        Ok(Self { addr, prefix })
    }

    fn contains(&self, ip: std::net::IpAddr) -> bool {
        let bits = |ip: std::net::IpAddr| -> (u128, u32) {
            match ip {
                std::net::IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
                std::net::IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, len), (host, hlen)) = (bits(self.addr), bits(ip));
        if len != hlen {
            return false;
        }
        if self.prefix == 0 {
            return true;
        }
        let mask = u128::MAX << (128 - u32::from(self.prefix));
        (net & mask) == (host & mask)
    }
}

impl ValueTest {
    /// A text test; an any-of test with enough literal patterns gets its automaton.
    pub(crate) fn text(groups: Vec<Vec<Pattern>>, all: bool, cased: bool) -> Self {
        let fast = if all { None } else { Literals::build(&groups, cased) };
        ValueTest::Text { groups, all, cased, fast }
    }

    /// Tests one field value; `other` resolves `fieldref` targets.
    pub(crate) fn test(&self, v: &Val<'_>, other: &dyn Fn(usize) -> Option<String>) -> bool {
        match self {
            ValueTest::Exists(want) => v.is_present() == *want,
            ValueTest::AbsentOr(t) => !v.is_present() || t.test(v, other),
            // Sigma keeps null (no value) and the empty string apart: `X: null` and `X: ''` are two tests.
            ValueTest::Null => !v.is_present(),
            ValueTest::Text { groups, all, cased, fast } => v.any_text(&mut |s| {
                // Case-insensitive matching folds the text once, lazily, and not at all for ASCII
                // text against literal patterns.
                let mut folded: Option<String> = None;
                let ascii = !*cased && s.is_ascii();
                if let Some(f) = fast {
                    let hit = if *cased || ascii {
                        f.is_match(s)
                    } else {
                        f.is_match(folded.get_or_insert_with(|| s.to_lowercase()))
                    };
                    if hit {
                        return true;
                    }
                }
                let mut one = |p: &Pattern| {
                    if *cased {
                        return p.is_match(s);
                    }
                    if ascii && let Some(m) = p.is_match_ascii_folded(s) {
                        return m;
                    }
                    p.is_match(folded.get_or_insert_with(|| s.to_lowercase()))
                };
                if let Some(f) = fast {
                    f.rest.iter().any(&mut one)
                } else if *all {
                    groups.iter().all(|g| g.iter().any(&mut one))
                } else {
                    groups.iter().any(|g| g.iter().any(&mut one))
                }
            }),
            ValueTest::Int(n) => match v {
                Val::Int(i) => i == n,
                _ => v.any_text(&mut |s| s.trim().parse::<i64>().ok() == Some(*n)),
            },
            ValueTest::Bool(b) => match v {
                Val::Bool(x) => x == b,
                _ => v.any_text(&mut |s| s.eq_ignore_ascii_case(if *b { "true" } else { "false" })),
            },
            ValueTest::Num { op, n } => {
                let x = match v {
                    Val::Int(i) => Some(*i as f64),
                    _ => v.as_text().and_then(|s| s.trim().parse::<f64>().ok()),
                };
                x.is_some_and(|x| match op {
                    NumOp::Gt => x > *n,
                    NumOp::Gte => x >= *n,
                    NumOp::Lt => x < *n,
                    NumOp::Lte => x <= *n,
                })
            }
            ValueTest::Cidr(nets) => v.any_text(&mut |s| {
                s.trim().parse::<std::net::IpAddr>().is_ok_and(|ip| nets.iter().any(|n| n.contains(ip)))
            }),
            ValueTest::FieldRef(i) => match other(*i) {
                Some(o) => v.any_text(&mut |s| s.eq_ignore_ascii_case(&o)),
                None => false,
            },
        }
    }
}

/// A glob (`*`, `?`, `\` escapes) as the cheapest pattern that implements it. `s` is already folded
/// when matching is case-insensitive.
pub(crate) fn glob(s: &str) -> Result<Pattern, String> {
    glob_wrapped(s, false, false)
}

/// A glob with a `*` added before and/or after the value (`contains`, `startswith`, `endswith`): the
/// added wildcards are tokens, so a value ending in a backslash stays a literal backslash.
pub(crate) fn glob_wrapped(s: &str, star_before: bool, star_after: bool) -> Result<Pattern, String> {
    // Split into literal runs and wildcards.
    #[derive(PartialEq)]
    enum Tok {
        Lit(String),
        Star,
        One,
    }
    let mut toks: Vec<Tok> = Vec::new();
    if star_before {
        toks.push(Tok::Star);
    }
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('*' | '?' | '\\')) => lit.push(chars.next().unwrap_or('\\')),
            '*' | '?' => {
                if !lit.is_empty() {
                    toks.push(Tok::Lit(std::mem::take(&mut lit)));
                }
                let t = if c == '*' { Tok::Star } else { Tok::One };
                if !(t == Tok::Star && toks.last() == Some(&Tok::Star)) {
                    toks.push(t);
                }
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        toks.push(Tok::Lit(lit));
    }
    if star_after && toks.last() != Some(&Tok::Star) {
        toks.push(Tok::Star);
    }
    Ok(match toks.as_slice() {
        [] => Pattern::Exact(String::new()),
        [Tok::Lit(l)] => Pattern::Exact(l.clone()),
        [Tok::Star] => Pattern::Glob(build_regex("(?s)^.*$", false)?, String::new()),
        [Tok::Star, Tok::Lit(l)] => Pattern::Suffix(l.clone()),
        [Tok::Lit(l), Tok::Star] => Pattern::Prefix(l.clone()),
        [Tok::Star, Tok::Lit(l), Tok::Star] => Pattern::Contains(l.clone()),
        _ => {
            let mut re = String::from("(?s)^");
            for t in &toks {
                match t {
                    Tok::Lit(l) => re.push_str(&regex::escape(l)),
                    Tok::Star => re.push_str(".*"),
                    Tok::One => re.push('.'),
                }
            }
            re.push('$');
            let longest = toks
                .iter()
                .filter_map(|t| match t {
                    Tok::Lit(l) => Some(l.as_str()),
                    _ => None,
                })
                .max_by_key(|l| l.len())
                .unwrap_or_default();
            Pattern::Glob(build_regex(&re, false)?, longest.to_owned())
        }
    })
}

/// A regex with the size caps; refused with the reason when it cannot be built.
pub(crate) fn build_regex(re: &str, case_insensitive: bool) -> Result<Regex, String> {
    RegexBuilder::new(re)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("regex {re:?} refused: {e}"))
}

/// Standard base64 of `bytes` (with padding).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The three forms a value takes inside a longer base64 text, by its offset modulo 3 (Sigma's
/// `base64offset`): the stable middle of each encoding, without the characters that depend on the
/// neighbouring bytes.
pub(crate) fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_TRIM: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let mut padded = vec![b' '; i];
            padded.extend_from_slice(bytes);
            let enc = base64(&padded);
            let end_trim = END_TRIM[(bytes.len() + i) % 3];
            let end = enc.len().saturating_sub(end_trim);
            enc.get(START[i]..end).unwrap_or_default().to_owned()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// UTF-16 little- or big-endian bytes of `s`.
pub(crate) fn utf16(s: &str, big_endian: bool) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| if big_endian { u.to_be_bytes() } else { u.to_le_bytes() }).collect()
}

/// The dash variants Windows command lines accept for an option (Sigma's `windash`).
pub(crate) fn windash(s: &str) -> Vec<String> {
    const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    if !s.contains(['-', '/']) {
        return vec![s.to_owned()];
    }
    let mut out: Vec<String> = DASHES
        .iter()
        .map(|d| s.chars().map(|c| if c == '-' || c == '/' { *d } else { c }).collect())
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_reference_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn base64_offsets_are_found_inside_any_encoding_of_a_longer_text() {
        // Sigma's spec example: "http://" -> aHR0cDovL, h0dHA6Ly, odHRwOi8v.
        let forms = base64_offsets(b"http://");
        assert_eq!(forms, vec!["aHR0cDovL", "h0dHA6Ly", "odHRwOi8v"]);
        for prefix in ["", "a", "ab", "abc", "xyzw"] {
            let text = base64(format!("{prefix}http://evil").as_bytes());
            assert!(forms.iter().any(|f| text.contains(f.as_str())), "{prefix:?}: {text}");
        }
    }

    #[test]
    fn globs_pick_the_cheapest_pattern() {
        assert!(matches!(glob("abc").unwrap(), Pattern::Exact(_)));
        assert!(matches!(glob("*abc").unwrap(), Pattern::Suffix(_)));
        assert!(matches!(glob("abc*").unwrap(), Pattern::Prefix(_)));
        assert!(matches!(glob("*abc*").unwrap(), Pattern::Contains(_)));
        let inner = glob(r"*\temp\\*.ps1").unwrap();
        assert_eq!(
            inner.literal().map(|(l, _)| l),
            Some(r"\temp\"),
            "the longest literal run is the prefilter key"
        );
        // `\*` escapes the wildcard; `\\*` is a backslash and then a wildcard (Sigma's escaping).
        let p = glob(r"c:\windows\\*\cmd?.exe").unwrap();
        assert!(p.is_match(r"c:\windows\system32\cmd1.exe"));
        assert!(!p.is_match(r"c:\windows\system32\cmd.exe"));
        let esc = glob(r"what\*").unwrap();
        assert!(esc.is_match("what*") && !esc.is_match("whatever"));
        let trailing = glob_wrapped(r"corp\", false, true).unwrap();
        assert!(trailing.is_match(r"corp\alice"), "a trailing backslash is literal before an added wildcard");
    }

    #[test]
    fn many_literals_share_one_automaton_and_keep_their_anchors() {
        let pats = |v: &[&str]| v.iter().map(|p| vec![glob(p).unwrap()]).collect::<Vec<_>>();
        let t = ValueTest::text(
            pats(&["cmd.exe", "*\\rundll32.exe", r"c:\temp\\*", "*evil*", "a*b"]),
            false,
            false,
        );
        assert!(matches!(&t, ValueTest::Text { fast: Some(_), .. }));
        let hit = |s: &str| t.test(&Val::Str(s), &|_| None);
        assert!(hit("CMD.EXE"), "exact, case-insensitive");
        assert!(!hit("x cmd.exe"), "exact means the whole value");
        assert!(hit("C:\\Windows\\RUNDLL32.exe") && !hit("rundll32.exe.bak"), "suffix");
        assert!(hit("c:\\TEMP\\x") && !hit("d:\\c:\\temp\\"), "prefix");
        assert!(hit("so EVIL here"), "contains");
        assert!(hit("aXXb"), "globs are still tried one by one");
        assert!(hit("ÜBER EVIL"), "non-ASCII text is folded first");
        assert!(!hit("nothing"));
        let cased = ValueTest::text(pats(&["Aa", "Bb", "Cc", "Dd"]), false, true);
        assert!(cased.test(&Val::Str("Bb"), &|_| None) && !cased.test(&Val::Str("bb"), &|_| None));
        // `all` keeps the per-value path (every value must hold).
        assert!(matches!(
            ValueTest::text(pats(&["a", "b", "c", "d"]), true, false),
            ValueTest::Text { fast: None, .. }
        ));
    }

    #[test]
    fn cidr_covers_v4_and_v6() {
        let n = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let v6 = Cidr::parse("fe80::/10").unwrap();
        assert!(v6.contains("fe80::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn windash_gives_every_dash() {
        let v = windash("-enc");
        assert!(v.contains(&"/enc".to_owned()) && v.contains(&"\u{2013}enc".to_owned()) && v.len() == 5);
    }
}
