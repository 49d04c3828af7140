//! Simulated buyer traffic (模拟买家), sans IO: a [`BotCrowd`] decides when each bot of a room's
//! crowd arrives, likes, comments, buys, pays, grabs a red packet, claims a coupon, enters a
//! lucky bag and leaves. It never reads a clock or touches the room: the driver
//! (`crate::bots`) feeds it the time, what the room offers now ([`Offer`]) and what came of the
//! bots' orders, and carries out the [`BotAction`]s through the same paths as a person.
//!
//! How a crowd behaves (docs/commerce.md §16 says it for hosts):
//! - Bots arrive one at a time, at random (exponential gaps) at `arrivals_per_minute`, chosen
//!   among the bots not in the room; at most `count` are in the room at once. Each stays
//!   50–150 % of `stay_minutes`, leaves, and may come back after 1–10 minutes.
//! - On arrival a bot decides, once per visit, whether it likes (`like_rate`), comments
//!   (`comment_rate`) and means to buy (`buy_rate`). Likers tap in bursts of 1–12 every 4–20 s;
//!   commenters say something every 25–90 s, often about the product being explained.
//! - A buyer buys one unit once per visit: soon after a product is pinned (讲解中), else now and
//!   then from the shelf (小黄车). A flash sale draws each bot in the room with twice the
//!   `buy_rate` (capped at 1), in a rush in the first seconds after it opens. An order is paid a
//!   few seconds after it is placed.
//! - Red packets are grabbed by 80 % of the bots in the room, coupons claimed by 90 % of the
//!   buyers and 25 % of the others, and comment lucky bags entered (the keyword sent in the
//!   chat) by 70 % of them, each after a short human delay. A watch lucky bag needs no action:
//!   a bot qualifies by staying, as its watch time is counted like a person's (the driver
//!   offers only comment bags).
//!
//! Everything random comes from the crowd's own seeded generator: the same seed, settings and
//! inputs give the same actions, which is what the virtual-time tests below rely on.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// A bot's place in its class's pool (0-based); the driver maps it to an account.
pub type BotId = u32;

/// Most bots one room may have.
pub const MAX_BOTS: u32 = 500;
/// Fastest arrival rate, per minute.
pub const MAX_ARRIVALS_PER_MINUTE: u32 = 600;
/// Longest average stay, in minutes.
pub const MAX_STAY_MINUTES: u32 = 240;

/// Chance that a bot in the room grabs a red packet, in per mille.
const GRAB_PERMILLE: u32 = 800;
/// Chance that a bot in the room sends a lucky bag's keyword, in per mille.
const LUCKY_BAG_PERMILLE: u32 = 700;
/// Chance that a buyer, or any other bot, claims a coupon, in per mille.
const COUPON_BUYER_PERMILLE: u32 = 900;
const COUPON_OTHER_PERMILLE: u32 = 250;
/// Chance that a buyer's look at the shelf alone ends in an order, in per mille.
const SHELF_BUY_PERMILLE: u32 = 250;

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60_000;

/// A probability in per mille (0–1000): settings come in as 0–1 and are kept to three decimals,
/// so that what is stored and shown is exactly what the crowd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permille(u32);

impl Permille {
    pub fn get(self) -> u32 {
        self.0
    }

    /// The probability as 0–1 (for showing it).
    pub fn as_rate(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    fn parse(rate: f64) -> Option<Self> {
        if !rate.is_finite() || !(0.0..=1.0).contains(&rate) {
            return None;
        }
        // In 0..=1000 after the range check, so the cast is exact.
        Some(Self((rate * 1000.0).round() as u32))
    }

    /// From a stored value; out-of-range values are clamped.
    pub fn from_stored(value: i64) -> Self {
        Self(u32::try_from(value.clamp(0, 1000)).unwrap_or(0))
    }
}

/// Which of the three rates is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    Like,
    Comment,
    Buy,
}

/// Why settings are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("count must be between 1 and {MAX_BOTS}")]
    Count,
    #[error("arrivals per minute must be between 1 and {MAX_ARRIVALS_PER_MINUTE}")]
    ArrivalRate,
    #[error("{0:?} rate must be a number between 0 and 1")]
    Rate(RateKind),
    #[error("stay must be between 1 and {MAX_STAY_MINUTES} minutes")]
    Stay,
}

/// What the host sets for a room's crowd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrowdSettings {
    /// How many bots may be in the room at once (the size of the pool used).
    pub count: u32,
    pub arrivals_per_minute: u32,
    /// Per visit: the chance that a bot likes, comments, means to buy.
    pub like: Permille,
    pub comment: Permille,
    pub buy: Permille,
    /// Average stay of one visit.
    pub stay_minutes: u32,
}

impl CrowdSettings {
    /// Checks the settings: `count` 1–500, `arrivals_per_minute` 1–600, every rate 0–1 (kept to
    /// three decimals), `stay_minutes` 1–240.
    pub fn parse(
        count: i64,
        arrivals_per_minute: i64,
        like_rate: f64,
        comment_rate: f64,
        buy_rate: f64,
        stay_minutes: i64,
    ) -> Result<Self, SettingsError> {
        let count = u32::try_from(count)
            .ok()
            .filter(|c| (1..=MAX_BOTS).contains(c))
            .ok_or(SettingsError::Count)?;
        let arrivals_per_minute = u32::try_from(arrivals_per_minute)
            .ok()
            .filter(|r| (1..=MAX_ARRIVALS_PER_MINUTE).contains(r))
            .ok_or(SettingsError::ArrivalRate)?;
        let like = Permille::parse(like_rate).ok_or(SettingsError::Rate(RateKind::Like))?;
        let comment =
            Permille::parse(comment_rate).ok_or(SettingsError::Rate(RateKind::Comment))?;
        let buy = Permille::parse(buy_rate).ok_or(SettingsError::Rate(RateKind::Buy))?;
        let stay_minutes = u32::try_from(stay_minutes)
            .ok()
            .filter(|s| (1..=MAX_STAY_MINUTES).contains(s))
            .ok_or(SettingsError::Stay)?;
        Ok(Self {
            count,
            arrivals_per_minute,
            like,
            comment,
            buy,
            stay_minutes,
        })
    }
}

/// A product as the bots see it: on the shelf or being explained, with its SKUs in stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedProduct {
    pub id: i64,
    pub title: String,
    pub skus: Vec<i64>,
}

/// A running flash sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferedSale {
    pub id: i64,
    pub sku: i64,
    pub starts_at: i64,
    pub ends_at: i64,
}

/// An open comment lucky bag and what to comment to enter it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedBag {
    pub id: i64,
    pub keyword: String,
    pub draws_at: i64,
}

/// What the room offers now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// The product being explained (讲解中).
    pub pinned: Option<OfferedProduct>,
    /// The room's shelf (小黄车), the pinned product included.
    pub shelf: Vec<OfferedProduct>,
    pub flash_sales: Vec<OfferedSale>,
    /// Red packets that can still be grabbed.
    pub red_packets: Vec<i64>,
    /// Coupons that can still be claimed.
    pub coupons: Vec<i64>,
    pub lucky_bags: Vec<OfferedBag>,
}

/// What a bot does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotAction {
    /// Enter the room (as a viewer).
    Arrive(BotId),
    Leave(BotId),
    Like {
        bot: BotId,
        taps: u32,
    },
    Comment {
        bot: BotId,
        text: String,
    },
    /// Order one unit of `sku`, through `flash_sale` when given. Answer with
    /// [`BotCrowd::ordered`] or [`BotCrowd::buy_failed`].
    Buy {
        bot: BotId,
        sku: i64,
        flash_sale: Option<i64>,
    },
    /// Pay an order placed before (also after the bot left: paying is not in the room).
    Pay {
        bot: BotId,
        order: i64,
    },
    GrabRedPacket {
        bot: BotId,
        packet: i64,
    },
    ClaimCoupon {
        bot: BotId,
        coupon: i64,
    },
    /// Enter a lucky bag by sending its keyword in the chat.
    CommentKeyword {
        bot: BotId,
        bag: i64,
        text: String,
    },
}

/// Why a bot's order did not go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuyFailure {
    /// Sold out, or the flash sale's limit: worth a grumble in the chat.
    SoldOut,
    Other,
}

/// Short viewer lines (弹幕).
const GREETINGS: &[&str] = &[
    "来了来了",
    "主播好～",
    "晚上好呀",
    "刚下班，来看看",
    "第一次来，已关注",
    "又来啦",
    "家人们好",
    "准时打卡",
];
const CHATTER: &[&str] = &[
    "主播讲得好详细",
    "有优惠吗？",
    "包邮吗？",
    "发什么快递？",
    "多久能发货？",
    "支持七天无理由吗？",
    "可以再讲一遍吗",
    "666",
    "点赞点赞",
    "求福袋",
    "有没有红包呀",
    "主播声音真好听",
    "新人有优惠吗？",
    "怎么下单？",
    "已经分享给朋友了",
    "价格能再低点吗",
];
/// `{}` is the title of the product being explained.
const ABOUT_PRODUCT: &[&str] = &[
    "{}还有货吗？",
    "{}多少钱？",
    "想要{}",
    "{}质量怎么样？",
    "{}能便宜点吗",
    "{}有什么规格？",
    "{}给我留一份",
    "{}好用吗？",
];
const MISSED_OUT: &[&str] = &["没抢到😭", "手慢了，还能补货吗？", "秒没了！", "求返场"];
const BOUGHT: &[&str] = &["已拍，等发货", "付款了付款了", "抢到了！开心", "下单了～"];

/// Nicknames of the bot accounts; slot `n` beyond the list gets a number after its name.
const NICKNAMES: &[&str] = &[
    "小橙子",
    "甜甜圈",
    "阿杰",
    "晴天",
    "小鹿",
    "橘子汽水",
    "大白",
    "豆豆",
    "芒果布丁",
    "阿宝",
    "小米粒",
    "向日葵",
    "柠檬茶",
    "小熊",
    "星星",
    "慢慢",
    "果冻",
    "阿珍",
    "木子",
    "小雨",
    "糖糖",
    "饭团",
    "栗子",
    "小鱼干",
    "花卷",
    "奶茶",
    "阿强",
    "夏天",
    "小葵",
    "大橘",
    "麦兜",
    "团子",
    "丸子",
    "小满",
    "一一",
    "青柠",
    "可乐",
    "小林",
    "月亮",
    "布丁",
];

/// The display name of pool slot `slot`: "买家·" and a nickname, so every bot reads as a
/// buyer and no one takes it for a classmate.
pub fn nickname(slot: BotId) -> String {
    let len = NICKNAMES.len() as u32;
    let base = NICKNAMES[(slot % len) as usize];
    match slot / len {
        0 => format!("买家·{base}"),
        round => format!("买家·{base}{}", round + 1),
    }
}

/// Simulated delivery addresses (the merchant practises shipping to them).
const ADDRESSES: &[&str] = &[
    "浙江省杭州市西湖区文三路 88 号（模拟买家）",
    "江西省赣州市章贡区红旗大道 12 号（模拟买家）",
    "湖南省长沙市岳麓区麓山南路 6 号（模拟买家）",
    "贵州省贵阳市观山湖区林城路 20 号（模拟买家）",
    "福建省福州市鼓楼区五四路 158 号（模拟买家）",
    "广东省广州市天河区体育西路 1 号（模拟买家）",
];

/// The delivery address of pool slot `slot`.
pub fn address(slot: BotId) -> &'static str {
    ADDRESSES[slot as usize % ADDRESSES.len()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Leave,
    Like,
    /// A commenter's first line: often a greeting.
    Greet,
    Comment,
    /// Buy: at the flash sale given, or whatever the room offers.
    Buy(Option<i64>),
    Pay(i64),
    Grab(i64),
    Claim(i64),
    Keyword(i64),
    /// Say something after an order went through or failed.
    Say(&'static [&'static str]),
}

/// Something a bot will do at `at`, if it is still in the same visit then (payments: always).
#[derive(Debug, Clone, Copy)]
struct Timer {
    at: i64,
    /// Insertion order: ties at the same millisecond keep it.
    seq: u64,
    bot: BotId,
    visit: u32,
    intent: Intent,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    /// Reversed, so the heap pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One visit's decisions.
#[derive(Debug, Clone, Copy)]
struct Visit {
    number: u32,
    commenter: bool,
    buyer: bool,
    /// An order is being placed, or was placed, in this visit.
    bought: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bot {
    present: Option<Visit>,
    /// Not back before this time.
    away_until: i64,
}

/// What a bot decided about once (per crowd), so it is not asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Seen {
    Packet(i64),
    Coupon(i64),
    Bag(i64),
    Sale(i64),
}

/// One room's crowd of bots.
#[derive(Debug)]
pub struct BotCrowd {
    settings: CrowdSettings,
    rng: StdRng,
    bots: Vec<Bot>,
    timers: BinaryHeap<Timer>,
    next_seq: u64,
    /// Visits started in this crowd: a visit's number, unique across bots, so a timer left
    /// from a bot that was removed (a smaller count) never fires for the bot that later takes
    /// its place.
    visits_started: u32,
    next_arrival: i64,
    offer: Offer,
    seen: HashSet<(BotId, Seen)>,
    /// Actions decided outside `poll` (a smaller count), handed out by the next `poll`.
    pending: Vec<BotAction>,
    stopped: bool,
}

impl BotCrowd {
    /// A crowd starting at `now`, nobody in the room yet; `seed` fixes every random choice.
    pub fn new(settings: CrowdSettings, seed: u64, now: i64) -> Self {
        let mut crowd = Self {
            settings,
            rng: StdRng::seed_from_u64(seed),
            bots: vec![Bot::default(); settings.count as usize],
            timers: BinaryHeap::new(),
            next_seq: 0,
            visits_started: 0,
            next_arrival: now,
            offer: Offer::default(),
            seen: HashSet::new(),
            pending: Vec::new(),
            stopped: false,
        };
        crowd.next_arrival = now + crowd.arrival_gap();
        crowd
    }

    pub fn settings(&self) -> CrowdSettings {
        self.settings
    }

    /// Bots in the room now.
    pub fn present(&self) -> u32 {
        let count = self.bots.iter().filter(|b| b.present.is_some()).count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    pub fn is_present(&self, bot: BotId) -> bool {
        self.bot(bot).is_some_and(|b| b.present.is_some())
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// New settings from `now` on: bots beyond a smaller count leave (at the next `poll`), the
    /// arrival rate applies from now, the rates from the next visit.
    pub fn update(&mut self, settings: CrowdSettings, now: i64) {
        if self.stopped {
            return;
        }
        let count = settings.count as usize;
        if count < self.bots.len() {
            for (id, bot) in self.bots.iter_mut().enumerate().skip(count) {
                if bot.present.take().is_some() {
                    // `id` < MAX_BOTS, so it fits.
                    self.pending.push(BotAction::Leave(id as BotId));
                }
            }
            self.bots.truncate(count);
        } else {
            self.bots.resize(count, Bot::default());
        }
        let rate_changed = settings.arrivals_per_minute != self.settings.arrivals_per_minute;
        self.settings = settings;
        if rate_changed {
            self.next_arrival = now + self.arrival_gap();
        }
    }

    /// Stops the crowd: every bot in the room leaves (the returned actions), and nothing
    /// happens afterwards.
    pub fn stop(&mut self) -> Vec<BotAction> {
        let mut out = std::mem::take(&mut self.pending);
        if self.stopped {
            return out;
        }
        self.stopped = true;
        for (id, bot) in self.bots.iter_mut().enumerate() {
            if bot.present.take().is_some() {
                out.push(BotAction::Leave(id as BotId));
            }
        }
        self.timers.clear();
        out
    }

    /// When `poll` has something to do next (at or after `now`); `None` once stopped.
    pub fn next_wake(&self, now: i64) -> Option<i64> {
        if self.stopped {
            return None;
        }
        if !self.pending.is_empty() {
            return Some(now);
        }
        let timer = self.timers.peek().map_or(i64::MAX, |t| t.at);
        Some(timer.min(self.next_arrival).max(now))
    }

    /// Everything due by `now`, in time order.
    pub fn poll(&mut self, now: i64) -> Vec<BotAction> {
        let mut out = std::mem::take(&mut self.pending);
        if self.stopped {
            return out;
        }
        loop {
            let timer_at = self.timers.peek().map_or(i64::MAX, |t| t.at);
            if self.next_arrival <= now && self.next_arrival <= timer_at {
                let at = self.next_arrival;
                self.next_arrival = at + self.arrival_gap();
                self.arrive(at, &mut out);
            } else if timer_at <= now {
                // Just peeked: the heap is not empty.
                let Some(timer) = self.timers.pop() else {
                    break;
                };
                self.fire(timer, &mut out);
            } else {
                break;
            }
        }
        out
    }

    /// What the room offers from `now` on. New red packets, coupons, lucky bags and flash
    /// sales are considered by every bot in the room; a newly pinned product draws the buyers
    /// who have not bought yet.
    pub fn set_offer(&mut self, offer: Offer, now: i64) {
        if self.stopped || offer == self.offer {
            self.offer = offer;
            return;
        }
        let newly_pinned = offer
            .pinned
            .as_ref()
            .is_some_and(|p| self.offer.pinned.as_ref().map(|q| q.id) != Some(p.id));
        self.offer = offer;
        for id in 0..self.bots.len() as BotId {
            let Some(visit) = self.bots[id as usize].present else {
                continue;
            };
            self.consider_offer(id, visit, now);
            if newly_pinned && visit.buyer && !visit.bought {
                let at = now + self.between(3 * SECOND, 25 * SECOND);
                self.schedule(at, id, visit.number, Intent::Buy(None));
            }
        }
    }

    /// The order of `bot`'s `Buy` went through as `order`: it pays in a few seconds.
    pub fn ordered(&mut self, bot: BotId, order: i64, now: i64) {
        if self.stopped {
            return;
        }
        let at = now + self.between(SECOND, 6 * SECOND);
        self.schedule(at, bot, 0, Intent::Pay(order));
        if let Some(visit) = self.bot(bot).and_then(|b| b.present)
            && visit.commenter
            && self.rng.gen_ratio(1, 2)
        {
            let at = now + self.between(3 * SECOND, 15 * SECOND);
            self.schedule(at, bot, visit.number, Intent::Say(BOUGHT));
        }
    }

    /// `bot`'s `Buy` was refused: a commenter may say so, and a buyer looks again later.
    pub fn buy_failed(&mut self, bot: BotId, failure: BuyFailure, now: i64) {
        if self.stopped {
            return;
        }
        let Some(visit) = self.bot(bot).and_then(|b| b.present) else {
            return;
        };
        self.mark_bought(bot, false);
        if visit.buyer {
            let at = now + self.between(30 * SECOND, 90 * SECOND);
            self.schedule(at, bot, visit.number, Intent::Buy(None));
        }
        if failure == BuyFailure::SoldOut && visit.commenter && self.rng.gen_ratio(1, 2) {
            let at = now + self.between(SECOND, 5 * SECOND);
            self.schedule(at, bot, visit.number, Intent::Say(MISSED_OUT));
        }
    }

    fn bot(&self, bot: BotId) -> Option<&Bot> {
        self.bots.get(bot as usize)
    }

    /// Milliseconds to the next arrival: exponential with the arrival rate's mean.
    fn arrival_gap(&mut self) -> i64 {
        let mean = MINUTE as f64 / f64::from(self.settings.arrivals_per_minute.max(1));
        let u: f64 = self.rng.r#gen();
        // 1 - u is in (0, 1], so the logarithm is finite; at least 1 ms keeps time moving.
        ((-(1.0 - u).ln() * mean) as i64).max(1)
    }

    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.gen_range(lo..=hi)
    }

    fn chance(&mut self, permille: u32) -> bool {
        self.rng.gen_ratio(permille.min(1000), 1000)
    }

    fn schedule(&mut self, at: i64, bot: BotId, visit: u32, intent: Intent) {
        self.next_seq += 1;
        self.timers.push(Timer {
            at,
            seq: self.next_seq,
            bot,
            visit,
            intent,
        });
    }

    fn arrive(&mut self, now: i64, out: &mut Vec<BotAction>) {
        let free: Vec<BotId> = (0..self.bots.len() as BotId)
            .filter(|&id| {
                let bot = &self.bots[id as usize];
                bot.present.is_none() && bot.away_until <= now
            })
            .collect();
        // Nobody free (everyone is in, or resting): this arrival does not happen.
        let Some(&id) = free.choose(&mut self.rng) else {
            return;
        };
        let s = self.settings;
        self.visits_started = self.visits_started.wrapping_add(1);
        let visit = Visit {
            number: self.visits_started,
            commenter: self.chance(s.comment.get()),
            buyer: self.chance(s.buy.get()),
            bought: false,
        };
        let liker = self.chance(s.like.get());
        let bot = &mut self.bots[id as usize];
        bot.present = Some(visit);
        out.push(BotAction::Arrive(id));
        let stay = i64::from(s.stay_minutes) * MINUTE;
        let leave_at = now + self.between(stay / 2, stay * 3 / 2);
        self.schedule(leave_at, id, visit.number, Intent::Leave);
        if liker {
            let at = now + self.between(2 * SECOND, 15 * SECOND);
            self.schedule(at, id, visit.number, Intent::Like);
        }
        if visit.commenter {
            let at = now + self.between(3 * SECOND, 30 * SECOND);
            self.schedule(at, id, visit.number, Intent::Greet);
        }
        if visit.buyer {
            // A product being explained gets a buyer going soon; otherwise some time in the
            // first part of the visit.
            let at = if self.offer.pinned.is_some() {
                now + self.between(5 * SECOND, 40 * SECOND)
            } else {
                now + self.between(20 * SECOND, (stay * 3 / 5).max(30 * SECOND))
            };
            self.schedule(at, id, visit.number, Intent::Buy(None));
        }
        self.consider_offer(id, visit, now);
    }

    /// A bot in the room looks at red packets, coupons, lucky bags and flash sales it has not
    /// considered yet.
    fn consider_offer(&mut self, id: BotId, visit: Visit, now: i64) {
        let packets = self.offer.red_packets.clone();
        for packet in packets {
            if self.seen.insert((id, Seen::Packet(packet))) && self.chance(GRAB_PERMILLE) {
                let at = now + self.between(300, 5 * SECOND);
                self.schedule(at, id, visit.number, Intent::Grab(packet));
            }
        }
        let coupons = self.offer.coupons.clone();
        for coupon in coupons {
            let permille = if visit.buyer {
                COUPON_BUYER_PERMILLE
            } else {
                COUPON_OTHER_PERMILLE
            };
            if self.seen.insert((id, Seen::Coupon(coupon))) && self.chance(permille) {
                let at = now + self.between(SECOND, 15 * SECOND);
                self.schedule(at, id, visit.number, Intent::Claim(coupon));
            }
        }
        let bags: Vec<(i64, i64)> = self
            .offer
            .lucky_bags
            .iter()
            .map(|b| (b.id, b.draws_at))
            .collect();
        for (bag, draws_at) in bags {
            if self.seen.insert((id, Seen::Bag(bag))) && self.chance(LUCKY_BAG_PERMILLE) {
                let at = now + self.between(SECOND, 20 * SECOND);
                // Too late for the draw: a viewer would not bother either.
                if at < draws_at {
                    self.schedule(at, id, visit.number, Intent::Keyword(bag));
                }
            }
        }
        let sales = self.offer.flash_sales.clone();
        let permille = self.settings.buy.get().saturating_mul(2);
        for sale in sales {
            if now < sale.ends_at
                && self.seen.insert((id, Seen::Sale(sale.id)))
                && self.chance(permille)
            {
                let at = now.max(sale.starts_at) + self.between(200, 8 * SECOND);
                if at < sale.ends_at {
                    self.schedule(at, id, visit.number, Intent::Buy(Some(sale.id)));
                }
            }
        }
    }

    fn fire(&mut self, timer: Timer, out: &mut Vec<BotAction>) {
        let id = timer.bot;
        if let Intent::Pay(order) = timer.intent {
            out.push(BotAction::Pay { bot: id, order });
            return;
        }
        let Some(visit) = self.bot(id).and_then(|b| b.present) else {
            return;
        };
        if visit.number != timer.visit {
            return;
        }
        let now = timer.at;
        match timer.intent {
            Intent::Leave => {
                let rest = self.between(MINUTE, 10 * MINUTE);
                let bot = &mut self.bots[id as usize];
                bot.present = None;
                bot.away_until = now + rest;
                out.push(BotAction::Leave(id));
            }
            Intent::Like => {
                let taps = self.rng.gen_range(1..=12);
                out.push(BotAction::Like { bot: id, taps });
                let at = now + self.between(4 * SECOND, 20 * SECOND);
                self.schedule(at, id, visit.number, Intent::Like);
            }
            Intent::Greet | Intent::Comment => {
                let text = if timer.intent == Intent::Greet && self.rng.gen_ratio(1, 2) {
                    self.pick(GREETINGS).to_owned()
                } else {
                    self.chatter()
                };
                out.push(BotAction::Comment { bot: id, text });
                let at = now + self.between(25 * SECOND, 90 * SECOND);
                self.schedule(at, id, visit.number, Intent::Comment);
            }
            Intent::Say(lines) => {
                let text = self.pick(lines).to_owned();
                out.push(BotAction::Comment { bot: id, text });
            }
            Intent::Buy(sale) => self.buy(id, visit, sale, now, out),
            Intent::Grab(packet) => {
                if self.offer.red_packets.contains(&packet) {
                    out.push(BotAction::GrabRedPacket { bot: id, packet });
                }
            }
            Intent::Claim(coupon) => {
                if self.offer.coupons.contains(&coupon) {
                    out.push(BotAction::ClaimCoupon { bot: id, coupon });
                }
            }
            Intent::Keyword(bag) => {
                if let Some(b) = self.offer.lucky_bags.iter().find(|b| b.id == bag)
                    && now < b.draws_at
                {
                    out.push(BotAction::CommentKeyword {
                        bot: id,
                        bag,
                        text: b.keyword.clone(),
                    });
                }
            }
            // Handled before the presence check.
            Intent::Pay(_) => {}
        }
    }

    fn buy(
        &mut self,
        id: BotId,
        visit: Visit,
        sale: Option<i64>,
        now: i64,
        out: &mut Vec<BotAction>,
    ) {
        let open_sale = |s: &OfferedSale| s.starts_at <= now && now < s.ends_at;
        if let Some(sale) = sale {
            // Drawn in by a flash sale: that sale or nothing (it may be over by now).
            let found = self
                .offer
                .flash_sales
                .iter()
                .find(|s| s.id == sale && open_sale(s))
                .map(|s| s.sku);
            if let Some(sku) = found {
                self.mark_bought(id, true);
                out.push(BotAction::Buy {
                    bot: id,
                    sku,
                    flash_sale: Some(sale),
                });
            }
            return;
        }
        if visit.bought {
            return;
        }
        // Flash sales are bought only by the bots they drew in (above).
        let target = if let Some(p) = self.offer.pinned.as_ref().filter(|p| !p.skus.is_empty()) {
            let skus = p.skus.clone();
            skus.choose(&mut self.rng).map(|&sku| (sku, None))
        } else if !self.offer.shelf.is_empty() && self.chance(SHELF_BUY_PERMILLE) {
            let skus: Vec<i64> = self
                .offer
                .shelf
                .iter()
                .flat_map(|p| p.skus.clone())
                .collect();
            skus.choose(&mut self.rng).map(|&sku| (sku, None))
        } else {
            None
        };
        match target {
            Some((sku, flash_sale)) => {
                self.mark_bought(id, true);
                out.push(BotAction::Buy {
                    bot: id,
                    sku,
                    flash_sale,
                });
            }
            None => {
                // Nothing worth buying yet: look again later in the visit.
                let at = now + self.between(30 * SECOND, 90 * SECOND);
                self.schedule(at, id, visit.number, Intent::Buy(None));
            }
        }
    }

    fn mark_bought(&mut self, id: BotId, bought: bool) {
        if let Some(visit) = self
            .bots
            .get_mut(id as usize)
            .and_then(|b| b.present.as_mut())
        {
            visit.bought = bought;
        }
    }

    fn pick(&mut self, lines: &'static [&'static str]) -> &'static str {
        lines.choose(&mut self.rng).copied().unwrap_or("👍")
    }

    /// A comment: about the product being explained four times in ten, else general chatter.
    fn chatter(&mut self) -> String {
        if let Some(title) = self.offer.pinned.as_ref().map(|p| p.title.clone())
            && self.rng.gen_ratio(2, 5)
        {
            return self.pick(ABOUT_PRODUCT).replace("{}", &title);
        }
        self.pick(CHATTER).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(count: i64, per_minute: i64, like: f64, comment: f64, buy: f64) -> CrowdSettings {
        CrowdSettings::parse(count, per_minute, like, comment, buy, 10).unwrap()
    }

    /// Runs the crowd from `from` to `to` in steps of `step` ms, answering every buy with an
    /// order; returns every action.
    fn run(crowd: &mut BotCrowd, from: i64, to: i64, step: i64) -> Vec<BotAction> {
        let mut all = Vec::new();
        let mut now = from;
        let mut order = 0;
        while now <= to {
            for action in crowd.poll(now) {
                if let BotAction::Buy { bot, .. } = action {
                    order += 1;
                    crowd.ordered(bot, order, now);
                }
                all.push(action);
            }
            now += step;
        }
        all
    }

    fn arrivals(actions: &[BotAction]) -> usize {
        actions
            .iter()
            .filter(|a| matches!(a, BotAction::Arrive(_)))
            .count()
    }

    fn pinned_offer() -> Offer {
        let product = OfferedProduct {
            id: 7,
            title: "赣南脐橙".into(),
            skus: vec![71, 72],
        };
        Offer {
            pinned: Some(product.clone()),
            shelf: vec![product],
            ..Offer::default()
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(CrowdSettings::parse(1, 1, 0.0, 0.0, 0.0, 1).is_ok());
        assert!(CrowdSettings::parse(500, 600, 1.0, 1.0, 1.0, 240).is_ok());
        assert_eq!(
            CrowdSettings::parse(0, 10, 0.5, 0.5, 0.5, 10),
            Err(SettingsError::Count)
        );
        assert_eq!(
            CrowdSettings::parse(501, 10, 0.5, 0.5, 0.5, 10),
            Err(SettingsError::Count)
        );
        assert_eq!(
            CrowdSettings::parse(10, 0, 0.5, 0.5, 0.5, 10),
            Err(SettingsError::ArrivalRate)
        );
        assert_eq!(
            CrowdSettings::parse(10, 601, 0.5, 0.5, 0.5, 10),
            Err(SettingsError::ArrivalRate)
        );
        assert_eq!(
            CrowdSettings::parse(10, 10, 1.5, 0.5, 0.5, 10),
            Err(SettingsError::Rate(RateKind::Like))
        );
        assert_eq!(
            CrowdSettings::parse(10, 10, 0.5, -0.1, 0.5, 10),
            Err(SettingsError::Rate(RateKind::Comment))
        );
        assert_eq!(
            CrowdSettings::parse(10, 10, 0.5, 0.5, f64::NAN, 10),
            Err(SettingsError::Rate(RateKind::Buy))
        );
        assert_eq!(
            CrowdSettings::parse(10, 10, 0.5, 0.5, 0.5, 0),
            Err(SettingsError::Stay)
        );
        let s = CrowdSettings::parse(10, 10, 0.3334, 0.5, 1.0, 10).unwrap();
        assert_eq!(s.like.get(), 333);
        assert_eq!(s.buy.as_rate(), 1.0);
    }

    #[test]
    fn bots_arrive_over_time_at_the_rate() {
        for seed in 0..20 {
            let mut crowd = BotCrowd::new(settings(100, 60, 0.5, 0.5, 0.0), seed, 0);
            // Nobody is there at the start: they come one by one.
            assert!(crowd.poll(0).is_empty());
            let first_minute = run(&mut crowd, 0, MINUTE, 100);
            let n = arrivals(&first_minute);
            // Poisson with mean 60: 40..=80 is more than four standard deviations wide.
            assert!((40..=80).contains(&n), "seed {seed}: {n} arrivals");
            assert_eq!(crowd.present() as usize, n, "nobody leaves within a minute");
        }
    }

    #[test]
    fn no_more_than_count_are_in_the_room() {
        let mut crowd = BotCrowd::new(settings(20, 600, 0.0, 0.0, 0.0), 3, 0);
        run(&mut crowd, 0, 2 * MINUTE, 500);
        assert_eq!(crowd.present(), 20);
    }

    #[test]
    fn bots_leave_and_come_back() {
        let mut crowd = BotCrowd::new(settings(5, 60, 0.0, 0.0, 0.0), 11, 0);
        let actions = run(&mut crowd, 0, 60 * MINUTE, 1000);
        let leaves = actions
            .iter()
            .filter(|a| matches!(a, BotAction::Leave(_)))
            .count();
        assert!(
            leaves >= 10,
            "{leaves} leaves in an hour of 10-minute stays"
        );
        // Someone came back: more arrivals than bots.
        assert!(arrivals(&actions) > 5);
        // Arrivals and leaves alternate per bot.
        let mut inside = HashSet::new();
        for a in &actions {
            match a {
                BotAction::Arrive(b) => assert!(inside.insert(*b), "bot {b} arrived twice"),
                BotAction::Leave(b) => assert!(inside.remove(b), "bot {b} left while away"),
                _ => {}
            }
        }
    }

    #[test]
    fn a_removed_bots_timers_do_not_drive_its_successor() {
        let mut crowd = BotCrowd::new(settings(5, 600, 1.0, 0.0, 0.0), 17, 0);
        run(&mut crowd, 0, 5 * SECOND, 100);
        assert_eq!(crowd.present(), 5);
        // Down to one and straight back up: the new bots reuse the ids while the removed
        // ones' like and leave timers are still pending.
        crowd.update(settings(1, 600, 1.0, 0.0, 0.0), 5 * SECOND);
        crowd.update(settings(5, 600, 1.0, 0.0, 0.0), 5 * SECOND);
        // One like chain per visit: a bot's likes are at least 4 s apart.
        let mut last_like = std::collections::HashMap::<BotId, i64>::new();
        let mut likes = 0;
        let mut now = 5 * SECOND;
        while now <= 3 * MINUTE {
            for action in crowd.poll(now) {
                if let BotAction::Like { bot, .. } = action {
                    likes += 1;
                    if let Some(prev) = last_like.insert(bot, now) {
                        assert!(
                            now - prev >= 4 * SECOND,
                            "bot {bot} liked {} ms after its last like",
                            now - prev
                        );
                    }
                }
            }
            now += 100;
        }
        assert!(likes > 20, "the new bots like ({likes})");
    }

    #[test]
    fn only_present_bots_act() {
        let mut crowd = BotCrowd::new(settings(30, 120, 1.0, 1.0, 1.0), 5, 0);
        crowd.set_offer(pinned_offer(), 0);
        let mut inside = HashSet::new();
        let mut now = 0;
        let mut order = 0;
        while now <= 30 * MINUTE {
            for a in crowd.poll(now) {
                match a {
                    BotAction::Arrive(b) => {
                        inside.insert(b);
                    }
                    BotAction::Leave(b) => {
                        inside.remove(&b);
                    }
                    BotAction::Like { bot, .. } | BotAction::Comment { bot, .. } => {
                        assert!(inside.contains(&bot), "bot {bot} acted while away");
                    }
                    BotAction::Buy { bot, .. } => {
                        assert!(inside.contains(&bot), "bot {bot} bought while away");
                        order += 1;
                        crowd.ordered(bot, order, now);
                    }
                    _ => {}
                }
            }
            now += 250;
        }
    }

    #[test]
    fn rates_of_zero_mean_nothing_happens_but_arrivals() {
        let mut crowd = BotCrowd::new(settings(50, 60, 0.0, 0.0, 0.0), 9, 0);
        crowd.set_offer(
            Offer {
                flash_sales: vec![OfferedSale {
                    id: 3,
                    sku: 71,
                    starts_at: 0,
                    ends_at: 10 * MINUTE,
                }],
                ..pinned_offer()
            },
            0,
        );
        let actions = run(&mut crowd, 0, 20 * MINUTE, 500);
        assert!(arrivals(&actions) > 0);
        assert!(
            actions
                .iter()
                .all(|a| matches!(a, BotAction::Arrive(_) | BotAction::Leave(_)))
        );
    }

    #[test]
    fn buy_rate_zero_never_buys() {
        for seed in 0..5 {
            let mut crowd = BotCrowd::new(settings(100, 300, 1.0, 1.0, 0.0), seed, 0);
            crowd.set_offer(pinned_offer(), 0);
            let actions = run(&mut crowd, 0, 30 * MINUTE, 500);
            assert!(
                !actions
                    .iter()
                    .any(|a| matches!(a, BotAction::Buy { .. } | BotAction::Pay { .. })),
                "seed {seed}"
            );
            assert!(actions.iter().any(|a| matches!(a, BotAction::Like { .. })));
            assert!(
                actions
                    .iter()
                    .any(|a| matches!(a, BotAction::Comment { .. }))
            );
        }
    }

    #[test]
    fn buyers_buy_the_pinned_product_once_per_visit_and_pay() {
        let mut crowd = BotCrowd::new(settings(40, 600, 0.0, 0.0, 1.0), 21, 0);
        crowd.set_offer(pinned_offer(), 0);
        let actions = run(&mut crowd, 0, 4 * MINUTE, 200);
        let buys: Vec<(BotId, i64)> = actions
            .iter()
            .filter_map(|a| match a {
                BotAction::Buy {
                    bot,
                    sku,
                    flash_sale: None,
                } => Some((*bot, *sku)),
                _ => None,
            })
            .collect();
        // Everyone arrived within seconds and means to buy; the pinned product draws them
        // within half a minute of their arrival, and within a 5-minute stay nobody left yet.
        assert_eq!(buys.len(), 40, "{buys:?}");
        assert!(buys.iter().all(|(_, sku)| [71, 72].contains(sku)));
        let bots: HashSet<BotId> = buys.iter().map(|(b, _)| *b).collect();
        assert_eq!(bots.len(), 40, "one order per bot and visit");
        let pays = actions
            .iter()
            .filter(|a| matches!(a, BotAction::Pay { .. }))
            .count();
        assert_eq!(pays, 40, "every order is paid");
    }

    #[test]
    fn a_flash_sale_brings_a_rush_when_it_opens() {
        let mut crowd = BotCrowd::new(settings(50, 600, 0.0, 0.0, 0.5), 8, 0);
        run(&mut crowd, 0, 20 * SECOND, 100);
        assert_eq!(crowd.present(), 50);
        let opens = 30 * SECOND;
        crowd.set_offer(
            Offer {
                flash_sales: vec![OfferedSale {
                    id: 9,
                    sku: 71,
                    starts_at: opens,
                    ends_at: opens + MINUTE,
                }],
                ..Offer::default()
            },
            20 * SECOND,
        );
        let actions = run(&mut crowd, 20 * SECOND + 100, opens + MINUTE, 100);
        let mut sale_buys = 0;
        for a in &actions {
            if let BotAction::Buy {
                flash_sale: Some(9),
                sku,
                ..
            } = a
            {
                assert_eq!(*sku, 71);
                sale_buys += 1;
            }
        }
        // Twice the buy rate: everyone tries, within seconds of the opening.
        assert_eq!(sale_buys, 50);
    }

    #[test]
    fn flash_sale_buys_wait_for_the_opening() {
        let mut crowd = BotCrowd::new(settings(10, 600, 0.0, 0.0, 1.0), 4, 0);
        run(&mut crowd, 0, 10 * SECOND, 100);
        let opens = 60 * SECOND;
        crowd.set_offer(
            Offer {
                flash_sales: vec![OfferedSale {
                    id: 9,
                    sku: 71,
                    starts_at: opens,
                    ends_at: opens + MINUTE,
                }],
                ..Offer::default()
            },
            10 * SECOND,
        );
        let mut now = 10 * SECOND;
        while now < opens {
            let early: Vec<_> = crowd
                .poll(now)
                .into_iter()
                .filter(|a| {
                    matches!(
                        a,
                        BotAction::Buy {
                            flash_sale: Some(_),
                            ..
                        }
                    )
                })
                .collect();
            assert!(early.is_empty(), "bought before the opening at {now}");
            now += 100;
        }
        let rush = run(&mut crowd, opens, opens + 9 * SECOND, 100);
        let n = rush
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    BotAction::Buy {
                        flash_sale: Some(9),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(n, 10, "all within nine seconds of the opening");
    }

    #[test]
    fn red_packets_coupons_and_lucky_bags_are_taken_up() {
        let mut crowd = BotCrowd::new(settings(100, 600, 0.0, 0.0, 0.0), 2, 0);
        run(&mut crowd, 0, 30 * SECOND, 100);
        assert_eq!(crowd.present(), 100);
        crowd.set_offer(
            Offer {
                red_packets: vec![5],
                coupons: vec![6],
                lucky_bags: vec![OfferedBag {
                    id: 4,
                    keyword: "想要脐橙".into(),
                    draws_at: 5 * MINUTE,
                }],
                ..Offer::default()
            },
            30 * SECOND,
        );
        let actions = run(&mut crowd, 30 * SECOND, MINUTE, 100);
        let grabs = actions
            .iter()
            .filter(|a| matches!(a, BotAction::GrabRedPacket { packet: 5, .. }))
            .count();
        let claims = actions
            .iter()
            .filter(|a| matches!(a, BotAction::ClaimCoupon { coupon: 6, .. }))
            .count();
        let keywords: Vec<&String> = actions
            .iter()
            .filter_map(|a| match a {
                BotAction::CommentKeyword { bag: 4, text, .. } => Some(text),
                _ => None,
            })
            .collect();
        assert!((65..=95).contains(&grabs), "{grabs} grabs");
        assert!((10..=45).contains(&claims), "{claims} claims");
        assert!(
            (55..=85).contains(&keywords.len()),
            "{} entries",
            keywords.len()
        );
        assert!(keywords.iter().all(|t| t.as_str() == "想要脐橙"));
        // Each bot considers each thing once.
        crowd.set_offer(
            Offer {
                red_packets: vec![5],
                ..Offer::default()
            },
            MINUTE,
        );
        let again = run(&mut crowd, MINUTE, 2 * MINUTE, 100);
        assert!(
            !again
                .iter()
                .any(|a| matches!(a, BotAction::GrabRedPacket { .. }))
        );
    }

    #[test]
    fn a_packet_gone_from_the_offer_is_not_grabbed() {
        let mut crowd = BotCrowd::new(settings(50, 600, 0.0, 0.0, 0.0), 6, 0);
        run(&mut crowd, 0, 20 * SECOND, 100);
        let offer = Offer {
            red_packets: vec![5],
            ..Offer::default()
        };
        crowd.set_offer(offer, 20 * SECOND);
        // Emptied before anyone's reaction time passed.
        crowd.set_offer(Offer::default(), 20 * SECOND + 100);
        let actions = run(&mut crowd, 20 * SECOND + 300, MINUTE, 100);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, BotAction::GrabRedPacket { .. }))
        );
    }

    #[test]
    fn comments_are_short_and_about_the_pinned_product_sometimes() {
        let mut crowd = BotCrowd::new(settings(50, 600, 0.0, 1.0, 0.0), 13, 0);
        crowd.set_offer(pinned_offer(), 0);
        let actions = run(&mut crowd, 0, 10 * MINUTE, 500);
        let comments: Vec<&String> = actions
            .iter()
            .filter_map(|a| match a {
                BotAction::Comment { text, .. } => Some(text),
                _ => None,
            })
            .collect();
        assert!(comments.len() > 100, "{} comments", comments.len());
        assert!(comments.iter().all(|t| t.chars().count() <= 40));
        assert!(comments.iter().any(|t| t.contains("赣南脐橙")));
        assert!(comments.iter().any(|t| !t.contains("赣南脐橙")));
    }

    #[test]
    fn stop_ends_everything() {
        let mut crowd = BotCrowd::new(settings(30, 600, 1.0, 1.0, 1.0), 1, 0);
        crowd.set_offer(pinned_offer(), 0);
        run(&mut crowd, 0, MINUTE, 100);
        let present = crowd.present();
        assert!(present > 0);
        let leaves = crowd.stop();
        assert_eq!(leaves.len() as u32, present);
        assert!(leaves.iter().all(|a| matches!(a, BotAction::Leave(_))));
        assert_eq!(crowd.present(), 0);
        assert_eq!(crowd.next_wake(MINUTE), None);
        crowd.set_offer(
            Offer {
                red_packets: vec![1],
                ..pinned_offer()
            },
            MINUTE,
        );
        crowd.ordered(0, 99, MINUTE);
        assert!(run(&mut crowd, MINUTE, 30 * MINUTE, 1000).is_empty());
        assert!(crowd.stop().is_empty());
    }

    #[test]
    fn a_smaller_count_sends_the_extra_bots_away() {
        let mut crowd = BotCrowd::new(settings(30, 600, 0.0, 0.0, 0.0), 17, 0);
        run(&mut crowd, 0, MINUTE, 100);
        assert_eq!(crowd.present(), 30);
        crowd.update(settings(10, 600, 0.0, 0.0, 0.0), MINUTE);
        assert_eq!(crowd.next_wake(MINUTE), Some(MINUTE));
        let leaves = crowd.poll(MINUTE);
        assert_eq!(leaves.len(), 20);
        assert!(
            leaves
                .iter()
                .all(|a| matches!(a, BotAction::Leave(b) if *b >= 10))
        );
        assert_eq!(crowd.present(), 10);
        // And a larger one lets more in.
        crowd.update(settings(25, 600, 0.0, 0.0, 0.0), MINUTE);
        run(&mut crowd, MINUTE, 2 * MINUTE, 100);
        assert_eq!(crowd.present(), 25);
    }

    #[test]
    fn the_same_seed_gives_the_same_crowd() {
        let play = |seed| {
            let mut crowd = BotCrowd::new(settings(60, 120, 0.6, 0.4, 0.3), seed, 1_000);
            crowd.set_offer(pinned_offer(), 1_000);
            run(&mut crowd, 1_000, 15 * MINUTE, 250)
        };
        assert_eq!(play(42), play(42));
        assert_ne!(play(42), play(43));
    }

    #[test]
    fn next_wake_says_when_there_is_work() {
        let mut crowd = BotCrowd::new(settings(10, 60, 1.0, 1.0, 0.0), 3, 0);
        let mut now = 0;
        let mut woke = 0;
        while now < 5 * MINUTE {
            let Some(wake) = crowd.next_wake(now) else {
                panic!("a running crowd always has a next wake");
            };
            assert!(wake >= now);
            now = wake;
            if !crowd.poll(now).is_empty() {
                woke += 1;
            }
            now += 1;
        }
        assert!(woke > 20, "{woke}");
    }

    #[test]
    fn nicknames_are_buyers_and_distinct_within_a_pool() {
        assert_eq!(nickname(0), "买家·小橙子");
        let names: HashSet<String> = (0..MAX_BOTS).map(nickname).collect();
        assert_eq!(names.len(), MAX_BOTS as usize);
        assert!(names.iter().all(|n| n.starts_with("买家·")));
        assert!(names.iter().all(|n| n.chars().count() <= 50));
    }
}
