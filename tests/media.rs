//! The media endpoint with in-process WebRTC peers (tests/common/rtc_peer.rs): publish by WHIP
//! and play by WHEP over real UDP, DTLS and SRTP; retransmissions from the shared NACK buffer;
//! keyframe requests coalesced; H.264 and simulcast publishers; bad offers leave nothing behind.

mod common;

use std::time::{Duration, Instant};

use common::rtc_peer::{
    PublishOptions, Publisher, Subscriber, VideoCodec, VideoPacket, eventually, media_stats,
    post_sdp, wait_media_stats, wait_until,
};
use common::{Backend, TestApp, assert_error, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;

backend_tests!(
    publish_and_play_then_the_publisher_leaves,
    nacks_are_answered_from_the_retransmission_buffer,
    keyframe_requests_reach_the_publisher_at_most_once_a_second,
    h264_is_forwarded_as_h264,
    simulcast_layers_are_chosen_by_the_player,
    bad_offers_are_refused_and_leave_nothing_behind,
);

/// Long enough for a connection and a keyframe on a busy machine.
const WAIT: Duration = Duration::from_secs(10);
/// For an answer to a request of ours on a connected session (a retransmission, a keyframe).
const ANSWER: Duration = Duration::from_secs(3);
/// Video packets per frame where the test counts them.
const PACKETS: usize = 10;

/// Keyframes only when asked for (and the first one).
fn on_request_only(options: PublishOptions) -> PublishOptions {
    PublishOptions {
        keyframe_interval: 1_000_000,
        ..options
    }
}

/// A fresh server and a live-commerce room of trainee01's; tokens of the host and of the
/// platform administrator (`/api/v1/media/stats`).
struct Room {
    app: TestApp,
    admin: String,
    host: String,
    room: i64,
}

async fn room(backend: Backend) -> Room {
    let app = spawn_app(backend).await;
    let host = app.token("trainee01").await;
    let admin = app.token("admin").await;
    let room = app.create_room(&host, "媒体测试直播").await;
    Room {
        app,
        admin,
        host,
        room,
    }
}

async fn stats(app: &TestApp, admin: &str) -> Value {
    media_stats(app, admin).await
}

fn counter(stats: &Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("stats without {name}: {stats}"))
}

/// Polls the stats until `done` holds; returns them.
async fn wait_stats(
    app: &TestApp,
    admin: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_media_stats(app, admin, what, WAIT, done).await
}

/// The server's sessions are exactly these.
async fn assert_sessions(app: &TestApp, admin: &str, publishers: u64, subscribers: u64) {
    let stats = stats(app, admin).await;
    assert_eq!(counter(&stats, "publishers"), publishers, "{stats}");
    assert_eq!(counter(&stats, "subscribers"), subscribers, "{stats}");
}

/// Waits until the server forwards the publisher's tracks (WHEP answers 409 before that): both
/// kinds start with the first packets, so a few dozen received packets mean both are open.
async fn wait_publishing(app: &TestApp, admin: &str) {
    wait_stats(app, admin, "received the publisher's media", |s| {
        counter(s, "received_rtp") >= 20
    })
    .await;
}

async fn publish_and_play_then_the_publisher_leaves(backend: Backend) {
    let Room {
        app,
        admin,
        host,
        room,
    } = room(backend).await;
    assert_sessions(&app, &admin, 0, 0).await;
    let options = on_request_only(PublishOptions {
        packets_per_frame: PACKETS,
        ..Default::default()
    });
    let publisher = Publisher::whip(&app, &host, room, options).await;
    wait_publishing(&app, &admin).await;
    // Too long since the first keyframe for the server to start anyone on it (it keeps 256
    // packets at most): the players' keyframe has to be asked for.
    wait_until("300 video packets sent", WAIT, || {
        publisher.state().layers[0].packets >= 300
    })
    .await;
    let mut subscribers = Vec::new();
    for viewer in ["trainee02", "trainee03"] {
        let token = app.token(viewer).await;
        subscribers.push(Subscriber::whep(&app, &token, room, "").await);
    }
    wait_until(
        "both subscribers get audio, video and a keyframe",
        WAIT,
        || {
            subscribers.iter().all(|s| {
                let got = s.state();
                got.audio_packets >= 10 && got.video.len() >= 30 && got.first_keyframe_at.is_some()
            })
        },
    )
    .await;
    assert_sessions(&app, &admin, 1, 2).await;

    for subscriber in &subscribers {
        let got = subscriber.state();
        assert_eq!(got.video_codec.as_deref(), Some("video/VP8"));
        // Keyframes come only when asked for: this one was, for the subscriber's join.
        let connected = got.connected_at.expect("connected");
        let keyframe = got.first_keyframe_at.expect("a keyframe");
        assert!(
            keyframe.duration_since(connected) < Duration::from_secs(3),
            "the first keyframe came {:?} after connecting",
            keyframe.duration_since(connected)
        );
        // From the keyframe on, every packet in order, none lost, frames complete (the marker
        // on the last packet), all of the one layer.
        let from = got
            .video
            .iter()
            .position(|p| p.keyframe)
            .expect("the keyframe is recorded");
        let video = &got.video[from..];
        for pair in video.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq.wrapping_add(1), "a gap: {pair:?}");
        }
        for (i, packet) in video.iter().enumerate() {
            assert_eq!(
                packet.marker,
                i % PACKETS == PACKETS - 1,
                "frame ends: {packet:?}"
            );
            assert_eq!(packet.layer, Some(0), "{packet:?}");
        }
    }
    // Two joins asking for a keyframe: one request, or two a second apart; a keyframe for each.
    let sent = publisher.state();
    let plis = sent.plis();
    assert!((1..=2).contains(&plis.len()), "{plis:?}");
    assert_eq!(sent.layers[0].keyframes, 1 + plis.len() as u64);
    let first_keyframe = subscribers
        .iter()
        .filter_map(|s| s.state().first_keyframe_at)
        .min()
        .expect("keyframes");
    assert!(
        plis[0] < first_keyframe,
        "the keyframe answered the request"
    );

    assert_eq!(publisher.stop().await, StatusCode::OK);
    wait_stats(&app, &admin, "every session closed", |s| {
        counter(s, "publishers") == 0 && counter(s, "subscribers") == 0
    })
    .await;
    for subscriber in subscribers {
        // The server closed their sessions with the publisher's.
        assert_eq!(subscriber.stop().await, StatusCode::NOT_FOUND);
    }
    let viewer = app.token("trainee04").await;
    let (status, body) = Subscriber::try_whep(&app, &viewer, room, "")
        .await
        .err()
        .expect("nobody publishes any more");
    assert_error(status, &body, 409, "not_publishing");
}

async fn nacks_are_answered_from_the_retransmission_buffer(backend: Backend) {
    let Room {
        app,
        admin,
        host,
        room,
    } = room(backend).await;
    let options = PublishOptions {
        audio: false,
        ..Default::default()
    };
    let _publisher = Publisher::whip(&app, &host, room, options).await;
    wait_publishing(&app, &admin).await;
    let viewer = app.token("trainee02").await;
    let subscriber = Subscriber::whep(&app, &viewer, room, "").await;
    wait_until("30 video packets", WAIT, || {
        subscriber.state().video.len() >= 30
    })
    .await;

    // A packet it has: sent again (the copy reaches the socket; SRTP's replay check drops it).
    let got = subscriber.state();
    let seq = got.video[got.video.len() - 10].seq;
    assert_eq!(got.video_arrivals(seq), 1);
    let before = counter(&stats(&app, &admin).await, "retransmitted_rtp");
    subscriber.send_nack(vec![seq]);
    let again = eventually(ANSWER, || subscriber.state().video_arrivals(seq) == 2).await;
    let after = counter(&stats(&app, &admin).await, "retransmitted_rtp");
    assert!(
        again && after == before + 1,
        "a NACK of {seq}: copy received {again}, retransmitted_rtp {before} → {after}"
    );

    // Packets lost on the way come back whole: they decrypt, and are of the one layer.
    subscriber.lose_next_video(3);
    wait_until("3 packets lost", WAIT, || {
        subscriber.state().lost.len() == 3
    })
    .await;
    let lost = subscriber.state().lost;
    assert!(lost.iter().all(|&seq| !subscriber.state().has_video(seq)));
    subscriber.send_nack(lost.clone());
    wait_until("the lost packets retransmitted", ANSWER, || {
        let got = subscriber.state();
        lost.iter().all(|&seq| got.has_video(seq))
    })
    .await;
    let got = subscriber.state();
    for packet in got.video.iter().filter(|p| lost.contains(&p.seq)) {
        assert_eq!(packet.layer, Some(0), "{packet:?}");
    }
    assert_eq!(
        counter(&stats(&app, &admin).await, "retransmitted_rtp"),
        before + 4
    );
}

async fn keyframe_requests_reach_the_publisher_at_most_once_a_second(backend: Backend) {
    let Room {
        app,
        admin,
        host,
        room,
    } = room(backend).await;
    let options = on_request_only(PublishOptions {
        audio: false,
        ..Default::default()
    });
    let publisher = Publisher::whip(&app, &host, room, options).await;
    wait_publishing(&app, &admin).await;
    let mut subscribers = Vec::new();
    for n in 2..=6 {
        let token = app.token(&format!("trainee{n:02}")).await;
        subscribers.push(Subscriber::whep(&app, &token, room, "").await);
    }
    wait_until("every subscriber gets a keyframe", WAIT, || {
        subscribers
            .iter()
            .all(|s| s.state().first_keyframe_at.is_some())
    })
    .await;
    // The joins' requests are done with: no request for 1.5 s, so the next goes out at once.
    wait_until("a quiet second", WAIT, || {
        publisher
            .state()
            .plis()
            .last()
            .is_none_or(|at| at.elapsed() > Duration::from_millis(1500))
    })
    .await;

    let burst = Instant::now();
    let second = burst + Duration::from_secs(1);
    for subscriber in &subscribers {
        subscriber.send_pli();
    }
    // A second round inside the same second.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for subscriber in &subscribers {
        subscriber.send_pli();
    }
    tokio::time::sleep_until(second.into()).await;
    let plis = publisher.state().plis();
    let in_second = plis
        .iter()
        .filter(|&&at| at >= burst && at < second)
        .count();
    assert!(
        (1..=2).contains(&in_second),
        "10 requests from 5 subscribers in a second: the publisher got {in_second} PLIs; {}",
        stats(&app, &admin).await
    );
    // The keyframe they asked for reaches all five.
    wait_until(
        "a keyframe after the requests, for everyone",
        ANSWER,
        || {
            subscribers
                .iter()
                .all(|s| s.state().keyframes_since(burst) >= 1)
        },
    )
    .await;
}

async fn h264_is_forwarded_as_h264(backend: Backend) {
    let Room {
        app,
        admin,
        host,
        room,
    } = room(backend).await;
    let options = PublishOptions {
        codec: VideoCodec::H264,
        ..Default::default()
    };
    let _publisher = Publisher::whip(&app, &host, room, options).await;
    wait_publishing(&app, &admin).await;
    let viewer = app.token("trainee02").await;
    let subscriber = Subscriber::whep(&app, &viewer, room, "").await;
    wait_until("H.264 video with a keyframe and audio", WAIT, || {
        let got = subscriber.state();
        got.first_keyframe_at.is_some() && got.video.len() >= 30 && got.audio_packets >= 10
    })
    .await;
    let got = subscriber.state();
    assert_eq!(got.video_codec.as_deref(), Some("video/H264"));
    // Frame by frame (packets of one timestamp) from the first keyframe on, the last frame
    // only when complete: a keyframe is SPS, PPS, then the IDR slice in FU-A fragments;
    // other frames a non-IDR slice in FU-A fragments; the marker on a frame's last packet.
    let key = got
        .video
        .iter()
        .position(|p| p.keyframe)
        .expect("the keyframe is recorded");
    let mut frames: Vec<&[VideoPacket]> = got.video[key..]
        .chunk_by(|a, b| a.timestamp == b.timestamp)
        .collect();
    if frames
        .last()
        .is_some_and(|f| !f.last().is_some_and(|p| p.marker))
    {
        frames.pop();
    }
    let idr = [(7, false), (8, false), (5, true), (5, true), (5, true)];
    let non_idr = [(1, true), (1, true), (1, true)];
    let mut inter_frames = 0;
    for frame in &frames {
        let units: Vec<(u8, bool)> = frame
            .iter()
            .map(|p| (p.nal.expect("an H.264 NAL unit"), p.fu_a))
            .collect();
        if frame[0].keyframe {
            assert_eq!(units, idr, "{frame:?}");
        } else {
            assert_eq!(units, non_idr, "{frame:?}");
            inter_frames += 1;
        }
        assert!(frame.iter().rev().skip(1).all(|p| !p.marker), "{frame:?}");
        assert!(frame.iter().all(|p| p.layer.is_none_or(|l| l == 0)));
    }
    assert!(inter_frames >= 5, "{frames:?}");
}

async fn simulcast_layers_are_chosen_by_the_player(backend: Backend) {
    let Room {
        app,
        admin,
        host,
        room,
    } = room(backend).await;
    let options = PublishOptions {
        simulcast: Some(vec!["q", "h", "f"]),
        ..Default::default()
    };
    let publisher = Publisher::whip(&app, &host, room, options).await;
    wait_publishing(&app, &admin).await;
    // (query, the layer expected): the best one by default.
    let wanted = [
        ("", 2),
        ("?layer=low", 0),
        ("?layer=medium", 1),
        ("?layer=high", 2),
    ];
    let mut subscribers = Vec::new();
    for (n, (query, layer)) in wanted.into_iter().enumerate() {
        let token = app.token(&format!("trainee{:02}", n + 2)).await;
        subscribers.push((
            Subscriber::whep(&app, &token, room, query).await,
            query,
            layer,
        ));
    }
    wait_until("a keyframe and 30 packets for every player", WAIT, || {
        subscribers.iter().all(|(s, _, _)| {
            let got = s.state();
            got.first_keyframe_at.is_some() && got.video.len() >= 30
        })
    })
    .await;
    let sent = publisher.state();
    assert_eq!(sent.layers.len(), 3);
    assert!(
        sent.layers
            .iter()
            .all(|l| l.frames > 0 && l.packets >= 3 * l.frames)
    );
    for (subscriber, query, layer) in &subscribers {
        // From its first keyframe on, one layer, not a mix: every body byte is its index.
        let got = subscriber.state();
        let from = got
            .video
            .iter()
            .position(|p| p.keyframe)
            .expect("a keyframe");
        let layers: Vec<Option<u8>> = got.video[from..].iter().map(|p| p.layer).collect();
        assert!(
            layers.iter().all(|l| *l == Some(*layer)),
            "{query:?} wants layer {layer}, got {layers:?}"
        );
    }
}

async fn bad_offers_are_refused_and_leave_nothing_behind(backend: Backend) {
    let Room {
        app,
        admin,
        host,
        room,
    } = room(backend).await;
    let viewer = app.token("trainee02").await;
    let whip = format!("/whip/{room}");
    let whep = format!("/whep/{room}");
    let no_media = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let malformed = "v=0\r\nthis is not SDP\r\nm=video\r\n";

    for (body, code) in [
        ("hello", "invalid_sdp"),
        (malformed, "invalid_sdp"),
        (no_media, "invalid_sdp"),
    ] {
        let (status, error) = post_sdp(&app, &host, &whip, body).await;
        assert_error(status, &error, 400, code);
        assert_sessions(&app, &admin, 0, 0).await;
    }
    let refused = |result: Result<Publisher, (StatusCode, Value)>| {
        result.err().expect("the offer is refused")
    };
    let (status, error) =
        refused(Publisher::try_whip(&app, "no-such-token", room, Default::default()).await);
    assert_error(status, &error, 401, "unauthenticated");
    assert_sessions(&app, &admin, 0, 0).await;
    let (status, error) =
        refused(Publisher::try_whip(&app, &viewer, room, Default::default()).await);
    assert_error(status, &error, 403, "forbidden");
    assert_sessions(&app, &admin, 0, 0).await;
    let other_room = room_of_another_class(&app).await;
    for room in [other_room, 424_242] {
        let (status, error) =
            refused(Publisher::try_whip(&app, &host, room, Default::default()).await);
        assert_error(status, &error, 404, "not_found");
        assert_sessions(&app, &admin, 0, 0).await;
    }
    let (status, error) = Subscriber::try_whep(&app, &viewer, room, "")
        .await
        .err()
        .expect("nobody publishes yet");
    assert_error(status, &error, 409, "not_publishing");
    assert_sessions(&app, &admin, 0, 0).await;

    // With a publisher: bad plays are refused, and leave its session alone.
    let _publisher = Publisher::whip(&app, &host, room, Default::default()).await;
    wait_publishing(&app, &admin).await;
    for body in [malformed, no_media] {
        let (status, error) = post_sdp(&app, &viewer, &whep, body).await;
        assert_error(status, &error, 400, "invalid_sdp");
        assert_sessions(&app, &admin, 1, 0).await;
    }
    let (status, error) = Subscriber::try_whep(&app, "no-such-token", room, "")
        .await
        .err()
        .expect("a bad token is refused");
    assert_error(status, &error, 401, "unauthenticated");
    assert_sessions(&app, &admin, 1, 0).await;
    let (status, error) = Subscriber::try_whep(&app, &viewer, other_room, "")
        .await
        .err()
        .expect("a room of another class is refused");
    assert_error(status, &error, 404, "not_found");
    assert_sessions(&app, &admin, 1, 0).await;
    // A viewer cannot publish over the host either.
    let (status, error) =
        refused(Publisher::try_whip(&app, &viewer, room, Default::default()).await);
    assert_error(status, &error, 403, "forbidden");
    assert_sessions(&app, &admin, 1, 0).await;
}

/// A room in a class trainee01 is not in (as tests/hub.rs makes one).
async fn room_of_another_class(app: &TestApp) -> i64 {
    use sqlx::Row;
    let pool = app.state.db.pool();
    let class: i64 = sqlx::query(
        "INSERT INTO classes (institution_id, code, name, edition, status, start_date, end_date, created_at) \
         VALUES (1, 'X-1', '别的班', 'live', 'running', '2026-11-01', '2026-12-01', 0) RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("another class")
    .try_get(0)
    .expect("its id");
    sqlx::query(
        "INSERT INTO rooms (class_id, kind, title, host_id, created_at) \
         VALUES ($1, 'live_commerce', '别人的直播', 4, 0) RETURNING id",
    )
    .bind(class)
    .fetch_one(pool)
    .await
    .expect("a room in it")
    .try_get(0)
    .expect("its id")
}
