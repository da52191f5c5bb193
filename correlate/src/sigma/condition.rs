//! Sigma condition expressions: `selection and not filter`, `1 of selection_*`, `all of them`,
//! parentheses, `not`, `and` binding tighter than `or`.

/// A condition over selections (by index in the rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    Sel(usize),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    /// At least `n` of these.
    AtLeast(usize, Vec<Cond>),
}

impl Cond {
    pub(crate) fn eval(&self, sel: &mut dyn FnMut(usize) -> bool) -> bool {
        match self {
            Cond::Sel(i) => sel(*i),
            Cond::Not(c) => !c.eval(sel),
            Cond::And(cs) => cs.iter().all(|c| c.eval(sel)),
            Cond::Or(cs) => cs.iter().any(|c| c.eval(sel)),
            Cond::AtLeast(n, cs) => {
                let mut hits = 0;
                for c in cs {
                    if c.eval(sel) {
                        hits += 1;
                        if hits >= *n {
                            return true;
                        }
                    }
                }
                false
            }
        }
    }

    /// Selections this condition can make true by matching (not under a `not`).
    pub(crate) fn positive(&self, out: &mut Vec<usize>, negated: bool) {
        match self {
            Cond::Sel(i) if !negated => out.push(*i),
            Cond::Sel(_) => {}
            Cond::Not(c) => c.positive(out, !negated),
            Cond::And(cs) | Cond::Or(cs) | Cond::AtLeast(_, cs) => {
                cs.iter().for_each(|c| c.positive(out, negated))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    And,
    Or,
    Not,
    /// `1 of`, `all of`, `N of`: the count (0 = all).
    Of(usize),
    Ident(String),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let words: Vec<String> =
        s.replace('(', " ( ").replace(')', " ) ").split_whitespace().map(str::to_owned).collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let lower = w.to_ascii_lowercase();
        let next_is_of = words.get(i + 1).is_some_and(|n| n.eq_ignore_ascii_case("of"));
        match lower.as_str() {
            "(" => out.push(Tok::Open),
            ")" => out.push(Tok::Close),
            "and" => out.push(Tok::And),
            "or" => out.push(Tok::Or),
            "not" => out.push(Tok::Not),
            "|" => {
                return Err(
                    "aggregation expressions (`| count() ...`) are not supported; use a correlation rule"
                        .into(),
                );
            }
            "all" | "any" if next_is_of => {
                out.push(Tok::Of(if lower == "all" { 0 } else { 1 }));
                i += 1;
            }
            n if next_is_of && n.parse::<usize>().is_ok_and(|n| n > 0) => {
                out.push(Tok::Of(n.parse().unwrap_or(1)));
                i += 1;
            }
            "near" => return Err("the `near` operator is not supported".into()),
            _ if w.contains('|') => {
                return Err(
                    "aggregation expressions (`| count() ...`) are not supported; use a correlation rule"
                        .into(),
                );
            }
            _ => out.push(Tok::Ident(w.to_owned())),
        }
        i += 1;
    }
    Ok(out)
}

/// How deeply `not` and parentheses may nest. SigmaHQ's conditions nest three or four levels; the
/// bound keeps the recursive parser (and the tree's recursive evaluation and drop) off the end of
/// the stack whatever a rule file holds.
pub(crate) const MAX_CONDITION_DEPTH: usize = 64;

/// Parses a condition; `names` are the rule's selection names, in order.
pub(crate) fn parse(s: &str, names: &[String]) -> Result<Cond, String> {
    let toks = lex(s)?;
    let mut p = Parser { toks: &toks, pos: 0, depth: 0, names };
    let c = p.or()?;
    if p.pos != toks.len() {
        return Err(format!("condition {s:?}: unexpected {:?} at token {}", toks[p.pos], p.pos + 1));
    }
    Ok(c)
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
    /// `not`s and open parentheses around the token being read.
    depth: usize,
    names: &'a [String],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Cond::Or(parts) })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.unary()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Cond::And(parts) })
    }

    /// Steps one level into a `not` or a parenthesis, refusing past [`MAX_CONDITION_DEPTH`].
    fn nested<T>(&mut self, inner: impl FnOnce(&mut Self) -> Result<T, String>) -> Result<T, String> {
        if self.depth >= MAX_CONDITION_DEPTH {
            return Err(format!(
                "condition: `not` and parentheses nest deeper than {MAX_CONDITION_DEPTH} levels"
            ));
        }
        self.depth += 1;
        let out = inner(self);
        self.depth -= 1;
        out
    }

    fn unary(&mut self) -> Result<Cond, String> {
        match self.peek().cloned() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Cond::Not(Box::new(self.nested(Self::unary)?)))
            }
            Some(Tok::Open) => {
                self.pos += 1;
                let c = self.nested(Self::or)?;
                if self.peek() != Some(&Tok::Close) {
                    return Err("condition: missing `)`".into());
                }
                self.pos += 1;
                Ok(c)
            }
            Some(Tok::Of(n)) => {
                self.pos += 1;
                let Some(Tok::Ident(pat)) = self.peek().cloned() else {
                    return Err("condition: `of` needs a selection pattern or `them`".into());
                };
                self.pos += 1;
                let sels: Vec<Cond> = if pat == "them" {
                    (0..self.names.len())
                        .filter(|i| !self.names[*i].starts_with('_'))
                        .map(Cond::Sel)
                        .collect()
                } else {
                    (0..self.names.len())
                        .filter(|i| wildcard_match(&pat, &self.names[*i]))
                        .map(Cond::Sel)
                        .collect()
                };
                if sels.is_empty() {
                    return Err(format!("condition: `{pat}` matches no selection"));
                }
                Ok(match n {
                    0 => Cond::And(sels),
                    1 => Cond::Or(sels),
                    n => Cond::AtLeast(n, sels),
                })
            }
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                match self.names.iter().position(|n| *n == name) {
                    Some(i) => Ok(Cond::Sel(i)),
                    None => Err(format!("condition names `{name}`, which is not a selection")),
                }
            }
            other => Err(format!("condition: unexpected {other:?}")),
        }
    }
}

/// `*` wildcards over selection names: the pieces between stars must appear in order, the first
/// at the start and the last at the end. Greedy and linear in the pattern, however many stars it holds.
fn wildcard_match(pat: &str, name: &str) -> bool {
    let mut pieces = pat.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle.iter().filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn precedence_and_groups() {
        let n = names(&["a", "b", "c"]);
        assert_eq!(
            parse("a or b and not c", &n).unwrap(),
            Cond::Or(vec![Cond::Sel(0), Cond::And(vec![Cond::Sel(1), Cond::Not(Box::new(Cond::Sel(2)))])])
        );
        assert_eq!(
            parse("(a or b) and c", &n).unwrap(),
            Cond::And(vec![Cond::Or(vec![Cond::Sel(0), Cond::Sel(1)]), Cond::Sel(2)])
        );
    }

    #[test]
    fn of_patterns_and_them() {
        let n = names(&["selection_img", "selection_cli", "filter_main", "_hidden"]);
        assert_eq!(parse("1 of selection_*", &n).unwrap(), Cond::Or(vec![Cond::Sel(0), Cond::Sel(1)]));
        assert_eq!(
            parse("all of them", &n).unwrap(),
            Cond::And(vec![Cond::Sel(0), Cond::Sel(1), Cond::Sel(2)])
        );
        assert_eq!(
            parse("all of selection_* and not 1 of filter_*", &n).unwrap(),
            Cond::And(vec![
                Cond::And(vec![Cond::Sel(0), Cond::Sel(1)]),
                Cond::Not(Box::new(Cond::Or(vec![Cond::Sel(2)])))
            ])
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let n = names(&["a"]);
        assert!(parse("a and b", &n).unwrap_err().contains("`b`"));
        assert!(parse("1 of x*", &n).unwrap_err().contains("matches no selection"));
        assert!(parse("a | count() > 5", &n).unwrap_err().contains("correlation rule"));
        assert!(parse("(a", &n).unwrap_err().contains(")"));
        assert!(parse("a a", &n).is_err());
    }

    /// Found by the fuzz harness: thousands of `(` (or `not`) recursed the parser off the stack.
    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        let n = names(&["a"]);
        for depth in [MAX_CONDITION_DEPTH + 1, 100_000] {
            let parens = format!("{}a{}", "(".repeat(depth), ")".repeat(depth));
            assert!(parse(&parens, &n).unwrap_err().contains("nest deeper"), "{depth} parentheses");
            let nots = format!("{}a", "not ".repeat(depth));
            assert!(parse(&nots, &n).unwrap_err().contains("nest deeper"), "{depth} nots");
        }
        let ok = MAX_CONDITION_DEPTH / 2;
        let parens = format!("{}not a{}", "(".repeat(ok), ")".repeat(ok));
        assert_eq!(parse(&parens, &n).unwrap(), Cond::Not(Box::new(Cond::Sel(0))));
    }

    #[test]
    fn wildcards_match_in_order_and_many_stars_stay_linear() {
        for (pat, name, want) in [
            ("sel*", "selection", true),
            ("*tion", "selection", true),
            ("s*l*n", "selection", true),
            ("s*x*n", "selection", false),
            ("*", "anything", true),
            ("sel", "selection", false),
            ("selection", "selection", true),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*_*", "filter_main", true),
        ] {
            assert_eq!(wildcard_match(pat, name), want, "{pat} against {name}");
        }
        let stars = format!("sel{}x", "*".repeat(3000));
        let started = std::time::Instant::now();
        assert!(!wildcard_match(&stars, "selection_with_a_long_name_and_no_x_at_the_end"));
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
    }
}
