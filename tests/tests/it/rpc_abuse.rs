//! Abuse of the JSON-RPC server of a real `cairn-node --dev` process, beyond the
//! well-formed-but-wrong requests of node/tests/it/rpc_api.rs: bytes that are not UTF-8,
//! nesting that would overflow a recursive parser, huge batches and params, lying HTTP
//! framing, 1 000 concurrent connections and clients that send their headers a byte
//! at a time and stall. Every request gets a JSON-RPC error, an HTTP error status, or
//! a closed connection, and the node keeps serving honest clients.
#![allow(clippy::unwrap_used)]

use cairn_tests::*;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn dev_node(tmp: &tempfile::TempDir) -> NodeProcess {
    NodeProcess::start(&tmp.path().join("node"), &NodeOptions { dev: true, ..NodeOptions::default() })
        .unwrap()
}

fn rpc_addr(node: &NodeProcess) -> SocketAddr {
    node.rpc_url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap()
}

/// How the server answered one raw HTTP exchange.
#[derive(Debug)]
enum Answer {
    Http { status: u16, body: String },
    Closed,
}

/// Sends `raw` bytes as they are and reads the answer (or the close) within `timeout`.
fn exchange(addr: SocketAddr, raw: &[u8], timeout: Duration) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    if s.write_all(raw).is_err() {
        return Answer::Closed;
    }
    read_answer(&mut s)
}

fn read_answer(s: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if complete(&raw) {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no answer in time; got {:?}", String::from_utf8_lossy(&raw))
            }
            Err(_) => break,
        }
    }
    if raw.is_empty() {
        return Answer::Closed;
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Answer::Http { status, body: body.to_string() }
}

/// True once `raw` holds a whole response with a Content-Length body.
fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let len = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse::<usize>().ok());
    len.is_some_and(|n| body.len() >= n)
}

fn post(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The answer must be a JSON-RPC error (code in the JSON-RPC range), an HTTP error
/// status, or a closed connection: anything but a success or a hang.
fn assert_refused(case: &str, a: &Answer) {
    match a {
        Answer::Closed => {}
        Answer::Http { status, .. } if *status >= 400 => {}
        Answer::Http { status: 200, body } => {
            let v: Value =
                serde_json::from_str(body).unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {body}"));
            let errors: Vec<&Value> = match &v {
                Value::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            assert!(!errors.is_empty(), "{case}: empty answer");
            for e in errors {
                let code =
                    e["error"]["code"].as_i64().unwrap_or_else(|| panic!("{case}: not an error: {body}"));
                assert!((-32768..=-32000).contains(&code) || code < 0, "{case}: code {code}");
            }
        }
        other => panic!("{case}: unexpected answer {other:?}"),
    }
}

#[test]
fn rpc_junk_gets_errors_and_the_node_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let node = dev_node(&tmp);
    let addr = rpc_addr(&node);
    let t = Duration::from_secs(20);
    let monitor = adversary::HealthMonitor::start(&node.rpc_url, node.pid().unwrap());

    // Bytes that are not UTF-8.
    assert_refused("invalid UTF-8", &exchange(addr, &post(&[0xff, 0xfe, 0x7b, 0x80, 0xc3, 0x28]), t));
    // Valid JSON with an invalid UTF-8 byte inside a string.
    let mut body = br#"{"jsonrpc":"2.0","id":1,"method":"state_getAccount","params":[""#.to_vec();
    body.extend_from_slice(&[0xc3, 0x28, 0xa0, 0xa1]);
    body.extend_from_slice(br#""]}"#);
    assert_refused("invalid UTF-8 in a string", &exchange(addr, &post(&body), t));
    // Nesting 200 000 deep: a recursive parser without a limit would overflow its stack.
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"chain_getBlockHash","params":{}{}}}"#,
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let a = exchange(addr, &post(deep.as_bytes()), t);
    assert_refused("deep nesting", &a);
    // A batch of 9 000 calls (under the body limit, far over the batch limit).
    let calls: Vec<String> =
        (0..9000).map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"chain_getInfo"}}"#)).collect();
    let batch = format!("[{}]", calls.join(","));
    assert!(batch.len() < 512 * 1024);
    let a = exchange(addr, &post(batch.as_bytes()), t);
    assert_refused("huge batch", &a);
    // Refused as a whole, with the invalid-request code (not tx_submit's -32010).
    let Answer::Http { status: 200, body } = &a else { panic!("huge batch: {a:?}") };
    assert_eq!(serde_json::from_str::<Value>(body).unwrap()["error"]["code"], -32600, "{body}");
    // Huge params: a 400 KB address, 60 000 params, a height past u64.
    let long = json!({"jsonrpc":"2.0","id":1,"method":"state_getAccount","params":["a".repeat(400_000)]});
    assert_refused("400 KB address", &exchange(addr, &post(long.to_string().as_bytes()), t));
    let huge = json!({"jsonrpc":"2.0","id":1,"method":"chain_getBlockHash","params":[vec![1; 60_000]]});
    assert_refused(
        "a 60 000-element array as a height",
        &exchange(addr, &post(huge.to_string().as_bytes()), t),
    );
    // Surplus positional params are ignored by jsonrpsee (lenient, documented in
    // docs/SECURITY.md): 60 000 of them are still answered at once.
    let many = json!({"jsonrpc":"2.0","id":1,"method":"chain_getBlockHash","params":vec![0; 60_000]});
    match exchange(addr, &post(many.to_string().as_bytes()), t) {
        Answer::Http { status: 200, body } => {
            assert!(body.contains("\"result\"") || body.contains("\"error\""), "{body}")
        }
        other => panic!("60 000 params: {other:?}"),
    }
    let big = br#"{"jsonrpc":"2.0","id":1,"method":"chain_getBlockHash","params":[18446744073709551616]}"#;
    assert_refused("height past u64", &exchange(addr, &post(big), t));
    let neg = br#"{"jsonrpc":"2.0","id":1,"method":"chain_getBlockByHeight","params":[-1]}"#;
    assert_refused("negative height", &exchange(addr, &post(neg), t));
    let float = br#"{"jsonrpc":"2.0","id":1,"method":"chain_getBlockHash","params":[1e400]}"#;
    assert_refused("1e400", &exchange(addr, &post(float), t));
    let obj = br#"{"jsonrpc":"2.0","id":1,"method":"tx_submit","params":{"hex":{"a":[1,2]}}}"#;
    assert_refused("object params of the wrong shape", &exchange(addr, &post(obj), t));
    // A method name of 300 KB.
    let name = json!({"jsonrpc":"2.0","id":1,"method":"m".repeat(300_000)});
    assert_refused("300 KB method name", &exchange(addr, &post(name.to_string().as_bytes()), t));
    // Lying HTTP framing: a Content-Length larger than the body, then the client closes
    // its side; a chunked body declaring a chunk of 2^60 bytes.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(t)).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\":")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_refused("short body", &read_answer(&mut s));
    let chunked = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n{}";
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(t)).unwrap();
    s.write_all(chunked).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_refused("2^60-byte chunk", &read_answer(&mut s));
    // Not HTTP at all.
    assert_refused("binary junk", &exchange(addr, &adversary::random_bytes(2000), t));

    // Still serving, and every health sample during the abuse answered within 1 s.
    assert_eq!(node.info().unwrap()["chain_id"], json!(cairn_core::genesis::DEV_CHAIN_ID));
    let h = monitor.finish();
    eprintln!(
        "rpc junk: slowest getInfo {:?} over {} samples, max RSS {} MiB",
        h.max_rpc,
        h.samples,
        h.max_rss_kib / 1024
    );
    assert_eq!(h.rpc_failures, 0, "{}", h.last_error);
    assert!(h.max_rpc < Duration::from_secs(1), "{:?}", h.max_rpc);
}

#[test]
fn rpc_survives_a_thousand_connections_and_slow_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let node = dev_node(&tmp);
    let addr = rpc_addr(&node);
    let request = post(br#"{"jsonrpc":"2.0","id":1,"method":"chain_getInfo"}"#);

    // 1 000 connections at once, each with a request written before any is read.
    let started = Instant::now();
    let mut conns: Vec<TcpStream> = Vec::new();
    let mut refused_connect = 0;
    for _ in 0..1000 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let _ = s.write_all(&request);
                conns.push(s);
            }
            Err(_) => refused_connect += 1,
        }
    }
    let (mut ok, mut busy, mut closed) = (0, 0, 0);
    for s in conns.iter_mut() {
        match read_answer(s) {
            Answer::Http { status: 200, body } => {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert!(v["result"]["height"].is_u64(), "{body}");
                ok += 1;
            }
            Answer::Http { status, .. } if status >= 400 => busy += 1,
            Answer::Closed => closed += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    drop(conns);
    eprintln!(
        "1000 connections: {ok} answered, {busy} refused with an HTTP error, {closed} closed, \
         {refused_connect} not connected, in {:?}",
        started.elapsed()
    );
    assert_eq!(ok + busy + closed + refused_connect, 1000);
    assert!(ok > 0);
    node.info().unwrap();

    // Slow clients: 200 connections dripping a request header a byte at a time. While
    // they drip, an honest client is still answered.
    let header = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n";
    let mut slow: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .inspect(|s| s.set_write_timeout(Some(Duration::from_secs(1))).unwrap())
        .collect();
    let mut worst = Duration::ZERO;
    let mut calls = 0;
    let start = Instant::now();
    let mut dripped = 0;
    // One byte every 100 ms (pacing the attack, not synchronising), 40 bytes in all;
    // honest calls back to back meanwhile.
    while dripped < 40 {
        if start.elapsed() >= Duration::from_millis(100) * dripped as u32 {
            slow.retain_mut(|s| s.write_all(&header[dripped..dripped + 1]).is_ok());
            dripped += 1;
        }
        let t = Instant::now();
        node.info().unwrap();
        worst = worst.max(t.elapsed());
        calls += 1;
    }
    eprintln!(
        "slow clients: {} of 200 still open after {:?} of dripping; {calls} honest calls, slowest {worst:?}",
        slow.len(),
        start.elapsed()
    );
    assert!(worst < Duration::from_secs(1), "an honest call took {worst:?} while slow clients dripped");
    drop(slow);
    node.info().unwrap();
}
