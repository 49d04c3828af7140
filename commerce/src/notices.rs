//! Announcements that would flood a big room if sent one by one, batched: order notices
//! ("张* 等 35 人刚刚下单"), flash-sale stock left, and the live price and stock of the products
//! on a live room's shelf (the 讲解中 card), each at most twice a second per room, sale or
//! product. Every batch still goes out as a never-dropped room event.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use foundation::db::Db;
use futures::FutureExt;
use signaling::protocol::{CommerceEvent, ProductCard};
use sqlx::Row;
use tokio::sync::mpsc;

use crate::rooms::LiveRooms;
use crate::util::{self, masked_name};

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
    /// A SKU's stock or price changed (committed).
    Sku(i64),
    /// A product's title or images changed (committed).
    Product(i64),
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
    pub(crate) fn start(rooms: Arc<dyn LiveRooms>, db: Db) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, rooms, db));
        Self { tx }
    }

    /// The stock or price of `sku` changed and the change is committed: the live rooms with its
    /// product on the shelf get the product's new card (`product_updated`) at the next flush.
    /// Callers skip changes that change nothing (the same price again).
    pub(crate) fn sku_changed(&self, sku: i64) {
        let _ = self.tx.send(Notice::Sku(sku));
    }

    /// As [`sku_changed`](Self::sku_changed), for a change of the product itself.
    pub(crate) fn product_changed(&self, product: i64) {
        let _ = self.tx.send(Notice::Product(product));
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

async fn run(mut rx: mpsc::UnboundedReceiver<Notice>, rooms: Arc<dyn LiveRooms>, db: Db) {
    let mut orders: HashMap<i64, OrderBatch> = HashMap::new();
    let mut stock: HashMap<i64, (i64, u32)> = HashMap::new();
    let mut changed = Changed::default();
    // The card lookup runs off this loop (the database may be busy with a flash sale; order
    // notices and sale stock must not wait for it), one at a time; what a failed lookup had
    // comes back for the next.
    let mut lookup: Option<tokio::task::JoinHandle<Result<(), Changed>>> = None;
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
                Some(Notice::Sku(sku)) => {
                    changed.skus.insert(sku);
                }
                Some(Notice::Product(product)) => {
                    changed.products.insert(product);
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
                if let Some(done) = lookup.take_if(|task| task.is_finished())
                    // Finished, so this does not wait.
                    && let Some(Ok(Err(failed))) = done.now_or_never()
                {
                    changed.merge(failed);
                }
                if lookup.is_none() && !changed.is_empty() {
                    let batch = std::mem::take(&mut changed);
                    let (db, rooms) = (db.clone(), rooms.clone());
                    lookup = Some(tokio::spawn(async move {
                        match shelved_cards(&db, &batch).await {
                            Ok(cards) => {
                                for (room, card) in cards {
                                    rooms.announce(room, CommerceEvent::ProductUpdated { product: card }).await;
                                }
                                Ok(())
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "could not read the cards of changed products");
                                Err(batch)
                            }
                        }
                    }));
                }
            }
        }
    }
}

/// Ids per query (bind parameters stay far below every engine's limit).
const IDS_PER_QUERY: usize = 200;

/// What changed since the last flush.
#[derive(Default)]
struct Changed {
    skus: BTreeSet<i64>,
    products: BTreeSet<i64>,
}

impl Changed {
    fn is_empty(&self) -> bool {
        self.skus.is_empty() && self.products.is_empty()
    }

    fn merge(&mut self, other: Changed) {
        self.skus.extend(other.skus);
        self.products.extend(other.products);
    }
}

/// The current cards of the changed products, with each live room whose shelf holds them.
async fn shelved_cards(db: &Db, changed: &Changed) -> Result<Vec<(i64, ProductCard)>, sqlx::Error> {
    let skus: Vec<i64> = changed.skus.iter().copied().collect();
    let products: Vec<i64> = changed.products.iter().copied().collect();
    let (sku_chunks, product_chunks) = (skus.chunks(IDS_PER_QUERY), products.chunks(IDS_PER_QUERY));
    let chunks = sku_chunks
        .map(|c| (c, "SELECT product_id FROM skus WHERE id IN"))
        .chain(product_chunks.map(|c| (c, "SELECT id FROM products WHERE id IN")));
    let mut out = Vec::new();
    for (chunk, products_of) in chunks {
        let placeholders = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT rp.room_id, p.id, p.shop_id, p.title, p.images, \
             (SELECT MIN(price_cents) FROM skus WHERE product_id = p.id), \
             (SELECT CAST(SUM(stock) AS BIGINT) FROM skus WHERE product_id = p.id) \
             FROM products p JOIN room_products rp ON rp.product_id = p.id \
             JOIN rooms r ON r.id = rp.room_id \
             WHERE p.id IN ({products_of} ({placeholders})) \
             AND p.status = 'listed' AND r.status = 'live' ORDER BY rp.room_id, p.id"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for sku in chunk {
            query = query.bind(*sku);
        }
        for row in query.fetch_all(db.pool()).await? {
            let images: String = row.try_get(4)?;
            out.push((
                row.try_get(0)?,
                ProductCard {
                    id: row.try_get(1)?,
                    shop_id: row.try_get(2)?,
                    title: row.try_get(3)?,
                    image: util::string_list(&images).into_iter().next(),
                    price_cents: row.try_get::<Option<i64>, _>(5)?.unwrap_or_default(),
                    stock: row.try_get::<Option<i64>, _>(6)?.unwrap_or_default(),
                },
            ));
        }
    }
    // A product is in a chunk's answer once per room, but two chunks may both name it.
    let mut seen = std::collections::HashSet::new();
    out.retain(|(room, card)| seen.insert((*room, card.id)));
    Ok(out)
}
