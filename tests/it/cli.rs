//! The `berth` binary itself: start-up, the first admin, and settings errors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// Starts `berth serve` and waits for its "listening on" line; answers the child, the base URL
/// and everything it printed on stdout up to then.
fn start(
    args: &[&str],
    envs: &[(&str, &str)],
    expect_token: bool,
) -> (std::process::Child, String, String) {
    berth::init_crypto();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("BERTH_ADMIN_TOKEN")
        .env_remove("BERTH_DATABASE_URL")
        .env("BERTH_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn berth");
    let stderr = child.stderr.take().expect("stderr");
    let stdout = child.stdout.take().expect("stdout");
    let out_thread = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if text.lines().count() >= 2 {
                break;
            }
        }
        text
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut url = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(found) = berth::app::listening_url(&line) {
            url = Some(found.to_owned());
            break;
        }
        assert!(Instant::now() < deadline, "berth did not start");
    }
    let url = url.expect("a `listening on` line");
    let printed = if expect_token {
        out_thread.join().unwrap_or_default()
    } else {
        String::new()
    };
    (child, url, printed)
}

fn stop(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn serve_creates_the_admin_and_prints_its_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let data = data.to_str().unwrap();
    let (child, url, printed) = start(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", data],
        &[],
        true,
    );
    assert!(!url.ends_with(":0"), "the real port is logged: {url}");
    let token_file = std::path::Path::new(data).join("admin-token");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        printed.contains(&token),
        "the token is printed once: {printed}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let client = reqwest::Client::new();
    let me: serde_json::Value = client
        .get(format!("{url}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "admin");
    assert_eq!(me["serverAdmin"], true);
    stop(child);

    // A second start on the same data keeps the admin and prints no new token.
    let (child, url, _) = start(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", data],
        &[],
        false,
    );
    let status = client
        .get(format!("{url}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    stop(child);
}

#[tokio::test]
async fn settings_come_from_the_environment_and_admin_token_from_berth_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let token = "berth_env_token_abcdefghijkl";
    let (child, url, _) = start(
        &["serve"],
        &[
            ("BERTH_LISTEN", "127.0.0.1:0"),
            ("BERTH_DATA_DIR", data.to_str().unwrap()),
            ("BERTH_ADMIN_TOKEN", token),
        ],
        false,
    );
    assert!(
        !data.join("admin-token").exists(),
        "no file when the token is given"
    );
    let status = reqwest::Client::new()
        .get(format!("{url}/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    stop(child);
}

#[test]
fn a_wrong_setting_stops_the_server_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["serve", "--listen", "not-an-address"], "listen"),
        (&["serve", "--database-url", "mysql://x"], "database_url"),
        (
            &["serve", "--config", "/nonexistent/berth.toml"],
            "configuration file",
        ),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .env_remove("BERTH_DATABASE_URL")
            .output()
            .expect("run berth");
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn the_config_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("berth.toml"), "listen = \"nowhere\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve"])
        .current_dir(dir.path())
        .env_remove("BERTH_LISTEN")
        .output()
        .expect("run berth");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));
}

/// `berth bench` runs end to end (tiny sizes) and writes its figures as JSON. No figure is
/// asserted except the propagation counts, which are correctness, not speed.
#[test]
fn bench_runs_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(BIN)
        .args([
            "bench",
            "--duration",
            "1s",
            "--write-duration",
            "300ms",
            "--rate",
            "50",
            "--throughput-events",
            "20",
            "--propagation-rounds",
            "3",
            "--json",
        ])
        .arg(&json)
        .env_remove("BERTH_DATABASE_URL")
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("registry writes") && table.contains("footprint"),
        "{table}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["backend"], "sqlite");
    assert_eq!(report["registry_writes"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["propagation_created_received_next_event"], "3/3");
    assert_eq!(report["propagation_deleted_received_after"], "0/3");
    assert_eq!(report["delivery_throughput_deliveries"], 200);
    assert!(report["peak_rss_mb"].as_f64().unwrap() > 0.0);
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("BERTH_DATABASE_URL")
        .output()
        .expect("run berth")
}

/// The help of `berth`, of each subcommand and of `help` itself: current wording, and each
/// subcommand lists only the flags it uses.
#[test]
fn help_is_current_and_each_subcommand_lists_its_own_flags() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["help"],
        &["help", "serve"],
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("webhooks release"), "{args:?}: {text}");
        assert!(!text.is_empty(), "{args:?}");
    }
    let serve = String::from_utf8_lossy(&run(&["serve", "--help"]).stdout).into_owned();
    assert!(serve.contains("delivery worker"), "{serve}");
    for flag in ["--listen", "--retry-schedule", "--role", "--data-dir"] {
        assert!(serve.contains(flag), "serve --help lacks {flag}");
    }
    let serve_only = [
        "--listen",
        "--delivery-timeout",
        "--retry-schedule",
        "--allowed-target-cidrs",
        "--node-name",
        "--role",
        "--rate-limit-per-second",
        "--shutdown-grace",
    ];
    let cases: [(&str, &[&str]); 2] = [
        (
            "migrate",
            &[
                "--config",
                "--data-dir",
                "--database-url",
                "--database-max-connections",
            ],
        ),
        (
            "backup",
            &["--config", "--data-dir", "--database-url", "<FILE>"],
        ),
    ];
    for (sub, wanted) in cases {
        for args in [vec![sub, "--help"], vec!["help", sub]] {
            let out = run(&args);
            assert!(out.status.success(), "{args:?}");
            let text = String::from_utf8_lossy(&out.stdout);
            for flag in wanted {
                assert!(text.contains(flag), "{args:?} lacks {flag}: {text}");
            }
            for flag in serve_only {
                assert!(!text.contains(flag), "{args:?} lists {flag}: {text}");
            }
        }
        let out = run(&[sub, "--listen", "127.0.0.1:1", "x"]);
        assert!(!out.status.success(), "{sub} takes no --listen");
    }
    // `berth help --help` describes `help`; an unknown name is refused, naming the real ones.
    let out = run(&["help", "--help"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: berth help"));
    let out = run(&["help", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("migrate"), "{err}");
}

/// `berth migrate` still takes its settings from flags, `BERTH_*` variables and the
/// configuration file, and ignores the server's own variables.
#[test]
fn migrate_reads_flags_environment_and_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let flag_dir = dir.path().join("by-flag");
    let out = Command::new(BIN)
        .args(["migrate", "--data-dir"])
        .arg(&flag_dir)
        .current_dir(dir.path())
        .env_remove("BERTH_DATABASE_URL")
        .env_remove("BERTH_DATA_DIR")
        .output()
        .expect("run berth");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(flag_dir.join("berth.db").exists());

    let env_dir = dir.path().join("by-env");
    let out = Command::new(BIN)
        .args(["migrate"])
        .current_dir(dir.path())
        .env_remove("BERTH_DATABASE_URL")
        .env("BERTH_DATA_DIR", &env_dir)
        // Not a setting migrate uses: it is not read.
        .env("BERTH_LISTEN", "not-an-address")
        .output()
        .expect("run berth");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env_dir.join("berth.db").exists());

    std::fs::write(dir.path().join("berth.toml"), "data_dir = \"by-file\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["migrate"])
        .current_dir(dir.path())
        .env_remove("BERTH_DATABASE_URL")
        .env_remove("BERTH_DATA_DIR")
        .env_remove("BERTH_CONFIG")
        .output()
        .expect("run berth");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("by-file").join("berth.db").exists());

    // The file is still checked whole, as `serve` checks it.
    std::fs::write(dir.path().join("berth.toml"), "listen = \"nowhere\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["migrate"])
        .current_dir(dir.path())
        .env_remove("BERTH_DATABASE_URL")
        .env_remove("BERTH_CONFIG")
        .output()
        .expect("run berth");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));

    // backup reads the data directory and the configuration file from the environment too.
    std::fs::write(dir.path().join("empty.toml"), "").unwrap();
    let copy = dir.path().join("copy.db");
    let out = Command::new(BIN)
        .args(["backup"])
        .arg(&copy)
        .current_dir(dir.path())
        .env_remove("BERTH_DATABASE_URL")
        .env("BERTH_DATA_DIR", &env_dir)
        .env("BERTH_CONFIG", dir.path().join("empty.toml"))
        .output()
        .expect("run berth");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(copy.exists());
    let out = Command::new(BIN)
        .args(["backup"])
        .arg(dir.path().join("copy2.db"))
        .current_dir(dir.path())
        .env_remove("BERTH_DATABASE_URL")
        .env("BERTH_DATA_DIR", &env_dir)
        .env("BERTH_CONFIG", dir.path().join("none.toml"))
        .output()
        .expect("run berth");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("none.toml"), "{err}");
}
