//! API tokens: stored as SHA-256 hashes, verified, revoked; each carries one role.

use super::{Catalog, CatalogError, db, sha256_hex};
use schemas::access::Role;
use sqlx::Row;

/// An API token's identity.
#[derive(Clone, Debug)]
pub struct TokenInfo {
    /// Token id (not the secret).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The tenant it may read.
    pub tenant: String,
    /// What it may do there.
    pub role: Role,
}

impl Catalog {
    /// Creates an API token; returns its id and the secret (shown once, stored only as a hash).
    pub async fn create_token(
        &self,
        name: &str,
        tenant: &str,
        role: Role,
        now: i64,
    ) -> Result<(String, String), CatalogError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let secret = format!("cdn_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        sqlx::query(
            "INSERT INTO api_tokens (id, name, tenant, token_sha256, created_at, role) \
             VALUES ($1,$2,$3,$4,$5,$6)",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(tenant)
        .bind(sha256_hex(secret.as_bytes()))
        .bind(now)
        .bind(role.as_str())
        .execute(&self.pool)
        .await
        .map_err(db("create_token"))?;
        Ok((id, secret))
    }

    /// The token behind a secret, if it exists and is not revoked.
    pub async fn verify_token(&self, secret: &str) -> Result<Option<TokenInfo>, CatalogError> {
        let row = sqlx::query(
            "SELECT id, name, tenant, role FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(sha256_hex(secret.as_bytes()))
        .fetch_optional(&self.pool)
        .await
        .map_err(db("verify_token"))?;
        let Some(r) = row else { return Ok(None) };
        let role: String = r.try_get(3).map_err(db("verify_token"))?;
        let role = Role::parse(&role).map_err(|e| CatalogError::Conflict(e.to_string()))?;
        Ok(Some(TokenInfo {
            id: r.try_get(0).map_err(db("verify_token"))?,
            name: r.try_get(1).map_err(db("verify_token"))?,
            tenant: r.try_get(2).map_err(db("verify_token"))?,
            role,
        }))
    }

    /// The tenant of an active or revoked token, by id (for auditing its revocation).
    pub async fn token_tenant(&self, id: &str) -> Result<Option<String>, CatalogError> {
        let row = sqlx::query("SELECT tenant FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("token_tenant"))?;
        row.map(|r| r.try_get(0)).transpose().map_err(db("token_tenant"))
    }

    /// Revokes a token by id; false if there was none.
    pub async fn revoke_token(&self, id: &str, now: i64) -> Result<bool, CatalogError> {
        let r = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("revoke_token"))?;
        Ok(r.rows_affected() > 0)
    }
}
