//! The command line: `berth serve` and friends.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::Overrides;

/// Berth: a model registry with first-class webhooks.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, disable_help_subcommand = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start-up: `serve`'s many settings make its variant the large one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: the API, the web UI and the webhook delivery worker (see --role)
    Serve(Overrides),
    /// Apply the database migrations and exit
    Migrate(MigrateArgs),
    /// Write a consistent copy of the running SQLite database to FILE (PostgreSQL: use pg_dump)
    Backup(BackupArgs),
    /// Print the OpenAPI document of the REST API
    Openapi,
    /// Run the performance benchmark against a Berth of its own and print the figures
    Bench(crate::bench::BenchArgs),
    /// Print this message or the help of the given subcommand
    Help(HelpArgs),
}

/// `berth migrate`: only the settings that locate and reach the database. The rest of the
/// configuration file is still read and checked, as `serve` would.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// TOML configuration file (default: ./berth.toml when it exists)
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the SQLite database and generated files
    #[arg(long, env = "BERTH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://…); without it Berth uses SQLite in the data directory
    #[arg(
        long,
        env = "BERTH_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Most connections to PostgreSQL from this node
    #[arg(long, env = "BERTH_DATABASE_MAX_CONNECTIONS", value_name = "N")]
    pub database_max_connections: Option<u32>,
    /// Longest wait for a PostgreSQL connection, e.g. 3s
    #[arg(long, env = "BERTH_DATABASE_ACQUIRE_TIMEOUT", value_name = "DURATION")]
    pub database_acquire_timeout: Option<String>,
}

impl MigrateArgs {
    /// The settings layer these flags and variables make; every other setting comes from the
    /// configuration file or its default.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            database_max_connections: self.database_max_connections,
            database_acquire_timeout: self.database_acquire_timeout.clone(),
            ..Overrides::default()
        }
    }
}

/// `berth backup FILE`: the settings locate the database, as for `serve`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the copy; must not exist yet
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// TOML configuration file (default: ./berth.toml when it exists)
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the SQLite database to copy
    #[arg(long, env = "BERTH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL: backup then refuses, naming pg_dump
    #[arg(
        long,
        env = "BERTH_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

impl BackupArgs {
    /// The settings layer these flags and variables make.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            ..Overrides::default()
        }
    }
}

/// `berth help [COMMAND]…`.
#[derive(Debug, clap::Args)]
pub struct HelpArgs {
    /// The subcommand to describe (none: berth itself)
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The help text of `berth` or of one of its subcommands (`path`, e.g. `["serve"]`).
pub fn help_text(path: &[String]) -> Result<String, String> {
    let mut cmd = Cli::command().bin_name("berth");
    cmd.build();
    let mut current = &mut cmd;
    for name in path {
        let known: Vec<String> = current
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        current = match current.find_subcommand_mut(name) {
            Some(sub) => sub,
            None => {
                return Err(format!(
                    "unknown subcommand `{name}`; the subcommands are: {}",
                    known.join(", ")
                ));
            }
        };
    }
    Ok(current.render_help().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_names_a_subcommand_or_refuses() {
        assert!(help_text(&[]).unwrap().contains("Commands:"));
        assert!(help_text(&["serve".into()]).unwrap().contains("--listen"));
        assert!(help_text(&["help".into()]).unwrap().contains("COMMAND"));
        assert!(help_text(&["nope".into()]).unwrap_err().contains("serve"));
    }
}
