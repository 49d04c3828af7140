//! Redis goes away and comes back: each node keeps serving its own viewers, says so in
//! /readyz and /metrics, and the room spans the nodes again once Redis is back. Uses a private
//! redis-server on its own port so no other test is disturbed.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Backend, spawn_cluster, ws_send};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (make test installs it)");
        let redis = Self {
            port,
            child: Some(child),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server did not start");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn chat_text(socket: &mut common::WsSocket, within: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(text.as_str()).ok()?;
            if frame["type"] == "event" && frame["event"]["kind"] == "chat" {
                return frame["event"]["message"]["text"]
                    .as_str()
                    .map(str::to_owned);
            }
        }
    }
}

async fn joined(socket: &mut common::WsSocket, room: i64) {
    ws_send(socket, json!({"v": 1, "type": "join", "room": room})).await;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message
            && text.as_str().contains("\"joined\"")
        {
            return;
        }
    }
}

async fn readiness(base: &str) -> String {
    let ready: Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ready["status"].as_str().unwrap_or_default().to_owned()
}

async fn wait_for_status(base: &str, status: &str) {
    for _ in 0..150 {
        if readiness(base).await == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{base} never became {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_keep_serving_through_a_redis_outage() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = PrivateRedis::start(port);
    let nodes = spawn_cluster(Backend::Sqlite, 2, &redis.url()).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    // Both relays must be connected before the room spans the nodes.
    wait_for_status(&a.base, "ok").await;
    wait_for_status(&b.base, "ok").await;
    let host_token = a.token("trainee01").await;
    let room = a.create_room(&host_token, "断网演练").await;
    let mut host = a.ws(&host_token).await;
    joined(&mut host, room).await;
    let mut local_viewer = a.ws(&a.token("trainee02").await).await;
    joined(&mut local_viewer, room).await;
    let mut remote_viewer = b.ws(&b.token("trainee03").await).await;
    joined(&mut remote_viewer, room).await;

    ws_send(
        &mut host,
        json!({"v": 1, "type": "chat", "room": room, "text": "一切正常"}),
    )
    .await;
    assert_eq!(
        chat_text(&mut remote_viewer, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("一切正常")
    );
    assert_eq!(
        chat_text(&mut local_viewer, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("一切正常")
    );

    // Redis goes away: both nodes report it, and node A still serves its own people.
    redis.stop();
    wait_for_status(&a.base, "degraded").await;
    wait_for_status(&b.base, "degraded").await;
    let metrics = reqwest::get(format!("{}/metrics", a.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("livecamp_bus_connected 0"), "{metrics}");
    ws_send(
        &mut host,
        json!({"v": 1, "type": "chat", "room": room, "text": "Redis 不在也能看到"}),
    )
    .await;
    assert_eq!(
        chat_text(&mut local_viewer, Duration::from_secs(10))
            .await
            .as_deref(),
        Some("Redis 不在也能看到")
    );

    // Redis is back: the room spans both nodes again.
    let _redis = PrivateRedis::start(port);
    wait_for_status(&a.base, "ok").await;
    wait_for_status(&b.base, "ok").await;
    ws_send(
        &mut host,
        json!({"v": 1, "type": "chat", "room": room, "text": "恢复了"}),
    )
    .await;
    let mut seen = None;
    for _ in 0..5 {
        match chat_text(&mut remote_viewer, Duration::from_secs(5)).await {
            Some(text) if text == "恢复了" => {
                seen = Some(text);
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    assert_eq!(seen.as_deref(), Some("恢复了"));
}
