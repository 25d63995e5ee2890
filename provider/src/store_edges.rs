//! Persistence of edges: satellites, mesh keys and the rotation of ticket-signing keys.

pub use perigee_api::satellites::{ReportedAgent, Satellite, SatelliteHeartbeat as Heartbeat};
use relay_core::mesh::MeshKey;
use relay_core::ticket::{Signer, CLOCK_SKEW_SECS, MAX_LIFETIME_SECS};
use relay_core::token;
use sqlx::Row as _;

use crate::store::{now, Store};

/// How long a retired mesh key is still accepted (satellites pick up the new key at their
/// next heartbeat).
pub const MESH_KEY_GRACE_SECS: i64 = 300;

/// Most TURN URLs a satellite may report.
pub const MAX_TURN_URLS: usize = 8;

/// TURN URLs go into every ticket for the satellite's users: a few short `stun:`, `turn:`
/// or `turns:` URLs, nothing else.
pub fn check_turn_urls(urls: &[String]) -> Result<(), String> {
    if urls.len() > MAX_TURN_URLS {
        return Err(format!("turn_urls: at most {MAX_TURN_URLS} URLs"));
    }
    for u in urls {
        let ok = ["stun:", "turn:", "turns:"]
            .iter()
            .any(|p| u.starts_with(p))
            && u.len() <= 256
            && u.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(format!(
                "turn_urls: {u:?} is not a stun:, turn: or turns: URL of at most 256 characters"
            ));
        }
    }
    Ok(())
}

const SAT_SELECT: &str =
    "SELECT id, name, region, access_url, devurl_host, created_at, registered_at, \
    last_heartbeat_at, heartbeat_secs, version, reported_error, mesh_rtt_ms, turn_urls \
    FROM satellites";

fn sat_from_row(r: &sqlx::any::AnyRow) -> Result<Satellite, sqlx::Error> {
    let rtt: Option<String> = r.try_get(11)?;
    let turn: Option<String> = r.try_get(12)?;
    Ok(Satellite {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        region: r.try_get(2)?,
        access_url: r.try_get(3)?,
        devurl_host: r.try_get(4)?,
        created_at: r.try_get(5)?,
        registered_at: r.try_get(6)?,
        last_heartbeat_at: r.try_get(7)?,
        heartbeat_secs: r.try_get(8)?,
        version: r.try_get(9)?,
        reported_error: r.try_get(10)?,
        mesh_rtt_ms: rtt
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
        turn_urls: turn
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
    })
}

impl Store {
    /// Creates a satellite; its token is returned once and only its hash kept.
    pub async fn create_satellite(
        &self,
        name: &str,
        region: &str,
        access_url: &str,
        devurl_host: Option<&str>,
    ) -> Result<(Satellite, token::Secret), sqlx::Error> {
        let secret = token::generate(token::SATELLITE_PREFIX);
        let id = token::random_id();
        sqlx::query("INSERT INTO satellites (id, name, region, access_url, devurl_host, token_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&id)
            .bind(name)
            .bind(region)
            .bind(access_url)
            .bind(devurl_host)
            .bind(token::hash(secret.expose()))
            .bind(now())
            .execute(&self.pool)
            .await?;
        let sat = self
            .satellite_by_name(name)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        Ok((sat, secret))
    }

    /// Every satellite, by name.
    pub async fn satellites(&self) -> Result<Vec<Satellite>, sqlx::Error> {
        let rows = sqlx::query(&format!("{SAT_SELECT} ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sat_from_row).collect()
    }

    /// A satellite by name.
    pub async fn satellite_by_name(&self, name: &str) -> Result<Option<Satellite>, sqlx::Error> {
        let row = sqlx::query(&format!("{SAT_SELECT} WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sat_from_row).transpose()
    }

    /// The satellite a token belongs to.
    pub async fn satellite_by_token(&self, secret: &str) -> Result<Option<Satellite>, sqlx::Error> {
        let row = sqlx::query(&format!("{SAT_SELECT} WHERE token_hash = $1"))
            .bind(token::hash(secret))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sat_from_row).transpose()
    }

    /// Records a heartbeat (the first one is the registration).
    pub async fn record_heartbeat(&self, id: &str, hb: &Heartbeat) -> Result<(), sqlx::Error> {
        let now = now();
        let rtt = serde_json::Value::Object(hb.mesh_rtt_ms.clone()).to_string();
        let turn = serde_json::Value::from(hb.turn_urls.clone()).to_string();
        sqlx::query("UPDATE satellites SET registered_at = COALESCE(registered_at, $1), last_heartbeat_at = $2, heartbeat_secs = $3, version = $4, reported_error = $5, mesh_rtt_ms = $6, turn_urls = $7 WHERE id = $8")
            .bind(now)
            .bind(now)
            .bind(i64::try_from(hb.heartbeat_secs).unwrap_or(i64::MAX))
            .bind(&hb.version)
            .bind(&hb.error)
            .bind(rtt)
            .bind(turn)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a satellite (its token stops working at once); false when there is none.
    pub async fn delete_satellite(&self, name: &str) -> Result<bool, sqlx::Error> {
        let r = sqlx::query("DELETE FROM satellites WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records that replica `name` (reachable by other replicas at `url`) is alive.
    pub async fn replica_alive(&self, name: &str, url: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO replicas (name, url, seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET url = excluded.url, seen_at = excluded.seen_at",
        )
        .bind(name)
        .bind(url)
        .bind(crate::store::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replicas seen in the last `within_secs`: (name, url).
    pub async fn live_replicas(
        &self,
        within_secs: i64,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        let rows = sqlx::query("SELECT name, url FROM replicas WHERE seen_at >= $1 ORDER BY name")
            .bind(crate::store::now() - within_secs)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Records that replica `replica` holds the agent link of workspace `id`.
    pub async fn set_link_replica(&self, id: &str, replica: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE workspaces SET link_replica = $1 WHERE id = $2")
            .bind(replica)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The replica holding workspace `id`'s agent link, as last recorded.
    pub async fn link_replica(&self, id: &str) -> Result<Option<String>, sqlx::Error> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT link_replica FROM workspaces WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(v.flatten())
    }

    /// The deployment secret named `name` (base64 of 32 random bytes), made on first use;
    /// replicas racing to make it agree on the first one stored.
    pub async fn secret(&self, name: &str) -> Result<String, sqlx::Error> {
        use base64::Engine as _;
        let fresh = base64::engine::general_purpose::STANDARD.encode(token::random_bytes::<32>());
        sqlx::query(
            "INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .bind(now())
        .execute(&self.pool)
        .await?;
        sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
    }

    /// The mesh keys edges accept: the current key first (created on first use), then retired
    /// keys still within their grace period.
    pub async fn mesh_keys(&self) -> Result<Vec<MeshKey>, sqlx::Error> {
        let cutoff = now() - MESH_KEY_GRACE_SECS;
        let rows = sqlx::query("SELECT id, secret FROM mesh_keys WHERE retired_at IS NULL OR retired_at > $1 ORDER BY retired_at IS NOT NULL, created_at DESC, id DESC")
            .bind(cutoff)
            .fetch_all(&self.pool)
            .await?;
        let keys: Vec<MeshKey> = rows
            .iter()
            .map(|r| {
                Ok(MeshKey {
                    id: r.try_get(0)?,
                    secret: r.try_get(1)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        if keys.is_empty() {
            self.rotate_mesh_key().await?;
            return Box::pin(self.mesh_keys()).await;
        }
        Ok(keys)
    }

    /// Retires the current mesh key and makes a new one current.
    pub async fn rotate_mesh_key(&self) -> Result<(), sqlx::Error> {
        let k = MeshKey::generate();
        let now = now();
        let mut tx = self.pool.begin().await?;
        crate::db::lock(&mut tx, "keys").await?;
        sqlx::query("UPDATE mesh_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO mesh_keys (id, secret, created_at) VALUES ($1, $2, $3)")
            .bind(&k.id)
            .bind(&k.secret)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// Makes a new ticket-signing key current and retires the old one; returns the new key.
    /// Tickets signed by the old key stay valid until they expire.
    pub async fn rotate_signing_key(&self) -> Result<Signer, anyhow::Error> {
        let (signer, pkcs8) = Signer::generate()?;
        let now = now();
        let mut tx = self.pool.begin().await?;
        crate::db::lock(&mut tx, "keys").await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO signing_keys (kid, pkcs8, created_at) VALUES ($1, $2, $3)")
            .bind(signer.kid())
            .bind(pkcs8)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(signer)
    }

    /// Public keys edges must trust: the current signing key and retired keys whose tickets
    /// may still be unexpired.
    pub async fn ticket_public_keys(&self) -> Result<Vec<Vec<u8>>, anyhow::Error> {
        let window = i64::try_from(MAX_LIFETIME_SECS + 2 * CLOCK_SKEW_SECS).unwrap_or(i64::MAX);
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT pkcs8 FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC",
        )
        .bind(now() - window)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|p| Ok(Signer::from_pkcs8(p)?.public_key()))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn satellites_tokens_and_key_rotation() {
        let dir = std::env::temp_dir().join(format!("perigee-edges-{}", token::random_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open_sqlite(&dir.join("db.sqlite")).await.unwrap();
        let (sat, secret) = store
            .create_satellite("eu", "Europe", "https://eu.example.com", None)
            .await
            .unwrap();
        assert!(sat.registered_at.is_none());
        assert!(store
            .create_satellite("eu", "x", "https://x", None)
            .await
            .is_err());
        let found = store.satellite_by_token(secret.expose()).await.unwrap();
        assert_eq!(found.unwrap().name, "eu");
        let hb = Heartbeat {
            access_url: "https://eu.example.com".into(),
            version: "0.1.0".into(),
            heartbeat_secs: 15,
            ..Default::default()
        };
        store.record_heartbeat(&sat.id, &hb).await.unwrap();
        let sat = store.satellite_by_name("eu").await.unwrap().unwrap();
        assert!(sat.registered_at.is_some() && sat.last_heartbeat_at.is_some());
        assert!(store.delete_satellite("eu").await.unwrap());
        assert!(store
            .satellite_by_token(secret.expose())
            .await
            .unwrap()
            .is_none());

        let k1 = store.mesh_keys().await.unwrap();
        assert_eq!(k1.len(), 1);
        store.rotate_mesh_key().await.unwrap();
        let k2 = store.mesh_keys().await.unwrap();
        assert_eq!(k2.len(), 2, "the retired key stays accepted for a while");
        assert_ne!(k2[0], k1[0], "the new key is current");
        assert_eq!(k2[1], k1[0]);

        let s1 = store.signing_key().await.unwrap();
        let s2 = store.rotate_signing_key().await.unwrap();
        assert_eq!(store.signing_key().await.unwrap().kid(), s2.kid());
        let keys = store.ticket_public_keys().await.unwrap();
        assert!(keys.contains(&s1.public_key()) && keys.contains(&s2.public_key()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod both_backends {
    #[tokio::test]
    async fn satellites_and_replicas_on_both_backends() {
        for db in crate::db::test_support::both().await {
            let store = &db.store;
            let (sat, _) = store
                .create_satellite("eu", "Europe", "https://eu.example.com", Some("*.eu.test"))
                .await
                .unwrap();
            assert_eq!(sat.devurl_host.as_deref(), Some("*.eu.test"));
            store
                .replica_alive("a", "https://10.0.0.1:8443")
                .await
                .unwrap();
            store
                .replica_alive("a", "https://10.0.0.2:8443")
                .await
                .unwrap();
            store
                .replica_alive("b", "https://10.0.0.3:8443")
                .await
                .unwrap();
            assert_eq!(
                store.live_replicas(30).await.unwrap(),
                vec![
                    ("a".to_owned(), "https://10.0.0.2:8443".to_owned()),
                    ("b".to_owned(), "https://10.0.0.3:8443".to_owned())
                ]
            );
            assert_eq!(store.link_replica("nope").await.unwrap(), None);
        }
    }
}
