//! `cordon`: see the `cordon` crate.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    cordon::main_with_args(std::env::args_os())
}
