//! The machine's limits, measured in the same run as the scenarios: single-thread
//! signature verification, raw SHA-256 compressions, loopback TCP round trips. (The
//! do-nothing jsonrpsee method is measured with the RPC scenario, on the same server.)

use cairn_core::SignedTransfer;
use sha2::digest::generic_array::GenericArray;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Single-thread k256 verifications per second over `txs`, for at least `duration`.
/// Returns (per wall-clock second, per CPU-second of the measuring thread): on a shared
/// machine the first is what the thread was given, the second what a core can do.
pub fn verify_rate(txs: &[&SignedTransfer], chain_id: u32, duration: Duration) -> (f64, f64) {
    checks_per_second(txs, duration, |t| t.verify(chain_id))
}

/// The loop of the single-thread rates: `check` over `txs` in turn, 64 at a time, for at
/// least `duration`. Returns (per wall-clock second, per CPU-second of this thread).
fn checks_per_second<E: std::fmt::Debug>(
    txs: &[&SignedTransfer],
    duration: Duration,
    check: impl Fn(&SignedTransfer) -> Result<(), E>,
) -> (f64, f64) {
    let cpu0 = cpu_secs_of("/proc/thread-self/stat");
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < duration {
        for _ in 0..64 {
            black_box(check(black_box(txs[n % txs.len()]))).expect("generated transfers are valid");
            n += 1;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_secs_of("/proc/thread-self/stat") - cpu0;
    (n as f64 / wall, n as f64 / cpu)
}

/// Single-thread verifications per second over `txs` through k256's own
/// `VerifyingKey::verify_prehash` (ecdsa 0.17's equation, constant-time inversion at
/// the end) instead of Cairn's check (`cairn_core::ecdsa`): the same loop as
/// [`verify_rate`], for comparison. Returns (per wall-clock second, per CPU-second).
pub fn k256_own_verify_rate(txs: &[&SignedTransfer], duration: Duration) -> (f64, f64) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    use k256::ecdsa::{Signature, VerifyingKey};
    let check = |t: &SignedTransfer| -> Result<(), k256::ecdsa::Error> {
        let sig = Signature::from_slice(&t.signature)?;
        let key = VerifyingKey::from_sec1_bytes(&t.transfer.from)?;
        key.verify_prehash(&t.transfer.signing_hash(), &sig)
    };
    checks_per_second(txs, duration, check)
}

/// Single-thread libsecp256k1 verifications per second over `txs` (issue 17's second
/// yardstick), measured as [`verify_rate`] measures k256: each round computes the
/// transfer's signing hash, parses the 64-byte signature, decompresses the 33-byte
/// public key and verifies (libsecp256k1 rejects high-S itself). Only the library
/// differs. Returns (per wall-clock second, per CPU-second of the measuring thread).
pub fn libsecp_verify_rate(txs: &[&SignedTransfer], duration: Duration) -> (f64, f64) {
    use secp256k1::{ecdsa, Message, PublicKey};
    let check = |t: &SignedTransfer| -> Result<(), secp256k1::Error> {
        let sig = ecdsa::Signature::from_compact(&t.signature)?;
        let key = PublicKey::from_byte_array_compressed(t.transfer.from)?;
        ecdsa::verify(&sig, Message::from_digest(t.transfer.signing_hash()), &key)
    };
    checks_per_second(txs, duration, check)
}

/// Verifications per second with every core busy (rayon), right now: what the machine
/// gives this process at the moment, which on a shared machine is less than
/// single-thread x cores.
pub fn verify_rate_parallel(txs: &[&SignedTransfer], chain_id: u32, duration: Duration) -> f64 {
    use rayon::prelude::*;
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < duration {
        txs.par_iter().for_each(|t| t.verify(chain_id).expect("generated transfers are valid"));
        n += txs.len();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// CPU time (user + system) this process has used so far, in seconds, from
/// /proc/self/stat (clock ticks of 1/100 s, Linux's USER_HZ).
pub fn cpu_secs() -> f64 {
    cpu_secs_of("/proc/self/stat")
}

/// CPU time (user + system) of the thread or process whose `stat` file this is, in
/// seconds.
pub fn cpu_secs_of(stat_file: &str) -> f64 {
    let f = stat_fields(stat_file);
    let ticks = |i: usize| field(&f, i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(14) + ticks(15)) / 100.0
}

/// Minor page faults process `pid` has taken so far, all its threads together (field
/// 10 of `/proc/PID/stat`): each is a page of memory touched for the first time.
pub fn minor_faults(pid: u32) -> u64 {
    let f = stat_fields(&format!("/proc/{pid}/stat"));
    field(&f, 10).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The fields of a `stat` file after the command name (which may hold spaces and
/// parentheses, so it is cut at the last `)`); empty when the file cannot be read.
fn stat_fields(stat_file: &str) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(stat_file) else { return Vec::new() };
    let Some((_, rest)) = text.rsplit_once(')') else { return Vec::new() };
    rest.split_whitespace().map(str::to_string).collect()
}

/// Field `n` of a `stat` file, numbered as in proc(5) (state is field 3, the first
/// after the command name).
fn field(fields: &[String], n: usize) -> Option<&str> {
    fields.get(n.checked_sub(3)?).map(String::as_str)
}

/// The threads of process `pid` (`"self"` for this one): each thread's id and its
/// `/proc/PID/task/TID` directory.
pub fn threads_of(pid: &str) -> Vec<(u32, std::path::PathBuf)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    dir.flatten().filter_map(|t| Some((t.file_name().to_str()?.parse().ok()?, t.path()))).collect()
}

/// The three fields of a thread's `schedstat` (its `/proc/PID/task/TID` directory):
/// nanoseconds run, nanoseconds waited for a core, times put on a core. `None` once the
/// thread has ended.
pub fn schedstat(thread_dir: &std::path::Path) -> Option<[u64; 3]> {
    let text = std::fs::read_to_string(thread_dir.join("schedstat")).ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// CPU time each thread of process `pid` has run so far, ns, by thread id (the first
/// field of its `schedstat`). A thread that ends between two readings is missed; one
/// that starts counts from zero.
pub fn threads_cpu_ns(pid: u32) -> std::collections::HashMap<u32, u64> {
    threads_of(&pid.to_string())
        .into_iter()
        .filter_map(|(tid, dir)| Some((tid, schedstat(&dir)?[0])))
        .collect()
}

/// The CPU the threads ran between two readings of [`threads_cpu_ns`], ms.
pub fn cpu_between_ms(
    before: &std::collections::HashMap<u32, u64>,
    after: &std::collections::HashMap<u32, u64>,
) -> f64 {
    let ns: u64 = after.iter().map(|(tid, a)| a.saturating_sub(before.get(tid).copied().unwrap_or(0))).sum();
    ns as f64 / 1e6
}

/// SHA-256 compression-function runs per second on one thread (`sha2::compress256`,
/// which uses the CPU's SHA extensions when it has them, as the miner does), fed 64
/// blocks per call so that the call's own cost is spread thin.
pub fn sha256_compressions_per_second(duration: Duration) -> f64 {
    let mut state =
        [0x6a09e667u32, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut blocks = [GenericArray::from([0u8; 64]); 64];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        for i in 0..256u32 {
            blocks[0][..4].copy_from_slice(&i.to_le_bytes());
            sha2::compress256(&mut state, black_box(&blocks));
        }
        n += 256 * 64;
    }
    black_box(state);
    n as f64 / start.elapsed().as_secs_f64()
}

/// Median round trip of a 1-byte ping-pong over a loopback TCP connection, in µs.
pub fn loopback_rtt_us(rounds: usize) -> std::io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read(&mut b)? == 1 {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut samples = Vec::with_capacity(rounds);
    let mut b = [7u8; 1];
    for _ in 0..rounds {
        let t = Instant::now();
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(c);
    let _ = echo.join();
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}
