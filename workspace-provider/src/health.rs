//! `--health-address`: `/livez` (the process runs) and `/healthz`
//! (the control plane answered a heartbeat within three intervals), for Kubernetes probes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::Router;

/// When the control plane last answered, and the last problem.
#[derive(Clone)]
pub(crate) struct Health {
    every: Duration,
    inner: Arc<Mutex<(Option<Instant>, String)>>,
}

impl Health {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            inner: Arc::new(Mutex::new((None, "no heartbeat answered yet".into()))),
        }
    }

    /// A heartbeat was answered.
    pub(crate) fn ok(&self) {
        if let Ok(mut g) = self.inner.lock() {
            *g = (Some(Instant::now()), String::new());
        }
    }

    /// A heartbeat failed with `why`.
    pub(crate) fn failed(&self, why: String) {
        if let Ok(mut g) = self.inner.lock() {
            g.1 = why;
        }
    }

    fn verdict(&self) -> (http::StatusCode, String) {
        let Ok(g) = self.inner.lock() else {
            return (http::StatusCode::SERVICE_UNAVAILABLE, "poisoned\n".into());
        };
        match g.0 {
            Some(t) if t.elapsed() <= self.every * 3 => (http::StatusCode::OK, "ok\n".into()),
            Some(t) => (
                http::StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the control plane last answered {} s ago: {}\n",
                    t.elapsed().as_secs(),
                    g.1
                ),
            ),
            None => (http::StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", g.1)),
        }
    }

    /// Serves the probes on `listener` until `shutdown`.
    pub(crate) fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let app = Router::new()
            .route("/livez", get(|| async { "ok\n" }))
            .route(
                "/healthz",
                get(|State(h): State<Health>| async move { h.verdict() }),
            )
            .with_state(self);
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "health endpoint stopped");
            }
        });
    }
}
