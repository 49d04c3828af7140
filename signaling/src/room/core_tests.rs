//! The room's rules in virtual time.

use super::*;
use crate::protocol::{MediaTrack, PublisherRole};
use crate::room::core::Sequencing;
use crate::words::WordAction;

const HOST: UserId = 1;

fn user(id: UserId) -> UserRef {
    UserRef {
        id,
        name: format!("用户{id}"),
    }
}

fn room_with(config: RoomConfig) -> RoomCore {
    let words = WordFilter::new([
        ("加微信".to_owned(), WordAction::Block),
        ("傻瓜".to_owned(), WordAction::Mask),
    ]);
    RoomCore::new(7, 0, Some(user(HOST)), false, 0, 0, config, Arc::new(words))
}

fn room() -> RoomCore {
    room_with(RoomConfig::default())
}

fn drain(room: &mut RoomCore) -> Vec<Output> {
    std::iter::from_fn(|| room.poll_output()).collect()
}

fn join(room: &mut RoomCore, now: i64, conn: ConnId, id: UserId, role: MemberRole) -> Vec<Output> {
    room.handle(
        now,
        Input::Join {
            conn,
            user: user(id),
            role,
            last_seq: None,
            id: None,
        },
    );
    drain(room)
}

fn send(room: &mut RoomCore, now: i64, conn: ConnId, msg: ClientMsg) -> Vec<Output> {
    room.handle(
        now,
        Input::Client {
            conn,
            id: Some(1),
            msg,
        },
    );
    drain(room)
}

fn chat(text: &str) -> ClientMsg {
    ClientMsg::Chat {
        room: 7,
        text: text.into(),
    }
}

fn events(outputs: &[Output]) -> Vec<&Sequenced> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Broadcast(e) => Some(e.as_ref()),
            _ => None,
        })
        .collect()
}

fn error_code(outputs: &[Output]) -> Option<String> {
    outputs.iter().find_map(|o| match o {
        Output::Send {
            msg: ServerMsg::Error { code, .. },
            ..
        } => Some(code.clone()),
        _ => None,
    })
}

#[test]
fn event_frames_match_the_protocol() {
    let event = RoomEvent::UserMuted { user: 3, until: 99 };
    let wire = encode_event(7, 12, 1000, &event);
    let expected = serde_json::to_string(&ServerMsg::Event {
        room: 7,
        seq: 12,
        at: 1000,
        event,
    })
    .unwrap();
    assert_eq!(wire.as_str(), expected);
}

#[test]
fn events_are_numbered_consecutively_and_encoded_once() {
    let mut r = room();
    join(&mut r, 0, 1, HOST, MemberRole::Host);
    join(&mut r, 0, 2, 2, MemberRole::Viewer);
    let mut seqs = Vec::new();
    for (i, now) in [1000, 2000, 3000].into_iter().enumerate() {
        let out = send(&mut r, now, 2, chat(&format!("第{i}条")));
        let e = events(&out);
        assert_eq!(e.len(), 1);
        let parsed: ServerMsg = serde_json::from_str(e[0].wire.as_str()).unwrap();
        assert!(matches!(parsed, ServerMsg::Event { seq, .. } if seq == e[0].seq));
        seqs.push(e[0].seq);
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[test]
fn resume_replays_missed_events_or_resyncs_when_too_old() {
    let mut r = room_with(RoomConfig {
        history: 5,
        chat_burst: 100,
        ..RoomConfig::default()
    });
    join(&mut r, 0, 1, HOST, MemberRole::Host);
    join(&mut r, 0, 2, 2, MemberRole::Viewer);
    for i in 0..3 {
        send(&mut r, 10 + i, 1, chat("主播说"));
    }
    let seen = r.seq();
    r.handle(20, Input::Leave { conn: 2 });
    drain(&mut r);
    for i in 0..2 {
        send(&mut r, 30 + i, 1, chat("你不在时"));
    }
    // Back within the history: exactly the missed events, in order (then its own arrival).
    let missed_up_to = r.seq();
    r.handle(
        40,
        Input::Join {
            conn: 3,
            user: user(2),
            role: MemberRole::Viewer,
            last_seq: Some(seen),
            id: None,
        },
    );
    let out = drain(&mut r);
    assert!(
        matches!(&out[0], Output::Send { msg: ServerMsg::Resumed { from_seq, .. }, .. } if *from_seq == seen)
    );
    let Some(Output::Replay { events, .. }) =
        out.iter().find(|o| matches!(o, Output::Replay { .. }))
    else {
        panic!("no replay: {out:?}");
    };
    let replayed: Vec<Seq> = events.iter().map(|e| e.seq).collect();
    assert_eq!(replayed, ((seen + 1)..=missed_up_to).collect::<Vec<_>>());
    assert!(
        out.iter().any(|o| matches!(o, Output::Broadcast(e) if matches!(e.event, RoomEvent::MemberJoined { .. }))),
        "a resuming member is announced again"
    );

    // Too far behind: a snapshot instead.
    for i in 0..10 {
        send(&mut r, 50 + i, 1, chat("很多消息"));
    }
    let before_join = r.seq();
    r.handle(
        70,
        Input::Join {
            conn: 4,
            user: user(3),
            role: MemberRole::Viewer,
            last_seq: Some(1),
            id: None,
        },
    );
    let out = drain(&mut r);
    assert!(
        matches!(&out[0], Output::Send { msg: ServerMsg::Resync { state, .. }, .. } if state.seq == before_join)
    );
    // A seq from the future (another room incarnation) resyncs too.
    r.handle(
        80,
        Input::Join {
            conn: 5,
            user: user(4),
            role: MemberRole::Viewer,
            last_seq: Some(r.seq() + 100),
            id: None,
        },
    );
    assert!(matches!(
        &drain(&mut r)[0],
        Output::Send {
            msg: ServerMsg::Resync { .. },
            ..
        }
    ));
}

#[test]
fn a_replay_larger_than_the_queue_becomes_a_resync() {
    let mut r = room_with(RoomConfig {
        max_replay: 3,
        chat_burst: 100,
        ..RoomConfig::default()
    });
    join(&mut r, 0, 1, HOST, MemberRole::Host);
    let seen = r.seq();
    for i in 0..4 {
        send(&mut r, 10 + i, 1, chat("很多"));
    }
    r.handle(
        20,
        Input::Join {
            conn: 2,
            user: user(2),
            role: MemberRole::Viewer,
            last_seq: Some(seen),
            id: None,
        },
    );
    assert!(matches!(
        &drain(&mut r)[0],
        Output::Send {
            msg: ServerMsg::Resync { .. },
            ..
        }
    ));
}

#[test]
fn chat_is_rate_limited_per_user_and_refills() {
    let mut r = room();
    join(&mut r, 0, 2, 2, MemberRole::Viewer);
    for i in 0..3 {
        assert_eq!(error_code(&send(&mut r, 100 + i, 2, chat("hi"))), None);
    }
    assert_eq!(
        error_code(&send(&mut r, 200, 2, chat("hi"))).as_deref(),
        Some("rate_limited")
    );
    // One second later one more message is allowed, not two.
    assert_eq!(error_code(&send(&mut r, 1200, 2, chat("hi"))), None);
    assert_eq!(
        error_code(&send(&mut r, 1300, 2, chat("hi"))).as_deref(),
        Some("rate_limited")
    );
    // The host is not limited.
    join(&mut r, 0, 1, HOST, MemberRole::Host);
    for i in 0..10 {
        assert_eq!(error_code(&send(&mut r, 2000 + i, 1, chat("欢迎"))), None);
    }
}

#[test]
fn length_empty_and_words() {
    let mut r = room();
    join(&mut r, 0, 2, 2, MemberRole::Viewer);
    assert_eq!(
        error_code(&send(&mut r, 0, 2, chat("   "))).as_deref(),
        Some("empty_text")
    );
    assert_eq!(
        error_code(&send(&mut r, 0, 2, chat(&"长".repeat(201)))).as_deref(),
        Some("text_too_long")
    );
    let out = send(&mut r, 5000, 2, chat("加微信私聊"));
    assert_eq!(error_code(&out).as_deref(), Some("word_blocked"));
    assert!(events(&out).is_empty());
    let out = send(&mut r, 9000, 2, chat("你个傻瓜"));
    let RoomEvent::Chat { message } = &events(&out)[0].event else {
        panic!()
    };
    assert_eq!(message.text, "你个＊＊");
}

#[test]
fn moderation_rules() {
    let mut r = room_with(RoomConfig {
        chat_burst: 100,
        ..RoomConfig::default()
    });
    join(&mut r, 0, 1, HOST, MemberRole::Host);
    join(&mut r, 0, 2, 2, MemberRole::Viewer);
    join(&mut r, 0, 3, 3, MemberRole::Viewer);
    // Viewers cannot moderate.
    let out = send(
        &mut r,
        0,
        3,
        ClientMsg::Mute {
            room: 7,
            user: 2,
            minutes: 5,
        },
    );
    assert_eq!(error_code(&out).as_deref(), Some("forbidden"));
    let out = send(
        &mut r,
        0,
        1,
        ClientMsg::Mute {
            room: 7,
            user: HOST,
            minutes: 5,
        },
    );
    assert_eq!(
        error_code(&out).as_deref(),
        Some("forbidden"),
        "the host cannot be muted"
    );
    // The host mutes viewer 2 for 5 minutes.
    let out = send(
        &mut r,
        1000,
        1,
        ClientMsg::Mute {
            room: 7,
            user: 2,
            minutes: 5,
        },
    );
    assert!(matches!(
        events(&out)[0].event,
        RoomEvent::UserMuted { user: 2, .. }
    ));
    assert_eq!(events(&out)[0].priority, Priority::System);
    assert_eq!(
        error_code(&send(&mut r, 2000, 2, chat("我要说话"))).as_deref(),
        Some("muted")
    );
    assert_eq!(
        error_code(&send(&mut r, 1000 + 5 * 60_000, 2, chat("我又能说了"))),
        None
    );

    // Pin and remove.
    let out = send(&mut r, 400_000, 3, chat("这个多少钱"));
    let message = events(&out)[0].seq;
    let out = send(
        &mut r,
        400_001,
        1,
        ClientMsg::PinMessage { room: 7, message },
    );
    assert!(
        matches!(&events(&out)[0].event, RoomEvent::MessagePinned { message: m } if m.id == message)
    );
    r.handle(
        400_002,
        Input::Join {
            conn: 9,
            user: user(9),
            role: MemberRole::Viewer,
            last_seq: None,
            id: None,
        },
    );
    let out = drain(&mut r);
    let Output::Send {
        msg: ServerMsg::Joined { state, .. },
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!(state.pinned.as_ref().unwrap().id, message);
    let out = send(
        &mut r,
        400_003,
        1,
        ClientMsg::RemoveMessage { room: 7, message },
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::StoreRemoval { message: m } if *m == message))
    );
    assert!(matches!(
        &events(&out)[0].event,
        RoomEvent::MessageRemoved { .. }
    ));
    let out = send(
        &mut r,
        400_004,
        1,
        ClientMsg::PinMessage { room: 7, message },
    );
    assert_eq!(
        error_code(&out).as_deref(),
        Some("not_found"),
        "a removed message cannot be pinned"
    );
    let out = send(
        &mut r,
        400_005,
        1,
        ClientMsg::RemoveMessage {
            room: 7,
            message: 999_999,
        },
    );
    assert_eq!(error_code(&out).as_deref(), Some("not_found"));
}

#[test]
fn only_the_host_starts_and_ends_the_live() {
    let mut r = room();
    join(&mut r, 0, 1, HOST, MemberRole::Host);
    join(&mut r, 0, 2, 2, MemberRole::Viewer);
    assert_eq!(
        error_code(&send(&mut r, 0, 2, ClientMsg::StartLive { room: 7 })).as_deref(),
        Some("forbidden")
    );
    let out = send(&mut r, 0, 1, ClientMsg::StartLive { room: 7 });
    assert!(matches!(
        events(&out)[0].event,
        RoomEvent::LiveStarted { .. }
    ));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::LiveChanged { live: true, .. }))
    );
    assert_eq!(
        error_code(&send(&mut r, 0, 1, ClientMsg::StartLive { room: 7 })).as_deref(),
        Some("already_live")
    );
    let out = send(&mut r, 0, 1, ClientMsg::EndLive { room: 7 });
    assert!(matches!(events(&out)[0].event, RoomEvent::LiveEnded { .. }));
    assert!(!r.is_live());
}

#[test]
fn big_rooms_report_counters_less_often() {
    let mut r = room_with(RoomConfig {
        stats_deliveries_per_second: 100,
        ..RoomConfig::default()
    });
    assert_eq!(r.stats_interval_ms(), 250);
    for conn in 1..=100 {
        join(&mut r, 0, conn, 100 + conn as UserId, MemberRole::Viewer);
    }
    // 100 connections at 100 deliveries per second: one report per second.
    assert_eq!(r.stats_interval_ms(), 1000);
    let mut reports = Vec::new();
    for now in (1..=5_000).step_by(10) {
        r.handle(
            now,
            Input::Client {
                conn: 1,
                id: None,
                msg: ClientMsg::Like { room: 7, count: 1 },
            },
        );
        if drain(&mut r).iter().any(|o| matches!(o, Output::Stats(_))) {
            reports.push(now);
        }
    }
    assert!(
        reports.windows(2).all(|w| w[1] - w[0] >= 1000),
        "{reports:?}"
    );
    assert!(reports.len() >= 4, "{reports:?}");
    for conn in 1..=100 {
        r.handle(6_000, Input::Leave { conn });
    }
    assert_eq!(r.stats_interval_ms(), 250);
    // Never beyond the ceiling, however big the room.
    let mut r = room_with(RoomConfig {
        stats_deliveries_per_second: 1,
        ..RoomConfig::default()
    });
    join(&mut r, 0, 1, 2, MemberRole::Viewer);
    join(&mut r, 0, 2, 3, MemberRole::Viewer);
    assert_eq!(r.stats_interval_ms(), 2000);
}

#[test]
fn likes_are_exact_and_reported_at_most_every_interval() {
    let mut r = room();
    join(&mut r, 0, 1, HOST, MemberRole::Host);
    join(&mut r, 0, 2, 2, MemberRole::Viewer);
    let mut stats = 0;
    let mut now = 1_000;
    for i in 0..1000u32 {
        now += 1;
        r.handle(
            now,
            Input::Client {
                conn: 2,
                id: None,
                msg: ClientMsg::Like {
                    room: 7,
                    count: 1 + i % 7,
                },
            },
        );
        stats += drain(&mut r)
            .iter()
            .filter(|o| matches!(o, Output::Stats(_)))
            .count();
    }
    let expected: u64 = (0..1000u64).map(|i| 1 + i % 7).sum();
    assert_eq!(r.likes(), expected);
    // 1000 ms of likes, at most one report per 250 ms (plus the first).
    assert!(stats <= 5, "{stats} stats frames");
    now += 250;
    r.handle(now, Input::Tick);
    let out = drain(&mut r);
    let Some(Output::Stats(frame)) = out.last() else {
        panic!("{out:?}")
    };
    let parsed: ServerMsg = serde_json::from_str(frame.as_str()).unwrap();
    assert!(matches!(parsed, ServerMsg::Stats { likes, .. } if likes == expected));
    let out = send(&mut r, now, 2, ClientMsg::Like { room: 7, count: 0 });
    assert_eq!(error_code(&out).as_deref(), Some("invalid"));
    let out = send(
        &mut r,
        now,
        2,
        ClientMsg::Like {
            room: 7,
            count: 501,
        },
    );
    assert_eq!(error_code(&out).as_deref(), Some("invalid"));
}

#[test]
fn viewers_count_people_not_tabs_and_exclude_the_host() {
    let mut r = room();
    join(&mut r, 0, 1, HOST, MemberRole::Host);
    join(&mut r, 0, 2, 2, MemberRole::Viewer);
    join(&mut r, 0, 3, 2, MemberRole::Viewer);
    join(&mut r, 0, 4, 3, MemberRole::Viewer);
    assert_eq!(r.viewers(), 2);
    assert_eq!(r.peak(), 2);
    r.handle(0, Input::Leave { conn: 2 });
    assert_eq!(r.viewers(), 2, "user 2 still has a tab open");
    r.handle(0, Input::Leave { conn: 3 });
    assert_eq!(r.viewers(), 1);
    assert_eq!(r.peak(), 2);
}

#[test]
fn messages_from_outside_the_room_are_refused() {
    let mut r = room();
    let out = send(&mut r, 0, 42, chat("hello"));
    assert_eq!(error_code(&out).as_deref(), Some("not_in_room"));
}

#[test]
fn presence_events_only_in_small_rooms() {
    let mut r = room_with(RoomConfig {
        presence_limit: 2,
        ..RoomConfig::default()
    });
    let out = join(&mut r, 0, 1, HOST, MemberRole::Host);
    assert_eq!(events(&out).len(), 1);
    join(&mut r, 0, 2, 2, MemberRole::Viewer);
    let out = join(&mut r, 0, 3, 3, MemberRole::Viewer);
    assert!(events(&out).is_empty(), "large rooms report counts only");
    let Output::Send {
        msg: ServerMsg::Joined { state, .. },
        ..
    } = &out[0]
    else {
        panic!()
    };
    assert!(state.members.is_none());
}

#[test]
fn external_sequencing_proposes_then_applies_in_cluster_order() {
    let mut r = room().with_sequencing(Sequencing::External);
    join(&mut r, 0, 1, HOST, MemberRole::Host);
    join(&mut r, 0, 2, 2, MemberRole::Viewer);
    let out = send(&mut r, 10, 2, chat("来自本节点"));
    let Some(Output::Propose(proposal)) = out
        .iter()
        .find(|o| matches!(o, Output::Propose(_)))
        .cloned()
    else {
        panic!("{out:?}")
    };
    assert!(
        events(&out).is_empty(),
        "nothing is delivered before the cluster numbers it"
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Send {
            msg: ServerMsg::Ack { .. },
            ..
        }
    )));
    // Another node's event arrives first with seq 100, then ours with 101.
    let remote = RoomEvent::UserMuted {
        user: 9,
        until: 999_999,
    };
    r.apply_sequenced(100, 11, remote, Some(HOST), false);
    r.apply_sequenced(
        101,
        proposal.at,
        proposal.event.clone(),
        proposal.author,
        true,
    );
    let out = drain(&mut r);
    let seqs: Vec<Seq> = events(&out).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [100, 101]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::StoreChat(m) if m.id == 101)),
        "the origin stores its chat"
    );
    // The replicated mute holds here too.
    join(&mut r, 20, 3, 9, MemberRole::Viewer);
    assert_eq!(
        error_code(&send(&mut r, 30, 3, chat("hi"))).as_deref(),
        Some("muted")
    );
    // Duplicates and old numbers are ignored.
    r.apply_sequenced(101, proposal.at, proposal.event, proposal.author, true);
    assert!(events(&drain(&mut r)).is_empty());
    // A remote chat is not stored here.
    let message = ChatMessage {
        id: 0,
        user: user(5),
        role: MemberRole::Viewer,
        text: "别处".into(),
        at: 40,
    };
    r.apply_sequenced(102, 40, RoomEvent::Chat { message }, Some(5), false);
    assert!(
        !drain(&mut r)
            .iter()
            .any(|o| matches!(o, Output::StoreChat(_)))
    );
}

#[test]
fn cluster_likes_add_up_without_double_counting() {
    let mut r = room().with_sequencing(Sequencing::External);
    join(&mut r, 0, 2, 2, MemberRole::Viewer);
    send(&mut r, 0, 2, ClientMsg::Like { room: 7, count: 30 });
    assert_eq!(r.likes(), 30);
    assert_eq!(r.unflushed_likes(), 30);
    // Another node added 50 first: the cluster total is 50.
    r.cluster_likes_total(50);
    assert_eq!(r.likes(), 80);
    // We flush our 30: the counter says 80.
    r.likes_flushed(30, 80);
    assert_eq!(r.unflushed_likes(), 0);
    assert_eq!(r.likes(), 80);
    // Our own announcement of 80 arrives late, then an older one: no change.
    r.cluster_likes_total(80);
    r.cluster_likes_total(60);
    assert_eq!(r.likes(), 80);
    send(&mut r, 0, 2, ClientMsg::Like { room: 7, count: 5 });
    assert_eq!(r.likes(), 85);
}

#[test]
fn a_replica_that_numbered_alone_follows_the_cluster_again() {
    let mut r = room().with_sequencing(Sequencing::External);
    join(&mut r, 0, 1, HOST, MemberRole::Host);
    r.apply_sequenced(100, 1, RoomEvent::MessageUnpinned, Some(HOST), false);
    drain(&mut r);
    // Redis is away: the host's chat is numbered here (101, 102).
    for text in ["断网时一", "断网时二"] {
        let out = send(&mut r, 10, 1, chat(text));
        let Some(Output::Propose(p)) = out.into_iter().find(|o| matches!(o, Output::Propose(_)))
        else {
            panic!()
        };
        r.apply_locally_during_outage(p);
    }
    assert_eq!(r.seq(), 102);
    drain(&mut r);
    // Redis is back; the cluster had numbered 101 for another node's mute.
    r.apply_sequenced(
        101,
        20,
        RoomEvent::UserMuted {
            user: 9,
            until: 99_999,
        },
        Some(HOST),
        false,
    );
    let out = drain(&mut r);
    assert_eq!(
        events(&out).iter().map(|e| e.seq).collect::<Vec<_>>(),
        [101]
    );
    assert_eq!(r.seq(), 101);
    // Someone who saw this node's own 101/102 must resync, not resume.
    r.handle(
        30,
        Input::Join {
            conn: 5,
            user: user(5),
            role: MemberRole::Viewer,
            last_seq: Some(101),
            id: None,
        },
    );
    assert!(matches!(
        &drain(&mut r)[0],
        Output::Send {
            msg: ServerMsg::Resync { .. },
            ..
        }
    ));
    // Later cluster events apply normally; duplicates are ignored again.
    r.apply_sequenced(102, 40, RoomEvent::MessageUnpinned, Some(HOST), false);
    r.apply_sequenced(102, 40, RoomEvent::MessageUnpinned, Some(HOST), false);
    assert_eq!(events(&drain(&mut r)).len(), 1);
}

#[test]
fn media_changes_are_system_events_in_the_snapshot_and_not_repeated() {
    let mut r = room();
    join(&mut r, 0, 1, HOST, MemberRole::Host);
    join(&mut r, 0, 2, 2, MemberRole::Viewer);
    let track = |layers| MediaTrack {
        kind: "video".into(),
        codec: "video/VP8".into(),
        layers,
    };
    let media = RoomMedia {
        publisher: HOST,
        tracks: vec![track(3)],
        role: PublisherRole::Main,
    };
    let guest = RoomMedia {
        publisher: 2,
        tracks: vec![track(1)],
        role: PublisherRole::Guest,
    };
    r.handle(10, Input::Media(vec![media.clone()]));
    let out = drain(&mut r);
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].priority, Priority::System);
    assert!(matches!(
        &evs[0].event,
        RoomEvent::MediaChanged { media: Some(m), publishers } if *m == media && publishers.len() == 1
    ));
    // The same news again changes nothing.
    r.handle(20, Input::Media(vec![media.clone()]));
    assert!(events(&drain(&mut r)).is_empty());
    // A guest joins the stage: the main publisher stays `media`.
    let both = vec![media.clone(), guest.clone()];
    r.handle(25, Input::Media(both.clone()));
    let out = drain(&mut r);
    assert!(matches!(
        &events(&out)[0].event,
        RoomEvent::MediaChanged { media: Some(m), publishers } if *m == media && *publishers == both
    ));
    // A newcomer learns it from the snapshot.
    let joined = join(&mut r, 30, 3, 3, MemberRole::Viewer);
    let snapshot = joined
        .iter()
        .find_map(|o| match o {
            Output::Send {
                msg: ServerMsg::Joined { state, .. },
                ..
            } => Some(state.clone()),
            _ => None,
        })
        .expect("a snapshot");
    assert_eq!(snapshot.media, Some(media));
    assert_eq!(snapshot.publishers, both);
    // Only the guest left: no main publisher, one publisher.
    r.handle(35, Input::Media(vec![guest.clone()]));
    let out = drain(&mut r);
    assert!(matches!(
        &events(&out)[0].event,
        RoomEvent::MediaChanged { media: None, publishers } if *publishers == vec![guest.clone()]
    ));
    r.handle(40, Input::Media(Vec::new()));
    let out = drain(&mut r);
    assert!(matches!(
        &events(&out)[0].event,
        RoomEvent::MediaChanged { media: None, publishers } if publishers.is_empty()
    ));
}

#[test]
fn watch_time_counts_viewers_only_while_live() {
    let mut room = room();
    join(&mut room, 0, 1, HOST, MemberRole::Host);
    join(&mut room, 0, 2, 20, MemberRole::Viewer);
    // Two tabs of one viewer count once.
    join(&mut room, 500, 3, 20, MemberRole::Viewer);
    // Before the live starts nothing is watched.
    assert!(room.drain_watch(1_000).is_empty());
    send(&mut room, 1_000, 1, ClientMsg::StartLive { room: 7 });
    join(&mut room, 3_000, 4, 30, MemberRole::Viewer);
    room.handle(5_000, Input::Leave { conn: 4 });
    drain(&mut room);
    let mut watched = room.drain_watch(11_000);
    assert_eq!(watched.len(), 1);
    // All of it in the session that began at 1 s.
    assert_eq!(watched[0].0, 1_000);
    watched[0].1.sort();
    // Viewer 20: 1 s → 11 s; viewer 30: 3 s → 5 s; the host is not a viewer.
    assert_eq!(watched[0].1, vec![(20, 10_000), (30, 2_000)]);
    room.handle(12_000, Input::Leave { conn: 2 });
    send(&mut room, 21_000, 1, ClientMsg::EndLive { room: 7 });
    assert_eq!(room.drain_watch(21_000), vec![(1_000, vec![(20, 10_000)])]);
    // After the end, staying on the page is not watching.
    assert!(room.drain_watch(60_000).is_empty());
}

fn like(room: &mut RoomCore, now: i64, conn: ConnId, count: u32) {
    send(room, now, conn, ClientMsg::Like { room: 7, count });
}

#[test]
fn each_live_session_keeps_its_own_peak_likes_and_watch_time() {
    let mut room = room();
    join(&mut room, 0, 1, HOST, MemberRole::Host);
    join(&mut room, 0, 2, 20, MemberRole::Viewer);
    // Likes before the live count for the room only.
    like(&mut room, 500, 2, 4);
    let out = send(&mut room, 1_000, 1, ClientMsg::StartLive { room: 7 });
    assert!(out.iter().any(|o| matches!(
        o,
        Output::LiveChanged {
            live: true,
            at: 1_000,
            ..
        }
    )));
    join(&mut room, 2_000, 3, 30, MemberRole::Viewer);
    join(&mut room, 2_000, 4, 40, MemberRole::Viewer);
    like(&mut room, 3_000, 2, 10);
    room.handle(4_000, Input::Leave { conn: 4 });
    drain(&mut room);
    assert_eq!(
        (
            room.session_started_at(),
            room.session_peak(),
            room.session_likes()
        ),
        (Some(1_000), 3, 10)
    );
    // The end: the session is settled on this replica before the status is stored.
    let out = send(&mut room, 11_000, 1, ClientMsg::EndLive { room: 7 });
    let ended = out
        .iter()
        .position(|o| matches!(o, Output::SessionEnded { started_at: 1_000 }))
        .expect("the session ended");
    let changed = out
        .iter()
        .position(|o| matches!(o, Output::LiveChanged { live: false, .. }))
        .expect("the live ended");
    assert!(ended < changed);
    // Likes after the end count for the room only; the last session's stay as they were.
    like(&mut room, 12_000, 2, 5);
    assert_eq!((room.session_peak(), room.session_likes()), (3, 10));
    let totals = room.take_totals().expect("something to store");
    assert_eq!(totals.likes, 19);
    assert_eq!(totals.peak, 3);
    assert_eq!(
        totals.sessions,
        vec![SessionTotals {
            started_at: 1_000,
            likes: 10,
            peak: 3
        }]
    );
    assert!(room.take_totals().is_none(), "nothing new");

    // The second live: viewer 20 returns; 30 is still on the page.
    room.handle(13_000, Input::Leave { conn: 3 });
    let out = send(&mut room, 20_000, 1, ClientMsg::StartLive { room: 7 });
    assert!(!out.iter().any(|o| matches!(o, Output::SessionEnded { .. })));
    like(&mut room, 21_000, 2, 2);
    assert_eq!(
        (
            room.session_started_at(),
            room.session_peak(),
            room.session_likes()
        ),
        (Some(20_000), 1, 2)
    );
    // A failed save is handed back and stored with the next one; nothing is lost.
    let failed = room.take_totals().expect("something to store");
    like(&mut room, 22_000, 2, 1);
    room.restore_totals(failed);
    let totals = room.take_totals().expect("something to store");
    assert_eq!(totals.likes, 3);
    assert_eq!(totals.peak, 3, "the room's peak over both lives");
    assert_eq!(
        totals.sessions,
        vec![SessionTotals {
            started_at: 20_000,
            likes: 3,
            peak: 1
        }]
    );
    // Watch time of both sessions drained at once stays apart.
    send(&mut room, 25_000, 1, ClientMsg::EndLive { room: 7 });
    let mut watched = room.drain_watch(25_000);
    for (_, viewers) in &mut watched {
        viewers.sort();
    }
    assert_eq!(
        watched,
        vec![
            (1_000, vec![(20, 10_000), (30, 9_000), (40, 2_000)]),
            (20_000, vec![(20, 5_000)]),
        ]
    );
}

#[test]
fn a_room_loaded_while_live_continues_its_session() {
    let words = Arc::new(WordFilter::new(Vec::<(String, WordAction)>::new()));
    // Stored: the room has 100 likes over its lives, 30 of them in this session, peak 4.
    let mut room = RoomCore::new(
        7,
        0,
        Some(user(HOST)),
        true,
        100,
        9,
        RoomConfig::default(),
        words,
    )
    .resume_session(5_000, 4, 30);
    join(&mut room, 6_000, 2, 20, MemberRole::Viewer);
    like(&mut room, 7_000, 2, 5);
    assert_eq!(
        (
            room.session_started_at(),
            room.session_peak(),
            room.session_likes()
        ),
        (Some(5_000), 4, 35)
    );
    assert_eq!(room.likes(), 105);
    let totals = room.take_totals().expect("something to store");
    assert_eq!(
        totals.sessions,
        vec![SessionTotals {
            started_at: 5_000,
            likes: 5,
            peak: 0
        }],
        "only the increment is stored; the peak was not raised"
    );
    let mut watched = room.drain_watch(9_000);
    assert_eq!(watched.pop(), Some((5_000, vec![(20, 3_000)])));
}

#[test]
fn a_duplicate_start_from_the_cluster_keeps_the_session() {
    let mut r = room().with_sequencing(Sequencing::External);
    let host = user(HOST);
    r.apply_sequenced(
        100,
        1_000,
        RoomEvent::LiveStarted { host: host.clone() },
        Some(HOST),
        true,
    );
    // Another node decided a start at the same time; it changes nothing and is not stored.
    r.apply_sequenced(
        101,
        1_005,
        RoomEvent::LiveStarted { host },
        Some(HOST),
        true,
    );
    let out = drain(&mut r);
    let changes = out
        .iter()
        .filter(|o| matches!(o, Output::LiveChanged { .. }))
        .count();
    assert_eq!(changes, 1);
    assert_eq!(r.session_started_at(), Some(1_000));
}
