//! `cordon-e2e agent ARGS` runs `cordon-agent ARGS`; anything else (and `cordon agent revoke`, the
//! server's command) runs `cordon`.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let server_command = args.get(2).is_some_and(|a| a == "revoke");
    if args.get(1).is_some_and(|a| a == "agent") && !server_command {
        args.remove(1);
        args[0] = "cordon-agent".into();
        sensor_agent::cli::main_with_args(args)
    } else {
        args[0] = "cordon".into();
        cordon::main_with_args(args)
    }
}
