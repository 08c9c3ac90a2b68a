//! ACPI table parsing lives in `minicap-acpi` (pure logic, host tested);
//! this module keeps its items at `crate::acpi` for the kernel's users.

pub use minicap_acpi::*;
