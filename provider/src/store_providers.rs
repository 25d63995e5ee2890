//! Persistence of workspace providers.

pub use perigee_api::providers::Provider;
use relay_core::token;
use sqlx::Row as _;

use crate::provider_settings::ProviderSettings;
use crate::store::{now, Store};

/// A workspace placed on a provider, as its deployment needs it.
#[derive(Debug, Clone)]
pub struct PlacedWorkspace {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Home edge (`""`: the primary).
    pub home_edge: String,
    /// The owner's e-mail address (`""` when unknown).
    pub owner_email: String,
    /// Its owner stopped it (`perigee stop`): the provider keeps it but does not run it.
    pub stopped: bool,
}

/// Heartbeats a remote provider may miss before it is `error`.
pub const MISSED_HEARTBEATS: i64 = 3;

pub use perigee_api::providers::{
    ProviderHeartbeat, WorkspaceReport, MAX_REPORTS, MAX_REPORT_MESSAGE, REPORT_STATES,
};

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

pub(crate) const SELECT: &str = "SELECT p.id, p.name, p.built_in, p.is_default, p.status, p.status_message, \
    p.hostname, p.cluster_address, p.namespace, p.created_at, p.last_heartbeat_at, p.heartbeat_secs, p.version, \
    (SELECT COUNT(*) FROM workspaces w WHERE w.provider_id = p.id), \
    (SELECT string_agg(o.name, ',') FROM provider_orgs a JOIN orgs o ON o.id = a.org_id WHERE a.provider_id = p.id), \
    p.settings, p.cordon_reason, p.cordoned_at, p.own_service_account, p.admins_only \
    FROM providers p";

pub(crate) fn from_row(r: &sqlx::any::AnyRow) -> Result<Provider, sqlx::Error> {
    let orgs: Option<String> = r.try_get(14)?;
    let mut orgs: Vec<String> = orgs
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    orgs.sort();
    let settings = ProviderSettings::from_column(&r.try_get::<String, _>(15)?);
    Ok(Provider {
        effective_affinity: settings.kubernetes.effective_affinity(),
        settings,
        cordon_reason: r.try_get(16)?,
        cordoned_at: r.try_get(17)?,
        own_service_account: r.try_get(18)?,
        admins_only: r.try_get::<i64, _>(19)? != 0,
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
        last_heartbeat_at: r.try_get(10)?,
        version: r.try_get(12)?,
        workspaces: r.try_get(13)?,
        orgs,
    })
    .map(|mut p| {
        // A remote provider that stopped heartbeating is in error until it resumes.
        let hb: Option<i64> = r.try_get(11).ok().flatten();
        if let (false, Some(last)) = (p.built_in, p.last_heartbeat_at) {
            let every = hb.unwrap_or(15).max(1);
            let age = (now() - last).max(0);
            if age > MISSED_HEARTBEATS * every {
                p.status = "error".into();
                p.status_message = Some(format!(
                    "missed heartbeats: the last was {age} s ago (expected every {every} s)"
                ));
            }
        }
        p
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
        let row = sqlx::query(&format!("{SELECT} WHERE p.name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The remote provider a REMOTE token belongs to.
    pub async fn provider_by_token(&self, secret: &str) -> Result<Option<Provider>, sqlx::Error> {
        let row = sqlx::query(&format!("{SELECT} WHERE p.token_hash = $1"))
            .bind(token::hash(secret))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Records a heartbeat: `ready`, or `error` with the reported failure.
    pub async fn provider_heartbeat(
        &self,
        id: &str,
        hb: &ProviderHeartbeat,
    ) -> Result<(), sqlx::Error> {
        let status = if hb.error.is_some() { "error" } else { "ready" };
        sqlx::query("UPDATE providers SET status = $1, status_message = $2, last_heartbeat_at = $3, heartbeat_secs = $4, version = $5, own_service_account = $6, admins_only = $7 WHERE id = $8 AND built_in = 0")
            .bind(status)
            .bind(&hb.error)
            .bind(now())
            .bind(i64::try_from(hb.heartbeat_secs).unwrap_or(i64::MAX))
            .bind(&hb.version)
            .bind(hb.service_account.as_deref().filter(|s| !s.is_empty()))
            .bind(i64::from(hb.admins_only))
            .bind(id)
            .execute(&self.pool)
            .await?;
        for w in hb.workspaces.iter().take(MAX_REPORTS) {
            let message = w.message.as_deref().map(|m| {
                let mut end = m.len().min(MAX_REPORT_MESSAGE);
                while !m.is_char_boundary(end) {
                    end -= 1;
                }
                m[..end].to_owned()
            });
            // Only its own workspaces: the provider id is part of the match.
            sqlx::query("UPDATE workspaces SET provider_state = $1, provider_message = $2 WHERE id = $3 AND provider_id = $4")
                .bind(&w.state)
                .bind(message)
                .bind(&w.id)
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Records the service account the built-in provider's workspaces must never get: the
    /// control plane's own (`None`: it runs no pods).
    pub async fn set_built_in_service_account(
        &self,
        account: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE providers SET own_service_account = $1 WHERE built_in = 1")
            .bind(account)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The workspaces placed on a provider.
    pub async fn provider_workspaces(
        &self,
        provider_id: &str,
    ) -> Result<Vec<PlacedWorkspace>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT w.id, w.name, COALESCE(w.home_edge, ''), COALESCE(u.email, ''), w.status \
             FROM workspaces w JOIN users u ON u.id = w.owner_id WHERE w.provider_id = $1 ORDER BY w.id",
        )
        .bind(provider_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PlacedWorkspace {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    home_edge: r.try_get(2)?,
                    owner_email: r.try_get(3)?,
                    stopped: r.try_get::<String, _>(4)? == "stopped",
                })
            })
            .collect()
    }

    /// A fresh agent token for a workspace placed on `provider_id` (the previous one stops
    /// working); the workspace becomes `running`. `None` when the workspace is not there.
    pub async fn issue_agent_token(
        &self,
        provider_id: &str,
        workspace_id: &str,
    ) -> Result<Option<token::Secret>, sqlx::Error> {
        let secret = token::generate(token::AGENT_PREFIX);
        let r = sqlx::query(
            "UPDATE workspaces SET agent_token_hash = $1, status = 'running' WHERE id = $2 AND provider_id = $3",
        )
        .bind(token::hash(secret.expose()))
        .bind(workspace_id)
        .bind(provider_id)
        .execute(&self.pool)
        .await?;
        Ok((r.rows_affected() > 0).then_some(secret))
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
             VALUES ($1, $2, 0, 0, 'pending', $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
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
