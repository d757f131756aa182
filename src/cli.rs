//! The command line: `berth serve` and friends.

use clap::{Parser, Subcommand};

use crate::config::Overrides;

/// Berth: a model registry with first-class webhooks.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server (and, from the webhooks release on, the delivery worker)
    Serve(Overrides),
    /// Apply the database migrations and exit
    Migrate(Overrides),
    /// Write a consistent copy of the running SQLite database to FILE (PostgreSQL: use pg_dump)
    Backup(BackupArgs),
    /// Print the OpenAPI document of the REST API
    Openapi,
    /// Run the performance benchmark against a Berth of its own and print the figures
    Bench(crate::bench::BenchArgs),
}

/// `berth backup FILE`: the settings locate the database, as for `serve`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the copy; must not exist yet
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
    #[command(flatten)]
    pub settings: Overrides,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
