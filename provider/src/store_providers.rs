//! Persistence of workspace providers.

use relay_core::token;
use sqlx::Row as _;

use crate::store::{now, Store};

/// A provider as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Provider {
    /// Id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The control plane's own cluster.
    pub built_in: bool,
    /// Where new workspaces go when no provider is named.
    pub default: bool,
    /// `pending | ready | error`.
    pub status: String,
    /// Why it is in `error`.
    pub status_message: Option<String>,
    /// URL its edge serves (remote providers).
    pub hostname: Option<String>,
    /// Kubernetes API server URL (remote providers).
    pub cluster_address: Option<String>,
    /// Namespace workspaces go to.
    pub namespace: Option<String>,
    /// Organizations allowed to create workspaces there, by name.
    pub orgs: Vec<String>,
    /// Workspaces it holds.
    pub workspaces: i64,
    /// Creation time (Unix seconds).
    pub created_at: i64,
}

/// A new remote provider.
pub struct NewProvider<'a> {
    /// Unique name.
    pub name: &'a str,
    /// URL its edge serves.
    pub hostname: &'a str,
    /// Kubernetes API server URL.
    pub cluster_address: &'a str,
    /// Namespace.
    pub namespace: Option<&'a str>,
}

const SELECT: &str = "SELECT p.id, p.name, p.built_in, p.is_default, p.status, p.status_message, \
    p.hostname, p.cluster_address, p.namespace, p.created_at, \
    (SELECT COUNT(*) FROM workspaces w WHERE w.provider_id = p.id), \
    (SELECT GROUP_CONCAT(o.name, ',') FROM provider_orgs a JOIN orgs o ON o.id = a.org_id WHERE a.provider_id = p.id) \
    FROM providers p";

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Provider, sqlx::Error> {
    let orgs: Option<String> = r.try_get(11)?;
    let mut orgs: Vec<String> = orgs
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    orgs.sort();
    Ok(Provider {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        built_in: r.try_get::<i64, _>(2)? != 0,
        default: r.try_get::<i64, _>(3)? != 0,
        status: r.try_get(4)?,
        status_message: r.try_get(5)?,
        hostname: r.try_get(6)?,
        cluster_address: r.try_get(7)?,
        namespace: r.try_get(8)?,
        created_at: r.try_get(9)?,
        workspaces: r.try_get(10)?,
        orgs,
    })
}

impl Store {
    /// Every provider, the built-in one first, then by name.
    pub async fn providers(&self) -> Result<Vec<Provider>, sqlx::Error> {
        let rows = sqlx::query(&format!("{SELECT} ORDER BY p.built_in DESC, p.name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// A provider by name.
    pub async fn provider_by_name(&self, name: &str) -> Result<Option<Provider>, sqlx::Error> {
        let row = sqlx::query(&format!("{SELECT} WHERE p.name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Creates a remote provider in `pending`; its REMOTE token is returned once and only
    /// its hash kept. `Ok(None)` when the name is taken.
    pub async fn create_provider(
        &self,
        p: &NewProvider<'_>,
    ) -> Result<Option<(Provider, token::Secret)>, sqlx::Error> {
        let secret = token::generate(token::PROVIDER_PREFIX);
        let r = sqlx::query(
            "INSERT INTO providers (id, name, built_in, is_default, status, created_at, hostname, cluster_address, namespace, token_hash) \
             VALUES (?, ?, 0, 0, 'pending', ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(token::random_id())
        .bind(p.name)
        .bind(now())
        .bind(p.hostname)
        .bind(p.cluster_address)
        .bind(p.namespace)
        .bind(token::hash(secret.expose()))
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        let created = self
            .provider_by_name(p.name)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        Ok(Some((created, secret)))
    }
}
