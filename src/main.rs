//! The `berth` binary: parses the command line, sets up logging, and hands over to the library.

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use berth::cli::{Cli, Command};
use berth::config::Settings;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    berth::init_crypto();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(over) => match Settings::resolve(&over) {
            Ok(settings) => berth::app::serve(settings).await,
            Err(e) => Err(e),
        },
        Command::Help(args) => match berth::cli::help_text(&args.command) {
            Ok(text) => {
                use std::io::Write;
                let _ = write!(std::io::stdout(), "{text}");
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!(e)),
        },
        Command::Openapi => {
            use std::io::Write;
            // A closed pipe (`berth openapi | head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{}", berth::api::openapi_json());
            Ok(())
        }
        Command::Bench(args) => match berth::bench::run(&args).await {
            Ok(report) => {
                println!("{}", berth::bench::table(&report));
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => std::fs::write(&args.json, json)
                        .map_err(|e| anyhow::anyhow!("writing {}: {e}", args.json.display())),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e),
        },
        Command::Backup(args) => match Settings::resolve(&args.overrides()) {
            Ok(settings) => berth::backup::backup(&settings, &args.file)
                .await
                .map(|()| {
                    eprintln!(
                        "berth: wrote a consistent copy of {} to {} (integrity_check: ok). \
                         Keep the secret key (BERTH_SECRET_KEY or {}) with it: the webhook \
                         secrets in the copy are sealed with it.",
                        settings.data_dir.join("berth.db").display(),
                        args.file.display(),
                        settings.data_dir.join("secret-key").display()
                    );
                }),
            Err(e) => Err(e),
        },
        Command::Migrate(args) => match Settings::resolve(&args.overrides()) {
            Ok(settings) => berth::app::migrate_only(&settings).await,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
