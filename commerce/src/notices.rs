//! Announcements that would flood a big room if sent one by one, batched: order notices
//! ("张* 等 35 人刚刚下单") and flash-sale stock left, each at most twice a second per room or
//! sale. Every batch still goes out as a never-dropped room event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use signaling::protocol::CommerceEvent;
use tokio::sync::mpsc;

use crate::rooms::LiveRooms;
use crate::util::masked_name;

const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Names shown in one order notice.
const NAMES_PER_NOTICE: usize = 3;

#[derive(Debug)]
enum Notice {
    Order {
        room: i64,
        buyer: String,
        product: String,
    },
    Stock {
        room: i64,
        sale: i64,
        remaining: u32,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Notices {
    tx: mpsc::UnboundedSender<Notice>,
}

#[derive(Default)]
struct OrderBatch {
    buyers: Vec<String>,
    count: u32,
    product: String,
}

impl Notices {
    pub(crate) fn start(rooms: Arc<dyn LiveRooms>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, rooms));
        Self { tx }
    }

    pub(crate) fn order(&self, room: i64, buyer: &str, product: &str) {
        let _ = self.tx.send(Notice::Order {
            room,
            buyer: masked_name(buyer),
            product: product.to_owned(),
        });
    }

    pub(crate) fn stock(&self, room: i64, sale: i64, remaining: u32) {
        let _ = self.tx.send(Notice::Stock {
            room,
            sale,
            remaining,
        });
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Notice>, rooms: Arc<dyn LiveRooms>) {
    let mut orders: HashMap<i64, OrderBatch> = HashMap::new();
    let mut stock: HashMap<i64, (i64, u32)> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            notice = rx.recv() => match notice {
                Some(Notice::Order { room, buyer, product }) => {
                    let batch = orders.entry(room).or_default();
                    if batch.buyers.len() < NAMES_PER_NOTICE {
                        batch.buyers.push(buyer);
                    }
                    batch.count += 1;
                    batch.product = product;
                }
                Some(Notice::Stock { room, sale, remaining }) => {
                    stock.insert(sale, (room, remaining));
                }
                None => break,
            },
            _ = tick.tick() => {
                for (room, batch) in orders.drain() {
                    let event = CommerceEvent::OrderNotice {
                        buyers: batch.buyers,
                        count: batch.count,
                        product: batch.product,
                    };
                    rooms.announce(room, event).await;
                }
                for (sale, (room, remaining)) in stock.drain() {
                    rooms.announce(room, CommerceEvent::FlashSaleStock { sale, remaining }).await;
                }
            }
        }
    }
}
