//! The `automate` command line. All the work is in the library; this file
//! only parses arguments, sets up logging and turns errors into exit codes.

use std::process::ExitCode;

fn main() -> ExitCode {
    automate::cli::main()
}
