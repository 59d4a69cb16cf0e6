//! A tiny blocking HTTP/1.1 and JSON-RPC client (std only): [`rpc`] for well-formed
//! calls, [`raw_post`] and [`raw_post_declared`] for what a JSON-RPC client would never
//! send.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One JSON-RPC call over HTTP. Returns `result`, or an error carrying the JSON-RPC
/// error object's message.
pub fn rpc(url: &str, method: &str, params: Value) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let resp = http_post(url, &body, None)?;
    let v: Value =
        serde_json::from_str(&resp.body).with_context(|| format!("bad JSON from {method}: {}", resp.body))?;
    if let Some(err) = v.get("error") {
        bail!("rpc error {}: {}", err["code"], err["message"].as_str().unwrap_or_default());
    }
    Ok(v["result"].clone())
}

pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// POSTs `body` to `url` (http://host:port/), with optional basic auth `user:password`.
pub fn http_post(url: &str, body: &str, basic_auth: Option<&str>) -> Result<HttpResponse> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    let auth = basic_auth.map(|a| format!("Basic {}", base64(a.as_bytes())));
    exchange(s, addr, body.len(), body.as_bytes(), auth.as_deref())
}

/// A raw HTTP/1.1 POST of `body` to `addr` with an optional `Authorization` header value;
/// returns the status (0 if there was none) and the body. Panics if it cannot connect.
pub fn raw_post(addr: SocketAddr, body: &[u8], auth: Option<&str>) -> (u16, String) {
    raw_post_declared(addr, body.len(), body, auth)
}

/// Like [`raw_post`], but declares `declared_len` bytes of body whatever `body` holds
/// (to send an oversized request without racing the server's early answer).
pub fn raw_post_declared(
    addr: SocketAddr,
    declared_len: usize,
    body: &[u8],
    auth: Option<&str>,
) -> (u16, String) {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    match exchange(s, &addr.to_string(), declared_len, body, auth) {
        Ok(resp) => (resp.status, resp.body),
        Err(_) => (0, String::new()),
    }
}

/// Sends one POST to `addr` on `s`, declaring `declared_len` bytes of body, and reads the
/// answer to its end.
fn exchange(
    mut s: TcpStream,
    addr: &str,
    declared_len: usize,
    body: &[u8],
    authorization: Option<&str>,
) -> Result<HttpResponse> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {declared_len}\r\nConnection: close\r\n"
    );
    if let Some(a) = authorization {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // The server may answer (413) and close before reading a huge body: its answer says
    // what happened, so a failed write of the body is not an error here.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        // A reset after the answer (the server closed with our body unread) keeps what
        // was read; nothing at all read is an error.
        if raw.is_empty() {
            return Err(e).context("read the answer");
        }
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) =
        text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("no HTTP header end in {text:?}"))?;
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok(HttpResponse { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
