//! The instruction table: every instruction of the set, its platforms, whether it is destructive,
//! its fields and its condition. Parsing, the plan per platform and the JSON Schema all read it.

use super::Platform::{self, Linux, Macos, Windows};

/// What a field holds; each kind has its own check ([`super::fields`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Non-empty text up to 4 KiB, no NUL.
    Text,
    /// A script body up to 64 KiB.
    Script,
    /// A name without path separators (a file, module, task or marker name), up to 255 bytes.
    Name,
    /// A list (1-64) of names.
    Names,
    /// A list (1-64) of names or absolute paths.
    NamesOrPaths,
    /// An absolute path (`/...` or `C:\...`).
    Path,
    /// A registry key under a hive (`HKLM\...`, `HKCU\...`, `HKU\...`, `HKCR\...`, `HKCC\...`).
    RegKey,
    /// A registry value type (`REG_SZ`, `REG_DWORD`, ...).
    RegType,
    /// A SHA-256 in hex.
    Sha256,
    /// A list (1-10,000) of SHA-256s.
    Sha256s,
    /// An IP address or a CIDR block.
    Ip,
    /// A list (1-64) of IP addresses or CIDR blocks.
    Ips,
    /// A TCP or UDP port, 1-65535.
    Port,
    /// `tcp` or `udp`.
    Protocol,
    /// Seconds, 1 to a year.
    Secs,
    /// An `https://` URL.
    Url,
    /// A five-field cron schedule.
    Schedule,
    /// A process: `{"pid": N, "start_time": T}`, `{"executable": "/path", "sha256": "..."}` or
    /// `{"name": "x"}`.
    Process,
    /// `suspend` or `resume`.
    ProcOp,
    /// `eject` or `block`.
    DeviceOp,
    /// Attribute changes: `readonly`, `hidden`, `system`, `immutable`, `append_only`, each with an
    /// optional `+` (set) or `-` (clear), or an octal mode such as `0644`.
    Attributes,
    /// `backup` (the agent's saved copy) or the replacement bytes in hex.
    MbrData,
    /// true or false.
    Bool,
}

/// One field of an instruction.
#[derive(Debug)]
pub struct Field {
    /// The JSON key.
    pub name: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// Whether it must be given.
    pub required: bool,
}

/// What an instruction's `condition` may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CondKind {
    /// No condition (an empty string is accepted as none).
    None,
    /// Where to look: `alldisk`, `systemdisk`, `diskroot`, `alldisk_deep:1-100`, `udisk`.
    Scope,
    /// A byte comparison: `[equal|unequal],[offset:N],[31 C0 FA ...]`.
    Bytes,
}

/// One instruction.
#[derive(Debug)]
pub struct Instruction {
    /// Its name in the set (the talk's spelling; matched without regard to case).
    pub name: &'static str,
    /// The talk's category.
    pub category: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// Where it can run.
    pub platforms: &'static [Platform],
    /// Whether it changes or removes something on the host (dry run, caps and two approvals).
    pub destructive: bool,
    /// Its fields.
    pub fields: &'static [Field],
    /// Its condition.
    pub condition: CondKind,
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, required: true }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, required: false }
}

const ALL: &[Platform] = &[Linux, Windows, Macos];
const UNIX_WIN: &[Platform] = &[Linux, Windows];
const WIN: &[Platform] = &[Windows];
const UNIX: &[Platform] = &[Linux, Macos];

#[rustfmt::skip]
const fn ins(
    name: &'static str, category: &'static str, doc: &'static str, platforms: &'static [Platform],
    destructive: bool, fields: &'static [Field], condition: CondKind,
) -> Instruction {
    Instruction { name, category, doc, platforms, destructive, fields, condition }
}

use CondKind::{Bytes, None as NoCond, Scope};
use Kind::*;

/// The instruction set, version 1.
#[rustfmt::skip]
pub static INSTRUCTIONS: &[Instruction] = &[
    ins("Reg_Create", "registry", "Create a registry key, or a value under it.", WIN, false,
        &[req("key", RegKey), opt("value", Text), opt("type", RegType), opt("data", Text)], NoCond),
    ins("Reg_Modify", "registry", "Set a registry value's data.", WIN, true,
        &[req("key", RegKey), opt("value", Text), opt("type", RegType), req("data", Text)], NoCond),
    ins("Reg_Delete", "registry", "Delete a registry key.", WIN, true, &[req("key", RegKey)], NoCond),
    ins("Reg_Rename", "registry", "Rename a registry key or value.", WIN, true,
        &[req("key", RegKey), opt("value", Text), req("new_name", Name)], NoCond),
    ins("Reg_Delete_Value", "registry", "Delete a registry value.", WIN, true,
        &[req("key", RegKey), req("value", Text)], NoCond),
    ins("Task_Create", "scheduled task", "Create a scheduled task (a cron entry or systemd timer on Linux).", ALL, true,
        &[req("name", Name), req("schedule", Schedule), req("command", Text), opt("user", Name)], NoCond),
    ins("Task_Modify", "scheduled task", "Change a scheduled task's schedule or command.", ALL, true,
        &[req("name", Name), opt("schedule", Schedule), opt("command", Text)], NoCond),
    ins("Task_Delete", "scheduled task", "Delete a scheduled task.", ALL, true, &[req("name", Name)], NoCond),
    ins("File_Create", "file", "Create a file.", ALL, false,
        &[req("path", Path), opt("content", Text), opt("attributes", Attributes)], NoCond),
    ins("File_Modify", "file", "Replace a file's content (atomically).", ALL, true,
        &[req("path", Path), req("content", Text)], NoCond),
    ins("File_Delete", "file", "Delete files by name or path where the condition says (quarantined: moved aside with hash and metadata, restorable).", ALL, true,
        &[req("filenames", NamesOrPaths), opt("sha256", Sha256)], Scope),
    ins("File_Rename", "file", "Rename a file.", ALL, true, &[req("path", Path), req("new_name", Name)], NoCond),
    ins("File_Attribute", "file", "Set or clear a file's attributes.", ALL, true,
        &[req("path", Path), req("attributes", Attributes)], NoCond),
    ins("File_DelText", "file", "Delete every occurrence of a text inside a file (atomic rewrite).", ALL, true,
        &[req("path", Path), req("text", Text)], NoCond),
    ins("File_repairMbr", "file", "Restore a disk's boot record when its first bytes match the condition.", UNIX_WIN, true,
        &[opt("device", Path), req("data", MbrData)], Bytes),
    ins("File_Restore", "file", "Put a quarantined file back where it was (Cordon's addition).", ALL, false,
        &[req("quarantine_id", Name)], NoCond),
    ins("Proc_Create", "process", "Start a process.", ALL, true, &[req("command", Text), opt("user", Name)], NoCond),
    ins("Proc_Modify", "process", "Suspend or resume a process.", ALL, true,
        &[req("process", Process), req("op", ProcOp)], NoCond),
    ins("Proc_Terminate", "process", "Terminate a process, identified so that a reused pid is never hit.", ALL, true,
        &[req("process", Process)], NoCond),
    ins("Proc_Module_Threads", "process", "Suspend the threads of every process that has one of the named modules (shared objects) loaded.", UNIX_WIN, true,
        &[req("modules", Names)], NoCond),
    ins("Script_Bat", "script", "Run a batch script.", WIN, true, &[req("script", Script), opt("sha256", Sha256)], NoCond),
    ins("Script_Shell", "script", "Run a shell script.", UNIX, true, &[req("script", Script), opt("sha256", Sha256)], NoCond),
    ins("Script_Vbs", "script", "Run a VBScript.", WIN, true, &[req("script", Script), opt("sha256", Sha256)], NoCond),
    ins("Script_PWL", "script", "Run a PowerShell script.", WIN, true, &[req("script", Script), opt("sha256", Sha256)], NoCond),
    ins("Script_File", "script", "Download a file, check its hash, and run it.", ALL, true,
        &[req("url", Url), req("sha256", Sha256), opt("args", Text)], NoCond),
    ins("Other_Device", "other", "Eject or block a device.", UNIX_WIN, true, &[req("device", Text), req("op", DeviceOp)], NoCond),
    ins("Other_NetOff", "other", "Isolate the host: drop all traffic but the management channel, the resolvers and the listed addresses.", ALL, true,
        &[opt("allow", Ips)], NoCond),
    ins("Other_NetOn", "other", "End isolation: restore the rules from before it (Cordon's addition).", ALL, false, &[], NoCond),
    ins("Other_Disabled_Port", "other", "Block a port, until it expires.", ALL, true,
        &[req("port", Port), opt("protocol", Protocol), opt("expires_secs", Secs)], NoCond),
    ins("Other_Disabled_Ip", "other", "Block an address or network, until it expires.", ALL, true,
        &[req("ip", Ip), opt("expires_secs", Secs)], NoCond),
    ins("Other_Fix_patch", "other", "Install a patch (a KB on Windows, a package on Linux).", UNIX_WIN, true,
        &[req("patch", Text)], NoCond),
    ins("Other_Create_Mutex", "other", "Create an immunisation marker (a mutex on Windows; on Linux a read-only file the malware checks for: `path`, under /tmp, /var/tmp, /run or /dev/shm, else /run/lock/<name>).", UNIX_WIN, false,
        &[req("name", Name), opt("path", Path)], NoCond),
    ins("Other_QuickScan", "other", "Hash the files in scope against the listed SHA-256s (signed with the rule, so no one else can add to them); with `clean`, quarantine what matches.", ALL, false,
        &[opt("sha256s", Sha256s), opt("clean", Bool)], Scope),
];

/// The instruction called `name` (without regard to case).
pub fn instruction(name: &str) -> Option<&'static Instruction> {
    INSTRUCTIONS.iter().find(|i| i.name.eq_ignore_ascii_case(name))
}
