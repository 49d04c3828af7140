//! The short diagnosis of a live session's report: what worked and what to improve, from its
//! numbers, in the terms a trainee host is taught (留人 retention, 互动 interaction, 转化
//! conversion, 成交 sales). Rules, not a model: every sentence can be traced to a threshold.

use serde::{Deserialize, Serialize};

/// The numbers a diagnosis reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionNumbers {
    pub duration_ms: i64,
    pub unique_viewers: i64,
    pub peak_viewers: i64,
    pub avg_watch_ms: i64,
    pub likes: i64,
    pub comments: i64,
    pub orders: i64,
    pub paid_orders: i64,
    pub buyers: i64,
    pub gmv_cents: i64,
    pub red_packets: i64,
    pub coupons_claimed: i64,
    pub flash_sales: i64,
    pub lucky_bags: i64,
    /// Of `lucky_bags`, those entered by watching (task `watch`) rather than by a keyword.
    pub watch_lucky_bags: i64,
    /// Buyer bots among the unique viewers (simulated traffic).
    pub bot_viewers: i64,
    /// The best-selling product and its share of the GMV (0–1).
    pub top_product: Option<(String, f64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Diagnosis {
    pub worked: Vec<String>,
    pub improve: Vec<String>,
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Paid buyers over unique viewers (0 when nobody watched).
pub fn conversion(n: &SessionNumbers) -> f64 {
    if n.unique_viewers <= 0 {
        0.0
    } else {
        n.buyers as f64 / n.unique_viewers as f64
    }
}

pub fn diagnose(n: &SessionNumbers) -> Diagnosis {
    let mut d = Diagnosis::default();
    if n.unique_viewers == 0 {
        d.improve
            .push("本场没有观众进入直播间：开播前在班级群预告时间和福利，邀请同学进场".into());
        return d;
    }
    // Simulated traffic is said first, so nobody mistakes the numbers below for real viewers'.
    if n.bot_viewers > 0 {
        d.improve.push(format!(
            "本场 {} 位观众中有 {} 位是模拟买家（{}）：互动和成交数字含模拟流量，邀请同学进场才能检验真实效果",
            n.unique_viewers,
            n.bot_viewers,
            percent(n.bot_viewers as f64 / n.unique_viewers as f64)
        ));
    }
    let minutes = n.duration_ms as f64 / 60_000.0;
    // Retention: average watch time against the live's length.
    let watch_s = n.avg_watch_ms / 1000;
    let retained = watch_s >= 180 || (n.duration_ms > 0 && n.avg_watch_ms * 2 >= n.duration_ms);
    if retained {
        d.worked.push(format!(
            "留人效果好：人均观看 {} 分 {} 秒",
            watch_s / 60,
            watch_s % 60
        ));
    } else if watch_s < 60 {
        d.improve.push(format!(
            "人均观看仅 {watch_s} 秒：开场 3 分钟内抛出福利（红包、福袋）并预告爆款，留住刚进来的观众"
        ));
    }
    // Interaction: comments per viewer, likes.
    let comments_per_viewer = n.comments as f64 / n.unique_viewers as f64;
    if comments_per_viewer >= 2.0 {
        d.worked.push(format!(
            "互动活跃：共 {} 条评论，人均 {:.1} 条",
            n.comments, comments_per_viewer
        ));
    } else if comments_per_viewer < 0.5 {
        d.improve
            .push("评论较少：多提问、引导“扣1”、及时回复评论区的问题，把观众拉进对话".into());
    }
    if n.likes >= n.unique_viewers * 20 {
        d.worked.push(format!("点赞热烈：{} 次点赞", n.likes));
    }
    if n.red_packets + n.lucky_bags == 0 && minutes >= 10.0 {
        d.improve
            .push("整场没有红包或福袋：在人气下滑时发一个，能明显拉长停留时间".into());
    } else {
        // Each task says what it is for: a keyword brings comments, a watch task keeps people.
        if n.lucky_bags > n.watch_lucky_bags && comments_per_viewer >= 1.0 {
            d.worked.push("福袋口令带动了评论互动".into());
        }
        if n.watch_lucky_bags > 0 && retained {
            d.worked.push("观看时长福袋帮助留住了观众".into());
        }
    }
    // Conversion and sales.
    let conversion = conversion(n);
    if n.paid_orders == 0 {
        if n.orders > 0 {
            d.improve.push(format!(
                "有 {} 笔下单但没有一笔付款：讲清付款方式和售后保障，提醒观众尽快付款",
                n.orders
            ));
        } else {
            d.improve.push(
                "本场没有成交：讲解时突出卖点和价格优势，配合秒杀或优惠券给出下单理由".into(),
            );
        }
    } else {
        if conversion >= 0.1 {
            d.worked.push(format!(
                "转化率 {}，{} 人下单付款",
                percent(conversion),
                n.buyers
            ));
        } else if conversion < 0.03 {
            d.improve.push(format!(
                "转化率仅 {}：讲解中反复点出“讲解中”商品，限时限量的秒杀能促成犹豫的观众下单",
                percent(conversion)
            ));
        }
        let unpaid = n.orders - n.paid_orders;
        if n.orders >= 4 && unpaid * 3 >= n.orders {
            d.improve.push(format!(
                "{unpaid} 笔订单未付款：下单后提醒付款时限，避免订单超时取消"
            ));
        }
        if let Some((title, share)) = &n.top_product
            && *share >= 0.5
        {
            d.worked
                .push(format!("爆款“{title}”贡献了 {} 的成交额", percent(*share)));
        }
    }
    if n.flash_sales > 0 && n.paid_orders > 0 {
        d.worked.push("秒杀带动了成交".into());
    }
    if n.coupons_claimed > 0 && n.paid_orders == 0 {
        d.improve
            .push("优惠券被领取却没有转化为订单：提醒观众券的有效期和使用门槛".into());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_room_says_so() {
        let d = diagnose(&SessionNumbers::default());
        assert!(d.worked.is_empty());
        assert_eq!(d.improve.len(), 1);
        assert!(d.improve[0].contains("没有观众"));
    }

    #[test]
    fn simulated_viewers_are_named_first() {
        let d = diagnose(&SessionNumbers {
            unique_viewers: 40,
            bot_viewers: 30,
            ..Default::default()
        });
        assert!(
            d.improve[0].contains("40 位观众中有 30 位是模拟买家（75.0%）"),
            "{d:?}"
        );
        let d = diagnose(&SessionNumbers {
            unique_viewers: 40,
            ..Default::default()
        });
        assert!(!d.improve.iter().any(|s| s.contains("模拟买家")), "{d:?}");
    }

    #[test]
    fn a_good_session_is_praised_and_a_weak_one_gets_advice() {
        let good = SessionNumbers {
            duration_ms: 30 * 60_000,
            unique_viewers: 20,
            avg_watch_ms: 15 * 60_000,
            likes: 1000,
            comments: 60,
            orders: 6,
            paid_orders: 6,
            buyers: 5,
            gmv_cents: 60_000,
            red_packets: 1,
            flash_sales: 1,
            top_product: Some(("蓝莓干".into(), 0.8)),
            ..Default::default()
        };
        let d = diagnose(&good);
        assert!(d.worked.iter().any(|w| w.contains("留人")), "{d:?}");
        assert!(d.worked.iter().any(|w| w.contains("转化率 25.0%")), "{d:?}");
        assert!(d.worked.iter().any(|w| w.contains("爆款")), "{d:?}");
        assert!(d.improve.is_empty(), "{d:?}");

        let weak = SessionNumbers {
            duration_ms: 30 * 60_000,
            unique_viewers: 40,
            avg_watch_ms: 20_000,
            comments: 5,
            orders: 3,
            ..Default::default()
        };
        let d = diagnose(&weak);
        assert!(
            d.improve.iter().any(|w| w.contains("人均观看仅 20 秒")),
            "{d:?}"
        );
        assert!(d.improve.iter().any(|w| w.contains("评论较少")), "{d:?}");
        assert!(
            d.improve.iter().any(|w| w.contains("没有一笔付款")),
            "{d:?}"
        );
        assert!(d.improve.iter().any(|w| w.contains("红包或福袋")), "{d:?}");
        assert!(d.worked.is_empty(), "{d:?}");
    }

    #[test]
    fn each_lucky_bag_task_is_credited_for_what_it_does() {
        let lively = SessionNumbers {
            duration_ms: 30 * 60_000,
            unique_viewers: 20,
            avg_watch_ms: 15 * 60_000,
            comments: 30,
            lucky_bags: 1,
            ..Default::default()
        };
        let d = diagnose(&lively);
        assert!(d.worked.iter().any(|w| w.contains("福袋口令")), "{d:?}");
        assert!(
            !d.worked.iter().any(|w| w.contains("观看时长福袋")),
            "{d:?}"
        );
        let watched = SessionNumbers {
            watch_lucky_bags: 1,
            ..lively.clone()
        };
        let d = diagnose(&watched);
        assert!(d.worked.iter().any(|w| w.contains("观看时长福袋")), "{d:?}");
        assert!(!d.worked.iter().any(|w| w.contains("口令")), "{d:?}");
        // A watch bag that did not keep anyone is not praised.
        let d = diagnose(&SessionNumbers {
            avg_watch_ms: 30_000,
            ..watched
        });
        assert!(!d.worked.iter().any(|w| w.contains("福袋")), "{d:?}");
    }
}
