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
    /// Print the OpenAPI document of the REST API
    Openapi,
    /// Run the performance benchmark against a Berth of its own and print the figures
    Bench(crate::bench::BenchArgs),
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
