//! Admin commands on the metadata database: API tokens and the audit chain. Every token change is
//! itself written to the audit chain, with the operating-system user who ran the command.

use crate::{AuditAction, TokenAction};
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
