//! REST API for edges: satellite management (admins), satellite registration and heartbeats
//! (satellite token), the regions list (any user) and key rotation (admins).

use axum::extract::{FromRequestParts, Path, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use http::request::Parts;
pub use perigee_api::satellites::{
    CreateSatellite, DevUrlRedeemRequest, DevUrlRedeemed, Health, KeyRotated, Region,
    SatelliteCreated, SatelliteList, SatelliteView,
};
use relay_core::mesh::{EdgeConfig, EdgeEntry, PRIMARY_EDGE};
use serde::Deserialize;

use crate::request::{Body, Caller};
use crate::store_edges::{Heartbeat, Satellite};
use crate::{ApiError, ControlPlane};

/// Heartbeats missed before a satellite is `unhealthy`.
pub const UNHEALTHY_AFTER_MISSED: i64 = 2;
/// Heartbeats missed before a satellite is `unreachable`.
pub const UNREACHABLE_AFTER_MISSED: i64 = 4;

/// A satellite's health at time `now` (Unix seconds), with the reason when not `ok`.
pub fn health(s: &Satellite, now: i64) -> (Health, Option<String>) {
    let Some(last) = s.last_heartbeat_at else {
        return (
            Health::Unregistered,
            Some("never registered: start it with `perigee satellite` and its token".into()),
        );
    };
    let hb = s.heartbeat_secs.unwrap_or(15).max(1);
    let age = (now - last).max(0);
    if age > UNREACHABLE_AFTER_MISSED * hb {
        return (
            Health::Unreachable,
            Some(format!("no heartbeat for {age} s (expected every {hb} s)")),
        );
    }
    if age > UNHEALTHY_AFTER_MISSED * hb {
        return (
            Health::Unhealthy,
            Some(format!(
                "missed heartbeats: the last was {age} s ago (expected every {hb} s)"
            )),
        );
    }
    match &s.reported_error {
        Some(e) => (Health::Unhealthy, Some(e.clone())),
        None => (Health::Ok, None),
    }
}

pub(crate) fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/api/v2/satellites", get(list).post(create))
        .route("/api/v2/satellites/{name}", delete(remove))
        .route("/api/v2/satellites/register", post(register))
        .route("/api/v2/satellites/heartbeat", post(heartbeat))
        .route("/api/v2/satellites/agent-auth", post(agent_auth))
        .route("/api/v2/satellites/devurl-resolve", post(devurl_resolve))
        .route("/api/v2/satellites/devurl-redeem", post(devurl_redeem))
        .route("/api/v2/regions", get(regions))
        .route("/api/v2/keys/rotate", post(rotate_keys))
        .with_state(cp)
}

fn require_admin(c: &Caller) -> Result<(), ApiError> {
    c.require(&["admin"], "manage satellites and keys")
}

fn sat_view(s: Satellite, now: i64) -> SatelliteView {
    let (health, error) = health(&s, now);
    let version_mismatch = s
        .version
        .as_deref()
        .is_some_and(|v| v != env!("CARGO_PKG_VERSION"));
    SatelliteView {
        satellite: s,
        health,
        error,
        version_mismatch,
    }
}

async fn list(
    State(cp): State<ControlPlane>,
    caller: Caller,
) -> Result<Json<SatelliteList>, ApiError> {
    require_admin(&caller)?;
    let now = crate::store::now();
    let sats: Vec<SatelliteView> = cp
        .store
        .satellites()
        .await?
        .into_iter()
        .map(|s| sat_view(s, now))
        .collect();
    Ok(Json(SatelliteList {
        control_plane_version: env!("CARGO_PKG_VERSION").to_owned(),
        satellites: sats,
    }))
}

fn scheme(url: &str) -> Option<&str> {
    url.split_once("://").map(|(s, _)| s)
}

/// Checks a satellite's access URL against the control plane's: absolute, same scheme.
fn check_access_url(cp: &ControlPlane, url: &str) -> Result<(), ApiError> {
    let parsed: http::Uri = url
        .parse()
        .map_err(|_| ApiError::bad_request(format!("access URL {url:?} is not a URL")))?;
    let ok_shape = matches!(parsed.scheme_str(), Some("http" | "https"))
        && parsed.host().is_some()
        && parsed.path().trim_end_matches('/').is_empty();
    if !ok_shape {
        return Err(ApiError::bad_request(format!(
            "access URL {url:?} must be http(s)://HOST[:PORT] with no path"
        )));
    }
    if scheme(url) != scheme(&cp.primary.access_url) {
        return Err(ApiError::bad_request(format!(
            "access URL {url:?} has another scheme than the control plane's ({}): users and edges would mix TLS and plain HTTP",
            cp.primary.access_url
        )));
    }
    Ok(())
}

async fn create(
    State(cp): State<ControlPlane>,
    caller: Caller,
    Body(req): Body<CreateSatellite>,
) -> Result<Json<SatelliteCreated>, ApiError> {
    require_admin(&caller)?;
    crate::request::validate_label("satellite name", &req.name).map_err(|e| e.on("name"))?;
    if req.name == PRIMARY_EDGE {
        return Err(ApiError::bad_request(format!(
            "{PRIMARY_EDGE:?} is the control plane's own edge; choose another name"
        )));
    }
    if req.region.is_empty() || req.region.len() > 64 {
        return Err(ApiError::bad_request("region must be 1-64 characters"));
    }
    let access_url = req.access_url.trim_end_matches('/').to_owned();
    check_access_url(&cp, &access_url)?;
    if let Some(h) = &req.devurl_host {
        relay_core::devurl::check_wildcard(h).map_err(ApiError::bad_request)?;
    }
    if cp.store.satellite_by_name(&req.name).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "a satellite named {:?} exists (remove it with `perigee satellites rm`)",
            req.name
        )));
    }
    let (sat, token) = cp
        .store
        .create_satellite(
            &req.name,
            &req.region,
            &access_url,
            req.devurl_host.as_deref(),
        )
        .await?;
    let command = format!(
        "perigee satellite --primary-url {} --token {} --address 0.0.0.0:443 --access-url {}",
        cp.primary.access_url,
        token.expose(),
        access_url
    );
    Ok(Json(SatelliteCreated {
        satellite: sat_view(sat, crate::store::now()),
        token: token.expose().to_owned(),
        command,
    }))
}

async fn remove(
    State(cp): State<ControlPlane>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&caller)?;
    if !cp.store.delete_satellite(&name).await? {
        return Err(ApiError::not_found(format!(
            "no satellite named {name:?} (see `perigee satellites ls`)"
        )));
    }
    // The removed satellite knew the mesh key: make a new one current. Other satellites get it
    // with their next heartbeat; the old key stays accepted for a grace period.
    cp.store.rotate_mesh_key().await?;
    cp.refresh_edges().await?;
    Ok(Json(serde_json::json!({ "deleted": name })))
}

/// The satellite calling, from its token.
struct SatelliteCaller(Satellite);

impl FromRequestParts<ControlPlane> for SatelliteCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, cp: &ControlPlane) -> Result<Self, ApiError> {
        let token = crate::request::bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("missing satellite token (Authorization: Bearer)")
        })?;
        match cp.store.satellite_by_token(token.trim()).await? {
            Some(s) => Ok(SatelliteCaller(s)),
            None => Err(ApiError::unauthorized(
                "satellite token not recognised: the satellite was removed (`perigee satellites rm`), or the token is for another deployment",
            )),
        }
    }
}

async fn register(
    State(cp): State<ControlPlane>,
    SatelliteCaller(sat): SatelliteCaller,
    Body(hb): Body<Heartbeat>,
) -> Result<Json<EdgeConfig>, ApiError> {
    let url = hb.access_url.trim_end_matches('/');
    if url != sat.access_url {
        return Err(ApiError::conflict(format!(
            "this token belongs to satellite {:?} at {}, not to a satellite at {url}",
            sat.name, sat.access_url
        )));
    }
    check_access_url(&cp, url)?;
    crate::store_edges::check_turn_urls(&hb.turn_urls).map_err(ApiError::bad_request)?;
    let first = sat.last_heartbeat_at.is_none();
    cp.store.record_heartbeat(&sat.id, &hb).await?;
    note_agents(&cp, &sat, &hb);
    tracing::info!(satellite = %sat.name, version = %hb.version, first, "satellite registered");
    // The built-in edge must know the satellite before it dials in over the mesh.
    cp.refresh_edges().await?;
    Ok(Json(cp.edge_config(&sat.name, &sat.region).await?))
}

async fn heartbeat(
    State(cp): State<ControlPlane>,
    SatelliteCaller(sat): SatelliteCaller,
    Body(hb): Body<Heartbeat>,
) -> Result<Json<EdgeConfig>, ApiError> {
    if hb.access_url.trim_end_matches('/') != sat.access_url {
        return Err(ApiError::conflict(format!(
            "this token belongs to satellite {:?} at {}",
            sat.name, sat.access_url
        )));
    }
    crate::store_edges::check_turn_urls(&hb.turn_urls).map_err(ApiError::bad_request)?;
    cp.store.record_heartbeat(&sat.id, &hb).await?;
    note_agents(&cp, &sat, &hb);
    Ok(Json(cp.edge_config(&sat.name, &sat.region).await?))
}

fn note_agents(cp: &ControlPlane, sat: &Satellite, hb: &Heartbeat) {
    let agents = hb
        .agents
        .iter()
        .map(|a| {
            (
                a.workspace_id.clone(),
                crate::AgentStatus {
                    transport: a.transport.clone(),
                    uptime_secs: a.uptime_secs,
                },
            )
        })
        .collect();
    // A report holds until two heartbeats are missed (the satellite is then unhealthy).
    let valid = std::time::Duration::from_secs(
        hb.heartbeat_secs.max(1) * UNHEALTHY_AFTER_MISSED.unsigned_abs(),
    );
    cp.note_remote_agents(&sat.name, agents, valid);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentAuthRequest {
    token: String,
}

/// A satellite asks who an agent token belongs to (an agent dialed it); the workspace's home
/// edge becomes that satellite.
async fn agent_auth(
    State(cp): State<ControlPlane>,
    SatelliteCaller(sat): SatelliteCaller,
    Body(req): Body<AgentAuthRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(ws) = cp.store.workspace_by_agent_token(&req.token).await? else {
        return Err(ApiError::unauthorized("agent token not accepted"));
    };
    cp.store.set_home_edge(&ws.id, &sat.name).await?;
    Ok(Json(serde_json::json!({
        "workspace_id": ws.id,
        "workspace_name": ws.name,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevUrlResolveRequest {
    host: String,
    #[serde(default)]
    viewer: Option<String>,
}

/// The satellite's dev URL base, or a refusal when it has none.
fn satellite_devurl_base(sat: &Satellite) -> Result<String, ApiError> {
    sat.devurl_host
        .as_deref()
        .map(relay_core::devurl::base)
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "satellite {:?} has no dev URL host (`perigee satellites create --devurl-host`)",
                sat.name
            ))
        })
}

/// A satellite asks who may open one of its dev URL hosts (the sharing rules live here).
async fn devurl_resolve(
    State(cp): State<ControlPlane>,
    SatelliteCaller(sat): SatelliteCaller,
    Body(req): Body<DevUrlResolveRequest>,
) -> Result<Json<relay_core::devurl::Decision>, ApiError> {
    let base = satellite_devurl_base(&sat)?;
    let target = match relay_core::devurl::parse(&req.host, &base) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(ApiError::bad_request(format!(
                "{:?} is not under this satellite's dev URL host",
                req.host
            )))
        }
        Err(e) => return Err(ApiError::bad_request(e.to_string())),
    };
    Ok(Json(
        cp.resolve_devurl(&target, req.viewer.as_deref()).await?,
    ))
}

/// A satellite exchanges a browser's one-time sign-in code (bound to one of its hosts).
async fn devurl_redeem(
    State(cp): State<ControlPlane>,
    SatelliteCaller(sat): SatelliteCaller,
    Body(req): Body<DevUrlRedeemRequest>,
) -> Result<Json<DevUrlRedeemed>, ApiError> {
    let base = satellite_devurl_base(&sat)?;
    if !matches!(relay_core::devurl::parse(&req.host, &base), Ok(Some(_))) {
        return Err(ApiError::bad_request(format!(
            "{:?} is not one of this satellite's dev URL hosts",
            req.host
        )));
    }
    let user = cp.redeem_devurl_code(&req.code, &req.host).await?;
    Ok(Json(DevUrlRedeemed { user_id: user }))
}

/// How long a replica counts as alive after it last reported (it reports every few seconds).
pub const REPLICA_LIVE_SECS: i64 = 30;

async fn regions(
    State(cp): State<ControlPlane>,
    Caller(_): Caller,
) -> Result<Json<Vec<Region>>, ApiError> {
    Ok(Json(
        cp.healthy_edges()
            .await?
            .into_iter()
            .map(|e| Region {
                latency_check_url: format!("{}/latency-check", e.access_url),
                primary: e.name == PRIMARY_EDGE,
                name: e.name,
                region: e.region,
                access_url: e.access_url,
                devurl_host: e.devurl_host,
                turn_urls: e.turn_urls,
            })
            .collect(),
    ))
}

async fn rotate_keys(
    State(cp): State<ControlPlane>,
    caller: Caller,
) -> Result<Json<KeyRotated>, ApiError> {
    require_admin(&caller)?;
    let signer = cp
        .store
        .rotate_signing_key()
        .await
        .map_err(ApiError::internal)?;
    let kid = signer.kid().to_owned();
    cp.set_signer(signer);
    cp.refresh_edges().await?;
    Ok(Json(KeyRotated {
        kid,
        note: "new tickets are signed with the new key; satellites receive it with their next heartbeat; tickets signed with the old key stay valid until they expire".to_owned(),
    }))
}

impl ControlPlane {
    /// The primary edge and every `ok` satellite (what users may enter through).
    pub async fn healthy_edges(&self) -> Result<Vec<EdgeEntry>, ApiError> {
        self.edges(true).await
    }

    /// The primary edge and every satellite that registered (`healthy`: only `ok` ones).
    pub(crate) async fn edges(&self, healthy: bool) -> Result<Vec<EdgeEntry>, ApiError> {
        let now = crate::store::now();
        let mut out = vec![self.primary.clone()];
        for s in self.store.satellites().await? {
            let keep = if healthy {
                health(&s, now).0 == Health::Ok
            } else {
                s.registered_at.is_some()
            };
            if keep {
                out.push(EdgeEntry {
                    name: s.name,
                    region: s.region,
                    access_url: s.access_url,
                    devurl_host: s.devurl_host,
                    turn_urls: s.turn_urls,
                });
            }
        }
        Ok(out)
    }

    /// The configuration an edge named `name` receives.
    pub async fn edge_config(&self, name: &str, region: &str) -> Result<EdgeConfig, ApiError> {
        let edges = self.edges(false).await?;
        let devurl_cookie_key = match edges.iter().find(|e| e.name == name) {
            Some(e) if e.devurl_host.is_some() && name != PRIMARY_EDGE => Some(
                self.store
                    .secret(&format!("devurl-cookie:{name}"))
                    .await
                    .map_err(ApiError::internal)?,
            ),
            _ => None,
        };
        let ticket_keys = self
            .store
            .ticket_public_keys()
            .await
            .map_err(ApiError::internal)?
            .iter()
            .map(|k| relay_core::mesh::encode_public_key(k))
            .collect();
        Ok(EdgeConfig {
            edge: name.to_owned(),
            region: region.to_owned(),
            ticket_keys,
            mesh_keys: self.store.mesh_keys().await?,
            // Every registered edge: an edge that misses a heartbeat must still be able to
            // redial the mesh.
            edges,
            control_plane_version: env!("CARGO_PKG_VERSION").to_owned(),
            turn_secret: self
                .turn_secret
                .as_ref()
                .map(|s| String::from_utf8_lossy(s).into_owned()),
            revoked_tokens: self
                .store
                .recently_revoked_tokens(crate::api::TICKET_LIFETIME_SECS)
                .await?,
            devurl_cookie_key,
        })
    }

    /// Hands the built-in edge its current configuration (keys and sibling edges).
    pub async fn refresh_edges(&self) -> Result<(), ApiError> {
        let mut cfg = self
            .edge_config(&self.primary.name, &self.primary.region)
            .await?;
        // The other replicas, for this built-in edge alone (satellites reach whichever
        // replica the access URL gives them, which passes streams on).
        if let Some(me) = &self.replica {
            for (name, url) in self.store.live_replicas(REPLICA_LIVE_SECS).await? {
                if &name != me {
                    cfg.edges.push(EdgeEntry {
                        name: format!("{}{name}", relay_core::mesh::REPLICA_PREFIX),
                        region: self.primary.region.clone(),
                        access_url: url,
                        devurl_host: None,
                        turn_urls: Vec::new(),
                    });
                }
            }
        }
        self.hooks.configure(&cfg);
        Ok(())
    }
}
