//! Where the keystore password comes from.
//!
//! In order: `--password-file FILE` (its first line), the `CAIRN_WALLET_PASSWORD`
//! environment variable, or a prompt on the terminal without echo. The wallet prompts
//! only when a person can answer: stdin is a terminal, or (for `import`, whose stdin is
//! the key) stderr is a terminal and /dev/tty can be opened. Otherwise it fails at once
//! with an error that names the two non-interactive options, instead of hanging.

use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::path::Path;
use zeroize::Zeroizing;

pub const PASSWORD_ENV: &str = "CAIRN_WALLET_PASSWORD";

/// What the password is for; new keys are asked for twice and may not be empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose<'a> {
    /// Encrypting a new key.
    NewKey,
    /// Unlocking the key of this address.
    Unlock(&'a str),
}

/// The first line of a password file, without its line ending.
pub fn from_file(path: &Path) -> Result<Zeroizing<String>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read password file {}", path.display()))?,
    );
    let line = text.split('\n').next().unwrap_or("");
    Ok(Zeroizing::new(line.strip_suffix('\r').unwrap_or(line).to_string()))
}

fn can_prompt() -> bool {
    std::io::stdin().is_terminal()
        || (std::io::stderr().is_terminal()
            && std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").is_ok())
}

/// Gets the password from the first source that is set.
pub fn get(password_file: Option<&Path>, purpose: Purpose<'_>) -> Result<Zeroizing<String>> {
    let password = if let Some(path) = password_file {
        from_file(path)?
    } else if let Some(value) = std::env::var_os(PASSWORD_ENV) {
        Zeroizing::new(value.into_string().map_err(|_| anyhow::anyhow!("{PASSWORD_ENV} is not valid UTF-8"))?)
    } else if can_prompt() {
        prompt(purpose)?
    } else {
        bail!(
            "a password is needed and there is no terminal to ask it on: \
             pass --password-file FILE or set {PASSWORD_ENV}"
        );
    };
    if purpose == Purpose::NewKey && password.is_empty() {
        bail!("refusing to encrypt a key with an empty password");
    }
    Ok(password)
}

fn prompt(purpose: Purpose<'_>) -> Result<Zeroizing<String>> {
    match purpose {
        Purpose::Unlock(address) => Ok(Zeroizing::new(
            rpassword::prompt_password(format!("Password for {address}: "))
                .context("cannot read the password")?,
        )),
        Purpose::NewKey => {
            let first = Zeroizing::new(
                rpassword::prompt_password("New password: ").context("cannot read the password")?,
            );
            let second = Zeroizing::new(
                rpassword::prompt_password("Repeat the password: ").context("cannot read the password")?,
            );
            if first != second {
                bail!("the two passwords differ; nothing was saved");
            }
            Ok(first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_file_first_line_without_line_ending() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\r\nignored\n").unwrap();
        assert_eq!(from_file(&p).unwrap().as_str(), "s3cret");
        std::fs::write(&p, "with spaces  ").unwrap();
        assert_eq!(from_file(&p).unwrap().as_str(), "with spaces  ");
        let err = from_file(&dir.path().join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read password file"), "{err:#}");
    }

    #[test]
    fn empty_password_is_refused_for_new_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "\n").unwrap();
        assert!(get(Some(&p), Purpose::NewKey).is_err());
        assert!(get(Some(&p), Purpose::Unlock("x")).is_ok());
    }
}
