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
