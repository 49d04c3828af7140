//! The live-room hub over real WebSockets: rooms API, live start/end, chat, likes, moderation,
//! resume after reconnect, session ends, and bad input.

mod common;

use std::time::Duration;

use common::{Backend, TestApp, assert_error, spawn_app};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Client {
    socket: Socket,
}

impl Client {
    async fn connect(app: &TestApp, token: &str) -> Client {
        let url = format!("{}/ws?token={token}", app.base.replace("http://", "ws://"));
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        let mut client = Client { socket };
        let welcome = client.next().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        client
    }

    async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    async fn raw(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    /// The next JSON frame (panics after 5 s or on close).
    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), self.socket.next())
                .await
                .expect("a frame within 5 s")
                .expect("socket open")
                .expect("frame");
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).expect("JSON frame");
                }
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Skips frames until one matches.
    async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let frame = self.next().await;
            if pred(&frame) {
                return frame;
            }
        }
        panic!("no matching frame in 200");
    }

    async fn event(&mut self, kind: &str) -> Value {
        self.until(|f| f["type"] == "event" && f["event"]["kind"] == kind)
            .await
    }

    /// Waits for the close frame and returns its code.
    async fn closed(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.socket.next())
                .await
                .expect("closes within 5 s")
            {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
                Some(Ok(Message::Close(None))) | None => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(_)) => return 1006,
            }
        }
    }
}

async fn class_id(app: &TestApp, token: &str) -> i64 {
    app.get(token, "/api/v1/classes").await.1[0]["id"]
        .as_i64()
        .unwrap()
}

async fn create_room(app: &TestApp, token: &str, kind: &str) -> (StatusCode, Value) {
    let class = class_id(app, token).await;
    app.send(
        Method::POST,
        token,
        "/api/v1/rooms",
        json!({"class_id": class, "kind": kind, "title": "春季新品直播"}),
    )
    .await
}

async fn rooms_api_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let trainee = app.token("trainee01").await;
    let (status, room) = create_room(&app, &trainee, "live_commerce").await;
    assert_eq!(status, StatusCode::CREATED, "{room}");
    assert_eq!(room["my_role"], "host");
    assert_eq!(room["status"], "idle");
    let (status, body) = create_room(&app, &trainee, "live_class").await;
    assert_error(status, &body, 403, "forbidden");
    let instructor = app.token("instructor01").await;
    let (status, class_room) = create_room(&app, &instructor, "live_class").await;
    assert_eq!(status, StatusCode::CREATED, "{class_room}");
    let (status, body) = app
        .send(
            Method::POST,
            &trainee,
            "/api/v1/rooms",
            json!({"class_id": 999, "kind": "live_commerce", "title": "x"}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app
        .send(
            Method::POST,
            &trainee,
            "/api/v1/rooms",
            json!({"class_id": 1, "kind": "karaoke", "title": "x"}),
        )
        .await;
    assert_error(status, &body, 422, "unprocessable_entity");
    let (status, body) = app
        .send(
            Method::POST,
            &trainee,
            "/api/v1/rooms",
            json!({"class_id": 1, "kind": "live_commerce", "title": "<script>"}),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");

    // Classmates see both rooms; as viewers.
    let classmate = app.token("trainee02").await;
    let (_, rooms) = app.get(&classmate, "/api/v1/rooms").await;
    assert_eq!(rooms.as_array().unwrap().len(), 2);
    assert!(
        rooms
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["my_role"] == "viewer")
    );
    let (_, live) = app.get(&classmate, "/api/v1/rooms?live=true").await;
    assert_eq!(live.as_array().unwrap().len(), 0);
    let (_, seen_by_instructor) = app
        .get(&instructor, &format!("/api/v1/rooms/{}", room["id"]))
        .await;
    assert_eq!(seen_by_instructor["my_role"], "instructor");
}

async fn live_chat_likes_and_moderation(backend: Backend) {
    let app = spawn_app(backend).await;
    let host_token = app.token("trainee01").await;
    let (_, room) = create_room(&app, &host_token, "live_commerce").await;
    let room_id = room["id"].as_i64().unwrap();
    let viewer_token = app.token("trainee02").await;

    let mut host = Client::connect(&app, &host_token).await;
    host.send(json!({"v": 1, "id": 1, "type": "join", "room": room_id}))
        .await;
    let joined = host.until(|f| f["type"] == "joined").await;
    assert_eq!(joined["role"], "host");
    assert_eq!(joined["state"]["live"], false);

    let mut viewer = Client::connect(&app, &viewer_token).await;
    viewer
        .send(json!({"v": 1, "type": "join", "room": room_id}))
        .await;
    let joined = viewer.until(|f| f["type"] == "joined").await;
    assert_eq!(joined["role"], "viewer");

    host.send(json!({"v": 1, "id": 2, "type": "start_live", "room": room_id}))
        .await;
    let started = viewer.event("live_started").await;
    assert_eq!(started["event"]["host"]["name"], "张伟");
    let (_, live) = app.get(&viewer_token, "/api/v1/rooms?live=true").await;
    assert_eq!(
        live.as_array().unwrap().len(),
        1,
        "the live status is stored"
    );

    viewer
        .send(json!({"v": 1, "id": 3, "type": "chat", "room": room_id, "text": "这个多少钱？"}))
        .await;
    let ack = viewer.until(|f| f["type"] == "ack").await;
    assert_eq!(ack["id"], 3);
    let chat = host.event("chat").await;
    assert_eq!(chat["event"]["message"]["text"], "这个多少钱？");
    let message_id = chat["event"]["message"]["id"].as_u64().unwrap();

    // Likes: batches from the viewer, the exact total reaches the host.
    for _ in 0..10 {
        viewer
            .send(json!({"v": 1, "type": "like", "room": room_id, "count": 37}))
            .await;
    }
    host.until(|f| f["type"] == "stats" && f["likes"] == 370)
        .await;

    // Moderation: pin, mute, and the muted viewer is refused.
    host.send(json!({"v": 1, "type": "pin_message", "room": room_id, "message": message_id}))
        .await;
    viewer.event("message_pinned").await;
    let viewer_id = app.get(&viewer_token, "/api/v1/me").await.1["id"]
        .as_i64()
        .unwrap();
    host.send(json!({"v": 1, "type": "mute", "room": room_id, "user": viewer_id, "minutes": 10}))
        .await;
    viewer.event("user_muted").await;
    viewer
        .send(json!({"v": 1, "id": 4, "type": "chat", "room": room_id, "text": "还能说吗"}))
        .await;
    let error = viewer.until(|f| f["type"] == "error").await;
    assert_eq!(error["code"], "muted");
    assert_eq!(error["id"], 4);
    // A viewer cannot moderate.
    viewer
        .send(json!({"v": 1, "id": 5, "type": "end_live", "room": room_id}))
        .await;
    assert_eq!(
        viewer.until(|f| f["type"] == "error").await["code"],
        "forbidden"
    );

    host.send(json!({"v": 1, "type": "end_live", "room": room_id}))
        .await;
    let ended = viewer.event("live_ended").await;
    assert_eq!(ended["event"]["likes"], 370);

    // The chat was stored for the report.
    let hub_store = signaling::store::RoomStore::new(app.state.db.clone());
    let mut stored = Vec::new();
    for _ in 0..50 {
        stored = hub_store.messages(room_id).await.unwrap();
        if !stored.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1, "这个多少钱？");
}

async fn reconnect_resumes_from_last_seq(backend: Backend) {
    let app = spawn_app(backend).await;
    let host_token = app.token("trainee01").await;
    let (_, room) = create_room(&app, &host_token, "live_commerce").await;
    let room_id = room["id"].as_i64().unwrap();
    let viewer_token = app.token("trainee03").await;

    let mut host = Client::connect(&app, &host_token).await;
    host.send(json!({"v": 1, "type": "join", "room": room_id}))
        .await;
    host.until(|f| f["type"] == "joined").await;
    let mut viewer = Client::connect(&app, &viewer_token).await;
    viewer
        .send(json!({"v": 1, "type": "join", "room": room_id}))
        .await;
    let joined = viewer.until(|f| f["type"] == "joined").await;
    let mut last_seq = joined["state"]["seq"].as_u64().unwrap();
    host.send(json!({"v": 1, "type": "chat", "room": room_id, "text": "第一条"}))
        .await;
    last_seq = viewer.event("chat").await["seq"]
        .as_u64()
        .unwrap()
        .max(last_seq);
    drop(viewer);

    for text in ["你断线时一", "你断线时二", "你断线时三"] {
        host.send(json!({"v": 1, "type": "chat", "room": room_id, "text": text}))
            .await;
        host.event("chat").await;
    }
    let mut viewer = Client::connect(&app, &viewer_token).await;
    viewer
        .send(json!({"v": 1, "type": "join", "room": room_id, "last_seq": last_seq}))
        .await;
    let resumed = viewer
        .until(|f| f["type"] == "resumed" || f["type"] == "resync")
        .await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    let mut texts = Vec::new();
    while texts.len() < 3 {
        let frame = viewer.next().await;
        if frame["type"] == "event" && frame["event"]["kind"] == "chat" {
            assert!(frame["seq"].as_u64().unwrap() > last_seq);
            texts.push(
                frame["event"]["message"]["text"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    assert_eq!(texts, ["你断线时一", "你断线时二", "你断线时三"]);

    // A seq the room never issued: an explicit resync with a snapshot.
    let mut other = Client::connect(&app, &app.token("trainee04").await).await;
    other
        .send(json!({"v": 1, "type": "join", "room": room_id, "last_seq": 5}))
        .await;
    let resync = other
        .until(|f| f["type"] == "resync" || f["type"] == "resumed")
        .await;
    assert_eq!(resync["type"], "resync");
    assert_eq!(resync["state"]["recent_chat"].as_array().unwrap().len(), 4);
}

async fn bad_input_gets_errors_and_the_socket_stays_usable(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token("trainee05").await;
    let mut client = Client::connect(&app, &token).await;
    client.raw("{not json").await;
    assert_eq!(client.next().await["code"], "invalid_message");
    client.raw(r#"{"v":1,"type":"explode"}"#).await;
    assert_eq!(client.next().await["code"], "invalid_message");
    client.raw(r#"{"v":9,"type":"ping"}"#).await;
    assert_eq!(client.next().await["code"], "unsupported_version");
    client
        .send(json!({"v": 1, "id": 9, "type": "chat", "room": 1, "text": "hi"}))
        .await;
    let error = client.next().await;
    assert_eq!(error["code"], "not_in_room");
    assert_eq!(error["id"], 9);
    client
        .send(json!({"v": 1, "id": 10, "type": "join", "room": 424242}))
        .await;
    assert_eq!(client.next().await["code"], "not_found");
    client.send(json!({"v": 1, "type": "ping"})).await;
    assert_eq!(client.next().await["type"], "pong");

    // A room of another class is not found, not forbidden.
    use sqlx::Row;
    let pool = app.state.db.pool();
    let other_class: i64 = sqlx::query("INSERT INTO classes (institution_id, code, name, edition, status, start_date, end_date, created_at) VALUES (1, 'X-1', '别的班', 'live', 'running', '2026-11-01', '2026-12-01', 0) RETURNING id")
        .fetch_one(pool).await.unwrap().try_get(0).unwrap();
    let other_room: i64 = sqlx::query("INSERT INTO rooms (class_id, kind, title, host_id, created_at) VALUES ($1, 'live_commerce', '别人的直播', 4, 0) RETURNING id")
        .bind(other_class).fetch_one(pool).await.unwrap().try_get(0).unwrap();
    client
        .send(json!({"v": 1, "type": "join", "room": other_room}))
        .await;
    assert_eq!(client.next().await["code"], "not_found");
    let (status, body) = app
        .get(&token, &format!("/api/v1/rooms/{other_room}"))
        .await;
    assert_error(status, &body, 404, "not_found");

    // An oversize frame closes the socket with 1009.
    client.raw(&"x".repeat(64 * 1024)).await;
    assert_eq!(client.closed().await, 1009);

    // No token, no socket.
    let url = format!("{}/ws", app.base.replace("http://", "ws://"));
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
    // A plain GET gets a JSON 400.
    let (status, body) = app.get(&token, "/ws").await;
    assert_error(status, &body, 400, "bad_request");
}

async fn a_new_login_closes_the_old_sessions_socket(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.token("trainee06").await;
    let mut client = Client::connect(&app, &first).await;
    client.send(json!({"v": 1, "type": "ping"})).await;
    assert_eq!(client.next().await["type"], "pong");
    app.token("trainee06").await;
    assert_eq!(
        client.closed().await,
        signaling::protocol::close::SESSION_ENDED
    );
}

async fn sensitive_words_apply_to_live_rooms(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("admin").await;
    let (status, words) = app
        .send(
            Method::PUT,
            &admin,
            "/api/v1/admin/sensitive-words",
            json!([{"word": "假货", "action": "mask"}, {"word": "加微信", "action": "block"}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{words}");
    assert_eq!(words.as_array().unwrap().len(), 2);
    let (status, body) = app
        .send(
            Method::PUT,
            &admin,
            "/api/v1/admin/sensitive-words",
            json!([{"word": "x", "action": "explode"}]),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");
    let trainee = app.token("trainee07").await;
    let (status, body) = app.get(&trainee, "/api/v1/admin/sensitive-words").await;
    assert_error(status, &body, 403, "forbidden");

    let (_, room) = create_room(&app, &trainee, "live_commerce").await;
    let room_id = room["id"].as_i64().unwrap();
    let mut host = Client::connect(&app, &trainee).await;
    host.send(json!({"v": 1, "type": "join", "room": room_id}))
        .await;
    host.until(|f| f["type"] == "joined").await;
    host.send(json!({"v": 1, "type": "chat", "room": room_id, "text": "绝不卖假货"}))
        .await;
    assert_eq!(
        host.event("chat").await["event"]["message"]["text"],
        "绝不卖＊＊"
    );
    host.send(json!({"v": 1, "id": 2, "type": "chat", "room": room_id, "text": "加微信优惠"}))
        .await;
    assert_eq!(
        host.until(|f| f["type"] == "error").await["code"],
        "word_blocked"
    );
}

async fn counters_survive_a_graceful_restart(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let host_token = app.token("trainee01").await;
    let (_, room) = create_room(&app, &host_token, "live_commerce").await;
    let room_id = room["id"].as_i64().unwrap();
    let mut host = Client::connect(&app, &host_token).await;
    host.send(json!({"v": 1, "type": "join", "room": room_id}))
        .await;
    host.until(|f| f["type"] == "joined").await;
    let mut viewer = Client::connect(&app, &app.token("trainee02").await).await;
    viewer
        .send(json!({"v": 1, "type": "join", "room": room_id}))
        .await;
    viewer.until(|f| f["type"] == "joined").await;
    host.send(json!({"v": 1, "type": "start_live", "room": room_id}))
        .await;
    for _ in 0..7 {
        viewer
            .send(json!({"v": 1, "type": "like", "room": room_id, "count": 1}))
            .await;
    }
    host.until(|f| f["type"] == "stats" && f["likes"] == 7)
        .await;
    app.stop().await;
    assert_eq!(host.closed().await, signaling::protocol::close::GOING_AWAY);
    // The server closed its pool on the way down; read with a fresh one.
    let db = foundation::db::Db::connect(&app.state.config.database_url(), 2)
        .await
        .unwrap();
    let record = signaling::store::RoomStore::new(db)
        .get(room_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.likes, 7, "likes saved on shutdown");
    assert_eq!(record.peak_viewers, 1);
    assert_eq!(record.status, "live");
}

async fn clean_close_is_answered(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = Client::connect(&app, &app.token("trainee08").await).await;
    client.socket.close(None).await.unwrap();
    // The server answers the close frame: the stream ends cleanly, not with an error.
    let end = tokio::time::timeout(Duration::from_secs(5), client.socket.next())
        .await
        .unwrap();
    assert!(matches!(end, None | Some(Ok(Message::Close(_)))), "{end:?}");
}

backend_tests!(
    counters_survive_a_graceful_restart,
    clean_close_is_answered,
    rooms_api_rules,
    live_chat_likes_and_moderation,
    reconnect_resumes_from_last_seq,
    bad_input_gets_errors_and_the_socket_stays_usable,
    a_new_login_closes_the_old_sessions_socket,
    sensitive_words_apply_to_live_rooms,
);
