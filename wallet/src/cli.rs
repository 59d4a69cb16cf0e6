//! The command line: argument parsing and one function per subcommand.
//!
//! Each command returns a [`Report`]: a JSON object (printed with `--json`) and the same
//! facts as text for people. Errors are `anyhow` chains printed to stderr by `main`.

use crate::amount::{format_amount, parse_amount};
use crate::keystore::{KdfParams, Keystore, INSECURE_LOG_N_ENV};
use crate::password::{self, Purpose};
use crate::receipt;
use crate::rpc::{Node, DEFAULT_RPC_URL};
use anyhow::{anyhow, bail, Context, Result};
use cairn_core::genesis::DEV_CHAIN_ID;
use cairn_core::transaction::{public_key_of, signing_key_from_bytes};
use cairn_core::{encoding, Address, Amount, SignedTransfer, Transfer, Txid};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Fee `send` uses without `--fee` when the node's current minimum is lower.
pub const DEFAULT_FEE: u64 = 1_000;
/// How many headers after a transfer's block `tx --verify` checks at most.
pub const MAX_DESCENDANTS_CHECKED: u64 = 100;
/// How often `send --wait` asks the node whether the transfer is confirmed.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Parser, Debug)]
#[command(
    name = "cairn-wallet",
    version,
    about = "Cairn wallet: keys, signed transfers and verified receipts"
)]
pub struct Cli {
    /// The node's JSON-RPC URL.
    #[arg(long, global = true, env = "CAIRN_RPC_URL", default_value = DEFAULT_RPC_URL, value_name = "URL")]
    pub rpc: String,
    /// Directory of key files [default: $XDG_DATA_HOME/cairn/wallet or ~/.local/share/cairn/wallet].
    #[arg(long, global = true, env = "CAIRN_WALLET_DIR", value_name = "DIR")]
    pub wallet_dir: Option<PathBuf>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Read the keystore password from the first line of FILE (else CAIRN_WALLET_PASSWORD, else a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a key and print its address.
    New,
    /// Import a private key (64 hex characters, read from stdin).
    Import,
    /// List the addresses in the wallet.
    List,
    /// Show balance and nonce from the node (default: every address in the wallet).
    Balance {
        #[arg(value_parser = parse_address, value_name = "ADDRESS")]
        address: Option<Address>,
    },
    /// Sign a transfer with the node's next nonce, submit it, print the txid.
    Send(SendArgs),
    /// Sign a transfer offline (no node needed); print its hex for `submit`.
    Sign(SignArgs),
    /// Submit a signed transfer (hex, or `-` to read it from stdin).
    Submit {
        #[arg(value_name = "HEX")]
        hex: String,
    },
    /// Show a transaction's status; --verify checks its inclusion proof locally.
    Tx {
        #[arg(value_parser = parse_txid, value_name = "TXID")]
        txid: Txid,
        /// Check the merkle proof, the header hash and proof of work, and the best chain.
        #[arg(long)]
        verify: bool,
    },
}

#[derive(Args, Debug)]
pub struct SendArgs {
    #[arg(long, value_parser = parse_address, value_name = "ADDRESS")]
    pub from: Address,
    #[arg(long, value_parser = parse_address, value_name = "ADDRESS")]
    pub to: Address,
    /// Amount in base units (digits; `_` or `,` may separate groups).
    #[arg(long, value_parser = parse_amount, value_name = "N")]
    pub amount: Amount,
    /// Fee in base units [default: the node's minimum fee, at least 1,000].
    #[arg(long, value_parser = parse_amount, value_name = "N")]
    pub fee: Option<Amount>,
    /// Wait until the transfer is in a block; print the block hash and height.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS", requires = "wait")]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    #[arg(long, value_parser = parse_address, value_name = "ADDRESS")]
    pub from: Address,
    #[arg(long, value_parser = parse_address, value_name = "ADDRESS")]
    pub to: Address,
    #[arg(long, value_parser = parse_amount, value_name = "N")]
    pub amount: Amount,
    #[arg(long, value_parser = parse_amount, value_name = "N")]
    pub fee: Amount,
    /// The nonce the transfer must carry: `nonce` from `cairn-wallet balance` (its
    /// `pending_nonce` when the sender has transfers waiting in the mempool).
    #[arg(long, value_name = "N")]
    pub nonce: u64,
    /// Chain the transfer is for (signed into it); the dev chain's id by default.
    #[arg(long, default_value_t = DEV_CHAIN_ID, value_name = "N")]
    pub chain_id: u32,
}

fn parse_address(text: &str) -> Result<Address, String> {
    text.parse::<Address>().map_err(|e| e.to_string())
}

fn parse_txid(text: &str) -> Result<Txid, String> {
    text.trim().parse::<Txid>().map_err(|e| format!("not a txid: {e}"))
}

/// What a command prints: `json` with `--json`, else `text`; `note` goes to stderr in
/// text mode (things a script piping stdout should not receive).
#[derive(Debug)]
pub struct Report {
    pub json: Value,
    pub text: String,
    pub note: Option<String>,
}

impl Report {
    fn new(json: Value, text: String) -> Report {
        Report { json, text, note: None }
    }
}

/// The wallet directory when `--wallet-dir` is not given.
pub fn default_wallet_dir() -> Result<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".local/share"))
        })
        .ok_or_else(|| anyhow!("cannot find a data directory (HOME is not set); pass --wallet-dir DIR"))?;
    Ok(data.join("cairn").join("wallet"))
}

/// Runs the command line and prints its report.
pub fn main(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let json = cli.json;
    let report = runtime.block_on(run(cli))?;
    if json {
        println!("{}", report.json);
    } else {
        if let Some(note) = &report.note {
            eprintln!("{note}");
        }
        print!("{}", report.text);
    }
    Ok(())
}

struct Ctx {
    rpc: String,
    wallet_dir: Option<PathBuf>,
    password_file: Option<PathBuf>,
}

impl Ctx {
    fn keystore(&self) -> Result<Keystore> {
        let dir = match &self.wallet_dir {
            Some(d) => d.clone(),
            None => default_wallet_dir()?,
        };
        let ks = Keystore::new(dir);
        if let Some(warning) = ks.permission_warning() {
            eprintln!("{warning}");
        }
        Ok(ks)
    }

    fn node(&self) -> Result<Node> {
        Ok(Node::new(&self.rpc)?)
    }

    fn password(&self, purpose: Purpose<'_>) -> Result<Zeroizing<String>> {
        password::get(self.password_file.as_deref(), purpose)
    }
}

pub async fn run(cli: Cli) -> Result<Report> {
    let ctx = Ctx { rpc: cli.rpc, wallet_dir: cli.wallet_dir, password_file: cli.password_file };
    match cli.command {
        Command::New => cmd_new(&ctx),
        Command::Import => cmd_import(&ctx),
        Command::List => cmd_list(&ctx),
        Command::Balance { address } => cmd_balance(&ctx, address).await,
        Command::Send(args) => cmd_send(&ctx, args).await,
        Command::Sign(args) => cmd_sign(&ctx, args),
        Command::Submit { hex } => cmd_submit(&ctx, &hex).await,
        Command::Tx { txid, verify } => cmd_tx(&ctx, txid, verify).await,
    }
}

fn new_key_params() -> KdfParams {
    let params = KdfParams::for_new_keys();
    if params != KdfParams::DEFAULT {
        eprintln!(
            "warning: {INSECURE_LOG_N_ENV} is set: this key is encrypted with weak scrypt parameters (log_n={}), for tests only",
            params.log_n
        );
    }
    params
}

fn saved_report(ks: &Keystore, address: &Address, verb: &str) -> Report {
    let path = ks.path_for(address);
    Report {
        json: json!({ "address": address, "path": path }),
        text: format!("{address}\n"),
        note: Some(format!(
            "{verb} key {address}, saved encrypted in {}.\nBack up that file and remember the password: without both, the funds are lost.",
            path.display()
        )),
    }
}

fn cmd_new(ctx: &Ctx) -> Result<Report> {
    let ks = ctx.keystore()?;
    let password = ctx.password(Purpose::NewKey)?;
    let key = k256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let address = ks.add(&key, password.as_bytes(), new_key_params())?;
    Ok(saved_report(&ks, &address, "Created"))
}

/// Reads a private key from stdin: without echo from a terminal, else all of stdin.
fn read_private_key() -> Result<Zeroizing<[u8; 32]>> {
    let text = if std::io::stdin().is_terminal() {
        Zeroizing::new(
            rpassword::prompt_password("Private key (64 hex characters): ").context("cannot read the key")?,
        )
    } else {
        let mut s = Zeroizing::new(String::new());
        std::io::stdin()
            .take(4096)
            .read_to_string(&mut s)
            .context("cannot read the private key from stdin")?;
        s
    };
    let trimmed = text.trim();
    let hex_text = trimmed.strip_prefix("0x").unwrap_or(trimmed);
    if hex_text.is_empty() {
        bail!("no private key on stdin: pipe in 64 hex characters, e.g. `echo KEY | cairn-wallet import`");
    }
    let mut key = Zeroizing::new([0u8; 32]);
    // The key itself is never echoed back in an error.
    hex::decode_to_slice(hex_text, key.as_mut()).map_err(|_| {
        anyhow!(
            "a private key is 64 hex characters (32 bytes); the input has {} characters or is not hex",
            hex_text.len()
        )
    })?;
    Ok(key)
}

fn cmd_import(ctx: &Ctx) -> Result<Report> {
    let ks = ctx.keystore()?;
    let bytes = read_private_key()?;
    let key = signing_key_from_bytes(bytes.as_ref())
        .map_err(|_| anyhow!("that is not a valid secp256k1 private key"))?;
    let address = cairn_core::transaction::address_of(&key);
    // Refuse before asking for a password that would not be used.
    if ks.contains(&address) {
        bail!("address {address} is already in the wallet ({})", ks.path_for(&address).display());
    }
    let password = ctx.password(Purpose::NewKey)?;
    ks.add(&key, password.as_bytes(), new_key_params())?;
    Ok(saved_report(&ks, &address, "Imported"))
}

fn cmd_list(ctx: &Ctx) -> Result<Report> {
    let ks = ctx.keystore()?;
    let entries = ks.list()?;
    let mut addresses = Vec::new();
    let mut problems = Vec::new();
    for e in entries {
        match e.address {
            Ok(a) => addresses.push(a),
            Err(err) => problems.push(json!({ "path": e.path, "error": err.to_string() })),
        }
    }
    let mut text = String::new();
    for a in &addresses {
        let _ = writeln!(text, "{a}");
    }
    let mut notes: Vec<String> =
        problems.iter().map(|p| format!("warning: {}", p["error"].as_str().unwrap_or_default())).collect();
    if addresses.is_empty() {
        notes.push(format!(
            "The wallet at {} holds no keys: create one with `cairn-wallet new` or `cairn-wallet import`.",
            ks.dir().display()
        ));
    }
    let mut json = json!({ "addresses": addresses });
    if !problems.is_empty() {
        json["problems"] = Value::Array(problems);
    }
    Ok(Report { json, text, note: (!notes.is_empty()).then(|| notes.join("\n")) })
}

fn account_json(a: &cairn_api::RpcAccount) -> Value {
    json!({ "address": a.address, "balance": a.balance, "nonce": a.nonce, "pending_nonce": a.pending_nonce })
}

fn account_text(a: &cairn_api::RpcAccount) -> String {
    let pending = a.pending_nonce.saturating_sub(a.nonce);
    let pending_text = if pending > 0 {
        format!(" ({pending} pending, next transfer uses nonce {})", a.pending_nonce)
    } else {
        String::new()
    };
    format!("{}  balance {}  nonce {}{pending_text}\n", a.address, format_amount(a.balance), a.nonce)
}

async fn cmd_balance(ctx: &Ctx, address: Option<Address>) -> Result<Report> {
    let addresses = match address {
        Some(a) => vec![a],
        None => {
            let ks = ctx.keystore()?;
            let list: Vec<Address> = ks.list()?.into_iter().filter_map(|e| e.address.ok()).collect();
            if list.is_empty() {
                bail!(
                    "the wallet at {} holds no keys; pass an ADDRESS or create a key with `cairn-wallet new`",
                    ks.dir().display()
                );
            }
            list
        }
    };
    let node = ctx.node()?;
    let mut accounts = Vec::new();
    for a in &addresses {
        accounts.push(node.account(a).await?);
    }
    let text: String = accounts.iter().map(account_text).collect();
    // One address: the object DESIGN.md fixes; several: a list of them.
    let json = match accounts.as_slice() {
        [one] => account_json(one),
        many => json!({ "accounts": many.iter().map(account_json).collect::<Vec<_>>() }),
    };
    Ok(Report::new(json, text))
}

async fn cmd_send(ctx: &Ctx, args: SendArgs) -> Result<Report> {
    let ks = ctx.keystore()?;
    ks.require(&args.from)?;
    let node = ctx.node()?;
    let info = node.chain_info().await?;
    let account = node.account(&args.from).await?;
    let fee = match args.fee {
        Some(f) => f,
        None => Amount(node.mempool_info().await?.min_fee.max(DEFAULT_FEE)),
    };
    let total = args
        .amount
        .checked_add(fee)
        .ok_or_else(|| anyhow!("amount plus fee is larger than the largest amount"))?;
    // Checked before asking for the password or signing anything. The balance is the
    // one at the tip; the node also counts pending transfers and says so if they use it.
    if account.balance < total.0 {
        bail!(
            "insufficient balance: {} has {}, the transfer needs {} (amount {} + fee {})",
            args.from,
            format_amount(account.balance),
            format_amount(total.0),
            format_amount(args.amount.0),
            format_amount(fee.0)
        );
    }
    let password = ctx.password(Purpose::Unlock(&args.from.to_text()))?;
    let key = ks.load(&args.from, password.as_bytes())?;
    drop(password);
    let transfer = Transfer {
        chain_id: info.chain_id,
        nonce: account.pending_nonce,
        from: public_key_of(&key),
        to: args.to,
        amount: args.amount,
        fee,
    };
    let signed = transfer.sign(&key).context("cannot sign the transfer")?;
    drop(key);
    signed.verify(info.chain_id).context("the wallet produced a transfer that does not verify")?;
    let local_txid = signed.txid();
    let txid = node.submit(hex::encode(encoding::encode(&signed))).await?;
    if txid != local_txid {
        bail!("the node accepted the transfer as txid {txid}, but its txid is {local_txid}: the node is misbehaving");
    }
    let mut json = json!({
        "txid": txid, "from": args.from, "to": args.to, "amount": args.amount.0, "fee": fee.0, "nonce": transfer.nonce,
    });
    let mut text = format!(
        "Sent {} from {} to {} (fee {}, nonce {})\ntxid {txid}\n",
        format_amount(args.amount.0),
        args.from,
        args.to,
        format_amount(fee.0),
        transfer.nonce
    );
    if args.wait {
        let (block_hash, height) = wait_confirmed(&node, &txid, Duration::from_secs(args.timeout)).await?;
        json["block_hash"] = json!(block_hash);
        json["height"] = json!(height);
        let _ = writeln!(text, "confirmed in block {block_hash} at height {height}");
    }
    Ok(Report::new(json, text))
}

/// Polls chain_getTransaction until the transfer is in a block on the best chain.
async fn wait_confirmed(node: &Node, txid: &Txid, timeout: Duration) -> Result<(cairn_core::BlockHash, u64)> {
    let deadline = Instant::now() + timeout;
    let mut last = "unknown to the node".to_string();
    loop {
        if let Some(status) = node.transaction(txid).await? {
            if let (true, Some(hash), Some(height)) =
                (status.status == "confirmed", status.block_hash, status.height)
            {
                return Ok((hash, height));
            }
            last = status.status;
        }
        if Instant::now() >= deadline {
            bail!(
                "transfer {txid} was submitted but is not confirmed after {} s (status: {last}); check later with `cairn-wallet tx {txid}`",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn cmd_sign(ctx: &Ctx, args: SignArgs) -> Result<Report> {
    let ks = ctx.keystore()?;
    ks.require(&args.from)?;
    args.amount
        .checked_add(args.fee)
        .ok_or_else(|| anyhow!("amount plus fee is larger than the largest amount"))?;
    let password = ctx.password(Purpose::Unlock(&args.from.to_text()))?;
    let key = ks.load(&args.from, password.as_bytes())?;
    drop(password);
    let transfer = Transfer {
        chain_id: args.chain_id,
        nonce: args.nonce,
        from: public_key_of(&key),
        to: args.to,
        amount: args.amount,
        fee: args.fee,
    };
    let signed = transfer.sign(&key).context("cannot sign the transfer")?;
    drop(key);
    signed.verify(args.chain_id).context("the wallet produced a transfer that does not verify")?;
    let hex_text = hex::encode(encoding::encode(&signed));
    let txid = signed.txid();
    Ok(Report {
        json: json!({ "hex": hex_text, "txid": txid, "chain_id": args.chain_id, "nonce": args.nonce }),
        text: format!("{hex_text}\n"),
        note: Some(format!(
            "Signed {} from {} to {} (fee {}, nonce {}, chain {}); txid {txid}\nSubmit it with `cairn-wallet submit HEX`.",
            format_amount(args.amount.0),
            args.from,
            args.to,
            format_amount(args.fee.0),
            args.nonce,
            args.chain_id
        )),
    })
}

/// Decodes a signed transfer from hex, with errors that say what is wrong.
pub fn decode_signed_hex(text: &str) -> Result<SignedTransfer> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let bytes = hex::decode(t).map_err(|e| anyhow!("the transfer is not valid hex: {e}"))?;
    encoding::decode::<SignedTransfer>(&bytes)
        .map_err(|e| anyhow!("the hex is not an encoded signed transfer: {e}"))
}

async fn cmd_submit(ctx: &Ctx, hex_arg: &str) -> Result<Report> {
    let text = if hex_arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .take(1 << 20)
            .read_to_string(&mut s)
            .context("cannot read the transfer from stdin")?;
        s
    } else {
        hex_arg.to_string()
    };
    let signed = decode_signed_hex(&text)?;
    let node = ctx.node()?;
    let txid = node.submit(hex::encode(encoding::encode(&signed))).await?;
    if txid != signed.txid() {
        bail!(
            "the node accepted the transfer as txid {txid}, but its txid is {}: the node is misbehaving",
            signed.txid()
        );
    }
    Ok(Report::new(json!({ "txid": txid }), format!("txid {txid}\n")))
}

async fn cmd_tx(ctx: &Ctx, txid: Txid, verify: bool) -> Result<Report> {
    let node = ctx.node()?;
    let status = node.transaction(&txid).await?.ok_or_else(|| {
        anyhow!(
            "transaction {txid} is unknown to the node at {} (neither pending nor in its best chain)",
            node.url()
        )
    })?;
    let tx = &status.tx;
    let mut json = json!({
        "txid": txid,
        "status": status.status,
        "kind": tx.kind,
        "from": tx.from,
        "to": tx.to,
        "amount": tx.amount,
        "fee": tx.fee,
        "nonce": tx.nonce,
        "block_hash": status.block_hash,
        "height": status.height,
        "confirmations": status.confirmations,
    });
    let mut text = format!("txid      {txid}\n");
    match (&status.block_hash, status.height) {
        (Some(hash), Some(height)) => {
            let _ = writeln!(
                text,
                "status    {} in block {hash} at height {height} ({} confirmations)",
                status.status, status.confirmations
            );
        }
        _ => {
            let _ = writeln!(text, "status    {}", status.status);
        }
    }
    match &tx.from {
        Some(from) => {
            let _ = writeln!(
                text,
                "transfer  {} from {from} to {} (fee {}, nonce {})",
                format_amount(tx.amount),
                tx.to,
                format_amount(tx.fee),
                tx.nonce
            );
        }
        None => {
            let _ = writeln!(text, "{}  {} to {}", tx.kind, format_amount(tx.amount), tx.to);
        }
    }
    if verify {
        let (verified, lines) = verify_receipt(&node, &txid, &status).await?;
        json["verified"] = verified;
        text.push_str(&lines);
    }
    Ok(Report::new(json, text))
}

/// `tx --verify`: every check the wallet can do itself, then the node's best chain.
async fn verify_receipt(
    node: &Node,
    txid: &Txid,
    status: &cairn_api::RpcTxStatus,
) -> Result<(Value, String)> {
    if status.status != "confirmed" {
        bail!("cannot verify {txid} yet: it is {} (not in a block)", status.status);
    }
    let fail = |what: &str, e: receipt::ReceiptError| anyhow!("verification failed ({what}): {e}");
    let mut text = String::from("verified by the wallet itself:\n");
    let info = node.chain_info().await?;

    let contents_checked = if status.tx.kind == "transfer" {
        let st = receipt::check_transfer_contents(txid, &status.tx.hex).map_err(|e| fail("contents", e))?;
        st.verify(info.chain_id).map_err(|e| anyhow!("verification failed (signature): {e}"))?;
        text.push_str("  ok  the transfer's contents hash to the txid, and its signature is valid\n");
        true
    } else {
        false
    };

    let proof = node.tx_proof(txid).await?.ok_or_else(|| {
        anyhow!("the node has no inclusion proof for {txid} (was its block just reorganised out? try again)")
    })?;
    let v = receipt::verify_proof(txid, &proof).map_err(|e| fail("inclusion proof", e))?;
    let _ = writeln!(text, "  ok  the header hashes to block {} at height {}", v.block_hash, v.height);
    let _ = writeln!(
        text,
        "  ok  proof of work: the block hash is at most the header's target {}",
        v.header.target
    );
    let _ = writeln!(
        text,
        "  ok  merkle proof: the txid is transaction {} of {} under the header's merkle root {}",
        v.leaf_index + 1,
        v.leaf_count,
        hex::encode(v.header.merkle_root)
    );

    let best = node.block_hash(v.height).await?;
    if best != Some(v.block_hash) {
        bail!(
            "verification failed (best chain): the node's block at height {} is {}, not {}: the transfer's block is not on its best chain",
            v.height,
            best.map_or("missing".to_string(), |h| h.to_hex()),
            v.block_hash
        );
    }
    let _ = writeln!(text, "  ok  the node's best chain has this block at height {}", v.height);

    let last = info.height.min(v.height.saturating_add(MAX_DESCENDANTS_CHECKED));
    let mut parent = v.block_hash;
    let mut descendants = 0u64;
    for height in v.height + 1..=last {
        let Some(block) = node.block_by_height(height).await? else { break };
        parent = receipt::check_descendant(&parent, &block)
            .map_err(|e| fail("later headers; the chain may have changed meanwhile, try again", e))?;
        descendants += 1;
    }
    let _ =
        writeln!(text, "  ok  {descendants} later header(s) link back to it, each meeting its own target");
    text.push_str(
        "not checked: that each target follows the difficulty rules (that takes the whole header chain)\n",
    );
    let json = json!({
        "contents": contents_checked,
        "header_hash": true,
        "proof_of_work": true,
        "merkle_proof": true,
        "best_chain": true,
        "descendants": descendants,
        "block_hash": v.block_hash,
        "height": v.height,
        "merkle_root": hex::encode(v.header.merkle_root),
        "target": v.header.target,
        "leaf_index": v.leaf_index,
        "leaf_count": v.leaf_count,
    });
    Ok((json, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::genesis::dev_key_bytes;
    use cairn_core::transaction::address_of;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn address_typos_are_caught_when_parsing_arguments() {
        let a = address_of(&signing_key_from_bytes(&dev_key_bytes(0)).unwrap()).to_text();
        let mut typo: Vec<char> = a.chars().collect();
        typo[10] = if typo[10] == '0' { '1' } else { '0' };
        let typo: String = typo.into_iter().collect();
        let err = Cli::try_parse_from(["cairn-wallet", "balance", &typo]).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        let err = Cli::try_parse_from(["cairn-wallet", "send", "--from", &a, "--to", "abc", "--amount", "1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("48 hex characters"), "{err}");
        assert!(Cli::try_parse_from(["cairn-wallet", "balance", &a]).is_ok());
    }

    /// Signs the way `sign` does, from a key stored in a keystore, and checks the
    /// result with core's verification and decoding (what the node runs).
    #[test]
    fn offline_signed_transfer_verifies_in_core() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = Keystore::new(tmp.path().join("w"));
        let pw = tmp.path().join("pw");
        std::fs::write(&pw, "pw\n").unwrap();
        let key = signing_key_from_bytes(&dev_key_bytes(0)).unwrap();
        let from = ks.add(&key, b"pw", KdfParams { log_n: 4, r: 8, p: 1 }).unwrap();
        let to = address_of(&signing_key_from_bytes(&dev_key_bytes(1)).unwrap());
        let ctx = Ctx {
            rpc: "http://127.0.0.1:1".into(),
            wallet_dir: Some(ks.dir().to_path_buf()),
            password_file: Some(pw),
        };
        let args =
            SignArgs { from, to, amount: Amount(1234), fee: Amount(10), nonce: 7, chain_id: DEV_CHAIN_ID };
        let report = cmd_sign(&ctx, args).unwrap();
        let hex_text = report.json["hex"].as_str().unwrap();
        let st = decode_signed_hex(hex_text).unwrap();
        assert_eq!(st.verify(DEV_CHAIN_ID), Ok(()));
        assert!(st.verify(DEV_CHAIN_ID + 1).is_err());
        assert_eq!(st.transfer.sender(), from);
        assert_eq!(st.transfer.to, to);
        assert_eq!((st.transfer.amount, st.transfer.fee, st.transfer.nonce), (Amount(1234), Amount(10), 7));
        assert_eq!(report.json["txid"].as_str().unwrap(), st.txid().to_hex());
        assert_eq!(report.text.trim(), hex_text);
    }

    #[test]
    fn sign_refuses_unknown_address_before_asking_a_password() {
        let tmp = tempfile::tempdir().unwrap();
        let from = address_of(&signing_key_from_bytes(&dev_key_bytes(2)).unwrap());
        // No password source at all: if the wallet asked, the error would be about that.
        let ctx = Ctx { rpc: String::new(), wallet_dir: Some(tmp.path().to_path_buf()), password_file: None };
        let args =
            SignArgs { from, to: from, amount: Amount(1), fee: Amount(1), nonce: 0, chain_id: DEV_CHAIN_ID };
        let err = format!("{:#}", cmd_sign(&ctx, args).unwrap_err());
        assert!(err.contains("not in the wallet"), "{err}");
    }

    #[test]
    fn submit_hex_errors_are_clear() {
        assert!(format!("{:#}", decode_signed_hex("zz").unwrap_err()).contains("not valid hex"));
        assert!(
            format!("{:#}", decode_signed_hex("00").unwrap_err()).contains("not an encoded signed transfer")
        );
    }

    #[test]
    fn default_wallet_dir_is_under_the_data_dir() {
        let dir = default_wallet_dir().unwrap();
        assert!(dir.ends_with("cairn/wallet"), "{}", dir.display());
    }
}
