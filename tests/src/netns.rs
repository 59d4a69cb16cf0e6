//! Isolated network namespaces for tests: created with `ip netns add` (as root), wired
//! to each other with veth pairs created inside them, and deleted when dropped, whether
//! the test passed or not. Nothing here touches the host's own interfaces or routes.
//!
//! A test thread can [`Netns::enter`] a namespace to reach the addresses in it (the
//! RPC of a node running there): network namespaces are per thread, and the guard
//! returns the thread to where it was.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

/// Runs a command, failing with its output if it fails.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program).args(args).output().with_context(|| {
        format!("cannot run {program}: run scripts/setup.sh --test to install iproute2 and nftables")
    })?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Whether namespaced tests can run here: root, `ip` and `nft` installed, and `ip netns
/// add` works. If not, says why on stderr ("SKIPPED: ...") and returns false; under
/// `CI=true` it panics instead, since CI must run them.
pub fn available() -> bool {
    #[allow(unsafe_code)] // geteuid(2) has no preconditions
    let root = unsafe { libc::geteuid() } == 0;
    let why = if !root {
        Some("not running as root".to_string())
    } else if crate::test_tool("ip", "iproute2").is_none() || crate::test_tool("nft", "nftables").is_none() {
        Some("ip or nft is not installed".to_string())
    } else {
        let probe = format!("cairn-probe-{}", std::process::id());
        match run("ip", &["netns", "add", &probe]) {
            Ok(()) => {
                let _ = run("ip", &["netns", "del", &probe]);
                None
            }
            Err(e) => Some(format!("ip netns add fails: {e:#}")),
        }
    };
    match why {
        None => true,
        Some(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("network namespaces are needed under CI but unavailable: {why}")
        }
        Some(why) => {
            eprintln!(
                "SKIPPED: network namespaces unavailable ({why}); run as root after scripts/setup.sh --test"
            );
            false
        }
    }
}

/// One network namespace, with its own `/etc/netns/NAME/hosts` if [`Netns::hosts`] was
/// called (`ip netns exec` mounts it over /etc/hosts for the processes it starts).
pub struct Netns {
    pub name: String,
    etc: Option<PathBuf>,
}

impl Netns {
    /// Creates the namespace `name` with its loopback up.
    pub fn create(name: &str) -> Result<Netns> {
        run("ip", &["netns", "add", name])?;
        let ns = Netns { name: name.to_string(), etc: None };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `program ARGS...` inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<()> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A veth pair from this namespace (`here`, with `addr`, a CIDR) to `other`
    /// (`there`, with `other_addr`), both up; created inside the namespaces.
    pub fn link(
        &self,
        here: &str,
        addr: Option<&str>,
        other: &Netns,
        there: &str,
        other_addr: Option<&str>,
    ) -> Result<()> {
        self.ip(&["link", "add", here, "type", "veth", "peer", "name", there, "netns", &other.name])?;
        if let Some(a) = addr {
            self.ip(&["addr", "add", a, "dev", here])?;
        }
        if let Some(a) = other_addr {
            other.ip(&["addr", "add", a, "dev", there])?;
        }
        self.ip(&["link", "set", here, "up"])?;
        other.ip(&["link", "set", there, "up"])
    }

    /// The hosts file processes started in this namespace see.
    pub fn hosts(&mut self, text: &str) -> Result<()> {
        let dir = PathBuf::from("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        self.etc = Some(dir.clone());
        std::fs::write(dir.join("hosts"), text).with_context(|| format!("write {}/hosts", dir.display()))
    }

    /// Moves the calling thread into this namespace until the guard is dropped.
    pub fn enter(&self) -> Result<Entered> {
        let back = File::open("/proc/thread-self/ns/net").context("open our network namespace")?;
        let target = File::open(format!("/var/run/netns/{}", self.name))
            .with_context(|| format!("open namespace {}", self.name))?;
        setns(&target)?;
        Ok(Entered { back })
    }
}

fn setns(ns: &File) -> Result<()> {
    #[allow(unsafe_code)] // setns(2) on an open namespace fd; affects only this thread
    let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread is in a namespace; dropping this returns it to where it was.
pub struct Entered {
    back: File,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.back) {
            eprintln!("cannot return to the original network namespace: {e:#}");
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it, and their peers with them.
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("cleaning up namespace {}: {e:#}", self.name);
        }
        if let Some(dir) = &self.etc {
            let _ = std::fs::remove_dir_all(dir);
            // /etc/netns itself too, if that left it empty (fails harmlessly if not).
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}
