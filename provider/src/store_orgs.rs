//! Persistence of organizations, their members, site roles and provider allowlists.

pub use perigee_api::orgs::{Org, UserView};
use relay_core::token;
use sqlx::Row as _;

use crate::store::{now, user_from_row, Store, User, BUILT_IN_PROVIDER};

/// Name of the organization every deployment starts with.
pub const DEFAULT_ORG: &str = "default";

/// Site roles, most powerful first.
pub const ROLES: &[&str] = &["admin", "site-manager", "member"];

fn org_from_row(r: &sqlx::any::AnyRow) -> Result<Org, sqlx::Error> {
    Ok(Org {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        created_at: r.try_get(2)?,
    })
}

impl Store {
    /// At start: makes sure the default organization exists, that every user without an
    /// organization is in it, that it is on the built-in provider's allowlist, and that
    /// workspaces from before organizations belong to it. Idempotent.
    pub async fn ensure_default_org(&self) -> Result<Org, sqlx::Error> {
        let org = match self.org_by_name(DEFAULT_ORG).await? {
            Some(o) => o,
            None => match self.create_org(DEFAULT_ORG).await {
                Ok(o) => o,
                // A replica starting at the same time created it.
                Err(e)
                    if e.as_database_error()
                        .is_some_and(|d| d.is_unique_violation()) =>
                {
                    self.org_by_name(DEFAULT_ORG)
                        .await?
                        .ok_or(sqlx::Error::RowNotFound)?
                }
                Err(e) => return Err(e),
            },
        };
        sqlx::query("INSERT INTO org_members (org_id, user_id) SELECT $1, u.id FROM users u WHERE NOT EXISTS (SELECT 1 FROM org_members m WHERE m.user_id = u.id)")
            .bind(&org.id)
            .execute(&self.pool)
            .await?;
        sqlx::query("UPDATE workspaces SET org_id = $1 WHERE org_id IS NULL")
            .bind(&org.id)
            .execute(&self.pool)
            .await?;
        Ok(org)
    }

    /// Creates an organization; it is on the built-in provider's allowlist from creation.
    pub async fn create_org(&self, name: &str) -> Result<Org, sqlx::Error> {
        let provider_id = self.ensure_built_in_provider().await?;
        let org = Org {
            id: token::random_id(),
            name: name.to_owned(),
            created_at: now(),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&org.id)
            .bind(&org.name)
            .bind(org.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO provider_orgs (provider_id, org_id) VALUES ($1, $2)")
            .bind(&provider_id)
            .bind(&org.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(org)
    }

    /// An organization by name.
    pub async fn org_by_name(&self, name: &str) -> Result<Option<Org>, sqlx::Error> {
        let row = sqlx::query("SELECT id, name, created_at FROM orgs WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(org_from_row).transpose()
    }

    /// Every organization with its member and workspace counts, by name.
    pub async fn orgs(&self) -> Result<Vec<(Org, i64, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT o.id, o.name, o.created_at, \
             (SELECT COUNT(*) FROM org_members m WHERE m.org_id = o.id), \
             (SELECT COUNT(*) FROM workspaces w WHERE w.org_id = o.id) \
             FROM orgs o ORDER BY o.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((org_from_row(r)?, r.try_get(3)?, r.try_get(4)?)))
            .collect()
    }

    /// The organizations a user belongs to, by name.
    pub async fn orgs_of(&self, user_id: &str) -> Result<Vec<Org>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT o.id, o.name, o.created_at FROM orgs o JOIN org_members m ON m.org_id = o.id \
             WHERE m.user_id = $1 ORDER BY o.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(org_from_row).collect()
    }

    /// Adds a user to an organization (no-op when already a member).
    pub async fn add_member(&self, org_id: &str, user_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO org_members (org_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(org_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A user by name.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, sqlx::Error> {
        let row = sqlx::query("SELECT id, username, role FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Every user with their organizations, by name.
    pub async fn users(&self) -> Result<Vec<UserView>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.role, o.name FROM users u \
             LEFT JOIN org_members m ON m.user_id = u.id LEFT JOIN orgs o ON o.id = m.org_id \
             ORDER BY u.username, o.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<UserView> = Vec::new();
        for r in &rows {
            let id: String = r.try_get(0)?;
            let org: Option<String> = r.try_get(3)?;
            if out.last().is_none_or(|v| v.user.id != id) {
                out.push(UserView {
                    user: User {
                        id,
                        username: r.try_get(1)?,
                        role: r.try_get(2)?,
                    },
                    orgs: Vec::new(),
                });
            }
            if let (Some(o), Some(v)) = (org, out.last_mut()) {
                v.orgs.push(o);
            }
        }
        Ok(out)
    }

    /// Sets a user's e-mail address.
    pub async fn set_user_email(&self, user_id: &str, email: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
            .bind(email)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Names of the organizations on the built-in provider's allowlist.
    pub async fn built_in_allowlist(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT o.name FROM provider_orgs a JOIN orgs o ON o.id = a.org_id \
             JOIN providers p ON p.id = a.provider_id WHERE p.name = $1 ORDER BY o.name",
        )
        .bind(BUILT_IN_PROVIDER)
        .fetch_all(&self.pool)
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn orgs_members_and_the_built_in_allowlist() {
        let dir = std::env::temp_dir().join(format!("perigee-orgs-{}", token::random_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open_sqlite(&dir.join("db.sqlite")).await.unwrap();
        let admin = store.create_user("ada", "admin").await.unwrap();
        let default = store.ensure_default_org().await.unwrap();
        assert_eq!(store.ensure_default_org().await.unwrap().id, default.id);
        assert_eq!(store.orgs_of(&admin.id).await.unwrap()[0].name, DEFAULT_ORG);

        let eng = store.create_org("eng").await.unwrap();
        assert!(store.create_org("eng").await.is_err(), "names are unique");
        assert_eq!(
            store.built_in_allowlist().await.unwrap(),
            vec!["default", "eng"],
            "new orgs are on the built-in allowlist"
        );
        let bob = store.create_user("bob", "member").await.unwrap();
        store.add_member(&eng.id, &bob.id).await.unwrap();
        store.add_member(&eng.id, &bob.id).await.unwrap();
        let users = store.users().await.unwrap();
        let b = users.iter().find(|u| u.user.username == "bob").unwrap();
        assert_eq!(b.orgs, vec!["eng"]);
        let new = |name| crate::store_provider_edit::NewWorkspace {
            owner: &bob,
            org: &eng,
            name,
            home_edge: None,
            provider: None,
        };
        let (ws, _, _) = store.create_workspace(&new("dev")).await.unwrap();
        assert_eq!(ws.org, "eng");
        let counts = store.orgs().await.unwrap();
        let e = counts.iter().find(|(o, _, _)| o.name == "eng").unwrap();
        assert_eq!((e.1, e.2), (1, 1));

        // Off the allowlist: refused, and nothing is written.
        sqlx::query("DELETE FROM provider_orgs WHERE org_id = $1")
            .bind(&eng.id)
            .execute(&store.pool)
            .await
            .unwrap();
        let e = store.create_workspace(&new("other")).await.unwrap_err();
        assert_eq!(e.status, http::StatusCode::FORBIDDEN, "{e}");
        assert_eq!(store.workspaces_of(&bob.id).await.unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
