//! Nonce assignment that several wallet processes can share.
//!
//! Every transfer from an address needs the next free nonce. Two `cairn-wallet send`
//! processes that ask the node for it at the same moment get the same answer and sign
//! two different transfers with one nonce; the node keeps the first and refuses the
//! second as an underpaid replacement. To prevent that, a process that sends from an
//! address holds an exclusive lock on `<wallet-dir>/nonces/<address>.lock` from reading
//! the nonce until the node has answered (and the answer is recorded), so the next
//! process reads a nonce that counts the transfer before it.
//!
//! The lock is a real OS lock (`flock(2)` on the open file): it is released when the
//! process closes the file or dies, so a killed wallet never leaves a stale lock behind.
//! The lock file itself stays (it is empty and harmless).
//!
//! Beside it, `<wallet-dir>/nonces/<address>.json` is the [`NonceBook`]: the transfers
//! this wallet handed a nonce to and that the node had not confirmed when last seen
//! (nonce, txid, fee, amount, recipient). The node's `pending_nonce` stays the source of
//! truth for the next nonce; the book is what lets the wallet name the transfer that
//! holds a nonce, and say which transfer replaced one it is waiting for. Records are
//! dropped once the node's confirmed nonce passes them or the transfer is no longer
//! pending at the node. The book is replaced atomically (write, then rename), so a reader
//! without the lock sees an old or a new book, never half of one.

use crate::rpc::Node;
use anyhow::{Context, Result};
use cairn_core::{Address, Txid};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of the sub-directory of the wallet dir that holds locks and books.
pub const NONCES_DIR: &str = "nonces";
/// How long a process waits for another one sending from the same address.
const LOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a wait for the lock lasts before the wallet says on stderr that it waits.
const LOCK_NOTICE_AFTER: Duration = Duration::from_secs(2);
/// How often it tries the lock again while waiting.
const LOCK_POLL: Duration = Duration::from_millis(10);
/// Books are small; a larger file is not one of ours.
const MAX_BOOK_BYTES: u64 = 4 * 1024 * 1024;

/// A transfer the wallet signed and the node admitted, not yet seen confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handed {
    pub nonce: u64,
    pub txid: Txid,
    pub fee: u64,
    pub amount: u64,
    pub to: Address,
    /// When it was submitted, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct BookFile {
    address: Option<Address>,
    pending: Vec<Handed>,
}

fn dir_of(wallet_dir: &Path) -> PathBuf {
    wallet_dir.join(NONCES_DIR)
}

fn book_path(wallet_dir: &Path, address: &Address) -> PathBuf {
    dir_of(wallet_dir).join(format!("{address}.json"))
}

/// Reads the book of `address` without taking the lock (for reports and waiting): the
/// records as last saved, or none if there is no readable book.
pub fn read_book(wallet_dir: &Path, address: &Address) -> Vec<Handed> {
    let path = book_path(wallet_dir, address);
    let Ok(file) = File::open(&path) else { return Vec::new() };
    let mut text = String::new();
    use std::io::Read;
    if file.take(MAX_BOOK_BYTES).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    // A damaged book is ignored (and rewritten at the next send): the node's nonce is the
    // truth, the book only adds names to it.
    serde_json::from_str::<BookFile>(&text).map(|b| b.pending).unwrap_or_default()
}

/// The exclusive right to hand out nonces of one address, and its book. Dropping it
/// releases the lock.
pub struct NonceBook {
    _lock: File,
    wallet_dir: PathBuf,
    address: Address,
    pending: Vec<Handed>,
}

impl NonceBook {
    /// Takes the lock of `address` (waiting while another process holds it, saying so once
    /// on stderr when `quiet` is false) and reads its book.
    pub fn lock(wallet_dir: &Path, address: &Address, quiet: bool) -> Result<NonceBook> {
        let dir = dir_of(wallet_dir);
        create_private_dir(&dir)?;
        let path = dir.join(format!("{address}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        let started = Instant::now();
        let deadline = started + LOCK_TIMEOUT;
        let mut told = false;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {}
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("cannot lock {}", path.display()))
                }
            }
            // Parallel sends wait here briefly as a matter of course; say so only when it lasts.
            if !told && !quiet && started.elapsed() >= LOCK_NOTICE_AFTER {
                eprintln!("waiting for another cairn-wallet process that is sending from {address}...");
                told = true;
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "another cairn-wallet process has been sending from {address} for more than {} s \
                     (it holds {}); try again when it is done",
                    LOCK_TIMEOUT.as_secs(),
                    path.display()
                );
            }
            std::thread::sleep(LOCK_POLL);
        }
        let pending = read_book(wallet_dir, address);
        Ok(NonceBook { _lock: file, wallet_dir: wallet_dir.to_path_buf(), address: *address, pending })
    }

    /// The records, in nonce order.
    pub fn pending(&self) -> &[Handed] {
        &self.pending
    }

    /// The record of `nonce`, if any.
    pub fn get(&self, nonce: u64) -> Option<&Handed> {
        self.pending.iter().find(|h| h.nonce == nonce)
    }

    /// Drops the records the node's confirmed nonce `state_nonce` has passed, and those
    /// whose transfer the node no longer holds as pending (confirmed, replaced, evicted,
    /// expired). Asks the node about each remaining record.
    pub async fn prune(&mut self, node: &Node, state_nonce: u64) -> Result<()> {
        self.pending.retain(|h| h.nonce >= state_nonce);
        let mut kept = Vec::with_capacity(self.pending.len());
        for h in std::mem::take(&mut self.pending) {
            let status = node.transaction(&h.txid).await?;
            if status.is_some_and(|s| s.status == "pending") {
                kept.push(h);
            }
        }
        self.pending = kept;
        Ok(())
    }

    /// Records a transfer the node admitted (a replacement takes its nonce's place).
    pub fn record(&mut self, handed: Handed) {
        self.pending.retain(|h| h.nonce != handed.nonce);
        self.pending.push(handed);
        self.pending.sort_by_key(|h| h.nonce);
    }

    /// Writes the book (atomically: a temporary file renamed over the old one).
    pub fn save(&self) -> Result<()> {
        let path = book_path(&self.wallet_dir, &self.address);
        let tmp = path.with_extension("json.tmp");
        let body = BookFile { address: Some(self.address), pending: self.pending.clone() };
        let text = serde_json::to_string_pretty(&body).context("cannot encode the nonce book")?;
        let mut f = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    }
}

/// Creates `dir` (and parents) with mode 0700 on Unix.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handed(nonce: u64) -> Handed {
        Handed { nonce, txid: Txid([nonce as u8; 32]), fee: 1, amount: 2, to: Address([3; 20]), at_ms: 4 }
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Address([7; 20]);
        let first = NonceBook::lock(tmp.path(), &a, true).unwrap();
        // A second open file description of the same lock file cannot take it.
        let path = tmp.path().join(NONCES_DIR).join(format!("{a}.lock"));
        let other = File::open(&path).unwrap();
        assert!(rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err());
        drop(first);
        assert!(rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok());
    }

    #[test]
    fn book_round_trips_and_replacement_takes_the_nonce() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Address([7; 20]);
        let mut book = NonceBook::lock(tmp.path(), &a, true).unwrap();
        book.record(handed(1));
        book.record(handed(0));
        let mut newer = handed(1);
        newer.fee = 9;
        book.record(newer.clone());
        book.save().unwrap();
        drop(book);
        assert_eq!(read_book(tmp.path(), &a), vec![handed(0), newer]);
        // A damaged book reads as empty rather than failing a send.
        fs::write(book_path(tmp.path(), &a), "{not json").unwrap();
        assert!(read_book(tmp.path(), &a).is_empty());
    }
}
