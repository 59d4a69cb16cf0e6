//! The keystore: one encrypted file per key in the wallet directory.
//!
//! This module owns every private key at rest. A key file is `<address>.json`:
//!
//! ```json
//! { "version": 1,
//!   "address": "<48 hex chars, checksummed>",
//!   "kdf": { "name": "scrypt", "log_n": 15, "r": 8, "p": 1, "salt": "<32 bytes hex>" },
//!   "cipher": { "name": "chacha20poly1305", "nonce": "<12 bytes hex>" },
//!   "password_check": "<32 bytes hex>",
//!   "ciphertext": "<48 bytes hex: the 32-byte key and a 16-byte tag>" }
//! ```
//!
//! scrypt(password, salt) gives 64 bytes: the first 32 are the ChaCha20-Poly1305 key,
//! the SHA-256 of the last 32 (under a domain tag) is `password_check`. The cipher's
//! associated data is the 20 address bytes, so a ciphertext moved into another
//! address's file fails to decrypt. The password check lets the wallet tell "wrong
//! password" apart from "the file was altered" (with a plain AEAD both look the same); it
//! gives an attacker nothing the ciphertext does not already give (a way to test guesses
//! at full scrypt cost).
//!
//! scrypt parameters are stored in the file and capped when read ([`KdfParams::check`]),
//! so a hostile file cannot make the wallet allocate gigabytes or spin for minutes.
//! Files are mode 0600 in a 0700 directory, written to a temporary file in the same
//! directory, synced, then renamed into place, so a crash never leaves half a key file.
//! Key bytes and derived keys live in [`Zeroizing`] buffers and are wiped on drop.

use cairn_core::hash::tagged_hash;
use cairn_core::transaction::{address_of, signing_key_from_bytes};
use cairn_core::Address;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use k256::ecdsa::SigningKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

/// The key file format version this wallet writes and reads.
pub const KEYSTORE_VERSION: u32 = 1;

/// Environment variable that lowers scrypt's cost for keys the wallet *creates*, for
/// tests only: its value is `log_n` (e.g. `4`). Reading is unaffected (the parameters come
/// from the file). Never set it for real keys: it makes passwords cheap to guess.
pub const INSECURE_LOG_N_ENV: &str = "CAIRN_WALLET_INSECURE_SCRYPT_LOG_N";

/// Domain tag of the password check value.
const PASSWORD_CHECK_TAG: &[u8] = b"cairn/keystore-password-check/v1";
/// Key files are tiny; anything larger than this is not one of ours.
const MAX_FILE_BYTES: u64 = 64 * 1024;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// scrypt cost parameters, as stored in a key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// log2 of scrypt's N (CPU/memory cost).
    pub log_n: u8,
    /// Block size.
    pub r: u32,
    /// Parallelism (run sequentially here, so it multiplies time).
    pub p: u32,
}

/// Caps on parameters read from a file. Memory is `128 * r * 2^log_n` bytes and time
/// grows with `p` times that, so both are bounded.
pub const MAX_LOG_N: u8 = 20;
pub const MAX_R: u32 = 32;
pub const MAX_P: u32 = 16;
pub const MAX_KDF_MEMORY: u64 = 256 * 1024 * 1024;
pub const MAX_KDF_WORK: u64 = 1024 * 1024 * 1024;

impl KdfParams {
    /// The default for new keys: N = 2^15, r = 8, p = 1, i.e. 32 MiB of memory and
    /// about 0.1 s on a laptop: moderate, so that `send` stays quick, while a password
    /// guess still costs an attacker the same 32 MiB and 0.1 s.
    pub const DEFAULT: KdfParams = KdfParams { log_n: 15, r: 8, p: 1 };

    /// Parameters for new keys: [`KdfParams::DEFAULT`], unless the test-only
    /// [`INSECURE_LOG_N_ENV`] variable asks for a cheaper `log_n`.
    pub fn for_new_keys() -> KdfParams {
        let cheap = std::env::var(INSECURE_LOG_N_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u8>().ok())
            .filter(|n| (1..Self::DEFAULT.log_n).contains(n));
        match cheap {
            Some(log_n) => KdfParams { log_n, ..Self::DEFAULT },
            None => Self::DEFAULT,
        }
    }

    /// Bytes of memory scrypt needs with these parameters.
    pub fn memory_bytes(&self) -> u64 {
        128u64
            .saturating_mul(u64::from(self.r))
            .saturating_mul(1u64.checked_shl(u32::from(self.log_n)).unwrap_or(u64::MAX))
    }

    /// Refuses parameters beyond the caps, whatever a file says.
    pub fn check(&self) -> Result<(), String> {
        let within = self.log_n >= 1
            && self.log_n <= MAX_LOG_N
            && (1..=MAX_R).contains(&self.r)
            && (1..=MAX_P).contains(&self.p)
            && self.memory_bytes() <= MAX_KDF_MEMORY
            && self.memory_bytes().saturating_mul(u64::from(self.p)) <= MAX_KDF_WORK;
        if within {
            Ok(())
        } else {
            Err(format!(
                "scrypt parameters log_n={} r={} p={} exceed the wallet's limits \
                 (log_n <= {MAX_LOG_N}, r <= {MAX_R}, p <= {MAX_P}, at most {} MiB of memory)",
                self.log_n,
                self.r,
                self.p,
                MAX_KDF_MEMORY >> 20
            ))
        }
    }
}

#[derive(Debug, Error)]
pub enum KeystoreError {
    #[error("address {address} is not in the wallet at {dir} (see `cairn-wallet list`)")]
    UnknownAddress { address: Address, dir: PathBuf },
    #[error("address {address} is already in the wallet ({path})")]
    AlreadyExists { address: Address, path: PathBuf },
    #[error("wrong password for {path}")]
    WrongPassword { path: PathBuf },
    #[error("keystore file {path} is corrupt or truncated: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("keystore file {path} was refused: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    address: String,
    kdf: KdfSection,
    cipher: CipherSection,
    password_check: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfSection {
    name: String,
    log_n: u8,
    r: u32,
    p: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherSection {
    name: String,
    nonce: String,
}

/// One file of the wallet directory, as `list` sees it.
#[derive(Debug)]
pub struct Entry {
    pub path: PathBuf,
    /// The address, or why the file could not be read.
    pub address: Result<Address, KeystoreError>,
}

/// A wallet directory.
#[derive(Clone, Debug)]
pub struct Keystore {
    dir: PathBuf,
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KeystoreError + 'a {
    move |source| KeystoreError::Io { action, path: path.to_path_buf(), source }
}

/// scrypt to 64 bytes: encryption key, then password-check material.
fn derive(password: &[u8], salt: &[u8], params: KdfParams) -> Result<Zeroizing<[u8; 64]>, String> {
    params.check()?;
    let p = scrypt::Params::new(params.log_n, params.r, params.p, 64).map_err(|_| {
        format!("invalid scrypt parameters log_n={} r={} p={}", params.log_n, params.r, params.p)
    })?;
    let mut out = Zeroizing::new([0u8; 64]);
    scrypt::scrypt(password, salt, &p, out.as_mut()).map_err(|_| "scrypt output length".to_string())?;
    Ok(out)
}

fn password_check(derived: &[u8; 64]) -> [u8; 32] {
    tagged_hash(PASSWORD_CHECK_TAG, &[&derived[32..]])
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cipher(derived: &[u8; 64]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(Key::from_slice(&derived[..KEY_LEN]))
}

/// Encrypts `key` under `password`; returns the file's JSON text.
fn seal(key: &SigningKey, password: &[u8], params: KdfParams) -> Result<(Address, String), String> {
    let address = address_of(key);
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let derived = derive(password, &salt, params)?;
    let mut key_bytes = Zeroizing::new([0u8; KEY_LEN]);
    let mut field_bytes = key.to_bytes();
    key_bytes.copy_from_slice(&field_bytes);
    field_bytes.as_mut_slice().zeroize();
    let ciphertext = cipher(&derived)
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: key_bytes.as_ref(), aad: &address.0 })
        .map_err(|_| "encryption failed".to_string())?;
    let file = KeyFile {
        version: KEYSTORE_VERSION,
        address: address.to_text(),
        kdf: KdfSection {
            name: "scrypt".into(),
            log_n: params.log_n,
            r: params.r,
            p: params.p,
            salt: hex::encode(salt),
        },
        cipher: CipherSection { name: "chacha20poly1305".into(), nonce: hex::encode(nonce) },
        password_check: hex::encode(password_check(&derived)),
        ciphertext: hex::encode(ciphertext),
    };
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok((address, text))
}

fn hex_field<const N: usize>(name: &str, text: &str) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| format!("field `{name}` should be {N} bytes of hex, got {} characters", text.len()))?;
    Ok(out)
}

/// Parses and decrypts a key file's text. `expected` is the address the file name claims.
fn open(text: &str, expected: &Address, password: &[u8], path: &Path) -> Result<SigningKey, KeystoreError> {
    let corrupt = |reason: String| KeystoreError::Corrupt { path: path.to_path_buf(), reason };
    let refused = |reason: String| KeystoreError::Refused { path: path.to_path_buf(), reason };
    let file: KeyFile = serde_json::from_str(text).map_err(|e| corrupt(format!("not a key file: {e}")))?;
    if file.version != KEYSTORE_VERSION {
        return Err(refused(format!(
            "format version {} is not supported (this wallet reads version {KEYSTORE_VERSION})",
            file.version
        )));
    }
    let address: Address = file.address.parse().map_err(|e| corrupt(format!("field `address`: {e}")))?;
    if &address != expected {
        return Err(corrupt(format!("the file is named for {expected} but holds the key of {address}")));
    }
    if file.kdf.name != "scrypt" || file.cipher.name != "chacha20poly1305" {
        return Err(refused(format!(
            "unsupported algorithms {} / {} (this wallet uses scrypt / chacha20poly1305)",
            file.kdf.name, file.cipher.name
        )));
    }
    let params = KdfParams { log_n: file.kdf.log_n, r: file.kdf.r, p: file.kdf.p };
    // Checked before any allocation: this is what keeps a hostile file from costing GiBs.
    params.check().map_err(refused)?;
    let salt = hex_field::<SALT_LEN>("kdf.salt", &file.kdf.salt).map_err(corrupt)?;
    let nonce = hex_field::<NONCE_LEN>("cipher.nonce", &file.cipher.nonce).map_err(corrupt)?;
    let check = hex_field::<32>("password_check", &file.password_check).map_err(corrupt)?;
    let ciphertext = hex_field::<{ KEY_LEN + TAG_LEN }>("ciphertext", &file.ciphertext).map_err(corrupt)?;

    let derived = derive(password, &salt, params).map_err(refused)?;
    if !constant_time_eq(&password_check(&derived), &check) {
        return Err(KeystoreError::WrongPassword { path: path.to_path_buf() });
    }
    let plain = Zeroizing::new(
        cipher(&derived)
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: &address.0 })
            .map_err(|_| {
                corrupt(
                    "the password is right but the encrypted key fails authentication (the file was altered)"
                        .into(),
                )
            })?,
    );
    let key = signing_key_from_bytes(&plain).map_err(|e| corrupt(format!("decrypted key: {e}")))?;
    if address_of(&key) != address {
        return Err(corrupt(format!("the decrypted key does not belong to {address}")));
    }
    Ok(key)
}

impl Keystore {
    pub fn new(dir: impl Into<PathBuf>) -> Keystore {
        Keystore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds (or would hold) the key of `address`.
    pub fn path_for(&self, address: &Address) -> PathBuf {
        self.dir.join(format!("{}.json", address.to_text()))
    }

    pub fn contains(&self, address: &Address) -> bool {
        self.path_for(address).is_file()
    }

    /// Fails with [`KeystoreError::UnknownAddress`] unless the wallet holds `address`.
    /// Lets commands refuse early, before asking for a password.
    pub fn require(&self, address: &Address) -> Result<PathBuf, KeystoreError> {
        let path = self.path_for(address);
        if path.is_file() {
            Ok(path)
        } else {
            Err(KeystoreError::UnknownAddress { address: *address, dir: self.dir.clone() })
        }
    }

    /// Creates the directory with mode 0700 if it does not exist.
    fn ensure_dir(&self) -> Result<(), KeystoreError> {
        if !self.dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(io_err("cannot create the wallet directory", &self.dir))?;
            // DirBuilder's mode is filtered by the umask; set it exactly.
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err("cannot set permissions of", &self.dir))?;
        }
        Ok(())
    }

    /// A warning when other users can read or enter the wallet directory.
    pub fn permission_warning(&self) -> Option<String> {
        let mode = fs::metadata(&self.dir).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "warning: wallet directory {} has mode {mode:03o}; other users can see it (chmod 700 it)",
                self.dir.display()
            )
        })
    }

    /// Encrypts and stores `key`. Refuses to replace an existing key file.
    pub fn add(
        &self,
        key: &SigningKey,
        password: &[u8],
        params: KdfParams,
    ) -> Result<Address, KeystoreError> {
        let address = address_of(key);
        let path = self.path_for(&address);
        if path.exists() {
            return Err(KeystoreError::AlreadyExists { address, path });
        }
        self.ensure_dir()?;
        let (_, text) = seal(key, password, params)
            .map_err(|reason| KeystoreError::Refused { path: path.clone(), reason })?;
        self.write_atomically(&path, text.as_bytes())?;
        Ok(address)
    }

    /// Temp file (0600, same directory) -> fsync -> rename -> fsync the directory.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
        let tmp = self.dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err("cannot create", &tmp))?;
            // The umask cannot widen 0600, but make the mode exact regardless.
            f.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(io_err("cannot set permissions of", &tmp))?;
            f.write_all(bytes).map_err(io_err("cannot write", &tmp))?;
            f.sync_all().map_err(io_err("cannot sync", &tmp))?;
            fs::rename(&tmp, path).map_err(io_err("cannot rename the key file into", path))?;
            fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("cannot sync the wallet directory", &self.dir))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn read_text(&self, address: &Address) -> Result<(PathBuf, String), KeystoreError> {
        let path = self.require(address)?;
        let f = fs::File::open(&path).map_err(io_err("cannot open", &path))?;
        let mut text = String::new();
        // Read one byte past the cap to detect an oversized file without reading it all.
        f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => {
                KeystoreError::Corrupt { path: path.clone(), reason: "the file is not UTF-8 text".into() }
            }
            _ => KeystoreError::Io { action: "cannot read", path: path.clone(), source: e },
        })?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(KeystoreError::Corrupt {
                path,
                reason: format!("the file is over {MAX_FILE_BYTES} bytes; a key file is under 1 KiB"),
            });
        }
        Ok((path, text))
    }

    /// Decrypts the key of `address`.
    pub fn load(&self, address: &Address, password: &[u8]) -> Result<SigningKey, KeystoreError> {
        let (path, text) = self.read_text(address)?;
        let text = Zeroizing::new(text);
        open(&text, address, password, &path)
    }

    /// The key files in the directory (`<address>.json`), sorted by address, each with
    /// its address or why the file is unusable. Files with other names are ignored. No
    /// password is needed: only the public part of each file is checked.
    pub fn list(&self) -> Result<Vec<Entry>, KeystoreError> {
        let read = match fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(KeystoreError::Io { action: "cannot read", path: self.dir.clone(), source: e })
            }
        };
        let mut entries = Vec::new();
        for item in read {
            let item = item.map_err(io_err("cannot read", &self.dir))?;
            let name = item.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else { continue };
            let Ok(address) = stem.parse::<Address>() else { continue };
            let address = self.read_text(&address).and_then(|(path, text)| {
                let file: KeyFile = serde_json::from_str(&text).map_err(|e| KeystoreError::Corrupt {
                    path: path.clone(),
                    reason: format!("not a key file: {e}"),
                })?;
                match file.address.parse::<Address>() {
                    Ok(a) if a == address => Ok(a),
                    _ => Err(KeystoreError::Corrupt {
                        path,
                        reason: format!(
                            "the file is named for {address} but its address field is {}",
                            file.address
                        ),
                    }),
                }
            });
            entries.push(Entry { path: item.path(), address });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Cheap parameters: these tests exercise the format, not scrypt's strength.
    const FAST: KdfParams = KdfParams { log_n: 4, r: 8, p: 1 };

    fn key(n: u8) -> SigningKey {
        signing_key_from_bytes(&[n; 32]).unwrap()
    }

    fn store() -> (tempfile::TempDir, Keystore) {
        let tmp = tempfile::tempdir().unwrap();
        let ks = Keystore::new(tmp.path().join("wallet"));
        (tmp, ks)
    }

    #[test]
    fn round_trip() {
        let (_tmp, ks) = store();
        let k = key(1);
        let addr = ks.add(&k, b"hunter2", FAST).unwrap();
        assert_eq!(addr, address_of(&k));
        let back = ks.load(&addr, b"hunter2").unwrap();
        assert_eq!(back.to_bytes(), k.to_bytes());
        let listed: Vec<Address> = ks.list().unwrap().into_iter().map(|e| e.address.unwrap()).collect();
        assert_eq!(listed, vec![addr]);
    }

    #[test]
    fn default_params_round_trip() {
        let (_tmp, ks) = store();
        let addr = ks.add(&key(9), b"pw", KdfParams::DEFAULT).unwrap();
        let text = fs::read_to_string(ks.path_for(&addr)).unwrap();
        assert!(text.contains("\"log_n\": 15"), "{text}");
        ks.load(&addr, b"pw").unwrap();
    }

    #[test]
    fn wrong_password_is_reported_as_such() {
        let (_tmp, ks) = store();
        let addr = ks.add(&key(2), b"right", FAST).unwrap();
        let err = ks.load(&addr, b"wrong").unwrap_err();
        assert!(matches!(err, KeystoreError::WrongPassword { .. }), "{err}");
        assert!(err.to_string().contains("wrong password"), "{err}");
    }

    #[test]
    fn unknown_address_is_reported() {
        let (_tmp, ks) = store();
        let err = ks.load(&address_of(&key(3)), b"pw").unwrap_err();
        assert!(matches!(err, KeystoreError::UnknownAddress { .. }), "{err}");
        assert!(err.to_string().contains("not in the wallet"), "{err}");
    }

    #[test]
    fn adding_twice_is_refused() {
        let (_tmp, ks) = store();
        ks.add(&key(4), b"pw", FAST).unwrap();
        let err = ks.add(&key(4), b"other", FAST).unwrap_err();
        assert!(matches!(err, KeystoreError::AlreadyExists { .. }), "{err}");
        // The first file is untouched.
        ks.load(&address_of(&key(4)), b"pw").unwrap();
    }

    #[test]
    fn truncated_files_are_corrupt_not_wrong_password() {
        let (_tmp, ks) = store();
        let addr = ks.add(&key(5), b"pw", FAST).unwrap();
        let path = ks.path_for(&addr);
        let full = fs::read(&path).unwrap();
        for len in [0, 1, full.len() / 3, full.len() / 2, full.len() - 3] {
            fs::write(&path, &full[..len]).unwrap();
            let err = ks.load(&addr, b"pw").unwrap_err();
            assert!(matches!(err, KeystoreError::Corrupt { .. }), "len {len}: {err}");
            assert!(err.to_string().contains("corrupt or truncated"), "{err}");
        }
    }

    fn edit(ks: &Keystore, addr: &Address, f: impl FnOnce(&mut serde_json::Value)) {
        let path = ks.path_for(addr);
        let mut v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        f(&mut v);
        fs::write(&path, v.to_string()).unwrap();
    }

    fn flip_hex(s: &str) -> String {
        let mut b = hex::decode(s).unwrap();
        b[0] ^= 1;
        hex::encode(b)
    }

    #[test]
    fn altered_ciphertext_is_corrupt() {
        let (_tmp, ks) = store();
        let addr = ks.add(&key(6), b"pw", FAST).unwrap();
        edit(&ks, &addr, |v| {
            let ct = v["ciphertext"].as_str().unwrap().to_string();
            v["ciphertext"] = flip_hex(&ct).into();
        });
        let err = ks.load(&addr, b"pw").unwrap_err();
        assert!(matches!(err, KeystoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("altered"), "{err}");
    }

    #[test]
    fn ciphertext_moved_to_another_address_fails() {
        let (_tmp, ks) = store();
        let a = ks.add(&key(7), b"pw", FAST).unwrap();
        let b = ks.add(&key(8), b"pw", FAST).unwrap();
        // Copy a's whole file into b's place, relabelled as b: the associated data
        // (the address) no longer matches, so decryption must fail.
        let mut v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(ks.path_for(&a)).unwrap()).unwrap();
        v["address"] = b.to_text().into();
        fs::write(ks.path_for(&b), v.to_string()).unwrap();
        let err = ks.load(&b, b"pw").unwrap_err();
        assert!(matches!(err, KeystoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn garbage_fields_are_corrupt() {
        let (_tmp, ks) = store();
        let addr = ks.add(&key(10), b"pw", FAST).unwrap();
        edit(&ks, &addr, |v| v["kdf"]["salt"] = "zz".into());
        let err = ks.load(&addr, b"pw").unwrap_err();
        assert!(err.to_string().contains("kdf.salt"), "{err}");
        fs::write(ks.path_for(&addr), [0xff, 0xfe, 0x00]).unwrap();
        let err = ks.load(&addr, b"pw").unwrap_err();
        assert!(matches!(err, KeystoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn oversized_file_is_refused_without_reading_it_all() {
        let (_tmp, ks) = store();
        let addr = ks.add(&key(11), b"pw", FAST).unwrap();
        fs::write(ks.path_for(&addr), vec![b' '; 1 << 20]).unwrap();
        let err = ks.load(&addr, b"pw").unwrap_err();
        assert!(err.to_string().contains("over"), "{err}");
    }

    #[test]
    fn hostile_kdf_params_are_capped_before_deriving() {
        let (_tmp, ks) = store();
        let addr = ks.add(&key(12), b"pw", FAST).unwrap();
        // Each of these would need gigabytes (or hours); all must be refused at once.
        for (log_n, r, p) in
            [(30u8, 8u32, 1u32), (21, 8, 1), (18, 16, 1), (16, 8, 1000), (10, 100_000, 1), (0, 8, 1)]
        {
            edit(&ks, &addr, |v| {
                v["kdf"]["log_n"] = log_n.into();
                v["kdf"]["r"] = r.into();
                v["kdf"]["p"] = p.into();
            });
            let started = std::time::Instant::now();
            let err = ks.load(&addr, b"pw").unwrap_err();
            assert!(matches!(err, KeystoreError::Refused { .. }), "{log_n}/{r}/{p}: {err}");
            assert!(err.to_string().contains("exceed the wallet's limits"), "{err}");
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
        // The cap itself admits the default and the largest allowed memory.
        KdfParams::DEFAULT.check().unwrap();
        KdfParams { log_n: 18, r: 8, p: 1 }.check().unwrap();
        assert!(KdfParams { log_n: 18, r: 8, p: 5 }.check().is_err());
    }

    #[test]
    fn unsupported_version_is_refused() {
        let (_tmp, ks) = store();
        let addr = ks.add(&key(13), b"pw", FAST).unwrap();
        edit(&ks, &addr, |v| v["version"] = 2.into());
        let err = ks.load(&addr, b"pw").unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn renamed_file_is_detected() {
        let (_tmp, ks) = store();
        let a = ks.add(&key(14), b"pw", FAST).unwrap();
        let b = address_of(&key(15));
        fs::rename(ks.path_for(&a), ks.path_for(&b)).unwrap();
        let err = ks.load(&b, b"pw").unwrap_err();
        assert!(err.to_string().contains("named for"), "{err}");
        let listed = ks.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].address.is_err());
    }

    #[test]
    fn file_and_directory_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = Keystore::new(tmp.path().join("a/b/wallet"));
        let addr = ks.add(&key(16), b"pw", FAST).unwrap();
        let dir_mode = fs::metadata(ks.dir()).unwrap().permissions().mode() & 0o777;
        let file_mode = fs::metadata(ks.path_for(&addr)).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(file_mode, 0o600);
        assert!(ks.permission_warning().is_none());
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(ks.dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        fs::set_permissions(ks.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(ks.permission_warning().unwrap().contains("755"));
    }

    #[test]
    fn key_material_is_not_in_the_file() {
        let (_tmp, ks) = store();
        let k = key(17);
        let addr = ks.add(&k, b"pw", FAST).unwrap();
        let text = fs::read_to_string(ks.path_for(&addr)).unwrap();
        assert!(!text.contains(&hex::encode(k.to_bytes())));
    }

    #[test]
    fn insecure_env_only_lowers_log_n() {
        // Not set in this process: the default applies.
        if std::env::var_os(INSECURE_LOG_N_ENV).is_none() {
            assert_eq!(KdfParams::for_new_keys(), KdfParams::DEFAULT);
        }
    }
}
