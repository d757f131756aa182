//! Configuration, layered: built-in defaults, then an optional TOML file (`berth.toml` in the
//! working directory, or `--config`), then `BERTH_*` environment variables, then command-line
//! flags. [`Settings::resolve`] checks everything at start-up: a wrong value stops the server
//! with a message that names the setting. `config.default.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Settings as they arrive from flags and environment variables (clap fills these).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// TOML configuration file (default: ./berth.toml when it exists)
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free one)
    #[arg(long, env = "BERTH_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
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
}

/// The optional configuration file. Unknown keys are an error, so a typo is caught.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
}

/// Which database to use.
#[derive(Clone)]
pub enum Database {
    Sqlite,
    Postgres(String),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite => f.write_str("Sqlite"),
            // The URL may hold a password.
            Database::Postgres(_) => f.write_str("Postgres(<redacted>)"),
        }
    }
}

/// A secret string whose `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The checked settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: Database,
    pub database_max_connections: u32,
    /// The server admin's token on first start (`BERTH_ADMIN_TOKEN`).
    pub admin_token: Option<Secret>,
}

impl Settings {
    /// Defaults for tests and embedding: SQLite in `data_dir`, listening on a free port.
    pub fn for_data_dir(data_dir: &Path) -> Settings {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_owned(),
            database: Database::Sqlite,
            database_max_connections: 10,
            admin_token: None,
        }
    }

    /// Merges defaults, the file, and the overrides (environment and flags), and checks them.
    pub fn resolve(over: &Overrides) -> anyhow::Result<Settings> {
        let file = match &over.config {
            Some(path) => read_file(path)?,
            None => {
                let default = Path::new("berth.toml");
                if default.exists() {
                    read_file(default)?
                } else {
                    FileConfig::default()
                }
            }
        };
        let listen_text = over
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            anyhow::anyhow!(
                "invalid setting listen (--listen / BERTH_LISTEN): `{listen_text}` is not \
                 HOST:PORT with a numeric IP address, e.g. 127.0.0.1:8080"
            )
        })?;
        let data_dir = over
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("berth-data"));
        if data_dir.as_os_str().is_empty() {
            bail!("invalid setting data_dir (--data-dir / BERTH_DATA_DIR): must not be empty");
        }
        let database = match over.database_url.clone().or(file.database_url) {
            None => Database::Sqlite,
            Some(url) if url.trim().is_empty() => Database::Sqlite,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Database::Postgres(url)
            }
            Some(_) => bail!(
                "invalid setting database_url (--database-url / BERTH_DATABASE_URL): must start \
                 with postgres:// or postgresql:// (leave it unset for SQLite in the data \
                 directory)"
            ),
        };
        let database_max_connections = over
            .database_max_connections
            .or(file.database_max_connections)
            .unwrap_or(10);
        if !(1..=1000).contains(&database_max_connections) {
            bail!(
                "invalid setting database_max_connections (--database-max-connections / \
                 BERTH_DATABASE_MAX_CONNECTIONS): must be between 1 and 1000"
            );
        }
        let admin_token = match std::env::var("BERTH_ADMIN_TOKEN") {
            Ok(t) if t.is_empty() => None,
            Ok(t) => {
                if t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    bail!(
                        "invalid setting BERTH_ADMIN_TOKEN: must be at least 16 characters \
                         without spaces or control characters"
                    );
                }
                Some(Secret::new(t))
            }
            Err(_) => None,
        };
        Ok(Settings {
            listen,
            data_dir,
            database,
            database_max_connections,
            admin_token,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_listen_names_the_setting() {
        let over = Overrides {
            listen: Some("nonsense".into()),
            config: Some(PathBuf::from("/nonexistent/berth.toml")),
            ..Default::default()
        };
        // The missing file is reported first.
        let err = Settings::resolve(&over).unwrap_err().to_string();
        assert!(err.contains("configuration file"), "{err}");
        let over = Overrides {
            listen: Some("nonsense".into()),
            ..Default::default()
        };
        let err = Settings::resolve(&over).unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn bad_database_url_names_the_setting() {
        let over = Overrides {
            database_url: Some("mysql://x".into()),
            ..Default::default()
        };
        let err = Settings::resolve(&over).unwrap_err().to_string();
        assert!(err.contains("database_url"), "{err}");
        assert!(!err.contains("mysql://x"), "the URL may hold a password");
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let over = Overrides {
            config: Some(path),
            ..Default::default()
        };
        let err = format!("{:#}", Settings::resolve(&over).unwrap_err());
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn database_debug_is_redacted() {
        let d = Database::Postgres("postgres://u:hunter2@h/db".into());
        assert!(!format!("{d:?}").contains("hunter2"));
    }
}
