//! The mesh: QUIC links between edges (ALPN `perigee-mesh/1`), so a tunnel that reaches an
//! edge which does not hold the workspace's agent is forwarded to the agent's home edge.
//!
//! One connection per pair of edges, dialed by the edge that needs it and reused by every
//! forwarded stream. The dialer authenticates with a `MESH_HELLO` whose MAC is bound to the
//! connection's TLS session (`relay_core::mesh`); the home edge checks the name against the
//! edges the control plane lists and the MAC against the mesh keys it received. Each
//! forwarded stream starts with `MESH_OPEN(port, session, ticket)`: the home edge verifies
//! the ticket itself, opens the agent-link stream and answers `STATUS`, then bytes flow raw.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use relay_core::mesh::{EdgeConfig, EdgeEntry, MeshKey, EXPORTER_LABEL};
use relay_core::ticket::TicketError;
use relay_core::wire::{self, Frame, StatusCode};
use tokio::sync::Mutex;
use tracing::{debug, info, warn, Instrument as _};

use crate::links::{LinkFault, LinkRecv, LinkSend, OpenError};
use crate::{DropReason, Edge};

const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Mesh state of one edge.
pub(crate) struct Mesh {
    keys: RwLock<Vec<MeshKey>>,
    edges: RwLock<HashMap<String, EdgeEntry>>,
    /// Dialed connections, one slot per peer (the mutex serialises dialing).
    peers: dashmap::DashMap<String, Arc<Mutex<Option<quinn::Connection>>>>,
    /// Accepted connections, by peer name (closed when the peer leaves the list).
    inbound: dashmap::DashMap<String, Vec<quinn::Connection>>,
    endpoint: RwLock<Option<(quinn::Endpoint, quinn::ClientConfig)>>,
    /// Control-plane replicas: this replica's mesh name (`replica:NAME`), the client
    /// configuration for dialing other replicas (any certificate: they prove the mesh key
    /// instead), and where workspaces' agent links are.
    replica: RwLock<Option<String>>,
    replica_client: RwLock<Option<quinn::ClientConfig>>,
    locator: RwLock<Option<Arc<dyn Locator>>>,
}

pub use relay_core::mesh::REPLICA_PREFIX;

/// Finds which control-plane replica holds a workspace's agent link.
pub trait Locator: Send + Sync + 'static {
    /// The mesh name (`replica:NAME`) of the replica holding `workspace_id`'s agent link, if
    /// another replica than this one.
    fn locate<'a>(
        &'a self,
        workspace_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + 'a>>;
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    match l.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn write<T>(l: &RwLock<T>, v: T) {
    match l.write() {
        Ok(mut g) => *g = v,
        Err(p) => *p.into_inner() = v,
    }
}

impl Mesh {
    pub(crate) fn new() -> Self {
        Self {
            keys: RwLock::new(Vec::new()),
            edges: RwLock::new(HashMap::new()),
            peers: dashmap::DashMap::new(),
            inbound: dashmap::DashMap::new(),
            endpoint: RwLock::new(None),
            replica: RwLock::new(None),
            replica_client: RwLock::new(None),
            locator: RwLock::new(None),
        }
    }

    pub(crate) fn configure(&self, cfg: &EdgeConfig) {
        write(&self.keys, cfg.mesh_keys.clone());
        let edges: HashMap<String, EdgeEntry> = cfg
            .edges
            .iter()
            .map(|e| (e.name.clone(), e.clone()))
            .collect();
        // A peer which left the list (a removed satellite) loses its links both ways.
        self.peers.retain(|name, _| edges.contains_key(name));
        self.inbound.retain(|name, conns| {
            let keep = edges.contains_key(name);
            if !keep {
                for c in conns.iter() {
                    c.close(4u32.into(), b"edge removed from the deployment");
                }
            }
            keep
        });
        write(&self.edges, edges);
    }

    pub(crate) fn set_endpoint(&self, ep: quinn::Endpoint, client: quinn::ClientConfig) {
        write(&self.endpoint, Some((ep, client)));
    }

    pub(crate) fn set_replica(
        &self,
        name: String,
        client: quinn::ClientConfig,
        locator: Arc<dyn Locator>,
    ) {
        write(&self.replica, Some(name));
        write(&self.replica_client, Some(client));
        write(&self.locator, Some(locator));
    }

    pub(crate) fn edge(&self, name: &str) -> Option<EdgeEntry> {
        read(&self.edges).get(name).cloned()
    }

    pub(crate) fn edge_names(&self) -> Vec<String> {
        read(&self.edges).keys().cloned().collect()
    }

    /// Round trips of the dialed mesh links that are up, in milliseconds.
    pub(crate) fn rtts_ms(&self) -> HashMap<String, f64> {
        let mut out = HashMap::new();
        for p in self.peers.iter() {
            if let Ok(slot) = p.value().try_lock() {
                if let Some(c) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
                    out.insert(p.key().clone(), c.rtt().as_secs_f64() * 1e3);
                }
            }
        }
        out
    }
}

/// Why a mesh stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The home edge is not in the list the control plane gave.
    #[error("the workspace's home edge {0:?} is not a known edge of this deployment")]
    UnknownEdge(String),
    /// This edge has no mesh endpoint or keys yet.
    #[error("this edge is not part of a mesh (not registered with a control plane)")]
    NotConfigured,
    /// Dialing or authenticating failed.
    #[error("mesh link to {edge}: {cause}")]
    Dial {
        /// Peer.
        edge: String,
        /// Cause.
        #[source]
        cause: DialFault,
    },
}

/// How dialing another edge failed.
#[derive(Debug, thiserror::Error)]
pub enum DialFault {
    /// This edge has no mesh endpoint or keys yet.
    #[error("this edge is not part of a mesh (not registered with a control plane)")]
    NotConfigured,
    /// Replicas only dial replicas.
    #[error("this edge is not a control-plane replica")]
    NotReplica,
    /// The peer's access URL is unusable.
    #[error("access URL {url:?}: {why}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The peer's host did not resolve.
    #[error("resolving {host}: {why}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        why: String,
    },
    /// QUIC could not start the connection.
    #[error("QUIC: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC connection failed.
    #[error("QUIC: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing the hello failed.
    #[error("QUIC stream: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading the peer's answer failed.
    #[error("handshake: {0}")]
    Read(#[from] wire::ReadFrameError),
    /// TLS keying material could not be exported.
    #[error("TLS exporter unavailable")]
    Exporter,
    /// This edge's mesh key is malformed.
    #[error("malformed mesh key")]
    BadKey,
    /// The peer refused the hello.
    #[error("refused: {0}")]
    Refused(String),
    /// The peer answered outside the protocol.
    #[error("unexpected answer {0}")]
    Unexpected(String),
    /// A replica did not prove the mesh key.
    #[error("{0} did not prove the mesh key")]
    NoProof(String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Why an edge's mesh hello was refused.
#[derive(Debug, thiserror::Error)]
pub enum HelloRefused {
    /// The hello stream did not come.
    #[error("no hello stream: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The first frame was not a hello.
    #[error("expected MESH_HELLO, got {0}")]
    NotHello(String),
    /// The hello could not be read.
    #[error("{0}")]
    Read(#[from] wire::ReadFrameError),
    /// The name is not an edge of this deployment.
    #[error("edge {0:?} is not a registered edge of this deployment")]
    UnknownEdge(String),
    /// TLS keying material could not be exported.
    #[error("TLS exporter unavailable")]
    Exporter,
    /// The MAC does not verify.
    #[error("mesh handshake from {0:?} not accepted (bad MAC)")]
    BadMac(String),
}

impl Edge {
    /// Ensures a mesh connection to `peer`, dialing it when needed.
    pub(crate) async fn mesh_conn(&self, peer: &str) -> Result<quinn::Connection, MeshError> {
        let mesh = self.mesh();
        let entry = mesh
            .edge(peer)
            .ok_or_else(|| MeshError::UnknownEdge(peer.to_owned()))?;
        let slot = mesh
            .peers
            .entry(peer.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(None)))
            .clone();
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref() {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let dial_err = |cause: DialFault| MeshError::Dial {
            edge: peer.to_owned(),
            cause,
        };
        let conn = tokio::time::timeout(DIAL_TIMEOUT, self.mesh_dial(&entry))
            .await
            .map_err(|_| dial_err(DialFault::Timeout(DIAL_TIMEOUT)))?
            .map_err(dial_err)?;
        let metrics = self.metrics().clone();
        metrics.mesh_links_open.with_label_values(&["out"]).inc();
        {
            // Keep the RTT gauge fresh while the link lives; count it closed when it ends.
            let conn = conn.clone();
            let peer = peer.to_owned();
            tokio::spawn(async move {
                let gauge = metrics.mesh_rtt_seconds.with_label_values(&[peer.as_str()]);
                loop {
                    gauge.set(conn.rtt().as_secs_f64());
                    tokio::select! {
                        _ = conn.closed() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                metrics.mesh_links_open.with_label_values(&["out"]).dec();
                info!(peer = %peer, reason = %conn.close_reason().map(|r| r.to_string()).unwrap_or_default(), "mesh link down");
            });
        }
        info!(peer = %peer, rtt_ms = conn.rtt().as_secs_f64() * 1e3, "mesh link up");
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn mesh_dial(&self, peer: &EdgeEntry) -> Result<quinn::Connection, DialFault> {
        let mesh = self.mesh();
        let Some((ep, client)) = read(&mesh.endpoint) else {
            return Err(DialFault::NotConfigured);
        };
        // Another replica of the control plane: its certificate may come from its own local
        // CA, so it proves the mesh key instead (below).
        let to_replica = peer.name.starts_with(REPLICA_PREFIX);
        let client = match (to_replica, read(&mesh.replica_client)) {
            (true, Some(c)) => c,
            (true, None) => return Err(DialFault::NotReplica),
            (false, _) => client,
        };
        let me = self.mesh_name();
        let keys = read(&mesh.keys);
        let key = keys.first().ok_or(DialFault::NotConfigured)?;
        let bad_url = |why: String| DialFault::BadUrl {
            url: peer.access_url.clone(),
            why,
        };
        let uri: http::Uri = peer
            .access_url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad_url(e.to_string()))?;
        let host = uri
            .host()
            .ok_or_else(|| bad_url("no host".into()))?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let resolve = |why: String| DialFault::Resolve {
            host: host.clone(),
            why,
        };
        let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| resolve(e.to_string()))?
            .next()
            .ok_or_else(|| resolve("no address".into()))?;
        let conn = ep.connect_with(client, addr, &host)?.await?;
        let mut exported = [0u8; 32];
        conn.export_keying_material(&mut exported, EXPORTER_LABEL, me.as_bytes())
            .map_err(|_| DialFault::Exporter)?;
        let mac = key.mac(&me, &exported).ok_or(DialFault::BadKey)?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let hello = Frame::MeshHello {
            edge: me.clone(),
            mac,
        };
        send.write_all(&hello.to_bytes()).await?;
        let _ = send.finish();
        match wire::read_frame(&mut recv).await {
            Ok(Frame::Status {
                code: StatusCode::Ok,
                ..
            }) if !to_replica => Ok(conn),
            Ok(Frame::Status {
                code: StatusCode::Ok,
                ..
            }) => {
                // The replica's proof: the mesh key over this connection, under its name.
                let (name, mac) = match wire::read_frame(&mut recv).await? {
                    Frame::MeshHello { edge, mac } => (edge, mac),
                    other => {
                        return Err(DialFault::Unexpected(format!(
                            "{other:?} instead of the replica's proof"
                        )))
                    }
                };
                let mut theirs = [0u8; 32];
                conn.export_keying_material(&mut theirs, EXPORTER_LABEL, name.as_bytes())
                    .map_err(|_| DialFault::Exporter)?;
                if name != peer.name || !relay_core::mesh::verify(&keys, &name, &theirs, &mac) {
                    conn.close(3u32.into(), b"replica proof not accepted");
                    return Err(DialFault::NoProof(peer.name.clone()));
                }
                Ok(conn)
            }
            Ok(Frame::Status { message, .. }) => Err(DialFault::Refused(message)),
            Ok(other) => Err(DialFault::Unexpected(format!("{other:?}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// The name this edge presents on the mesh: its own, or `replica:NAME` for a replica of
    /// the control plane.
    pub(crate) fn mesh_name(&self) -> String {
        read(&self.mesh().replica).unwrap_or_else(|| self.name().to_owned())
    }

    /// The replica holding a workspace's agent link, when this is a replica without it.
    pub(crate) async fn locate_replica(&self, workspace_id: &str) -> Option<String> {
        let locator = read(&self.mesh().locator)?;
        locator.locate(workspace_id).await
    }

    /// Where to open a stream to a workspace whose agent link is not on this edge: its home
    /// edge, or, when that is this edge (a replica of the control plane without the link),
    /// the replica that has it. `None`: nowhere (the agent is not connected).
    pub(crate) async fn route_without_link(
        &self,
        workspace_id: &str,
        home: &str,
    ) -> Option<String> {
        if home != self.name() {
            return Some(home.to_owned());
        }
        self.locate_replica(workspace_id).await
    }

    /// Opens a stream to `port` of the workspace whose agent is homed on `home`, through the
    /// mesh; the home edge checks `ticket` again.
    pub(crate) async fn mesh_open(
        &self,
        home: &str,
        ticket: &str,
        port: u16,
        session_id: u64,
        signal: bool,
    ) -> Result<(LinkSend, LinkRecv), OpenError> {
        let conn = self.mesh_conn(home).await.map_err(LinkFault::from)?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(LinkFault::from)?;
        let open = Frame::MeshOpen {
            port,
            session_id,
            ticket: ticket.to_owned(),
            signal,
        };
        send.write_all(&open.to_bytes())
            .await
            .map_err(LinkFault::from)?;
        match wire::read_frame(&mut recv).await {
            Ok(Frame::Status {
                code: StatusCode::Ok,
                ..
            }) => Ok((LinkSend::Quic(send), LinkRecv::Quic(recv))),
            Ok(Frame::Status { code, message }) => Err(match code {
                StatusCode::ConnectRefused => OpenError::Refused(port),
                StatusCode::ConnectFailed => OpenError::Failed { port, message },
                _ => LinkFault::HomeRefused {
                    home: home.to_owned(),
                    message,
                }
                .into(),
            }),
            Ok(other) => Err(LinkFault::Unexpected(format!("{other:?}")).into()),
            Err(e) => Err(LinkFault::from(e).into()),
        }
    }
}

/// Passes a forwarded stream on to replica `peer`, answering for it.
#[allow(clippy::too_many_arguments)]
async fn relay_to_replica(
    edge: &Edge,
    peer: &str,
    ticket: &str,
    port: u16,
    session_id: u64,
    signal: bool,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let reply = |code: StatusCode, message: String| Frame::Status { code, message }.to_bytes();
    match edge.mesh_open(peer, ticket, port, session_id, signal).await {
        Ok((to, from)) => {
            if send
                .write_all(&reply(StatusCode::Ok, String::new()))
                .await
                .is_ok()
            {
                edge.metrics().stream_opened("mesh_relay", signal);
                let _ = crate::links::pump_pair(
                    (LinkRecv::Quic(recv), to),
                    (from, LinkSend::Quic(send)),
                )
                .await;
            }
        }
        Err(e) => {
            let code = match e {
                OpenError::Refused(_) => StatusCode::ConnectRefused,
                OpenError::Failed { .. } => StatusCode::ConnectFailed,
                _ => StatusCode::Unavailable,
            };
            let _ = send.write_all(&reply(code, e.to_string())).await;
            let _ = send.finish();
        }
    }
}

/// Serves an accepted mesh connection: checks the hello, then serves forwarded streams.
pub(crate) async fn serve_peer(edge: Edge, conn: quinn::Connection) {
    let peer = match tokio::time::timeout(HELLO_TIMEOUT, mesh_hello(&edge, &conn)).await {
        Ok(Ok(name)) => name,
        Ok(Err(refused)) => {
            edge.metrics().drop(DropReason::MeshAuth);
            warn!(reason = %refused, "mesh link refused");
            // Give the STATUS a moment to leave before closing.
            tokio::time::sleep(Duration::from_millis(50)).await;
            conn.close(3u32.into(), refused.to_string().as_bytes());
            return;
        }
        Err(_) => {
            edge.metrics().drop(DropReason::MeshAuth);
            conn.close(3u32.into(), b"no mesh hello in time");
            return;
        }
    };
    let m = edge.metrics().clone();
    m.mesh_links_open.with_label_values(&["in"]).inc();
    info!(peer = %peer, "mesh link accepted");
    {
        let mut list = edge.mesh().inbound.entry(peer.clone()).or_default();
        list.retain(|c| c.close_reason().is_none());
        list.push(conn.clone());
    }
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(pair) => pair,
            Err(e) => {
                debug!(peer = %peer, error = %e, "mesh link ended");
                break;
            }
        };
        let edge = edge.clone();
        let span = tracing::info_span!("mesh_stream", peer = %peer);
        let from_replica = peer.starts_with(REPLICA_PREFIX);
        tokio::spawn(
            async move { forwarded_stream(edge, send, recv, from_replica).await }.instrument(span),
        );
    }
    m.mesh_links_open.with_label_values(&["in"]).dec();
}

async fn mesh_hello(edge: &Edge, conn: &quinn::Connection) -> Result<String, HelloRefused> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    let verdict = check_hello(edge, conn, &mut recv).await;
    let status = match &verdict {
        Ok(_) => Frame::Status {
            code: StatusCode::Ok,
            message: String::new(),
        },
        Err(refused) => Frame::Status {
            code: StatusCode::Unauthorized,
            message: refused.to_string(),
        },
    };
    let _ = send.write_all(&status.to_bytes()).await;
    // A replica proves the mesh key too (replicas dial each other without trusting
    // certificates); other dialers stop reading after the status.
    if let (Ok(_), Some(me)) = (&verdict, read(&edge.mesh().replica)) {
        let mut exported = [0u8; 32];
        let key = read(&edge.mesh().keys).into_iter().next();
        if let (Ok(()), Some(key)) = (
            conn.export_keying_material(&mut exported, EXPORTER_LABEL, me.as_bytes()),
            key,
        ) {
            if let Some(mac) = key.mac(&me, &exported) {
                let _ = send
                    .write_all(&Frame::MeshHello { edge: me, mac }.to_bytes())
                    .await;
            }
        }
    }
    let _ = send.finish();
    verdict
}

async fn check_hello(
    edge: &Edge,
    conn: &quinn::Connection,
    recv: &mut quinn::RecvStream,
) -> Result<String, HelloRefused> {
    let (name, mac) = match wire::read_frame(recv).await? {
        Frame::MeshHello { edge, mac } => (edge, mac),
        other => return Err(HelloRefused::NotHello(format!("{other:?}"))),
    };
    let mesh = edge.mesh();
    if name == edge.name() || name == edge.mesh_name() || mesh.edge(&name).is_none() {
        return Err(HelloRefused::UnknownEdge(name));
    }
    let mut exported = [0u8; 32];
    conn.export_keying_material(&mut exported, EXPORTER_LABEL, name.as_bytes())
        .map_err(|_| HelloRefused::Exporter)?;
    if !relay_core::mesh::verify(&read(&mesh.keys), &name, &exported, &mac) {
        return Err(HelloRefused::BadMac(name));
    }
    Ok(name)
}

async fn forwarded_stream(
    edge: Edge,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    from_replica: bool,
) {
    let m = edge.metrics().clone();
    let reply = |code: StatusCode, message: String| Frame::Status { code, message }.to_bytes();
    let (port, session_id, ticket, signal) = match wire::read_frame(&mut recv).await {
        Ok(Frame::MeshOpen {
            port,
            session_id,
            ticket,
            signal,
        }) => (port, session_id, ticket, signal),
        Ok(_) | Err(_) => {
            // From an authenticated edge: the link's side, not a client's.
            m.drop_on(DropReason::BadRequest, crate::Side::Link);
            let _ = send
                .write_all(&reply(StatusCode::BadFrame, "expected MESH_OPEN".into()))
                .await;
            let _ = send.finish();
            return;
        }
    };
    let claims = match edge
        .verifier()
        .verify(&ticket, None, port, relay_core::unix_now())
    {
        Ok(c) => c,
        Err(e) => {
            m.drop(match e {
                TicketError::Expired(_) => DropReason::ExpiredTicket,
                _ => DropReason::BadTicket,
            });
            let _ = send
                .write_all(&reply(StatusCode::Unauthorized, e.to_string()))
                .await;
            let _ = send.finish();
            return;
        }
    };
    let Some(link) = edge.agent(&claims.ws) else {
        // A replica of the control plane without the link passes the stream on to the
        // replica that has it (once: a stream from a replica is never passed again).
        if !from_replica {
            if let Some(peer) = edge.locate_replica(&claims.ws).await {
                relay_to_replica(&edge, &peer, &ticket, port, session_id, signal, send, recv).await;
                return;
            }
        }
        m.drop(DropReason::NoAgent);
        let _ = send
            .write_all(&reply(
                StatusCode::Unavailable,
                "the workspace's agent is not connected to its home edge".into(),
            ))
            .await;
        let _ = send.finish();
        return;
    };
    let span = tracing::info_span!("stream", workspace = %link.workspace_name(), session.id = %claims.sid, stream = session_id, port, path = "mesh_in");
    let (to_ws, from_ws) = match link
        .open(port, session_id, claims.e2e && !signal, signal)
        .instrument(span.clone())
        .await
    {
        Ok(pair) => pair,
        Err(e) => {
            let code = match e {
                OpenError::Refused(_) => StatusCode::ConnectRefused,
                OpenError::Failed { .. } => StatusCode::ConnectFailed,
                _ => StatusCode::Unavailable,
            };
            m.drop(if code == StatusCode::Unavailable {
                DropReason::LinkError
            } else {
                DropReason::PortRefused
            });
            let _ = send.write_all(&reply(code, e.to_string())).await;
            let _ = send.finish();
            return;
        }
    };
    if send
        .write_all(&reply(StatusCode::Ok, String::new()))
        .await
        .is_err()
    {
        return;
    }
    m.stream_opened("mesh_in", signal);
    m.streams_open.inc();
    let result = crate::links::pump_pair(
        (LinkRecv::Quic(recv), to_ws),
        (from_ws, LinkSend::Quic(send)),
    )
    .instrument(span)
    .await;
    m.streams_open.dec();
    if let Err(e) = result {
        debug!(error = %e, "forwarded stream ended with error");
    }
}
