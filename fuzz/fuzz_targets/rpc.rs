//! RPC parameter parsing (node/src/rpc.rs) through the real method table, in process:
//! the first byte picks a method, the rest is its `params` (when it is JSON at all), or
//! the whole input is sent as a raw request. Every request is answered with a result or
//! a JSON-RPC error; never a panic.
#![no_main]

use cairn_core::genesis::Genesis;
use cairn_node::chain::Chain;
use cairn_node::mempool::Mempool;
use cairn_node::node::Node;
use jsonrpsee::RpcModule;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const METHODS: &[&str] = &[
    "chain_getInfo",
    "chain_getBlockHash",
    "chain_getBlock",
    "chain_getBlockByHeight",
    "chain_getTransaction",
    "chain_getTxProof",
    "state_getAccount",
    "tx_submit",
    "mempool_getInfo",
    "net_peers",
    "net_addPeer",
    "rpc_ping",
    "state_getHistory",
    "chain_getBlocks",
    "mempool_getTransfers",
    "mempool_estimateFee",
    "node_getStatus",
];

struct Ctx {
    runtime: tokio::runtime::Runtime,
    module: RpcModule<()>,
}

fn ctx() -> &'static Ctx {
    static C: OnceLock<Ctx> = OnceLock::new();
    C.get_or_init(|| {
        let genesis = Genesis::dev();
        let node = Node::new(Chain::open_in_memory(&genesis), Mempool::new(1 << 20), genesis);
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let module = cairn_node::rpc::methods(node, None).expect("rpc methods");
        Ctx { runtime, module }
    })
}

fn answer(c: &Ctx, request: &str) {
    let Ok((response, _)) = c.runtime.block_on(c.module.raw_json_request(request, 16)) else { return };
    let v: serde_json::Value = serde_json::from_str(response.get()).expect("the answer is JSON");
    let answered = |v: &serde_json::Value| v.get("result").is_some() != v.get("error").is_some();
    match &v {
        serde_json::Value::Array(items) => assert!(items.iter().all(answered), "{v}"),
        other => assert!(answered(other), "{other}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let c = ctx();
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if pick as usize >= METHODS.len() {
        answer(c, text);
        return;
    }
    let Ok(params) = serde_json::from_str::<serde_json::Value>(text) else { return };
    let request =
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": METHODS[pick as usize], "params": params});
    answer(c, &request.to_string());
});
