//! End-to-end tests of `minicap load`, `recommend` and `status` on `/proc` and `/sys` trees
//! (`--root`): the 1 GiB QEMU guest's recorded `/proc/iomem`, and a synthetic large server
//! with its crash region above 4 GiB in the middle of a RAM range.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use minicap_elfcore::{
    build_core_headers, CoreHeaderSpec, KernelText, NoteBuffer, Phdr, PF_R, PF_W, PF_X, PT_LOAD,
};
use sha2::{Digest, Sha256};

const GUEST_IOMEM: &str = include_str!("data/iomem-guest-1g.txt");
const SERVER_IOMEM: &str = include_str!("data/iomem-server.txt");
const DEVICE_OPTION: &str = "minicap.device=0123456789abcdef0123456789abcdef";
const TEXT_VADDR: u64 = 0xffff_ffff_afc0_0000;
const TEXT_SIZE: u64 = 0x283_0000;

struct Tree {
    root: PathBuf,
    image: PathBuf,
}

fn write(root: &Path, relative: &str, bytes: &[u8]) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// A `/proc/kcore` head: the kernel text and the direct map at `page_offset`.
fn kcore(page_offset: u64) -> Vec<u8> {
    let loads = [
        (TEXT_VADDR, TEXT_SIZE),
        (page_offset + 0x10_0000, 0x3000_0000),
    ];
    let mut out = vec![0u8; 64];
    out[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    out[16..18].copy_from_slice(&4u16.to_le_bytes());
    out[18..20].copy_from_slice(&62u16.to_le_bytes());
    out[32..40].copy_from_slice(&64u64.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&2u16.to_le_bytes());
    for (vaddr, size) in loads {
        Phdr {
            p_type: PT_LOAD,
            p_flags: PF_R | PF_W | PF_X,
            p_offset: 0,
            p_vaddr: vaddr,
            p_paddr: 0,
            p_filesz: size,
            p_memsz: size,
            p_align: 0x1000,
        }
        .encode(&mut out);
    }
    out
}

/// A one-PT_LOAD ET_DYN image linked at 0, like minicap.elf.
fn image() -> Vec<u8> {
    let code = vec![0x90u8; 0x2_0000];
    let mut out = vec![0u8; 64];
    out[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    out[16..18].copy_from_slice(&3u16.to_le_bytes());
    out[18..20].copy_from_slice(&62u16.to_le_bytes());
    out[32..40].copy_from_slice(&64u64.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&1u16.to_le_bytes());
    Phdr {
        p_type: PT_LOAD,
        p_flags: PF_R | PF_W | PF_X,
        p_offset: 0x1000,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: code.len() as u64,
        p_memsz: 0x3_0000,
        p_align: 0x1000,
    }
    .encode(&mut out);
    out.resize(0x1000, 0);
    out.extend_from_slice(&code);
    out
}

/// A recorded system: `iomem`, `cpus` CPUs, a crash reservation of `crash_size` bytes.
fn tree(name: &str, iomem: &str, cpus: u32, crash_size: u64, page_offset: u64) -> Tree {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("load-{name}"));
    let _ = fs::remove_dir_all(&dir);
    let root = dir.join("root");
    write(&root, "proc/iomem", iomem.as_bytes());
    write(&root, "proc/kcore", &kcore(page_offset));
    write(&root, "proc/kallsyms", b"ffffffffb0000000 T _stext\n");
    write(&root, "proc/sys/kernel/kexec_load_disabled", b"0\n");
    write(
        &root,
        "sys/kernel/kexec_crash_size",
        format!("{crash_size}\n").as_bytes(),
    );
    write(&root, "sys/kernel/kexec_crash_loaded", b"0\n");
    write(&root, "sys/kernel/kexec_loaded", b"0\n");
    write(&root, "sys/kernel/vmcoreinfo", b"0x0000000017a1c000 1024\n");
    let possible = format!("0-{}\n", cpus - 1);
    write(
        &root,
        "sys/devices/system/cpu/possible",
        possible.as_bytes(),
    );
    for cpu in 0..cpus {
        let dir = format!("sys/devices/system/cpu/cpu{cpu}");
        let addr = format!("{:x}\n", cpu_notes_addr(cpu));
        write(&root, &format!("{dir}/crash_notes"), addr.as_bytes());
        write(&root, &format!("{dir}/crash_notes_size"), b"368\n");
    }
    let image_path = dir.join("minicap.elf");
    fs::write(&image_path, image()).unwrap();
    Tree {
        root,
        image: image_path,
    }
}

fn cpu_notes_addr(cpu: u32) -> u64 {
    0x3fc1_9e40 + u64::from(cpu) * 0x10_0000
}

fn minicap(tree: &Tree, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minicap"))
        .args(args)
        .arg("--root")
        .arg(&tree.root)
        .arg("--image")
        .arg(&tree.image)
        .output()
        .expect("run minicap")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The SHA-256 the core-headers segment must have: the headers kexec-tools would build for
/// this system, zero-padded to a page.
fn expected_headers_digest(
    cpus: u32,
    ram: &[std::ops::Range<u64>],
    page_offset: u64,
    text_paddr: u64,
) -> String {
    let notes: Vec<_> = (0..cpus)
        .map(|cpu| NoteBuffer {
            addr: cpu_notes_addr(cpu),
            size: 368,
        })
        .collect();
    let mut bytes = build_core_headers(&CoreHeaderSpec {
        cpu_notes: &notes,
        vmcoreinfo: Some(NoteBuffer {
            addr: 0x17a1_c000,
            size: 4132,
        }),
        kernel_text: Some(KernelText {
            paddr: text_paddr,
            vaddr: TEXT_VADDR,
            size: TEXT_SIZE,
        }),
        ram,
        page_offset,
    })
    .unwrap();
    bytes.resize(bytes.len().div_ceil(4096) * 4096, 0);
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn dry_run_on_the_guest() {
    let page_offset = 0xff4a_7686_c000_0000;
    let tree = tree("guest", GUEST_IOMEM, 2, 32 << 20, page_offset);
    let o = minicap(&tree, &["load", "--dry-run", "--append", DEVICE_OPTION]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("crash region   0x3d000000-0x3effffff, 33554432 bytes"),
        "{out}"
    );
    assert!(
        out.contains("core headers   7 program headers (456 bytes): 2 CPU note(s)"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "command line   {DEVICE_OPTION} elfcorehdr=1032188K"
        )),
        "{out}"
    );
    // Image, purgatory slot, boot_params, headers, in address order.
    let segments: Vec<&str> = out.lines().filter(|l| l.starts_with("  0x")).collect();
    assert_eq!(segments.len(), 4, "{out}");
    assert!(
        segments[0].contains("0x00003d000000-0x00003d02ffff")
            && segments[0].contains("minicap image")
    );
    // The recorded tree has no purgatory.elf next to the image: the slot, and a warning.
    assert!(segments[1].contains("purgatory") && segments[1].contains("slot only"));
    assert!(out.contains("warning: cannot read the purgatory"), "{out}");
    assert!(segments[2].contains("boot_params"));
    assert!(
        segments[3].contains("0x00003efff000-0x00003effffff")
            && segments[3].contains("ELF core headers")
    );
    let ram = [
        0x1000..0x9_fc00,
        0x10_0000..0x3d00_0000,
        0x3f00_0000..0x3ffd_a000,
    ];
    let digest = expected_headers_digest(2, &ram, page_offset, 0x36c0_0000);
    assert!(segments[3].ends_with(&digest), "{}\n{digest}", segments[3]);
    assert!(out.ends_with("dry run: nothing was loaded\n"), "{out}");
}

#[test]
fn dry_run_on_the_server_above_4_gib() {
    let page_offset = 0xffff_8880_0000_0000;
    let tree = tree("server", SERVER_IOMEM, 64, 256 << 20, page_offset);
    let o = minicap(&tree, &["load", "--dry-run", "--append", DEVICE_OPTION]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    // The high crash region, split out of the RAM range around it; the low one excluded too.
    assert!(
        out.contains("crash region   0x840000000-0x84fffffff"),
        "{out}"
    );
    assert!(out.contains("64 CPU note(s)"), "{out}");
    assert!(out.contains("9 RAM range(s)"), "{out}");
    assert!(out.contains("RAM 0x100000000-0x83fffffff"), "{out}");
    assert!(out.contains("RAM 0x850000000-0x103fffffff"), "{out}");
    let ram = [
        0x1000..0x9_f000,
        0x10_0000..0x7000_0000,
        0x7800_0000..0x8000_0000,
        0x8800_0000..0xb7e4_e000,
        0xb7f0_0000..0xbae0_0000,
        0x1_0000_0000..0x8_4000_0000,
        0x8_5000_0000..0x10_4000_0000,
        0x10_8000_0000..0x10_c000_0000,
        0x20_0000_0000..0x20_4000_0000,
    ];
    let digest = expected_headers_digest(64, &ram, page_offset, 0x100_0000);
    assert!(out.contains(&digest), "{out}\n{digest}");
}

#[test]
fn a_recorded_system_is_never_loaded_into_this_kernel() {
    let tree = tree("recorded", GUEST_IOMEM, 2, 32 << 20, 0xffff_8880_0000_0000);
    let o = minicap(&tree, &["load", "--append", DEVICE_OPTION]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("--root reads a recorded system"),
        "{}",
        stderr(&o)
    );

    write(
        &tree.root,
        "sys/kernel/security/lockdown",
        b"none [integrity] confidentiality\n",
    );
    let o = minicap(&tree, &["load", "--append", DEVICE_OPTION]);
    assert!(
        stderr(&o).contains("locked down (integrity): it refuses kexec_load"),
        "{}",
        stderr(&o)
    );
    let o = minicap(&tree, &["load", "--dry-run", "--append", DEVICE_OPTION]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("warning: the kernel is locked down"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn clear_refusals() {
    let tree = tree("small", GUEST_IOMEM, 2, 32 << 20, 0xffff_8880_0000_0000);
    // A 1 MiB reservation.
    let small = GUEST_IOMEM.replace(
        "3d000000-3effffff : Crash kernel",
        "3d000000-3d0fffff : Crash kernel",
    );
    write(&tree.root, "proc/iomem", small.as_bytes());
    let o = minicap(&tree, &["load", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the crash region holds 1048576 bytes but minicap needs"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("to crashkernel="));

    let no_region = GUEST_IOMEM.replace("  3d000000-3effffff : Crash kernel\n", "");
    write(&tree.root, "proc/iomem", no_region.as_bytes());
    let o = minicap(&tree, &["load", "--dry-run"]);
    assert!(
        stderr(&o).contains("add crashkernel=SIZE"),
        "{}",
        stderr(&o)
    );

    let o = minicap(
        &tree,
        &["load", "--dry-run", "--append", "minicap.format=elf64"],
    );
    assert!(
        stderr(&o).contains("--append: invalid value \"elf64\""),
        "{}",
        stderr(&o)
    );
    let o = minicap(
        &tree,
        &["load", "--dry-run", "--append", "elfcorehdr=0x1000"],
    );
    assert!(
        stderr(&o).contains("must not contain elfcorehdr="),
        "{}",
        stderr(&o)
    );
}

#[test]
fn recommend_and_status() {
    let tree = tree("recommend", GUEST_IOMEM, 2, 32 << 20, 0xffff_8880_0000_0000);
    let o = minicap(&tree, &["recommend", "--append", "minicap.format=kdump"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("2 CPU(s), format kdump"), "{out}");
    assert!(out.contains("kdump cycle bitmaps"), "{out}");
    assert!(out.contains("recommended:  crashkernel="), "{out}");
    assert!(
        out.contains("reserved now: 33554432 bytes (32.0 MiB): enough"),
        "{out}"
    );

    let o = Command::new(env!("CARGO_BIN_EXE_minicap"))
        .args(["status", "--root"])
        .arg(&tree.root)
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("crash kernel: not loaded"), "{out}");
    assert!(
        out.contains("crash region: 0x3d000000-0x3effffff, 33554432 bytes"),
        "{out}"
    );
}

#[test]
fn the_configuration_file_gives_the_options_and_the_command_line_wins() {
    let tree = tree("config", GUEST_IOMEM, 2, 32 << 20, 0xff4a_7686_c000_0000);
    let config = tree.root.join("minicap.conf");
    fs::write(
        &config,
        "# test\nMINICAP_DEVICE=000102030405060708090a0b0c0d0e0f\nMINICAP_FORMAT=kdump\n",
    )
    .unwrap();
    let conf = config.to_str().unwrap();
    let o = minicap(&tree, &["load", "--dry-run", "--config", conf]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains(
            "command line   minicap.device=000102030405060708090a0b0c0d0e0f \
             minicap.format=kdump elfcorehdr="
        ),
        "{out}"
    );
    assert!(out.contains(&format!("\noptions        minicap.device=000102030405060708090a0b0c0d0e0f minicap.format=kdump (from {conf})\n")), "{out}");
    // --append replaces the file's options.
    let o = minicap(
        &tree,
        &[
            "load",
            "--dry-run",
            "--config",
            conf,
            "--append",
            DEVICE_OPTION,
        ],
    );
    let out = stdout(&o);
    assert!(
        out.contains(&format!("command line   {DEVICE_OPTION} elfcorehdr=")),
        "{out}"
    );
    // A bad value: the file, the line, the accepted values; nothing is planned.
    fs::write(&config, "\n\nMINICAP_AFTER=sleep\n").unwrap();
    let o = minicap(&tree, &["load", "--dry-run", "--config", conf]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "minicap: {conf}:3: MINICAP_AFTER: invalid value \"sleep\" for minicap.after: \
             accepted values: reboot, halt, poweroff\n"
        )
    );
    let o = minicap(&tree, &["recommend", "--config", conf]);
    assert!(stderr(&o).contains(":3: MINICAP_AFTER"), "{}", stderr(&o));
    // A file named on the command line must exist.
    fs::remove_file(&config).unwrap();
    let o = minicap(&tree, &["load", "--dry-run", "--config", conf]);
    assert!(
        stderr(&o).starts_with(&format!("minicap: cannot read the configuration {conf}: ")),
        "{}",
        stderr(&o)
    );
}

/// `minicap status --root`: who loaded the crash kernel, from the kernel's flag and the record
/// `minicap load` leaves in /run/minicap/loaded.
#[test]
fn status_tells_who_loaded_the_crash_kernel() {
    let tree = tree("status", GUEST_IOMEM, 2, 32 << 20, 0xff4a_7686_c000_0000);
    let status = || {
        let o = Command::new(env!("CARGO_BIN_EXE_minicap"))
            .args(["status", "--root"])
            .arg(&tree.root)
            .output()
            .expect("run minicap");
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let loaded = |flag: &[u8]| write(&tree.root, "sys/kernel/kexec_crash_loaded", flag);
    assert!(status().starts_with("crash kernel: not loaded\n"));
    loaded(b"1\n");
    assert!(status().starts_with("crash kernel: loaded by another loader"));
    let record = format!(
        r#"{{"image": "{}", "image_sha256": "{}", "purgatory": "/p.elf", "config": null,
            "options": "{DEVICE_OPTION}", "region_start": 1023410176, "region_end": 1056964608,
            "loaded_at": 1700000000}}"#,
        tree.image.display(),
        "00".repeat(32)
    );
    write(&tree.root, "run/minicap/loaded", record.as_bytes());
    let out = status();
    assert!(
        out.starts_with("crash kernel: loaded by minicap load, 2023-11-14 22:13:20 UTC"),
        "{out}"
    );
    // The recorded digest is not the image's: the file changed since the load.
    assert!(out.contains("CHANGED since"), "{out}");
    assert!(
        out.contains(&format!("  options:    {DEVICE_OPTION}\n")),
        "{out}"
    );
    assert!(!out.contains("not the crash region now"), "{out}");
    loaded(b"0\n");
    assert!(status().contains("is stale"));
}

/// A disk `name` in the tree's `/sys/block`, its `/dev/<name>` prepared with `id`.
fn prepared_disk(tree: &Tree, name: &str, id: [u8; 16]) {
    let header = minicap_dumpheader::DumpHeader::new_empty(id, 64 << 20, "test").encode();
    write(&tree.root, &format!("sys/block/{name}/size"), b"131072\n");
    write(&tree.root, &format!("dev/{name}"), &header);
}

#[test]
fn a_load_checks_that_the_dump_device_is_there() {
    let tree = tree(
        "dump-device",
        GUEST_IOMEM,
        2,
        32 << 20,
        0xffff_8880_0000_0000,
    );
    // No disk to read: a warning, the dry run goes on.
    let o = minicap(&tree, &["load", "--dry-run", "--append", DEVICE_OPTION]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("warning: no disk in /sys/block to check for the dump device"),
        "{}",
        stdout(&o)
    );
    // A prepared disk with another id: refused, naming it and the fix.
    prepared_disk(&tree, "vdb", [0x11; 16]);
    let o = minicap(&tree, &["load", "--dry-run", "--append", DEVICE_OPTION]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("no disk is prepared with id 0123456789abcdef0123456789abcdef (read: vdb); /dev/vdb is prepared with id 11111111111111111111111111111111"), "{err}");
    assert!(err.contains("minicap format /dev/DISK"), "{err}");
    // ... unless the dump may stream on the serial line instead.
    let fallback = format!("{DEVICE_OPTION} minicap.fallback=serial");
    let o = minicap(&tree, &["load", "--dry-run", "--append", &fallback]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("minicap.fallback=serial would stream the dump instead"));
    // The right disk is named.
    prepared_disk(
        &tree,
        "vdc",
        [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ],
    );
    let o = minicap(&tree, &["load", "--dry-run", "--append", DEVICE_OPTION]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o)
            .contains("dump device: /dev/vdc (prepared, id 0123456789abcdef0123456789abcdef)"),
        "{}",
        stdout(&o)
    );
}

/// [`image`] with minicap's head: `kernel_info` at 0x10 of its PT_LOAD (file offset 0x1000).
fn elf_with_kernel_info() -> Vec<u8> {
    use minicap_bzimage::layout::{KERNEL_INFO_MAGIC, KERNEL_INFO_OFFSET};
    let mut elf = image();
    let at = 0x1000 + KERNEL_INFO_OFFSET;
    elf[at..at + 4].copy_from_slice(&KERNEL_INFO_MAGIC);
    elf
}

/// [`elf_with_kernel_info`]'s PT_LOAD as minicap.bzImage: the same flat image.
fn bzimage() -> Vec<u8> {
    minicap_bzimage::build(&minicap_bzimage::ImageSource {
        payload: &elf_with_kernel_info()[0x1000..],
        memsz: 0x3_0000,
        version: "minicap test",
    })
    .unwrap()
}

fn minicap_with_image(tree: &Tree, image: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minicap"))
        .args(args)
        .arg("--root")
        .arg(&tree.root)
        .arg("--image")
        .arg(image)
        .output()
        .expect("run minicap")
}

/// The image segment's line of a dry run, without the digest's neighbours changing it.
fn image_segment(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("  0x") && l.contains("minicap image"))
        .unwrap_or_else(|| panic!("no image segment in\n{out}"))
        .to_owned()
}

/// A bzImage: auto would try kexec_file_load with the options as the command line, and the
/// kexec_load fallback places the bzImage's payload exactly where and as minicap.elf's
/// PT_LOAD goes (same digest).
#[test]
fn a_bzimage_dry_run_shows_both_calls() {
    let tree = tree("bzimage", GUEST_IOMEM, 2, 32 << 20, 0xff4a_7686_c000_0000);
    let bz = tree.root.parent().unwrap().join("minicap.bzImage");
    fs::write(&bz, bzimage()).unwrap();
    fs::write(&tree.image, elf_with_kernel_info()).unwrap();
    let args = ["load", "--dry-run", "--append", DEVICE_OPTION];
    let o = minicap_with_image(&tree, &bz, &args);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains(
            "syscall        kexec_file_load first (bzImage, unsigned; --syscall auto), then \
             kexec_load"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "file load      kexec_file_load(KEXEC_FILE_ON_CRASH | KEXEC_FILE_NO_INITRAMFS), \
             command line: {DEVICE_OPTION} (the kernel adds elfcorehdr=)"
        )),
        "{out}"
    );
    assert!(out.contains(": bzImage, unsigned, "), "{out}");
    let elf = minicap(&tree, &args);
    assert!(elf.status.success(), "{}", stderr(&elf));
    assert!(stdout(&elf).contains(
        "syscall        kexec_load (ELF; --syscall auto: kexec_file_load takes only a bzImage)"
    ));
    assert!(!stdout(&elf).contains("file load"));
    assert_eq!(image_segment(&out), image_segment(&stdout(&elf)));

    // --syscall load: the same plan, no file load.
    let o = minicap_with_image(&tree, &bz, &[&args[..], &["--syscall", "load"]].concat());
    assert!(stdout(&o).contains("syscall        kexec_load (bzImage, unsigned; --syscall load)"));
    // A test option selects kexec_load under auto.
    let o = minicap_with_image(
        &tree,
        &bz,
        &[&args[..], &["--test-omit-elfcorehdr"]].concat(),
    );
    assert!(
        stdout(&o).contains("kexec_load (bzImage, unsigned; --syscall auto: the test options"),
        "{}",
        stdout(&o)
    );
}

/// `--syscall file` needs no kernel description (/proc/kcore): the kernel builds it.
#[test]
fn syscall_file_needs_a_bzimage_and_nothing_of_kexec_load() {
    let tree = tree("file-only", GUEST_IOMEM, 2, 32 << 20, 0xff4a_7686_c000_0000);
    let bz = tree.root.parent().unwrap().join("minicap.bzImage");
    fs::write(&bz, bzimage()).unwrap();
    fs::remove_file(tree.root.join("proc/kcore")).unwrap();
    let file = [
        "load",
        "--dry-run",
        "--syscall",
        "file",
        "--append",
        DEVICE_OPTION,
    ];
    let o = minicap_with_image(&tree, &bz, &file);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("crash region   0x3d000000-0x3effffff, 33554432 bytes"),
        "{out}"
    );
    assert!(
        out.contains("syscall        kexec_file_load only (bzImage, unsigned; --syscall file)"),
        "{out}"
    );
    assert!(!out.contains("segments"), "{out}");
    // auto plans the fallback too, which needs /proc/kcore: a warning only, since the
    // kernel may well take the file.
    let o = minicap_with_image(&tree, &bz, &["load", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(
            "warning: the kexec_load fallback cannot be planned: cannot read /proc/kcore"
        ),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("crash region   0x3d000000-0x3effffff"));
    // --syscall load needs it.
    let o = minicap_with_image(&tree, &bz, &["load", "--dry-run", "--syscall", "load"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read /proc/kcore"),
        "{}",
        stderr(&o)
    );

    // An ELF cannot go through kexec_file_load (a dry run warns, a load fails).
    write(&tree.root, "proc/kcore", &kcore(0xff4a_7686_c000_0000));
    let o = minicap(&tree, &file[..4]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("syscall        none (file): nothing can be loaded"));
    assert!(
        stdout(&o).contains("takes only a bzImage on x86_64"),
        "{}",
        stdout(&o)
    );
    let o = minicap(&tree, &["load", "--syscall", "file"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("takes only a bzImage on x86_64"),
        "{}",
        stderr(&o)
    );
    // The test options damage minicap's own plan: kexec_load only.
    let o = minicap_with_image(
        &tree,
        &bz,
        &["load", "--syscall", "file", "--corrupt-digest", "0"],
    );
    assert!(
        stderr(&o).contains("not with --syscall file"),
        "{}",
        stderr(&o)
    );
    // A recorded system is never loaded, whichever call.
    let o = minicap_with_image(&tree, &bz, &["load", "--syscall", "file"]);
    assert!(
        stderr(&o).contains("--root reads a recorded system"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn lockdown_with_each_kind_of_image() {
    let tree = tree("lockdown", GUEST_IOMEM, 2, 32 << 20, 0xff4a_7686_c000_0000);
    let bz = tree.root.parent().unwrap().join("minicap.bzImage");
    fs::write(&bz, bzimage()).unwrap();
    write(
        &tree.root,
        "sys/kernel/security/lockdown",
        b"none [integrity] confidentiality\n",
    );
    let o = minicap_with_image(&tree, &bz, &["load", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(
            "kexec_file_load only (bzImage, unsigned; --syscall auto; locked down: kexec_load \
             would be refused)"
        ),
        "{}",
        stdout(&o)
    );
    // The ELF: use the signed bzImage.
    let o = minicap(&tree, &["load"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("locked down (integrity): it refuses kexec_load")
            && e.contains("use the signed bzImage"),
        "{e}"
    );
    let o = minicap_with_image(&tree, &bz, &["load", "--syscall", "load"]);
    assert!(
        stderr(&o).contains("use --syscall auto or file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_image_that_is_neither_is_named() {
    let tree = tree("neither", GUEST_IOMEM, 2, 32 << 20, 0xff4a_7686_c000_0000);
    let other = tree.root.parent().unwrap().join("initrd.img");
    fs::write(&other, vec![0x1f; 8192]).unwrap();
    let o = minicap_with_image(&tree, &other, &["load", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "{} is not a minicap image: not an ELF file (no \\x7fELF magic) and not a bzImage",
            other.display()
        )),
        "{e}"
    );
}
