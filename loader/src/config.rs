//! `/etc/minicap.conf`: what `minicap load` loads when the command line does not say.
//!
//! The format is the one kdump users know from Debian's `/etc/default/kdump-tools`: one
//! `KEY=value` per line, `#` starts a comment (a whole line, or after whitespace following a
//! value), blank lines are skipped, a value may be wrapped in one pair of `"` or `'` (needed
//! only for `MINICAP_APPEND`, the one value that may hold spaces), and an empty value means
//! "the default". As when the shell sources such a file, a key given twice keeps its last value.
//!
//! | key | becomes |
//! |---|---|
//! | `MINICAP_DEVICE`, `MINICAP_TARGET`, `MINICAP_FALLBACK`, `MINICAP_SERIAL`, `MINICAP_FORMAT`, `MINICAP_COMPRESS`, `MINICAP_DUMP_LEVEL`, `MINICAP_VERIFY`, `MINICAP_AFTER`, `MINICAP_TIMEOUT`, `MINICAP_OVERWRITE` | the option `minicap.<lower-case name>=value` of the capture kernel's command line |
//! | `MINICAP_APPEND` | more of that command line, appended after the options above |
//! | `MINICAP_IMAGE`, `MINICAP_PURGATORY` | the files `--image` and `--purgatory` name |
//! | `MINICAP_SYSCALL` | `--syscall`: `auto`, `file` (kexec_file_load) or `load` (kexec_load) |
//!
//! Every option value is checked by the capture kernel's own parser
//! (`minicap_bootinfo::cmdline::MinicapOptions::parse`), so the file accepts exactly what the
//! capture kernel accepts and an error names the accepted values the kernel would. Errors name
//! the file and line. The command line overrides the file: `--append` replaces all of the
//! options, `--image`, `--purgatory` and `--syscall` their key.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use minicap_bootinfo::cmdline::{MinicapOptions, OPTION_PREFIX};

use crate::load::SyscallChoice;

/// Where `minicap load` and `minicap recommend` read their configuration without `--config`.
pub const DEFAULT_CONFIG: &str = "/etc/minicap.conf";

/// The keys that become one `minicap.*` option, with the option's name.
const OPTION_KEYS: &[(&str, &str)] = &[
    ("MINICAP_DEVICE", "device"),
    ("MINICAP_TARGET", "target"),
    ("MINICAP_FALLBACK", "fallback"),
    ("MINICAP_SERIAL", "serial"),
    ("MINICAP_FORMAT", "format"),
    ("MINICAP_COMPRESS", "compress"),
    ("MINICAP_DUMP_LEVEL", "dump_level"),
    ("MINICAP_VERIFY", "verify"),
    ("MINICAP_AFTER", "after"),
    ("MINICAP_TIMEOUT", "timeout"),
    ("MINICAP_OVERWRITE", "overwrite"),
];

/// The keys naming more options, and files.
const APPEND_KEY: &str = "MINICAP_APPEND";
const IMAGE_KEY: &str = "MINICAP_IMAGE";
const PURGATORY_KEY: &str = "MINICAP_PURGATORY";
const SYSCALL_KEY: &str = "MINICAP_SYSCALL";

/// The settings a configuration file gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The file read (`None`: the default file does not exist, nothing was set).
    pub path: Option<PathBuf>,
    /// `MINICAP_IMAGE`.
    pub image: Option<PathBuf>,
    /// `MINICAP_PURGATORY`.
    pub purgatory: Option<PathBuf>,
    /// `MINICAP_SYSCALL`.
    pub syscall: Option<SyscallChoice>,
    /// The option keys' `minicap.name=value` words, in file order, then `MINICAP_APPEND`.
    pub options: String,
}

/// What is wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        kind: io::ErrorKind,
    },
    /// One line is wrong.
    Line {
        /// The file.
        path: PathBuf,
        /// Its 1-based line number.
        line: usize,
        /// What is wrong, and what would be right.
        problem: LineProblem,
    },
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    /// Not `KEY=value`, a comment or blank.
    NotAssignment,
    /// A key this version does not know.
    UnknownKey(String),
    /// A value opened with a quote that does not close.
    UnclosedQuote,
    /// Text after the value that is not a comment (an unquoted value with spaces).
    TrailingText,
    /// An option value with whitespace or quotes: the capture kernel's command line would
    /// split it into several parameters.
    NotOneWord(&'static str),
    /// The capture kernel's parser refuses the value (its message lists the accepted values).
    BadValue(&'static str, String),
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAssignment => f.write_str("expected KEY=value, a # comment or a blank line"),
            Self::UnknownKey(key) => {
                write!(f, "unknown key {key}: accepted keys: {}", known_keys())
            }
            Self::UnclosedQuote => f.write_str("the quote opening the value is not closed"),
            Self::TrailingText => f.write_str("text after the value: quote a value holding spaces"),
            Self::NotOneWord(key) => write!(f, "{key}: the value must be one word, without quotes"),
            Self::BadValue(key, message) => write!(f, "{key}: {message}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { path, kind } => write!(
                f,
                "cannot read the configuration {}: {}",
                path.display(),
                io::Error::from(*kind)
            ),
            Self::Line {
                path,
                line,
                problem,
            } => write!(f, "{}:{line}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {}

fn known_keys() -> String {
    let mut keys: Vec<&str> = OPTION_KEYS.iter().map(|(k, _)| *k).collect();
    keys.extend([APPEND_KEY, IMAGE_KEY, PURGATORY_KEY, SYSCALL_KEY]);
    keys.join(", ")
}

impl Config {
    /// Reads `path` (`None`: [`DEFAULT_CONFIG`], whose absence means an empty configuration;
    /// a file named explicitly must exist).
    pub fn read(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, must_exist) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG), false),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !must_exist => Ok(Self::default()),
            Err(e) => Err(ConfigError::Unreadable {
                path: path.to_owned(),
                kind: e.kind(),
            }),
        }
    }

    /// Parses the text of the file `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut options: Vec<(&'static str, String)> = Vec::new();
        let mut config = Self {
            path: Some(path.to_owned()),
            ..Self::default()
        };
        let mut append = String::new();
        for (index, raw) in text.lines().enumerate() {
            let error = |problem| ConfigError::Line {
                path: path.to_owned(),
                line: index + 1,
                problem,
            };
            let Some((key, value)) = assignment(raw).map_err(error)? else {
                continue;
            };
            if let Some(&(_, name)) = OPTION_KEYS.iter().find(|(k, _)| *k == key) {
                options.retain(|(n, _)| *n != name);
                if !value.is_empty() {
                    check_option(name, &value).map_err(error)?;
                    options.push((name, value));
                }
                continue;
            }
            match key {
                APPEND_KEY => {
                    crate::load::check_options(&value)
                        .map_err(|e| error(LineProblem::BadValue(APPEND_KEY, format!("{e:#}"))))?;
                    append = value;
                }
                IMAGE_KEY => config.image = (!value.is_empty()).then(|| value.into()),
                PURGATORY_KEY => config.purgatory = (!value.is_empty()).then(|| value.into()),
                SYSCALL_KEY if value.is_empty() => config.syscall = None,
                SYSCALL_KEY => {
                    config.syscall = Some(SyscallChoice::from_word(&value).ok_or_else(|| {
                        error(LineProblem::BadValue(
                            SYSCALL_KEY,
                            format!(
                                "invalid value \"{value}\": accepted values: {}",
                                SyscallChoice::WORDS
                            ),
                        ))
                    })?);
                }
                _ => return Err(error(LineProblem::UnknownKey(key.to_owned()))),
            }
        }
        let mut words: Vec<String> = options
            .iter()
            .map(|(name, value)| format!("{OPTION_PREFIX}{name}={value}"))
            .collect();
        if !append.is_empty() {
            words.push(append);
        }
        config.options = words.join(" ");
        Ok(config)
    }
}

/// What to load: the command line's flags over the configuration's keys over the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The image.
    pub image: PathBuf,
    /// The purgatory (`None`: next to the image).
    pub purgatory: Option<PathBuf>,
    /// The options for minicap.
    pub options: String,
    /// Where the options came from, for errors and the report: `--append` or the file.
    pub options_source: String,
    /// The configuration file read, if any.
    pub config: Option<PathBuf>,
    /// The system call choice.
    pub syscall: SyscallChoice,
}

impl Config {
    /// Applies the command line's `--image`, `--purgatory`, `--append` and `--syscall` over
    /// this file: `--append` replaces every option the file gives. Without an image named,
    /// the installed bzImage if there is one, else the installed ELF
    /// ([`crate::load::default_image`]).
    pub fn resolve(
        self,
        image: Option<PathBuf>,
        purgatory: Option<PathBuf>,
        append: Option<String>,
        syscall: Option<SyscallChoice>,
    ) -> Resolved {
        let (options, options_source) = match (append, &self.path) {
            (Some(append), _) => (append, "--append".to_owned()),
            (None, Some(path)) => (self.options, path.display().to_string()),
            (None, None) => (String::new(), "--append".to_owned()),
        };
        Resolved {
            image: image
                .or(self.image)
                .unwrap_or_else(|| crate::load::default_image(Path::exists)),
            purgatory: purgatory.or(self.purgatory),
            options,
            options_source,
            config: self.path,
            syscall: syscall.or(self.syscall).unwrap_or_default(),
        }
    }
}

/// One line: `None` for a blank or comment line, else the key and the unquoted value.
fn assignment(raw: &str) -> Result<Option<(&str, String)>, LineProblem> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (key, rest) = line.split_once('=').ok_or(LineProblem::NotAssignment)?;
    // A shell assignment has no space before `=`, and its name is a word.
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(LineProblem::NotAssignment);
    }
    let (value, after) = match rest.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let inner = &rest[1..];
            let end = inner.find(quote).ok_or(LineProblem::UnclosedQuote)?;
            (&inner[..end], &inner[end + 1..])
        }
        _ => {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        }
    };
    let after = after.trim_start();
    if !after.is_empty() && !after.starts_with('#') {
        return Err(LineProblem::TrailingText);
    }
    Ok(Some((key, value.to_owned())))
}

/// Checks `minicap.name=value` with the capture kernel's parser.
fn check_option(name: &'static str, value: &str) -> Result<(), LineProblem> {
    let key = OPTION_KEYS
        .iter()
        .find(|(_, n)| *n == name)
        .map_or(name, |(k, _)| k);
    if value.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
        return Err(LineProblem::NotOneWord(key));
    }
    let param = format!("{OPTION_PREFIX}{name}={value}");
    let mut unknown = false;
    MinicapOptions::parse(&param, |_| unknown = true)
        .map_err(|e| LineProblem::BadValue(key, e.to_string()))?;
    // Only if OPTION_KEYS named an option the kernel does not know (a test guards it).
    if unknown {
        return Err(LineProblem::UnknownKey(key.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/minicap.conf"), text)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn every_option_key_is_an_option_of_the_capture_kernel() {
        for (key, name) in OPTION_KEYS {
            assert_eq!(*key, format!("MINICAP_{}", name.to_uppercase()));
            let mut unknown = Vec::new();
            // A bad value proves the key is known: an unknown one is only warned about.
            let param = format!("minicap.{name}=?");
            let rejected = MinicapOptions::parse(&param, |w| unknown.push(w.to_string())).is_err();
            assert!(unknown.is_empty() && rejected, "{key}");
        }
    }

    #[test]
    fn reads_the_kdump_tools_style() {
        let config = parse(
            "# minicap\n\
             \n\
             MINICAP_DEVICE=000102030405060708090a0b0c0d0e0f\n\
             MINICAP_FORMAT=\"kdump\"   # compressed\n\
             \tMINICAP_DUMP_LEVEL='31'\n\
             MINICAP_AFTER=halt\n\
             MINICAP_APPEND=\"minicap.verify=sha256 console=ttyS0\"\n\
             MINICAP_IMAGE=/opt/minicap/minicap.elf\n\
             MINICAP_PURGATORY=\n",
        )
        .unwrap();
        assert_eq!(
            config.options,
            "minicap.device=000102030405060708090a0b0c0d0e0f minicap.format=kdump \
             minicap.dump_level=31 minicap.after=halt minicap.verify=sha256 console=ttyS0"
        );
        assert_eq!(config.image, Some("/opt/minicap/minicap.elf".into()));
        assert_eq!(config.purgatory, None);
        assert_eq!(config.path, Some("/etc/minicap.conf".into()));
        // The options the file gives are the ones the capture kernel will use.
        let opts = MinicapOptions::parse(&config.options, |w| panic!("{w}")).unwrap();
        assert_eq!(opts.after, minicap_bootinfo::cmdline::AfterDump::Halt);
        assert_eq!(opts.dump_level, Some(31));
    }

    #[test]
    fn the_time_limit_and_overwrite_keys() {
        let config = parse("MINICAP_TIMEOUT=900\nMINICAP_OVERWRITE=any\n").unwrap();
        assert_eq!(config.options, "minicap.timeout=900 minicap.overwrite=any");
        let opts = MinicapOptions::parse(&config.options, |w| panic!("{w}")).unwrap();
        assert_eq!(
            opts.timeout,
            minicap_bootinfo::cmdline::Timeout::Seconds(900)
        );
        assert_eq!(opts.overwrite, minicap_bootinfo::cmdline::Overwrite::Any);
    }

    #[test]
    fn the_last_assignment_wins_and_empty_means_default() {
        let config = parse("MINICAP_FORMAT=kdump\nMINICAP_VERIFY=none\nMINICAP_FORMAT=\n").unwrap();
        assert_eq!(config.options, "minicap.verify=none");
        let config = parse("MINICAP_FORMAT=kdump\nMINICAP_FORMAT=elf\n").unwrap();
        assert_eq!(config.options, "minicap.format=elf");
        assert_eq!(parse("").unwrap().options, "");
    }

    #[test]
    fn bad_values_name_the_line_and_the_accepted_values() {
        assert_eq!(
            error("# x\nMINICAP_FORMAT=zstd\n"),
            "/etc/minicap.conf:2: MINICAP_FORMAT: invalid value \"zstd\" for minicap.format: \
             accepted values: elf, kdump"
        );
        assert!(
            error("MINICAP_DUMP_LEVEL=32").contains(":1: MINICAP_DUMP_LEVEL: invalid value \"32\"")
        );
        assert!(error("MINICAP_DEVICE=abc").contains("32 hex digits"));
        assert!(error("MINICAP_SERIAL=0x400").contains("COM1 to COM4"));
        assert!(error("MINICAP_TARGET=usb").contains("any, virtio-blk, nvme, ahci, serial"));
        assert!(error("MINICAP_COMPRESS=\"lzo zlib\"").contains("must be one word"));
        assert!(error("MINICAP_TIMEOUT=10s").contains("auto, none, or whole seconds"));
        assert!(error("MINICAP_OVERWRITE=yes").contains("saved, any"));
        assert!(error("MINICAP_APPEND=\"minicap.formt=kdump\"")
            .starts_with("/etc/minicap.conf:1: MINICAP_APPEND: "));
        assert!(error("MINICAP_APPEND=\"elfcorehdr=0x1000\"").contains("elfcorehdr"));
    }

    #[test]
    fn unknown_keys_and_bad_lines_name_the_line() {
        let e = error("\n\nKDUMP_KERNEL=/boot/vmlinuz\n");
        assert!(
            e.starts_with(
                "/etc/minicap.conf:3: unknown key KDUMP_KERNEL: accepted keys: MINICAP_DEVICE,"
            ),
            "{e}"
        );
        assert!(
            e.ends_with("MINICAP_APPEND, MINICAP_IMAGE, MINICAP_PURGATORY, MINICAP_SYSCALL"),
            "{e}"
        );
        for (text, what) in [
            ("MINICAP_FORMAT kdump", "expected KEY=value"),
            ("MINICAP_FORMAT =kdump", "expected KEY=value"),
            ("=kdump", "expected KEY=value"),
            ("MINICAP_APPEND=\"a b", "not closed"),
            ("MINICAP_APPEND=a b", "quote a value holding spaces"),
            ("MINICAP_FORMAT=\"kdump\"x", "text after the value"),
        ] {
            let e = error(text);
            assert!(
                e.starts_with("/etc/minicap.conf:1: ") && e.contains(what),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn the_command_line_overrides_the_file() {
        let file = || {
            parse("MINICAP_FORMAT=kdump\nMINICAP_IMAGE=/f/minicap.elf\nMINICAP_PURGATORY=/f/p.elf")
                .unwrap()
        };
        let from_file = file().resolve(None, None, None, None);
        assert_eq!(from_file.image, PathBuf::from("/f/minicap.elf"));
        assert_eq!(from_file.purgatory, Some("/f/p.elf".into()));
        assert_eq!(from_file.options, "minicap.format=kdump");
        assert_eq!(from_file.options_source, "/etc/minicap.conf");
        let overridden = file().resolve(
            Some("/c/m.elf".into()),
            Some("/c/p.elf".into()),
            Some("minicap.after=halt".into()),
            Some(SyscallChoice::Load),
        );
        assert_eq!(overridden.image, PathBuf::from("/c/m.elf"));
        assert_eq!(overridden.purgatory, Some("/c/p.elf".into()));
        assert_eq!(overridden.options, "minicap.after=halt");
        assert_eq!(overridden.options_source, "--append");
        assert_eq!(overridden.config, Some("/etc/minicap.conf".into()));
        assert_eq!(overridden.syscall, SyscallChoice::Load);
        let none = Config::default().resolve(None, None, None, None);
        assert_eq!(none.image, crate::load::default_image(Path::exists));
        assert_eq!(none.syscall, SyscallChoice::Auto);
        assert_eq!(
            (none.purgatory, none.options, none.config),
            (None, String::new(), None)
        );
    }

    #[test]
    fn the_syscall_key() {
        let config = parse("MINICAP_SYSCALL=file\n").unwrap();
        assert_eq!(config.syscall, Some(SyscallChoice::File));
        assert_eq!(config.options, "");
        let resolved = config.clone().resolve(None, None, None, None);
        assert_eq!(resolved.syscall, SyscallChoice::File);
        // --syscall wins over the file.
        let resolved = config.resolve(None, None, None, Some(SyscallChoice::Auto));
        assert_eq!(resolved.syscall, SyscallChoice::Auto);
        assert_eq!(
            parse("MINICAP_SYSCALL=load\nMINICAP_SYSCALL=\n")
                .unwrap()
                .syscall,
            None
        );
        assert_eq!(
            error("MINICAP_SYSCALL=kexec"),
            "/etc/minicap.conf:1: MINICAP_SYSCALL: invalid value \"kexec\": accepted values: \
             auto, file, load"
        );
    }

    #[test]
    fn the_default_file_may_be_absent_a_named_one_may_not() {
        let missing = std::env::temp_dir().join(format!("minicap-no-conf-{}", std::process::id()));
        let e = Config::read(Some(&missing)).unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Unreadable {
                kind: io::ErrorKind::NotFound,
                ..
            }
        ));
        assert!(e.to_string().starts_with("cannot read the configuration "));
    }

    #[test]
    fn the_shipped_example_is_valid_and_sets_nothing() {
        let example = include_str!("../minicap.conf");
        let config = parse(example).unwrap();
        assert_eq!(
            config,
            Config {
                path: Some("/etc/minicap.conf".into()),
                ..Config::default()
            }
        );
        // Uncommenting each example line gives a valid file.
        for line in example.lines().filter(|l| l.starts_with("#MINICAP_")) {
            parse(&line[1..]).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }
}
