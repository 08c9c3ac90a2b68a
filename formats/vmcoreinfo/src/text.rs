//! Lookups in the VMCOREINFO `KEY=VALUE` text.

/// The VMCOREINFO text of the crashed kernel (the note's descriptor bytes).
///
/// Lookups scan the text each time (it is a few KiB), so nothing is allocated.
#[derive(Debug, Clone, Copy)]
pub struct VmcoreInfo<'a> {
    text: &'a [u8],
}

impl<'a> VmcoreInfo<'a> {
    /// Wraps the text (trailing NUL padding, as found in the note, is ignored).
    pub fn new(text: &'a [u8]) -> Self {
        Self { text }
    }

    /// The raw value of the first line `key=VALUE` (without the newline), if any.
    pub fn value(&self, key: &str) -> Option<&'a str> {
        let key = key.as_bytes();
        self.text.split(|&b| b == b'\n').find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix(b"=")?;
            let value = trim_nuls(value);
            core::str::from_utf8(value).ok()
        })
    }

    /// `SYMBOL(name)`: a runtime virtual address (hex).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.tagged("SYMBOL", name).and_then(parse_hex)
    }

    /// `SIZE(name)` (decimal).
    pub fn size(&self, name: &str) -> Option<u64> {
        self.tagged("SIZE", name).and_then(parse_dec)
    }

    /// `OFFSET(struct.field)` (decimal); `field` is `"struct.field"`.
    pub fn offset(&self, field: &str) -> Option<u64> {
        self.tagged("OFFSET", field).and_then(parse_dec)
    }

    /// `LENGTH(name)` (decimal).
    pub fn length(&self, name: &str) -> Option<u64> {
        self.tagged("LENGTH", name).and_then(parse_dec)
    }

    /// `NUMBER(name)` (signed decimal).
    pub fn number(&self, name: &str) -> Option<i64> {
        let v = self.tagged("NUMBER", name)?;
        match v.strip_prefix('-') {
            Some(digits) => parse_dec(digits)
                .and_then(|n| i64::try_from(n).ok())
                .map(i64::wrapping_neg),
            None => parse_dec(v).and_then(|n| i64::try_from(n).ok()),
        }
    }

    /// `KERNELOFFSET` (hex): the KASLR displacement of the kernel text.
    pub fn kernel_offset(&self) -> Option<u64> {
        self.value("KERNELOFFSET").and_then(parse_hex)
    }

    /// `PAGESIZE` (decimal).
    pub fn page_size(&self) -> Option<u64> {
        self.value("PAGESIZE").and_then(parse_dec)
    }

    /// `OSRELEASE`.
    pub fn osrelease(&self) -> Option<&'a str> {
        self.value("OSRELEASE")
    }

    /// `NUMBER(phys_base)` as the wrapping `u64` that kernel-image translation adds.
    pub fn phys_base(&self) -> Option<u64> {
        // Two's complement: a negative phys_base subtracts.
        self.number("phys_base").map(|n| n as u64)
    }

    /// Where the old kernel's `struct new_utsname` is (six 65-byte strings: sysname,
    /// nodename, release, version, machine, domainname): `SYMBOL(init_uts_ns) +
    /// OFFSET(uts_namespace.name)`, as makedumpfile reads it for the dump header.
    pub fn utsname_address(&self) -> Option<u64> {
        self.symbol("init_uts_ns")?
            .checked_add(self.offset("uts_namespace.name")?)
    }

    /// Looks up `TAG(name)=value` without building the key in a buffer.
    fn tagged(&self, tag: &str, name: &str) -> Option<&'a str> {
        self.text.split(|&b| b == b'\n').find_map(|line| {
            let rest = line.strip_prefix(tag.as_bytes())?.strip_prefix(b"(")?;
            let rest = rest.strip_prefix(name.as_bytes())?.strip_prefix(b")=")?;
            core::str::from_utf8(trim_nuls(rest)).ok()
        })
    }
}

fn trim_nuls(mut v: &[u8]) -> &[u8] {
    while let [rest @ .., 0 | b'\r'] = v {
        v = rest;
    }
    v
}

/// Hex without a `0x` prefix, as `%lx` prints it (a prefix is tolerated).
fn parse_hex(s: &str) -> Option<u64> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

fn parse_dec(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = b"OSRELEASE=6.1.0-57-cloud-amd64\nBUILD-ID=abc\nPAGESIZE=4096\n\
SYMBOL(prb)=ffffffffa5a5e2c0\nSYMBOL(prbx)=1\nSIZE(printk_ringbuffer)=88\n\
OFFSET(printk_ringbuffer.fail)=80\nLENGTH(printk_info_device)=48\n\
NUMBER(phys_base)=-199229440\nNUMBER(pgtable_l5_enabled)=0\nKERNELOFFSET=24000000\n\
SIZE(printk_ringbuffer)=99\nSYMBOL(bad)=zz\nNUMBER(big)=99999999999999999999\n\0\0";

    #[test]
    fn typed_lookups() {
        let v = VmcoreInfo::new(TEXT);
        assert_eq!(v.osrelease(), Some("6.1.0-57-cloud-amd64"));
        assert_eq!(v.page_size(), Some(4096));
        assert_eq!(v.symbol("prb"), Some(0xffff_ffff_a5a5_e2c0));
        assert_eq!(v.symbol("prbx"), Some(1));
        // First line wins.
        assert_eq!(v.size("printk_ringbuffer"), Some(88));
        assert_eq!(v.offset("printk_ringbuffer.fail"), Some(80));
        assert_eq!(v.length("printk_info_device"), Some(48));
        assert_eq!(v.number("phys_base"), Some(-199_229_440));
        assert_eq!(v.phys_base(), Some((-199_229_440i64) as u64));
        assert_eq!(v.number("pgtable_l5_enabled"), Some(0));
        assert_eq!(v.kernel_offset(), Some(0x2400_0000));
        assert_eq!(v.utsname_address(), None);
        let v = VmcoreInfo::new(
            b"SYMBOL(init_uts_ns)=ffffffffaddf9b60\nOFFSET(uts_namespace.name)=8\n",
        );
        assert_eq!(v.utsname_address(), Some(0xffff_ffff_addf_9b68));
    }

    #[test]
    fn missing_and_malformed() {
        let v = VmcoreInfo::new(TEXT);
        assert_eq!(v.symbol("pr"), None);
        assert_eq!(v.symbol("bad"), None);
        assert_eq!(v.number("big"), None);
        assert_eq!(v.size("prb"), None);
        assert_eq!(v.offset("printk_ringbuffer"), None);
        assert_eq!(VmcoreInfo::new(b"").osrelease(), None);
        assert_eq!(VmcoreInfo::new(b"PAGESIZE=-1\n").page_size(), None);
        assert_eq!(VmcoreInfo::new(b"SIZE(x)=+1\n").size("x"), None);
    }
}
