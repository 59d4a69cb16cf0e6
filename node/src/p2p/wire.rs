//! The wire format: frames and messages (see docs/PROTOCOL.md, which this module must
//! match byte for byte).
//!
//! A frame is a 9-byte header — network magic (4 bytes), command (1 byte), payload
//! length (u32 little-endian) — followed by the payload, the canonical encoding
//! ([`cairn_core::encoding`]) of the command's body. Every command has its own maximum
//! payload length, checked on the header alone, so a peer that declares a huge frame is
//! refused before a single byte of it is buffered.
//!
//! Parsing is separate from socket reading: [`FrameCodec::parse`] looks at a byte buffer
//! and answers `Ok(None)` while the frame is incomplete. It never panics, whatever the
//! bytes.

use cairn_core::block::{Block, BlockHeader, HEADER_LEN};
use cairn_core::encoding::{self, DecodeError};
use cairn_core::genesis::MAX_BLOCK_BYTES_LIMIT;
use cairn_core::transaction::Transaction;
use cairn_core::{BlockHash, SignedTransfer, Txid};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use thiserror::Error;

/// The protocol version this node speaks. A peer must send exactly this version.
/// Version 2 added `your_addr` and `relay` to [`Version`].
pub const PROTOCOL_VERSION: u32 = 2;
/// Bytes in a frame header: magic 4, command 1, length 4.
pub const HEADER_BYTES: usize = 9;
/// Longest user agent accepted in a version message.
pub const MAX_USER_AGENT: usize = 64;
/// Most addresses in one `addr` message.
pub const MAX_ADDRS: usize = 250;
/// Most items in one `inv`, `getdata` or `notfound`.
pub const MAX_INV: usize = 500;
/// Most locator hashes in one `getheaders`.
pub const MAX_LOCATOR: usize = 64;
/// Most headers in one `headers` message.
pub const MAX_HEADERS: usize = 2000;
/// Largest payload of any frame (a block at the largest size a genesis may allow).
pub const MAX_PAYLOAD: usize = MAX_BLOCK_BYTES_LIMIT as usize;

/// Command bytes.
pub mod command {
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
    // Compact block relay (BIP152-style; see [`super::CmpctBlock`]).
    pub const SENDCMPCT: u8 = 13;
    pub const CMPCTBLOCK: u8 = 14;
    pub const GETBLOCKTXN: u8 = 15;
    pub const BLOCKTXN: u8 = 16;
}

/// The handshake message: who we are and what chain we follow.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Version {
    pub protocol_version: u32,
    pub chain_id: u32,
    pub genesis_hash: BlockHash,
    pub best_height: u64,
    /// Cumulative work of the sender's best chain, 256-bit big-endian.
    pub best_work: [u8; 32],
    /// The port the sender accepts connections on (0: none).
    pub listen_port: u16,
    /// Random per node, fixed for its lifetime: detects connecting to ourselves, and two
    /// connections to the same node.
    pub nonce: u64,
    /// The receiver's address as the sender sees it: the remote address of this
    /// connection on the sender's side (for a dialler, the address it dialled). How a
    /// node behind a NAT learns its external address.
    pub your_addr: NetAddr,
    /// False: "do not announce transfers or addresses to me" (a block-relay-only link).
    pub relay: bool,
    pub user_agent: String,
}

/// A peer's address: IPv6 (IPv4 as v4-mapped `::ffff:a.b.c.d`) and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, bincode::Encode, bincode::Decode)]
pub struct NetAddr {
    pub ip: [u8; 16],
    pub port: u16,
}

impl NetAddr {
    pub fn from_socket(addr: SocketAddr) -> NetAddr {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        NetAddr { ip: ip.octets(), port: addr.port() }
    }

    pub fn to_socket(self) -> SocketAddr {
        let v6 = Ipv6Addr::from(self.ip);
        let ip = match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        };
        SocketAddr::new(ip, self.port)
    }
}

/// An announced or requested object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, bincode::Encode, bincode::Decode)]
pub enum InvItem {
    Block(BlockHash),
    Tx(Txid),
    /// In `getdata`: the block as a `cmpctblock` (compact block relay, BIP152's
    /// low-bandwidth mode). Elsewhere it means the same as `Block`.
    CmpctBlock(BlockHash),
}

#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct GetHeaders {
    /// Hashes of the requester's best chain, tip first, then exponentially sparser.
    pub locator: Vec<BlockHash>,
    /// Stop after this hash (all zero: send as many as allowed).
    pub stop: BlockHash,
}

// ----- compact block relay (BIP152-style), commands 13-16 -----

/// The compact block version this node speaks (`sendcmpct` of another version is
/// ignored).
pub const CMPCT_VERSION: u64 = 1;
/// Most transactions one compact block (short ids and prefilled together), `getblocktxn`
/// or `blocktxn` may list: more than a block of the largest size a genesis allows can
/// hold (a transfer takes 149 bytes in a block).
pub const MAX_BLOCK_TXS: usize = MAX_PAYLOAD / 149 + 1;
/// Bytes of a short transfer id.
pub const SHORT_ID_BYTES: usize = 6;
/// A short transfer id: the low 6 bytes (little-endian) of a keyed SipHash-2-4 of the
/// txid.
pub type ShortId = [u8; SHORT_ID_BYTES];

/// `sendcmpct`: the sender accepts compact blocks; with `high_bandwidth` it asks to be
/// sent them unannounced, as soon as they are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct SendCmpct {
    pub high_bandwidth: bool,
    pub version: u64,
}

/// A transaction of a compact block sent whole, at its (absolute) index in the block.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct PrefilledTx {
    pub index: u32,
    pub tx: Transaction,
}

/// `cmpctblock`: a block as its header, a per-block nonce, the short id of each
/// transaction not prefilled (in block order, skipping the prefilled indexes), and the
/// prefilled transactions (at least the coinbase), indexes strictly increasing.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct CmpctBlock {
    pub header: BlockHeader,
    pub nonce: u64,
    pub short_ids: Vec<ShortId>,
    pub prefilled: Vec<PrefilledTx>,
}

impl CmpctBlock {
    /// Transactions in the block.
    pub fn tx_count(&self) -> usize {
        self.short_ids.len() + self.prefilled.len()
    }
}

/// `getblocktxn`: the transfers of a compact block the sender could not find, by their
/// absolute indexes in the block, strictly increasing.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct GetBlockTxn {
    pub block_hash: BlockHash,
    pub indexes: Vec<u32>,
}

/// `blocktxn`: the transfers a `getblocktxn` asked for, in its order.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct BlockTxn {
    pub block_hash: BlockHash,
    pub transfers: Vec<SignedTransfer>,
}

/// True if `indexes` strictly increase.
fn strictly_increasing(indexes: impl Iterator<Item = u32>) -> bool {
    let mut last: Option<u32> = None;
    for i in indexes {
        if last.is_some_and(|l| i <= l) {
            return false;
        }
        last = Some(i);
    }
    true
}

/// Decodes the compact-block messages (commands 13-16) and checks their limits.
fn decode_compact(command: u8, payload: &[u8]) -> Result<Message, WireError> {
    use command::*;
    let bad = |e: DecodeError| WireError::Malformed { command, reason: e.to_string() };
    let too_many = |count: usize| WireError::TooManyItems { command, count, max: MAX_BLOCK_TXS };
    let invalid = |reason: &str| WireError::Malformed { command, reason: reason.to_string() };
    Ok(match command {
        SENDCMPCT => Message::SendCmpct(encoding::decode(payload).map_err(bad)?),
        CMPCTBLOCK => {
            let c: CmpctBlock = encoding::decode(payload).map_err(bad)?;
            let n = c.tx_count();
            if n > MAX_BLOCK_TXS {
                return Err(too_many(n));
            }
            if !strictly_increasing(c.prefilled.iter().map(|p| p.index)) {
                return Err(invalid("prefilled indexes do not strictly increase"));
            }
            if c.prefilled.last().is_some_and(|p| p.index as usize >= n) {
                return Err(invalid("a prefilled index is past the end of the block"));
            }
            Message::CmpctBlock(Box::new(c))
        }
        GETBLOCKTXN => {
            let g: GetBlockTxn = encoding::decode(payload).map_err(bad)?;
            if g.indexes.len() > MAX_BLOCK_TXS {
                return Err(too_many(g.indexes.len()));
            }
            if !strictly_increasing(g.indexes.iter().copied()) {
                return Err(invalid("indexes do not strictly increase"));
            }
            Message::GetBlockTxn(g)
        }
        _ => {
            let b: BlockTxn = encoding::decode(payload).map_err(bad)?;
            if b.transfers.len() > MAX_BLOCK_TXS {
                return Err(too_many(b.transfers.len()));
            }
            Message::BlockTxn(b)
        }
    })
}

/// Every message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Version(Version),
    Verack,
    Ping(u64),
    Pong(u64),
    GetAddr,
    Addr(Vec<NetAddr>),
    Inv(Vec<InvItem>),
    GetData(Vec<InvItem>),
    NotFound(Vec<InvItem>),
    GetHeaders(GetHeaders),
    Headers(Vec<BlockHeader>),
    Block(Box<Block>),
    Tx(SignedTransfer),
    SendCmpct(SendCmpct),
    CmpctBlock(Box<CmpctBlock>),
    GetBlockTxn(GetBlockTxn),
    BlockTxn(BlockTxn),
}

impl Message {
    pub fn command(&self) -> u8 {
        use command::*;
        match self {
            Message::Version(_) => VERSION,
            Message::Verack => VERACK,
            Message::Ping(_) => PING,
            Message::Pong(_) => PONG,
            Message::GetAddr => GETADDR,
            Message::Addr(_) => ADDR,
            Message::Inv(_) => INV,
            Message::GetData(_) => GETDATA,
            Message::NotFound(_) => NOTFOUND,
            Message::GetHeaders(_) => GETHEADERS,
            Message::Headers(_) => HEADERS,
            Message::Block(_) => BLOCK,
            Message::Tx(_) => TX,
            Message::SendCmpct(_) => SENDCMPCT,
            Message::CmpctBlock(_) => CMPCTBLOCK,
            Message::GetBlockTxn(_) => GETBLOCKTXN,
            Message::BlockTxn(_) => BLOCKTXN,
        }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        command_name(self.command()).unwrap_or("?")
    }

    /// The payload: the canonical encoding of the body (empty for bodiless commands).
    pub fn encode_payload(&self) -> Vec<u8> {
        match self {
            Message::Version(v) => encoding::encode(v),
            Message::Verack | Message::GetAddr => Vec::new(),
            Message::Ping(n) | Message::Pong(n) => encoding::encode(n),
            Message::Addr(a) => encoding::encode(a),
            Message::Inv(i) | Message::GetData(i) | Message::NotFound(i) => encoding::encode(i),
            Message::GetHeaders(g) => encoding::encode(g),
            Message::Headers(h) => encoding::encode(h),
            Message::Block(b) => encoding::encode(b.as_ref()),
            Message::Tx(t) => encoding::encode(t),
            Message::SendCmpct(s) => encoding::encode(s),
            Message::CmpctBlock(c) => encoding::encode(c.as_ref()),
            Message::GetBlockTxn(g) => encoding::encode(g),
            Message::BlockTxn(b) => encoding::encode(b),
        }
    }

    /// Decodes a payload and checks the per-message item limits.
    pub fn decode_payload(command: u8, payload: &[u8]) -> Result<Message, WireError> {
        use command::*;
        let bad = |e: DecodeError| WireError::Malformed { command, reason: e.to_string() };
        let too_many = |count: usize, max: usize| WireError::TooManyItems { command, count, max };
        let msg = match command {
            VERSION => {
                // The version number first, so that a peer of another protocol version
                // (whose body may not even decode as ours) is told apart from garbage.
                if let Some(b) = payload.get(..4) {
                    let theirs = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    if theirs != PROTOCOL_VERSION {
                        return Err(WireError::UnsupportedVersion(theirs));
                    }
                }
                let v: Version = encoding::decode(payload).map_err(bad)?;
                if v.user_agent.len() > MAX_USER_AGENT {
                    return Err(too_many(v.user_agent.len(), MAX_USER_AGENT));
                }
                Message::Version(v)
            }
            VERACK | GETADDR => {
                if !payload.is_empty() {
                    return Err(bad(DecodeError::TrailingBytes(payload.len())));
                }
                if command == VERACK {
                    Message::Verack
                } else {
                    Message::GetAddr
                }
            }
            PING => Message::Ping(encoding::decode(payload).map_err(bad)?),
            PONG => Message::Pong(encoding::decode(payload).map_err(bad)?),
            ADDR => {
                let a: Vec<NetAddr> = encoding::decode(payload).map_err(bad)?;
                if a.len() > MAX_ADDRS {
                    return Err(too_many(a.len(), MAX_ADDRS));
                }
                Message::Addr(a)
            }
            INV | GETDATA | NOTFOUND => {
                let items: Vec<InvItem> = encoding::decode(payload).map_err(bad)?;
                if items.len() > MAX_INV {
                    return Err(too_many(items.len(), MAX_INV));
                }
                match command {
                    INV => Message::Inv(items),
                    GETDATA => Message::GetData(items),
                    _ => Message::NotFound(items),
                }
            }
            GETHEADERS => {
                let g: GetHeaders = encoding::decode(payload).map_err(bad)?;
                if g.locator.len() > MAX_LOCATOR {
                    return Err(too_many(g.locator.len(), MAX_LOCATOR));
                }
                Message::GetHeaders(g)
            }
            HEADERS => {
                let h: Vec<BlockHeader> = encoding::decode(payload).map_err(bad)?;
                if h.len() > MAX_HEADERS {
                    return Err(too_many(h.len(), MAX_HEADERS));
                }
                Message::Headers(h)
            }
            BLOCK => Message::Block(Box::new(encoding::decode(payload).map_err(bad)?)),
            TX => Message::Tx(encoding::decode(payload).map_err(bad)?),
            SENDCMPCT | CMPCTBLOCK | GETBLOCKTXN | BLOCKTXN => decode_compact(command, payload)?,
            other => return Err(WireError::UnknownCommand(other)),
        };
        Ok(msg)
    }
}

/// The name of a command byte, `None` if unknown.
pub fn command_name(command: u8) -> Option<&'static str> {
    use command::*;
    Some(match command {
        VERSION => "version",
        VERACK => "verack",
        PING => "ping",
        PONG => "pong",
        GETADDR => "getaddr",
        ADDR => "addr",
        INV => "inv",
        GETDATA => "getdata",
        NOTFOUND => "notfound",
        GETHEADERS => "getheaders",
        HEADERS => "headers",
        BLOCK => "block",
        TX => "tx",
        SENDCMPCT => "sendcmpct",
        CMPCTBLOCK => "cmpctblock",
        GETBLOCKTXN => "getblocktxn",
        BLOCKTXN => "blocktxn",
        _ => return None,
    })
}

/// The largest payload a command may carry. Checked on the frame header, before the
/// payload is read.
pub fn max_payload(command: u8) -> Option<usize> {
    use command::*;
    let vec = |n: usize, item: usize| 8 + n * item;
    Some(match command {
        VERSION => 4 + 4 + 32 + 8 + 32 + 2 + 8 + 18 + 1 + 8 + MAX_USER_AGENT,
        VERACK | GETADDR => 0,
        PING | PONG => 8,
        ADDR => vec(MAX_ADDRS, 18),
        INV | GETDATA | NOTFOUND => vec(MAX_INV, 36),
        GETHEADERS => vec(MAX_LOCATOR, 32) + 32,
        HEADERS => vec(MAX_HEADERS, HEADER_LEN),
        BLOCK => MAX_PAYLOAD,
        // A signed transfer has a fixed size: 4 + 8 + 33 + 20 + 8 + 8 + 64.
        TX => 145,
        SENDCMPCT => 1 + 8,
        CMPCTBLOCK | BLOCKTXN => MAX_PAYLOAD,
        GETBLOCKTXN => 32 + vec(MAX_BLOCK_TXS, 4),
        _ => return None,
    })
}

/// Why a byte stream is not a valid sequence of frames. Every one disconnects the peer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("wrong network magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("unknown command {0}")]
    UnknownCommand(u8),
    #[error("{name} frame declares {len} bytes, the limit is {max}", name = command_name(*command).unwrap_or("?"))]
    Oversized { command: u8, len: usize, max: usize },
    #[error("malformed {name} payload: {reason}", name = command_name(*command).unwrap_or("?"))]
    Malformed { command: u8, reason: String },
    #[error("{name} carries {count} items, the limit is {max}", name = command_name(*command).unwrap_or("?"))]
    TooManyItems { command: u8, count: usize, max: usize },
    /// A `version` of another protocol version: refused, but not misbehaviour.
    #[error("protocol version {0}, we speak {PROTOCOL_VERSION}")]
    UnsupportedVersion(u32),
}

/// Encodes and parses frames for one network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameCodec {
    pub magic: [u8; 4],
}

impl FrameCodec {
    /// The codec of the chain with this genesis: the magic is the first 4 bytes of the
    /// genesis hash, so nodes of different chains refuse each other's first frame.
    pub fn for_genesis(genesis_hash: &BlockHash) -> FrameCodec {
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&genesis_hash.0[..4]);
        FrameCodec { magic }
    }

    /// A whole frame: header then payload.
    pub fn encode(&self, msg: &Message) -> Vec<u8> {
        self.encode_raw(msg.command(), &msg.encode_payload())
    }

    /// The frame of a message whose payload is encoded already: a stored block's bytes
    /// go out as a `block` message without being decoded and encoded again. The same
    /// bytes as [`FrameCodec::encode`] of the decoded message.
    pub fn encode_raw(&self, command: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
        out.extend_from_slice(&self.magic);
        out.push(command);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Checks a frame header. `Ok(None)` until `buf` holds all 9 header bytes; then the
    /// command and the payload length, which is within that command's limit.
    pub fn parse_header(&self, buf: &[u8]) -> Result<Option<(u8, usize)>, WireError> {
        if buf.len() < 4 {
            // Check the magic as early as we can, so garbage is refused at once.
            if buf[..] != self.magic[..buf.len()] {
                let mut got = [0u8; 4];
                got[..buf.len()].copy_from_slice(buf);
                return Err(WireError::BadMagic(got));
            }
            return Ok(None);
        }
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&buf[..4]);
        if magic != self.magic {
            return Err(WireError::BadMagic(magic));
        }
        if buf.len() < HEADER_BYTES {
            return Ok(None);
        }
        let command = buf[4];
        let max = max_payload(command).ok_or(WireError::UnknownCommand(command))?;
        let len = u32::from_le_bytes([buf[5], buf[6], buf[7], buf[8]]) as usize;
        if len > max {
            return Err(WireError::Oversized { command, len, max });
        }
        Ok(Some((command, len)))
    }

    /// Parses one frame from the front of `buf`: `Ok(None)` while incomplete, else the
    /// message and the number of bytes it took.
    pub fn parse(&self, buf: &[u8]) -> Result<Option<(Message, usize)>, WireError> {
        let Some((command, len)) = self.parse_header(buf)? else {
            return Ok(None);
        };
        let end = HEADER_BYTES + len;
        if buf.len() < end {
            return Ok(None);
        }
        let msg = Message::decode_payload(command, &buf[HEADER_BYTES..end])?;
        Ok(Some((msg, end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> FrameCodec {
        FrameCodec { magic: [0xca, 0x1e, 0x2b, 0x03] }
    }

    fn coinbase() -> Transaction {
        Transaction::Coinbase(cairn_core::Coinbase {
            height: 1,
            to: cairn_core::Address([0x11; 20]),
            amount: cairn_core::Amount(50),
        })
    }

    #[test]
    fn a_block_sent_as_stored_bytes_is_the_same_frame() {
        let block = cairn_core::genesis::Genesis::dev().block();
        let c = codec();
        let stored = encoding::encode(&block);
        assert_eq!(c.encode_raw(command::BLOCK, &stored), c.encode(&Message::Block(Box::new(block))));
    }

    #[test]
    fn every_message_round_trips() {
        let c = codec();
        let msgs = vec![
            Message::Verack,
            Message::Ping(7),
            Message::Pong(u64::MAX),
            Message::GetAddr,
            Message::Addr(vec![NetAddr::from_socket("1.2.3.4:7333".parse().unwrap())]),
            Message::Inv(vec![InvItem::Block(BlockHash([1; 32])), InvItem::Tx(Txid([2; 32]))]),
            Message::GetData(vec![]),
            Message::NotFound(vec![InvItem::Tx(Txid([3; 32]))]),
            Message::GetHeaders(GetHeaders { locator: vec![BlockHash([4; 32])], stop: BlockHash::ZERO }),
            Message::SendCmpct(SendCmpct { high_bandwidth: false, version: CMPCT_VERSION }),
            Message::GetBlockTxn(GetBlockTxn { block_hash: BlockHash([5; 32]), indexes: vec![1, 2, 7] }),
            Message::BlockTxn(BlockTxn { block_hash: BlockHash([6; 32]), transfers: vec![] }),
            Message::CmpctBlock(Box::new(CmpctBlock {
                header: cairn_core::genesis::Genesis::dev().block().header,
                nonce: 9,
                short_ids: vec![[1, 2, 3, 4, 5, 6]],
                prefilled: vec![PrefilledTx { index: 0, tx: coinbase() }],
            })),
        ];
        for m in msgs {
            let bytes = c.encode(&m);
            let (back, used) = c.parse(&bytes).unwrap().unwrap();
            assert_eq!(back, m);
            assert_eq!(used, bytes.len());
            // Every strict prefix is incomplete, never an error.
            for cut in 0..bytes.len() {
                assert_eq!(c.parse(&bytes[..cut]), Ok(None), "{m:?} cut at {cut}");
            }
            assert!(c.encode(&m).len() - HEADER_BYTES <= max_payload(m.command()).unwrap());
        }
    }

    /// The frames documented in docs/PROTOCOL.md, rebuilt from fixed inputs.
    fn vectors() -> String {
        let genesis = cairn_core::Genesis::dev();
        let c = FrameCodec::for_genesis(&genesis.hash());
        let mut work = [0u8; 32];
        work[31] = 10;
        let version = Message::Version(Version {
            protocol_version: PROTOCOL_VERSION,
            chain_id: genesis.params.chain_id,
            genesis_hash: genesis.hash(),
            best_height: 5,
            best_work: work,
            listen_port: 7333,
            nonce: 0x1122_3344_5566_7788,
            your_addr: NetAddr::from_socket("203.0.113.7:40000".parse().expect("addr")),
            relay: true,
            user_agent: "cairn-node/0.1.0".into(),
        });
        let cases = [
            (
                "version (height 5, work 10, port 7333, nonce 0x1122334455667788, your_addr 203.0.113.7:40000, relay true, user agent \"cairn-node/0.1.0\")",
                version,
            ),
            ("verack", Message::Verack),
            ("ping 0x0102030405060708", Message::Ping(0x0102_0304_0506_0708)),
            ("getaddr", Message::GetAddr),
            ("addr [127.0.0.1:7333]", Message::Addr(vec![NetAddr::from_socket("127.0.0.1:7333".parse().expect("addr"))])),
            ("inv [block ab..ab, tx cd..cd]", Message::Inv(vec![InvItem::Block(BlockHash([0xab; 32])), InvItem::Tx(Txid([0xcd; 32]))])),
            (
                "getheaders { locator: [genesis], stop: 0 }",
                Message::GetHeaders(GetHeaders { locator: vec![genesis.hash()], stop: BlockHash::ZERO }),
            ),
        ];
        // Compact blocks: the short id of txid cd..cd under the genesis header and nonce
        // 0x0102030405060708 is pinned by the cmpctblock frame.
        let nonce = 0x0102_0304_0506_0708;
        let key = crate::p2p::protocol::compact::short_id_key(&genesis.block().header, nonce);
        let sid = crate::p2p::protocol::compact::short_id(key, &Txid([0xcd; 32]));
        let coinbase = Transaction::Coinbase(cairn_core::Coinbase {
            height: 1,
            to: cairn_core::Address([0x11; 20]),
            amount: cairn_core::Amount(50),
        });
        let compact_cases = [
            ("sendcmpct { high_bandwidth: true, version: 1 }", Message::SendCmpct(SendCmpct { high_bandwidth: true, version: 1 })),
            (
                "cmpctblock { header: dev genesis, nonce: 0x0102030405060708, short_ids: [short id of txid cd..cd], prefilled: [0: coinbase { height: 1, to: 11..11, amount: 50 }] }",
                Message::CmpctBlock(Box::new(CmpctBlock {
                    header: genesis.block().header,
                    nonce,
                    short_ids: vec![sid],
                    prefilled: vec![PrefilledTx { index: 0, tx: coinbase }],
                })),
            ),
            ("getblocktxn { block_hash: ab..ab, indexes: [1, 3] }", Message::GetBlockTxn(GetBlockTxn { block_hash: BlockHash([0xab; 32]), indexes: vec![1, 3] })),
            ("blocktxn { block_hash: ab..ab, transfers: [] }", Message::BlockTxn(BlockTxn { block_hash: BlockHash([0xab; 32]), transfers: vec![] })),
        ];
        let mut out =
            format!("Dev genesis hash `{}`, so the magic is `{}`.\n\n", genesis.hash(), hex::encode(c.magic));
        for (what, msg) in cases {
            out.push_str(&format!("- {what}:\n\n  ```\n  {}\n  ```\n\n", hex::encode(c.encode(&msg))));
        }
        out.push_str(&format!("Compact blocks (the short id is `{}`):\n\n", hex::encode(sid)));
        for (what, msg) in compact_cases {
            out.push_str(&format!("- {what}:\n\n  ```\n  {}\n  ```\n\n", hex::encode(c.encode(&msg))));
        }
        out
    }

    #[test]
    fn protocol_md_test_vectors() {
        let doc = include_str!("../../../docs/PROTOCOL.md");
        let v = vectors();
        assert!(doc.contains(&v), "docs/PROTOCOL.md test vectors are out of date; expected:\n{v}");
    }

    #[test]
    fn a_version_1_peer_is_refused_by_its_version_number() {
        // A version-1 body: the fields up to the nonce, then the user agent, without
        // `your_addr` and `relay`. It does not decode as ours; the number says why.
        let mut v1 = 1u32.to_le_bytes().to_vec();
        v1.extend_from_slice(&[0u8; 4 + 32 + 8 + 32 + 2 + 8]);
        v1.extend_from_slice(&4u64.to_le_bytes());
        v1.extend_from_slice(b"old!");
        let err = Message::decode_payload(command::VERSION, &v1).unwrap_err();
        assert_eq!(err, WireError::UnsupportedVersion(1));
        assert_eq!(err.to_string(), "protocol version 1, we speak 2");
        // Too short to hold the number: malformed, like any other short body.
        assert!(matches!(
            Message::decode_payload(command::VERSION, &[2, 0]),
            Err(WireError::Malformed { .. })
        ));
        // A `relay` byte other than 0 or 1 is malformed.
        let c = codec();
        let v = Version {
            protocol_version: PROTOCOL_VERSION,
            chain_id: 1,
            genesis_hash: BlockHash::ZERO,
            best_height: 0,
            best_work: [0; 32],
            listen_port: 0,
            nonce: 1,
            your_addr: NetAddr::from_socket("11.1.0.1:7333".parse().unwrap()),
            relay: false,
            user_agent: String::new(),
        };
        let mut payload = Message::Version(v.clone()).encode_payload();
        assert_eq!(
            c.parse(&c.encode(&Message::Version(v))).unwrap().unwrap().1,
            HEADER_BYTES + payload.len()
        );
        let relay_at = payload.len() - 8 - 1;
        payload[relay_at] = 2;
        assert!(matches!(
            Message::decode_payload(command::VERSION, &payload),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn compact_messages_with_bad_indexes_are_malformed() {
        let header = cairn_core::genesis::Genesis::dev().block().header;
        let coinbase = coinbase();
        let cmpct = |short_ids: usize, idx: &[u32]| {
            let prefilled = idx.iter().map(|i| PrefilledTx { index: *i, tx: coinbase }).collect();
            Message::CmpctBlock(Box::new(CmpctBlock {
                header,
                nonce: 1,
                short_ids: vec![[0; 6]; short_ids],
                prefilled,
            }))
            .encode_payload()
        };
        assert!(Message::decode_payload(command::CMPCTBLOCK, &cmpct(2, &[0, 2])).is_ok());
        for (n, idx) in [(2, &[0u32, 4][..]), (2, &[1, 1]), (0, &[2, 0])] {
            assert!(
                matches!(
                    Message::decode_payload(command::CMPCTBLOCK, &cmpct(n, idx)),
                    Err(WireError::Malformed { .. })
                ),
                "{n} short ids, prefilled {idx:?}"
            );
        }
        let get = |idx: Vec<u32>| {
            Message::GetBlockTxn(GetBlockTxn { block_hash: BlockHash::ZERO, indexes: idx }).encode_payload()
        };
        assert!(Message::decode_payload(command::GETBLOCKTXN, &get(vec![1, 5])).is_ok());
        assert!(Message::decode_payload(command::GETBLOCKTXN, &get(vec![5, 1])).is_err());
        assert!(Message::decode_payload(command::GETBLOCKTXN, &get(vec![1; MAX_BLOCK_TXS + 1])).is_err());
        // A bool that is neither 0 nor 1.
        assert!(Message::decode_payload(command::SENDCMPCT, &[2, 1, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn net_addr_maps_ipv4() {
        let a: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(NetAddr::from_socket(a).to_socket(), a);
        let b: SocketAddr = "[2001:db8::1]:7333".parse().unwrap();
        assert_eq!(NetAddr::from_socket(b).to_socket(), b);
    }

    #[test]
    fn oversized_and_unknown_frames_fail_on_the_header() {
        let c = codec();
        let mut f = c.magic.to_vec();
        f.push(command::BLOCK);
        f.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(c.parse(&f), Err(WireError::Oversized { .. })));
        let mut f = c.magic.to_vec();
        f.push(command::PING);
        f.extend_from_slice(&9u32.to_le_bytes());
        assert!(matches!(c.parse(&f), Err(WireError::Oversized { .. })));
        let mut f = c.magic.to_vec();
        f.push(200);
        assert!(matches!(c.parse(&f), Ok(None)));
        f.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(c.parse(&f), Err(WireError::UnknownCommand(200)));
        assert!(matches!(c.parse(&[0xca, 0x00]), Err(WireError::BadMagic(_))));
    }

    #[test]
    fn trailing_bytes_and_bad_counts_are_malformed() {
        let c = codec();
        // In a frame, a payload one byte longer than the command allows is refused on
        // the header, before the payload is read.
        let mut f = c.encode(&Message::Ping(1));
        f[5] = 9;
        f.push(0);
        assert!(matches!(c.parse(&f), Err(WireError::Oversized { command: command::PING, len: 9, max: 8 })));
        let mut f = c.encode(&Message::Verack);
        f[5] = 1;
        f.push(0);
        assert!(matches!(
            c.parse(&f),
            Err(WireError::Oversized { command: command::VERACK, len: 1, max: 0 })
        ));
        // A payload with bytes after the value is malformed, bodiless commands included.
        for (cmd, payload) in [
            (command::VERACK, vec![0u8]),
            (command::GETADDR, vec![0u8]),
            (command::PING, vec![0u8; 9]),
            (command::ADDR, [0u64.to_le_bytes().to_vec(), vec![0]].concat()),
        ] {
            match Message::decode_payload(cmd, &payload) {
                Err(WireError::Malformed { command, reason }) => {
                    assert_eq!(command, cmd);
                    assert!(reason.contains("trailing"), "{reason}");
                }
                other => panic!("command {cmd} with a trailing byte: {other:?}"),
            }
        }
        // An inv whose count claims more items than it holds.
        let mut payload = 3u64.to_le_bytes().to_vec();
        payload.extend_from_slice(&[0u8; 36]);
        assert!(Message::decode_payload(command::INV, &payload).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let c = codec();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if rng.gen_bool(0.8) && b.len() >= 9 {
                b[..4].copy_from_slice(&c.magic);
                b[4] = rng.gen_range(0..18);
                let l = (b.len() - 9) as u32;
                b[5..9].copy_from_slice(&l.to_le_bytes());
            }
            let _ = c.parse(&b);
        }
    }
}
