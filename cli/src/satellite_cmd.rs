//! `perigee satellite`: its flags; the role is `satellite::role`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use satellite::role::{Listeners, SatelliteConfig, TlsSource};

/// Arguments of `perigee satellite`.
#[derive(clap::Args)]
pub(crate) struct SatelliteArgs {
    /// The control plane's URL.
    #[arg(long, env = "PERIGEE_PRIMARY_URL")]
    primary_url: String,
    /// The satellite token printed by `perigee satellites create`.
    #[arg(long, env = "PERIGEE_SATELLITE_TOKEN", hide_env_values = true)]
    token: String,
    /// TCP address for HTTPS (tunnels, the forwarded API); the same UDP port carries mesh
    /// links. Port 0 picks a free port (printed when ready).
    #[arg(long, env = "PERIGEE_ADDRESS", default_value = "0.0.0.0:443")]
    address: String,
    /// The URL users reach this satellite at (as given to `perigee satellites create`).
    #[arg(long, env = "PERIGEE_ACCESS_URL")]
    access_url: String,
    /// PEM certificate chain for HTTPS [default: a certificate from a local CA kept in
    /// <data-dir>/tls].
    #[arg(long, env = "PERIGEE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, env = "PERIGEE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where the local CA lives when no certificate is given
    /// [default: $XDG_DATA_HOME/perigee-satellite].
    #[arg(long, env = "PERIGEE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// CA certificate to trust for the control plane and other edges (self-signed
    /// deployments).
    #[arg(long, env = "PERIGEE_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Seconds between heartbeats to the control plane.
    #[arg(long, env = "PERIGEE_HEARTBEAT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat_secs: u64,
    #[command(flatten)]
    turn: crate::turn_cmd::TurnArgs,
    #[command(flatten)]
    http: crate::edge_args::HttpArgs,
}

/// `URL` must be `http(s)://HOST[:PORT]`; returns it without a trailing slash.
pub(crate) fn check_url(flag: &str, url: &str) -> anyhow::Result<String> {
    let url = url.trim_end_matches('/');
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{flag} {url:?} is not a URL"))?;
    anyhow::ensure!(
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some(),
        "{flag} {url:?} must be http(s)://HOST[:PORT]"
    );
    Ok(url.to_owned())
}

pub(crate) async fn run(a: SatelliteArgs) -> anyhow::Result<()> {
    let primary_url = check_url("--primary-url", &a.primary_url)?;
    let access_url = check_url("--access-url", &a.access_url)?;
    let requested: SocketAddr = a.address.parse().with_context(|| {
        format!(
            "--address {:?} is not HOST:PORT (e.g. 0.0.0.0:443)",
            a.address
        )
    })?;
    let roots = relay_core::tls::roots(a.ca_cert.as_deref()).context("loading --ca-cert")?;
    let data_dir = match &a.data_dir {
        Some(d) => d.clone(),
        None => crate::server::default_data_dir()?.with_file_name("perigee-satellite"),
    };
    let turn = a.turn.settings();
    // TURN binds first so that the registration already lists its URLs; it serves once the
    // control plane has handed over the credential secret.
    let (tcp, udp) = satellite::bind_pair(requested).await?;
    let bound_turn = turn.bind(tcp.local_addr()?, &access_url).await?;
    let config = SatelliteConfig {
        primary_url,
        token: a.token.trim().to_owned(),
        access_url: access_url.clone(),
        tls: match (a.tls_cert, a.tls_key) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            _ => TlsSource::LocalCa,
        },
        data_dir,
        roots,
        heartbeat: Duration::from_secs(a.heartbeat_secs),
        turn,
        http: a.http.settings(),
    };
    let listeners = Listeners {
        tcp,
        udp,
        turn: bound_turn,
    };
    let shutdown = crate::server::shutdown_token();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let role = tokio::spawn(satellite::role::run(config, listeners, shutdown, Some(tx)));
    if let Ok(r) = rx.await {
        println!(
            "perigee satellite ready: {access_url} (listening on {}, tcp and udp; edge {:?}, region {:?})",
            r.bound, r.edge, r.region
        );
    }
    Ok(role.await??)
}
