//! The scrape side of the metrics: the state figures read from the node, the P2P layer
//! and `/proc/self` at scrape time, the encoding in either text format, and the HTTP
//! server of `GET /metrics` (the module doc of [`crate::metrics`] says what is counted
//! and how). The event side, which the rest of the node calls, is [`crate::metrics`];
//! this file is the only part of the metrics that depends on [`Node`] and the network,
//! and only `main.rs` uses it, so nothing the node calls depends back on the node.

use crate::metrics;
use crate::node::Node;
use crate::p2p::Network;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Most metrics connections open at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 16;
/// A metrics connection is closed after this long, whatever it is doing.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

// ---------------------------------------------------------------------------------------
// Scrape-time state: the node, the network, the process.

/// Reads the state figures at scrape time from the node and the P2P layer.
struct StateCollector {
    node: Weak<Node>,
    network: Option<Arc<dyn Network>>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCollector").finish_non_exhaustive()
    }
}

fn encode_gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: V,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    m.encode_gauge(&value)
}

/// A 256-bit big-endian unsigned integer as the nearest f64 (rounded per step, so
/// within a relative 1e-15 or so).
fn be_bytes_to_f64(bytes: &[u8; 32]) -> f64 {
    bytes.iter().fold(0.0, |acc, b| acc * 256.0 + f64::from(*b))
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(node) = self.node.upgrade() else { return Ok(()) };
        let e = &mut encoder;
        let chain = node.chain();
        let tip = chain.tip();
        let best_header = chain.best_header().height;
        let orphans = chain.orphan_count();
        let index_backlog = chain.index_backlog();
        drop(chain);
        let mempool = node.mempool();
        let (size, bytes, min_fee) = (mempool.len(), mempool.bytes(), mempool.min_fee().0);
        drop(mempool);
        encode_gauge(e, "chain_height", "Height of the best chain's tip", None, tip.height)?;
        encode_gauge(
            e,
            "chain_best_header_height",
            "Height of the most-work header known (above the tip while syncing)",
            None,
            best_header,
        )?;
        encode_gauge(
            e,
            "chain_total_work",
            "Cumulative proof of work of the best chain (expected hashes), as a float",
            None,
            be_bytes_to_f64(&tip.total_work.to_be_bytes()),
        )?;
        encode_gauge(
            e,
            "chain_tip_timestamp",
            "Timestamp of the tip block (Unix time)",
            Some(&Unit::Seconds),
            tip.timestamp_ms as f64 / 1000.0,
        )?;
        encode_gauge(e, "chain_orphans", "Blocks in the orphan pool (parent unknown)", None, orphans as u64)?;
        encode_gauge(
            e,
            "chain_index_backlog_blocks",
            "Blocks connected or disconnected whose tx and address index entries are not written yet",
            None,
            index_backlog,
        )?;
        encode_gauge(e, "mempool_transfers", "Transfers in the mempool", None, size as u64)?;
        encode_gauge(
            e,
            "mempool",
            "Summed encoded size of the transfers in the mempool",
            Some(&Unit::Bytes),
            bytes as u64,
        )?;
        encode_gauge(
            e,
            "mempool_min_fee",
            "Lowest fee a new transfer must pay to enter the mempool now",
            None,
            min_fee,
        )?;
        encode_gauge(
            e,
            "miner_hashrate",
            "The miner's hash rate (hashes per second; 0 when not mining)",
            None,
            node.hashrate(),
        )?;
        if let Some(network) = &self.network {
            let peers = network.peers();
            let inbound = peers.iter().filter(|p| p.inbound).count() as u64;
            let outbound = peers.len() as u64 - inbound;
            let mut m = e.encode_descriptor(
                "p2p_peers",
                "Peers that completed the handshake, by direction",
                None,
                MetricType::Gauge,
            )?;
            m.encode_family(&[("direction", "inbound")])?.encode_gauge(&inbound)?;
            m.encode_family(&[("direction", "outbound")])?.encode_gauge(&outbound)?;
            encode_gauge(
                e,
                "p2p_sockets",
                "Peer sockets open (peers plus connections still in the handshake)",
                None,
                network.peer_sockets() as u64,
            )?;
            encode_gauge(
                e,
                "p2p_syncing",
                "1 while a peer has shown more work than our tip and we are fetching it",
                None,
                u64::from(network.is_syncing()),
            )?;
        }
        Ok(())
    }
}

/// The process's own figures from `/proc/self`, under the names every Prometheus
/// client library's process collector uses (`process_*`). Emits nothing where there is
/// no `/proc`.
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks per second of `/proc/<pid>/stat`: `USER_HZ`, 100 on every Linux
/// architecture the kernel exports it for.
const USER_HZ: f64 = 100.0;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Ok(()) };
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        // Field n of proc(5) is fields[n - 3].
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            let cpu = (utime + stime) as f64 / USER_HZ;
            let mut m = e.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            m.encode_counter::<NoLabelSet, _, u64>(&cpu, None)?;
        }
        if let Some(start) = field(22).zip(boot_time()).map(|(ticks, boot)| boot + ticks as f64 / USER_HZ) {
            encode_gauge(
                e,
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(&Unit::Seconds),
                start,
            )?;
        }
        if let Some(vsize) = field(23) {
            encode_gauge(e, "process_virtual_memory", "Virtual memory size", Some(&Unit::Bytes), vsize)?;
        }
        if let Some(rss) = status_kib("VmRSS:") {
            encode_gauge(
                e,
                "process_resident_memory",
                "Resident memory size",
                Some(&Unit::Bytes),
                rss * 1024,
            )?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // (The count includes the directory handle that read_dir holds.)
            encode_gauge(e, "process_open_fds", "Open file descriptors", None, dir.count() as u64)?;
        }
        if let Some(max) = max_open_files() {
            encode_gauge(e, "process_max_fds", "Limit on open file descriptors", None, max)?;
        }
        if let Some(threads) = field(20) {
            encode_gauge(e, "process_threads", "OS threads of the process", None, threads)?;
        }
        Ok(())
    }
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|v| v as f64)
}

fn status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn max_open_files() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Rendering and serving.

/// What one scrape encodes: the event metrics, the RPC metrics (once an RPC server
/// started) and the state collectors.
pub struct Scrape {
    state: Registry,
}

impl Scrape {
    /// The figures of `node` and `network` (`None`: no P2P figures).
    pub fn new(node: &Arc<Node>, network: Option<Arc<dyn Network>>) -> Scrape {
        let mut state = Registry::default();
        state
            .sub_registry_with_prefix("cairn")
            .register_collector(Box::new(StateCollector { node: Arc::downgrade(node), network }));
        state.register_collector(Box::new(ProcessCollector));
        Scrape { state }
    }

    /// The OpenMetrics text of every metric.
    pub fn openmetrics(&self) -> Result<String, std::fmt::Error> {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::with_capacity(32 * 1024);
        for events in metrics::event_registries() {
            encode_registry(&mut out, events)?;
        }
        encode_registry(&mut out, &self.state)?;
        encode_eof(&mut out)?;
        Ok(out)
    }
}

/// The OpenMetrics text `prometheus-client` writes, as the Prometheus text format
/// 0.0.4: the two differ, for what this node exports, only in that OpenMetrics names a
/// counter family without its `_total` suffix (its samples have it) and has `# UNIT`
/// and `# EOF` lines. Samples are passed through unchanged.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
        match descriptor.and_then(|(p, rest)| Some((p, rest.split_once(' ')?))) {
            Some((p, (name, tail))) if counters.contains(name) => {
                out.push_str(p);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A running metrics server.
pub struct MetricsServer {
    pub local_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Stops listening and closes every metrics connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Serves `GET /metrics` on `addr` with the figures of `node` and `network`.
pub async fn start(
    addr: SocketAddr,
    node: &Arc<Node>,
    network: Option<Arc<dyn Network>>,
) -> anyhow::Result<MetricsServer> {
    use tokio::sync::Semaphore;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
    let local_addr = listener.local_addr()?;
    let scrape = Arc::new(Scrape::new(node, network));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        let mut stop_rx = stopped.clone();
        loop {
            let accepted = tokio::select! {
                _ = stop_rx.wait_for(|s| *s) => break,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::debug!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
            let scrape = scrape.clone();
            let mut stop_rx = stopped.clone();
            tokio::spawn(async move {
                serve_connection(stream, scrape, &mut stop_rx).await;
                drop(slot);
            });
        }
    });
    Ok(MetricsServer { local_addr, stop, task })
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    scrape: Arc<Scrape>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let service = hyper::service::service_fn(move |req| respond(scrape.clone(), req));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = stop.wait_for(|s| *s) => {}
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
    }
}

type Body = http_body_util::Full<bytes::Bytes>;

fn reply(status: http::StatusCode, content_type: &str, body: String) -> http::Response<Body> {
    let mut r = http::Response::new(Body::from(body));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

async fn respond<B>(
    scrape: Arc<Scrape>,
    req: http::Request<B>,
) -> Result<http::Response<Body>, std::convert::Infallible> {
    use http::StatusCode;
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.uri().path() != "/metrics" {
        return Ok(reply(StatusCode::NOT_FOUND, PLAIN, "not found: the metrics are at /metrics\n".into()));
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET\n".into());
        r.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let openmetrics = req
        .headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("application/openmetrics-text")));
    // The collector locks the chain and mempool: not on an async worker.
    let rendered = tokio::task::spawn_blocking(move || scrape.openmetrics()).await;
    Ok(match rendered {
        Ok(Ok(text)) if openmetrics => reply(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, text),
        Ok(Ok(text)) => reply(StatusCode::OK, TEXT_CONTENT_TYPE, to_text_format(&text)),
        _ => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            PLAIN,
            "internal error: could not encode the metrics\n".into(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_counters_with_their_suffix() {
        let om = "# HELP cairn_x Some.\n# TYPE cairn_x counter\ncairn_x_total 3\n# HELP cairn_y_seconds Y.\n# TYPE cairn_y_seconds gauge\n# UNIT cairn_y_seconds seconds\ncairn_y_seconds 1.5\n# EOF\n";
        assert_eq!(
            to_text_format(om),
            "# HELP cairn_x_total Some.\n# TYPE cairn_x_total counter\ncairn_x_total 3\n# HELP cairn_y_seconds Y.\n# TYPE cairn_y_seconds gauge\ncairn_y_seconds 1.5\n"
        );
    }

    #[test]
    fn total_work_converts_to_a_float() {
        let mut b = [0u8; 32];
        b[31] = 1;
        b[30] = 1;
        assert_eq!(be_bytes_to_f64(&b), 257.0);
        assert_eq!(be_bytes_to_f64(&[0xff; 32]), 2f64.powi(256));
    }
}
