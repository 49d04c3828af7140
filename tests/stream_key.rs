//! Stream keys for OBS Studio (`/api/v1/rooms/{id}/stream-key`, docs/media.md "OBS Studio"):
//! created, rotated and revoked by whoever may publish in the room; a key publishes by WHIP into
//! its own room only, as its creator (re-checked on every use), survives a new login of the host,
//! and opens nothing else — no API, no WHEP, no WebSocket.
//!
//! An offer that is valid SDP but has no media gets `400 invalid_sdp` from the media endpoint,
//! after authentication and authorisation: that answer proves a key got through; a refused key
//! is `401 invalid_stream_key` before the offer is looked at.

mod common;

use common::{Backend, TestApp, assert_error, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::Digest;
use sqlx::Row;

/// Valid SDP without any media section.
const NO_MEDIA: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n";

async fn whip(app: &TestApp, room: i64, bearer: &str, body: &str) -> (StatusCode, Value) {
    let response = common::api()
        .post(app.url(&format!("/whip/{room}")))
        .bearer_auth(bearer)
        .header("content-type", "application/sdp")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn request(app: &TestApp, method: Method, bearer: &str, path: &str) -> (StatusCode, Value) {
    let response = common::api()
        .request(method, app.url(path))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates (or rotates) the key of `room` as `token`; returns the key.
async fn new_key(app: &TestApp, token: &str, room: i64) -> String {
    let (status, body) = request(
        app,
        Method::POST,
        token,
        &format!("/api/v1/rooms/{room}/stream-key"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["key"].as_str().expect("key").to_owned()
}

async fn account_id(app: &TestApp, token: &str) -> i64 {
    app.get(token, "/api/v1/me").await.1["id"]
        .as_i64()
        .expect("account id")
}

/// Asserts that `key` authenticates a WHIP offer to `room` (which then fails on the SDP).
async fn assert_key_publishes(app: &TestApp, room: i64, key: &str) {
    let (status, body) = whip(app, room, key, NO_MEDIA).await;
    assert_error(status, &body, 400, "invalid_sdp");
}

async fn assert_key_refused(app: &TestApp, room: i64, key: &str) {
    let (status, body) = whip(app, room, key, NO_MEDIA).await;
    assert_error(status, &body, 401, "invalid_stream_key");
}

async fn create_rotate_and_revoke(backend: Backend) {
    let app = spawn_app(backend).await;
    let host = app.token("trainee01").await;
    let room = app.create_room(&host, "OBS 推流").await;
    let path = format!("/api/v1/rooms/{room}/stream-key");

    let (status, view) = app.get(&host, &path).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["active"], false, "{view}");
    assert_eq!(view["whip_url"], format!("/whip/{room}"));

    let (status, created) = request(&app, Method::POST, &host, &path).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with("lcsk_"), "{key}");
    assert_eq!(key.len(), 5 + 43, "256 random bits, URL-safe base64: {key}");
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{key}"
    );
    assert_eq!(created["bearer_token"], key.as_str());
    assert_eq!(created["whip_url"], format!("/whip/{room}"));

    // Only the hash is stored; the view never shows the key.
    let stored: String = sqlx::query("SELECT key_hash FROM stream_keys WHERE room_id = $1")
        .bind(room)
        .fetch_one(app.state.db.pool())
        .await
        .expect("stored key")
        .try_get(0)
        .expect("key_hash");
    assert_eq!(stored, hex::encode(sha2::Sha256::digest(key.as_bytes())));
    let (status, view) = app.get(&host, &path).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["active"], true, "{view}");
    assert_eq!(view["created_by"]["id"], account_id(&app, &host).await);
    assert!(view["created_at"].is_string(), "{view}");
    assert!(view["last_used_at"].is_null(), "{view}");
    assert!(!view.to_string().contains(&key[5..]), "{view}");

    // The key publishes, and its use is noted.
    assert_key_publishes(&app, room, &key).await;
    let (_, view) = app.get(&host, &path).await;
    assert!(view["last_used_at"].is_string(), "{view}");

    // A new login of the host (which ends the old session) does not touch the key.
    let host = app.token("trainee01").await;
    assert_key_publishes(&app, room, &key).await;

    // Rotating: the old key stops working, the new one works; still one key per room.
    let rotated = new_key(&app, &host, room).await;
    assert_ne!(rotated, key);
    assert_key_refused(&app, room, &key).await;
    assert_key_publishes(&app, room, &rotated).await;
    assert_eq!(app.count("stream_keys").await, 1);
    let (_, view) = app.get(&host, &path).await;
    assert!(view["last_used_at"].is_string(), "{view}");

    // DELETE (OBS stopping) takes the key as well: an unknown session is 404, not 401.
    let (status, body) = request(
        &app,
        Method::DELETE,
        &rotated,
        &format!("/whip/{room}/no-such-session"),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = request(
        &app,
        Method::DELETE,
        &key,
        &format!("/whip/{room}/no-such-session"),
    )
    .await;
    assert_error(status, &body, 401, "invalid_stream_key");

    // Revoking.
    let (status, _) = request(&app, Method::DELETE, &host, &path).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_key_refused(&app, room, &rotated).await;
    let (_, view) = app.get(&host, &path).await;
    assert_eq!(view["active"], false, "{view}");
    assert!(view["created_at"].is_null(), "{view}");
    // Revoking again is harmless.
    let (status, _) = request(&app, Method::DELETE, &host, &path).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Every creation and the revocation are in the audit log.
    let audited: i64 = sqlx::query(
        "SELECT COUNT(*) FROM audit_log WHERE action IN ('stream_key_created', 'stream_key_revoked') AND target = $1",
    )
    .bind(format!("room:{room}"))
    .fetch_one(app.state.db.pool())
    .await
    .expect("audit count")
    .try_get(0)
    .expect("count");
    assert_eq!(audited, 3);
}

async fn only_publishers_manage_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let host = app.token("trainee01").await;
    let classmate = app.token("trainee02").await;
    let instructor = app.token("instructor01").await;
    let room = app.create_room(&host, "带货直播").await;
    let path = format!("/api/v1/rooms/{room}/stream-key");
    let key = new_key(&app, &host, room).await;

    // A classmate may enter the room but not publish: 403, whatever the method.
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let (status, body) = request(&app, method.clone(), &classmate, &path).await;
        assert_error(status, &body, 403, "forbidden");
    }
    // So is the class's instructor in a live-commerce room (only live classes are theirs).
    let (status, body) = request(&app, Method::POST, &instructor, &path).await;
    assert_error(status, &body, 403, "forbidden");
    // The host's key still works: nobody replaced or revoked it.
    assert_key_publishes(&app, room, &key).await;

    // Someone who may not enter the room gets 404, like for the room itself.
    let pool = app.state.db.pool();
    let other_class: i64 = sqlx::query(
        "INSERT INTO classes (institution_id, code, name, edition, status, start_date, end_date, created_at) \
         VALUES (1, 'X-1', '别的班', 'live', 'running', '2026-11-01', '2026-12-01', 0) RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("other class")
    .try_get(0)
    .expect("id");
    let other_room: i64 = sqlx::query(
        "INSERT INTO rooms (class_id, kind, title, host_id, created_at) VALUES ($1, 'live_commerce', '别人的直播', $2, 0) RETURNING id",
    )
    .bind(other_class)
    .bind(account_id(&app, &instructor).await)
    .fetch_one(pool)
    .await
    .expect("other room")
    .try_get(0)
    .expect("id");
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let (status, body) = request(
            &app,
            method,
            &classmate,
            &format!("/api/v1/rooms/{other_room}/stream-key"),
        )
        .await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) =
        request(&app, Method::POST, &host, "/api/v1/rooms/999999/stream-key").await;
    assert_error(status, &body, 404, "not_found");
    // Without a session: 401.
    let response = common::api()
        .post(app.url(&path))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn instructors_of_a_live_class_and_the_recheck(backend: Backend) {
    let app = spawn_app(backend).await;
    let trainee = app.token("trainee03").await;
    let instructor = app.token("instructor01").await;
    let class = app.get(&trainee, "/api/v1/classes").await.1[0]["id"]
        .as_i64()
        .expect("a class");
    // A live class hosted by a trainee of the class: the class's instructor may publish too.
    let room: i64 = sqlx::query(
        "INSERT INTO rooms (class_id, kind, title, host_id, created_at) VALUES ($1, 'live_class', '直播授课', $2, 0) RETURNING id",
    )
    .bind(class)
    .bind(account_id(&app, &trainee).await)
    .fetch_one(app.state.db.pool())
    .await
    .expect("room")
    .try_get(0)
    .expect("id");
    let key = new_key(&app, &instructor, room).await;
    let (_, view) = app
        .get(&trainee, &format!("/api/v1/rooms/{room}/stream-key"))
        .await;
    assert_eq!(
        view["created_by"]["id"],
        account_id(&app, &instructor).await,
        "{view}"
    );
    assert_key_publishes(&app, room, &key).await;

    // The key publishes as its creator, checked at every use: once the instructor no longer
    // teaches the class, it opens nothing (the room is not even visible to them any more).
    sqlx::query("DELETE FROM class_instructors WHERE class_id = $1 AND account_id = $2")
        .bind(class)
        .bind(account_id(&app, &instructor).await)
        .execute(app.state.db.pool())
        .await
        .expect("remove the instructor");
    let (status, body) = whip(&app, room, &key, NO_MEDIA).await;
    assert!(
        status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
        "{status} {body}"
    );
}

async fn a_key_is_no_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let host = app.token("trainee04").await;
    let room = app.create_room(&host, "OBS").await;
    let key = new_key(&app, &host, room).await;

    // Not the API: a clear 401, not a 500.
    for path in [
        "/api/v1/me".to_owned(),
        format!("/api/v1/rooms/{room}"),
        format!("/api/v1/rooms/{room}/stream-key"),
        format!("/api/v1/rooms/{room}/replays"),
    ] {
        let (status, body) = app.get(&key, &path).await;
        assert_error(status, &body, 401, "unauthenticated");
    }
    let (status, body) = request(
        &app,
        Method::POST,
        &key,
        &format!("/api/v1/rooms/{room}/stream-key"),
    )
    .await;
    assert_error(status, &body, 401, "unauthenticated");
    // Not WHEP.
    let response = common::api()
        .post(app.url(&format!("/whep/{room}")))
        .bearer_auth(&key)
        .header("content-type", "application/sdp")
        .body("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Not the hub's WebSocket.
    let url = format!("{}/ws?token={key}", app.base.replace("http://", "ws://"));
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
    // And the key still publishes.
    assert_key_publishes(&app, room, &key).await;

    // The routes are in the OpenAPI document.
    let (_, doc) = app.get(&host, "/api/openapi.json").await;
    let item = &doc["paths"]["/api/v1/rooms/{id}/stream-key"];
    for method in ["get", "post", "delete"] {
        assert!(item[method].is_object(), "{method} missing: {item}");
    }
}

async fn a_key_publishes_into_its_own_room_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let host = app.token("trainee05").await;
    let room_a = app.create_room(&host, "直播间 A").await;
    let room_b = app.create_room(&host, "直播间 B").await;
    let key_a = new_key(&app, &host, room_a).await;
    assert_key_refused(&app, room_b, &key_a).await;
    assert_key_publishes(&app, room_a, &key_a).await;
    // A key for B does not replace A's.
    let key_b = new_key(&app, &host, room_b).await;
    assert_key_publishes(&app, room_a, &key_a).await;
    assert_key_publishes(&app, room_b, &key_b).await;
    assert_key_refused(&app, room_a, &key_b).await;
    assert_key_refused(&app, 999_999, &key_a).await;
}

async fn a_wrong_key_is_refused_before_the_offer(backend: Backend) {
    let app = spawn_app(backend).await;
    let host = app.token("trainee07").await;
    let room = app.create_room(&host, "OBS").await;
    let key = new_key(&app, &host, room).await;
    // Wrong keys of every shape: 401 with the Chinese message, whatever the body.
    let mut forged = key.clone();
    forged.replace_range(10..11, if &key[10..11] == "A" { "B" } else { "A" });
    for wrong in [forged.as_str(), "lcsk_", "lcsk_short", &format!("{key}x")] {
        let (status, body) = whip(&app, room, wrong, "not sdp at all").await;
        assert_error(status, &body, 401, "invalid_stream_key");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("推流密钥")),
            "{body}"
        );
        let response = common::api()
            .post(app.url(&format!("/whip/{room}")))
            .bearer_auth(wrong)
            .header("content-type", "text/plain")
            .body("v=0\r\n")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{wrong}");
    }
    // The right key with a bad content type gets past authentication to the body checks.
    let response = common::api()
        .post(app.url(&format!("/whip/{room}")))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body("v=0\r\n")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Sessions still publish as before: the host's token reaches the SDP check, a classmate's
    // is forbidden.
    assert_key_publishes(&app, room, &host).await;
    let classmate = app.token("trainee08").await;
    let (status, body) = whip(&app, room, &classmate, NO_MEDIA).await;
    assert_error(status, &body, 403, "forbidden");
}

backend_tests!(
    create_rotate_and_revoke,
    only_publishers_manage_keys,
    instructors_of_a_live_class_and_the_recheck,
    a_key_is_no_session,
    a_key_publishes_into_its_own_room_only,
    a_wrong_key_is_refused_before_the_offer,
);
