//! Typed, bounded hardware access: the one pattern every driver follows
//! (virtio-blk does; AHCI and NVMe copy it).
//!
//! A driver never names an absolute address. It holds *regions* that only
//! the platform hands out, and reaches a register or a DMA structure only
//! as a typed field at a checked offset of one of them:
//!
//! 1. **Describe the layout.** Each register block (or DMA structure) is a
//!    `#[repr(C)]` struct whose fields are its registers, each commented
//!    with its offset from the specification; a `const _: () =
//!    assert!(size_of::<Block>() == ...)` pins the size. A register is named
//!    with [`field!`]`(Block, name)`, a [`Field<Block, T>`]: its offset comes
//!    from `offset_of!` and its width from the field's type, so it can only
//!    be read or written with its own width, and only through a region laid
//!    out as `Block`. (The structs are never instantiated: they are layouts.)
//! 2. **Get the region from the platform.** Memory registers:
//!    [`Registers::map`]`(platform, function, bar, offset, len)` names a BAR
//!    of a PCI function and a range inside it; the platform decodes the BAR
//!    itself, maps the range uncached and hands out a [`Platform::Mmio`],
//!    which exists only as long as the driver holds it (two live regions
//!    never overlap, and none overlaps RAM). I/O ports: [`Ports::claim`]
//!    for an I/O BAR (legacy virtio). DMA: [`Dma::alloc`].
//! 3. **Access through the region.** `regs.read(p, FIELD)` /
//!    `regs.write(p, FIELD, value)`; arrays and offsets known only at run
//!    time (a doorbell at `notify_off × multiplier`, descriptor `i` of a
//!    ring) use `read_at` / `write_at`, which the platform bounds-checks
//!    against the region (the kernel stops with an internal error; the test
//!    machine records a violation).
//! 4. **DMA addresses go to the device only.** [`Dma::device_address`] is
//!    the one way to learn where a DMA allocation is, and its only use is
//!    to be written into a device register or descriptor.
//!
//! The host tests implement [`Platform`] with a fake machine that backs
//! the same regions with memory and a device model, and checks every access.

use crate::pci::PciAddress;
use crate::Platform;
use core::marker::PhantomData;

/// Width of one access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 8 bits.
    U8 = 1,
    /// 16 bits.
    U16 = 2,
    /// 32 bits.
    U32 = 4,
    /// 64 bits.
    U64 = 8,
}

impl Width {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        self as u64
    }
}

/// Whether an access of `width` at `offset` lies inside a region of `len`
/// bytes and is naturally aligned. Every [`Platform`] implementation checks
/// this before an access.
pub fn in_bounds(len: u64, offset: u64, width: Width) -> bool {
    offset.is_multiple_of(width.bytes())
        && offset
            .checked_add(width.bytes())
            .is_some_and(|end| end <= len)
}

/// A region the platform handed out.
pub trait Region {
    /// Its size in bytes.
    fn len(&self) -> u64;
    /// Whether it is empty (never, for a region handed out).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A DMA allocation: a region with an address the device uses.
pub trait DmaRegion: Region {
    /// Where the device reaches the allocation (bus address).
    fn device_address(&self) -> u64;
}

/// A register or memory value of one access width.
pub trait Value: Copy {
    /// Its access width.
    const WIDTH: Width;
    /// From the low bits of a raw access.
    fn from_raw(raw: u64) -> Self;
    /// To a raw access.
    fn to_raw(self) -> u64;
}

macro_rules! value {
    ($t:ty, $w:ident) => {
        impl Value for $t {
            const WIDTH: Width = Width::$w;
            #[allow(clippy::cast_possible_truncation)] // the width is the type's
            fn from_raw(raw: u64) -> Self {
                raw as $t
            }
            fn to_raw(self) -> u64 {
                u64::from(self)
            }
        }
    };
}
value!(u8, U8);
value!(u16, U16);
value!(u32, U32);
value!(u64, U64);

/// A field of type `T` at a fixed offset of a block laid out as `B`.
pub struct Field<B, T> {
    offset: u64,
    _layout: PhantomData<fn() -> (*const B, T)>,
}

impl<B, T> Clone for Field<B, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B, T> Copy for Field<B, T> {}

impl<B, T> Field<B, T> {
    /// The field at `offset`; `_type_of` only ties `T` to the field's type
    /// (it is never called). Use [`field!`].
    #[doc(hidden)]
    pub const fn new(offset: usize, _type_of: fn(&B) -> &T) -> Self {
        Self {
            offset: offset as u64,
            _layout: PhantomData,
        }
    }

    /// Offset from the start of the block.
    pub const fn offset(self) -> u64 {
        self.offset
    }

    /// The field `inner` of the struct this field holds: `outer.then(inner)`
    /// is `inner` seen from the outer block.
    pub const fn then<C>(self, inner: Field<T, C>) -> Field<B, C> {
        Field {
            offset: self.offset + inner.offset,
            _layout: PhantomData,
        }
    }
}

/// `field!(Block, name)`: the typed [`Field`] for `Block::name`.
#[macro_export]
macro_rules! field {
    ($block:ty, $name:ident) => {
        $crate::access::Field::new(::core::mem::offset_of!($block, $name), |b: &$block| {
            &b.$name
        })
    };
}

/// A memory register block laid out as `B`, mapped by the platform.
pub struct Registers<P: Platform + ?Sized, B> {
    region: P::Mmio,
    _layout: PhantomData<fn() -> *const B>,
}

impl<P: Platform + ?Sized, B> Registers<P, B> {
    /// Map `len` bytes at `offset` in memory BAR `bar` of `function` (at
    /// least the size of `B`). None if the BAR is not a memory BAR or the
    /// platform cannot map it.
    pub fn map(p: &P, function: PciAddress, bar: u8, offset: u64, len: u64) -> Option<Self> {
        let len = len.max(core::mem::size_of::<B>() as u64);
        let region = p.map_registers(function, bar, offset, len)?;
        if region.len() < core::mem::size_of::<B>() as u64 {
            return None;
        }
        Some(Self {
            region,
            _layout: PhantomData,
        })
    }

    /// Read a register.
    pub fn read<T: Value>(&self, p: &P, field: Field<B, T>) -> T {
        self.read_at(p, field.offset())
    }

    /// Write a register.
    pub fn write<T: Value>(&self, p: &P, field: Field<B, T>, value: T) {
        self.write_at(p, field.offset(), value)
    }

    /// Read a `T` at a run-time offset (bounds-checked by the platform).
    pub fn read_at<T: Value>(&self, p: &P, offset: u64) -> T {
        T::from_raw(p.mmio_read(&self.region, offset, T::WIDTH))
    }

    /// Write a `T` at a run-time offset (bounds-checked by the platform).
    pub fn write_at<T: Value>(&self, p: &P, offset: u64, value: T) {
        p.mmio_write(&self.region, offset, T::WIDTH, value.to_raw())
    }

    /// Whether a `T` at `offset` lies inside the region.
    pub fn contains<T: Value>(&self, offset: u64) -> bool {
        in_bounds(self.region.len(), offset, T::WIDTH)
    }
}

/// An I/O port block laid out as `B` (offsets are port offsets).
pub struct Ports<P: Platform + ?Sized, B> {
    ports: P::Ports,
    _layout: PhantomData<fn() -> *const B>,
}

impl<P: Platform + ?Sized, B> Ports<P, B> {
    /// Claim the size of `B` at the start of I/O BAR `bar` of `function`.
    pub fn claim(p: &P, function: PciAddress, bar: u8) -> Option<Self> {
        let len = u16::try_from(core::mem::size_of::<B>()).ok()?;
        let ports = p.claim_ports(function, bar, len)?;
        Some(Self {
            ports,
            _layout: PhantomData,
        })
    }

    /// Read a register.
    pub fn read<T: Value>(&self, p: &P, field: Field<B, T>) -> T {
        T::from_raw(p.port_read(&self.ports, field.offset(), T::WIDTH))
    }

    /// Write a register.
    pub fn write<T: Value>(&self, p: &P, field: Field<B, T>, value: T) {
        p.port_write(&self.ports, field.offset(), T::WIDTH, value.to_raw())
    }
}

/// Memory a device reaches by DMA, allocated by the platform (zeroed,
/// never freed: a capture kernel runs once).
pub struct Dma<P: Platform + ?Sized> {
    memory: P::Dma,
}

impl<P: Platform + ?Sized> Dma<P> {
    /// Allocate `len` zeroed bytes aligned to `align`.
    pub fn alloc(p: &P, len: usize, align: usize) -> Option<Self> {
        Some(Self {
            memory: p.dma_alloc(len, align)?,
        })
    }

    /// The address the device uses; give it only to the device.
    pub fn device_address(&self) -> u64 {
        self.memory.device_address()
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.memory.len()
    }

    /// Whether it is empty (never: the platform allocates at least a byte).
    pub fn is_empty(&self) -> bool {
        self.memory.is_empty()
    }

    /// The platform's handle.
    pub fn region(&self) -> &P::Dma {
        &self.memory
    }

    /// Read `field` of the `B` at `base`.
    pub fn read<B, T: Value>(&self, p: &P, base: u64, field: Field<B, T>) -> T {
        self.read_at(p, base + field.offset())
    }

    /// Write `field` of the `B` at `base`.
    pub fn write<B, T: Value>(&self, p: &P, base: u64, field: Field<B, T>, value: T) {
        self.write_at(p, base + field.offset(), value)
    }

    /// Read a `T` at `offset` (bounds-checked by the platform).
    pub fn read_at<T: Value>(&self, p: &P, offset: u64) -> T {
        T::from_raw(p.dma_read(&self.memory, offset, T::WIDTH))
    }

    /// Write a `T` at `offset` (bounds-checked by the platform).
    pub fn write_at<T: Value>(&self, p: &P, offset: u64, value: T) {
        p.dma_write(&self.memory, offset, T::WIDTH, value.to_raw())
    }

    /// Copy bytes out, starting at `offset` (bounds-checked by the platform).
    pub fn read_bytes(&self, p: &P, offset: u64, out: &mut [u8]) {
        p.dma_read_bytes(&self.memory, offset, out)
    }

    /// Make the CPU's writes visible to a device that does not snoop the
    /// caches (a VT-d unit without ECAP.C).
    pub fn flush(&self, p: &P) {
        p.dma_flush(&self.memory)
    }
}
