//! Which system call loads minicap (`--syscall auto|file|load`), and what a refusal of
//! `kexec_file_load` leads to: pure decisions, so every combination is tested on the host.
//!
//! * `kexec_file_load(2)`: the kernel reads a bzImage itself; the only way under lockdown
//!   (Secure Boot), where the image must carry a signature the kernel trusts. It builds the
//!   core headers, e820 map and purgatory itself: minicap's SHA-256 purgatory and the hidden
//!   test options (which damage what minicap's own plan hands over) need `kexec_load`.
//! * `kexec_load(2)`: minicap's plan, headers and purgatory; takes an ELF or a bzImage's
//!   payload; refused under lockdown.
//!
//! `auto` tries `kexec_file_load` with a bzImage and falls back to `kexec_load` when the
//! kernel lacks it or cannot take the image, unless the kernel is locked down (`kexec_load`
//! would be refused) or the refusal is about the signature or permission (a kernel demanding
//! a trusted signature must not be worked around; without permission neither call works) or
//! the crash kernel is busy (neither call would do better now).

use std::fmt;
use std::io;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::image_file::ImageKind;

/// `--syscall` (and `MINICAP_SYSCALL`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum SyscallChoice {
    /// kexec_file_load with a bzImage, else (or when it cannot take it) kexec_load.
    #[default]
    Auto,
    /// Only kexec_file_load (a bzImage).
    File,
    /// Only kexec_load (an ELF, or a bzImage's payload), with minicap's purgatory.
    Load,
}

impl SyscallChoice {
    /// The accepted words, as written in the configuration file.
    pub const WORDS: &'static str = "auto, file, load";

    /// Parses the configuration file's value.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::from_str(word, false).ok()
    }
}

impl fmt::Display for SyscallChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::File => "file",
            Self::Load => "load",
        })
    }
}

/// The system call that loaded minicap (kept in the load record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Syscall {
    /// `kexec_file_load(2)`.
    KexecFileLoad,
    /// `kexec_load(2)`.
    KexecLoad,
}

impl fmt::Display for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::KexecFileLoad => "kexec_file_load",
            Self::KexecLoad => "kexec_load",
        })
    }
}

/// How to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `kexec_file_load`; `fallback`: on a refusal [`after_file_refusal`] may send the load
    /// to `kexec_load`.
    File {
        /// `kexec_load` is allowed after a refusal.
        fallback: bool,
    },
    /// `kexec_load` only.
    Load,
}

/// The README section on signing.
const SECURE_BOOT: &str = "see \"Loading under Secure Boot\" in minicap's README";

/// The route for `kind` with `choice`; `lockdown` is the active lockdown mode, `test_only`
/// whether a hidden test option (damage to minicap's own plan) was given. `Err`: why nothing
/// can be loaded, with the fix.
pub fn route(
    kind: ImageKind,
    choice: SyscallChoice,
    lockdown: Option<&str>,
    test_only: bool,
) -> Result<Route, String> {
    let locked = |why: &str| {
        lockdown.map(|mode| {
            format!(
                "the kernel is locked down ({mode}): it refuses kexec_load (EPERM from lockdown, \
                 or EACCES when IMA appraisal refuses first) and loads only a signed bzImage through kexec_file_load; {why} ({SECURE_BOOT})"
            )
        })
    };
    let is_bzimage = matches!(kind, ImageKind::BzImage { .. });
    match choice {
        SyscallChoice::File if !is_bzimage => Err(
            "--syscall file: kexec_file_load takes only a bzImage on x86_64, not an ELF: give \
             --image minicap.bzImage (`cargo xtask build` writes it next to minicap.elf)"
                .to_owned(),
        ),
        SyscallChoice::File if test_only => Err(
            "--corrupt-digest, --test-corrupt-core-headers and --test-omit-elfcorehdr damage \
             minicap's own plan, which only kexec_load loads: not with --syscall file"
                .to_owned(),
        ),
        SyscallChoice::File => Ok(Route::File { fallback: false }),
        SyscallChoice::Auto if is_bzimage && !test_only => Ok(Route::File {
            fallback: lockdown.is_none(),
        }),
        SyscallChoice::Auto | SyscallChoice::Load => {
            let why = if test_only {
                "the test options need kexec_load: they cannot be used here"
            } else if is_bzimage {
                "use --syscall auto or file"
            } else {
                "use the signed bzImage: --image minicap.bzImage, signed with sbsign"
            };
            match locked(why) {
                Some(message) => Err(message),
                None => Ok(Route::Load),
            }
        }
    }
}

/// What follows a refusal of `kexec_file_load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterRefusal {
    /// Load with `kexec_load`; print `warning: <line>` first.
    FallBack(String),
    /// Stop with this error.
    Fail(String),
}

/// `errno` values of `kexec_file_load`.
mod errno {
    pub const EPERM: i32 = 1;
    pub const EBUSY: i32 = 16;
    pub const ENODATA: i32 = 61;
    pub const EBADMSG: i32 = 74;
    pub const ELIBBAD: i32 = 80;
    pub const ENOKEY: i32 = 126;
    pub const EKEYREJECTED: i32 = 129;
}

/// The symbolic name of the errnos `kexec_file_load` returns, `errno N` for others.
fn errno_name(errno: i32) -> String {
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        8 => "ENOEXEC",
        9 => "EBADF",
        12 => "ENOMEM",
        14 => "EFAULT",
        16 => "EBUSY",
        22 => "EINVAL",
        27 => "EFBIG",
        38 => "ENOSYS",
        61 => "ENODATA",
        74 => "EBADMSG",
        80 => "ELIBBAD",
        95 => "EOPNOTSUPP",
        99 => "EADDRNOTAVAIL",
        126 => "ENOKEY",
        129 => "EKEYREJECTED",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

/// `ENOEXEC (Exec format error)`.
pub fn describe_errno(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    // std appends " (os error N)".
    let text = text
        .strip_suffix(&format!(" (os error {errno})"))
        .unwrap_or(&text);
    format!("{} ({text})", errno_name(errno))
}

/// What a refusal of `kexec_file_load` with `errno` means: `fallback` from [`Route::File`],
/// `lockdown` the active mode, `root` whether the caller is root.
pub fn after_file_refusal(
    errno: i32,
    fallback: bool,
    lockdown: Option<&str>,
    root: bool,
) -> AfterRefusal {
    let what = describe_errno(errno);
    let signature = |problem: &str| {
        AfterRefusal::Fail(format!(
            "kexec_file_load: {what}: {problem}: the kernel requires a signed image it trusts. \
             Sign minicap.bzImage with sbsign (sbsign --key KEY --cert CERT --output \
             minicap.bzImage minicap.bzImage) and enroll CERT as a Machine Owner Key (mokutil \
             --import, then reboot to confirm), {SECURE_BOOT}. Not falling back to \
             kexec_load: a kernel that demands a signature must not be worked around"
        ))
    };
    match errno {
        errno::ENODATA => signature("the image is not signed"),
        errno::ENOKEY => signature("the image is signed with a key the kernel does not trust"),
        errno::EKEYREJECTED => signature("the signature does not match the image"),
        errno::EBADMSG | errno::ELIBBAD => signature("the signature cannot be parsed"),
        errno::EPERM if !root => AfterRefusal::Fail(format!(
            "kexec_file_load: {what}: loading a crash kernel needs root (CAP_SYS_BOOT); run \
             `sudo minicap load ...`"
        )),
        errno::EPERM => match lockdown {
            Some(mode) => signature(&format!(
                "the kernel is locked down ({mode}) and does not accept this image"
            )),
            // kexec_load_disabled was read as 0 before the call: what is left is a lockdown
            // securityfs does not show.
            None => signature(
                "refused although running as root: the kernel is most likely locked down \
                 (not shown: /sys/kernel/security/lockdown is absent; mount securityfs to see \
                 it), or /proc/sys/kernel/kexec_load_disabled was set meanwhile",
            ),
        },
        errno::EBUSY => AfterRefusal::Fail(format!(
            "kexec_file_load: {what}: another process is loading a crash kernel, or one is \
             running: retry once it has finished"
        )),
        _ if fallback => AfterRefusal::FallBack(format!(
            "kexec_file_load: {what}; falling back to kexec_load"
        )),
        _ => AfterRefusal::Fail(match lockdown {
            Some(mode) => format!(
                "kexec_file_load: {what}; no fallback: the kernel is locked down ({mode}) and \
                 refuses kexec_load"
            ),
            None => format!(
                "kexec_file_load: {what} (--syscall file: no fallback; --syscall auto would \
                 load with kexec_load)"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELF: ImageKind = ImageKind::Elf;
    const BZ: ImageKind = ImageKind::BzImage { signed: false };
    const SIGNED: ImageKind = ImageKind::BzImage { signed: true };
    const LOCKED: Option<&str> = Some("integrity");

    #[test]
    fn routes() {
        use SyscallChoice::{Auto, File, Load};
        let file = |fallback| Ok(Route::File { fallback });
        // auto: a bzImage goes to kexec_file_load, with the fallback unless locked down.
        assert_eq!(route(BZ, Auto, None, false), file(true));
        assert_eq!(route(SIGNED, Auto, None, false), file(true));
        assert_eq!(route(SIGNED, Auto, LOCKED, false), file(false));
        // an ELF goes to kexec_load, which lockdown refuses: use the bzImage.
        assert_eq!(route(ELF, Auto, None, false), Ok(Route::Load));
        let e = route(ELF, Auto, LOCKED, false).unwrap_err();
        assert!(e.starts_with("the kernel is locked down (integrity): it refuses kexec_load"));
        assert!(e.contains("use the signed bzImage") && e.contains("Loading under Secure Boot"));
        // The test options select kexec_load.
        assert_eq!(route(BZ, Auto, None, true), Ok(Route::Load));
        let e = route(BZ, Auto, LOCKED, true).unwrap_err();
        assert!(e.contains("test options need kexec_load"), "{e}");
        // file: a bzImage only, never the fallback, no test options.
        assert_eq!(route(BZ, File, None, false), file(false));
        assert_eq!(route(SIGNED, File, LOCKED, false), file(false));
        assert!(route(ELF, File, None, false)
            .unwrap_err()
            .contains("takes only a bzImage"));
        assert!(route(BZ, File, None, true)
            .unwrap_err()
            .contains("not with --syscall file"));
        // load: either kind, not under lockdown.
        assert_eq!(route(BZ, Load, None, false), Ok(Route::Load));
        assert_eq!(route(ELF, Load, None, true), Ok(Route::Load));
        assert!(route(BZ, Load, LOCKED, false)
            .unwrap_err()
            .contains("use --syscall auto or file"));
    }

    #[test]
    fn errno_names_and_texts() {
        assert_eq!(describe_errno(8), "ENOEXEC (Exec format error)");
        assert_eq!(describe_errno(38), "ENOSYS (Function not implemented)");
        assert_eq!(
            describe_errno(129),
            "EKEYREJECTED (Key was rejected by service)"
        );
        assert!(describe_errno(4095).starts_with("errno 4095 ("));
    }

    #[test]
    fn a_kernel_that_cannot_take_the_image_falls_back() {
        for errno in [38, 8, 95, 22, 99, 12] {
            let AfterRefusal::FallBack(line) = after_file_refusal(errno, true, None, true) else {
                panic!("errno {errno} must fall back");
            };
            assert!(line.starts_with("kexec_file_load: E"), "{line}");
            assert!(line.ends_with("; falling back to kexec_load"), "{line}");
        }
        assert_eq!(
            after_file_refusal(8, true, None, true),
            AfterRefusal::FallBack(
                "kexec_file_load: ENOEXEC (Exec format error); falling back to kexec_load"
                    .to_owned()
            )
        );
        // Without the fallback (--syscall file, or locked down): the error says why not.
        let AfterRefusal::Fail(e) = after_file_refusal(38, false, None, true) else {
            panic!()
        };
        assert!(e.contains("ENOSYS") && e.contains("--syscall file: no fallback"));
        let AfterRefusal::Fail(e) = after_file_refusal(8, false, LOCKED, true) else {
            panic!()
        };
        assert!(e.contains("no fallback: the kernel is locked down (integrity)"));
    }

    #[test]
    fn a_signature_refusal_never_falls_back() {
        for (errno, problem) in [
            (61, "is not signed"),
            (126, "key the kernel does not trust"),
            (129, "does not match"),
            (74, "cannot be parsed"),
            (80, "cannot be parsed"),
        ] {
            for lockdown in [None, LOCKED] {
                let AfterRefusal::Fail(e) = after_file_refusal(errno, true, lockdown, true) else {
                    panic!("errno {errno} fell back");
                };
                assert!(e.contains(problem), "{e}");
                assert!(e.contains(&describe_errno(errno)), "{e}");
                assert!(e.contains("requires a signed image it trusts"), "{e}");
                assert!(
                    e.contains("sbsign") && e.contains("mokutil --import"),
                    "{e}"
                );
                assert!(e.contains("Loading under Secure Boot"), "{e}");
            }
        }
        // EPERM as root: lockdown (shown or not).
        let AfterRefusal::Fail(e) = after_file_refusal(1, true, LOCKED, true) else {
            panic!()
        };
        assert!(
            e.contains("EPERM (Operation not permitted)") && e.contains("locked down (integrity)")
        );
        assert!(matches!(
            after_file_refusal(1, true, None, true),
            AfterRefusal::Fail(e) if e.contains("requires a signed image")
                && e.contains("most likely locked down (not shown")
        ));
        // EPERM as a user: root, not a signature.
        let AfterRefusal::Fail(e) = after_file_refusal(1, true, None, false) else {
            panic!()
        };
        assert!(e.contains("needs root") && !e.contains("sbsign"), "{e}");
        // Busy: neither call would do better now.
        assert!(matches!(
            after_file_refusal(16, true, None, true),
            AfterRefusal::Fail(e) if e.contains("retry")
        ));
    }

    #[test]
    fn choice_words_and_record_names() {
        assert_eq!(SyscallChoice::from_word("file"), Some(SyscallChoice::File));
        assert_eq!(SyscallChoice::from_word("auto"), Some(SyscallChoice::Auto));
        assert_eq!(SyscallChoice::from_word("load"), Some(SyscallChoice::Load));
        assert_eq!(SyscallChoice::from_word("kexec"), None);
        assert_eq!(SyscallChoice::default().to_string(), "auto");
        assert_eq!(
            serde_json::to_string(&Syscall::KexecFileLoad).unwrap(),
            "\"kexec_file_load\""
        );
        assert_eq!(Syscall::KexecLoad.to_string(), "kexec_load");
    }
}
