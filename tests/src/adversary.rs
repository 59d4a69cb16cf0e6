//! An adversarial peer: speaks the Cairn peer protocol from docs/PROTOCOL.md on its own
//! (it does not use the node's wire code, so it also checks that document) and can just
//! as well write bytes that are wrong on purpose.
//!
//! - [`frame`] and the `*_payload` functions build frames and bodies byte by byte as the
//!   document describes them; block, header and transfer bodies are the consensus
//!   encodings from `cairn-core`.
//! - [`Peer`] is one blocking TCP connection: raw writes, frame reads with deadlines,
//!   a scripted handshake, and checks for "the node closed the connection" and "the node
//!   refused a reconnect from the same address" (bans on loopback are per `ip:port`).
//! - [`HealthMonitor`] samples a node's RPC latency and resident memory in the
//!   background while an attack runs.
//! - [`next_blocks`] builds blocks with valid proof of work on a node's current tip.

use crate::{rpc, wait_until};
use anyhow::{anyhow, bail, Context, Result};
use cairn_core::assemble::{assemble_block, grind};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::encoding::{decode, encode};
use cairn_core::genesis::Genesis;
use cairn_core::validation::ParentInfo;
use cairn_core::{Address, BlockHash, SignedTransfer};
use serde_json::json;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Command bytes (docs/PROTOCOL.md, "Frames").
pub mod cmd {
    pub const VERSION: u8 = 0;
    pub const VERACK: u8 = 1;
    pub const PING: u8 = 2;
    pub const PONG: u8 = 3;
    pub const GETADDR: u8 = 4;
    pub const ADDR: u8 = 5;
    pub const INV: u8 = 6;
    pub const GETDATA: u8 = 7;
    pub const NOTFOUND: u8 = 8;
    pub const GETHEADERS: u8 = 9;
    pub const HEADERS: u8 = 10;
    pub const BLOCK: u8 = 11;
    pub const TX: u8 = 12;
    pub const SENDCMPCT: u8 = 13;
    pub const CMPCTBLOCK: u8 = 14;
    pub const GETBLOCKTXN: u8 = 15;
    pub const BLOCKTXN: u8 = 16;
}

/// Inventory kinds (the `InvItem` enum's variant index).
pub const INV_BLOCK: u32 = 0;
pub const INV_TX: u32 = 1;

/// The network magic: the first 4 bytes of the genesis hash.
pub fn magic_of(genesis: &Genesis) -> [u8; 4] {
    let h = genesis.hash();
    [h.0[0], h.0[1], h.0[2], h.0[3]]
}

/// A frame: magic, command, payload length (u32 LE), payload.
pub fn frame(magic: [u8; 4], command: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&magic);
    f.push(command);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// The fields of a `version` body.
#[derive(Clone, Debug)]
pub struct VersionFields {
    pub protocol_version: u32,
    pub chain_id: u32,
    pub genesis_hash: [u8; 32],
    pub best_height: u64,
    pub best_work: [u8; 32],
    pub listen_port: u16,
    pub nonce: u64,
    /// The receiver's address as we see it (protocol version 2).
    pub your_addr: SocketAddr,
    /// False: do not announce transfers or addresses to us (protocol version 2).
    pub relay: bool,
    pub user_agent: String,
}

impl VersionFields {
    /// An honest-looking version for `genesis`, claiming `best_work`.
    pub fn for_genesis(genesis: &Genesis, best_work: [u8; 32], user_agent: &str) -> VersionFields {
        VersionFields {
            protocol_version: 2,
            chain_id: genesis.params.chain_id,
            genesis_hash: genesis.hash().0,
            best_height: 0,
            best_work,
            listen_port: 0,
            nonce: random_u64(),
            your_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            relay: true,
            user_agent: user_agent.into(),
        }
    }

    pub fn payload(&self) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&self.protocol_version.to_le_bytes());
        p.extend_from_slice(&self.chain_id.to_le_bytes());
        p.extend_from_slice(&self.genesis_hash);
        p.extend_from_slice(&self.best_height.to_le_bytes());
        p.extend_from_slice(&self.best_work);
        p.extend_from_slice(&self.listen_port.to_le_bytes());
        p.extend_from_slice(&self.nonce.to_le_bytes());
        if self.protocol_version >= 2 {
            p.extend_from_slice(&net_addr(self.your_addr));
            p.push(u8::from(self.relay));
        }
        p.extend_from_slice(&(self.user_agent.len() as u64).to_le_bytes());
        p.extend_from_slice(self.user_agent.as_bytes());
        p
    }
}

/// `Vec<InvItem>`: u64 count, then (u32 kind, 32-byte hash) per item.
pub fn inv_payload(items: &[(u32, [u8; 32])]) -> Vec<u8> {
    let mut p = (items.len() as u64).to_le_bytes().to_vec();
    for (kind, hash) in items {
        p.extend_from_slice(&kind.to_le_bytes());
        p.extend_from_slice(hash);
    }
    p
}

/// A `NetAddr`: 16-byte IPv6 (IPv4-mapped) and u16 port.
pub fn net_addr(a: SocketAddr) -> [u8; 18] {
    let ip = match a.ip() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        std::net::IpAddr::V6(v6) => v6,
    };
    let mut out = [0u8; 18];
    out[..16].copy_from_slice(&ip.octets());
    out[16..].copy_from_slice(&a.port().to_le_bytes());
    out
}

/// `Vec<NetAddr>`: u64 count, then 16-byte IPv6 (IPv4-mapped) and u16 port per address.
pub fn addr_payload(addrs: &[SocketAddr]) -> Vec<u8> {
    let mut p = (addrs.len() as u64).to_le_bytes().to_vec();
    for a in addrs {
        let ip = match a.ip() {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            std::net::IpAddr::V6(v6) => v6,
        };
        p.extend_from_slice(&ip.octets());
        p.extend_from_slice(&a.port().to_le_bytes());
    }
    p
}

/// `GetHeaders { locator, stop }`.
pub fn getheaders_payload(locator: &[[u8; 32]], stop: [u8; 32]) -> Vec<u8> {
    let mut p = (locator.len() as u64).to_le_bytes().to_vec();
    for h in locator {
        p.extend_from_slice(h);
    }
    p.extend_from_slice(&stop);
    p
}

/// `Vec<BlockHeader>` in the consensus encoding.
pub fn headers_payload(headers: &[BlockHeader]) -> Vec<u8> {
    encode(&headers.to_vec())
}

/// One received frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub command: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The hashes of an `inv`/`getdata`/`notfound` body.
    pub fn inv_items(&self) -> Result<Vec<(u32, [u8; 32])>> {
        let p = &self.payload;
        let n = u64::from_le_bytes(p.get(..8).context("short inv")?.try_into()?) as usize;
        if p.len() != 8 + n * 36 {
            bail!("inv of {n} items has {} bytes", p.len());
        }
        Ok((0..n)
            .map(|i| {
                let at = 8 + i * 36;
                let kind = u32::from_le_bytes(p[at..at + 4].try_into().expect("4 bytes"));
                let mut h = [0u8; 32];
                h.copy_from_slice(&p[at + 4..at + 36]);
                (kind, h)
            })
            .collect())
    }
}

/// How a wait on the connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The node closed (FIN or reset).
    Yes,
    /// Still open at the deadline.
    No,
}

/// One connection to a node, driven step by step.
pub struct Peer {
    stream: TcpStream,
    pub magic: [u8; 4],
    /// Our end's address: a reconnect from it is how a loopback ban is observed.
    pub local: SocketAddr,
    buf: Vec<u8>,
    /// Bytes received so far (frames or not).
    pub received: usize,
}

impl Peer {
    /// Connects from an OS-chosen port.
    ///
    /// The kernel picks the port at connect time (no bind first), which moves on from
    /// the ports used just before: bound to port 0 first, a new peer got one of the last
    /// eight ports in about 0.1 to 0.2 % of connections here, and so, on loopback, where
    /// the node bans `ip:port`, possibly the port of a peer just banned, refused before
    /// its handshake. SO_REUSEADDR is still set, so that [`reconnect_refused`] can bind
    /// the same port again.
    pub fn connect(node: SocketAddr, magic: [u8; 4]) -> Result<Peer> {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        Self::finish_connect(s, node, magic)
    }

    /// Connects from `local` (SO_REUSEADDR, so a port we used before can be used again).
    pub fn connect_from(local: SocketAddr, node: SocketAddr, magic: [u8; 4]) -> Result<Peer> {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.bind(&local.into()).with_context(|| format!("bind {local}"))?;
        Self::finish_connect(s, node, magic)
    }

    fn finish_connect(s: Socket, node: SocketAddr, magic: [u8; 4]) -> Result<Peer> {
        s.connect_timeout(&node.into(), Duration::from_secs(5)).with_context(|| format!("connect {node}"))?;
        let stream: TcpStream = s.into();
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        Ok(Peer { stream, magic, local, buf: Vec::new(), received: 0 })
    }

    /// Shrinks our receive buffer (before much is sent), so a peer that never reads
    /// pushes back on the node sooner.
    pub fn set_recv_buffer(&self, bytes: usize) -> Result<()> {
        socket2::SockRef::from(&self.stream).set_recv_buffer_size(bytes)?;
        Ok(())
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        self.stream.write_all(bytes)
    }

    /// Writes one well-formed frame.
    pub fn send(&mut self, command: u8, payload: &[u8]) -> std::io::Result<()> {
        let f = frame(self.magic, command, payload);
        self.send_raw(&f)
    }

    /// Reads more bytes into the buffer. `Ok(false)` on timeout, `Err` once closed.
    fn fill(&mut self, until: Instant) -> Result<bool> {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => bail!("connection closed by the node"),
            Ok(n) => {
                self.received += n;
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) => Err(anyhow!("connection closed by the node: {e}")),
        }
    }

    /// The next frame, `Ok(None)` if none arrived by the deadline, `Err` if the
    /// connection closed or the node sent something that is not a frame.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Frame>> {
        let until = Instant::now() + timeout;
        loop {
            if self.buf.len() >= 9 {
                if self.buf[..4] != self.magic {
                    bail!("node sent a frame with magic {:02x?}", &self.buf[..4]);
                }
                let len = u32::from_le_bytes(self.buf[5..9].try_into()?) as usize;
                if self.buf.len() >= 9 + len {
                    let command = self.buf[4];
                    let payload = self.buf[9..9 + len].to_vec();
                    self.buf.drain(..9 + len);
                    return Ok(Some(Frame { command, payload }));
                }
            }
            if !self.fill(until)? {
                return Ok(None);
            }
        }
    }

    /// Waits for a frame with `command`, answering pings and skipping anything else.
    pub fn expect(&mut self, command: u8, timeout: Duration) -> Result<Frame> {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let Some(f) = self.recv(left)? else { bail!("no frame {command} within {timeout:?}") };
            if f.command == command {
                return Ok(f);
            }
            if f.command == cmd::PING {
                self.send(cmd::PONG, &f.payload)?;
            }
        }
    }

    /// The whole handshake: our version, the node's version and verack, our verack.
    pub fn handshake(&mut self, version: &VersionFields) -> Result<()> {
        self.send(cmd::VERSION, &version.payload())?;
        self.expect(cmd::VERSION, Duration::from_secs(10))?;
        self.send(cmd::VERACK, &[])?;
        self.expect(cmd::VERACK, Duration::from_secs(10))?;
        Ok(())
    }

    /// Reads and discards until the node closes the connection or `timeout` passes.
    pub fn wait_closed(&mut self, timeout: Duration) -> Closed {
        let until = Instant::now() + timeout;
        loop {
            match self.fill(until) {
                Err(_) => return Closed::Yes,
                Ok(false) => return Closed::No,
                Ok(true) => self.buf.clear(),
            }
        }
    }

    /// Closes the connection (and frees its local address for a reconnect).
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        drop(self.stream);
    }

    /// Aborts the connection with a reset (RST, no FIN), as a crashed host's kernel or
    /// a middlebox would.
    pub fn reset(self) {
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        drop(self.stream);
    }
}

/// Connects again from `local` and reports whether the node refused at once: it closes
/// the connection without sending its `version`. An accepted connection gets a version
/// at once (both sides send it first), so a close without one is the node's ban check.
pub fn reconnect_refused(local: SocketAddr, node: SocketAddr, magic: [u8; 4]) -> Result<bool> {
    // The old connection's address pair is busy until both ends have let go of it; in
    // one loaded CI run that took longer than 10 s. The last error (bind or connect) is
    // kept for the timeout's message.
    let mut p = wait_until(Duration::from_secs(30), "rebinding the offender's address", || {
        Peer::connect_from(local, node, magic).map(Some)
    });
    match p.recv(Duration::from_secs(5)) {
        Err(_) => Ok(p.received == 0),
        Ok(Some(f)) if f.command == cmd::VERSION => Ok(false),
        Ok(other) => bail!("unexpected answer to a reconnect: {other:?}"),
    }
}

/// Resident memory of a process in KiB (`VmRSS` in /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What a [`HealthMonitor`] saw.
#[derive(Clone, Debug, Default)]
pub struct Health {
    pub samples: u64,
    pub max_rpc: Duration,
    pub rpc_failures: u64,
    pub max_rss_kib: u64,
    pub last_error: String,
}

/// Calls `chain_getInfo` every 100 ms and reads the node's VmRSS, in a background
/// thread, until [`HealthMonitor::finish`].
pub struct HealthMonitor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Health>>,
}

impl HealthMonitor {
    pub fn start(rpc_url: &str, pid: u32) -> HealthMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let url = rpc_url.to_string();
        let thread = std::thread::spawn(move || {
            let mut h = Health::default();
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = rpc(&url, "chain_getInfo", json!([]));
                let took = t.elapsed();
                h.samples += 1;
                h.max_rpc = h.max_rpc.max(took);
                if let Err(e) = r {
                    h.rpc_failures += 1;
                    h.last_error = format!("{e:#}");
                }
                if let Some(kib) = rss_kib(pid) {
                    h.max_rss_kib = h.max_rss_kib.max(kib);
                }
                std::thread::sleep(Duration::from_millis(100)); // sampling period, not sync
            }
            h
        });
        HealthMonitor { stop, thread: Some(thread) }
    }

    pub fn finish(mut self) -> Health {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A header and its context fetched over RPC.
fn header_at(rpc_url: &str, height: u64) -> Result<BlockHeader> {
    let b = rpc(rpc_url, "chain_getBlockByHeight", json!([height]))?;
    let hex = b["header_hex"].as_str().ok_or_else(|| anyhow!("no block at height {height}"))?;
    Ok(decode(&hex::decode(hex)?)?)
}

/// What a child of the node's block at `height` must build on.
pub fn parent_info(rpc_url: &str, genesis: &Genesis, height: u64) -> Result<ParentInfo> {
    let tip = header_at(rpc_url, height)?;
    let n = u64::from(genesis.params.median_time_blocks);
    let mut times = Vec::new();
    for h in height.saturating_sub(n - 1)..=height {
        times.push(header_at(rpc_url, h)?.timestamp_ms);
    }
    let anchor = if height >= 1 { header_at(rpc_url, 1)?.timestamp_ms } else { 0 };
    Ok(ParentInfo {
        hash: tip.hash(),
        height,
        timestamp_ms: tip.timestamp_ms,
        median_time_past_ms: cairn_core::difficulty::median_time_past(&times),
        anchor_timestamp_ms: anchor,
    })
}

/// The ParentInfo of a block we built ourselves on `parent`.
pub fn child_info(parent: &ParentInfo, block: &BlockHeader, recent: &[u64]) -> ParentInfo {
    ParentInfo {
        hash: block.hash(),
        height: block.height,
        timestamp_ms: block.timestamp_ms,
        median_time_past_ms: cairn_core::difficulty::median_time_past(recent),
        anchor_timestamp_ms: if block.height == 1 { block.timestamp_ms } else { parent.anchor_timestamp_ms },
    }
}

/// Mines `transfers.len()` blocks on the node's current tip with valid proof of work;
/// block `i` carries `transfers[i]` (which need not be valid). Returns them in order.
pub fn next_blocks(
    rpc_url: &str,
    genesis: &Genesis,
    transfers: &[Vec<SignedTransfer>],
) -> Result<Vec<Block>> {
    let height = rpc(rpc_url, "chain_getInfo", json!([]))?["height"].as_u64().context("height")?;
    blocks_on(rpc_url, genesis, height, transfers)
}

/// As [`next_blocks`], but on the node's best-chain block at `height` (below the tip:
/// a side branch, for a reorg).
pub fn blocks_on(
    rpc_url: &str,
    genesis: &Genesis,
    height: u64,
    transfers: &[Vec<SignedTransfer>],
) -> Result<Vec<Block>> {
    let mut parent = parent_info(rpc_url, genesis, height)?;
    let mut recent: Vec<u64> = Vec::new();
    let n = u64::from(genesis.params.median_time_blocks);
    for h in height.saturating_sub(n - 1)..=height {
        recent.push(header_at(rpc_url, h)?.timestamp_ms);
    }
    let now = crate::now_ms();
    let mut out = Vec::new();
    for txs in transfers {
        let mut b = assemble_block(
            &genesis.params,
            &parent,
            now.max(parent.timestamp_ms + 1),
            Address([0xad; 20]),
            txs,
        )
        .context("assemble")?;
        if !grind(&mut b.header, u64::MAX) {
            bail!("no nonce found");
        }
        recent.push(b.header.timestamp_ms);
        if recent.len() > n as usize {
            recent.remove(0);
        }
        parent = child_info(&parent, &b.header, &recent);
        out.push(b);
    }
    Ok(out)
}

/// A block on `parent` with valid proof of work and exactly the given coinbase (which
/// need not pay what the rules say: [`assemble_block`] cannot build a block whose fees
/// overflow, this can) and transfers.
pub fn block_with_coinbase(
    genesis: &Genesis,
    parent: &ParentInfo,
    coinbase: cairn_core::transaction::Coinbase,
    transfers: &[SignedTransfer],
) -> Result<Block> {
    use cairn_core::transaction::Transaction;
    let mut transactions = vec![Transaction::Coinbase(coinbase)];
    transactions.extend(transfers.iter().copied().map(Transaction::Transfer));
    let txids: Vec<_> = transactions.iter().map(Transaction::txid).collect();
    let mut header = BlockHeader {
        version: cairn_core::block::BLOCK_VERSION,
        height: parent.height + 1,
        prev: parent.hash,
        merkle_root: cairn_core::merkle::merkle_root(&txids),
        timestamp_ms: crate::now_ms().max(parent.timestamp_ms + 1).max(parent.median_time_past_ms + 1),
        target: parent.next_target(&genesis.params),
        nonce: 0,
    };
    if !grind(&mut header, u64::MAX) {
        bail!("no nonce found");
    }
    Ok(Block { header, transactions })
}

/// A transfer signed by dev account `key` (any amounts: signing checks none).
pub fn dev_transfer(
    key: usize,
    chain_id: u32,
    nonce: u64,
    to: Address,
    amount: u64,
    fee: u64,
) -> SignedTransfer {
    let k = &cairn_core::genesis::dev_keys()[key];
    cairn_core::transaction::Transfer {
        chain_id,
        nonce,
        from: cairn_core::transaction::public_key_of(k),
        to,
        amount: cairn_core::Amount(amount),
        fee: cairn_core::Amount(fee),
    }
    .sign(k)
    .expect("dev keys sign")
}

impl Peer {
    /// Relays `tx` as a peer does: announces its txid, waits for the node's `getdata`
    /// (answering pings meanwhile) and sends the transfer. `Ok(false)` if the node did not
    /// ask for it within `timeout`; `Err` if the connection closed.
    pub fn relay_transfer(&mut self, tx: &SignedTransfer, timeout: Duration) -> Result<bool> {
        let txid = tx.txid().0;
        self.send(cmd::INV, &inv_payload(&[(INV_TX, txid)]))?;
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let Some(f) = self.recv(left)? else { return Ok(false) };
            match f.command {
                cmd::PING => self.send(cmd::PONG, &f.payload)?,
                cmd::GETDATA if f.inv_items()?.contains(&(INV_TX, txid)) => {
                    self.send(cmd::TX, &encode(tx))?;
                    return Ok(true);
                }
                _ => {}
            }
        }
    }

    /// Sends a ping and waits for its pong, skipping other frames: since a node handles
    /// one peer's messages in order, the pong means everything sent before was handled.
    /// `Ok(false)` on no pong within `timeout`; `Err` if the connection closed.
    pub fn ping_pong(&mut self, timeout: Duration) -> Result<bool> {
        let nonce = random_u64().to_le_bytes();
        self.send(cmd::PING, &nonce)?;
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let Some(f) = self.recv(left)? else { return Ok(false) };
            match f.command {
                cmd::PONG if f.payload == nonce => return Ok(true),
                cmd::PING => self.send(cmd::PONG, &f.payload)?,
                _ => {}
            }
        }
    }

    /// Offers `blocks` (a chain whose first parent the node knows) as a peer does:
    /// announces the last one, answers `getheaders` with all their headers and `getdata`
    /// with the bodies. Returns the hashes of the blocks sent, once all were asked for,
    /// the node closed the connection (say, for an invalid block), or `timeout` passed.
    pub fn serve_blocks(&mut self, blocks: &[Block], timeout: Duration) -> Result<Vec<BlockHash>> {
        let last = blocks.last().context("no blocks to serve")?.hash();
        self.send(cmd::INV, &inv_payload(&[(INV_BLOCK, last.0)]))?;
        let headers: Vec<BlockHeader> = blocks.iter().map(|b| b.header).collect();
        let until = Instant::now() + timeout;
        let mut sent = Vec::new();
        while sent.len() < blocks.len() {
            let left = until.saturating_duration_since(Instant::now());
            let Ok(Some(f)) = self.recv(left) else { break };
            let result = match f.command {
                cmd::PING => self.send(cmd::PONG, &f.payload),
                cmd::GETHEADERS => self.send(cmd::HEADERS, &headers_payload(&headers)),
                cmd::GETDATA => {
                    let mut r = Ok(());
                    for (kind, hash) in f.inv_items()? {
                        let Some(b) = blocks.iter().find(|b| kind == INV_BLOCK && b.hash().0 == hash) else {
                            continue;
                        };
                        r = r.and(self.send(cmd::BLOCK, &encode(b)));
                        if !sent.contains(&b.hash()) {
                            sent.push(b.hash());
                        }
                    }
                    r
                }
                _ => Ok(()),
            };
            if result.is_err() {
                break;
            }
        }
        Ok(sent)
    }
}

/// The hash of the block a frame carries, if it is a `block`.
pub fn block_hash_of(payload: &[u8]) -> Option<BlockHash> {
    decode::<Block>(payload).ok().map(|b| b.hash())
}

/// A process-local pseudo-random u64 (xorshift seeded from the clock and a counter);
/// good enough for nonces and junk bytes, with no extra dependency.
pub fn random_u64() -> u64 {
    use std::sync::atomic::AtomicU64;
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = crate::now_ms() ^ 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    x
}

/// `n` pseudo-random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| random_u64() as u8).collect()
}

// ----- compact blocks (docs/PROTOCOL.md, "Compact blocks"), written from the document -----

/// A `sendcmpct` body: the high-bandwidth flag (one byte) and version 1.
pub fn sendcmpct_payload(high_bandwidth: bool) -> Vec<u8> {
    let mut p = vec![u8::from(high_bandwidth)];
    p.extend_from_slice(&1u64.to_le_bytes());
    p
}

/// The high-bandwidth flag of a `sendcmpct` body.
pub fn sendcmpct_flag(payload: &[u8]) -> Option<bool> {
    (payload.len() == 9).then(|| payload[0] == 1)
}

/// A transfer's short id under `header` and `nonce`: the SipHash key is the first 16
/// bytes of SHA-256(header || nonce LE) as two little-endian u64s; the id is the low 6
/// bytes of SipHash-2-4(txid). SipHash here is the standard library's (an implementation
/// independent of the node's).
pub fn short_id(header: &BlockHeader, nonce: u64, txid: &[u8; 32]) -> [u8; 6] {
    use sha2::{Digest, Sha256};
    #[allow(deprecated)]
    use std::hash::{Hasher, SipHasher};
    let mut h = Sha256::new();
    h.update(encode(header));
    h.update(nonce.to_le_bytes());
    let k: [u8; 32] = h.finalize().into();
    let k0 = u64::from_le_bytes(k[0..8].try_into().expect("8 bytes"));
    let k1 = u64::from_le_bytes(k[8..16].try_into().expect("8 bytes"));
    #[allow(deprecated)]
    let mut s = SipHasher::new_with_keys(k0, k1);
    s.write(txid);
    let id = s.finish().to_le_bytes();
    [id[0], id[1], id[2], id[3], id[4], id[5]]
}

/// A `cmpctblock` body for `block`: the transactions at `prefill` (increasing, 0 among
/// them for a valid one) whole, short ids for the rest.
pub fn cmpctblock_payload(block: &Block, nonce: u64, prefill: &[usize]) -> Vec<u8> {
    let mut ids = Vec::new();
    let mut pre = Vec::new();
    for (i, tx) in block.transactions.iter().enumerate() {
        if prefill.contains(&i) {
            pre.extend_from_slice(&(i as u32).to_le_bytes());
            pre.extend_from_slice(&encode(tx));
        } else {
            ids.extend_from_slice(&short_id(&block.header, nonce, &tx.txid().0));
        }
    }
    let mut p = encode(&block.header);
    p.extend_from_slice(&nonce.to_le_bytes());
    p.extend_from_slice(&((ids.len() / 6) as u64).to_le_bytes());
    p.extend_from_slice(&ids);
    p.extend_from_slice(&(prefill.len() as u64).to_le_bytes());
    p.extend_from_slice(&pre);
    p
}

/// The block hash and indexes of a `getblocktxn` body.
pub fn getblocktxn_of(payload: &[u8]) -> Option<([u8; 32], Vec<u32>)> {
    let hash: [u8; 32] = payload.get(..32)?.try_into().ok()?;
    let n = u64::from_le_bytes(payload.get(32..40)?.try_into().ok()?) as usize;
    let rest = payload.get(40..)?;
    if rest.len() != n.checked_mul(4)? {
        return None;
    }
    Some((hash, rest.chunks(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
}

/// A `blocktxn` body.
pub fn blocktxn_payload(hash: &BlockHash, transfers: &[SignedTransfer]) -> Vec<u8> {
    let mut p = hash.0.to_vec();
    p.extend_from_slice(&(transfers.len() as u64).to_le_bytes());
    for t in transfers {
        p.extend_from_slice(&encode(t));
    }
    p
}
