//! A small-block allocator for policies, to use as their global allocator
//! on wasm32 (see [`SmallAlloc`]).
//!
//! One decision allocates a few dozen small blocks (the event's and facts'
//! strings, the actions) and frees them all before the next. Rust's default
//! allocator on wasm32, dlmalloc, spends about a sixth of a decision doing so
//! (measured in BENCHMARKS.md). This one keeps freed blocks in one list per
//! size class and hands the most recently freed out first, so consecutive
//! decisions reuse the same few blocks, and their cache lines.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Block sizes served from the lists; larger or over-aligned requests go to
/// the system allocator. Multiples of 16, so every block is 16-aligned.
const CLASSES: [usize; 10] = [16, 32, 48, 64, 96, 128, 192, 256, 384, 512];
/// Memory taken from the system allocator at a time for new blocks.
const CHUNK: usize = 64 * 1024;
const ALIGN: usize = 16;

/// Small blocks from per-size free lists, everything else from the system
/// allocator. Blocks are never given back to the system: an instance's
/// memory stays at its peak of small blocks, capped by the host as always.
///
/// For wasm32 policies (single-threaded), with the SDK's `small-alloc`
/// feature:
///
/// ```ignore
/// #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
/// #[global_allocator]
/// static ALLOC: pizzja_sdk::SmallAlloc = pizzja_sdk::SmallAlloc::new();
/// ```
pub struct SmallAlloc {
    inner: UnsafeCell<Lists>,
}

struct Lists {
    /// Head of each class's list of free blocks; a free block holds the
    /// address of the next one.
    free: [*mut u8; CLASSES.len()],
    /// The unused part of the current chunk.
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: without the `atomics` target feature a wasm32 module has a single
// thread, so the lists are never used concurrently. Elsewhere the type is
// only usable as a plain value (tests), which `UnsafeCell` keeps `!Sync`.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for SmallAlloc {}

impl SmallAlloc {
    /// An allocator with no blocks yet.
    pub const fn new() -> SmallAlloc {
        SmallAlloc {
            inner: UnsafeCell::new(Lists {
                free: [ptr::null_mut(); CLASSES.len()],
                next: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }

    fn class(layout: Layout) -> Option<usize> {
        if layout.align() > ALIGN {
            return None;
        }
        CLASSES.iter().position(|&size| layout.size() <= size)
    }
}

impl Default for SmallAlloc {
    fn default() -> Self {
        SmallAlloc::new()
    }
}

unsafe impl GlobalAlloc for SmallAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = Self::class(layout) else {
            // SAFETY: forwarded as given.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded (see the `Sync` impl), and no reference to
        // the lists outlives this call.
        let lists = unsafe { &mut *self.inner.get() };
        let head = lists.free[class];
        if !head.is_null() {
            // SAFETY: `head` is a free block of this class, holding the next.
            lists.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = CLASSES[class];
        if (lists.end as usize) - (lists.next as usize) < size {
            let Ok(chunk) = Layout::from_size_align(CHUNK, ALIGN) else {
                return ptr::null_mut();
            };
            // SAFETY: a valid, non-zero layout. The rest of the old chunk
            // (under 512 bytes) is left unused.
            let fresh = unsafe { System.alloc(chunk) };
            if fresh.is_null() {
                return fresh;
            }
            lists.next = fresh;
            lists.end = fresh.wrapping_add(CHUNK);
        }
        let block = lists.next;
        lists.next = block.wrapping_add(size);
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = Self::class(layout) else {
            // SAFETY: it came from `System.alloc` with this layout.
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: as in `alloc`; the block is ours, at least 16 bytes and
        // 16-aligned, so it can hold the list's link.
        unsafe {
            let lists = &mut *self.inner.get();
            block.cast::<*mut u8>().write(lists.free[class]);
            lists.free[class] = block;
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        let (class, new_class) = (Self::class(layout), Self::class(new_layout));
        if class.is_none() && new_class.is_none() {
            // SAFETY: it came from `System.alloc` with this layout.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        if class == new_class {
            // Still fits its block.
            return block;
        }
        // SAFETY: the contract of `realloc`, as the default does it.
        unsafe {
            let fresh = self.alloc(new_layout);
            if !fresh.is_null() {
                ptr::copy_nonoverlapping(block, fresh, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            fresh
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic sequence for the mixed workload below.
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    }

    #[test]
    fn blocks_never_overlap_and_keep_their_contents() {
        let a = SmallAlloc::new();
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let mut seed = 7;
        for step in 0..20_000u32 {
            let r = lcg(&mut seed);
            if r.is_multiple_of(3) && !live.is_empty() {
                let (p, layout, fill) = live.swap_remove((r as usize / 3) % live.len());
                // SAFETY: allocated below with this layout and still live.
                let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
                assert!(bytes.iter().all(|&b| b == fill), "block changed under us");
                unsafe { a.dealloc(p, layout) };
                continue;
            }
            let size = 1 + (r as usize % 700);
            let align = [1, 2, 4, 8, 16, 32][(r as usize / 700) % 6];
            let layout = Layout::from_size_align(size, align).expect("valid");
            // SAFETY: a valid, non-zero layout.
            let p = unsafe { a.alloc(layout) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "misaligned");
            let fill = step as u8;
            // SAFETY: just allocated with `size` bytes.
            unsafe { ptr::write_bytes(p, fill, size) };
            live.push((p, layout, fill));
        }
        for (p, layout, fill) in live {
            // SAFETY: as above.
            let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
            assert!(bytes.iter().all(|&b| b == fill), "block changed under us");
            unsafe { a.dealloc(p, layout) };
        }
    }

    #[test]
    fn freed_blocks_come_back_first_and_realloc_keeps_contents() {
        let a = SmallAlloc::new();
        let small = Layout::from_size_align(20, 1).expect("valid");
        // SAFETY: valid layouts; every pointer is used as allocated.
        unsafe {
            let p = a.alloc(small);
            a.dealloc(p, small);
            assert_eq!(a.alloc(small), p, "the freed block is reused");
            ptr::copy_nonoverlapping(b"twenty bytes of text".as_ptr(), p, 20);
            let same = a.realloc(p, small, 30);
            assert_eq!(same, p, "30 bytes still fit the 32-byte block");
            let grown = a.realloc(same, small, 2000);
            assert_ne!(grown, p, "2000 bytes go to the system allocator");
            assert_eq!(
                std::slice::from_raw_parts(grown, 20),
                b"twenty bytes of text"
            );
            a.dealloc(grown, Layout::from_size_align(2000, 1).expect("valid"));
        }
    }
}
