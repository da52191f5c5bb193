//! Admin commands on the metadata database: API tokens and the audit chain. Every token change is
//! itself written to the audit chain, with the operating-system user who ran the command.

use crate::config::ServeArgs;
use crate::{AgentAction, AuditAction, EnrollTokenAction, TokenAction};
use anyhow::Context;
use store::catalog::{AuditRecord, Catalog};

/// Who ran the command, for the audit chain.
fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "unknown".into())
    )
}

/// `cordon token create|revoke`.
pub(crate) async fn token(action: TokenAction) -> anyhow::Result<()> {
    match action {
        TokenAction::Create { serve, name, tenant, role } => {
            let cfg = serve.resolve()?;
            schemas::TenantId::new(tenant.clone()).context("--tenant")?;
            std::fs::create_dir_all(&cfg.data_dir)?;
            let cat = Catalog::connect(&cfg.metadata_url).await?;
            let now = schemas::time::now_micros();
            let (id, secret) = cat.create_token(&name, &tenant, role, now).await?;
            let rec = AuditRecord {
                tenant: tenant.clone(),
                actor: cli_actor(),
                action: "token.create".into(),
                target: format!("token:{id}"),
                detail: serde_json::json!({"name": name, "role": role.as_str()}),
            };
            cat.audit(&rec, now).await?;
            println!(
                "{}",
                serde_json::json!({"id": id, "name": name, "tenant": tenant, "role": role.as_str(), "token": secret})
            );
        }
        TokenAction::Revoke { serve, id } => {
            let cfg = serve.resolve()?;
            let cat = Catalog::connect(&cfg.metadata_url).await?;
            let now = schemas::time::now_micros();
            if !cat.revoke_token(&id, now).await? {
                anyhow::bail!("no active token with id {id}");
            }
            let rec = AuditRecord {
                tenant: cat.token_tenant(&id).await?.unwrap_or_default(),
                actor: cli_actor(),
                action: "token.revoke".into(),
                target: format!("token:{id}"),
                detail: serde_json::json!({}),
            };
            cat.audit(&rec, now).await?;
            println!("revoked {id} (a running server stops accepting it within 30 s)");
        }
    }
    Ok(())
}

/// `cordon audit verify`.
pub(crate) async fn audit(action: AuditAction) -> anyhow::Result<()> {
    match action {
        AuditAction::Verify(serve) => {
            let cfg = serve.resolve()?;
            let cat = Catalog::connect(&cfg.metadata_url).await?;
            let v = cat.verify_audit().await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            anyhow::ensure!(v.ok(), "the audit chain is broken: {}", v.problems.join("; "));
            Ok(())
        }
    }
}

/// The server's signing key at `path`, made there (mode 0600) on first start.
pub(crate) fn signing_key(path: &std::path::Path) -> anyhow::Result<schemas::signed::SigningKey> {
    match std::fs::read(path) {
        Ok(bytes) => schemas::signed::SigningKey::from_pkcs8(&bytes)
            .with_context(|| format!("{} is not an Ed25519 PKCS#8 key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, pkcs8) = schemas::signed::SigningKey::generate()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_new_private(path, &pkcs8)
                .with_context(|| format!("creating the signing key {}", path.display()))?;
            tracing::info!(path = %path.display(), public = %key.public(), "made the server's signing key");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading the signing key {}", path.display())),
    }
}

/// Writes a new file readable by its owner only (mode 0600), fsynced; an existing file is never
/// overwritten.
pub(crate) fn write_new_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

async fn audited(
    cat: &Catalog,
    tenant: &str,
    action: &str,
    target: String,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let rec =
        AuditRecord { tenant: tenant.to_owned(), actor: cli_actor(), action: action.into(), target, detail };
    cat.audit(&rec, schemas::time::now_micros()).await?;
    Ok(())
}

async fn catalog(serve: &ServeArgs) -> anyhow::Result<Catalog> {
    let cfg = serve.resolve()?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    Ok(Catalog::connect(&cfg.metadata_url).await?)
}

/// `cordon enroll-token create|revoke`.
pub(crate) async fn enroll_token(action: EnrollTokenAction) -> anyhow::Result<()> {
    match action {
        EnrollTokenAction::Create { serve, tenant, uses, ttl, group } => {
            schemas::TenantId::new(tenant.clone()).context("--tenant")?;
            anyhow::ensure!(uses > 0, "--uses must be at least 1");
            let cat = catalog(&serve).await?;
            let now = schemas::time::now_micros();
            let expires = now + ttl.as_micros() as i64;
            let (id, secret) =
                cat.create_enroll_token(&tenant, group.as_deref(), i64::from(uses), expires, now).await?;
            let detail = serde_json::json!({"uses": uses, "expires_at": expires, "group": group});
            audited(&cat, &tenant, "enroll_token.create", format!("enroll_token:{id}"), detail.clone())
                .await?;
            println!(
                "{}",
                serde_json::json!({"id": id, "tenant": tenant, "uses": uses, "group": group,
                    "expires_at": schemas::time::format_micros(expires), "token": secret})
            );
        }
        EnrollTokenAction::Revoke { serve, id } => {
            let cat = catalog(&serve).await?;
            anyhow::ensure!(
                cat.revoke_enroll_token(&id, schemas::time::now_micros()).await?,
                "no active enrollment token with id {id}"
            );
            audited(&cat, "", "enroll_token.revoke", format!("enroll_token:{id}"), serde_json::json!({}))
                .await?;
            println!("revoked enrollment token {id}");
        }
    }
    Ok(())
}

/// `cordon enrollment open|close`.
pub(crate) async fn enrollment(state: &str, serve: ServeArgs) -> anyhow::Result<()> {
    let cat = catalog(&serve).await?;
    let closed = state == "close";
    cat.set_enrollment_closed(closed).await?;
    audited(&cat, "", "enrollment.switch", "enrollment".into(), serde_json::json!({"closed": closed}))
        .await?;
    println!("enrollment is {}", if closed { "closed" } else { "open" });
    Ok(())
}

/// `cordon agent revoke`.
pub(crate) async fn agent(action: AgentAction) -> anyhow::Result<()> {
    match action {
        AgentAction::Revoke { serve, id } => {
            let cat = catalog(&serve).await?;
            let Some(tenant) = cat.revoke_agent(&id, schemas::time::now_micros()).await? else {
                anyhow::bail!("no active enrolled agent with id {id}");
            };
            audited(&cat, &tenant, "agent.revoke", format!("agent:{id}"), serde_json::json!({})).await?;
            println!("revoked agent {id}");
        }
    }
    Ok(())
}
