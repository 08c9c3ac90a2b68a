//! Signing with the real tools: `sbsign` with a throwaway key, then `sbverify --cert`, then both
//! parsers on the signed file. Skipped (with a note) when sbsigntool or openssl is missing.

mod common;

use std::path::Path;
use std::process::Command;

use minicap_bzimage::{BzImage, PeImage};
use sha2::{Digest, Sha256};

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--help").output().is_ok()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("tool starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sbsign_signs_and_sbverify_accepts() {
    if !(have("sbsign") && have("sbverify") && have("openssl")) {
        eprintln!(
            "skipped: sbsign, sbverify or openssl not installed (apt-get install sbsigntool)"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("minicap-bzimage-sbsign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name);
    let image = common::image(0x7f170, 0xb0988);
    std::fs::write(path("minicap.bzImage"), &image).unwrap();
    run(Command::new("openssl")
        .args(["req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes"])
        .args(["-subj", "/CN=minicap bzImage test/", "-days", "1"])
        .arg("-keyout")
        .arg(path("k.key"))
        .arg("-out")
        .arg(path("k.crt")));
    run(Command::new("sbsign")
        .arg("--key")
        .arg(path("k.key"))
        .arg("--cert")
        .arg(path("k.crt"))
        .arg("--output")
        .arg(path("signed.bzImage"))
        .arg(path("minicap.bzImage")));
    run(Command::new("sbverify")
        .arg("--cert")
        .arg(path("k.crt"))
        .arg(path("signed.bzImage")));

    let signed = std::fs::read(path("signed.bzImage")).unwrap();
    let pe = PeImage::parse(&signed).unwrap();
    let (offset, size) = pe.cert_table;
    assert!(size > 0, "sbsign filled the certificate directory");
    assert_eq!(offset as usize + size as usize, signed.len());
    // sbsign changed only the checksum and the certificate entry in the headers; the setup
    // header and the payload are untouched.
    assert_eq!(&signed[0x1f1..offset as usize], &image[0x1f1..]);
    let bz = BzImage::parse(&signed).unwrap();
    assert_eq!(
        bz.setup_header,
        BzImage::parse(&image).unwrap().setup_header
    );

    // The digest the kernel computes (pefile_digest_pe_contents(), mirrored by
    // PeImage::digest_ranges) is the one sbsign signed: it sits in the PKCS#7 blob.
    let mut sha = Sha256::new();
    for range in pe.digest_ranges(signed.len()) {
        sha.update(&signed[range]);
    }
    let digest = sha.finalize();
    let table = &signed[offset as usize..];
    assert!(
        table.windows(digest.len()).any(|w| w == digest.as_slice()),
        "the signed digest differs from the kernel-style digest"
    );

    // A byte changed in the payload breaks the signature.
    let mut tampered = signed.clone();
    tampered[0x400 + 0x200] ^= 1;
    std::fs::write(path("tampered.bzImage"), &tampered).unwrap();
    let verdict = Command::new("sbverify")
        .arg("--cert")
        .arg(path("k.crt"))
        .arg(path("tampered.bzImage"))
        .output()
        .unwrap();
    assert!(
        !verdict.status.success(),
        "sbverify must refuse a modified payload"
    );
    remove(&dir);
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
