//! The instruction set as a JSON Schema (draft 2020-12), generated from the table so that the
//! document and the parser cannot drift apart. `x-platforms`, `x-destructive` and `x-category`
//! carry what JSON Schema has no words for.

use super::table::{CondKind, INSTRUCTIONS, Instruction, Kind};
use super::{MAX_ACTIONS, VERSION};
use serde_json::{Value, json};

/// The JSON Schema of a response rule.
pub fn json_schema() -> Value {
    let actions: Vec<Value> = INSTRUCTIONS.iter().map(action_schema).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("urn:cordon:response-rule:v{VERSION}"),
        "title": "Cordon response rule",
        "description": "An open instruction set for fine-grained response: a named rule of one kind (cleanup: once; handling: once per trigger; defence: standing until withdrawn or expired) holding actions, each an instruction with its fields and an optional condition.",
        "type": "object",
        "properties": {
            "version": {"const": VERSION},
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "kind": {"enum": ["cleanup", "handling", "defence"]},
            "actions": {"type": "array", "minItems": 1, "maxItems": MAX_ACTIONS, "items": {"oneOf": actions}},
        },
        "required": ["name", "kind", "actions"],
        "additionalProperties": false,
    })
}

fn action_schema(ins: &Instruction) -> Value {
    let mut props = serde_json::Map::new();
    props.insert("action".into(), json!({"const": ins.name}));
    for f in ins.fields {
        props.insert(f.name.into(), kind_schema(f.kind));
    }
    match ins.condition {
        CondKind::None => {}
        CondKind::Scope => {
            props.insert("condition".into(), json!({"type": "string", "pattern": "^(alldisk|systemdisk|diskroot|udisk|alldisk_deep:[0-9]{1,3})?$",
                "description": "Where to look: every disk, the system disk, the disk roots, every disk to a depth of 1-100, removable media."}));
        }
        CondKind::Bytes => {
            props.insert("condition".into(), json!({"type": "string", "pattern": "^\\[(equal|unequal)\\],\\[offset:[0-9]+\\],\\[[0-9A-Fa-f ]+\\]$",
                "description": "A byte comparison made before anything is written: [equal|unequal],[offset:N],[31 C0 FA ...]."}));
        }
    }
    let mut required = vec!["action"];
    required.extend(ins.fields.iter().filter(|f| f.required).map(|f| f.name));
    if ins.condition == CondKind::Bytes {
        required.push("condition");
    }
    let platforms: Vec<&str> = ins.platforms.iter().map(|p| p.as_str()).collect();
    json!({
        "title": ins.name,
        "description": ins.doc,
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
        "x-category": ins.category,
        "x-platforms": platforms,
        "x-destructive": ins.destructive,
    })
}

fn kind_schema(kind: Kind) -> Value {
    let s = |extra: Value| {
        let mut o = json!({"type": "string", "minLength": 1});
        if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        o
    };
    let list = |item: Value| json!({"type": "array", "minItems": 1, "maxItems": 64, "items": item});
    let name = s(json!({"maxLength": 255, "pattern": "^[^/\\\\]+$"}));
    let path = s(json!({"maxLength": 4096, "pattern": "^(/|[A-Za-z]:\\\\)"}));
    let sha = s(json!({"pattern": "^[0-9A-Fa-f]{64}$"}));
    let ip = s(json!({"description": "An IPv4 or IPv6 address, or a CIDR block."}));
    match kind {
        Kind::Text => s(json!({"maxLength": 4096})),
        Kind::Script => s(json!({"maxLength": 65536})),
        Kind::Name => name,
        Kind::Names => list(name),
        Kind::NamesOrPaths => {
            list(s(json!({"maxLength": 4096, "description": "A file name, or an absolute path."})))
        }
        Kind::Path => path,
        Kind::RegKey => {
            s(json!({"maxLength": 512, "pattern": "^(HKLM|HKCU|HKU|HKCR|HKCC|HKEY_[A-Z_]+)\\\\."}))
        }
        Kind::RegType => {
            json!({"enum": ["REG_SZ", "REG_EXPAND_SZ", "REG_MULTI_SZ", "REG_DWORD", "REG_QWORD", "REG_BINARY"]})
        }
        Kind::Sha256s => {
            json!({"type": "array", "minItems": 1, "maxItems": super::fields::MAX_HASHES, "items": sha})
        }
        Kind::Sha256 => sha,
        Kind::Ip => ip,
        Kind::Ips => list(ip),
        Kind::Port => json!({"type": "integer", "minimum": 1, "maximum": 65535}),
        Kind::Protocol => json!({"enum": ["tcp", "udp"]}),
        Kind::Secs => json!({"type": "integer", "minimum": 1, "maximum": 31_536_000}),
        Kind::Url => s(json!({"maxLength": 2048, "pattern": "^https://[^/\\s]"})),
        Kind::Schedule => s(json!({"description": "Five cron fields: minute hour day month weekday."})),
        Kind::Process => json!({"oneOf": [
            {"type": "object", "properties": {"pid": {"type": "integer", "minimum": 2}, "start_time": {"type": "integer", "minimum": 0}},
             "required": ["pid", "start_time"], "additionalProperties": false},
            {"type": "object", "properties": {"executable": path, "sha256": sha},
             "required": ["executable", "sha256"], "additionalProperties": false},
            {"type": "object", "properties": {"name": name}, "required": ["name"], "additionalProperties": false},
        ]}),
        Kind::ProcOp => json!({"enum": ["suspend", "resume"]}),
        Kind::DeviceOp => json!({"enum": ["eject", "block"]}),
        Kind::Attributes => {
            list(s(json!({"pattern": "^(0[0-7]{3}|[+-]?(readonly|hidden|system|immutable|append_only))$"})))
        }
        Kind::MbrData => {
            s(json!({"description": "backup (the agent's saved copy), or the replacement bytes in hex."}))
        }
        Kind::Bool => json!({"type": "boolean"}),
    }
}
