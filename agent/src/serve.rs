//! Connecting a stream to a workspace port.

use std::time::Duration;

use relay_core::wire::StatusCode;
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `127.0.0.1:port`, mapping failures to a link status and a message.
pub(crate) async fn connect_port(port: u16) -> Result<TcpStream, (StatusCode, String)> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err((
            StatusCode::ConnectRefused,
            format!("nothing is listening on port {port}"),
        )),
        Ok(Err(e)) => Err((
            StatusCode::ConnectFailed,
            format!("connect to port {port}: {e}"),
        )),
        Err(_) => Err((
            StatusCode::ConnectFailed,
            format!("connect to port {port} timed out"),
        )),
    }
}
