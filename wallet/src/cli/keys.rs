//! `new`, `import`, `list` and `balance`: the wallet's keys and their accounts.

use super::{Ctx, Report};
use crate::amount::format_amount;
use crate::keystore::{KdfParams, Keystore, INSECURE_LOG_N_ENV};
use crate::password::Purpose;
use anyhow::{anyhow, bail, Context, Result};
use cairn_core::transaction::signing_key_from_bytes;
use cairn_core::Address;
use k256::elliptic_curve::Generate;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{IsTerminal, Read};
use zeroize::Zeroizing;

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
        json_lines: false,
        failure: None,
    }
}

pub(super) fn cmd_new(ctx: &Ctx) -> Result<Report> {
    let ks = ctx.keystore()?;
    let password = ctx.password(Purpose::NewKey)?;
    let key = k256::ecdsa::SigningKey::try_generate()
        .map_err(|e| anyhow!("the system's random number generator failed: {e}"))?;
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

pub(super) fn cmd_import(ctx: &Ctx) -> Result<Report> {
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

pub(super) fn cmd_list(ctx: &Ctx) -> Result<Report> {
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
    Ok(Report {
        json,
        text,
        note: (!notes.is_empty()).then(|| notes.join("\n")),
        json_lines: false,
        failure: None,
    })
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

pub(super) async fn cmd_balance(ctx: &Ctx, address: Option<Address>) -> Result<Report> {
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
    // One address: a single account object; several: a list of them.
    let json = match accounts.as_slice() {
        [one] => account_json(one),
        many => json!({ "accounts": many.iter().map(account_json).collect::<Vec<_>>() }),
    };
    Ok(Report::new(json, text))
}
