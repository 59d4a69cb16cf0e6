//! The command line: argument parsing, the shared context, and one function per
//! subcommand, grouped by concern:
//! - `keys`: `new`, `import`, `list`, `balance` (the wallet's keys and their accounts);
//! - `transfers`: `send`, `sign`, `submit` (one function builds and signs a transfer for
//!   both `send` and `sign`);
//! - `batch`: `send-many` (a file of recipients, consecutive nonces, one line per transfer);
//! - `wait`: `--wait` for `send` and `send-many` (confirmations, and why a transfer left
//!   the pool without being mined);
//! - `receipts`: `tx` and `tx --verify` (a transfer's status and its local verification).
//!
//! Each command returns a [`Report`]: a JSON object (printed with `--json`) and the same
//! facts as text for people. Errors are `anyhow` chains printed to stderr by `main`.

mod batch;
mod history;
mod keys;
mod receipts;
mod transfers;
mod wait;

pub use batch::{parse_batch, BatchLine, SendManyArgs};
pub use receipts::MAX_DESCENDANTS_CHECKED;
pub use transfers::{decode_signed_hex, parse_fee, FeeChoice, SendArgs, SignArgs};

use crate::keystore::Keystore;
use crate::password::{self, Purpose};
use crate::rpc::{Node, DEFAULT_RPC_URL};
use anyhow::{anyhow, Context, Result};
use cairn_core::{Address, Txid};
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use zeroize::Zeroizing;

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
    /// Print JSON on stdout instead of text: one object (send-many: one per transfer, a line each).
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
    /// Sign a transfer with the next free nonce, submit it, print the txid (sends from one
    /// address in parallel processes get consecutive nonces).
    Send(SendArgs),
    /// Pay many recipients from one address: one transfer per line of FILE.
    #[command(long_about = batch::SEND_MANY_HELP)]
    SendMany(SendManyArgs),
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
    /// Show an address's transactions, newest first, pending ones marked.
    History(history::HistoryArgs),
}

fn parse_address(text: &str) -> Result<Address, String> {
    text.parse::<Address>().map_err(|e| e.to_string())
}

fn parse_txid(text: &str) -> Result<Txid, String> {
    text.trim().parse::<Txid>().map_err(|e| format!("not a txid: {e}"))
}

/// What a command prints: `json` with `--json`, else `text`; `note` goes to stderr in
/// text mode (things a script piping stdout should not receive). With `json_lines`,
/// `json` is an array printed one element per line (`send-many`). A `failure` is printed
/// as the error after the report: the command printed what it did, and still failed.
#[derive(Debug)]
pub struct Report {
    pub json: Value,
    pub text: String,
    pub note: Option<String>,
    pub json_lines: bool,
    pub failure: Option<String>,
}

impl Report {
    fn new(json: Value, text: String) -> Report {
        Report { json, text, note: None, json_lines: false, failure: None }
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
    if json && report.json_lines {
        for line in report.json.as_array().into_iter().flatten() {
            println!("{line}");
        }
    } else if json {
        println!("{}", report.json);
    } else {
        if let Some(note) = &report.note {
            eprintln!("{note}");
        }
        print!("{}", report.text);
    }
    match report.failure {
        Some(failure) => Err(anyhow!(failure)),
        None => Ok(()),
    }
}

struct Ctx {
    rpc: String,
    wallet_dir: Option<PathBuf>,
    password_file: Option<PathBuf>,
    /// `--json`: stdout is for the JSON object only, and progress notes stay quiet.
    json: bool,
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
    let ctx =
        Ctx { rpc: cli.rpc, wallet_dir: cli.wallet_dir, password_file: cli.password_file, json: cli.json };
    match cli.command {
        Command::New => keys::cmd_new(&ctx),
        Command::Import => keys::cmd_import(&ctx),
        Command::List => keys::cmd_list(&ctx),
        Command::Balance { address } => keys::cmd_balance(&ctx, address).await,
        Command::Send(args) => transfers::cmd_send(&ctx, args).await,
        Command::SendMany(args) => batch::cmd_send_many(&ctx, args).await,
        Command::Sign(args) => transfers::cmd_sign(&ctx, args),
        Command::Submit { hex } => transfers::cmd_submit(&ctx, &hex).await,
        Command::Tx { txid, verify } => receipts::cmd_tx(&ctx, txid, verify).await,
        Command::History(args) => history::cmd_history(&ctx, args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::genesis::dev_key_bytes;
    use cairn_core::transaction::{address_of, signing_key_from_bytes};
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

    #[test]
    fn default_wallet_dir_is_under_the_data_dir() {
        let dir = default_wallet_dir().unwrap();
        assert!(dir.ends_with("cairn/wallet"), "{}", dir.display());
    }
}
