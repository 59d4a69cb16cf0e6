//! The tokio driver: sockets in, [`Protocol`] inputs out, and back.
//!
//! One TCP listener, one dial task per outbound attempt, and for every connection one
//! task that owns its socket and runs a reader (bytes → frames → [`Input::Received`])
//! and a writer fed by a bounded queue; when either ends, or the protocol drops the
//! peer, the task closes the socket (see [`run_connection`]). The reader checks the
//! signatures of the transfers it decoded from one read in parallel on the rayon pool
//! ([`crate::node::verify_on_cores`]) and queues them checked ([`Input::Transfer`]), so
//! the protocol thread does not check them one by one.
//! The protocol itself runs on a dedicated thread (it calls into the chain, which may
//! verify signatures and write to RocksDB), fed by one bounded input channel. A peer
//! whose send queue is full is dropped: a slow reader can stall only itself. Decoded
//! messages waiting for the protocol thread hold a share of a byte budget
//! ([`INPUT_QUEUE_BYTES`], counted in wire bytes) from the moment they are queued until
//! the protocol has handled them; a reader that finds the budget spent waits, and so
//! stops reading its socket, so queued input stays bounded in bytes as well as in
//! messages however many peers send maximum-size blocks at once. (The messages of the
//! one read a reader is working on, which its buffer bounds, are not counted.)
//!
//! A block the node asked a peer for (its hash was in a `getdata` the driver sent that
//! peer) is checked by the peer's reader before it is queued: proof of work, structure,
//! txids, merkle root and every signature the signature cache does not vouch for, on
//! the rayon pool ([`check_block_on_cores`]), and queued checked
//! ([`Input::CheckedBlock`]); the protocol thread then only stores, applies and commits
//! it ([`Node::submit_checked_block`]), so during a sync the checks of the next blocks
//! run while the protocol thread commits this one. Blocks checked ahead are bounded by
//! the requests (the download window) and by the input byte budget, whose share the
//! reader takes before the check. A block nobody asked for goes to the protocol
//! unchecked, which punishes its sender without checking it.
//!
//! Blocks are served from the store by the writers, not by the protocol thread: the
//! protocol answers `getdata` (and pushes compact blocks) with [`Output::ServeBlock`],
//! which queues the block's hash to the peer's writer; when its turn comes the writer
//! reads the stored bytes on the blocking pool ([`serve_block`]) and writes them as they
//! are, or the block's compact form, encoded once per block and kept for the recent
//! blocks ([`COMPACT_FRAMES`]), so every peer gets the same bytes.

use super::addrbook::Snapshot;
use super::protocol::compact::compact_of;
use super::protocol::{Config, DisconnectReason, Input, Output, Protocol, Serve};
use super::wire::{command, FrameCodec, InvItem, Message, HEADER_BYTES, MAX_PAYLOAD};
use super::Network;
use super::{P2pConfig, PeerId};
use crate::chain::{BlockChecker, CheckedBlock};
use crate::failstop::lock_or_stop;
use crate::node::{Node, NodeEvent, Origin};
use anyhow::Context;
use cairn_core::block::Block;
use cairn_core::transaction::DecodedKeys;
use cairn_core::{BlockHash, SignedTransfer};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};

/// Frames queued to one peer.
const SEND_QUEUE_FRAMES: usize = 1024;
/// Bytes queued to one peer before it counts as too slow.
const SEND_QUEUE_BYTES: usize = 4 * MAX_PAYLOAD;
/// Inputs waiting for the protocol thread.
const INPUT_QUEUE: usize = 4096;
/// Wire bytes of received messages decoded but not yet handled by the protocol thread.
const INPUT_QUEUE_BYTES: usize = 32 << 20;
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(200);
/// TCP keepalive on peer sockets: the first probe after this long without traffic...
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// ...then one every this long...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// ...and the connection is dead after this many unanswered.
const KEEPALIVE_PROBES: u32 = 3;
/// How long frames the protocol queued before it dropped a peer may still take to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// Reads of blocks to serve in progress at once, over all peers.
const SERVE_READS: usize = 4;
/// Blocks whose encoded compact form is kept, to send every peer the same bytes.
const COMPACT_FRAMES: usize = 8;
/// Hashes of the blocks last asked of one peer that its reader remembers, to check
/// them when they come ([`Asked`]); well above the blocks in flight to a peer.
const ASKED_BLOCKS: usize = 1024;

/// What a peer's writer sends next.
enum Outgoing {
    /// A frame, encoded.
    Frame(Vec<u8>),
    /// A stored block, read (and framed) when its turn comes: [`serve_block`]. It holds
    /// no block bytes while it waits in the queue, and counts none toward
    /// [`SEND_QUEUE_BYTES`]; a writer holds one block at a time.
    Block(BlockHash, Serve),
}

/// The bytes of one frame: its own, or shared with other peers (a compact block).
enum FrameBytes {
    Own(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl FrameBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            FrameBytes::Own(v) => v.as_slice(),
            FrameBytes::Shared(a) => &a[..],
        }
    }
}

struct PeerHandle {
    frames: mpsc::Sender<Outgoing>,
    queued: Arc<AtomicUsize>,
    stop: Arc<Notify>,
    /// Shared with the peer's reader.
    asked: Arc<Asked>,
}

/// The blocks last asked of a peer (in `getdata`s the driver sent it), oldest first, at
/// most [`ASKED_BLOCKS`]: its reader checks those when they come. A hash leaves when its
/// block comes, or when newer requests push it out (a request that moved to another
/// peer or got `notfound`).
#[derive(Default)]
struct Asked(Mutex<VecDeque<BlockHash>>);

impl Asked {
    fn note(&self, items: &[InvItem]) {
        let mut asked = lock_or_stop(&self.0, "P2P asked blocks");
        for item in items {
            if let InvItem::Block(hash) = item {
                asked.push_back(*hash);
                if asked.len() > ASKED_BLOCKS {
                    asked.pop_front();
                }
            }
        }
    }

    /// True (once) if `hash` was asked for.
    fn take(&self, hash: &BlockHash) -> bool {
        let mut asked = lock_or_stop(&self.0, "P2P asked blocks");
        match asked.iter().position(|h| h == hash) {
            Some(i) => {
                asked.remove(i);
                true
            }
            None => false,
        }
    }
}

/// An input for the protocol thread, with the byte-budget share a received message
/// holds until it is handled.
type Queued = (Input, Option<OwnedSemaphorePermit>);

struct Shared {
    inputs: mpsc::Sender<Queued>,
    input_bytes: Arc<Semaphore>,
    peers: Mutex<Vec<cairn_api::PeerInfo>>,
    /// For `net_getInfo`, refreshed with `peers`.
    info: Mutex<cairn_api::NetInfo>,
    syncing: AtomicBool,
    handles: Mutex<HashMap<PeerId, PeerHandle>>,
    next_id: AtomicU64,
    codec: FrameCodec,
    /// Mirror of the protocol's blocked set, so RPC can answer whether a call changed
    /// anything. Updated under its lock together with the input it sends, so the two
    /// never disagree about order.
    blocked: Mutex<BTreeSet<SocketAddr>>,
    /// The chain id transfers are verified against.
    chain_id: u32,
    /// Peer sockets open now (see [`OpenSocket`]).
    sockets: AtomicUsize,
    /// Addresses in the protocol's address book, for the seeding task.
    known_addrs: AtomicUsize,
    /// The protocol's pong timeout: the longest one frame may take to write, and the
    /// sockets' `TCP_USER_TIMEOUT`.
    write_timeout: Duration,
    /// Set by [`Running::shutdown`]: every task (listener, dials, connections, ticker,
    /// relay) ends, closing its socket, and the protocol thread stops after the input
    /// it is handling.
    closing: watch::Sender<bool>,
    /// Where writers read the blocks they serve. Weak: the protocol thread's reference
    /// is the P2P layer's hold on the node, and it goes at shutdown.
    node: Weak<Node>,
    /// A permit per block read in progress ([`SERVE_READS`]); shutdown takes them all,
    /// so no read still holds the node once it returns.
    serve_reads: Arc<Semaphore>,
    /// The encoded `cmpctblock` frames of the last [`COMPACT_FRAMES`] blocks served
    /// compact, oldest first.
    compact_frames: Mutex<VecDeque<(BlockHash, Arc<[u8]>)>>,
    /// Checks the blocks asked for, in the readers (see the module's docs).
    checker: BlockChecker,
}

impl Shared {
    /// Queues an input, waiting for room; false once the protocol thread is gone.
    async fn send(&self, input: Input) -> bool {
        self.inputs.send((input, None)).await.is_ok()
    }

    /// Queues an input if there is room (the input is dropped otherwise).
    fn try_send(&self, input: Input) -> Result<(), mpsc::error::TrySendError<()>> {
        use mpsc::error::TrySendError;
        self.inputs.try_send((input, None)).map_err(|e| match e {
            TrySendError::Full(_) => TrySendError::Full(()),
            TrySendError::Closed(_) => TrySendError::Closed(()),
        })
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, PeerHandle>> {
        lock_or_stop(&self.handles, "P2P connection handles")
    }

    /// The compact form of `hash` encoded earlier, if still kept.
    fn compact_frame(&self, hash: &BlockHash) -> Option<Arc<[u8]>> {
        let frames = lock_or_stop(&self.compact_frames, "P2P compact frames");
        frames.iter().find(|(h, _)| h == hash).map(|(_, f)| f.clone())
    }

    /// Keeps `frame` as the compact form of `hash` and returns it; if another writer
    /// kept one meanwhile, returns that one instead (one compact form per block).
    fn keep_compact_frame(&self, hash: BlockHash, frame: Arc<[u8]>) -> Arc<[u8]> {
        let mut frames = lock_or_stop(&self.compact_frames, "P2P compact frames");
        if let Some((_, f)) = frames.iter().find(|(h, _)| *h == hash) {
            return f.clone();
        }
        frames.push_back((hash, frame.clone()));
        if frames.len() > COMPACT_FRAMES {
            frames.pop_front();
        }
        frame
    }

    fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Resolves once shutdown has begun.
    fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}

struct NetHandle(Arc<Shared>);

impl Network for NetHandle {
    fn peers(&self) -> Vec<cairn_api::PeerInfo> {
        lock_or_stop(&self.0.peers, "P2P peer list").clone()
    }
    fn add_peer(&self, addr: SocketAddr) -> Result<(), String> {
        let blocked = lock_or_stop(&self.0.blocked, "P2P blocked set");
        if blocked.contains(&addr) {
            return Err(format!("{addr} is blocked: call net_unblockPeer first"));
        }
        self.0.try_send(Input::AddPeer(addr)).map_err(|e| format!("network busy: {e}"))
    }
    fn is_syncing(&self) -> bool {
        self.0.syncing.load(Ordering::Relaxed)
    }
    fn peer_sockets(&self) -> usize {
        self.0.sockets.load(Ordering::Relaxed)
    }
    fn info(&self) -> cairn_api::NetInfo {
        lock_or_stop(&self.0.info, "P2P network info").clone()
    }
    fn block_peer(&self, addr: SocketAddr) -> Result<bool, String> {
        let mut blocked = lock_or_stop(&self.0.blocked, "P2P blocked set");
        self.0.try_send(Input::BlockPeer(addr)).map_err(|e| format!("network busy: {e}"))?;
        Ok(blocked.insert(addr))
    }
    fn unblock_peer(&self, addr: SocketAddr) -> Result<bool, String> {
        let mut blocked = lock_or_stop(&self.0.blocked, "P2P blocked set");
        self.0.try_send(Input::UnblockPeer(addr)).map_err(|e| format!("network busy: {e}"))?;
        Ok(blocked.remove(&addr))
    }
}

/// The running P2P layer: the protocol thread and the tasks, until [`Running::shutdown`].
pub(super) struct Running {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub(super) local_addr: SocketAddr,
}

impl Running {
    pub(super) fn network(&self) -> Arc<dyn Network> {
        Arc::new(NetHandle(self.shared.clone()))
    }

    /// Begins the shutdown: the tasks end (closing every socket) and the protocol thread
    /// stops after the input it is handling.
    fn begin_shutdown(&self) {
        self.shared.closing.send_replace(true);
        // Wakes the thread if it waits for input (if the queue is full, it is busy and
        // sees the flag after its current input).
        let _ = self.shared.try_send(Input::Tick);
    }

    /// Stops the tasks and the protocol thread, which saves the address book and bans
    /// and drops the protocol (and with it its reference to the node). Returns once the
    /// thread has ended.
    pub(super) async fn shutdown(mut self) {
        self.begin_shutdown();
        if let Some(thread) = self.thread.take() {
            // Joined off the async workers: the thread may be in the middle of a block.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // Reads of blocks to serve still running hold the node: wait for them (new
        // ones see the closing flag and do not start).
        let _ = self.shared.serve_reads.acquire_many(SERVE_READS as u32).await;
    }
}

impl Drop for Running {
    /// Without [`Running::shutdown`], dropping still stops everything, without waiting.
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.begin_shutdown();
        }
    }
}

pub(super) async fn start(node: Arc<Node>, config: P2pConfig) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding P2P address {}", config.listen))?;
    let local = listener.local_addr()?;
    let genesis_hash = node.genesis().hash();
    let codec = FrameCodec::for_genesis(&genesis_hash);
    let (inputs, rx) = mpsc::channel(INPUT_QUEUE);
    let pconfig = Config {
        listen_port: local.port(),
        progress_interval_ms: config.progress_interval_ms,
        external_addrs: config.external_addrs.clone(),
        connect_only: config.connect_only,
        ..Config::default()
    }
    .with_max_peers(config.max_peers);
    let shared = Arc::new(Shared {
        inputs,
        input_bytes: Arc::new(Semaphore::new(INPUT_QUEUE_BYTES)),
        peers: Mutex::new(Vec::new()),
        info: Mutex::new(cairn_api::NetInfo::default()),
        syncing: AtomicBool::new(false),
        handles: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        codec,
        blocked: Mutex::new(BTreeSet::new()),
        chain_id: node.genesis().params.chain_id,
        sockets: AtomicUsize::new(0),
        known_addrs: AtomicUsize::new(0),
        write_timeout: Duration::from_millis(pconfig.ping_timeout_ms),
        closing: watch::channel(false).0,
        node: Arc::downgrade(&node),
        serve_reads: Arc::new(Semaphore::new(SERVE_READS)),
        compact_frames: Mutex::new(VecDeque::new()),
        checker: node.block_checker(),
    });

    // Node events (new tips, new transfers) to relay.
    let mut events = node.subscribe();
    let snapshot = load_snapshot(&config.data_dir);
    shared.known_addrs.store(snapshot.addrs.len(), Ordering::Relaxed);
    let mut protocol = Protocol::new(node, pconfig, snapshot, rand::random(), crate::now_ms());
    protocol.add_anchors(take_anchors(&config.data_dir));
    protocol.defer_compact_connects();
    let runtime = tokio::runtime::Handle::current();
    let data_dir = config.data_dir.clone();
    let sh = shared.clone();
    let thread = std::thread::Builder::new()
        .name("p2p".into())
        .spawn(move || protocol_thread(protocol, rx, sh, runtime, data_dir, local))
        .context("spawning the P2P thread")?;
    let running = Running { shared: shared.clone(), thread: Some(thread), local_addr: local };

    let sh = shared.clone();
    tokio::spawn(async move {
        let closed = sh.closed();
        tokio::pin!(closed);
        loop {
            let event = tokio::select! {
                _ = &mut closed => break,
                e = events.recv() => e,
            };
            match event {
                // The protocol handled the events of its own submissions (from a peer)
                // in the step that caused them.
                Ok(
                    NodeEvent::NewTip { origin: Origin::Peer(_), .. }
                    | NodeEvent::NewTransfer { origin: Origin::Peer(_), .. },
                ) => {}
                Ok(ev) => {
                    if !sh.send(Input::Node(ev)).await {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(n, "P2P relay lagged behind node events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    let sh = shared.clone();
    tokio::spawn(async move {
        let closed = sh.closed();
        tokio::pin!(closed);
        let mut t = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = &mut closed => break,
                _ = t.tick() => {}
            }
            match sh.try_send(Input::Tick) {
                Err(mpsc::error::TrySendError::Closed(_)) => break,
                _ => continue, // a full queue skips a tick, nothing more
            }
        }
    });
    for seed in config.seeds {
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(addrs) => {
                // One address per seed name: the first, IPv4 preferred.
                let mut addrs: Vec<SocketAddr> = addrs.collect();
                addrs.sort_by_key(|a| !a.is_ipv4());
                if let Some(a) = addrs.first() {
                    shared.send(Input::AddPeer(*a)).await;
                }
            }
            Err(e) => tracing::warn!(%seed, error = %e, "cannot resolve seed peer"),
        }
    }
    if !config.no_seeds && !config.connect_only {
        let sh = shared.clone();
        let names = config.dns_seeds.clone();
        let fixed = super::discovery::fixed_seeds(sh.chain_id);
        tokio::spawn(async move {
            let closed = sh.closed();
            tokio::pin!(closed);
            let mut first = true;
            loop {
                if first || sh.known_addrs.load(Ordering::Relaxed) < super::discovery::RESEED_BELOW {
                    let mut addrs = tokio::select! {
                        _ = &mut closed => break,
                        a = super::discovery::resolve(&names) => a,
                    };
                    if addrs.is_empty() && sh.known_addrs.load(Ordering::Relaxed) == 0 {
                        addrs = fixed.clone();
                    }
                    if !addrs.is_empty() && !sh.send(Input::SeedAddrs(addrs)).await {
                        break;
                    }
                }
                first = false;
                tokio::select! {
                    _ = &mut closed => break,
                    _ = tokio::time::sleep(super::discovery::RESEED_INTERVAL) => {}
                }
            }
        });
    }
    let sh = shared.clone();
    tokio::spawn(async move {
        let closed = sh.closed();
        tokio::pin!(closed);
        loop {
            let accepted = tokio::select! {
                _ = &mut closed => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, addr)) => {
                    let open = OpenSocket::new(&sh);
                    let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
                    if !run_connection(&sh, id, stream, open, addr, true).await {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tracing::info!(addr = %local, "P2P listening");
    Ok(running)
}

/// One open peer socket, counted in [`Shared::sockets`] from the moment `accept` or
/// `connect` hands it over until its owner task has closed it.
struct OpenSocket(Arc<Shared>);

impl OpenSocket {
    fn new(shared: &Arc<Shared>) -> OpenSocket {
        shared.sockets.fetch_add(1, Ordering::Relaxed);
        OpenSocket(shared.clone())
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Socket options of every peer connection: no Nagle delay, keepalive probes on an idle
/// link, and `TCP_USER_TIMEOUT` so that data left unacknowledged for `user_timeout`
/// kills the connection instead of waiting out TCP's retransmission backoff (which can
/// take a quarter of an hour). Failures are logged, not fatal: the pings still catch a
/// dead link.
fn configure_socket(stream: &TcpStream, user_timeout: Duration) {
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    let mut result = sock.set_tcp_nodelay(true).and_then(|()| sock.set_tcp_keepalive(&keepalive));
    #[cfg(target_os = "linux")]
    {
        result = result.and_then(|()| sock.set_tcp_user_timeout(Some(user_timeout)));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = user_timeout;
    if let Err(e) = result {
        tracing::debug!(error = %e, "cannot set peer socket options");
    }
}

/// Registers a connection, tells the protocol about it, then spawns the task that owns
/// its socket. `false` once the protocol thread is gone.
///
/// The protocol must hear `Connected` before any frame of the connection: the reader
/// sends into the same queue, and a frame (or a bad-frame report) that overtook
/// `Connected` would be dropped as coming from an unknown peer, losing a handshake or
/// letting a peer that sent garbage escape its ban.
///
/// The owner task runs the reader and the writer side by side and is the only holder
/// of the socket. Whichever way the connection ends -- the peer closes or resets it, a
/// write fails or cannot drain within the pong timeout, or the protocol drops the peer
/// (its handle leaves the map and `stop` fires: ban, duplicate, handshake or ping
/// timeout, slow reader) -- the task ends: the handle leaves the map, the socket is
/// closed and the count of open sockets goes down, together. If the connection ended on
/// the network's side, the protocol hears `Disconnected`. At shutdown the task ends and
/// closes the socket.
async fn run_connection(
    shared: &Arc<Shared>,
    id: PeerId,
    stream: TcpStream,
    open: OpenSocket,
    addr: SocketAddr,
    inbound: bool,
) -> bool {
    configure_socket(&stream, shared.write_timeout);
    let (rd, wr) = stream.into_split();
    let (tx, frames) = mpsc::channel::<Outgoing>(SEND_QUEUE_FRAMES);
    let queued = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(Notify::new());
    let asked = Arc::new(Asked::default());
    let handle = PeerHandle { frames: tx, queued: queued.clone(), stop: stop.clone(), asked: asked.clone() };
    shared.handles().insert(id, handle);
    if !shared.send(Input::Connected { peer: id, addr, inbound }).await {
        shared.handles().remove(&id);
        return false;
    }

    let sh = shared.clone();
    tokio::spawn(async move {
        let closed = sh.closed();
        let mut read = Box::pin(read_frames(sh.clone(), id, rd, asked));
        let mut write = Box::pin(write_frames(sh.clone(), wr, frames, queued));
        let ended = tokio::select! {
            reason = &mut read => reason,
            reason = &mut write => reason,
            _ = stop.notified() => {
                // Dropped by the protocol, which removed the handle and so the frame
                // sender: the writer sends what was queued before that and ends.
                let _ = tokio::time::timeout(FLUSH_TIMEOUT, &mut write).await;
                None
            }
            // Shutdown: the socket just closes.
            _ = closed => None,
        };
        // No more frames for it (so none can fail against a closed queue and be taken
        // for a slow reader), then close the socket (the two halves are its only
        // owners), then stop counting it.
        sh.handles().remove(&id);
        drop(read);
        drop(write);
        drop(open);
        if let Some(reason) = ended {
            sh.send(Input::Disconnected { peer: id, reason }).await;
        }
    });
    true
}

/// Reads frames and queues them for the protocol until the peer closes the connection
/// (`Some(reason)`) or the protocol is gone (`None`). After a bad frame it reports it
/// and waits to be stopped: the protocol decides (and records any ban) before the
/// socket closes, so a peer that sees the close cannot reconnect ahead of its ban.
async fn read_frames(
    sh: Arc<Shared>,
    id: PeerId,
    mut rd: OwnedReadHalf,
    asked: Arc<Asked>,
) -> Option<DisconnectReason> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    // The public keys of the last block checked here, for the next one's senders.
    let mut keys = DecodedKeys::default();
    loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => return Some(DisconnectReason::Closed),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        let mut parsed = Vec::new();
        let mut bad_frame = None;
        loop {
            match sh.codec.parse(&buf[start..]) {
                Ok(Some((msg, used))) => {
                    start += used;
                    parsed.push((msg, used));
                }
                Ok(None) => break,
                Err(error) => {
                    bad_frame = Some(error);
                    break;
                }
            }
        }
        // The transfers' signature checks run here, on all cores, rather than one
        // after another on the protocol thread, where they would hold up blocks.
        let txs: Vec<SignedTransfer> =
            parsed.iter().filter_map(|(m, _)| if let Message::Tx(t) = m { Some(*t) } else { None }).collect();
        let mut checked = if txs.is_empty() {
            Vec::new()
        } else {
            // (`None` after a panic in a check: the protocol then checks them itself.)
            crate::node::verify_on_cores(txs, sh.chain_id).await.unwrap_or_default()
        }
        .into_iter();
        for (msg, used) in parsed {
            crate::metrics::p2p_received(msg.command(), used);
            let permit = sh.input_bytes.clone().acquire_many_owned(used as u32).await.ok()?;
            let input = match msg {
                Message::Tx(t) => match checked.next() {
                    Some(checked) => Input::Transfer { peer: id, checked },
                    None => Input::Received { peer: id, msg: Message::Tx(t) },
                },
                // Checked here, its share of the byte budget held, while the protocol
                // thread commits the blocks queued before it.
                Message::Block(b) if asked.take(&b.hash()) => {
                    let Some((checked, kept)) = check_block_on_cores(sh.checker.clone(), *b, keys).await
                    else {
                        return Some(DisconnectReason::Closed);
                    };
                    keys = kept;
                    Input::CheckedBlock { peer: id, block: Box::new(checked) }
                }
                msg => Input::Received { peer: id, msg },
            };
            sh.inputs.send((input, Some(permit))).await.ok()?;
        }
        if let Some(error) = bad_frame {
            if !sh.send(Input::BadFrame { peer: id, error }).await {
                return None;
            }
            return std::future::pending().await;
        }
        buf.drain(..start);
        debug_assert!(buf.len() <= HEADER_BYTES + MAX_PAYLOAD);
    }
}

/// [`BlockChecker::check`] of `block` on the rayon pool while the calling task waits
/// (as [`crate::node::verify_on_cores`] does for transfers), with `keys` the public keys
/// of the block checked before, returned with this block's. `None` if the check
/// panicked, which the fuzz target `block` has not found: in `cairn-node` the
/// fail-stop hook ends the process first; elsewhere (tests) the reader closes the
/// connection.
async fn check_block_on_cores(
    checker: BlockChecker,
    block: Block,
    mut keys: DecodedKeys,
) -> Option<(CheckedBlock, DecodedKeys)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let checked = checker.check(block, &mut keys);
            (checked, keys)
        }));
        let _ = tx.send(checked.ok());
    });
    rx.await.ok().flatten()
}

/// Writes queued frames, and the blocks queued to be served in their turn, until the
/// protocol drops the peer (its sender is gone: `None`) or a write fails or cannot
/// finish within the write timeout (`Some(reason)`).
async fn write_frames(
    sh: Arc<Shared>,
    mut wr: OwnedWriteHalf,
    mut frames: mpsc::Receiver<Outgoing>,
    queued: Arc<AtomicUsize>,
) -> Option<DisconnectReason> {
    while let Some(out) = frames.recv().await {
        let frame = match out {
            Outgoing::Frame(frame) => {
                queued.fetch_sub(frame.len(), Ordering::Relaxed);
                FrameBytes::Own(frame)
            }
            Outgoing::Block(hash, serve) => match serve_block(&sh, hash, serve).await {
                Some(frame) => frame,
                None => continue,
            },
        };
        match tokio::time::timeout(sh.write_timeout, wr.write_all(frame.bytes())).await {
            Ok(Ok(())) => crate::metrics::p2p_sent(frame.bytes()),
            Ok(Err(_)) => return Some(DisconnectReason::Closed),
            Err(_) => return Some(DisconnectReason::SlowReader),
        }
    }
    let _ = wr.shutdown().await;
    None
}

/// The frame that serves block `hash` as `serve` asks ([`Output::ServeBlock`]): its
/// stored bytes as they are, or its compact form (built from them once per block, kept,
/// and the same bytes for every peer), or, if the block is not stored, `notfound` for
/// a request and nothing for a push. The read, and building a compact block, run on
/// the blocking pool, [`SERVE_READS`] at a time. `None` too once shutdown has begun.
async fn serve_block(sh: &Arc<Shared>, hash: BlockHash, serve: Serve) -> Option<FrameBytes> {
    if serve != Serve::Block {
        if let Some(frame) = sh.compact_frame(&hash) {
            return Some(FrameBytes::Shared(frame));
        }
    }
    let permit = sh.serve_reads.clone().acquire_owned().await.ok()?;
    if sh.is_closing() {
        return None;
    }
    let node = sh.node.upgrade()?;
    let shared = sh.clone();
    let read = tokio::task::spawn_blocking(move || {
        let frame = read_block_frame(&node, &shared, hash, serve);
        // The node before the permit: once shutdown holds every permit, no read holds it.
        drop(node);
        drop(permit);
        frame
    })
    .await;
    let frame = match read {
        Ok(Ok(frame)) => frame,
        Ok(Err(e)) => {
            tracing::error!(%hash, error = %e, "cannot read a block to serve");
            None
        }
        // The read panicked (in `cairn-node` the fail-stop hook has ended the process).
        Err(_) => return None,
    };
    if frame.is_some() {
        return frame;
    }
    let item = match serve {
        Serve::Block => InvItem::Block(hash),
        Serve::Compact { .. } => InvItem::CmpctBlock(hash),
        Serve::PushCompact { .. } => return None,
    };
    Some(FrameBytes::Own(sh.codec.encode(&Message::NotFound(vec![item]))))
}

/// Reads block `hash` from the store and frames it as `serve` asks (on the blocking
/// pool). `Ok(None)`: not stored.
fn read_block_frame(
    node: &Node,
    sh: &Shared,
    hash: BlockHash,
    serve: Serve,
) -> Result<Option<FrameBytes>, String> {
    // The chain lock is held for the read only.
    let bytes = node.chain().block_bytes(&hash).map_err(|e| e.to_string())?;
    let Some(bytes) = bytes else { return Ok(None) };
    let nonce = match serve {
        // The stored body is the block's canonical encoding, which is the wire payload:
        // it goes out as it is, neither decoded nor encoded again.
        Serve::Block => return Ok(Some(FrameBytes::Own(sh.codec.encode_raw(command::BLOCK, &bytes)))),
        Serve::Compact { nonce } | Serve::PushCompact { nonce } => nonce,
    };
    let block: Block = cairn_core::encoding::decode(&bytes)
        .map_err(|e| format!("stored block {hash} does not decode: {e}"))?;
    let frame: Arc<[u8]> = sh.codec.encode(&Message::CmpctBlock(Box::new(compact_of(&block, nonce)))).into();
    Ok(Some(FrameBytes::Shared(sh.keep_compact_frame(hash, frame))))
}

fn protocol_thread(
    mut protocol: Protocol,
    mut rx: mpsc::Receiver<Queued>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    data_dir: PathBuf,
    listen: SocketAddr,
) {
    let mut pending: Vec<Queued> = Vec::new();
    *lock_or_stop(&shared.info, "P2P network info") = net_info(&protocol, listen);
    // The flag is checked before each wait: shutdown sets it, then queues a tick.
    while !shared.is_closing() {
        let Some(first) = rx.blocking_recv() else { break };
        pending.push(first);
        // Take what else is waiting, so the shared peer list is refreshed once per batch.
        while pending.len() < 256 {
            match rx.try_recv() {
                Ok(i) => pending.push(i),
                Err(_) => break,
            }
        }
        while !pending.is_empty() && !shared.is_closing() {
            for (input, budget) in std::mem::take(&mut pending) {
                if shared.is_closing() {
                    break;
                }
                protocol.step(crate::now_ms(), input);
                // The message is handled: its bytes go back to the readers.
                drop(budget);
                // Transfer announcements wait for the end of the batch (one `inv` per
                // peer for all of them); everything else goes out now.
                for out in protocol.drain_holding_invs() {
                    handle_output(out, &shared, &runtime, &data_dir, &mut pending);
                }
                // A compact block pushed on above connects now (compact.rs, `connect_deferred`).
                while protocol.connect_deferred(crate::now_ms()) {
                    for out in protocol.drain_holding_invs() {
                        handle_output(out, &shared, &runtime, &data_dir, &mut pending);
                    }
                }
            }
            // The batch is done: the transfers it admitted are announced.
            for out in protocol.drain() {
                handle_output(out, &shared, &runtime, &data_dir, &mut pending);
            }
        }
        *lock_or_stop(&shared.peers, "P2P peer list") = protocol.peer_infos();
        *lock_or_stop(&shared.info, "P2P network info") = net_info(&protocol, listen);
        shared.known_addrs.store(protocol.known_addrs(), Ordering::Relaxed);
        shared.syncing.store(protocol.is_syncing(), Ordering::Relaxed);
        let (headers, blocks, waiting) = protocol.in_flight();
        crate::metrics::p2p_protocol_state(headers, blocks, waiting);
    }
    // Shutdown (or every input sender gone): the final save, then the protocol goes,
    // and with it its reference to the node.
    save_snapshot(&data_dir, &protocol.snapshot());
    save_anchors(&data_dir, &protocol.anchors());
    drop(protocol);
    tracing::info!("P2P stopped; address book and bans saved");
}

/// What `net_getInfo` reports.
fn net_info(protocol: &Protocol, listen: SocketAddr) -> cairn_api::NetInfo {
    use super::discovery::Learned;
    let own = protocol.self_address();
    cairn_api::NetInfo {
        protocol_version: super::wire::PROTOCOL_VERSION,
        listen: vec![listen.to_string()],
        external: own
            .external(listen.port())
            .into_iter()
            .map(|(a, how)| cairn_api::ExternalAddr {
                addr: a.to_string(),
                learned: match how {
                    Learned::Configured => "configured".into(),
                    Learned::Peers { .. } => "peers".into(),
                },
                groups: match how {
                    Learned::Configured => None,
                    Learned::Peers { groups } => Some(groups as u64),
                },
            })
            .collect(),
        inbound_seen: own.inbound_seen(),
    }
}

fn handle_output(
    out: Output,
    shared: &Arc<Shared>,
    runtime: &tokio::runtime::Handle,
    data_dir: &Path,
    pending: &mut Vec<Queued>,
) {
    match out {
        Output::Send(peer, msg) => {
            if let Message::GetData(items) = &msg {
                // The blocks asked for are checked by the peer's reader when they come.
                if let Some(h) = shared.handles().get(&peer) {
                    h.asked.note(items);
                }
            }
            queue(peer, Outgoing::Frame(shared.codec.encode(&msg)), shared, pending)
        }
        Output::ServeBlock { peer, hash, serve } => {
            queue(peer, Outgoing::Block(hash, serve), shared, pending)
        }
        Output::Disconnect(peer, reason) => {
            tracing::debug!(peer, %reason, "dropping peer");
            if let Some(h) = shared.handles().remove(&peer) {
                // Dropping the frame sender ends the writer once the queue is flushed;
                // the reader stops now.
                h.stop.notify_one();
            }
        }
        Output::Connect(addr) => {
            let sh = shared.clone();
            runtime.spawn(async move {
                let dialled = tokio::select! {
                    _ = sh.closed() => return,
                    d = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)) => d,
                };
                match dialled {
                    Ok(Ok(stream)) => {
                        let open = OpenSocket::new(&sh);
                        let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
                        run_connection(&sh, id, stream, open, addr, false).await;
                    }
                    _ => {
                        sh.send(Input::ConnectFailed { addr }).await;
                    }
                }
            });
        }
        Output::Save(snapshot) => save_snapshot(data_dir, &snapshot),
    }
}

/// Queues a frame (or a block to serve) to `peer`; a peer whose queue is full is dropped
/// as too slow.
fn queue(peer: PeerId, out: Outgoing, shared: &Shared, pending: &mut Vec<Queued>) {
    let mut handles = shared.handles();
    let Some(h) = handles.get(&peer) else { return };
    let len = match &out {
        Outgoing::Frame(frame) => frame.len(),
        Outgoing::Block(..) => 0,
    };
    let over = h.queued.load(Ordering::Relaxed) + len > SEND_QUEUE_BYTES;
    if over || h.frames.try_send(out).is_err() {
        if let Some(h) = handles.remove(&peer) {
            h.stop.notify_one();
        }
        pending.push((Input::Disconnected { peer, reason: DisconnectReason::SlowReader }, None));
    } else {
        h.queued.fetch_add(len, Ordering::Relaxed);
    }
}

fn load_snapshot(dir: &Path) -> Snapshot {
    let mut s = Snapshot::default();
    if let Some(mut p) = read_json::<Snapshot>(&dir.join("peers.json")) {
        s.addrs = std::mem::take(&mut p.addrs);
        s.key = p.key.take();
    }
    if let Some(mut b) = read_json::<Snapshot>(&dir.join("bans.json")) {
        s.bans = std::mem::take(&mut b.bans);
    }
    s
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable file");
            None
        }
    }
}

/// Writes `peers.json` and `bans.json` atomically (temp file, then rename).
fn save_snapshot(dir: &Path, s: &Snapshot) {
    let peers = Snapshot { addrs: s.addrs.clone(), bans: Vec::new(), key: s.key.clone() };
    let bans = Snapshot { addrs: Vec::new(), bans: s.bans.clone(), key: None };
    for (name, value) in [("peers.json", &peers), ("bans.json", &bans)] {
        if let Err(e) = write_atomic(&dir.join(name), value) {
            tracing::warn!(file = name, error = %e, "cannot save P2P state");
        }
    }
}

fn write_atomic(path: &Path, value: &Snapshot) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads and removes `anchors.json` (the block-relay-only peers of the last clean
/// shutdown): read once, so a crash loop does not keep dialling the same two peers.
fn take_anchors(dir: &Path) -> Vec<SocketAddr> {
    let path = dir.join("anchors.json");
    let anchors = read_json::<Vec<SocketAddr>>(&path).unwrap_or_default();
    if path.exists() {
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the anchors file");
        }
    }
    anchors
}

/// Writes `anchors.json` atomically (at a clean shutdown).
fn save_anchors(dir: &Path, anchors: &[SocketAddr]) {
    let path = dir.join("anchors.json");
    let write = || -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(anchors).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        tracing::warn!(error = %e, "cannot save the anchors");
    }
}
