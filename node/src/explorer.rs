//! The block explorer: one static page (HTML, JavaScript, CSS compiled into the binary)
//! served on the RPC port, which reads the chain through the node's own public JSON-RPC.
//!
//! [`ExplorerLayer`] is an HTTP middleware in front of jsonrpsee: a plain `GET` (or
//! `HEAD`) is answered here, with the page at `/`, its two assets, and 404 for any other
//! path; everything else (JSON-RPC `POST`s, WebSocket upgrades, other methods) goes on to
//! the RPC server unchanged. The page is read-only: it calls no admin method, sends no
//! cookie, and its Content-Security-Policy allows no inline script and no other origin.

use futures::future::Either;
use jsonrpsee::server::{HttpBody, HttpResponse};
use std::task::{Context, Poll};

/// The policy every explorer response carries: scripts, styles and connections only from
/// the node itself (`'self'` covers `fetch` to the RPC port), nothing inline, no frames,
/// no forms posting anywhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One compiled-in file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_str!("explorer/index.html") },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("explorer/app.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("explorer/style.css"),
    },
];

/// The answer to a plain `GET`/`HEAD` of `path`: the asset, or 404.
fn respond(path: &str) -> HttpResponse {
    let (status, content_type, body) = match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => (http::StatusCode::OK, a.content_type, a.body),
        None => (
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the explorer is at /, JSON-RPC is POST /\n",
        ),
    };
    let mut r = http::Response::new(HttpBody::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    h.insert(http::header::CONTENT_SECURITY_POLICY, http::HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(http::header::X_CONTENT_TYPE_OPTIONS, http::HeaderValue::from_static("nosniff"));
    h.insert(http::header::X_FRAME_OPTIONS, http::HeaderValue::from_static("DENY"));
    h.insert(http::header::REFERRER_POLICY, http::HeaderValue::from_static("no-referrer"));
    // The assets change with the binary: a browser asks again rather than run an old page.
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    r
}

/// Tower layer serving the explorer (see the module docs).
#[derive(Clone, Copy, Default)]
pub struct ExplorerLayer;

impl<S> tower::Layer<S> for ExplorerLayer {
    type Service = ExplorerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ExplorerService { inner }
    }
}

#[derive(Clone)]
pub struct ExplorerService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for ExplorerService<S>
where
    S: tower::Service<http::Request<B>, Response = HttpResponse>,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Either<std::future::Ready<Result<HttpResponse, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let plain_get = (req.method() == http::Method::GET || req.method() == http::Method::HEAD)
            && !req.headers().contains_key(http::header::UPGRADE);
        if plain_get {
            Either::Left(std::future::ready(Ok(respond(req.uri().path()))))
        } else {
            Either::Right(self.inner.call(req))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_unknown_paths_are_404() {
        for a in ASSETS {
            let r = respond(a.path);
            assert_eq!(r.status(), http::StatusCode::OK, "{}", a.path);
            assert_eq!(r.headers()[http::header::CONTENT_TYPE], a.content_type);
        }
        assert_eq!(respond("/index.html/../etc").status(), http::StatusCode::NOT_FOUND);
        assert_eq!(respond("/metrics").status(), http::StatusCode::NOT_FOUND);
    }

    /// The page must run under its own policy: no inline script or style, no handler
    /// attributes, nothing loaded from another origin.
    #[test]
    fn the_page_needs_nothing_the_policy_forbids() {
        let html = ASSETS[0].body;
        assert!(html.contains(r#"<script src="/app.js""#));
        assert_eq!(html.matches("<script").count(), 1, "one script tag, external");
        assert!(!html.contains("<style"), "no inline style");
        assert!(!html.contains(" style="), "no style attribute");
        for (i, _) in html.match_indices(" on") {
            let name: String = html[i + 1..].chars().take_while(|c| c.is_ascii_alphabetic()).collect();
            assert!(!html[i + 1 + name.len()..].starts_with('='), "inline event handler {name}");
        }
        for a in ASSETS {
            // (The SVG namespace name is an identifier, not something loaded.)
            let body = a.body.replace("'http://www.w3.org/2000/svg'", "");
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{} loads from elsewhere",
                a.path
            );
        }
        let js = ASSETS[1].body;
        // Read-only: every method the page calls is a public read.
        const READS: &[&str] = &[
            "chain_getInfo",
            "chain_getBlocks",
            "chain_getBlock",
            "chain_getBlockByHeight",
            "chain_getBlockHash",
            "chain_getTransaction",
            "chain_getTxProof",
            "state_getAccount",
            "state_getHistory",
            "mempool_getTransfers",
            "net_peers",
        ];
        // And over the WebSocket, only the new-heads subscription.
        assert_eq!(js.matches("method: 'chain_").count(), 1);
        assert!(js.contains("method: 'chain_subscribeNewHeads'"));
        let called: Vec<&str> = js.split("rpc('").skip(1).filter_map(|s| s.split('\'').next()).collect();
        assert!(called.len() >= READS.len(), "{called:?}");
        for m in called {
            assert!(READS.contains(&m), "the page calls {m}");
        }
        assert!(!js.contains("innerHTML"), "data goes in with textContent only");
        assert!(!js.contains("eval("));
    }
}
