//! Provider management that must hold under concurrent requests and several replicas: edit
//! (rename, allowlist, default, settings), delete, cordon, and placing a new workspace.
//!
//! Every operation here runs in one transaction that first takes the `providers` lock
//! (`db::lock`), then reads, checks and writes. So "remove an org from an allowlist" and
//! "create a workspace for that org there" are serialised: whichever commits second sees the
//! first's result, and no workspace ever sits in a provider its org may not use.

pub use perigee_api::providers::Edited;
use relay_core::token;
use sqlx::{Any, Row as _, Transaction};

use crate::db::lock;
use crate::error::ApiError;
use crate::provider_settings::ProviderEdit;
use crate::store::{now, Store, User, Workspace};
use crate::store_orgs::Org;
use crate::store_providers::{from_row, Provider, SELECT};

/// A new workspace's placement request.
pub struct NewWorkspace<'a> {
    /// Owner.
    pub owner: &'a User,
    /// Organization it belongs to.
    pub org: &'a Org,
    /// Name, unique per owner.
    pub name: &'a str,
    /// Edge its agent homes on (`None`: the primary).
    pub home_edge: Option<&'a str>,
    /// Provider by name (`None`: the default provider).
    pub provider: Option<&'a str>,
}

async fn provider_in(
    tx: &mut Transaction<'_, Any>,
    name: &str,
) -> Result<Option<Provider>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT} WHERE p.name = $1"))
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

async fn default_in(tx: &mut Transaction<'_, Any>) -> Result<Option<Provider>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT} WHERE p.is_default = 1"))
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

fn no_provider(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no provider named {name:?} (see `perigee providers ls`)"
    ))
}

/// `(owner/workspace)` names of a provider's workspaces, optionally of one org.
async fn workspaces_in(
    tx: &mut Transaction<'_, Any>,
    provider_id: &str,
    org_id: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT u.username, w.name FROM workspaces w JOIN users u ON u.id = w.owner_id \
         WHERE w.provider_id = $1 AND ($2 = '' OR w.org_id = $2) ORDER BY u.username, w.name",
    )
    .bind(provider_id)
    .bind(org_id.unwrap_or(""))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(format!(
                "{}/{}",
                r.try_get::<String, _>(0)?,
                r.try_get::<String, _>(1)?
            ))
        })
        .collect()
}

fn list_some(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Why a provider takes no new workspace now, if it does not.
fn unavailable(p: &Provider) -> Option<String> {
    if let Some(reason) = &p.cordon_reason {
        return Some(format!("provider {:?} is cordoned: {reason}", p.name));
    }
    match p.status.as_str() {
        "ready" => None,
        "pending" => Some(format!(
            "provider {:?} is pending: its `perigee workspace-provider` has not registered yet",
            p.name
        )),
        other => Some(format!(
            "provider {:?} is {other}: {}",
            p.name,
            p.status_message.as_deref().unwrap_or("no detail reported")
        )),
    }
}

impl Store {
    async fn org_ids(
        tx: &mut Transaction<'_, Any>,
        field: &str,
        names: &[String],
    ) -> Result<Vec<(String, String)>, ApiError> {
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let id: Option<String> = sqlx::query_scalar("SELECT id FROM orgs WHERE name = $1")
                .bind(n)
                .fetch_optional(&mut **tx)
                .await?;
            match id {
                Some(id) => out.push((id, n.clone())),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "no organization named {n:?} (see `perigee orgs ls`)"
                    ))
                    .on(field))
                }
            }
        }
        Ok(out)
    }

    /// Applies `edit` to provider `name` as a whole, or refuses it and changes nothing.
    pub async fn edit_provider(&self, name: &str, edit: &ProviderEdit) -> Result<Edited, ApiError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, "providers").await?;
        let p = provider_in(&mut tx, name)
            .await?
            .ok_or_else(|| no_provider(name))?;
        let mut warnings = Vec::new();

        let settings = p.settings.edited(edit)?;
        if let (Some(own), Some(named)) =
            (&p.own_service_account, &settings.features.service_account)
        {
            if own == named {
                return Err(ApiError::bad_request(format!(
                    "{named:?} is the service account the provider itself runs as: its \
                     workspaces would act with the provider's rights (make and delete pods, \
                     read every workspace's secret); create a separate account for workspaces"
                ))
                .on("features.service_account"));
            }
        }
        if settings != p.settings {
            sqlx::query("UPDATE providers SET settings = $1 WHERE id = $2")
                .bind(serde_json::to_string(&settings).map_err(ApiError::internal)?)
                .bind(&p.id)
                .execute(&mut *tx)
                .await?;
        }

        self.edit_allowlist(&mut tx, &p, edit, &mut warnings)
            .await?;

        match edit.default {
            Some(true) if !p.default => {
                if let Some(why) = unavailable(&p) {
                    return Err(ApiError::conflict(format!(
                        "{why}; only a provider that takes workspaces can be the default"
                    ))
                    .on("default"));
                }
                sqlx::query("UPDATE providers SET is_default = 0 WHERE is_default = 1")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE providers SET is_default = 1 WHERE id = $1")
                    .bind(&p.id)
                    .execute(&mut *tx)
                    .await?;
            }
            Some(false) if p.default => {
                return Err(ApiError::bad_request(
                    "there is always one default provider: make another one the default instead",
                )
                .on("default"))
            }
            _ => {}
        }

        let mut final_name = p.name.clone();
        if let Some(new) = edit.name.as_deref().filter(|n| *n != p.name) {
            if p.built_in {
                return Err(
                    ApiError::bad_request("the built-in provider keeps its name").on("name"),
                );
            }
            crate::request::validate_label("provider name", new).map_err(|e| e.on("name"))?;
            let r = sqlx::query(
                "UPDATE providers SET name = $1 WHERE id = $2 \
                 AND NOT EXISTS (SELECT 1 FROM providers WHERE name = $1)",
            )
            .bind(new)
            .bind(&p.id)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 0 {
                return Err(
                    ApiError::conflict(format!("a provider named {new:?} already exists"))
                        .on("name"),
                );
            }
            final_name = new.to_owned();
        }

        let provider = provider_in(&mut tx, &final_name)
            .await?
            .ok_or_else(|| no_provider(&final_name))?;
        tx.commit().await?;
        if provider.orgs.is_empty() {
            warnings.push(format!(
                "provider {:?} has no organization on its allowlist: it accepts no new workspaces",
                provider.name
            ));
        }
        Ok(Edited { provider, warnings })
    }

    async fn edit_allowlist(
        &self,
        tx: &mut Transaction<'_, Any>,
        p: &Provider,
        edit: &ProviderEdit,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let (add, remove) = match &edit.orgs_set {
            Some(set) => {
                if !edit.orgs_add.is_empty() || !edit.orgs_remove.is_empty() {
                    return Err(ApiError::bad_request(
                        "give either the whole allowlist or organizations to add and remove, not both",
                    )
                    .on("orgs_set"));
                }
                let set = Self::org_ids(tx, "orgs_set", set).await?;
                let remove: Vec<String> = p
                    .orgs
                    .iter()
                    .filter(|o| !set.iter().any(|(_, n)| n == *o))
                    .cloned()
                    .collect();
                (set, Self::org_ids(tx, "orgs_set", &remove).await?)
            }
            None => (
                Self::org_ids(tx, "orgs_add", &edit.orgs_add).await?,
                Self::org_ids(tx, "orgs_remove", &edit.orgs_remove).await?,
            ),
        };
        if let Some((_, n)) = add
            .iter()
            .find(|(id, _)| remove.iter().any(|(r, _)| r == id))
        {
            return Err(ApiError::bad_request(format!(
                "organization {n:?} is both added and removed"
            ))
            .on("orgs_remove"));
        }
        for (org_id, org_name) in &remove {
            let held = workspaces_in(tx, &p.id, Some(org_id)).await?;
            if !held.is_empty() {
                return Err(ApiError::conflict(format!(
                    "organization {org_name:?} still has {} workspace{} on provider {:?} ({}); delete them first",
                    held.len(),
                    plural(held.len()),
                    p.name,
                    list_some(&held)
                ))
                .on(if edit.orgs_set.is_some() { "orgs_set" } else { "orgs_remove" }));
            }
            sqlx::query("DELETE FROM provider_orgs WHERE provider_id = $1 AND org_id = $2")
                .bind(&p.id)
                .bind(org_id)
                .execute(&mut **tx)
                .await?;
        }
        for (org_id, _) in &add {
            sqlx::query(
                "INSERT INTO provider_orgs (provider_id, org_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(&p.id)
            .bind(org_id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Deletes a remote provider that holds no workspaces; the default moves to the built-in
    /// provider when it was the default.
    pub async fn delete_provider(&self, name: &str) -> Result<Provider, ApiError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, "providers").await?;
        let p = provider_in(&mut tx, name)
            .await?
            .ok_or_else(|| no_provider(name))?;
        if p.built_in {
            return Err(ApiError::conflict("the built-in provider cannot be deleted").on("name"));
        }
        let held = workspaces_in(&mut tx, &p.id, None).await?;
        if !held.is_empty() {
            return Err(ApiError::conflict(format!(
                "provider {name:?} has {} workspace{} ({}); delete them first",
                held.len(),
                plural(held.len()),
                list_some(&held)
            ))
            .on("name"));
        }
        sqlx::query("DELETE FROM providers WHERE id = $1")
            .bind(&p.id)
            .execute(&mut *tx)
            .await?;
        if p.default {
            sqlx::query("UPDATE providers SET is_default = 1 WHERE built_in = 1")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(p)
    }

    /// Cordons (`Some(reason)`) or uncordons (`None`) a provider.
    pub async fn cordon_provider(
        &self,
        name: &str,
        reason: Option<&str>,
    ) -> Result<Provider, ApiError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, "providers").await?;
        let p = provider_in(&mut tx, name)
            .await?
            .ok_or_else(|| no_provider(name))?;
        sqlx::query("UPDATE providers SET cordon_reason = $1, cordoned_at = $2 WHERE id = $3")
            .bind(reason)
            .bind(reason.map(|_| now()))
            .bind(&p.id)
            .execute(&mut *tx)
            .await?;
        let p = provider_in(&mut tx, name)
            .await?
            .ok_or_else(|| no_provider(name))?;
        tx.commit().await?;
        Ok(p)
    }

    /// Places a new workspace: on the named provider (else the default) if it takes
    /// workspaces and the org is on its allowlist. Returns the workspace, its agent token and
    /// whether the provider is the built-in one.
    pub async fn create_workspace(
        &self,
        w: &NewWorkspace<'_>,
    ) -> Result<(Workspace, token::Secret, Provider), ApiError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, "providers").await?;
        let p = match w.provider {
            Some(name) => provider_in(&mut tx, name)
                .await?
                .ok_or_else(|| no_provider(name).on("provider"))?,
            None => default_in(&mut tx)
                .await?
                .ok_or_else(|| ApiError::internal("no default provider"))?,
        };
        if let Some(why) = unavailable(&p) {
            return Err(ApiError::conflict(why).on("provider"));
        }
        if !p.orgs.contains(&w.org.name) {
            return Err(ApiError::forbidden(format!(
                "organization {:?} is not on the allowlist of provider {:?}",
                w.org.name, p.name
            ))
            .on("provider"));
        }
        let id = token::random_id();
        let agent_token = token::generate(token::AGENT_PREFIX);
        let created_at = now();
        let status = if p.built_in { "running" } else { "pending" };
        sqlx::query(
            "INSERT INTO workspaces (id, name, owner_id, provider_id, status, agent_token_hash, created_at, home_edge, org_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(w.name)
        .bind(&w.owner.id)
        .bind(&p.id)
        .bind(status)
        .bind(token::hash(agent_token.expose()))
        .bind(created_at)
        .bind(w.home_edge)
        .bind(&w.org.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let ws = Workspace {
            id,
            name: w.name.to_owned(),
            owner_id: w.owner.id.clone(),
            owner: w.owner.username.clone(),
            provider: p.name.clone(),
            status: status.into(),
            created_at,
            home_edge: w
                .home_edge
                .unwrap_or(relay_core::mesh::PRIMARY_EDGE)
                .to_owned(),
            org: w.org.name.clone(),
            provider_state: None,
            provider_message: None,
        };
        Ok((ws, agent_token, p))
    }
}
