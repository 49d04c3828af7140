//! Rooms with several publishers and simulcast, with in-process WebRTC peers
//! (tests/common/rtc_peer.rs): each player gets the layer that fits; a new player starts on the
//! publisher's kept keyframe; a live class's stage (instructor main, trainees invited as
//! guests); a proctoring room's wall (examinees publish, supervisors play, examinees may not).

mod common;

use std::time::{Duration, Instant};

use common::rtc_peer::{
    PublishOptions, Publisher, Subscriber, VideoCodec, media_stats, wait_media_stats, wait_until,
};
use common::{Backend, TestApp, assert_error, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

backend_tests!(
    each_player_gets_the_simulcast_layer_that_fits,
    a_new_player_starts_on_the_kept_keyframe,
    the_stage_of_a_live_class,
    a_proctoring_wall,
);

/// Long enough for a connection and a keyframe on a busy machine.
const WAIT: Duration = Duration::from_secs(10);

async fn create_room(app: &TestApp, token: &str, kind: &str) -> i64 {
    let class = app.get(token, "/api/v1/classes").await.1[0]["id"]
        .as_i64()
        .expect("a class");
    let (status, room) = app
        .send(
            Method::POST,
            token,
            "/api/v1/rooms",
            json!({"class_id": class, "kind": kind, "title": "多人推流测试"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{room}");
    room["id"].as_i64().expect("room id")
}

async fn account_id(app: &TestApp, token: &str) -> i64 {
    app.get(token, "/api/v1/me").await.1["id"]
        .as_i64()
        .expect("an account id")
}

async fn stats(app: &TestApp, admin: &str) -> Value {
    media_stats(app, admin).await
}

/// Polls the media stats until `done` holds.
async fn wait_stats(
    app: &TestApp,
    admin: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_media_stats(app, admin, what, WAIT, done).await
}

/// Plays `query` once its publisher's tracks are open (the session exists a moment before its
/// first packets come: 409 `not_publishing` until then).
async fn play_when_publishing(app: &TestApp, token: &str, room: i64, query: &str) -> Subscriber {
    let deadline = Instant::now() + WAIT;
    loop {
        match Subscriber::try_whep(app, token, room, query).await {
            Ok(subscriber) => return subscriber,
            Err((status, body)) => {
                assert_eq!(status, StatusCode::CONFLICT, "{body}");
                assert!(Instant::now() < deadline, "never published: {body}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Simulcast with three layers of clearly different bitrates (1, 3 and 6 packets a frame).
fn three_layers() -> PublishOptions {
    PublishOptions {
        simulcast: Some(vec!["q", "h", "f"]),
        layer_packets: Some(vec![1, 3, 6]),
        ..Default::default()
    }
}

/// The layers (by the publisher's index) of the last `n` video packets a player got.
fn last_layers(subscriber: &Subscriber, n: usize) -> Vec<Option<u8>> {
    let video = subscriber.state().video;
    video.iter().rev().take(n).map(|p| p.layer).collect()
}

async fn each_player_gets_the_simulcast_layer_that_fits(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("admin").await;
    let host = app.token("trainee01").await;
    let room = create_room(&app, &host, "live_commerce").await;
    let publisher = Publisher::whip(&app, &host, room, three_layers()).await;
    wait_stats(&app, &admin, "the publisher", |s| {
        s["received_rtp"].as_u64() > Some(100)
    })
    .await;
    let viewer = app.token("trainee02").await;
    let low = Subscriber::whep(&app, &viewer, room, "?layer=low").await;
    let medium = Subscriber::whep(&app, &viewer, room, "?layer=medium").await;
    let high = Subscriber::whep(&app, &viewer, room, "").await;
    for (subscriber, layer) in [(&low, 0u8), (&medium, 1), (&high, 2)] {
        wait_until("60 packets of the layer", WAIT, || {
            let got = subscriber.state();
            got.first_keyframe_at.is_some()
                && got.video.iter().filter(|p| p.layer == Some(layer)).count() >= 60
        })
        .await;
        let got = subscriber.state();
        // Only that layer, from a keyframe on, with no gap in the numbers it saw.
        assert!(
            got.video.iter().all(|p| p.layer == Some(layer)),
            "want layer {layer}, got {:?}",
            got.video.iter().map(|p| p.layer).collect::<Vec<_>>()
        );
        assert!(got.video[0].keyframe, "the first packet starts a keyframe");
        let mut seqs: Vec<u16> = got.video.iter().map(|p| p.seq).collect();
        seqs.sort_by_key(|s| s.wrapping_sub(got.video[0].seq));
        seqs.dedup();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "a continuous stream: {seqs:?}"
        );
    }
    // The publisher was asked for keyframes of the layers wanted, not every time.
    let sent = publisher.state();
    assert!(sent.plis().len() <= 4, "{:?}", sent.plis());
    assert!(!last_layers(&high, 10).is_empty());
}

async fn a_new_player_starts_on_the_kept_keyframe(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("admin").await;
    let host = app.token("trainee01").await;
    let room = create_room(&app, &host, "live_commerce").await;
    // Keyframes only when asked for (and the first one).
    let options = PublishOptions {
        keyframe_interval: 1_000_000,
        ..Default::default()
    };
    let publisher = Publisher::whip(&app, &host, room, options).await;
    wait_stats(&app, &admin, "the publisher", |s| {
        s["received_rtp"].as_u64() > Some(30)
    })
    .await;
    let viewer = app.token("trainee02").await;
    let first = Subscriber::whep(&app, &viewer, room, "").await;
    wait_until("the first player's keyframe", WAIT, || {
        first.state().first_keyframe_at.is_some()
    })
    .await;
    let plis = publisher.state().plis().len();
    // A second player a moment later: the keyframe the first one got is still kept and short,
    // so it is sent at once, with no new request to the publisher.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = Subscriber::whep(&app, &viewer, room, "").await;
    wait_until("the second player's keyframe", WAIT, || {
        second.state().first_keyframe_at.is_some()
    })
    .await;
    let got = second.state();
    let connected = got.connected_at.expect("connected");
    let keyframe = got.first_keyframe_at.expect("a keyframe");
    assert!(
        keyframe.saturating_duration_since(connected) < Duration::from_millis(150),
        "first keyframe {:?} after connecting",
        keyframe.saturating_duration_since(connected)
    );
    // It is the same keyframe the first player got, with the same numbers.
    let first_key = first
        .state()
        .video
        .iter()
        .find(|p| p.keyframe)
        .map(|p| p.seq);
    assert_eq!(
        got.video.iter().find(|p| p.keyframe).map(|p| p.seq),
        first_key
    );
    assert_eq!(
        publisher.state().plis().len(),
        plis,
        "no keyframe asked for"
    );
    let stats = stats(&app, &admin).await;
    assert!(stats["keyframe_bursts"].as_u64() >= Some(1), "{stats}");
}

async fn the_stage_of_a_live_class(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("admin").await;
    let instructor = app.token("instructor01").await;
    let other_instructor = app.token("instructor02").await;
    let trainee = app.token("trainee03").await;
    let classmate = app.token("trainee04").await;
    let trainee_id = account_id(&app, &trainee).await;
    let room = create_room(&app, &instructor, "live_class").await;
    let _main = Publisher::whip(&app, &instructor, room, PublishOptions::default()).await;
    // One main publisher at a time: the class's other instructor waits.
    let (status, body) = Publisher::try_whip(&app, &other_instructor, room, Default::default())
        .await
        .err()
        .expect("a second main publisher is refused");
    assert_error(status, &body, 409, "already_publishing");
    // A trainee publishes only once invited.
    let (status, body) = Publisher::try_whip(&app, &trainee, room, Default::default())
        .await
        .err()
        .expect("not on stage");
    assert_error(status, &body, 403, "forbidden");
    let stage = format!("/api/v1/rooms/{room}/stage");
    let (status, body) = app
        .send(
            Method::POST,
            &classmate,
            &stage,
            json!({"user": trainee_id}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = app
        .send(
            Method::POST,
            &instructor,
            &stage,
            json!({"user": trainee_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stage"][0]["id"], trainee_id);
    let (_, seen) = app.get(&classmate, &stage).await;
    assert_eq!(seen["stage"].as_array().map(Vec::len), Some(1), "{seen}");
    // The guest sends H.264 and the instructor VP8, so a player can tell whom it gets.
    let h264 = PublishOptions {
        codec: VideoCodec::H264,
        ..Default::default()
    };
    let guest = Publisher::whip(&app, &trainee, room, h264).await;
    wait_stats(&app, &admin, "two publishers", |s| s["publishers"] == 2).await;
    // The classmate plays the instructor by default and the guest by asking for them.
    let main_view = Subscriber::whep(&app, &classmate, room, "").await;
    let guest_view =
        play_when_publishing(&app, &classmate, room, &format!("?publisher={trainee_id}")).await;
    for view in [&main_view, &guest_view] {
        wait_until("video from each publisher", WAIT, || {
            view.state().first_keyframe_at.is_some() && view.state().video.len() >= 10
        })
        .await;
    }
    assert_eq!(main_view.state().video_codec.as_deref(), Some("video/VP8"));
    assert_eq!(
        guest_view.state().video_codec.as_deref(),
        Some("video/H264")
    );
    // The instructor takes the trainee off the stage: their media ends, the instructor's goes on.
    let (status, body) = app
        .send(
            Method::DELETE,
            &instructor,
            &format!("{stage}/{trainee_id}"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_stats(&app, &admin, "the guest's media to end", |s| {
        s["publishers"] == 1 && s["subscribers"] == 1
    })
    .await;
    let (status, body) = Publisher::try_whip(&app, &trainee, room, Default::default())
        .await
        .err()
        .expect("off the stage, no more publishing");
    assert_error(status, &body, 403, "forbidden");
    drop(guest);
    // Only the class's trainees can be invited.
    let admin_id = account_id(&app, &admin).await;
    let (status, body) = app
        .send(Method::POST, &instructor, &stage, json!({"user": admin_id}))
        .await;
    assert_error(status, &body, 400, "validation_failed");
    // An invitation lasts for one live: ending the live empties the stage.
    let mut host = app.go_live(&instructor, room).await;
    let (status, body) = app
        .send(
            Method::POST,
            &instructor,
            &stage,
            json!({"user": trainee_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    common::ws_send(&mut host, json!({"v": 1, "type": "end_live", "room": room})).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, seen) = app.get(&classmate, &stage).await;
        if seen["stage"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stage outlived the live: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_proctoring_wall(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("admin").await;
    let instructor = app.token("instructor01").await;
    let supervisor = app.token("supervisor01").await;
    let room = create_room(&app, &instructor, "proctoring").await;
    let examinees = [app.token("trainee05").await, app.token("trainee06").await];
    let mut publishers = Vec::new();
    for token in &examinees {
        publishers.push(Publisher::whip(&app, token, room, three_layers()).await);
    }
    wait_stats(&app, &admin, "two examinees", |s| s["publishers"] == 2).await;
    // Examinees may not watch the exam's pictures.
    let (status, body) = Subscriber::try_whep(&app, &examinees[0], room, "")
        .await
        .err()
        .expect("an examinee may not play");
    assert_error(status, &body, 403, "forbidden");
    // The supervisor's wall: each examinee at the lowest layer.
    let mut wall = Vec::new();
    for token in &examinees {
        let id = account_id(&app, token).await;
        wall.push(
            play_when_publishing(
                &app,
                &supervisor,
                room,
                &format!("?publisher={id}&layer=low"),
            )
            .await,
        );
    }
    for tile in &wall {
        wait_until("each tile's lowest layer", WAIT, || {
            let got = tile.state();
            got.first_keyframe_at.is_some() && got.video.len() >= 20
        })
        .await;
        assert!(
            tile.state().video.iter().all(|p| p.layer == Some(0)),
            "the wall takes the lowest layer"
        );
    }
    // A publisher that is not there: 409 with the reason.
    let (status, body) = Subscriber::try_whep(&app, &supervisor, room, "?publisher=999999")
        .await
        .err()
        .expect("nobody publishes as that user");
    assert_error(status, &body, 409, "not_publishing");
    // A bad layer name: 400.
    let (status, body) = Subscriber::try_whep(&app, &supervisor, room, "?layer=ultra")
        .await
        .err()
        .expect("an unknown layer");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
