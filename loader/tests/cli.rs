//! End-to-end tests of the `minicap` binary on image files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use minicap_chunksum::xxh64;
use minicap_dumpheader::{
    Compression, DeviceIdHex, DumpFormat, DumpHeader, DumpState, FailureCode, Verification,
    CHUNK_TABLE_OFFSET, DUMP_OFFSET, HEADER_LEN, LEGACY_DUMP_OFFSET, MIN_CAPACITY, TRIAGE_OFFSET,
};
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;
const ID: [u8; 16] = *b"0123456789abcdef";

/// A fresh directory per test, under cargo's scratch space for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// `dev.img` in a fresh scratch directory `name`.
fn device(name: &str) -> PathBuf {
    scratch(name).join("dev.img")
}

/// `dev.img` and `vmcore` in a fresh scratch directory `name`.
fn device_and_output(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    (dir.join("dev.img"), dir.join("vmcore"))
}

fn minicap(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minicap"))
        .args(args)
        .output()
        .expect("run minicap")
}

fn minicap_str(args: &[&str]) -> Output {
    let paths: Vec<&Path> = args.iter().map(Path::new).collect();
    minicap(&paths)
}

/// `minicap SUBCOMMAND DEVICE`.
fn run(subcommand: &str, dev: &Path) -> Output {
    minicap(&[Path::new(subcommand), dev])
}

/// What `minicap info DEVICE` prints.
fn info_text(dev: &Path) -> String {
    stdout(&run("info", dev))
}

/// The command failed with exit status `code`, saying `needle` on stderr.
#[track_caller]
fn assert_fails(o: &Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", stderr(o));
    assert!(stderr(o).contains(needle), "{}", stderr(o));
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An image file of `len` bytes filled with 0xAA, so that zeroing is observable.
fn image(path: &Path, len: u64) {
    fs::write(path, vec![0xaa; usize::try_from(len).unwrap()]).unwrap();
}

fn header_of(path: &Path) -> DumpHeader {
    let bytes = fs::read(path).unwrap();
    DumpHeader::decode(&bytes[..HEADER_LEN]).unwrap()
}

/// Decodes the header of the image at `path`, changes it with `edit` and writes it back.
fn edit_header(path: &Path, edit: impl FnOnce(&mut DumpHeader)) {
    let mut h = header_of(path);
    edit(&mut h);
    write_at(path, 0, &h.encode());
}

/// Overwrites the image at `path` with `bytes` from byte `at`.
fn write_at(path: &Path, at: u64, bytes: &[u8]) {
    let mut img = fs::read(path).unwrap();
    let at = usize::try_from(at).unwrap();
    img[at..at + bytes.len()].copy_from_slice(bytes);
    fs::write(path, img).unwrap();
}

/// Deterministic, non-repeating-looking dump data.
fn dump_data(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            x.to_le_bytes()[3]
        })
        .collect()
}

/// Writes an image holding `data` as a dump in `state`, `written` bytes of it present, with
/// the given recorded SHA-256.
fn crafted(
    path: &Path,
    capacity: u64,
    data: &[u8],
    state: DumpState,
    written: u64,
    sha: [u8; 32],
) -> DumpHeader {
    let mut h = DumpHeader::new_empty(ID, capacity, "minicap 0.1.0");
    h.state = state;
    h.format = DumpFormat::ElfVmcore;
    h.dump_length = u64::try_from(data.len()).unwrap();
    h.written = written;
    h.crash_time = 1_700_000_000;
    h.sha256 = sha;
    h.set_osrelease("6.8.0-minicap-test");
    if state == DumpState::Failed {
        h.set_message("virtio-blk: I/O error at sector 4242");
    }
    let mut img = vec![0u8; usize::try_from(capacity).unwrap()];
    img[..HEADER_LEN].copy_from_slice(&h.encode());
    let off = usize::try_from(DUMP_OFFSET).unwrap();
    let w = usize::try_from(written).unwrap();
    img[off..off + w].copy_from_slice(&data[..w]);
    fs::write(path, img).unwrap();
    h
}

/// Writes an image holding all of `data` as a complete dump with its SHA-256.
fn complete_dump(path: &Path, capacity: u64, data: &[u8]) -> DumpHeader {
    let written = u64::try_from(data.len()).unwrap();
    crafted(
        path,
        capacity,
        data,
        DumpState::Complete,
        written,
        sha256(data),
    )
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[test]
fn format_then_info() {
    let dev = device("format-info");
    image(&dev, 4 * MIB);
    let id_hex = DeviceIdHex(&ID).to_string();
    let o = minicap(&[
        Path::new("format"),
        &dev,
        Path::new("--id"),
        Path::new(&id_hex),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("minicap.device={id_hex}")),
        "{}",
        stdout(&o)
    );

    let bytes = fs::read(&dev).unwrap();
    assert_eq!(bytes.len(), 4 * 1024 * 1024, "format must not resize");
    let h = DumpHeader::decode(&bytes[..HEADER_LEN]).unwrap();
    assert_eq!(h.device_id, ID);
    assert_eq!(h.state, DumpState::Empty);
    assert_eq!(h.format, DumpFormat::None);
    assert_eq!(h.capacity, 4 * MIB);
    assert_eq!(h.dump_offset, DUMP_OFFSET);
    assert_eq!(
        h.writer_str(),
        format!("minicap-format {}", env!("CARGO_PKG_VERSION"))
    );
    // Header extension, log, chunk table and triage area zeroed; the dump area untouched.
    let dump_at = usize::try_from(DUMP_OFFSET).unwrap();
    assert_eq!(dump_at, 2 << 20);
    assert!(bytes[HEADER_LEN..dump_at].iter().all(|&b| b == 0));
    assert!(
        bytes[dump_at..].iter().all(|&b| b == 0xaa),
        "data area untouched"
    );
    assert_eq!(h.triage_length, 0);
    assert_eq!(h.compression, Compression::None);

    let o = run("info", &dev);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(&id_hex), "{out}");
    assert!(out.contains("empty"), "{out}");
    assert!(out.contains("minicap-format"), "{out}");
}

#[test]
fn format_random_ids_differ() {
    let dir = scratch("random-id");
    let a = dir.join("a.img");
    let b = dir.join("b.img");
    image(&a, 3 * MIB);
    image(&b, 3 * MIB);
    assert!(run("format", &a).status.success());
    let o = run("format", &b);
    assert!(o.status.success());
    let (ha, hb) = (header_of(&a), header_of(&b));
    assert_ne!(ha.device_id, hb.device_id);
    assert_ne!(ha.device_id, [0; 16]);
    let line = format!("minicap.device={}", DeviceIdHex(&hb.device_id));
    assert!(stdout(&o).contains(&line));
    // Reformatting an empty device needs no --force and picks a new id.
    assert!(run("format", &a).status.success());
    assert_ne!(header_of(&a).device_id, ha.device_id);
}

#[test]
fn format_too_small() {
    let dir = scratch("small");
    let dev = dir.join("small.img");
    image(&dev, MIN_CAPACITY - 512);
    let o = run("format", &dev);
    assert_fails(&o, 1, "too small");
    assert!(
        fs::read(&dev).unwrap().iter().all(|&b| b == 0xaa),
        "refused format must not write"
    );
    image(&dev, MIN_CAPACITY);
    assert!(run("format", &dev).status.success());
}

#[test]
fn format_missing_device() {
    let dir = scratch("missing");
    let dev = dir.join("nope.img");
    let o = run("format", &dev);
    assert_fails(&o, 1, "cannot open");
    assert!(!dev.exists(), "format must not create files");
}

#[test]
fn save_complete_dump() {
    let (dev, out) = device_and_output("save-ok");
    let data = dump_data(300_000);
    let complete_header = complete_dump(&dev, 4 * MIB, &data);
    assert!(info_text(&dev).contains("saved:       no: the capture kernel keeps this dump"));
    let before = fs::read(&dev).unwrap();
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), data);
    let s = stdout(&o);
    assert!(s.contains("checksum OK"), "{s}");
    assert!(s.contains("6.8.0-minicap-test"), "{s}");
    assert!(s.contains("300000 bytes"), "{s}");
    assert!(s.contains("2023-11-14 22:13:20 UTC"), "{s}");
    assert!(s.contains("marked saved on"), "{s}");
    // Save changes one field, the header's saved time; nothing else on the device.
    let after = fs::read(&dev).unwrap();
    let saved = header_of(&dev);
    assert!(saved.is_saved() && !saved.holds_unsaved_dump());
    let mut unmarked = saved.clone();
    unmarked.saved_time = 0;
    assert_eq!(unmarked, complete_header);
    assert_eq!(
        after[HEADER_LEN..],
        before[HEADER_LEN..],
        "save must not modify the dump"
    );
    assert!(info_text(&dev).contains("saved:       yes, by minicap save at"));

    // Saving again overwrites OUT with the same bytes, and leaves the mark as it was.
    fs::write(&out, b"old junk that is longer than nothing").unwrap();
    assert!(minicap(&[Path::new("save"), &dev, &out]).status.success());
    assert_eq!(fs::read(&out).unwrap(), data);
    assert_eq!(fs::read(&dev).unwrap(), after);

    // A saved dump may be formatted without --force; formatting clears the mark.
    let o = run("format", &dev);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!header_of(&dev).is_saved());
}

#[test]
fn a_failed_check_leaves_the_dump_unsaved() {
    let (dev, out) = device_and_output("save-bad-unmarked");
    let data = dump_data(8192);
    let mut sha = sha256(&data);
    sha[0] ^= 1;
    crafted(&dev, 3 * MIB, &data, DumpState::Complete, 8192, sha);
    let before = fs::read(&dev).unwrap();
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(fs::read(&dev).unwrap(), before, "not marked saved");
}

#[test]
fn a_partial_dump_saved_with_partial_is_marked() {
    let (dev, out) = device_and_output("save-partial-marked");
    let data = dump_data(100_000);
    crafted(&dev, 3 * MIB, &data, DumpState::Failed, 40_960, [0; 32]);
    assert!(header_of(&dev).holds_unsaved_dump());
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        !header_of(&dev).is_saved(),
        "refused without --partial: not saved"
    );
    let o = minicap(&[Path::new("save"), &dev, &out, Path::new("--partial")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let h = header_of(&dev);
    assert!(h.is_saved() && !h.holds_unsaved_dump());
    assert_eq!(
        (h.state, h.written),
        (DumpState::Failed, 40_960),
        "only the mark changed"
    );
}

#[test]
fn a_read_only_device_is_saved_with_a_warning() {
    let (dev, out) = device_and_output("save-read-only");
    let data = dump_data(4096);
    complete_dump(&dev, 3 * MIB, &data);
    let mut perms = fs::metadata(&dev).unwrap().permissions();
    perms.set_readonly(true);
    fs::set_permissions(&dev, perms).unwrap();
    let o = minicap(&[Path::new("save"), &dev, &out]);
    // Root ignores the permission bits: the mark is then written.
    if header_of(&dev).is_saved() {
        return;
    }
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), data);
    assert!(
        stderr(&o).contains("could not be marked saved"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn save_wrong_checksum() {
    let (dev, out) = device_and_output("save-bad-sha");
    let data = dump_data(8192);
    let mut sha = sha256(&data);
    sha[0] ^= 1;
    crafted(&dev, 3 * MIB, &data, DumpState::Complete, 8192, sha);
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("MISMATCH") && e.contains("before trusting it"),
        "{e}"
    );
    assert_eq!(fs::read(&out).unwrap(), data, "OUT is kept");
}

#[test]
fn save_partial() {
    let (dev, out) = device_and_output("save-partial");
    let data = dump_data(100_000);
    crafted(&dev, 3 * MIB, &data, DumpState::Writing, 40_000, [0; 32]);

    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_fails(&o, 1, "--partial");
    assert!(stdout(&o).contains("writing"), "{}", stdout(&o));
    assert!(stdout(&o).contains("40000 of 100000"), "{}", stdout(&o));
    assert!(!out.exists());

    let o = minicap(&[Path::new("save"), &dev, &out, Path::new("--partial")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("partial dump"), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), &data[..40_000]);
}

#[test]
fn save_failed_shows_message() {
    let (dev, out) = device_and_output("save-failed");
    let data = dump_data(50_000);
    crafted(&dev, 3 * MIB, &data, DumpState::Failed, 4096, [0; 32]);
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_eq!(o.status.code(), Some(1));
    let s = stdout(&o);
    assert!(s.contains("failed"), "{s}");
    assert!(s.contains("I/O error at sector 4242"), "{s}");
    let o = minicap(&[Path::new("save"), &dev, &out, Path::new("--partial")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), &data[..4096]);

    // Nothing written: nothing to save, even with --partial.
    crafted(&dev, 3 * MIB, &data, DumpState::Failed, 0, [0; 32]);
    let o = minicap(&[Path::new("save"), &dev, &out, Path::new("--partial")]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn save_empty_device() {
    let (dev, out) = device_and_output("save-empty");
    image(&dev, 3 * MIB);
    assert!(run("format", &dev).status.success());
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_fails(&o, 1, "no dump on this device");
    assert!(!out.exists());
}

#[test]
fn save_truncated_image() {
    let (dev, out) = device_and_output("save-truncated");
    let data = dump_data(4096);
    complete_dump(&dev, 3 * MIB, &data);
    // Cut the image inside the dump area.
    let f = fs::OpenOptions::new().write(true).open(&dev).unwrap();
    f.set_len(MIB + 100).unwrap();
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_fails(&o, 1, "truncated");
}

#[test]
fn save_onto_device_itself_is_refused() {
    let dev = device("save-self");
    let data = dump_data(4096);
    complete_dump(&dev, 3 * MIB, &data);
    let before = fs::read(&dev).unwrap();
    let o = minicap(&[Path::new("save"), &dev, &dev]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(fs::read(&dev).unwrap(), before);
}

#[test]
fn format_refuses_unsaved_dump() {
    let dev = device("refuse");
    let data = dump_data(10_000);
    for (state, written) in [
        (DumpState::Complete, 10_000),
        (DumpState::Writing, 5_000),
        (DumpState::Failed, 5_000),
    ] {
        let h = crafted(&dev, 3 * MIB, &data, state, written, sha256(&data));
        let before = fs::read(&dev).unwrap();
        let o = run("format", &dev);
        assert_eq!(o.status.code(), Some(1), "{state:?}");
        let e = stderr(&o);
        assert!(e.contains("--force") && e.contains("minicap save"), "{e}");
        assert_eq!(
            fs::read(&dev).unwrap(),
            before,
            "{state:?}: device unchanged"
        );
        assert_eq!(header_of(&dev), h);

        let o = minicap(&[Path::new("format"), &dev, Path::new("--force")]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(header_of(&dev).state, DumpState::Empty);
    }
}

#[test]
fn format_refuses_damaged_minicap_header() {
    let dev = device("damaged");
    let data = dump_data(100);
    complete_dump(&dev, 3 * MIB, &data);
    let mut img = fs::read(&dev).unwrap();
    img[300] ^= 0xff; // breaks the CRC, keeps the magic
    fs::write(&dev, &img).unwrap();
    let o = run("format", &dev);
    assert_fails(&o, 1, "damaged");
    assert!(minicap(&[Path::new("format"), &dev, Path::new("--force")])
        .status
        .success());
}

#[test]
fn info_on_foreign_device() {
    let dir = scratch("foreign");
    let dev = dir.join("dev.img");
    image(&dev, 3 * MIB);
    let o = run("info", &dev);
    assert_fails(&o, 1, "not a minicap");
    let o = minicap(&[Path::new("save"), &dev, &dir.join("out")]);
    assert_eq!(o.status.code(), Some(1));
    // Shorter than one sector.
    image(&dev, 100);
    let o = run("info", &dev);
    assert_fails(&o, 1, "not a minicap");
}

#[test]
fn info_complete_dump() {
    let dev = device("info-complete");
    let data = dump_data(1000);
    complete_dump(&dev, 3 * MIB, &data);
    let o = run("info", &dev);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    for needle in [
        "complete",
        "elf-vmcore",
        "6.8.0-minicap-test",
        "2023-11-14",
        "1000 bytes",
        &DeviceIdHex(&ID).to_string(),
    ] {
        assert!(s.contains(needle), "{needle} missing in {s}");
    }
}

#[test]
fn usage() {
    let o = minicap_str(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Usage:"));
    let o = minicap_str(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unrecognized subcommand"));
    let o = minicap_str(&["format", "x", "--id", "123"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("32 hex digits"));
    let o = minicap_str(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("minicap format DEVICE"));
    let o = minicap_str(&["--version"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn log_prints_the_stored_console_log() {
    let dev = device("log");
    let data = dump_data(50_000);
    crafted(&dev, 3 * MIB, &data, DumpState::Failed, 4096, [0; 32]);

    // No log stored yet: say so, exit 1.
    let o = run("log", &dev);
    assert_fails(&o, 1, "no console log");
    assert!(info_text(&dev).contains("console log: -"));

    // Store one the way the capture kernel does: text at LOG_OFFSET, its
    // length in the header.
    let text = b"minicap: starting\nminicap: RESULT: failure: disk on fire\n";
    edit_header(&dev, |h| h.log_length = u32::try_from(text.len()).unwrap());
    write_at(&dev, minicap_dumpheader::LOG_OFFSET, text);

    let o = run("log", &dev);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, text);
    let info = info_text(&dev);
    assert!(
        info.contains(&format!("console log: {} bytes", text.len())),
        "{info}"
    );
}

#[test]
fn help_for_every_subcommand() {
    for sub in ["format", "save", "info", "log", "dmesg"] {
        for args in [vec!["help", sub], vec![sub, "--help"], vec![sub, "-h"]] {
            let o = minicap_str(&args);
            assert_eq!(o.status.code(), Some(0), "{args:?}");
            let out = stdout(&o);
            assert!(
                out.contains(&format!("Usage: minicap {sub}")),
                "{args:?}: {out}"
            );
            assert!(out.contains("DEVICE"), "{args:?}: {out}");
        }
    }
    let o = minicap_str(&["help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("Exit status: 0 success, 1 failure or refusal, 2 usage error"));
    let o = minicap_str(&["info", "--help"]);
    assert!(stdout(&o).contains("--json"), "{}", stdout(&o));
}

#[test]
fn usage_errors_exit_2_and_touch_nothing() {
    let dir = scratch("usage-errors");
    let dev = dir.join("dev.img");
    image(&dev, 3 * MIB);
    let d = dev.to_str().unwrap();
    for args in [
        vec!["format"],
        vec!["format", d, "extra"],
        vec!["format", d, "--id"],
        vec!["format", d, "--id", &"0".repeat(32)],
        vec!["format", d, "--partial"],
        vec!["save", d],
        vec!["save", d, "out", "--force"],
        vec!["info"],
        vec!["info", d, "--what"],
        vec!["log", d, "--json"],
        vec!["help", "frobnicate"],
    ] {
        let o = minicap_str(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("error:"), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    assert!(fs::read(&dev).unwrap().iter().all(|&b| b == 0xaa));
    assert!(!dir.join("out").exists());
}

#[test]
fn info_json_has_the_documented_schema() {
    let dev = device("info-json");
    let data = dump_data(4096);
    crafted(&dev, 3 * MIB, &data, DumpState::Failed, 4096, [7; 32]);
    edit_header(&dev, |h| {
        h.failure_code = FailureCode::DeviceTooSmall;
        h.skipped_ranges = 3;
        h.skipped_bytes = 12_288;
        h.log_length = 10;
        h.set_writer("minicap \"0.1\"\u{1b}[31m");
    });

    let o = minicap(&[Path::new("info"), Path::new("--json"), &dev]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "one object on one line: {out}");
    assert!(!out.contains('\u{1b}'), "JSON escapes control characters");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let obj = v.as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut want = vec![
        "device",
        "device_id",
        "state",
        "format",
        "dump_offset",
        "dump_length",
        "written",
        "capacity",
        "crash_time",
        "sha256",
        "writer",
        "osrelease",
        "message",
        "failure_code",
        "skipped_ranges",
        "skipped_bytes",
        "log_length",
        "verify",
        "chunk_size",
        "triage_length",
        "dump_level_requested",
        "dump_level",
        "level_note",
        "compression",
        "pages_ram",
        "pages_dumped",
        "saved_time",
    ];
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    want.sort_unstable();
    assert_eq!(sorted, want);
    assert_eq!(v["device"], dev.to_str().unwrap());
    assert_eq!(v["device_id"], DeviceIdHex(&ID).to_string());
    assert_eq!(v["state"], "failed");
    assert_eq!(v["format"], "elf-vmcore");
    assert_eq!(v["dump_offset"], DUMP_OFFSET);
    assert_eq!(v["dump_length"], 4096);
    assert_eq!(v["written"], 4096);
    assert_eq!(v["capacity"], 3 * MIB);
    assert_eq!(v["crash_time"], 1_700_000_000);
    assert_eq!(v["sha256"], "07".repeat(32));
    assert_eq!(v["writer"], "minicap \"0.1\"\u{1b}[31m");
    assert_eq!(v["osrelease"], "6.8.0-minicap-test");
    assert_eq!(v["message"], "virtio-blk: I/O error at sector 4242");
    assert_eq!(v["failure_code"], "device-too-small");
    assert_eq!(v["skipped_ranges"], 3);
    assert_eq!(v["skipped_bytes"], 12_288);
    assert_eq!(v["log_length"], 10);
    assert_eq!(v["verify"], "sha256");
    assert_eq!(v["chunk_size"], 0);
    // An ELF dump without triage: the extension's defaults.
    assert_eq!(v["triage_length"], 0);
    assert_eq!(v["dump_level_requested"], 0);
    assert_eq!(v["dump_level"], 0);
    assert_eq!(v["level_note"], "");
    assert_eq!(v["compression"], "none");
    assert_eq!(v["pages_ram"], 0);
    assert_eq!(v["pages_dumped"], 0);

    // The text form shows the failure code and the skipped ranges too.
    let text = info_text(&dev);
    assert!(text.contains("failure:     device-too-small"), "{text}");
    assert!(
        text.contains("skipped:     3 PT_LOAD range(s), 12288 bytes"),
        "{text}"
    );

    // An empty device: failure code none, and the text form stays quiet about both.
    image(&dev, 3 * MIB);
    assert!(run("format", &dev).status.success());
    let v: serde_json::Value =
        serde_json::from_slice(&minicap(&[Path::new("info"), Path::new("--json"), &dev]).stdout)
            .unwrap();
    assert_eq!(v["state"], "empty");
    assert_eq!(v["failure_code"], "none");
    assert_eq!(v["message"], "");
    let text = info_text(&dev);
    assert!(
        !text.contains("failure:") && !text.contains("skipped:"),
        "{text}"
    );

    // No header: exit 1, a message on stderr, nothing on stdout.
    image(&dev, 3 * MIB);
    let o = minicap(&[Path::new("info"), Path::new("--json"), &dev]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("not a minicap"), "{}", stderr(&o));
}

/// A 4 MiB image of zeros with `plant` applied.
fn disk_with(path: &Path, plant: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut img = vec![0u8; usize::try_from(4 * MIB).unwrap()];
    plant(&mut img);
    fs::write(path, &img).unwrap();
    img
}

fn put(img: &mut [u8], at: usize, bytes: &[u8]) {
    img[at..at + bytes.len()].copy_from_slice(bytes);
}

#[test]
fn format_refuses_disks_carrying_data_unless_forced() {
    let dev = device("signatures");
    let end = usize::try_from(4 * MIB).unwrap();
    let md_magic = [0xfc, 0x4e, 0x2b, 0xa9];
    type Plant = Box<dyn Fn(&mut [u8])>;
    let cases: Vec<(&str, Plant)> = vec![
        (
            "MBR partition table",
            Box::new(|img| {
                put(img, 446, &[0x80, 0, 0, 0, 0x83]);
                put(img, 446 + 12, &2048u32.to_le_bytes());
                put(img, 510, &[0x55, 0xaa]);
            }),
        ),
        (
            "GPT partition table (512-byte sectors)",
            Box::new(|img| put(img, 512, b"EFI PART")),
        ),
        (
            "GPT partition table (4096-byte sectors)",
            Box::new(|img| put(img, 4096, b"EFI PART")),
        ),
        (
            "ext2/3/4 file system",
            Box::new(|img| put(img, 1080, &0xef53u16.to_le_bytes())),
        ),
        ("XFS file system", Box::new(|img| put(img, 0, b"XFSB"))),
        (
            "btrfs file system",
            Box::new(|img| put(img, 65_600, b"_BHRfS_M")),
        ),
        (
            "LVM2 physical volume",
            Box::new(|img| {
                put(img, 512, b"LABELONE");
                put(img, 512 + 24, b"LVM2 001");
            }),
        ),
        (
            "Linux swap area",
            Box::new(|img| put(img, 4096 - 10, b"SWAPSPACE2")),
        ),
        (
            "md RAID 1.2 superblock",
            Box::new(move |img| {
                put(img, 4096, &md_magic);
                put(img, 4100, &1u32.to_le_bytes());
            }),
        ),
        (
            "md RAID 0.90 superblock",
            Box::new(move |img| put(img, end - 65_536, &md_magic)),
        ),
        (
            "md RAID 1.0 superblock",
            Box::new(move |img| {
                put(img, end - 8192, &md_magic);
                put(img, end - 8192 + 4, &1u32.to_le_bytes());
            }),
        ),
    ];
    for (name, plant) in cases {
        let before = disk_with(&dev, plant);
        let o = run("format", &dev);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let e = stderr(&o);
        assert!(e.contains(name) && e.contains("--force"), "{name}: {e}");
        assert!(
            fs::read(&dev).unwrap() == before,
            "{name}: refused format wrote"
        );

        let o = minicap(&[Path::new("format"), &dev, Path::new("--force")]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(name), "{name}: the warning names it");
        assert_eq!(header_of(&dev).state, DumpState::Empty, "{name}");
        if name.contains("RAID 0.90") || name.contains("RAID 1.0") {
            let img = fs::read(&dev).unwrap();
            assert!(
                img[end - 128 * 1024..].iter().all(|&b| b == 0),
                "{name}: the superblock at the end is wiped too"
            );
        }
    }

    // Several at once are all named.
    disk_with(&dev, |img| {
        put(img, 512, b"EFI PART");
        put(img, 4096 - 10, b"SWAP-SPACE");
    });
    let e = stderr(&run("format", &dev));
    assert!(
        e.contains("GPT") && e.contains("and a Linux swap area"),
        "{e}"
    );
}

#[test]
fn format_sees_a_file_system_made_over_a_prepared_device() {
    let dev = device("mkfs-over-minicap");
    disk_with(&dev, |_| {});
    assert!(run("format", &dev).status.success());
    let mut img = fs::read(&dev).unwrap();
    put(&mut img, 1080, &0xef53u16.to_le_bytes());
    // Dump data beyond 1 MiB may hold anything, even an md superblock image at the end.
    let end = img.len();
    put(&mut img, end - 8192, &[0xfc, 0x4e, 0x2b, 0xa9, 1, 0, 0, 0]);
    fs::write(&dev, &img).unwrap();
    let o = run("format", &dev);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("carries an ext2/3/4 file system: "), "{e}");
    assert!(!e.contains("RAID"), "{e}");
    assert!(minicap(&[Path::new("format"), &dev, Path::new("--force")])
        .status
        .success());
}

#[test]
fn format_accepts_zeros_and_random_data() {
    let dev = device("blank");
    disk_with(&dev, |_| {});
    let o = run("format", &dev);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let noise = dump_data(usize::try_from(4 * MIB).unwrap());
    fs::write(&dev, &noise).unwrap();
    let o = run("format", &dev);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(header_of(&dev).state, DumpState::Empty);
}

#[test]
fn save_refuses_a_foreign_dump_offset() {
    let (dev, out) = device_and_output("save-offset");
    let data = dump_data(4096);
    complete_dump(&dev, 4 * MIB, &data);
    edit_header(&dev, |h| h.dump_offset = 3 * MIB);
    write_at(&dev, 3 * MIB, &data);
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("dump at byte 3145728")
            && e.contains("always has it at byte 2097152 (2 MiB), or 1048576 (1 MiB)"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn device_strings_are_escaped_on_the_terminal() {
    let (dev, out) = device_and_output("escape");
    let data = dump_data(8192);
    crafted(&dev, 3 * MIB, &data, DumpState::Failed, 4096, [0; 32]);
    let evil = "\u{1b}]0;owned\u{7}\u{1b}[2J";
    let log = format!("line one\n\tindented{evil}\r\nline \u{9b}31m three\n");
    edit_header(&dev, |h| {
        h.set_osrelease(&format!("6.8{evil}"));
        h.set_message(&format!("disk on fire{evil}\rfine"));
        h.set_writer(&format!("w{evil}"));
        h.log_length = u32::try_from(log.len()).unwrap();
    });
    write_at(&dev, minicap_dumpheader::LOG_OFFSET, log.as_bytes());

    let shown = "\\x1b]0;owned\\x07\\x1b[2J";
    let clean = |o: &Output| {
        for stream in [&o.stdout, &o.stderr] {
            assert!(
                !stream.iter().any(|&b| b == 0x1b || b == 0x07 || b == b'\r'),
                "{}",
                String::from_utf8_lossy(stream)
            );
        }
    };
    let o = run("info", &dev);
    assert!(o.status.success());
    clean(&o);
    let s = stdout(&o);
    assert!(s.contains(&format!("osrelease:   6.8{shown}")), "{s}");
    assert!(
        s.contains(&format!("message:     disk on fire{shown}\\x0dfine")),
        "{s}"
    );
    assert!(s.contains(&format!("writer:      w{shown}")), "{s}");

    let o = minicap(&[Path::new("save"), &dev, &out, Path::new("--partial")]);
    assert!(o.status.success(), "{}", stderr(&o));
    clean(&o);
    assert!(
        stdout(&o).contains(&format!("osrelease:  6.8{shown}")),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains(&format!("message:   disk on fire{shown}")));

    // Saving marked the dump saved; unmarked, format refuses it again, naming it.
    edit_header(&dev, |h| h.saved_time = 0);
    let o = run("format", &dev);
    assert_eq!(o.status.code(), Some(1));
    clean(&o);
    assert!(stderr(&o).contains(shown), "{}", stderr(&o));

    let o = run("log", &dev);
    assert!(o.status.success(), "{}", stderr(&o));
    clean(&o);
    assert_eq!(
        stdout(&o),
        format!("line one\n\tindented{shown}\\x0d\nline \\xc2\\x9b31m three\n")
    );
}

/// 5.5 MiB of dump: five 1 MiB chunks and a short sixth.
const CHUNKED_LEN: usize = 11 << 19;

/// Writes an image holding `data` as a dump with chunk checksums, `written` bytes of it
/// present: the table entries of the chunks wholly within `written`, computed here from the
/// definition (XXH64 of each chunk read whole), and their checksum in the header.
fn crafted_chunked(path: &Path, data: &[u8], state: DumpState, written: usize) -> DumpHeader {
    let capacity = 8 * MIB;
    let written64 = u64::try_from(written).unwrap();
    crafted(path, capacity, data, state, written64, [0; 32]);
    let mut img = fs::read(path).unwrap();
    let mut h = DumpHeader::decode(&img[..HEADER_LEN]).unwrap();
    h.set_verification(Verification::Xxh64Chunks);
    assert_eq!(h.chunk_size, MIB);
    let chunk = usize::try_from(MIB).unwrap();
    let finished = if written == data.len() {
        data.len().div_ceil(chunk)
    } else {
        written / chunk
    };
    let table: Vec<u8> = data
        .chunks(chunk)
        .take(finished)
        .flat_map(|c| xxh64(c).to_le_bytes())
        .collect();
    h.table_xxh64 = xxh64(&table);
    let at = usize::try_from(CHUNK_TABLE_OFFSET).unwrap();
    img[at..at + table.len()].copy_from_slice(&table);
    img[..HEADER_LEN].copy_from_slice(&h.encode());
    fs::write(path, img).unwrap();
    h
}

/// Changes one byte of the image at `at`.
fn flip(path: &Path, at: u64) {
    let mut img = fs::read(path).unwrap();
    img[usize::try_from(at).unwrap()] ^= 0x40;
    fs::write(path, img).unwrap();
}

fn damaged_lines(o: &Output) -> Vec<String> {
    stdout(o)
        .lines()
        .filter(|l| l.starts_with("damaged:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn chunk_checksums_of_a_complete_dump() {
    let (dev, out) = device_and_output("chunks-ok");
    let data = dump_data(CHUNKED_LEN);
    crafted_chunked(&dev, &data, DumpState::Complete, CHUNKED_LEN);
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("checksum OK (xxh64 per 1 MiB chunk, 6 chunks)\n"),
        "{}",
        stdout(&o)
    );
    assert_eq!(fs::read(&out).unwrap(), data);

    let text = info_text(&dev);
    assert!(
        text.contains("verify:      xxh64 per 1 MiB chunk, 6 chunks"),
        "{text}"
    );
    assert!(
        text.contains("chunk table: 6 entries for the bytes written, intact"),
        "{text}"
    );
    assert!(!text.contains("sha256:"), "{text}");
    let v: serde_json::Value =
        serde_json::from_slice(&minicap(&[Path::new("info"), Path::new("--json"), &dev]).stdout)
            .unwrap();
    assert_eq!(v["verify"], "xxh64-chunks");
    assert_eq!(v["chunk_size"], MIB);
}

#[test]
fn chunk_checksums_name_the_damaged_ranges() {
    let (dev, out) = device_and_output("chunks-damaged");
    let data = dump_data(CHUNKED_LEN);
    crafted_chunked(&dev, &data, DumpState::Complete, CHUNKED_LEN);
    // One byte in the middle of chunk 2.
    flip(&dev, DUMP_OFFSET + 2 * MIB + MIB / 2);
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        damaged_lines(&o),
        ["damaged: bytes 0x200000-0x300000 (chunk 2)"]
    );
    let e = stderr(&o);
    assert!(e.contains("checksum MISMATCH: 1 of 6 chunks"), "{e}");
    assert!(!e.contains("DAMAGED"), "the table is fine: {e}");
    let saved = fs::read(&out).unwrap();
    assert_eq!(saved.len(), data.len(), "OUT is kept");
    let differs: Vec<usize> = (0..data.len()).filter(|&i| saved[i] != data[i]).collect();
    assert_eq!(differs, [5 << 19]);

    // Adjacent damaged chunks merge; the short last chunk ends with the dump.
    flip(&dev, DUMP_OFFSET + 4 * MIB - 1);
    flip(&dev, DUMP_OFFSET + u64::try_from(CHUNKED_LEN).unwrap() - 1);
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        damaged_lines(&o),
        [
            "damaged: bytes 0x200000-0x400000 (chunks 2-3)",
            "damaged: bytes 0x500000-0x580000 (chunk 5)",
        ]
    );
    assert!(
        stderr(&o).contains("checksum MISMATCH: 3 of 6 chunks"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_damaged_chunk_table_is_told_apart() {
    let (dev, out) = device_and_output("chunks-table");
    let data = dump_data(CHUNKED_LEN);
    crafted_chunked(&dev, &data, DumpState::Complete, CHUNKED_LEN);
    // One byte of entry 1.
    flip(&dev, CHUNK_TABLE_OFFSET + 8 + 3);
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("the chunk checksum table is DAMAGED") && e.contains("6 entries"),
        "{e}"
    );
    assert!(!e.contains("MISMATCH"), "{e}");
    assert!(damaged_lines(&o).is_empty(), "{}", stdout(&o));
    assert_eq!(fs::read(&out).unwrap(), data, "the data is still saved");

    let o = run("info", &dev);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("chunk table: DAMAGED (6 entries"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn chunk_checksums_of_a_partial_dump() {
    let (dev, out) = device_and_output("chunks-partial");
    let data = dump_data(CHUNKED_LEN);
    // 3.5 MiB written: chunks 0-2 finished, chunk 3 not.
    let written = 7 << 19;
    crafted_chunked(&dev, &data, DumpState::Failed, written);
    // What the table holds beyond the finished chunks does not count.
    flip(&dev, CHUNK_TABLE_OFFSET + 3 * 8);
    let o = minicap(&[Path::new("save"), &dev, &out, Path::new("--partial")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(
            "checksum OK (xxh64 per 1 MiB chunk, 3 chunks; the last 524288 bytes, in an \
             unfinished chunk, are not verified)"
        ),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("partial dump"), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), &data[..written]);
    let text = info_text(&dev);
    assert!(
        text.contains("chunk table: 3 entries for the bytes written, intact"),
        "{text}"
    );

    // Damage inside the written part is found; damage past it is not data of the dump.
    flip(&dev, DUMP_OFFSET + MIB + 17);
    flip(&dev, DUMP_OFFSET + 3 * MIB + 17);
    let o = minicap(&[Path::new("save"), &dev, &out, Path::new("--partial")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        damaged_lines(&o),
        ["damaged: bytes 0x100000-0x200000 (chunk 1)"]
    );
    assert!(stderr(&o).contains("1 of 3 chunks"), "{}", stderr(&o));

    // Less than a chunk written: nothing to verify, said so.
    crafted_chunked(&dev, &data, DumpState::Writing, 4096);
    let o = minicap(&[Path::new("save"), &dev, &out, Path::new("--partial")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("not verified: no 1 MiB chunk of the partial dump was finished"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_dump_captured_without_checksum() {
    let (dev, out) = device_and_output("verify-none");
    let data = dump_data(10_000);
    crafted(&dev, 3 * MIB, &data, DumpState::Complete, 10_000, [0; 32]);
    edit_header(&dev, |h| h.set_verification(Verification::None));

    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("not verified (captured with minicap.verify=none)"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("checksum OK"));
    assert_eq!(fs::read(&out).unwrap(), data);
    let v: serde_json::Value =
        serde_json::from_slice(&minicap(&[Path::new("info"), Path::new("--json"), &dev]).stdout)
            .unwrap();
    assert_eq!(v["verify"], "none");
    assert_eq!(v["chunk_size"], 0);
    let text = info_text(&dev);
    assert!(text.contains("verify:      none"), "{text}");
}

/// A triage text as the capture kernel renders it (heading, registers, log), with an escape
/// sequence in the log as a hostile or damaged machine could leave.
const TRIAGE: &[u8] = b"minicap triage\nkernel release: 6.1.0-57-cloud-amd64\n\
panic cpu:      cpu 1: it ran pid 1, which wrote the log's last \"Kernel panic - not syncing\" record\n\
\n--- cpu 1 (panic cpu), pid 1 ---\n      rip ffffffff9c96475a\n\
--- kernel log ---\n[    5.269060] sysrq: Trigger a crash\n\
[    5.270241] Kernel panic - not syncing: sysrq triggered crash\x1b[2J\n";

/// Stores `text` in the triage area of the image and its length in the header.
fn store_triage(path: &Path, text: &[u8]) {
    edit_header(path, |h| {
        h.triage_length = u32::try_from(text.len()).unwrap()
    });
    write_at(path, TRIAGE_OFFSET, text);
}

#[test]
fn dmesg_prints_the_triage_text() {
    let dev = device("dmesg");
    let data = dump_data(50_000);
    // The device failed early in the dump: the triage text is what there is.
    crafted(&dev, 3 * MIB, &data, DumpState::Failed, 4096, [0; 32]);

    let o = run("dmesg", &dev);
    assert_fails(&o, 1, "no triage text stored");
    assert!(o.stdout.is_empty());
    let info = info_text(&dev);
    assert!(info.contains("triage:      none\n"), "{info}");

    store_triage(&dev, TRIAGE);
    let o = run("dmesg", &dev);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let shown = String::from_utf8(TRIAGE.to_vec())
        .unwrap()
        .replace('\u{1b}', "\\x1b");
    assert_eq!(out, shown, "the text, escape sequence shown as \\x1b");
    assert!(!out.contains('\u{1b}'));

    let info = info_text(&dev);
    assert!(
        info.contains(&format!(
            "triage:      {} bytes (log of the crashed kernel, registers",
            TRIAGE.len()
        )),
        "{info}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&minicap(&[Path::new("info"), Path::new("--json"), &dev]).stdout)
            .unwrap();
    assert_eq!(v["triage_length"], TRIAGE.len());

    // No header at all: exit 1 as for the other commands.
    image(&dev, 3 * MIB);
    let o = run("dmesg", &dev);
    assert_fails(&o, 1, "not a minicap");
}

/// A stand-in for a kdump-compressed file: makedumpfile's `disk_dump_header` signature
/// ("KDUMP   ", header version 6) followed by data. `minicap save` copies bytes, so only the
/// bytes matter.
fn kdump_file(len: usize) -> Vec<u8> {
    let mut file = dump_data(len);
    file[..8].copy_from_slice(b"KDUMP   ");
    file[8..12].copy_from_slice(&6i32.to_le_bytes());
    file
}

/// Marks the crafted dump as kdump-compressed with the given settings.
fn make_kdump(path: &Path, compression: Compression, requested: u8, applied: u8, note: &str) {
    edit_header(path, |h| {
        h.format = DumpFormat::KdumpCompressed;
        h.compression = compression;
        h.dump_level_requested = requested;
        h.dump_level = applied;
        h.set_level_note(note);
        h.pages_ram = 262_144;
        h.pages_dumped = 41_000;
    });
}

#[test]
fn a_kdump_compressed_dump_saves_like_an_elf_one() {
    let dir = scratch("kdump");
    let dev = dir.join("dev.img");
    let out = dir.join("dumpfile");
    let file = kdump_file(300_000);
    complete_dump(&dev, 4 * MIB, &file);
    make_kdump(
        &dev,
        Compression::Zlib,
        31,
        1,
        "free pages kept: VMCOREINFO lacks the buddy allocator's layout",
    );
    store_triage(&dev, TRIAGE);

    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fs::read(&out).unwrap(),
        file,
        "the kdump file, byte for byte"
    );
    let s = stdout(&o);
    assert!(s.contains("format:     kdump-compressed"), "{s}");
    assert!(s.contains("checksum OK (sha256"), "{s}");

    let info = info_text(&dev);
    for needle in [
        "format:      kdump-compressed\n",
        "compression: zlib\n",
        "dump level:  1 (31 requested: free pages kept: VMCOREINFO lacks the buddy \
         allocator's layout)\n",
        "pages:       41000 of 262144 RAM pages dumped\n",
        "triage:      ",
    ] {
        assert!(info.contains(needle), "{needle} missing in {info}");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&minicap(&[Path::new("info"), Path::new("--json"), &dev]).stdout)
            .unwrap();
    assert_eq!(v["format"], "kdump-compressed");
    assert_eq!(v["compression"], "zlib");
    assert_eq!(v["dump_level_requested"], 31);
    assert_eq!(v["dump_level"], 1);
    assert_eq!(
        v["level_note"],
        "free pages kept: VMCOREINFO lacks the buddy allocator's layout"
    );
    assert_eq!(v["pages_ram"], 262_144);
    assert_eq!(v["pages_dumped"], 41_000);
    assert_eq!(v["dump_offset"], 2 * MIB);

    // The level applied as requested: no note, one number.
    make_kdump(&dev, Compression::Lzo, 31, 31, "");
    let info = info_text(&dev);
    assert!(info.contains("dump level:  31\n"), "{info}");
    assert!(info.contains("compression: lzo\n"), "{info}");

    // A damaged byte is caught like in an ELF dump.
    flip(&dev, DUMP_OFFSET + 1234);
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_fails(&o, 1, "checksum MISMATCH");
}

#[test]
fn a_partial_kdump_dump_with_chunk_checksums() {
    let dir = scratch("kdump-partial");
    let dev = dir.join("dev.img");
    let out = dir.join("dumpfile");
    let file = kdump_file(CHUNKED_LEN);
    let written = 3 * usize::try_from(MIB).unwrap() + 100;
    crafted_chunked(&dev, &file, DumpState::Failed, written);
    make_kdump(&dev, Compression::Lzo, 31, 31, "");
    store_triage(&dev, TRIAGE);

    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert_eq!(o.status.code(), Some(1), "incomplete: needs --partial");
    let o = minicap(&[Path::new("save"), Path::new("--partial"), &dev, &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), &file[..written]);
    assert!(stdout(&o).contains("checksum OK (xxh64 per 1 MiB chunk, 3 chunks"));
    // The triage text stays readable whatever happened to the dump.
    let o = run("dmesg", &dev);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Kernel panic - not syncing"));
}

#[test]
fn a_dump_written_before_the_triage_area_still_saves() {
    // What earlier capture kernels wrote: a 512-byte header (zeros after it) and the dump at
    // 1 MiB.
    let (dev, out) = device_and_output("legacy-offset");
    let data = dump_data(200_000);
    let mut h = DumpHeader::new_empty(ID, 4 * MIB, "minicap 0.1.0");
    h.state = DumpState::Complete;
    h.format = DumpFormat::ElfVmcore;
    h.dump_offset = LEGACY_DUMP_OFFSET;
    h.dump_length = 200_000;
    h.written = 200_000;
    h.sha256 = sha256(&data);
    let mut img = vec![0u8; usize::try_from(4 * MIB).unwrap()];
    img[..512].copy_from_slice(&h.encode()[..512]);
    let at = usize::try_from(LEGACY_DUMP_OFFSET).unwrap();
    img[at..at + data.len()].copy_from_slice(&data);
    fs::write(&dev, img).unwrap();

    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), data);
    let info = info_text(&dev);
    assert!(info.contains("dump offset: 1048576\n"), "{info}");
    assert!(info.contains("triage:      none\n"), "{info}");
    assert!(!info.contains("compression:"), "{info}");
}

#[test]
fn a_damaged_header_extension_is_reported() {
    let dev = device("bad-extension");
    let data = dump_data(1000);
    complete_dump(&dev, 3 * MIB, &data);
    flip(&dev, 600);
    let o = run("info", &dev);
    assert_fails(&o, 1, "header extension checksum mismatch");
    // Formatting over it counts as a damaged header: --force needed.
    let o = run("format", &dev);
    assert_fails(&o, 1, "damaged or unknown minicap header");
    assert!(minicap(&[Path::new("format"), Path::new("--force"), &dev])
        .status
        .success());
    assert_eq!(header_of(&dev).state, DumpState::Empty);
}

/// A real kdump-compressed file (makedumpfile's, from the real 6.1 vmcore an end-to-end run
/// leaves behind) stored on a device and saved back is a file makedumpfile still reads: its
/// log is the one makedumpfile reads from the vmcore. Skipped without the vmcore or the tool.
#[test]
fn a_real_kdump_file_survives_the_device_if_present() {
    let vmcore = minicap_realvmcore::dir().join("vmcore");
    let Some(expected) = minicap_realvmcore::expected_dmesg() else {
        return;
    };
    if !vmcore.exists() || !minicap_realvmcore::tool_present("makedumpfile") {
        return;
    }
    let dir = scratch("real-kdump");
    let kdump = dir.join("made.kdump");
    let made = Command::new("makedumpfile")
        .args(["-c", "-d", "31"])
        .arg(&vmcore)
        .arg(&kdump)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let file = fs::read(&kdump).unwrap();
    assert_eq!(&file[..8], b"KDUMP   ");

    let dev = dir.join("dev.img");
    let len = u64::try_from(file.len()).unwrap();
    let capacity = minicap_dumpheader::required_capacity(len);
    complete_dump(&dev, capacity, &file);
    make_kdump(&dev, Compression::Zlib, 31, 31, "");
    let out = dir.join("saved.kdump");
    let o = minicap(&[Path::new("save"), &dev, &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), file);

    let dmesg = dir.join("dmesg.txt");
    let read = Command::new("makedumpfile")
        .arg("--dump-dmesg")
        .arg(&out)
        .arg(&dmesg)
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", stderr(&read));
    assert_eq!(fs::read(&dmesg).unwrap(), expected);
}
