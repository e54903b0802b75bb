//! Memory accounting for the Rhai sandbox: a global allocator that counts,
//! per thread, the bytes allocated and not yet freed, so a method's memory
//! can be bounded ([`super::RhaiLimits::max_memory`]).
//!
//! Rhai checks string, array and map sizes value by value, but a map filled
//! one big string at a time (`m[k] = s`) is never checked as a whole; only
//! the wall-clock limit stopped it, after gigabytes. With [`CountingAlloc`]
//! installed as the `#[global_allocator]` (the `automate` binary and the
//! integration tests do), the runner's progress hook compares the thread's
//! net allocation with the level at the start of the call and terminates
//! the method past the limit. Without it, [`thread_net_bytes`] stays 0 and
//! the limit never fires.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

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

/// The system allocator, counting bytes per thread.
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to `System`, which upholds
// `GlobalAlloc`'s contract; the bookkeeping only touches a const,
// destructor-free thread-local `Cell` (no allocation, no re-entrancy).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; `ptr`/`layout` come from `System`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}
