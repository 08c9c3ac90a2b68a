//! Test support: a directory standing for `/`, holding recorded `/proc` and `/sys` files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::kcore::tests::kcore_for;
use super::sysfs::SystemFiles;

/// A temporary root directory, removed on drop.
pub struct TestRoot {
    dir: PathBuf,
}

impl TestRoot {
    /// An empty root.
    pub fn empty() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "minicap-load-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the test root");
        Self { dir }
    }

    /// The 2-CPU, 1 GiB guest with `crashkernel=32M` and nothing loaded: its recorded
    /// `/proc/iomem`, a VMCOREINFO address, per-CPU `crash_notes` buffers of the kernel's size
    /// (368 bytes: one NT_PRSTATUS note and the terminator). No `/proc/kcore`.
    pub fn guest_2cpu() -> Self {
        Self::guest(
            include_str!("../../tests/data/iomem-guest-1g.txt"),
            32 << 20,
        )
    }

    /// The 2-CPU, 3 GiB guest with `crashkernel=4M` (RAM above 4 GiB), with a `/proc/kcore`
    /// giving the kernel text and direct map kexec-tools found in that boot.
    pub fn guest_3g() -> Self {
        let root = Self::guest(include_str!("../../tests/data/iomem-guest-3g.txt"), 4 << 20);
        root.write_bytes(
            "proc/kcore",
            &kcore_for(0xffff_8c5f_8000_0000, 0xffff_ffff_97a0_0000, 0x283_0000),
        );
        root
    }

    fn guest(iomem: &str, crash_size: u64) -> Self {
        let root = Self::empty();
        root.write("proc/iomem", iomem);
        root.write("sys/kernel/kexec_crash_size", &format!("{crash_size}\n"));
        root.write("sys/kernel/kexec_crash_loaded", "0\n");
        root.write("sys/kernel/kexec_loaded", "0\n");
        root.write("proc/sys/kernel/kexec_load_disabled", "0\n");
        root.write("sys/devices/system/cpu/possible", "0-1\n");
        root.write("sys/kernel/vmcoreinfo", "0x0000000017a1c000 1024\n");
        for (cpu, addr) in [(0, "3fc19e40"), (1, "3fd19e40")] {
            let dir = format!("sys/devices/system/cpu/cpu{cpu}");
            root.write(&format!("{dir}/crash_notes"), &format!("{addr}\n"));
            root.write(&format!("{dir}/crash_notes_size"), "368\n");
        }
        root
    }

    /// Writes `text` to `relative`, creating directories.
    pub fn write(&self, relative: &str, text: &str) {
        self.write_bytes(relative, text.as_bytes());
    }

    /// Writes `bytes` to `relative`, creating directories.
    pub fn write_bytes(&self, relative: &str, bytes: &[u8]) {
        let path = self.dir.join(relative);
        std::fs::create_dir_all(path.parent().expect("a file under the root"))
            .expect("create the directories");
        std::fs::write(path, bytes).expect("write a test file");
    }

    /// Removes `relative`.
    pub fn remove(&self, relative: &str) {
        std::fs::remove_file(self.dir.join(relative)).expect("remove a test file");
    }

    /// The files under this root.
    pub fn files(&self) -> SystemFiles {
        SystemFiles::under(&self.dir)
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
