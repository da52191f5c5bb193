//! The approver's side of response commands (issue 17 item 3), run on the approver's own machine:
//! `cordon approver keygen` makes the Ed25519 key that never leaves it, and `cordon approve`
//! shows what a command would do and adds the approver's signature over its exact bytes.

use anyhow::{Context, bail};
use schemas::response::approvers::{SetChange, SignedSetChange};
use schemas::response::command::{CommandBody, SignedCommand};
use schemas::response::standing::{OrderBody, SignedOrder};
use schemas::signed::SigningKey;
use std::path::Path;

/// Writes a new approver key to `out` (PKCS#8, mode 0600, never overwritten); returns its public
/// key in hex, which an admin registers.
pub fn keygen(out: &Path) -> anyhow::Result<String> {
    let (key, pkcs8) = SigningKey::generate()?;
    crate::admin::write_new_private(out, &pkcs8)
        .with_context(|| format!("creating {} (an existing key is never overwritten)", out.display()))?;
    Ok(key.public())
}

/// Adds `key`'s approval to the command in `request` (rewritten in place, atomically) after
/// printing what it does to stderr. Returns the approver's public key.
pub fn approve(request: &Path, key: &Path) -> anyhow::Result<String> {
    let key =
        SigningKey::from_pkcs8(&std::fs::read(key).with_context(|| format!("reading {}", key.display()))?)?;
    let text = std::fs::read_to_string(request).with_context(|| format!("reading {}", request.display()))?;
    if let Ok(change) = serde_json::from_str::<SignedSetChange>(&text)
        && serde_json::from_str::<SetChange>(&change.body).is_ok()
    {
        return approve_set(request, change, &key);
    }
    if let Ok(order) = serde_json::from_str::<SignedOrder>(&text)
        && serde_json::from_str::<OrderBody>(&order.body).is_ok()
    {
        return approve_order(request, order, &key);
    }
    let mut cmd: SignedCommand =
        serde_json::from_str(&text).context("the request is not a response command")?;
    let body: CommandBody = serde_json::from_str(&cmd.body).context("the command's body does not parse")?;
    let rule = match schemas::response::parse(&body.rule) {
        Ok(r) => r,
        Err(errs) => bail!("the command's rule is invalid: {errs:?}"),
    };
    if cmd.approvals.iter().any(|a| a.key.eq_ignore_ascii_case(&key.public())) {
        bail!("this key has already approved command {}", body.id);
    }
    eprintln!(
        "command {} for tenant {}: {:?} rule {:?}, because {:?}",
        body.id, body.tenant, rule.kind, rule.name, body.reason
    );
    eprintln!("  targets: {}", body.targets.keys().cloned().collect::<Vec<_>>().join(", "));
    for (i, a) in rule.actions.iter().enumerate() {
        let destructive = if a.is_destructive() { " (destructive)" } else { "" };
        eprintln!("  {i}: {}{destructive} {}", a.instruction.name, serde_json::Value::Object(a.args.clone()));
    }
    eprintln!("  valid until {} (unix microseconds)", body.expires_at);
    cmd.approve(&key);
    let tmp = request.with_extension("approving");
    std::fs::write(&tmp, serde_json::to_string_pretty(&cmd)?)?;
    std::fs::rename(&tmp, request)?;
    Ok(key.public())
}

/// Adds `key`'s approval to a standing order after printing what it allows.
fn approve_order(request: &Path, mut order: SignedOrder, key: &SigningKey) -> anyhow::Result<String> {
    let body: OrderBody = serde_json::from_str(&order.body)?;
    if let Err(e) = schemas::response::standing::check_body(&body) {
        bail!("the order is malformed: {e}");
    }
    if order.approvals.iter().any(|a| a.key.eq_ignore_ascii_case(&key.public())) {
        bail!("this key has already approved standing order {}", body.id);
    }
    let agents = match &body.agents {
        schemas::response::standing::Agents::All => "every agent of the tenant".to_owned(),
        schemas::response::standing::Agents::Only(list) => {
            list.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    eprintln!(
        "standing order {} for tenant {}: {:?}, because {:?}",
        body.id, body.tenant, body.name, body.reason
    );
    eprintln!("  {:?} process starts of {:?}", body.action, body.techniques);
    eprintln!("  on {agents}, at most {} per agent per hour", body.per_agent_per_hour);
    eprintln!("  until {} (unix microseconds)", body.expires_at);
    order.approve(key);
    let tmp = request.with_extension("approving");
    std::fs::write(&tmp, serde_json::to_string_pretty(&order)?)?;
    std::fs::rename(&tmp, request)?;
    Ok(key.public())
}

/// Adds `key`'s approval to an approver-set change after printing the set it makes.
fn approve_set(request: &Path, mut change: SignedSetChange, key: &SigningKey) -> anyhow::Result<String> {
    let body: SetChange = serde_json::from_str(&change.body)?;
    if change.approvals.iter().any(|a| a.key.eq_ignore_ascii_case(&key.public())) {
        bail!("this key has already approved approver-set change {}", body.version);
    }
    eprintln!(
        "approver set {} for tenant {}: {} keys, {} approvals for destructive commands",
        body.version,
        body.tenant,
        body.keys.len(),
        body.threshold
    );
    for k in &body.keys {
        eprintln!("  {k}");
    }
    change.approve(key);
    let tmp = request.with_extension("approving");
    std::fs::write(&tmp, serde_json::to_string_pretty(&change)?)?;
    std::fs::rename(&tmp, request)?;
    Ok(key.public())
}
