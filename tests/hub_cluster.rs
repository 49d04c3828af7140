//! Several livecamp nodes sharing one room through Redis (each node in this process has its
//! own bus connections, hub and room task, as separate processes would).

mod common;

use std::time::Duration;

use common::{Backend, spawn_cluster, ws_send};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn until(socket: &mut common::WsSocket, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("expected frame within 10 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(text.as_str()).unwrap();
            if pred(&frame) {
                return frame;
            }
        }
    }
}

fn is_event(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |f| f["type"] == "event" && f["event"]["kind"] == kind
}

async fn a_room_spans_nodes(backend: Backend) {
    let nodes = spawn_cluster(backend, 2, &common::redis_url()).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let host_token = a.token("trainee01").await;
    let room = a.create_room(&host_token, "跨节点直播").await;

    let mut host = a.ws(&host_token).await;
    ws_send(&mut host, json!({"v": 1, "type": "join", "room": room})).await;
    until(&mut host, |f| f["type"] == "joined").await;
    let mut viewers = Vec::new();
    // trainee02 watches through node B, trainee03 through node A.
    for (user, node) in [("trainee02", b), ("trainee03", a)] {
        let token = node.token(user).await;
        let mut socket = node.ws(&token).await;
        ws_send(&mut socket, json!({"v": 1, "type": "join", "room": room})).await;
        until(&mut socket, |f| f["type"] == "joined").await;
        viewers.push(socket);
    }

    // The host on node A starts; the viewer on node B sees it, with the same seq as A's viewer.
    ws_send(
        &mut host,
        json!({"v": 1, "type": "start_live", "room": room}),
    )
    .await;
    let on_b = until(&mut viewers[0], is_event("live_started")).await;
    let on_a = until(&mut viewers[1], is_event("live_started")).await;
    assert_eq!(on_a["seq"], on_b["seq"]);

    // A chat from node B reaches the host on node A; numbering agrees everywhere.
    ws_send(
        &mut viewers[0],
        json!({"v": 1, "type": "chat", "room": room, "text": "B 节点的观众"}),
    )
    .await;
    let at_host = until(&mut host, is_event("chat")).await;
    let at_other = until(&mut viewers[1], is_event("chat")).await;
    assert_eq!(at_host["event"]["message"]["text"], "B 节点的观众");
    assert_eq!(at_host["seq"], at_other["seq"]);
    assert!(at_host["seq"].as_u64() > on_a["seq"].as_u64());

    // Likes on both nodes are summed exactly, and everyone sees the total.
    for _ in 0..20 {
        ws_send(
            &mut viewers[0],
            json!({"v": 1, "type": "like", "room": room, "count": 7}),
        )
        .await;
        ws_send(
            &mut viewers[1],
            json!({"v": 1, "type": "like", "room": room, "count": 3}),
        )
        .await;
    }
    until(&mut host, |f| f["type"] == "stats" && f["likes"] == 200).await;
    until(&mut viewers[0], |f| {
        f["type"] == "stats" && f["likes"] == 200
    })
    .await;

    // Viewers are counted over both nodes.
    until(&mut host, |f| f["type"] == "stats" && f["viewers"] == 2).await;

    // Moderation from A applies on B: the muted viewer on B is refused.
    // (a new login ends trainee02's first session, so it reconnects on B)
    let token = b.token("trainee02").await;
    let muted_id = b.get(&token, "/api/v1/me").await.1["id"].as_i64().unwrap();
    let mut again = b.ws(&token).await;
    ws_send(&mut again, json!({"v": 1, "type": "join", "room": room})).await;
    until(&mut again, |f| f["type"] == "joined").await;
    ws_send(
        &mut host,
        json!({"v": 1, "type": "mute", "room": room, "user": muted_id, "minutes": 5}),
    )
    .await;
    until(&mut again, is_event("user_muted")).await;
    ws_send(
        &mut again,
        json!({"v": 1, "id": 5, "type": "chat", "room": room, "text": "还能说吗"}),
    )
    .await;
    let error = until(&mut again, |f| f["type"] == "error").await;
    assert_eq!(error["code"], "muted");

    // The chat was stored once, by the node where it was sent.
    let store = signaling::store::RoomStore::new(a.state.db.clone());
    let mut stored = Vec::new();
    for _ in 0..50 {
        stored = store.messages(room).await.unwrap();
        if !stored.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored.len(), 1);
}

backend_tests!(a_room_spans_nodes);
