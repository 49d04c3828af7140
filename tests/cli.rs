//! The `livecamp` binary as people run it: first start on an empty data directory (schema, demo
//! data, printed URL and accounts), the documented environment variables, `config` without
//! secrets, clear errors for bad configuration, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn livecamp() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_livecamp"));
    // Run with only our own settings, whatever the developer's shell has.
    for (key, _) in std::env::vars() {
        if key.starts_with("LIVECAMP_") {
            command.env_remove(key);
        }
    }
    command.env("LIVECAMP_LOG_LEVEL", "warn");
    command
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn first_start_prints_the_url_and_demo_accounts_and_sigterm_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = livecamp()
        .arg("serve")
        .env("LIVECAMP_LISTEN", format!("127.0.0.1:{port}"))
        .env("LIVECAMP_DATA_DIR", dir.path())
        .env("LIVECAMP_DEMO_PASSWORD", "cli12345pw")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start livecamp");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !banner.contains("trainee01") {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no banner within 60 s; got:\n{banner}"));
        banner.push_str(&line);
        banner.push('\n');
    }
    assert!(
        banner.contains(&format!("http://127.0.0.1:{port}")),
        "{banner}"
    );
    for account in [
        "admin",
        "supervisor01",
        "institution01",
        "instructor01",
        "instructor02",
    ] {
        assert!(
            banner.contains(account),
            "{account} missing from:\n{banner}"
        );
    }
    assert!(banner.contains("cli12345pw"));
    assert!(dir.path().join("livecamp.db").exists());
    assert!(dir.path().join("secrets.toml").exists());

    // It answers, and the demo password works.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let base = format!("http://127.0.0.1:{port}");
        let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(health.status(), 200);
        let login = reqwest::Client::new()
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "admin", "password": "cli12345pw"}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200);
    });

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "livecamp did not stop within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "exit status {exit:?}");

    // A second start reuses the data and prints the same accounts again.
    let output = livecamp()
        .arg("demo-data")
        .env("LIVECAMP_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("already present") && text.contains("cli12345pw"),
        "{text}"
    );
}

#[test]
fn config_hides_secrets() {
    let output = livecamp()
        .arg("config")
        .env("LIVECAMP_DEMO_PASSWORD", "very-secret-1")
        .env(
            "LIVECAMP_DATABASE_URL",
            "postgres://app:dbpass@127.0.0.1/livecamp",
        )
        .env("LIVECAMP_REDIS_URL", "redis://:redispass@127.0.0.1:6379")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let config: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(config["demo_password"], "***");
    for secret in ["very-secret-1", "dbpass", "redispass"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert_eq!(
        config["database_url"],
        "postgres://app:***@127.0.0.1/livecamp"
    );
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let output = livecamp()
        .arg("config")
        .env("LIVECAMP_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("listen"));

    let output = livecamp()
        .arg("config")
        .env("LIVECAMP_LISTN", "127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("listn"));

    let dir = tempfile::tempdir().unwrap();
    let output = livecamp()
        .arg("migrate")
        .env(
            "LIVECAMP_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env("LIVECAMP_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("field_keys"));
}
