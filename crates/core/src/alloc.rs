//! Memory accounting for the Rhai sandbox: a global allocator that counts,
//! per thread, the bytes allocated and not yet freed, so a method's memory
//! can be bounded (`automate_methods::rhai_runner::RhaiLimits::max_memory`).
//!
//! Rhai checks string, array and map sizes value by value, but a map filled
//! one big string at a time (`m[k] = s`) is never checked as a whole; only
//! the wall-clock limit stopped it, after gigabytes. With [`CountingAlloc`]
//! installed as the `#[global_allocator]` (the `automate` binary and the
//! integration tests do), the runner's progress hook compares the thread's
//! net allocation with the level at the start of the call and terminates
//! the method past the limit. Without it, [`thread_net_bytes`] stays 0 and
//! the limit never fires.
//!
//! The allocator underneath is mimalloc (faster than glibc's malloc for the
//! many small, short-lived blocks of an instantiation; docs/DECISIONS.md).

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ffi::c_void;

thread_local! {
    // `const` and without a destructor: safe to touch from the allocator,
    // even while the thread is being torn down.
    static NET: Cell<i64> = const { Cell::new(0) };
}

fn add(delta: i64) {
    let _ = NET.try_with(|n| n.set(n.get().wrapping_add(delta)));
}

/// Bytes allocated minus bytes freed by this thread so far (0 when
/// [`CountingAlloc`] is not the global allocator). Only differences taken
/// on one thread mean anything.
pub fn thread_net_bytes() -> i64 {
    NET.try_with(Cell::get).unwrap_or(0)
}

/// mimalloc's plain `mi_malloc` aligns a block of `size` bytes to
/// `min(size, 16)` (its `MI_MAX_ALIGN_SIZE`, and natural alignment below
/// it); other layouts go through the `_aligned` calls.
fn plain(layout: Layout) -> bool {
    layout.align() <= 16 && layout.align() <= layout.size()
}

/// mimalloc, counting bytes per thread.
pub struct CountingAlloc;

// SAFETY: every call is forwarded to mimalloc, which upholds `GlobalAlloc`'s
// contract (the plain calls only for layouts they align, see `plain`); the
// bookkeeping only touches a const, destructor-free thread-local `Cell` (no
// allocation, no re-entrancy).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's size and alignment.
        let p = unsafe {
            if plain(layout) {
                mi::mi_malloc(layout.size())
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align())
            }
        } as *mut u8;
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's size and alignment.
        let p = unsafe {
            if plain(layout) {
                mi::mi_zalloc(layout.size())
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align())
            }
        } as *mut u8;
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by mimalloc (through us).
        unsafe { mi::mi_free(ptr as *mut c_void) };
        add(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by mimalloc (through us) with `layout`.
        let p = unsafe {
            if layout.align() <= 16 && layout.align() <= new_size {
                mi::mi_realloc(ptr as *mut c_void, new_size)
            } else {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align())
            }
        } as *mut u8;
        if !p.is_null() {
            add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}
