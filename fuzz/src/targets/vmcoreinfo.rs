//! The VMCOREINFO note's `KEY=VALUE` text: the lookups the capture kernel makes, the page
//! table root it derives, and the printk layouts checked from it.

use minicap_printk::{LegacyLayout, LogLayout, RingLayout};
use minicap_vmcoreinfo::{PageTables, VmcoreInfo};

use super::{signature, Target};

pub const TARGET: Target = Target {
    name: "vmcoreinfo",
    about: "VMCOREINFO text: values, SYMBOL/SIZE/OFFSET/LENGTH/NUMBER, page tables, printk layouts",
    run,
    dictionary: DICTIONARY,
    max_len: 8 << 10,
};

/// VMCOREINFO's syntax and the keys minicap looks up.
pub(super) const DICTIONARY: &[&[u8]] = &[
    b"\n",
    b"=",
    b"SYMBOL(",
    b"SIZE(",
    b"OFFSET(",
    b"LENGTH(",
    b"NUMBER(",
    b")=",
    b"ffffffff",
    b"-",
    b"OSRELEASE=",
    b"PAGESIZE=",
    b"KERNELOFFSET=",
    b"NUMBER(phys_base)=",
    b"SYMBOL(init_top_pgt)=",
    b"NUMBER(pgtable_l5_enabled)=1",
    b"NUMBER(sme_mask)=",
    b"SYMBOL(prb)=",
    b"SYMBOL(log_buf)=",
    b"SIZE(printk_ringbuffer)=",
    b"OFFSET(prb_desc_ring.count_bits)=",
    b"OFFSET(printk_info.text_len)=",
    b"SIZE(printk_log)=",
    b"OFFSET(printk_log.len)=",
];

fn run(input: &[u8]) -> u64 {
    let v = VmcoreInfo::new(input);
    let values = (
        v.osrelease().is_some(),
        v.page_size() == Some(4096),
        v.kernel_offset().is_some(),
        v.phys_base().is_some(),
        v.utsname_address().is_some(),
        v.symbol("prb").is_some(),
        v.size("printk_info").is_some(),
        v.offset("printk_info.seq").is_some(),
        v.length("mem_section").is_some(),
        v.number("phys_base").is_some(),
        v.value("CRASHTIME").is_some(),
    );
    let tables = PageTables::from_vmcoreinfo(&v).map(|t| t.five_level);
    let ring = RingLayout::from_vmcoreinfo(&v).map_err(|e| core::mem::discriminant(&e));
    let legacy = LegacyLayout::from_vmcoreinfo(&v).map_err(|e| core::mem::discriminant(&e));
    let log = LogLayout::from_vmcoreinfo(&v).map_err(|e| core::mem::discriminant(&e));
    signature((
        values,
        tables,
        ring.is_ok(),
        ring.err(),
        legacy.is_ok(),
        legacy.err(),
        log.is_ok(),
    ))
}
