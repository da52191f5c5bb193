//! `cordon-agent`: see the `sensor_agent` crate.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    sensor_agent::cli::main_with_args(std::env::args_os())
}
