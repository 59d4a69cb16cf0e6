//! The config file (`--config FILE`, or `<data-dir>/cairn.toml` when it exists): a TOML
//! table whose keys are the node's long command-line options, derived from the clap
//! definition itself, so an option added to the command line gets its key with no change
//! here. A flag (`--mine`) takes `true` or `false`, a repeatable option (`--peer`) an array
//! (or one value), every other option one string or number. Each value goes through the
//! option's own parser, so a file accepts exactly what the command line accepts.
//!
//! The command line wins: a file value is used only where the option was not given on the
//! command line (for a repeatable option, any command-line value replaces the file's whole
//! list). An unknown key, a wrong type or a bad value is an error naming the file, the line
//! and the key, and the node does not start.

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::{Spanned, Value};

/// Argument ids that are not config keys: the config file itself, and what only makes
/// sense on a command line.
const NOT_KEYS: &[&str] = &["config", "print_config", "help", "version"];

/// Where an option's effective value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    CommandLine,
    File,
    Default,
    /// Neither given nor defaulted.
    Unset,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::CommandLine => "command line",
            Source::File => "config file",
            Source::Default => "default",
            Source::Unset => "not set",
        })
    }
}

/// A config file that cannot be used: which file, and where in it if known.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line of the offending key, when the error is about one key.
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The options that are config keys, in the order `--help` lists them: every argument of
/// `cmd` with a long name, except [`NOT_KEYS`].
pub fn keys(cmd: &Command) -> Vec<&Arg> {
    cmd.get_arguments()
        .filter(|a| a.get_long().is_some() && !NOT_KEYS.contains(&a.get_id().as_str()))
        .collect()
}

/// One key of a config file, checked against its option: the command-line words it stands
/// for (`--mine`, `--peer=ADDR`, ...), and its line.
#[derive(Clone, Debug)]
pub struct FileValue {
    pub id: String,
    pub line: usize,
    pub words: Vec<OsString>,
}

/// Parses `text` (the contents of `file`) and checks every key against `cmd`'s options:
/// all the errors, in line order, or the values in line order.
pub fn parse_file(cmd: &Command, file: &Path, text: &str) -> Result<Vec<FileValue>, Vec<ConfigError>> {
    let error = |line: Option<usize>, key: Option<&str>, message: String| ConfigError {
        file: file.to_path_buf(),
        line,
        key: key.map(str::to_string),
        message,
    };
    let table: BTreeMap<Spanned<String>, Spanned<Value>> = toml::from_str(text)
        .map_err(|e| vec![error(line_of_error(text, &e), None, first_line(&e.to_string()))])?;
    let keys = keys(cmd);
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in &table {
        let line = line_at(text, key.span().start);
        let name = key.get_ref().as_str();
        let Some(arg) = keys.iter().find(|a| a.get_long() == Some(name)) else {
            let known: Vec<&str> = keys.iter().filter_map(|a| a.get_long()).collect();
            errors.push(error(
                Some(line),
                Some(name),
                format!("unknown key (known keys: {})", known.join(", ")),
            ));
            continue;
        };
        match words(cmd, arg, value.get_ref()) {
            Ok(words) => values.push(FileValue { id: arg.get_id().to_string(), line, words }),
            Err(message) => errors.push(error(Some(line), Some(name), message)),
        }
    }
    if errors.is_empty() {
        values.sort_by_key(|v| v.line);
        Ok(values)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

/// The command-line words a file value stands for, each value checked by the option's
/// own parser.
fn words(cmd: &Command, arg: &Arg, value: &Value) -> Result<Vec<OsString>, String> {
    let long = arg.get_long().unwrap_or_default();
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value {
            Value::Boolean(true) => Ok(vec![format!("--{long}").into()]),
            Value::Boolean(false) => Ok(Vec::new()),
            other => Err(format!("expected true or false, found {}", kind(other))),
        },
        ArgAction::Append => {
            let items = match value {
                Value::Array(items) => items.as_slice(),
                single => std::slice::from_ref(single),
            };
            items.iter().map(|item| checked(cmd, arg, item, true)).collect()
        }
        _ => Ok(vec![checked(cmd, arg, value, false)?]),
    }
}

/// `--long=VALUE` for one scalar `value`, once the option's parser accepted it.
fn checked(cmd: &Command, arg: &Arg, value: &Value, in_list: bool) -> Result<OsString, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        other => {
            let want = if in_list { "a list of strings or numbers" } else { "a string or a number" };
            return Err(format!("expected {want}, found {}", kind(other)));
        }
    };
    let word: OsString = format!("--{}={text}", arg.get_long().unwrap_or_default()).into();
    // The option alone on a command line: its parser checks the value. What it needs
    // from other options (`requires`) is checked once everything is merged.
    let bin = OsString::from(cmd.get_name());
    match cmd.clone().try_get_matches_from([bin, word.clone()]) {
        Err(e) if e.kind() != ErrorKind::MissingRequiredArgument => {
            Err(first_line(&e.to_string()).trim_start_matches("error: ").to_string())
        }
        _ => Ok(word),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

fn line_of_error(text: &str, e: &toml::de::Error) -> Option<usize> {
    e.span().map(|s| line_at(text, s.start))
}

fn first_line(s: &str) -> String {
    s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default().to_string()
}

/// The effective configuration: the command line merged over a config file.
pub struct Effective {
    /// What the node runs with.
    pub matches: ArgMatches,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    sources: BTreeMap<String, Source>,
}

impl Effective {
    pub fn source(&self, id: &str) -> Source {
        self.sources.get(id).copied().unwrap_or(Source::Unset)
    }

    /// The effective configuration as a config file, each key with where its value came
    /// from (what `--print-config` prints).
    pub fn render(&self, cmd: &Command) -> String {
        let mut out = String::from("# cairn-node: the effective configuration (command line, then ");
        match &self.file {
            Some(f) => out.push_str(&format!("config file {}, then defaults)\n", f.display())),
            None => out.push_str("no config file, then defaults)\n"),
        }
        let keys = keys(cmd);
        let width = keys.iter().filter_map(|a| self.line_for(a)).map(|l| l.len()).max().unwrap_or(0);
        for arg in keys {
            let id = arg.get_id().as_str();
            let line =
                self.line_for(arg).unwrap_or_else(|| format!("# {} =", arg.get_long().unwrap_or_default()));
            out.push_str(&format!("{line:<width$}  # {}\n", self.source(id)));
        }
        out
    }

    fn line_for(&self, arg: &Arg) -> Option<String> {
        let long = arg.get_long()?;
        let id = arg.get_id().as_str();
        let raw: Vec<String> = match self.matches.get_raw(id) {
            Some(raw) => raw.map(|v| v.to_string_lossy().into_owned()).collect(),
            // A repeatable option given nowhere is an empty list.
            None if matches!(arg.get_action(), ArgAction::Append) => Vec::new(),
            None => return None,
        };
        let value = match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => Value::Boolean(raw.first()? == "true"),
            ArgAction::Append => Value::Array(raw.iter().map(|r| Value::String(r.clone())).collect()),
            _ => {
                let r = raw.first()?;
                match r.parse::<i64>() {
                    Ok(i) if i.to_string() == *r => Value::Integer(i),
                    _ => Value::String(r.clone()),
                }
            }
        };
        Some(format!("{long} = {value}"))
    }
}

/// Merges the config file `file` (if any) under the command line `argv`, already parsed
/// by `cmd` into `cli`: the file's values for every option the command line did not give,
/// then parsed again as one command line, so clap's own rules (conflicts, requirements)
/// hold across both.
pub fn merge(
    cmd: &Command,
    argv: &[OsString],
    cli: &ArgMatches,
    file: Option<&Path>,
) -> Result<Effective, Vec<ConfigError>> {
    let mut sources = BTreeMap::new();
    let mut args = argv.to_vec();
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            vec![ConfigError {
                file: file.to_path_buf(),
                line: None,
                key: None,
                message: format!("cannot read it: {e}"),
            }]
        })?;
        for v in parse_file(cmd, file, &text)? {
            if cli.value_source(&v.id) != Some(ValueSource::CommandLine) {
                args.extend(v.words);
                sources.insert(v.id, Source::File);
            }
        }
    }
    let matches = cmd.clone().try_get_matches_from(&args).map_err(|e| {
        let message = first_line(&e.to_string()).trim_start_matches("error: ").to_string();
        vec![ConfigError {
            file: file.map(Path::to_path_buf).unwrap_or_default(),
            line: None,
            key: None,
            message,
        }]
    })?;
    for arg in keys(cmd) {
        let id = arg.get_id().as_str();
        let source = if cli.value_source(id) == Some(ValueSource::CommandLine) {
            Source::CommandLine
        } else if sources.contains_key(id) {
            Source::File
        } else if matches.value_source(id) == Some(ValueSource::DefaultValue) {
            Source::Default
        } else {
            Source::Unset
        };
        sources.insert(id.to_string(), source);
    }
    Ok(Effective { matches, file: file.map(Path::to_path_buf), sources })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::CommandFactory;

    const CONTRIB: &str = include_str!("../../contrib/cairn.toml");

    fn cmd() -> Command {
        crate::Cli::command()
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        parse_file(&cmd(), Path::new("test.toml"), text).unwrap_err()
    }

    /// contrib/cairn.toml parses as it ships, documents every option (set, or commented
    /// out as `# key = example`), and each commented-out example parses too: an option
    /// added to the command line without its key there fails this test.
    #[test]
    fn contrib_cairn_toml_documents_every_option() {
        let cmd = cmd();
        let file = Path::new("contrib/cairn.toml");
        parse_file(&cmd, file, CONTRIB).unwrap_or_else(|e| panic!("{}", e[0]));
        for arg in keys(&cmd) {
            let key = arg.get_long().unwrap();
            let lines: Vec<&str> = CONTRIB
                .lines()
                .filter(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = ")))
                .collect();
            assert!(!lines.is_empty(), "contrib/cairn.toml does not document `{key}`");
            for line in lines {
                let values = parse_file(&cmd, file, line.trim_start_matches("# "))
                    .unwrap_or_else(|e| panic!("{line:?}: {}", e[0]));
                assert_eq!(values[0].id, arg.get_id().as_str());
            }
        }
    }

    /// Every key takes what its option takes, and stands for the same command line.
    #[test]
    fn every_key_parses_to_its_command_line() {
        let text = "dev = true\nmine = false\npeer = [\"127.0.0.1:1\", \"h:2\"]\nmax-peers = 5\n\
                    listen = \"127.0.0.1:9\"\nlog-format = \"json\"\nmempool-max-bytes = \"1000\"\n";
        let values = parse_file(&cmd(), Path::new("t.toml"), text).unwrap();
        let words: Vec<(usize, Vec<String>)> = values
            .iter()
            .map(|v| (v.line, v.words.iter().map(|w| w.to_string_lossy().into_owned()).collect()))
            .collect();
        let w = |line: usize, words: &[&str]| (line, words.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            words,
            vec![
                w(1, &["--dev"]),
                w(2, &[]),
                w(3, &["--peer=127.0.0.1:1", "--peer=h:2"]),
                w(4, &["--max-peers=5"]),
                w(5, &["--listen=127.0.0.1:9"]),
                w(6, &["--log-format=json"]),
                w(7, &["--mempool-max-bytes=1000"]),
            ]
        );
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_values_name_the_file_line_and_key() {
        let e = errors("max-peers = 3\n\nmax_peer = 3\n");
        assert_eq!((e[0].line, e[0].key.as_deref()), (Some(3), Some("max_peer")));
        assert!(
            e[0].to_string().starts_with("config file test.toml, line 3, key `max_peer`: unknown key"),
            "{}",
            e[0]
        );

        let e = errors("mine = \"yes\"\n");
        assert_eq!(
            e[0].to_string(),
            "config file test.toml, line 1, key `mine`: expected true or false, found a string"
        );
        let e = errors("listen = true\n");
        assert!(e[0].message.contains("expected a string or a number, found a boolean"), "{}", e[0]);
        let e = errors("max-peers = [1, 2]\n");
        assert!(e[0].message.contains("found an array"), "{}", e[0]);
        let e = errors("[p2p]\nlisten = \"x\"\n");
        assert_eq!((e[0].line, e[0].key.as_deref()), (Some(1), Some("p2p")));

        let e = errors("# comment\nmax-peers = \"many\"\n");
        assert_eq!((e[0].line, e[0].key.as_deref()), (Some(2), Some("max-peers")));
        assert!(e[0].message.contains("invalid value 'many'"), "{}", e[0]);
        let e = errors("log-format = \"xml\"\n");
        assert!(e[0].message.contains("invalid value 'xml'"), "{}", e[0]);
        let e = errors("listen = \"localhost\"\n");
        assert!(e[0].message.contains("invalid value 'localhost'"), "{}", e[0]);

        // Every error at once, in line order; a syntax error names its line.
        let e = errors("a = 1\nmine = 2\n");
        assert_eq!(e.iter().map(|e| e.line).collect::<Vec<_>>(), vec![Some(1), Some(2)]);
        let e = errors("max-peers = 3\nlisten = \n");
        assert_eq!(e[0].line, Some(2), "{}", e[0]);
    }

    #[test]
    fn the_command_line_wins_and_sources_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cairn.toml");
        std::fs::write(&file, "max-peers = 5\nlisten = \"127.0.0.1:9\"\npeer = [\"a:1\"]\nmine = true\n")
            .unwrap();
        let cmd = cmd();
        let argv: Vec<OsString> = ["cairn-node", "--max-peers", "7", "--peer", "b:2", "--miner-address", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        let cli = cmd.clone().try_get_matches_from(&argv).unwrap();
        let e = merge(&cmd, &argv, &cli, Some(&file)).unwrap();
        assert_eq!(e.matches.get_one::<usize>("max_peers"), Some(&7));
        assert_eq!(e.source("max_peers"), Source::CommandLine);
        assert_eq!(e.matches.get_many::<String>("peers").unwrap().collect::<Vec<_>>(), vec!["b:2"]);
        assert_eq!(e.matches.get_one::<std::net::SocketAddr>("listen").unwrap().port(), 9);
        assert_eq!(e.source("listen"), Source::File);
        assert!(e.matches.get_flag("mine"));
        assert_eq!(e.source("rpc_addr"), Source::Default);
        assert_eq!(e.source("genesis"), Source::Unset);
        let text = e.render(&cmd);
        let line = |key: &str| text.lines().find(|l| l.starts_with(key)).unwrap().to_string();
        assert!(line("max-peers = 7 ").ends_with("# command line"), "{text}");
        assert!(line("listen = \"127.0.0.1:9\"").ends_with("# config file"), "{text}");
        assert!(line("peer = [\"b:2\"]").ends_with("# command line"), "{text}");
        assert!(line("mine = true").ends_with("# config file"), "{text}");
        assert!(line("rpc-addr = \"127.0.0.1:7332\"").ends_with("# default"), "{text}");
        assert!(line("# genesis =").ends_with("# not set"), "{text}");
        assert!(line("log-level = \"info\"").ends_with("# default"), "{text}");
        // What --print-config prints is itself a config file that parses.
        parse_file(&cmd, &file, &text).unwrap_or_else(|e| panic!("{}\n{text}", e[0]));
    }
}
