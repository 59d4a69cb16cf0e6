//! `cairn-wallet`: see the crate docs in lib.rs and `cairn-wallet --help`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cairn_wallet::cli::Cli::parse();
    match cairn_wallet::cli::main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole chain of causes on one line: nothing is lost.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
