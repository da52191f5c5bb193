//! Compiling a rule's selections: field names through the pipeline to resolved fields, values with
//! their modifiers to matchers, keywords to patterns over every string.

use super::event::Field;
use super::pipeline::{Pipeline, scalar};
use super::rule::Selection;
use super::value::{self, Cidr, NumOp, Pattern, ValueTest};
use yaml_rust2::Yaml;

pub(super) struct Compiler<'a> {
    pub(super) pipeline: &'a Pipeline,
    pub(super) fields: Vec<Field>,
}

type CompileError = (&'static str, String);

impl Compiler<'_> {
    fn field(&mut self, sigma: &str) -> usize {
        if let Some(i) = self.fields.iter().position(|f| f.sigma == sigma) {
            return i;
        }
        self.fields.push(self.pipeline.field(sigma));
        self.fields.len() - 1
    }

    /// A field named by its target (the pipeline's logsource conditions).
    pub(super) fn field_target(&mut self, target: &str) -> usize {
        let column = schemas::FIELDS.iter().position(|d| d.path == target);
        self.fields.push(Field::new(target.to_owned(), target.to_owned(), column));
        self.fields.len() - 1
    }

    /// `fname: values` where the pipeline says the field's values differently (Sigma's `Initiated:
    /// 'true'` is ECS's `network.direction: egress`): any of the mapped values of the target field.
    fn mapped_values(&mut self, fname: &str, values: &[&Yaml]) -> Option<(usize, ValueTest)> {
        let mut target = None;
        let mut groups = Vec::new();
        for y in values {
            let (t, mapped) = self.pipeline.mapped_value(fname, &scalar(y)?)?;
            target = Some(t.to_owned());
            groups.extend(mapped.into_iter().map(|m| vec![Pattern::Exact(m.to_lowercase())]));
        }
        let field = self.field_target(&target?);
        Some((field, ValueTest::text(groups, false, false)))
    }

    pub(super) fn selection(&mut self, y: &Yaml) -> Result<Selection, CompileError> {
        match y {
            Yaml::Hash(h) => {
                let mut tests = Vec::new();
                let mut keywords = Vec::new();
                for (k, v) in h {
                    let key = scalar(k).ok_or(("structure", "a field name must be a string".to_owned()))?;
                    if key.starts_with('|') {
                        // `'|contains|all': [...]`: keywords with modifiers, anywhere in the event.
                        keywords.push(self.keyword_test(&key, v)?);
                    } else {
                        tests.push(self.field_test(&key, v)?);
                    }
                }
                match (tests.is_empty(), keywords.len()) {
                    (true, 1) => Ok(keywords.remove(0)),
                    (_, 0) => Ok(Selection::All(tests)),
                    _ => Err(("structure", "keywords with modifiers cannot share a map with fields".into())),
                }
            }
            Yaml::Array(items) if items.iter().all(|i| matches!(i, Yaml::Hash(_))) => {
                Ok(Selection::Any(items.iter().map(|i| self.selection(i)).collect::<Result<_, _>>()?))
            }
            Yaml::Array(items) => {
                // Keywords: any occurs anywhere in the event.
                let mut groups = Vec::new();
                for i in items {
                    let s = scalar(i).ok_or(("structure", "keywords must be strings".to_owned()))?;
                    groups.push(vec![keyword(&s)?]);
                }
                Ok(Selection::Keywords(ValueTest::text(groups, false, false)))
            }
            Yaml::String(s) => {
                Ok(Selection::Keywords(ValueTest::text(vec![vec![keyword(s)?]], false, false)))
            }
            _ => Err(("structure", "a selection must be a map, a list or a keyword".into())),
        }
    }

    fn keyword_test(&mut self, key: &str, v: &Yaml) -> Result<Selection, CompileError> {
        let mods: Vec<&str> = key.split('|').skip(1).collect();
        if let Some(m) = mods.iter().find(|m| {
            !matches!(**m, "contains" | "startswith" | "endswith" | "all" | "cased" | "windash" | "re" | "i")
        }) {
            return Err(("modifier", format!("modifier `{m}` is not supported on keywords")));
        }
        let values: Vec<&Yaml> = match v {
            Yaml::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let mut groups = Vec::new();
        for y in values {
            let s = scalar(y).ok_or(("structure", "keywords must be strings".to_owned()))?;
            groups.push(patterns(&s, &mods)?);
        }
        let cased = mods.contains(&"cased") || mods.contains(&"re");
        let all = mods.contains(&"all");
        Ok(Selection::Keywords(ValueTest::text(groups, all, cased)))
    }

    fn field_test(&mut self, key: &str, v: &Yaml) -> Result<(usize, ValueTest), CompileError> {
        let mut parts = key.split('|');
        let fname = parts.next().unwrap_or_default();
        let mods: Vec<&str> = parts.collect();
        if fname.is_empty() {
            // `|contains: [...]` without a field: keywords with modifiers.
            return Err(("modifier", "a field-less modifier list is not supported".into()));
        }
        let values: Vec<&Yaml> = match v {
            Yaml::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        if mods.is_empty()
            && let Some(test) = self.mapped_values(fname, &values)
        {
            return Ok(test);
        }
        let field = self.field(fname);
        let has = |m: &str| mods.contains(&m);
        for m in &mods {
            if !matches!(
                *m,
                "contains"
                    | "startswith"
                    | "endswith"
                    | "all"
                    | "re"
                    | "i"
                    | "m"
                    | "s"
                    | "cidr"
                    | "base64"
                    | "base64offset"
                    | "wide"
                    | "utf16le"
                    | "utf16be"
                    | "utf16"
                    | "windash"
                    | "exists"
                    | "fieldref"
                    | "gt"
                    | "gte"
                    | "lt"
                    | "lte"
                    | "cased"
            ) {
                let class = if *m == "expand" { "placeholder" } else { "modifier" };
                return Err((class, format!("modifier `{m}` is not supported")));
            }
        }
        if has("exists") {
            let want = matches!(v, Yaml::Boolean(true)) || scalar(v).as_deref() == Some("true");
            return Ok((field, ValueTest::Exists(want)));
        }
        if has("fieldref") {
            let other = scalar(v).ok_or(("modifier", "fieldref needs a field name".to_owned()))?;
            return Ok((field, ValueTest::FieldRef(self.field(&other))));
        }
        for (m, op) in [("gt", NumOp::Gt), ("gte", NumOp::Gte), ("lt", NumOp::Lt), ("lte", NumOp::Lte)] {
            if has(m) {
                let n = scalar(v)
                    .and_then(|s| s.parse::<f64>().ok())
                    .ok_or(("modifier", format!("`{m}` needs a number")))?;
                return Ok((field, ValueTest::Num { op, n }));
            }
        }
        if has("cidr") {
            let nets = values
                .iter()
                .map(|y| {
                    scalar(y)
                        .ok_or_else(|| "a cidr value must be a string".to_owned())
                        .and_then(|s| Cidr::parse(&s))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ("modifier", e))?;
            return Ok((field, ValueTest::Cidr(nets)));
        }
        // Plain values without modifiers: null, numbers and booleans keep their type.
        if mods.is_empty() && values.len() == 1 {
            match values[0] {
                Yaml::Null => return Ok((field, ValueTest::Null)),
                Yaml::Integer(n) => return Ok((field, ValueTest::Int(*n))),
                Yaml::Boolean(b) => return Ok((field, ValueTest::Bool(*b))),
                _ => {}
            }
        }
        if mods.is_empty()
            && values.iter().any(|y| matches!(y, Yaml::Null | Yaml::Integer(_) | Yaml::Boolean(_)))
        {
            // A list mixing types: text forms, plus null as the empty string.
            let mut groups = Vec::new();
            for y in &values {
                groups.push(match y {
                    Yaml::Null => vec![Pattern::Exact(String::new())],
                    y => vec![
                        value::glob(&scalar(y).unwrap_or_default().to_lowercase())
                            .map_err(|e| ("regex", e))?,
                    ],
                });
            }
            return Ok((field, ValueTest::text(groups, false, false)));
        }
        let cased = has("cased") || has("re") || has("base64") || has("base64offset");
        let mut groups = Vec::new();
        for y in values {
            let s = scalar(y).ok_or(("structure", "a value must be a scalar".to_owned()))?;
            groups.push(patterns(&s, &mods)?);
        }
        Ok((field, ValueTest::text(groups, has("all"), cased)))
    }
}

/// A keyword: found anywhere in a string, case-insensitively.
fn keyword(s: &str) -> Result<Pattern, CompileError> {
    value::glob_wrapped(&s.to_lowercase(), true, true).map_err(|e| ("regex", e))
}

/// The alternatives one value can match as, after its modifiers.
fn patterns(s: &str, mods: &[&str]) -> Result<Vec<Pattern>, CompileError> {
    let has = |m: &str| mods.contains(&m);
    if has("re") {
        let mut flags = String::new();
        for (m, f) in [("i", 'i'), ("m", 'm'), ("s", 's')] {
            if has(m) {
                flags.push(f);
            }
        }
        let re = if flags.is_empty() { s.to_owned() } else { format!("(?{flags}){s}") };
        return Ok(vec![Pattern::Regex(value::build_regex(&re, false).map_err(|e| ("regex", e))?)]);
    }
    // windash, then the text encodings, then base64: each step can multiply the alternatives.
    let texts: Vec<String> = if has("windash") { value::windash(s) } else { vec![s.to_owned()] };
    let mut raw: Vec<Vec<u8>> = Vec::new();
    for t in &texts {
        if has("wide") || has("utf16le") {
            raw.push(value::utf16(t, false));
        } else if has("utf16be") {
            raw.push(value::utf16(t, true));
        } else if has("utf16") {
            let mut bom = vec![0xff, 0xfe];
            bom.extend(value::utf16(t, false));
            raw.push(bom);
        } else {
            raw.push(t.as_bytes().to_vec());
        }
    }
    let encoded = has("base64")
        || has("base64offset")
        || has("wide")
        || has("utf16le")
        || has("utf16be")
        || has("utf16");
    let literals: Vec<String> = if has("base64offset") {
        raw.iter().flat_map(|b| value::base64_offsets(b)).collect()
    } else if has("base64") {
        raw.iter().map(|b| value::base64(b)).collect()
    } else if encoded {
        return Err(("modifier", "utf16/wide must be followed by base64 or base64offset".into()));
    } else {
        texts
    };
    let cased = has("cased") || has("base64") || has("base64offset");
    let (pre, post) = match (has("contains") || has("base64offset"), has("startswith"), has("endswith")) {
        (true, _, _) => (true, true),
        (_, true, _) => (false, true),
        (_, _, true) => (true, false),
        _ => (false, false),
    };
    literals
        .iter()
        .map(|l| {
            // Encoded literals hold no wildcards; escape them so `*` and `?` in base64 output cannot occur.
            let body = if encoded || has("base64") {
                l.replace('\\', "\\\\").replace('*', "\\*").replace('?', "\\?")
            } else {
                l.clone()
            };
            let body = if cased { body } else { body.to_lowercase() };
            value::glob_wrapped(&body, pre, post).map_err(|e| ("regex", e))
        })
        .collect()
}
