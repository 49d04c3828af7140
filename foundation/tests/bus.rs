//! The bus against both implementations: in-process, and Redis with two "nodes" in one process
//! (each `RedisBus` has its own node id and connections, as separate processes would).

use std::time::Duration;

use bytes::Bytes;
use foundation::bus::{Bus, RedisBus};

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn recv(sub: &mut foundation::bus::Subscription) -> Bytes {
    tokio::time::timeout(Duration::from_secs(3), sub.recv())
        .await
        .expect("message within 3 s")
        .expect("bus open")
        .expect("no lag")
}

#[tokio::test]
async fn redis_bus_delivers_across_nodes_exactly_once() {
    let a = RedisBus::connect(&redis_url(), "test")
        .await
        .expect("Redis must run at TEST_REDIS_URL");
    let b = RedisBus::connect(&redis_url(), "test")
        .await
        .expect("second node");
    let topic = format!("test.{}", uuid::Uuid::new_v4());
    let mut on_a = a.subscribe(&topic).await;
    let mut on_b = b.subscribe(&topic).await;
    // Wait until both relays are connected.
    for _ in 0..50 {
        if a.health().connected && b.health().connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(a.health().connected && b.health().connected);

    a.publish(&topic, Bytes::from_static(b"from a"))
        .await
        .unwrap();
    assert_eq!(recv(&mut on_a).await, Bytes::from_static(b"from a"));
    assert_eq!(recv(&mut on_b).await, Bytes::from_static(b"from a"));
    b.publish(&topic, Bytes::from_static(b"from b"))
        .await
        .unwrap();
    assert_eq!(recv(&mut on_a).await, Bytes::from_static(b"from b"));
    assert_eq!(recv(&mut on_b).await, Bytes::from_static(b"from b"));
    // No echo: node A's own message came once, not again through Redis.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), on_a.recv())
            .await
            .is_err(),
        "a node received its own message twice"
    );
}

#[tokio::test]
async fn redis_bus_keeps_local_delivery_when_redis_is_unreachable() {
    // Nothing listens on port 1: the node cannot even start its relay.
    assert!(
        RedisBus::connect("redis://127.0.0.1:1", "test")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn numbered_publishing_agrees_on_order_across_nodes() {
    let namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
    let a = RedisBus::connect(&redis_url(), &namespace).await.unwrap();
    let b = RedisBus::connect(&redis_url(), &namespace).await.unwrap();
    let mut on_a = a.subscribe("room.1.events").await;
    let mut on_b = b.subscribe("room.1.events").await;
    // Both nodes publish concurrently; both see the same numbers in the same order, and each
    // sees its own messages too.
    let (ra, rb) = tokio::join!(
        async {
            let mut seqs = Vec::new();
            for i in 0..50 {
                seqs.push(
                    a.publish_numbered(
                        "room.1.events",
                        "room:1:seq",
                        1_000,
                        format!("a{i}").as_bytes(),
                    )
                    .await
                    .unwrap(),
                );
            }
            seqs
        },
        async {
            let mut seqs = Vec::new();
            for i in 0..50 {
                seqs.push(
                    b.publish_numbered(
                        "room.1.events",
                        "room:1:seq",
                        1_000,
                        format!("b{i}").as_bytes(),
                    )
                    .await
                    .unwrap(),
                );
            }
            seqs
        }
    );
    assert!(
        ra.iter().chain(&rb).all(|s| *s > 1_000),
        "the floor applies"
    );
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..100 {
        seen_a.push(foundation::bus::split_numbered(&recv(&mut on_a).await).unwrap());
        seen_b.push(foundation::bus::split_numbered(&recv(&mut on_b).await).unwrap());
    }
    assert_eq!(seen_a, seen_b);
    let numbers: Vec<u64> = seen_a.iter().map(|(n, _)| *n).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");

    // Counters: the total is announced to every node, this one included.
    let mut totals = b.subscribe("room.1.likes").await;
    assert_eq!(
        a.add_and_announce("room.1.likes", "room:1:likes", 40, 2)
            .await
            .unwrap(),
        42
    );
    assert_eq!(
        b.add_and_announce("room.1.likes", "room:1:likes", 0, 3)
            .await
            .unwrap(),
        45
    );
    assert_eq!(recv(&mut totals).await, Bytes::from_static(b"42"));
    assert_eq!(recv(&mut totals).await, Bytes::from_static(b"45"));

    // Gauges: the sum over nodes.
    assert_eq!(a.gauge_sum("room:1:viewers", 7).await.unwrap(), 7);
    assert_eq!(b.gauge_sum("room:1:viewers", 5).await.unwrap(), 12);
    assert_eq!(a.gauge_sum("room:1:viewers", 6).await.unwrap(), 11);
}

#[tokio::test]
async fn in_process_numbering_matches_the_contract() {
    let bus = foundation::bus::InProcessBus::new();
    let mut sub = bus.subscribe("t").await;
    assert_eq!(bus.publish_numbered("t", "c", 10, b"x").await.unwrap(), 11);
    assert_eq!(bus.publish_numbered("t", "c", 0, b"y").await.unwrap(), 12);
    assert_eq!(
        foundation::bus::split_numbered(&recv(&mut sub).await).unwrap(),
        (11, Bytes::from_static(b"x"))
    );
    assert_eq!(
        foundation::bus::split_numbered(&recv(&mut sub).await).unwrap(),
        (12, Bytes::from_static(b"y"))
    );
    assert!(!bus.is_distributed());
}
