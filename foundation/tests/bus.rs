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
    let a = RedisBus::connect(&redis_url())
        .await
        .expect("Redis must run at TEST_REDIS_URL");
    let b = RedisBus::connect(&redis_url()).await.expect("second node");
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
    assert!(RedisBus::connect("redis://127.0.0.1:1").await.is_err());
}
