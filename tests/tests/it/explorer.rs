//! The block explorer served by `cairn-node` on its RPC port (node/src/explorer.rs):
//! plain HTTP checks of what is served and that JSON-RPC and WebSocket upgrades are
//! unchanged, then the page itself in a real headless Chromium (Debian package
//! `chromium`, installed by `scripts/setup.sh --test`) against a real `--dev` node and a
//! transfer sent by the real wallet; and driven over the DevTools protocol to watch it
//! update live and measure it on a 375-px-wide screen.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use anyhow::{Context, Result};
use cairn_tests::*;
use serde_json::json;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PW: &str = "correct horse battery staple";

/// One raw HTTP/1.1 request (`head_lines` after the request line, without the blank
/// line); returns the status, the headers (lower-cased names) and the body.
fn http(
    addr: SocketAddr,
    request_line: &str,
    head_lines: &[&str],
) -> Result<(u16, HashMap<String, String>, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{request_line}\r\nHost: {addr}\r\n");
    for l in head_lines {
        req.push_str(l);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    // A 101 answer keeps the connection open: read what came, up to the timeout.
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) if !raw.is_empty() => break,
            Err(e) => return Err(e.into()),
        }
        // Done at the end of a 101's head, or of a body of the declared length (a
        // server may keep the connection open despite `Connection: close`).
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let declared = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if raw.starts_with(b"HTTP/1.1 101") || declared.is_some_and(|n| raw.len() >= end + 4 + n) {
                break;
            }
        }
    }
    let raw = String::from_utf8(raw).context("the answer is not UTF-8")?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no end of headers")?;
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, body.to_string()))
}

fn get(addr: SocketAddr, path: &str) -> (u16, HashMap<String, String>, String) {
    http(addr, &format!("GET {path} HTTP/1.1"), &["Connection: close"]).unwrap()
}

#[test]
fn the_node_serves_the_explorer_page_beside_json_rpc() {
    let node = NodeProcess::start_dev(bin("cairn-node"), &["--no-mine"]);
    let addr = node.rpc_addr;

    let (status, h, body) = get(addr, "/");
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert!(body.contains(r#"<script src="/app.js""#), "{body}");
    for (path, ct, needle) in [
        ("/app.js", "text/javascript; charset=utf-8", "chain_getInfo"),
        ("/style.css", "text/css; charset=utf-8", "body {"),
    ] {
        let (status, h, body) = get(addr, path);
        assert_eq!((status, h["content-type"].as_str()), (200, ct), "{path}");
        assert!(body.contains(needle), "{path}: {body}");
    }
    // Every answer of the explorer (the page, an asset, a 404) carries the policy.
    for path in ["/", "/app.js", "/style.css", "/nope"] {
        let (_, h, _) = get(addr, path);
        let csp = &h["content-security-policy"];
        assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
    }
    for path in ["/nope", "/app.js/", "/index.html", "/../Cargo.toml", "/metrics", "/.cookie"] {
        let (status, _, body) = get(addr, path);
        assert_eq!(status, 404, "GET {path}: {body}");
    }
    let (status, _, body) = http(addr, "HEAD / HTTP/1.1", &["Connection: close"]).unwrap();
    assert_eq!((status, body.as_str()), (200, ""));

    // JSON-RPC on POST / is unchanged, and so are its refusals of other methods.
    assert_eq!(node.info().unwrap()["height"], 0);
    assert_eq!(node.rpc("rpc_ping", json!([])).unwrap(), "pong");
    let (status, _, _) = http(addr, "PUT / HTTP/1.1", &["Content-Length: 0", "Connection: close"]).unwrap();
    assert_ne!(status, 200, "PUT / is not served");
    // The admin methods still need the cookie.
    assert!(node.rpc("net_addPeer", json!(["127.0.0.1:1"])).is_err());

    // A WebSocket upgrade of GET / still reaches the RPC server (101), and the socket
    // serves the subscription.
    let (status, h, _) = http(
        addr,
        "GET / HTTP/1.1",
        &[
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ],
    )
    .unwrap();
    assert_eq!(status, 101, "{h:?}");
    assert_eq!(h["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/// `chromium` on the PATH, or `None`: a failure under CI (CI=true), a skip elsewhere.
fn chromium() -> Option<PathBuf> {
    cairn_tests::test_tool("chromium", "chromium")
}

/// Loads `url` in `b` afresh (through `about:blank`, so nothing of the page before is
/// left), waits until the JavaScript expression `ready` is truthy, and returns the page's
/// HTML. The page is asked when it is done rather than left to `--dump-dom` with
/// `--virtual-time-budget`, whose virtual clock stands still while the page is fetching:
/// a CI run failed with Chromium not finishing the overview within a minute while the
/// dev node mined a burst of blocks (each one a redraw: more fetching).
fn dump(b: &mut Browser, url: &str, ready: &str) -> String {
    b.goto("about:blank");
    b.wait_for("location.href === 'about:blank'", Duration::from_secs(30));
    b.goto(url);
    b.wait_for(ready, Duration::from_secs(60));
    b.eval("document.documentElement.outerHTML").as_str().unwrap().to_string()
}

/// `#id` has been drawn with some text.
fn drawn(id: &str) -> String {
    format!("{} !== ''", shown(id))
}

/// A transfer's page, drawn, with both of its in-browser checks finished.
fn tx_checked() -> String {
    format!(
        "{} && {} !== 'checking…' && {} !== 'checking…'",
        drawn("tx-id"),
        shown("tx-proof"),
        shown("tx-pow")
    )
}

/// The text of the element with id `id` in a DOM dump (its first text, up to the next tag).
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!(r#"id="{id}""#);
    let at = dom.find(&open).unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let rest = &rest[start..];
    // Skip a nested opening tag (a link inside the cell).
    let rest = if rest.starts_with('<') { &rest[rest.find('>').unwrap() + 1..] } else { rest };
    &rest[..rest.find('<').unwrap_or(rest.len())]
}

#[test]
fn the_explorer_page_shows_the_chain_in_a_real_browser() {
    let Some(tool) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        &tmp.path().join("node"),
        &NodeOptions { dev: true, mine: true, ..Default::default() },
    )
    .expect("start cairn-node --dev");
    let rpc = node.url();
    let page = format!("{rpc}/");
    let mut b = Browser::start(&tool, 1280, 1500);

    // A transfer sent by the real wallet, waited for until mined.
    let dir = tmp.path().join("wallet");
    wallet_json(&rpc, &dir, PW, &["import"], Some(&format!("{}\n", dev_key_hex(2)))).unwrap();
    let (from, to) = (dev_address(2), dev_address(3));
    let sent = wallet_json(
        &rpc,
        &dir,
        PW,
        &["send", "--from", &from, "--to", &to, "--amount", "123456", "--fee", "2000", "--wait"],
        None,
    )
    .unwrap();
    let txid = sent["txid"].as_str().unwrap().to_string();
    let tx = node.rpc("chain_getTransaction", json!([txid])).unwrap();
    assert_eq!(tx["status"], "confirmed", "{tx}");
    let (block_hash, tx_height) =
        (tx["block_hash"].as_str().unwrap().to_string(), tx["height"].as_u64().unwrap());

    // Overview: the height shown is the node's (the chain moves: between before and after).
    let before = node.height().unwrap();
    let dom = dump(&mut b, &page, &drawn("height"));
    let after = node.height().unwrap();
    let shown: u64 = text_of(&dom, "height").parse().unwrap_or_else(|_| panic!("height: {dom}"));
    assert!((before..=after).contains(&shown), "shown {shown}, node went {before}..{after}");
    assert_eq!(text_of(&dom, "chain-id"), node.info().unwrap()["chain_id"].to_string());
    assert!(dom.contains(r#"id="recent-blocks""#), "{dom}");
    // The charts cover the blocks so far (block 1's interval, from genesis's fixed
    // time, left out).
    assert!(text_of(&dom, "chart-interval-stats").starts_with("min "), "{dom}");
    assert!(dom.contains(&format!("Block interval, last {} blocks", shown - 1)), "{dom}");
    assert!(dom.contains(&format!("last {} blocks", shown + 1)), "{dom}");
    assert!(text_of(&dom, "chart-difficulty-stats").contains(" bits"), "{dom}");
    assert!(dom.contains(&format!(
        "#/block/{}",
        node.rpc("chain_getBlockHash", json!([shown])).unwrap().as_str().unwrap()
    )));

    // The block holding the transfer lists it, with both addresses.
    let dom = dump(&mut b, &format!("{page}#/block/{block_hash}"), &drawn("block-hash"));
    assert_eq!(text_of(&dom, "block-hash"), block_hash);
    assert_eq!(text_of(&dom, "block-height"), tx_height.to_string());
    assert!(dom.contains(&txid) && dom.contains(&from) && dom.contains(&to), "{dom}");

    // Search by height, and by hash (upper case, 0x), finds that block.
    let dom = dump(&mut b, &format!("{page}#/search/{tx_height}"), &drawn("block-hash"));
    assert_eq!(text_of(&dom, "block-hash"), block_hash, "{dom}");
    let dom = dump(&mut b, &format!("{page}#/search/0x{}", block_hash.to_uppercase()), &drawn("block-hash"));
    assert_eq!(text_of(&dom, "block-hash"), block_hash, "{dom}");
    // Search by txid opens the transfer, whose merkle proof the browser checks.
    let dom = dump(&mut b, &format!("{page}#/search/{txid}"), &tx_checked());
    assert_eq!(text_of(&dom, "tx-id"), txid, "{dom}");
    assert_eq!(text_of(&dom, "tx-amount"), "123456");
    assert_eq!(text_of(&dom, "tx-proof"), "proof verified", "{dom}");
    assert_eq!(text_of(&dom, "tx-pow"), "verified: header hash ≤ its target", "{dom}");
    // A mistyped address gets a clear message.
    let mut typo = to.clone().into_bytes();
    typo[0] = if typo[0] == b'0' { b'1' } else { b'0' };
    let typo = String::from_utf8(typo).unwrap();
    let dom = dump(&mut b, &format!("{page}#/search/{typo}"), &drawn("error"));
    let err = text_of(&dom, "error");
    assert_eq!(err, "Not a valid address: address checksum mismatch (mistyped address?)");
    // The address pages list the transfer, in on one and out on the other, with its
    // amount and fee.
    for (address, direction) in [(&to, "in"), (&from, "out")] {
        let dom = dump(&mut b, &format!("{page}#/search/{address}"), &drawn("address"));
        assert_eq!(text_of(&dom, "address"), address.as_str());
        let row = dom
            .split("<tr>")
            .find(|r| r.contains(&txid))
            .unwrap_or_else(|| panic!("no row for {txid}: {dom}"));
        for cell in [direction, "123456", "2000"] {
            assert!(row.contains(&format!("<td>{cell}</td>")), "{address}: {cell} not in {row}");
        }
    }

    // Screenshots kept for a look (not compared): the overview on a desktop (the one in
    // docs/), a block on a 375-px-wide phone.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (name, route, ready, (width, height)) in [
        ("explorer-overview.png", String::new(), drawn("height"), (1280, 1500)),
        ("explorer-block-375.png", format!("#/block/{block_hash}"), drawn("block-hash"), (375, 800)),
    ] {
        b.resize(width, height);
        dump(&mut b, &format!("{page}{route}"), &ready);
        let png = b.screenshot();
        assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
        let shot = dir.join(name);
        std::fs::write(&shot, png).unwrap();
        eprintln!("screenshot: {}", shot.display());
    }
}

/// A headless Chromium driven over the DevTools protocol (a WebSocket, spoken here with
/// std only): it loads a page and is asked when the page is drawn, watches one page
/// change without a reload, measures its layout and takes screenshots.
struct Browser {
    child: std::process::Child,
    ws: TcpStream,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts Chromium on `about:blank` with a `width` x `height` window and attaches to
    /// its page.
    fn start(tool: &Path, width: u32, height: u32) -> Browser {
        use std::io::BufRead;
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(tool)
            .args(["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions"])
            .arg("--remote-debugging-port=0")
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chromium");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut port = None;
        for line in stderr.lines() {
            let line = line.unwrap();
            if let Some(rest) = line.split("DevTools listening on ws://").nth(1) {
                port = rest.split('/').next().map(str::to_string);
                break;
            }
        }
        let hostport = port.expect("chromium printed no DevTools address");
        let addr: SocketAddr = hostport.parse().unwrap();
        let (_, _, list) = get(addr, "/json/list");
        let targets: serde_json::Value = serde_json::from_str(&list).unwrap();
        let ws_url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("no page target")
            .to_string();
        let path = ws_url.split_once(&hostport).unwrap().1.to_string();
        let mut ws = TcpStream::connect(addr).unwrap();
        ws.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let hello = format!(
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        ws.write_all(hello.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            ws.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        let mut b = Browser { child, ws, next_id: 0, _profile: profile };
        b.resize(width, height);
        b
    }

    /// Sets the viewport to `width` x `height` (a headless window has a minimum width;
    /// a phone's viewport is emulated).
    fn resize(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            // Not `mobile`: a mobile viewport would widen to fit content that overflows.
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// A PNG of the viewport.
    fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64_decode(r["data"].as_str().expect("captureScreenshot returned no data"))
    }

    fn send_frame(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.ws.write_all(&frame).unwrap();
    }

    /// One whole text message (continuation frames joined).
    fn read_message(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.ws.read_exact(&mut h).unwrap();
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.ws.read_exact(&mut b).unwrap();
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.ws.read_exact(&mut b).unwrap();
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; len as usize];
            self.ws.read_exact(&mut payload).unwrap();
            message.extend_from_slice(&payload);
            if h[0] & 0x80 != 0 {
                return String::from_utf8(message).unwrap();
            }
        }
    }

    /// A DevTools command; returns its `result` (events that arrive meanwhile are dropped).
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send_frame(&json!({"id": id, "method": method, "params": params}).to_string());
        loop {
            let v: serde_json::Value = serde_json::from_str(&self.read_message()).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> serde_json::Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true}));
        r["result"]["value"].clone()
    }

    /// Polls `expression` every 50 ms until it is truthy (and returns it), or panics after
    /// `timeout`.
    fn wait_for(&mut self, expression: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expression);
            if !(v.is_null() || v == false || v == "") {
                return v;
            }
            assert!(Instant::now() < deadline, "{expression} not true within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }
}

/// Standard base64 (RFC 4648, padded), as DevTools sends binary data.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {:?}", c as char),
        })
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for group in text.trim_end_matches('=').as_bytes().chunks(4) {
        // 6 bits a character; a short last group is padded out to 24 bits.
        let bits = group.iter().fold(0u32, |acc, &c| acc << 6 | value(c)) << (6 * (4 - group.len()));
        out.extend_from_slice(&bits.to_be_bytes()[1..group.len()]);
    }
    out
}

/// What `#id` shows, or "" while the page has not drawn it.
fn shown(id: &str) -> String {
    // Parenthesised: `||` binds looser than the `===` or `!==` a caller puts after it.
    format!("((document.getElementById('{id}') || {{}}).textContent || '')")
}

#[test]
fn the_explorer_updates_live_and_fits_a_phone_screen() {
    let Some(tool) = chromium() else { return };
    let node = NodeProcess::start_dev(bin("cairn-node"), &[]);
    let page = format!("{}/", node.url());
    let mut b = Browser::start(&tool, 375, 800);
    assert_eq!(b.eval("window.innerWidth"), 375);

    b.goto(&page);
    let first: u64 = b.wait_for(&shown("height"), Duration::from_secs(30)).as_str().unwrap().parse().unwrap();
    // The page subscribed to new heads over the WebSocket (the policy lets it).
    b.wait_for(&format!("{} === 'new heads over WebSocket'", shown("live")), Duration::from_secs(30));
    // A mark on this very document: if the page reloaded, it would be gone.
    b.eval("window.cairnTestMark = 1");
    let later = b.wait_for(
        &format!("Number({}) > {first} && {}", shown("height"), shown("height")),
        Duration::from_secs(60),
    );
    assert_eq!(b.eval("window.cairnTestMark"), 1, "the page reloaded");
    let later: u64 = later.as_str().unwrap().parse().unwrap();
    assert!(later <= node.height().unwrap());
    // The newest row of the recent blocks follows too.
    let newest_row = "document.querySelector('#recent-blocks tbody tr td').textContent";
    b.wait_for(&format!("Number({newest_row}) >= {later}"), Duration::from_secs(30));

    // Nothing overflows sideways at 375 px: the overview, a block, a transaction, an
    // address, the mempool, the peers (wide tables scroll inside their own box).
    let best = node.best_hash().unwrap();
    let coinbase = node.rpc("chain_getBlock", json!([best])).unwrap()["transactions"][0]["txid"]
        .as_str()
        .unwrap()
        .to_string();
    let miner = node.rpc("chain_getTransaction", json!([coinbase])).unwrap()["tx"]["to"]
        .as_str()
        .unwrap()
        .to_string();
    for (route, ready) in [
        (String::new(), "height"),
        (format!("#/block/{best}"), "block-hash"),
        (format!("#/tx/{coinbase}"), "tx-id"),
        (format!("#/address/{miner}"), "address"),
        ("#/mempool".to_string(), "mempool-count"),
        ("#/peers".to_string(), "peer-count"),
    ] {
        b.goto(&format!("{page}{route}"));
        b.wait_for(&shown(ready), Duration::from_secs(30));
        let widths = b.eval("[document.documentElement.scrollWidth, window.innerWidth]");
        assert!(widths[0].as_u64() <= widths[1].as_u64(), "page {route:?}: {widths} px wide at 375");
    }
}

#[test]
fn the_explorer_shows_pending_transfers_and_peers() {
    let Some(tool) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        &tmp.path().join("node"),
        &NodeOptions { dev: true, mine: false, ..Default::default() },
    )
    .expect("start cairn-node --dev --no-mine");
    let rpc = node.url();
    let page = format!("{rpc}/");
    let mut b = Browser::start(&tool, 1280, 800);
    let dir = tmp.path().join("wallet");
    wallet_json(&rpc, &dir, PW, &["import"], Some(&format!("{}\n", dev_key_hex(4)))).unwrap();
    let sent = wallet_json(
        &rpc,
        &dir,
        PW,
        &["send", "--from", &dev_address(4), "--to", &dev_address(5), "--amount", "777", "--fee", "3000"],
        None,
    )
    .unwrap();
    let txid = sent["txid"].as_str().unwrap().to_string();

    let dom = dump(&mut b, &format!("{page}#/mempool"), &drawn("mempool-count"));
    assert_eq!(text_of(&dom, "mempool-count"), "1", "{dom}");
    assert!(dom.contains(&txid), "{dom}");
    assert!(dom.contains(r#"id="fee-histogram""#), "{dom}");
    let dom = dump(&mut b, &format!("{page}#/search/{txid}"), &tx_checked());
    assert_eq!(text_of(&dom, "tx-status"), "pending", "{dom}");
    assert_eq!(text_of(&dom, "tx-amount"), "777", "{dom}");
    let dom = dump(&mut b, &format!("{page}#/peers"), &drawn("peer-count"));
    assert_eq!(text_of(&dom, "peer-count"), "0 connected", "{dom}");
}

/// Two mining nodes apart build two branches; joined, one reorganises to the other's,
/// and that node's open overview lists the reorg the subscription reported and marks its
/// height in the difficulty chart.
#[test]
fn the_explorer_marks_a_reorg() {
    let Some(tool) = chromium() else { return };
    let a = NodeProcess::start_dev(bin("cairn-node"), &[]);
    let b = NodeProcess::start_dev(bin("cairn-node"), &[]);
    let mut pages = Vec::new();
    for n in [&a, &b] {
        let mut p = Browser::start(&tool, 1280, 800);
        p.goto(&format!("{}/", n.url()));
        p.wait_for(&format!("{} === 'new heads over WebSocket'", shown("live")), Duration::from_secs(30));
        pages.push(p);
    }
    // Each has a branch of its own (different coinbases) before they meet.
    wait_until(Duration::from_secs(60), "both nodes at height 3", || {
        Ok((a.height()? >= 3 && b.height()? >= 3).then_some(()))
    });
    a.admin_rpc("net_addPeer", json!([b.p2p_addr.to_string()])).unwrap();
    wait_same_tip(&[&a, &b], 4, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    let reorg_row = "(document.querySelector('#reorgs tbody tr') || {}).textContent || ''";
    let (i, seen) = loop {
        if let Some(found) = pages.iter_mut().map(|p| p.eval(reorg_row)).enumerate().find(|(_, r)| r != "") {
            break found;
        }
        assert!(Instant::now() < deadline, "neither page shows a reorg");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(seen.as_str().unwrap().chars().next().unwrap().is_ascii_digit(), "{seen}");
    // The overview redraws on the reorg's head (a redraw already under way may still show
    // the old branch's blocks): the reorg's height gets a dashed line in the difficulty
    // chart (200 blocks from genesis, so the height is in it). The `reorg -N` badge in the
    // 15 recent blocks is not asserted: on the dev chain, blocks can come faster than
    // that window under load (it failed that way twice in CI runs).
    pages[i].wait_for(
        "document.querySelectorAll('#chart-difficulty .reorg-mark').length > 0",
        Duration::from_secs(10),
    );
}

#[test]
fn base64_decodes_the_rfc_4648_vectors() {
    for (text, bytes) in [
        ("", ""),
        ("Zg==", "f"),
        ("Zm8=", "fo"),
        ("Zm9v", "foo"),
        ("Zm9vYg==", "foob"),
        ("Zm9vYmE=", "fooba"),
        ("Zm9vYmFy", "foobar"),
    ] {
        assert_eq!(base64_decode(text), bytes.as_bytes(), "{text}");
    }
    assert_eq!(base64_decode("/+8="), [0xff, 0xef]);
}
