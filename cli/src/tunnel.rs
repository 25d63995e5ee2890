//! `perigee tunnel` and `perigee port-forward`: their flags; tunnels are
//! `perigee_client::tunnel`.

use std::net::SocketAddr;

use anyhow::Context as _;
use perigee_client::{Options, PathChoice};

/// `--path` values.
const PATHS: [&str; 3] = ["auto", "webrtc", "envproxy"];

fn path(s: &str) -> anyhow::Result<PathChoice> {
    s.parse()
        .map_err(|e: String| anyhow::anyhow!("--path: {e}"))
}

#[derive(clap::Args, Clone)]
pub(crate) struct TunnelArgs {
    /// Workspace name.
    workspace: String,
    /// Port inside the workspace (e.g. 22 for its SSH server).
    port: u16,
    /// Print the path taken and setup timings to stderr.
    #[arg(short, long)]
    verbose: bool,
    /// Enter through this region (edge name or region label) instead of the fastest one.
    #[arg(long, env = "PERIGEE_REGION")]
    region: Option<String>,
    /// Which path the stream takes when the provider has Networking v2 on: `auto` races
    /// the edge's envproxy path against a WebRTC connection (direct, or through the edge's
    /// TURN relay) and uses whichever is ready first.
    #[arg(long, default_value = "auto", env = "PERIGEE_PATH", value_parser = PATHS)]
    path: String,
}

#[derive(clap::Args)]
pub(crate) struct PortForwardArgs {
    /// Workspace name.
    workspace: String,
    /// Forward `[ADDRESS:]LOCAL:REMOTE` (repeatable; LOCAL 0 picks a free port; ADDRESS
    /// defaults to 127.0.0.1).
    #[arg(long = "tcp", value_name = "[ADDRESS:]LOCAL:REMOTE", required = true)]
    tcp: Vec<String>,
    /// Enter through this region (edge name or region label) instead of the fastest one.
    #[arg(long, env = "PERIGEE_REGION")]
    region: Option<String>,
    /// Which path connections take when the provider has Networking v2 on: with `auto`,
    /// connections use the envproxy path until the WebRTC connection is up, then WebRTC.
    #[arg(long, default_value = "auto", env = "PERIGEE_PATH", value_parser = PATHS)]
    path: String,
}

pub(crate) async fn tunnel(a: TunnelArgs) -> anyhow::Result<()> {
    let o = Options {
        verbose: a.verbose,
        region: a.region.clone(),
        path: path(&a.path)?,
    };
    let (rd, wr) = crate::stdio::streams();
    perigee_client::tunnel::tunnel(&a.workspace, a.port, &o, rd, wr).await
}

fn parse_spec(spec: &str) -> anyhow::Result<(SocketAddr, u16)> {
    let (local, remote) = spec
        .rsplit_once(':')
        .with_context(|| format!("--tcp {spec:?}: expected [ADDRESS:]LOCAL:REMOTE"))?;
    let remote: u16 = remote
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .with_context(|| format!("--tcp {spec:?}: remote port must be 1-65535"))?;
    let local: SocketAddr = match local.parse::<u16>() {
        Ok(p) => SocketAddr::from(([127, 0, 0, 1], p)),
        Err(_) => local
            .parse()
            .with_context(|| format!("--tcp {spec:?}: local part must be PORT or ADDRESS:PORT"))?,
    };
    Ok((local, remote))
}

pub(crate) async fn port_forward(a: PortForwardArgs) -> anyhow::Result<()> {
    let specs = a
        .tcp
        .iter()
        .map(|s| parse_spec(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let o = Options {
        verbose: false,
        region: a.region.clone(),
        path: path(&a.path)?,
    };
    perigee_client::tunnel::port_forward(&a.workspace, &specs, &o, crate::server::shutdown_signal())
        .await
}
