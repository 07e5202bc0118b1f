//! Prometheus metrics (SPEC §8): `/metrics` in the OpenMetrics text format, and `/healthz`.
//!
//! Values are collected at scrape time from what the daemon already keeps (the session and its lease,
//! each worker's state and counters), so the worker code needs no metric handles. The exposition format
//! comes from the `prometheus-client` crate.
//!
//! | series | type | labels |
//! | --- | --- | --- |
//! | `zk_supervise_session_up` | gauge: 1 while a session is established | |
//! | `zk_supervise_lease_remaining_seconds` | gauge: time left until the lease deadline `K` (0 if none) | |
//! | `zk_supervise_worker_leading` | gauge: 1 if this node leads the worker | `worker` |
//! | `zk_supervise_worker_running` | gauge: 1 if the worker's child runs on this node | `worker` |
//! | `zk_supervise_worker_refused` | gauge: 1 if this node stays out of the election (grace period too long for the negotiated session) | `worker` |
//! | `zk_supervise_worker_restarts_total` | counter: restarts of the child on this node | `worker` |
//! | `zk_supervise_worker_handoffs_total` | counter: times this node gave the worker up | `worker` |
//! | `zk_supervise_worker_health_check_failures_total` | counter | `worker` |
//! | `zk_supervise_worker_last_failover_timestamp_seconds` | gauge: when this node last took the worker over (0: never) | `worker` |
//! | `zk_supervise_log_lines_dropped_total` | counter: log lines (the daemon's and its children's) that never reached stderr | |
//!
//! `/healthz` answers 200 `ok` while a session is established and its lease holds, 503 otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::State as AxumState;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::observe::{joined_and_leading, Observer, State};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: String,
}

/// Where [`render`] reads the number of dropped log lines; see [`count_dropped_log_lines`].
type LineCount = Box<dyn Fn() -> u64 + Send + Sync>;
static LOG_LINES_DROPPED: OnceLock<LineCount> = OnceLock::new();

/// Makes `zk_supervise_log_lines_dropped_total` report `count()`: called once by whoever installs the
/// log writer (the binary; the writer drops lines rather than block, see `src/logging.rs`). Until then,
/// and in a daemon run in-process by tests, the series is 0. Later calls change nothing.
pub fn count_dropped_log_lines(count: impl Fn() -> u64 + Send + Sync + 'static) {
    let _ = LOG_LINES_DROPPED.set(Box::new(count));
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    observer: Arc<Observer>,
    stop: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(observer);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "metrics server stopped");
    }
}

async fn metrics(AxumState(observer): AxumState<Arc<Observer>>) -> impl IntoResponse {
    let body = render(&observer);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn healthz(AxumState(observer): AxumState<Arc<Observer>>) -> impl IntoResponse {
    let healthy = observer
        .sessions
        .borrow()
        .as_ref()
        .is_some_and(|s| s.lease.holds_for(std::time::Duration::ZERO));
    if healthy {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no zookeeper session\n")
    }
}

/// The whole exposition, as of now.
#[must_use]
pub fn render(observer: &Observer) -> String {
    let mut registry = Registry::with_prefix("zk_supervise");
    let session_up = Gauge::<i64>::default();
    let lease_remaining = Gauge::<f64, AtomicU64>::default();
    let leading = Family::<WorkerLabel, Gauge>::default();
    let running = Family::<WorkerLabel, Gauge>::default();
    let refused = Family::<WorkerLabel, Gauge>::default();
    let restarts = Family::<WorkerLabel, Counter>::default();
    let handoffs = Family::<WorkerLabel, Counter>::default();
    let health = Family::<WorkerLabel, Counter>::default();
    let failover = Family::<WorkerLabel, Gauge<f64, AtomicU64>>::default();
    let log_dropped = Counter::<u64>::default();
    registry.register(
        "session_up",
        "Whether a ZooKeeper session is established",
        session_up.clone(),
    );
    registry.register(
        "lease_remaining_seconds",
        "Time left until the lease deadline K (children are dead by then unless it is renewed)",
        lease_remaining.clone(),
    );
    registry.register(
        "worker_leading",
        "Whether this node leads the worker",
        leading.clone(),
    );
    registry.register(
        "worker_running",
        "Whether the worker's child runs on this node",
        running.clone(),
    );
    registry.register(
        "worker_refused",
        "Whether this node stays out of the worker's election: its grace period does not fit the negotiated session timeout",
        refused.clone(),
    );
    registry.register(
        "worker_restarts",
        "Restarts of the worker's child on this node",
        restarts.clone(),
    );
    registry.register(
        "worker_handoffs",
        "Times this node gave the worker up",
        handoffs.clone(),
    );
    registry.register(
        "worker_health_check_failures",
        "Failed health checks of the worker on this node",
        health.clone(),
    );
    registry.register(
        "worker_last_failover_timestamp_seconds",
        "When this node last took the worker over (Unix time; 0: never)",
        failover.clone(),
    );
    registry.register(
        "log_lines_dropped",
        "Log lines (the daemon's and its children's output) that never reached stderr: not read fast enough, or gone",
        log_dropped.clone(),
    );
    log_dropped.inc_by(LOG_LINES_DROPPED.get().map_or(0, |count| count()));
    if let Some(session) = observer.sessions.borrow().as_ref() {
        session_up.set(1);
        if let Some(k) = session.lease.deadline() {
            lease_remaining.set(k.remaining().as_secs_f64());
        }
    }
    for (name, shared) in observer.workers() {
        let label = WorkerLabel { worker: name };
        let state = shared.state.borrow().clone();
        let (_, is_leading) = joined_and_leading(&state);
        leading.get_or_create(&label).set(i64::from(is_leading));
        running
            .get_or_create(&label)
            .set(i64::from(matches!(state, State::Running { .. })));
        refused
            .get_or_create(&label)
            .set(i64::from(matches!(state, State::Refused { .. })));
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        restarts
            .get_or_create(&label)
            .inc_by(count(&shared.restarts));
        handoffs
            .get_or_create(&label)
            .inc_by(count(&shared.handoffs));
        health
            .get_or_create(&label)
            .inc_by(count(&shared.health_check_failures));
        #[allow(clippy::cast_precision_loss)]
        failover
            .get_or_create(&label)
            .set(count(&shared.leader_since_ms) as f64 / 1000.0);
    }
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}
