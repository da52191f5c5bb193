//! Response rules (issue 17): the source talk's open instruction set for fine-grained response (its
//! "ARR" rules), as JSON that analysts and SOAR platforms send. A rule has a name, a kind
//! ([`RuleKind`]) and a list of actions; each action is one instruction of [`table::INSTRUCTIONS`]
//! with its fields and, where the instruction takes one, a condition ([`Condition`]).
//!
//! [`parse`] reads a rule and reports every malformed field at once, each by its JSON pointer
//! (`/actions/1/filenames/0`); unknown keys are errors, not ignored. [`Rule::plan`] says what runs
//! where: every instruction declares its platforms. [`json_schema`] is the set as a JSON Schema,
//! generated from the same table.
//!
//! ```
//! use schemas::response::{parse, Platform};
//! let rule = serde_json::json!({"name": "kill it", "kind": "handling", "actions": [
//!     {"action": "Proc_Terminate", "process": {"name": "conti.exe"}},
//!     {"action": "Reg_Delete", "key": "HKLM\\Software\\Run\\x"}]});
//! let rule = parse(&rule).unwrap();
//! let plan = rule.plan(Platform::Linux);
//! assert!(plan[0].supported && !plan[1].supported);
//! ```

pub mod approvers;
pub mod command;
mod fields;
mod schema;
pub mod standing;
#[cfg(test)]
mod t14_tests;
pub mod table;

pub use fields::hex_bytes;
pub use schema::json_schema;
pub use table::{INSTRUCTIONS, Instruction};

use serde_json::{Map, Value};
use table::CondKind;

/// The instruction set's version; a rule names it in `version` (default: this one).
pub const VERSION: u64 = 1;
/// At most this many actions in a rule.
pub const MAX_ACTIONS: usize = 64;

/// A platform an instruction can run on.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// Linux.
    Linux,
    /// Windows.
    Windows,
    /// macOS.
    Macos,
}

impl Platform {
    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::Windows => "windows",
            Self::Macos => "macos",
        }
    }
}

/// The talk's three kinds of rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Runs once (a clean-up after an incident).
    Cleanup,
    /// Runs once per trigger (the response to an alert).
    Handling,
    /// Stands: keeps blocking until withdrawn or expired.
    Defence,
}

/// Where to look for files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "scope", content = "depth")]
pub enum Scope {
    /// Every local disk, to any depth.
    AllDisk,
    /// The system disk.
    SystemDisk,
    /// The roots of the disks only.
    DiskRoot,
    /// Every local disk, to this depth (1-100).
    AllDiskDeep(u8),
    /// Removable media.
    Udisk,
}

/// A byte comparison: whether the bytes at `offset` equal (or, with `equal` false, differ from)
/// `bytes`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ByteCondition {
    /// `[equal]` or `[unequal]`.
    pub equal: bool,
    /// Where the comparison starts.
    pub offset: u64,
    /// What is compared.
    pub bytes: Vec<u8>,
}

/// An action's condition.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Where to look.
    Scope(Scope),
    /// A byte comparison.
    Bytes(ByteCondition),
}

/// One action: an instruction with its checked, normalised fields.
#[derive(Clone, Debug)]
pub struct Action {
    /// The instruction.
    pub instruction: &'static Instruction,
    /// Its fields, by name, normalised.
    pub args: Map<String, Value>,
    /// Its condition, if it has one.
    pub condition: Option<Condition>,
}

impl Action {
    /// Whether it changes or removes something on the host.
    pub fn is_destructive(&self) -> bool {
        self.instruction.destructive || self.args.get("clean").and_then(Value::as_bool) == Some(true)
    }
}

/// A checked rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: RuleKind,
    /// Its actions, in order.
    pub actions: Vec<Action>,
}

/// A malformed field: where (a JSON pointer into the rule) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// JSON pointer (`/actions/0/filenames`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// What one action would do on a platform.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Step {
    /// The action's place in the rule.
    pub index: usize,
    /// The instruction.
    pub action: &'static str,
    /// Whether the platform runs it.
    pub supported: bool,
    /// Whether it changes or removes something.
    pub destructive: bool,
    /// Why not, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Rule {
    /// What each action would do on `platform`.
    pub fn plan(&self, platform: Platform) -> Vec<Step> {
        self.actions
            .iter()
            .enumerate()
            .map(|(index, a)| {
                let supported = a.instruction.platforms.contains(&platform);
                Step {
                    index,
                    action: a.instruction.name,
                    supported,
                    destructive: a.is_destructive(),
                    reason: (!supported).then(|| format!("unsupported on {}", platform.as_str())),
                }
            })
            .collect()
    }

    /// Whether any action runs code of the requester's choosing: a script, a downloaded program or
    /// a started process (off unless the tenant turns scripts on, and each agent allows its hash).
    pub fn runs_scripts(&self) -> bool {
        self.actions.iter().any(|a| a.instruction.category == "script" || a.instruction.name == "Proc_Create")
    }

    /// Whether any action is destructive (those need approvals from two people).
    pub fn is_destructive(&self) -> bool {
        self.actions.iter().any(Action::is_destructive)
    }

    /// The rule as canonical JSON: instruction names as the table spells them, fields normalised.
    pub fn to_json(&self) -> Value {
        let actions: Vec<Value> = self
            .actions
            .iter()
            .map(|a| {
                let mut o = a.args.clone();
                o.insert("action".into(), a.instruction.name.into());
                if let Some(c) = &a.condition {
                    o.insert("condition".into(), condition_text(c).into());
                }
                Value::Object(o)
            })
            .collect();
        serde_json::json!({"version": VERSION, "name": self.name, "kind": self.kind, "actions": actions})
    }
}

/// Collects errors while a rule is read.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }
}

/// Reads and checks a rule; every malformed field is reported.
pub fn parse(v: &Value) -> Result<Rule, Vec<FieldError>> {
    let mut errs = Errors::default();
    let Some(o) = v.as_object() else {
        return Err(vec![FieldError { field: String::new(), message: "a rule is a JSON object".into() }]);
    };
    for k in o.keys().filter(|k| !["version", "name", "kind", "actions"].contains(&k.as_str())) {
        errs.add(format!("/{k}"), "unknown field (a rule has version, name, kind and actions)");
    }
    match o.get("version") {
        None => {}
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => errs.add(
            "/version",
            format!("{v} is not a version of the instruction set this server knows ({VERSION})"),
        ),
    }
    let name = match o.get("name").map(|n| fields::check(table::Kind::Text, n)) {
        Some(Ok(n)) if n.as_str().is_some_and(|s| s.len() <= 200) => {
            n.as_str().unwrap_or_default().to_owned()
        }
        Some(Ok(_)) => {
            errs.add("/name", "at most 200 bytes");
            String::new()
        }
        Some(Err(e)) => {
            errs.add("/name", e);
            String::new()
        }
        None => {
            errs.add("/name", "missing");
            String::new()
        }
    };
    let kind = match o.get("kind").and_then(Value::as_str) {
        Some("cleanup") => Some(RuleKind::Cleanup),
        Some("handling") => Some(RuleKind::Handling),
        Some("defence" | "defense") => Some(RuleKind::Defence),
        other => {
            errs.add("/kind", format!("{other:?} is not cleanup, handling or defence"));
            None
        }
    };
    let actions = match o.get("actions").and_then(Value::as_array) {
        Some(list) if !list.is_empty() && list.len() <= MAX_ACTIONS => list
            .iter()
            .enumerate()
            .filter_map(|(i, a)| action(a, &format!("/actions/{i}"), &mut errs))
            .collect(),
        Some(list) => {
            errs.add("/actions", format!("must hold 1 to {MAX_ACTIONS} actions, holds {}", list.len()));
            Vec::new()
        }
        None => {
            errs.add("/actions", "missing, or not a list");
            Vec::new()
        }
    };
    match (errs.0.is_empty(), kind) {
        (true, Some(kind)) => Ok(Rule { name, kind, actions }),
        _ => Err(errs.0),
    }
}

/// Reads one action at `at`.
fn action(v: &Value, at: &str, errs: &mut Errors) -> Option<Action> {
    let Some(o) = v.as_object() else {
        errs.add(at, "an action is a JSON object with an \"action\" field");
        return None;
    };
    let Some(name) = o.get("action").and_then(Value::as_str) else {
        errs.add(format!("{at}/action"), "missing: the instruction to run");
        return None;
    };
    let Some(ins) = table::instruction(name) else {
        errs.add(format!("{at}/action"), format!("{name:?} is not an instruction of the set"));
        return None;
    };
    let before = errs.0.len();
    let mut args = Map::new();
    for (k, val) in o.iter().filter(|(k, _)| !matches!(k.as_str(), "action" | "condition")) {
        match ins.fields.iter().find(|f| f.name == k) {
            Some(f) => match fields::check(f.kind, val) {
                Ok(norm) => {
                    args.insert(k.clone(), norm);
                }
                Err(e) => errs.add(format!("{at}/{k}"), e),
            },
            None => {
                let known: Vec<&str> = ins.fields.iter().map(|f| f.name).collect();
                errs.add(format!("{at}/{k}"), format!("{} takes no {k:?} (it takes {known:?})", ins.name));
            }
        }
    }
    for f in ins.fields.iter().filter(|f| f.required && !o.contains_key(f.name)) {
        errs.add(format!("{at}/{}", f.name), format!("missing: {} needs it", ins.name));
    }
    let condition = condition(ins, o.get("condition"), &format!("{at}/condition"), errs);
    (errs.0.len() == before).then_some(Action { instruction: ins, args, condition })
}

/// Reads an action's condition for `ins`.
fn condition(ins: &Instruction, v: Option<&Value>, at: &str, errs: &mut Errors) -> Option<Condition> {
    let text = match v {
        None => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.trim()),
        Some(_) => {
            errs.add(at, "must be a string");
            return None;
        }
    };
    let parsed = match (ins.condition, text) {
        (_, None) if ins.condition == CondKind::Bytes => {
            Err(format!("missing: {} compares bytes first", ins.name))
        }
        (_, None) => return None,
        (CondKind::None, Some(_)) => Err(format!("{} takes no condition", ins.name)),
        (CondKind::Scope, Some(t)) => scope(t).map(Condition::Scope),
        (CondKind::Bytes, Some(t)) => byte_condition(t).map(Condition::Bytes),
    };
    parsed.map_err(|e| errs.add(at, e)).ok()
}

fn scope(t: &str) -> Result<Scope, String> {
    match t.to_ascii_lowercase().as_str() {
        "alldisk" => Ok(Scope::AllDisk),
        "systemdisk" => Ok(Scope::SystemDisk),
        "diskroot" => Ok(Scope::DiskRoot),
        "udisk" => Ok(Scope::Udisk),
        other => match other.strip_prefix("alldisk_deep:").map(str::parse::<u8>) {
            Some(Ok(d)) if (1..=100).contains(&d) => Ok(Scope::AllDiskDeep(d)),
            Some(_) => Err(format!("{t:?}: the depth must be 1-100")),
            None => Err(format!("{t:?} is not alldisk, systemdisk, diskroot, alldisk_deep:1-100 or udisk")),
        },
    }
}

/// `[equal|unequal],[offset:N],[31 C0 FA ...]`.
fn byte_condition(t: &str) -> Result<ByteCondition, String> {
    let bad = || format!("{t:?} is not [equal|unequal],[offset:N],[hex bytes]");
    let parts: Vec<&str> = t.split(',').map(str::trim).collect();
    let [how, offset, bytes] = parts.as_slice() else { return Err(bad()) };
    let equal = match inner(how).map(str::to_ascii_lowercase).as_deref() {
        Some("equal") => true,
        Some("unequal") => false,
        _ => return Err(format!("{how:?} is not [equal] or [unequal]")),
    };
    let offset = inner(offset)
        .and_then(|o| o.strip_prefix("offset:"))
        .and_then(|o| o.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("{offset:?} is not [offset:N]"))?;
    let bytes = fields::hex_bytes(inner(bytes).ok_or_else(bad)?)?;
    if offset + bytes.len() as u64 > 512 {
        return Err(format!("offset {offset} and {} bytes reach past the 512-byte boot record", bytes.len()));
    }
    Ok(ByteCondition { equal, offset, bytes })
}

/// The text inside `[...]`.
fn inner(p: &str) -> Option<&str> {
    p.strip_prefix('[').and_then(|p| p.strip_suffix(']')).map(str::trim)
}

fn condition_text(c: &Condition) -> String {
    match c {
        Condition::Scope(Scope::AllDisk) => "alldisk".into(),
        Condition::Scope(Scope::SystemDisk) => "systemdisk".into(),
        Condition::Scope(Scope::DiskRoot) => "diskroot".into(),
        Condition::Scope(Scope::AllDiskDeep(d)) => format!("alldisk_deep:{d}"),
        Condition::Scope(Scope::Udisk) => "udisk".into(),
        Condition::Bytes(b) => {
            let hex: Vec<String> = b.bytes.iter().map(|x| format!("{x:02X}")).collect();
            format!(
                "[{}],[offset:{}],[{}]",
                if b.equal { "equal" } else { "unequal" },
                b.offset,
                hex.join(" ")
            )
        }
    }
}

#[cfg(test)]
mod tests;
