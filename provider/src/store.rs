//! Persistence: users, tokens, workspaces and signing keys (opening and migrating: `db`).

use relay_core::token;
use sqlx::Row as _;

pub(crate) use crate::db::now;
pub use crate::db::{Store, StoreError};
pub use perigee_api::users::ApiToken;
pub use perigee_api::workspaces::{User, Workspace};

/// Name of the built-in provider.
pub const BUILT_IN_PROVIDER: &str = "built-in";

impl Store {
    /// Creates the built-in provider if missing; returns its id. Replicas starting together
    /// agree: the unique indexes let one insert win and the others read it.
    pub async fn ensure_built_in_provider(&self) -> Result<String, sqlx::Error> {
        sqlx::query("INSERT INTO providers (id, name, built_in, is_default, status, created_at) \
             SELECT $1, $2, 1, CASE WHEN EXISTS (SELECT 1 FROM providers WHERE is_default = 1) THEN 0 ELSE 1 END, 'ready', $3 \
             WHERE NOT EXISTS (SELECT 1 FROM providers WHERE built_in = 1) ON CONFLICT DO NOTHING")
            .bind(token::random_id())
            .bind(BUILT_IN_PROVIDER)
            .bind(now())
            .execute(&self.pool)
            .await?;
        sqlx::query_scalar::<_, String>("SELECT id FROM providers WHERE built_in = 1")
            .fetch_one(&self.pool)
            .await
    }

    /// Number of users.
    pub async fn user_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await
    }

    /// Creates a user.
    pub async fn create_user(&self, username: &str, role: &str) -> Result<User, sqlx::Error> {
        let id = token::random_id();
        sqlx::query("INSERT INTO users (id, username, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(username)
            .bind(role)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(User {
            id,
            username: username.to_owned(),
            role: role.to_owned(),
        })
    }

    /// Creates an API token for a user; the secret is returned once and only its hash kept.
    pub async fn create_api_token(
        &self,
        user_id: &str,
        name: &str,
    ) -> Result<token::Secret, sqlx::Error> {
        let secret = token::generate(token::API_PREFIX);
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token::random_id())
        .bind(user_id)
        .bind(name)
        .bind(token::hash(secret.expose()))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(secret)
    }

    /// The user holding an API token (not revoked).
    pub async fn user_by_token(&self, secret: &str) -> Result<Option<User>, sqlx::Error> {
        Ok(self.token_holder(secret).await?.map(|(u, _)| u))
    }

    /// The user holding an API token (not revoked), and the token's id.
    pub async fn token_holder(&self, secret: &str) -> Result<Option<(User, String)>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.role, t.id FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(token::hash(secret))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| Ok((user_from_row(r)?, r.try_get::<String, _>(3)?)))
            .transpose()
    }

    /// A user's API tokens that are not revoked: id, name, creation time.
    pub async fn api_tokens(&self, user_id: &str) -> Result<Vec<ApiToken>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, name, created_at FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL \
             ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiToken {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Revokes one of a user's tokens; false if the user has no such (unrevoked) token.
    pub async fn revoke_api_token(&self, user_id: &str, id: &str) -> Result<bool, sqlx::Error> {
        let r = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Ids of tokens revoked within the last `secs` seconds (their tickets may still be
    /// valid).
    pub async fn recently_revoked_tokens(&self, secs: u64) -> Result<Vec<String>, sqlx::Error> {
        let since = now() - i64::try_from(secs).unwrap_or(i64::MAX / 2) - 60;
        sqlx::query_scalar(
            "SELECT id FROM api_tokens WHERE revoked_at IS NOT NULL AND revoked_at > $1",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
    }

    /// The ticket-signing key, generated and stored on first use.
    pub async fn signing_key(&self) -> Result<relay_core::ticket::Signer, anyhow::Error> {
        // Read, else generate and read again: replicas racing on the first key all end up
        // with the same one (newest, then highest kid).
        for _ in 0..2 {
            let row: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT pkcs8 FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid DESC LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await?;
            if let Some(pkcs8) = row {
                return Ok(relay_core::ticket::Signer::from_pkcs8(&pkcs8)?);
            }
            let (signer, pkcs8) = relay_core::ticket::Signer::generate()?;
            sqlx::query("INSERT INTO signing_keys (kid, pkcs8, created_at) VALUES ($1, $2, $3)")
                .bind(signer.kid())
                .bind(pkcs8)
                .bind(now())
                .execute(&self.pool)
                .await?;
        }
        anyhow::bail!("the signing key just stored cannot be read back")
    }

    const WS_SELECT: &'static str = "SELECT w.id, w.name, w.owner_id, u.username, p.name, w.status, w.created_at, w.home_edge, o.name, w.provider_state, w.provider_message \
        FROM workspaces w JOIN users u ON u.id = w.owner_id JOIN providers p ON p.id = w.provider_id \
        LEFT JOIN orgs o ON o.id = w.org_id";

    fn ws_from_row(r: &sqlx::any::AnyRow) -> Result<Workspace, sqlx::Error> {
        Ok(Workspace {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            owner_id: r.try_get(2)?,
            owner: r.try_get(3)?,
            provider: r.try_get(4)?,
            status: r.try_get(5)?,
            created_at: r.try_get(6)?,
            home_edge: r
                .try_get::<Option<String>, _>(7)?
                .unwrap_or_else(|| relay_core::mesh::PRIMARY_EDGE.to_owned()),
            org: r.try_get::<Option<String>, _>(8)?.unwrap_or_default(),
            provider_state: r.try_get(9)?,
            provider_message: r.try_get(10)?,
        })
    }

    /// A user's workspaces, by name.
    pub async fn workspaces_of(&self, owner_id: &str) -> Result<Vec<Workspace>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "{} WHERE w.owner_id = $1 ORDER BY w.name",
            Self::WS_SELECT
        ))
        .bind(owner_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::ws_from_row).collect()
    }

    /// Every workspace.
    pub async fn all_workspaces(&self) -> Result<Vec<Workspace>, sqlx::Error> {
        let rows = sqlx::query(Self::WS_SELECT).fetch_all(&self.pool).await?;
        rows.iter().map(Self::ws_from_row).collect()
    }

    /// One of a user's workspaces by name.
    pub async fn workspace_by_name(
        &self,
        owner_id: &str,
        name: &str,
    ) -> Result<Option<Workspace>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "{} WHERE w.owner_id = $1 AND w.name = $2",
            Self::WS_SELECT
        ))
        .bind(owner_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::ws_from_row).transpose()
    }

    /// The workspace an agent token belongs to.
    pub async fn workspace_by_agent_token(
        &self,
        secret: &str,
    ) -> Result<Option<Workspace>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "{} WHERE w.agent_token_hash = $1",
            Self::WS_SELECT
        ))
        .bind(token::hash(secret))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::ws_from_row).transpose()
    }

    /// Records the fingerprint of the agent's end-to-end key (reported at each agent start).
    pub async fn set_agent_key(&self, id: &str, fingerprint: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE workspaces SET agent_public_key = $1 WHERE id = $2")
            .bind(fingerprint)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The fingerprint of the agent's end-to-end key, once reported.
    pub async fn agent_key(&self, id: &str) -> Result<Option<String>, sqlx::Error> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT agent_public_key FROM workspaces WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(v.flatten())
    }

    /// Records the edge a workspace's agent links to.
    pub async fn set_home_edge(&self, id: &str, edge: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE workspaces SET home_edge = $1 WHERE id = $2 AND COALESCE(home_edge, '') <> $3",
        )
        .bind(edge)
        .bind(id)
        .bind(edge)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets a workspace's status (`running` or `stopped`: what its provider should make of it).
    pub async fn set_workspace_status(&self, id: &str, status: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE workspaces SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a workspace row.
    pub async fn delete_workspace(&self, id: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM dev_urls WHERE workspace_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM workspaces WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}

/// A user from the columns `id, username, role`.
pub(crate) fn user_from_row(r: &sqlx::any::AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: r.try_get(0)?,
        username: r.try_get(1)?,
        role: r.try_get(2)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_are_stored_hashed_and_workspaces_unique_per_owner() {
        for db in crate::db::test_support::both().await {
            let store = &db.store;
            // Migrating twice is harmless.
            store.migrate().await.unwrap();
            let user = store.create_user("ada", "admin").await.unwrap();
            let secret = store.create_api_token(&user.id, "cli").await.unwrap();
            let stored: Vec<String> = sqlx::query_scalar("SELECT hash FROM api_tokens")
                .fetch_all(&store.pool)
                .await
                .unwrap();
            assert_eq!(stored, vec![token::hash(secret.expose())]);
            assert!(!stored[0].contains(secret.expose()));
            let found = store.user_by_token(secret.expose()).await.unwrap().unwrap();
            assert_eq!(found.username, "ada");
            assert!(store.user_by_token("pgt_wrong").await.unwrap().is_none());

            let org = store.ensure_default_org().await.unwrap();
            let new = crate::store_provider_edit::NewWorkspace {
                owner: &user,
                org: &org,
                name: "dev",
                home_edge: None,
                provider: None,
            };
            let (ws, agent, p) = store.create_workspace(&new).await.unwrap();
            assert!(p.built_in && p.default);
            let again = store.create_workspace(&new).await.unwrap_err();
            assert_eq!(again.status, http::StatusCode::CONFLICT, "{again}");
            let by_agent = store
                .workspace_by_agent_token(agent.expose())
                .await
                .unwrap();
            assert_eq!(by_agent.unwrap().id, ws.id);
            store.delete_workspace(&ws.id).await.unwrap();
            assert!(store
                .workspace_by_agent_token(agent.expose())
                .await
                .unwrap()
                .is_none());
            let k1 = store.signing_key().await.unwrap();
            let k2 = store.signing_key().await.unwrap();
            assert_eq!(k1.kid(), k2.kid());
        }
    }
}
