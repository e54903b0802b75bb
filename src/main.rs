//! The `automate` command line. All the work is in the library; this file
//! only parses arguments, sets up logging and turns errors into exit codes.

use std::process::ExitCode;

/// Counts each thread's allocations so a Rhai method's memory can be
/// bounded (`automate_core::alloc`).
#[global_allocator]
static ALLOC: automate_core::alloc::CountingAlloc = automate_core::alloc::CountingAlloc;

fn main() -> ExitCode {
    automate::cli::main()
}
