//! API tokens: stored as SHA-256 hashes, verified, revoked.

use super::{Catalog, CatalogError, db, sha256_hex};
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
}

impl Catalog {
    /// Creates an API token; returns its id and the secret (shown once, stored only as a hash).
    pub async fn create_token(
        &self,
        name: &str,
        tenant: &str,
        now: i64,
    ) -> Result<(String, String), CatalogError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let secret = format!("cdn_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        sqlx::query(
            "INSERT INTO api_tokens (id, name, tenant, token_sha256, created_at) VALUES ($1,$2,$3,$4,$5)",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(tenant)
        .bind(sha256_hex(secret.as_bytes()))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("create_token"))?;
        Ok((id, secret))
    }

    /// The token behind a secret, if it exists and is not revoked.
    pub async fn verify_token(&self, secret: &str) -> Result<Option<TokenInfo>, CatalogError> {
        let row = sqlx::query(
            "SELECT id, name, tenant FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(sha256_hex(secret.as_bytes()))
        .fetch_optional(&self.pool)
        .await
        .map_err(db("verify_token"))?;
        row.map(|r| Ok(TokenInfo { id: r.try_get(0)?, name: r.try_get(1)?, tenant: r.try_get(2)? }))
            .transpose()
            .map_err(db("verify_token"))
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
