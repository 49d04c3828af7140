//! The live script's rules, sans IO: the script document and its checks, the prompt an
//! OpenAI-compatible model is given, the parser of the model's answer, and the built-in template
//! generator that writes a script from the same facts when no model is configured.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A live script (直播脚本): an opening, one segment per product, a closing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiveScript {
    pub title: String,
    /// Greeting, who the host is, what today brings (agenda and perks).
    pub opening: String,
    pub segments: Vec<Segment>,
    /// Recap, next-show preview (下期预告), asking viewers to follow (关注).
    pub closing: String,
}

/// One product's part of the show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Segment {
    /// The product explained (one of the caller's), when the segment is about one.
    #[serde(default, deserialize_with = "lenient::id")]
    pub product_id: Option<i64>,
    /// The product's name as the host says it.
    pub product: String,
    #[serde(default)]
    pub selling_points: Vec<String>,
    /// What the host says (讲解话术).
    #[serde(default)]
    pub talk: String,
    /// Interaction prompts: 扣 1, 点赞到 X 万, 评论区问答 …
    #[serde(default)]
    pub interaction: Vec<String>,
    /// When and how to run a selling tool here (秒杀、红包、优惠券、福袋).
    #[serde(default)]
    pub activity_cue: Option<String>,
    #[serde(deserialize_with = "lenient::minutes")]
    pub duration_minutes: u32,
}

/// Models sometimes quote numbers or write `10.0`: ids and minutes accept those too.
mod lenient {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
        Text(String),
    }

    impl Number {
        fn whole(self) -> Option<i64> {
            match self {
                Number::Int(i) => Some(i),
                Number::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => {
                    Some(f as i64)
                }
                Number::Float(_) => None,
                Number::Text(s) => s.trim().parse().ok(),
            }
        }
    }

    /// An id that is not a whole number is no id (the segment's product is then found by name).
    pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(Option::<Number>::deserialize(d)?.and_then(Number::whole))
    }

    pub fn minutes<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        Number::deserialize(d)?
            .whole()
            .and_then(|m| u32::try_from(m).ok())
            .ok_or_else(|| D::Error::custom("duration_minutes must be a whole number of minutes"))
    }
}

/// A product as the script needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductFacts {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub skus: Vec<SkuFacts>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SkuFacts {
    pub spec: String,
    pub price_cents: i64,
    pub stock: i64,
}

/// A selling tool the host plans to run during the show, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Activity {
    /// 限时秒杀 of one of the script's products.
    FlashSale {
        product_id: i64,
        price_cents: i64,
        stock: i64,
        per_user_limit: Option<i64>,
    },
    /// 直播间红包.
    RedPacket {
        total_cents: i64,
        count: i64,
        greeting: Option<String>,
    },
    /// 满减优惠券; a threshold of 0 means 无门槛.
    Coupon {
        title: Option<String>,
        threshold_cents: i64,
        discount_cents: i64,
        total_quota: Option<i64>,
    },
    /// 福袋: viewers send the keyword in the chat to enter the draw, or, with `watch_minutes`,
    /// watch the live that long during the countdown (then there is no keyword).
    LuckyBag {
        prize: String,
        winners: i64,
        keyword: Option<String>,
        duration_seconds: Option<i64>,
        watch_minutes: Option<i64>,
    },
}

impl Activity {
    fn label(&self) -> &'static str {
        match self {
            Activity::FlashSale { .. } => "限时秒杀",
            Activity::RedPacket { .. } => "直播间红包",
            Activity::Coupon { .. } => "满减优惠券",
            Activity::LuckyBag { .. } => "福袋抽奖",
        }
    }
}

/// Everything a script is written from.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptInput {
    /// The room's title, when the script is for a room.
    pub theme: Option<String>,
    pub products: Vec<ProductFacts>,
    pub activities: Vec<Activity>,
    pub duration_minutes: u32,
    pub audience: Option<String>,
}

// Limits of a script document (what the editor and the model may produce).
const MAX_TITLE: usize = 60;
const MAX_BLOCK: usize = 3000;
const MAX_SEGMENTS: usize = 30;
const MAX_PRODUCT_NAME: usize = 60;
const MAX_ITEMS: usize = 10;
const MAX_ITEM: usize = 300;
const MAX_TALK: usize = 5000;
const MAX_CUE: usize = 1000;
const MAX_SEGMENT_MINUTES: u32 = 600;

fn tidy(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .trim()
        .to_owned()
}

fn tidy_list(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|s| tidy(s))
        .filter(|s| !s.is_empty())
        .collect()
}

fn check_text(value: &str, what: &str, min: usize, max: usize) -> Result<(), String> {
    let count = value.chars().count();
    if count < min || count > max {
        return Err(if min > 0 {
            format!("{what}须为 {min}–{max} 个字符")
        } else {
            format!("{what}不能超过 {max} 个字符")
        });
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(format!("{what}不能包含控制字符"));
    }
    Ok(())
}

fn check_list(items: &[String], what: &str) -> Result<(), String> {
    if items.len() > MAX_ITEMS {
        return Err(format!("{what}最多 {MAX_ITEMS} 条"));
    }
    items
        .iter()
        .try_for_each(|item| check_text(item, what, 1, MAX_ITEM))
}

impl LiveScript {
    /// Trims every text, drops empty list entries and empty cues.
    pub fn tidied(mut self) -> Self {
        self.title = tidy(&self.title);
        self.opening = tidy(&self.opening);
        self.closing = tidy(&self.closing);
        for segment in &mut self.segments {
            segment.product = tidy(&segment.product);
            segment.selling_points = tidy_list(&segment.selling_points);
            segment.talk = tidy(&segment.talk);
            segment.interaction = tidy_list(&segment.interaction);
            segment.activity_cue = segment
                .activity_cue
                .as_deref()
                .map(tidy)
                .filter(|c| !c.is_empty());
        }
        self
    }

    /// Whether the document is complete and within the limits; the reason in Chinese if not.
    pub fn check(&self) -> Result<(), String> {
        check_text(&self.title, "脚本标题", 1, MAX_TITLE)?;
        check_text(&self.opening, "开场", 1, MAX_BLOCK)?;
        check_text(&self.closing, "收尾", 1, MAX_BLOCK)?;
        if self.segments.is_empty() || self.segments.len() > MAX_SEGMENTS {
            return Err(format!("脚本须有 1–{MAX_SEGMENTS} 个商品环节"));
        }
        for (i, s) in self.segments.iter().enumerate() {
            let n = i + 1;
            check_text(
                &s.product,
                &format!("第 {n} 个环节的商品名"),
                1,
                MAX_PRODUCT_NAME,
            )?;
            check_list(&s.selling_points, &format!("第 {n} 个环节的卖点"))?;
            check_text(&s.talk, &format!("第 {n} 个环节的话术"), 0, MAX_TALK)?;
            check_list(&s.interaction, &format!("第 {n} 个环节的互动"))?;
            if let Some(cue) = &s.activity_cue {
                check_text(cue, &format!("第 {n} 个环节的活动提示"), 1, MAX_CUE)?;
            }
            if s.duration_minutes < 1 || s.duration_minutes > MAX_SEGMENT_MINUTES {
                return Err(format!(
                    "第 {n} 个环节的时长须为 1–{MAX_SEGMENT_MINUTES} 分钟"
                ));
            }
        }
        Ok(())
    }
}

/// Money as the host says it: `69 元`, `39.90 元`.
pub fn yuan(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    if cents.is_multiple_of(100) {
        format!("{sign}{} 元", cents / 100)
    } else {
        format!("{sign}{}.{:02} 元", cents / 100, cents % 100)
    }
}

/// At most `max` characters of `text`.
fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

// ---------------------------------------------------------------------------------------------
// The prompt.

/// The two messages of the chat completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub system: String,
    pub user: String,
}

const SYSTEM_PROMPT: &str = "你是一名资深的电商直播运营和直播脚本策划，熟悉抖音、快手、淘宝直播的带货节奏，\
为直播电商实训平台的学员撰写可以直接照着讲的直播脚本。

写作要求：
1. 全部使用简体中文，口语化、有感染力，称呼观众为“家人们”或“宝宝们”。
2. 只使用用户给出的商品信息（标题、描述、规格、价格、库存）和活动参数，不编造功效、资质、销量、产地或价格；\
遵守《广告法》，不使用“最”“第一”“国家级”“100%”等绝对化用语，不做虚假或夸大宣传。
3. 结构：开场（欢迎、自我介绍、今日商品和福利预告）→ 每款商品一个环节，按给定顺序 → 收尾（回顾、下期预告、引导关注）。
4. 每个商品环节：3 条卖点（从描述、规格、价格中提炼）；一段讲解话术；至少 2 条互动引导\
（例如“想要的扣 1”“点赞到 1 万上福利”“评论区问答”）；在合适的环节写出活动口播提示 activity_cue\
（秒杀、红包、优惠券、福袋的时机、参数和话术），没有活动的环节写 null。
5. 各商品环节的时长（整数分钟）加上开场和收尾，约等于直播总时长。
6. 只输出一个 JSON 对象，不要输出 Markdown 代码块、注释或任何其他文字。格式：
{\"title\": \"脚本标题\", \"opening\": \"开场话术\", \"segments\": [{\"product_id\": 商品编号, \"product\": \"商品名\", \
\"selling_points\": [\"卖点1\", \"卖点2\", \"卖点3\"], \"talk\": \"讲解话术\", \"interaction\": [\"互动1\", \"互动2\"], \
\"activity_cue\": \"活动提示（没有活动的环节为 null）\", \"duration_minutes\": 10}], \"closing\": \"收尾话术\"}";

fn sku_line(skus: &[SkuFacts]) -> String {
    if skus.is_empty() {
        return "（未设置规格）".into();
    }
    skus.iter()
        .map(|s| format!("{} {}（库存 {}）", s.spec, yuan(s.price_cents), s.stock))
        .collect::<Vec<_>>()
        .join("；")
}

fn min_price(product: &ProductFacts) -> Option<i64> {
    product.skus.iter().map(|s| s.price_cents).min()
}

fn max_price(product: &ProductFacts) -> Option<i64> {
    product.skus.iter().map(|s| s.price_cents).max()
}

fn product_title(input: &ScriptInput, id: i64) -> String {
    input
        .products
        .iter()
        .find(|p| p.id == id)
        .map(|p| p.title.clone())
        .unwrap_or_else(|| format!("商品 {id}"))
}

fn lucky_keyword(keyword: &Option<String>) -> String {
    keyword
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .unwrap_or("想要")
        .to_owned()
}

/// How viewers enter a lucky bag: by watching (`watch_minutes`) or by the keyword.
fn lucky_task(
    keyword: &Option<String>,
    watch_minutes: &Option<i64>,
    quote: (&str, &str),
) -> String {
    match watch_minutes {
        Some(m) => format!("在直播间观看满 {m} 分钟即可参与"),
        None => format!(
            "评论区发送口令{}{}{}参与",
            quote.0,
            lucky_keyword(keyword),
            quote.1
        ),
    }
}

/// One activity as a line of the prompt.
fn activity_line(input: &ScriptInput, activity: &Activity) -> String {
    match activity {
        Activity::FlashSale {
            product_id,
            price_cents,
            stock,
            per_user_limit,
        } => {
            let product = input.products.iter().find(|p| p.id == *product_id);
            let mut line = format!(
                "限时秒杀：商品编号 {product_id}「{}」，秒杀价 {}",
                product_title(input, *product_id),
                yuan(*price_cents)
            );
            if let Some(normal) = product.and_then(min_price) {
                let _ = write!(line, "（日常价 {}起）", yuan(normal));
            }
            let _ = write!(line, "，限量 {stock} 件");
            if let Some(limit) = per_user_limit {
                let _ = write!(line, "，每人限购 {limit} 件");
            }
            line
        }
        Activity::RedPacket {
            total_cents,
            count,
            greeting,
        } => {
            let mut line = format!("直播间红包：总额 {}，共 {count} 个", yuan(*total_cents));
            if let Some(g) = greeting.as_deref().filter(|g| !g.trim().is_empty()) {
                let _ = write!(line, "，祝福语「{}」", g.trim());
            }
            line
        }
        Activity::Coupon {
            title,
            threshold_cents,
            discount_cents,
            total_quota,
        } => {
            let mut line = String::from("优惠券：");
            if let Some(t) = title.as_deref().filter(|t| !t.trim().is_empty()) {
                let _ = write!(line, "「{}」", t.trim());
            }
            line.push_str(&coupon_rule(*threshold_cents, *discount_cents));
            if let Some(q) = total_quota {
                let _ = write!(line, "，共 {q} 张");
            }
            line
        }
        Activity::LuckyBag {
            prize,
            winners,
            keyword,
            duration_seconds,
            watch_minutes,
        } => {
            let mut line = format!(
                "福袋：奖品「{}」，抽 {winners} 人，{}",
                prize.trim(),
                lucky_task(keyword, watch_minutes, ("「", "」"))
            );
            if let Some(secs) = duration_seconds {
                let _ = write!(line, "，开奖倒计时 {}", countdown(*secs));
            }
            line
        }
    }
}

fn coupon_rule(threshold_cents: i64, discount_cents: i64) -> String {
    if threshold_cents <= 0 {
        format!("无门槛立减 {}", yuan(discount_cents))
    } else {
        format!("满 {}减 {}", yuan(threshold_cents), yuan(discount_cents))
    }
}

fn countdown(seconds: i64) -> String {
    if seconds >= 60 && seconds % 60 == 0 {
        format!("{} 分钟", seconds / 60)
    } else {
        format!("{seconds} 秒")
    }
}

/// The system and user messages asking a model for the script as JSON.
pub fn prompt(input: &ScriptInput) -> Prompt {
    let mut user = String::from("请为下面这场直播写脚本。\n");
    if let Some(theme) = &input.theme {
        let _ = writeln!(user, "直播主题：{theme}");
    }
    let _ = writeln!(user, "直播总时长：{} 分钟", input.duration_minutes);
    let _ = writeln!(
        user,
        "目标观众：{}",
        input
            .audience
            .as_deref()
            .unwrap_or("未指定，按大众消费者来写")
    );
    let _ = writeln!(
        user,
        "\n商品（共 {} 款，按此顺序讲解，product_id 用这里的商品编号）：",
        input.products.len()
    );
    for (i, p) in input.products.iter().enumerate() {
        let _ = writeln!(user, "{}. 商品编号 {}：{}", i + 1, p.id, p.title);
        let description = if p.description.trim().is_empty() {
            "（无）".to_owned()
        } else {
            p.description.trim().replace('\n', " ")
        };
        let _ = writeln!(user, "   描述：{description}");
        let _ = writeln!(user, "   规格与价格：{}", sku_line(&p.skus));
    }
    user.push_str("\n计划的活动：\n");
    if input.activities.is_empty() {
        user.push_str("- 无，互动以点赞、评论、关注为主\n");
    }
    for activity in &input.activities {
        let _ = writeln!(user, "- {}", activity_line(input, activity));
    }
    user.push_str("\n请只输出 JSON。");
    Prompt {
        system: SYSTEM_PROMPT.to_owned(),
        user,
    }
}

// ---------------------------------------------------------------------------------------------
// The model's answer.

/// The JSON object inside a model's answer: a ```json fence or prose around it is tolerated.
fn json_part(answer: &str) -> &str {
    let mut text = answer.trim();
    if let Some(start) = text.find("```") {
        let after = &text[start + 3..];
        // Skip the fence's language tag up to the end of its line.
        let body = after.find('\n').map_or(after, |nl| &after[nl + 1..]);
        text = body.rfind("```").map_or(body, |end| &body[..end]).trim();
    }
    match (text.find('{'), text.rfind('}')) {
        (Some(start), Some(end)) if start < end => &text[start..=end],
        _ => text,
    }
}

/// Parses and checks a model's answer against what it was asked; the reason in Chinese if it
/// is unusable. Product ids the model made up are dropped (or recovered from the product's
/// exact title).
pub fn parse_answer(answer: &str, input: &ScriptInput) -> Result<LiveScript, String> {
    if answer.trim().is_empty() {
        return Err("AI 没有返回任何内容".into());
    }
    let json = json_part(answer);
    let script: LiveScript = serde_json::from_str(json).map_err(|e| {
        if e.is_data() {
            format!("AI 返回的 JSON 缺少字段或类型不对（{e}）")
        } else {
            format!("AI 返回的内容不是有效的 JSON（{e}）")
        }
    })?;
    let mut script = script.tidied();
    for segment in &mut script.segments {
        let known = segment
            .product_id
            .is_some_and(|id| input.products.iter().any(|p| p.id == id));
        if !known {
            segment.product_id = input
                .products
                .iter()
                .find(|p| p.title == segment.product)
                .map(|p| p.id);
        }
    }
    script
        .check()
        .map_err(|e| format!("AI 生成的脚本不完整：{e}"))?;
    Ok(script)
}

// ---------------------------------------------------------------------------------------------
// The built-in template.

/// Minutes of the opening, of each product's segment, and of the closing.
fn plan_minutes(total: u32, products: usize) -> (u32, Vec<u32>, u32) {
    let opening = (total / 10).clamp(1, 10);
    let closing = (total / 12).clamp(1, 8);
    let rest = total.saturating_sub(opening + closing);
    let n = u32::try_from(products.max(1)).unwrap_or(u32::MAX);
    let (each, extra) = (rest / n, rest % n);
    let segments = (0..n)
        .map(|i| (each + u32::from(i < extra)).max(1))
        .collect();
    (opening, segments, closing)
}

/// The description's clauses worth saying aloud.
fn clauses(description: &str) -> Vec<String> {
    description
        .split(['。', '！', '!', '？', '?', '；', ';', '\n', '，', ','])
        .map(|c| c.trim().trim_matches(['、', ' ', '“', '”', '"']).to_owned())
        .filter(|c| c.chars().count() >= 2)
        .map(|c| clip(&c, 80))
        .collect()
}

fn specs(product: &ProductFacts) -> Vec<&str> {
    product.skus.iter().map(|s| s.spec.as_str()).collect()
}

fn total_stock(product: &ProductFacts) -> i64 {
    product.skus.iter().map(|s| s.stock).sum()
}

fn flash_for(input: &ScriptInput, product: i64) -> Option<(i64, i64, Option<i64>)> {
    input.activities.iter().find_map(|a| match a {
        Activity::FlashSale {
            product_id,
            price_cents,
            stock,
            per_user_limit,
        } if *product_id == product => Some((*price_cents, *stock, *per_user_limit)),
        _ => None,
    })
}

fn first_coupon(input: &ScriptInput) -> Option<(i64, i64)> {
    input.activities.iter().find_map(|a| match a {
        Activity::Coupon {
            threshold_cents,
            discount_cents,
            ..
        } => Some((*threshold_cents, *discount_cents)),
        _ => None,
    })
}

fn spec_point(product: &ProductFacts) -> String {
    match specs(product).as_slice() {
        [] => "规格简单，拍下即发这一款".into(),
        [one] => format!("规格：{one}，下单前看清规格再拍"),
        many => format!(
            "{} 种规格可选：{}，按需选购不浪费",
            many.len(),
            many.join("、")
        ),
    }
}

fn price_point(input: &ScriptInput, product: &ProductFacts) -> String {
    let (min, max) = (min_price(product), max_price(product));
    let mut point = match (flash_for(input, product.id), min) {
        (Some((flash, _, _)), Some(normal)) if flash < normal => format!(
            "直播间限时秒杀价 {}，日常价 {}起，立省 {}",
            yuan(flash),
            yuan(normal),
            yuan(normal - flash)
        ),
        (Some((flash, _, _)), _) => format!("直播间限时秒杀价 {}", yuan(flash)),
        (None, Some(min)) if max.is_some_and(|max| max > min) => {
            format!("到手价 {}起，价格透明不套路", yuan(min))
        }
        (None, Some(min)) => format!("到手价 {}，价格透明不套路", yuan(min)),
        (None, None) => "直播间专属价，以小黄车标价为准".into(),
    };
    if let Some((threshold, discount)) = first_coupon(input) {
        let _ = write!(point, "；领券{}更划算", coupon_rule(threshold, discount));
    }
    point
}

fn stock_point(product: &ProductFacts) -> String {
    match total_stock(product) {
        0 => "库存紧张，补货后第一时间通知家人们".into(),
        stock => format!("现货库存 {stock} 件，售完即止，喜欢的抓紧下单"),
    }
}

/// Exactly three selling points, from the description, the specs and the price.
fn selling_points(input: &ScriptInput, product: &ProductFacts) -> Vec<String> {
    let clauses = clauses(&product.description);
    let mut points = Vec::with_capacity(3);
    if let Some(first) = clauses.first() {
        points.push(first.clone());
    }
    points.push(spec_point(product));
    points.push(price_point(input, product));
    if points.len() < 3 {
        points.push(stock_point(product));
    }
    points
}

fn talk(input: &ScriptInput, product: &ProductFacts, k: usize) -> String {
    let mut talk = format!("接下来是今天的第 {k} 款宝贝——{}！", product.title);
    let clauses = clauses(&product.description);
    if !clauses.is_empty() {
        let _ = write!(
            talk,
            "先给家人们说说它的特点：{}。",
            clauses
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("，")
        );
    }
    if let Some(audience) = &input.audience {
        let _ = write!(talk, "{audience}们可以重点听一听。");
    }
    match specs(product).as_slice() {
        [] => {}
        [one] => {
            let _ = write!(talk, "规格是 {one}，");
        }
        many => {
            let _ = write!(
                talk,
                "这款有 {} 共 {} 种规格，大家按自己的需要来选，",
                many.join("、"),
                many.len()
            );
        }
    }
    if let Some(min) = min_price(product) {
        let from = if max_price(product).is_some_and(|max| max > min) {
            "起"
        } else {
            ""
        };
        let _ = write!(talk, "今天直播间到手价 {}{from}。", yuan(min));
    }
    if let Some((flash, stock, _)) = flash_for(input, product.id) {
        let _ = write!(
            talk,
            "等会儿还有限时秒杀，秒杀价只要 {}，只有 {stock} 件，手慢无！",
            yuan(flash)
        );
    }
    let _ = write!(
        talk,
        "喜欢的家人们点击下方小黄车 {k} 号链接，有任何问题随时打在评论区，我一条条给大家解答。"
    );
    talk
}

fn interactions(input: &ScriptInput, product: &ProductFacts, k: usize) -> Vec<String> {
    let has_perk = input
        .activities
        .iter()
        .any(|a| matches!(a, Activity::LuckyBag { .. } | Activity::RedPacket { .. }));
    let perk = if has_perk {
        "发一波福利"
    } else {
        "多讲一轮细节、加一轮答疑"
    };
    let question = if product.skus.len() > 1 {
        "不知道选哪个规格"
    } else {
        "想了解用法、规格还是价格"
    };
    vec![
        format!(
            "想要{}的家人们在评论区扣“1”，扣的人多我马上上链接！",
            clip(&product.title, 20)
        ),
        format!("点赞到 {k} 万，我们就{perk}，家人们动动手指点起来！"),
        format!("评论区问答：关于这款，{question}？打在公屏上，我挨个回答。"),
    ]
}

/// Each segment's activity cues: a flash sale with its product, red packets open the show,
/// coupons come with the second product, lucky bags hold viewers in the middle; several of a
/// kind are spread over the show.
fn cues(input: &ScriptInput) -> Vec<Vec<String>> {
    let n = input.products.len().max(1);
    // (kind, text); kinds are numbered in the order they run within a segment: the red packet
    // before the talk, then coupon and lucky bag, the flash sale after the selling points.
    let mut cues: Vec<Vec<(usize, String)>> = vec![Vec::new(); n];
    let count_of =
        |pick: fn(&Activity) -> bool| input.activities.iter().filter(|a| pick(a)).count();
    let counts = [
        count_of(|a| matches!(a, Activity::RedPacket { .. })),
        count_of(|a| matches!(a, Activity::Coupon { .. })),
        count_of(|a| matches!(a, Activity::LuckyBag { .. })),
    ];
    let mut seen = [0usize; 3];
    for activity in &input.activities {
        let (kind, base) = match activity {
            Activity::FlashSale { product_id, .. } => {
                let at = input
                    .products
                    .iter()
                    .position(|p| p.id == *product_id)
                    .unwrap_or(n - 1);
                cues[at].push((3, cue_text(input, activity)));
                continue;
            }
            Activity::RedPacket { .. } => (0, 0),
            Activity::Coupon { .. } => (1, 1.min(n - 1)),
            Activity::LuckyBag { .. } => (2, n / 2),
        };
        let j = seen[kind];
        seen[kind] += 1;
        let at = (base + j * n / counts[kind].max(1)) % n;
        cues[at].push((kind, cue_text(input, activity)));
    }
    cues.into_iter()
        .map(|mut list| {
            list.sort_by_key(|(when, _)| *when);
            list.into_iter().map(|(_, text)| text).collect()
        })
        .collect()
}

fn cue_text(input: &ScriptInput, activity: &Activity) -> String {
    match activity {
        Activity::FlashSale {
            product_id,
            price_cents,
            stock,
            per_user_limit,
        } => {
            let limit = per_user_limit
                .map(|l| format!("，每人限购 {l} 件"))
                .unwrap_or_default();
            format!(
                "【秒杀】讲完卖点后开「{}」限时秒杀：秒杀价 {}，限量 {stock} 件{limit}。\
                 先提醒家人们进小黄车等着，倒数“3、2、1”再上链接，边卖边报剩余库存。",
                product_title(input, *product_id),
                yuan(*price_cents)
            )
        }
        Activity::RedPacket {
            total_cents,
            count,
            greeting,
        } => {
            let greeting = greeting
                .as_deref()
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(|g| format!("，祝福语“{g}”"))
                .unwrap_or_default();
            format!(
                "【红包】讲解前先发直播间红包留人：总额 {}，共 {count} 个{greeting}。\
                 提醒新进来的家人们先点关注，再等红包倒计时。",
                yuan(*total_cents)
            )
        }
        Activity::Coupon {
            title,
            threshold_cents,
            discount_cents,
            total_quota,
        } => {
            let title = title
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| format!("「{t}」"))
                .unwrap_or_default();
            let quota = total_quota
                .map(|q| format!("，只有 {q} 张"))
                .unwrap_or_default();
            format!(
                "【优惠券】上架优惠券{title}：{}{quota}。引导家人们先领券再下单，领到的扣“领到了”。",
                coupon_rule(*threshold_cents, *discount_cents)
            )
        }
        Activity::LuckyBag {
            prize,
            winners,
            keyword,
            duration_seconds,
            watch_minutes,
        } => {
            let when = duration_seconds
                .map(|s| format!("{}后开奖", countdown(s)))
                .unwrap_or_else(|| "倒计时结束开奖".into());
            let stay = if watch_minutes.is_some() {
                "提醒家人们一直留在直播间，看满时长才能参与抽奖。"
            } else {
                "开奖前不要离开直播间。"
            };
            format!(
                "【福袋】发福袋：奖品「{}」，抽 {winners} 位，{}，{when}，{stay}",
                prize.trim(),
                lucky_task(keyword, watch_minutes, ("“", "”"))
            )
        }
    }
}

fn script_title(input: &ScriptInput) -> String {
    let title = match (&input.theme, input.products.as_slice()) {
        (Some(theme), _) => format!("{theme} · 直播脚本"),
        (None, [one]) => format!("{}直播脚本", one.title),
        (None, [first, ..]) => format!(
            "{}等 {} 款好物直播脚本",
            clip(&first.title, 40),
            input.products.len()
        ),
        (None, []) => "直播脚本".into(),
    };
    clip(&title, MAX_TITLE)
}

fn perks(input: &ScriptInput) -> Vec<&'static str> {
    let mut labels: Vec<&'static str> = Vec::new();
    for a in &input.activities {
        if !labels.contains(&a.label()) {
            labels.push(a.label());
        }
    }
    labels
}

fn titles(input: &ScriptInput) -> String {
    input
        .products
        .iter()
        .map(|p| format!("「{}」", p.title))
        .collect::<Vec<_>>()
        .join("")
}

/// A complete script from the facts alone: what the page shows when no model is configured.
pub fn template(input: &ScriptInput) -> LiveScript {
    let (opening_minutes, minutes, closing_minutes) =
        plan_minutes(input.duration_minutes, input.products.len());
    let perks = perks(input);
    let mut opening = format!(
        "（约 {opening_minutes} 分钟）家人们好，欢迎来到{}直播间，我是今天的主播！",
        input
            .theme
            .as_deref()
            .map(|t| format!("「{t}」"))
            .unwrap_or_else(|| "我们的".into())
    );
    if let Some(audience) = &input.audience {
        let _ = write!(opening, "特别欢迎{audience}朋友们！");
    }
    let _ = write!(
        opening,
        "新进来的家人们先点个关注不迷路。今天这场直播大约 {} 分钟，给大家准备了 {} 款好物：{}，一款一款给大家讲清楚。",
        input.duration_minutes,
        input.products.len(),
        titles(input)
    );
    if perks.is_empty() {
        opening.push_str("全程有问必答，评论区的问题我都会一条条回复。");
    } else {
        let _ = write!(opening, "本场还有{}等福利，千万别走开！", perks.join("、"));
    }
    opening.push_str("先在评论区打个“来了”，让我看看今天有多少家人在！");

    let cues = cues(input);
    let segments = input
        .products
        .iter()
        .enumerate()
        .map(|(i, product)| {
            let k = i + 1;
            let cue = cues.get(i).filter(|c| !c.is_empty()).map(|c| c.join("\n"));
            Segment {
                product_id: Some(product.id),
                product: clip(&product.title, MAX_PRODUCT_NAME),
                selling_points: selling_points(input, product),
                talk: talk(input, product, k),
                interaction: interactions(input, product, k),
                activity_cue: cue,
                duration_minutes: minutes.get(i).copied().unwrap_or(1),
            }
        })
        .collect();

    let mut closing = format!(
        "（约 {closing_minutes} 分钟）今天的直播接近尾声了，感谢家人们的陪伴！快速回顾一下今天的 {} 款好物：{}，还没下单的抓紧时间，小黄车链接都还在。",
        input.products.len(),
        titles(input)
    );
    if first_coupon(input).is_some() {
        closing.push_str("领到优惠券的家人们记得在有效期内使用。");
    }
    if input
        .activities
        .iter()
        .any(|a| matches!(a, Activity::LuckyBag { .. }))
    {
        closing.push_str("福袋中奖的家人们记得查看中奖结果。");
    }
    closing.push_str(
        "下期预告：下一场我们会带来更多新品和专属福利，开播时间会提前在主页和粉丝群通知。\
         还没关注的家人们点一下左上角的关注，开播提醒不错过，我们下期再见！",
    );

    LiveScript {
        title: script_title(input),
        opening,
        segments,
        closing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ScriptInput {
        ScriptInput {
            theme: None,
            products: vec![
                ProductFacts {
                    id: 7,
                    title: "长白山野生蓝莓干".into(),
                    description: "无添加蔗糖，酸甜适口。小包装随身带！".into(),
                    skus: vec![
                        SkuFacts {
                            spec: "250g".into(),
                            price_cents: 3990,
                            stock: 100,
                        },
                        SkuFacts {
                            spec: "500g 礼盒".into(),
                            price_cents: 6990,
                            stock: 50,
                        },
                    ],
                },
                ProductFacts {
                    id: 9,
                    title: "东北黑木耳".into(),
                    description: String::new(),
                    skus: vec![SkuFacts {
                        spec: "200g".into(),
                        price_cents: 2900,
                        stock: 30,
                    }],
                },
            ],
            activities: vec![
                Activity::FlashSale {
                    product_id: 7,
                    price_cents: 2990,
                    stock: 20,
                    per_user_limit: Some(2),
                },
                Activity::RedPacket {
                    total_cents: 10000,
                    count: 50,
                    greeting: Some("新年快乐".into()),
                },
                Activity::Coupon {
                    title: Some("进店礼".into()),
                    threshold_cents: 9900,
                    discount_cents: 1000,
                    total_quota: Some(200),
                },
                Activity::LuckyBag {
                    prize: "蓝莓干 1 袋".into(),
                    winners: 3,
                    keyword: Some("蓝莓真香".into()),
                    duration_seconds: Some(300),
                    watch_minutes: None,
                },
            ],
            duration_minutes: 60,
            audience: Some("宝妈".into()),
        }
    }

    #[test]
    fn money_reads_as_the_host_says_it() {
        assert_eq!(yuan(6900), "69 元");
        assert_eq!(yuan(3990), "39.90 元");
        assert_eq!(yuan(5), "0.05 元");
        assert_eq!(yuan(-150), "-1.50 元");
    }

    #[test]
    fn prompt_carries_products_activities_audience_and_duration() {
        let asked = prompt(&input());
        assert!(asked.system.contains("只输出一个 JSON 对象"));
        assert!(asked.system.contains("selling_points"));
        let user = &asked.user;
        for needle in [
            "直播总时长：60 分钟",
            "目标观众：宝妈",
            "商品编号 7：长白山野生蓝莓干",
            "无添加蔗糖",
            "250g 39.90 元（库存 100）",
            "500g 礼盒 69.90 元",
            "商品编号 9：东北黑木耳",
            "描述：（无）",
            "秒杀价 29.90 元（日常价 39.90 元起），限量 20 件，每人限购 2 件",
            "直播间红包：总额 100 元，共 50 个，祝福语「新年快乐」",
            "优惠券：「进店礼」满 99 元减 10 元，共 200 张",
            "福袋：奖品「蓝莓干 1 袋」，抽 3 人，评论区发送口令「蓝莓真香」参与，开奖倒计时 5 分钟",
        ] {
            assert!(user.contains(needle), "missing {needle:?} in\n{user}");
        }
        let bare = ScriptInput {
            activities: Vec::new(),
            audience: None,
            theme: Some("年货节专场".into()),
            ..input()
        };
        let user = prompt(&bare).user;
        assert!(user.contains("直播主题：年货节专场"));
        assert!(user.contains("- 无"));
        assert!(user.contains("未指定"));
    }

    #[test]
    fn template_writes_a_complete_useful_script() {
        let input = input();
        let script = template(&input);
        script.check().expect("the template passes its own checks");
        assert_eq!(script.title, "长白山野生蓝莓干等 2 款好物直播脚本");
        assert!(script.opening.contains("欢迎"));
        assert!(script.opening.contains("宝妈"));
        assert!(
            script
                .opening
                .contains("「长白山野生蓝莓干」「东北黑木耳」")
        );
        assert!(
            script
                .opening
                .contains("限时秒杀、直播间红包、满减优惠券、福袋抽奖")
        );
        assert_eq!(script.segments.len(), 2);
        let [blueberry, fungus] = script.segments.as_slice() else {
            unreachable!()
        };
        assert_eq!(blueberry.product_id, Some(7));
        assert_eq!(blueberry.selling_points.len(), 3);
        assert_eq!(blueberry.selling_points[0], "无添加蔗糖");
        assert!(blueberry.selling_points[1].contains("250g、500g 礼盒"));
        assert!(blueberry.selling_points[2].contains("秒杀价 29.90 元"));
        assert!(blueberry.selling_points[2].contains("立省 10 元"));
        assert!(blueberry.selling_points[2].contains("满 99 元减 10 元"));
        assert!(blueberry.talk.contains("小黄车 1 号链接"));
        assert!(blueberry.interaction.iter().any(|i| i.contains("扣“1”")));
        assert!(
            blueberry
                .interaction
                .iter()
                .any(|i| i.contains("点赞到 1 万"))
        );
        assert!(
            blueberry
                .interaction
                .iter()
                .any(|i| i.contains("评论区问答"))
        );
        let cue = blueberry.activity_cue.as_deref().unwrap();
        assert!(
            cue.starts_with("【红包】") && cue.contains("\n【秒杀】"),
            "{cue}"
        );
        // Without a description the points come from specs, price and stock.
        assert_eq!(fungus.selling_points.len(), 3);
        assert!(fungus.selling_points[0].contains("200g"));
        assert!(fungus.selling_points[2].contains("库存 30 件"));
        let cue = fungus.activity_cue.as_deref().unwrap();
        assert!(
            cue.contains("【优惠券】") && cue.contains("【福袋】"),
            "{cue}"
        );
        assert!(cue.contains("蓝莓真香") && cue.contains("5 分钟后开奖"));
        assert!(script.closing.contains("下期预告"));
        assert!(script.closing.contains("关注"));
        // Minutes add up to the show.
        let segments: u32 = script.segments.iter().map(|s| s.duration_minutes).sum();
        assert_eq!(segments + 6 + 5, 60);
    }

    #[test]
    fn a_watch_lucky_bag_is_told_as_watching_not_as_a_keyword() {
        let mut input = input();
        input.activities = vec![Activity::LuckyBag {
            prize: "蓝莓干 1 袋".into(),
            winners: 3,
            keyword: None,
            duration_seconds: Some(600),
            watch_minutes: Some(5),
        }];
        let user = prompt(&input).user;
        assert!(
            user.contains("福袋：奖品「蓝莓干 1 袋」，抽 3 人，在直播间观看满 5 分钟即可参与，开奖倒计时 10 分钟"),
            "{user}"
        );
        assert!(!user.contains("口令"), "{user}");
        let script = template(&input);
        script.check().expect("the template passes its own checks");
        let cue = script
            .segments
            .iter()
            .find_map(|s| s.activity_cue.as_deref().filter(|c| c.contains("【福袋】")))
            .expect("a lucky bag cue");
        assert!(
            cue.contains("观看满 5 分钟") && cue.contains("看满时长") && !cue.contains("口令"),
            "{cue}"
        );
    }

    #[test]
    fn template_spreads_time_and_cues_over_many_products() {
        let mut input = input();
        input.activities = vec![
            Activity::RedPacket {
                total_cents: 100,
                count: 1,
                greeting: None,
            },
            Activity::RedPacket {
                total_cents: 100,
                count: 1,
                greeting: None,
            },
        ];
        input.products = (1..=20)
            .map(|id| ProductFacts {
                id,
                title: format!("好物{id}"),
                description: String::new(),
                skus: Vec::new(),
            })
            .collect();
        input.duration_minutes = 10;
        let script = template(&input);
        script.check().expect("valid");
        assert!(script.segments.iter().all(|s| s.duration_minutes >= 1));
        assert!(script.segments[0].activity_cue.is_some());
        assert!(script.segments[10].activity_cue.is_some());
        assert_eq!(
            script
                .segments
                .iter()
                .filter(|s| s.activity_cue.is_some())
                .count(),
            2
        );
        assert_eq!(plan_minutes(90, 3), (9, vec![25, 25, 24], 7));
    }

    fn answer() -> String {
        serde_json::json!({
            "title": "蓝莓干专场",
            "opening": "家人们好！",
            "segments": [{
                "product_id": 7, "product": "长白山野生蓝莓干",
                "selling_points": ["无添加", " ", "两种规格"],
                "talk": "来看这款\r\n蓝莓干", "interaction": ["扣1"],
                "activity_cue": "", "duration_minutes": 20,
                "extra": "models add fields"
            }, {
                "product_id": 12345, "product": "东北黑木耳",
                "selling_points": [], "talk": "", "duration_minutes": 10
            }],
            "closing": "下期见，记得关注"
        })
        .to_string()
    }

    #[test]
    fn parses_plain_fenced_and_wrapped_answers() {
        let input = input();
        let plain = parse_answer(&answer(), &input).expect("plain JSON");
        assert_eq!(plain.title, "蓝莓干专场");
        assert_eq!(plain.segments[0].selling_points, vec!["无添加", "两种规格"]);
        assert_eq!(plain.segments[0].talk, "来看这款\n蓝莓干");
        assert_eq!(plain.segments[0].activity_cue, None);
        // A made-up id is replaced by the product with that exact title.
        assert_eq!(plain.segments[1].product_id, Some(9));
        let fenced = format!("```json\n{}\n```", answer());
        assert_eq!(parse_answer(&fenced, &input).unwrap(), plain);
        let chatty = format!("好的，脚本如下：\n```\n{}\n```\n祝直播顺利！", answer());
        assert_eq!(parse_answer(&chatty, &input).unwrap(), plain);
        let prose = format!("脚本：{} 完", answer());
        assert_eq!(parse_answer(&prose, &input).unwrap(), plain);
    }

    #[test]
    fn tolerates_quoted_numbers() {
        let script = parse_answer(
            r#"{"title": "x", "opening": "y", "closing": "z", "segments": [
                {"product_id": "7", "product": "长白山野生蓝莓干", "duration_minutes": "12"},
                {"product_id": 9.0, "product": "东北黑木耳", "duration_minutes": 8.0},
                {"product_id": "某商品", "product": "赠品", "duration_minutes": 3}]}"#,
            &input(),
        )
        .expect("lenient numbers");
        let ids: Vec<_> = script.segments.iter().map(|s| s.product_id).collect();
        assert_eq!(ids, [Some(7), Some(9), None]);
        assert_eq!(script.segments[0].duration_minutes, 12);
        assert_eq!(script.segments[1].duration_minutes, 8);
        let bad = parse_answer(
            r#"{"title": "x", "opening": "y", "closing": "z", "segments": [
                {"product": "p", "duration_minutes": "很久"}]}"#,
            &input(),
        )
        .unwrap_err();
        assert!(bad.contains("duration_minutes"), "{bad}");
    }

    #[test]
    fn rejects_unusable_answers_with_a_reason() {
        let input = input();
        let empty = parse_answer("  ", &input).unwrap_err();
        assert!(empty.contains("没有返回"), "{empty}");
        let garbage = parse_answer("I cannot help with that.", &input).unwrap_err();
        assert!(garbage.contains("不是有效的 JSON"), "{garbage}");
        let missing = parse_answer(r#"{"title": "x", "opening": "y"}"#, &input).unwrap_err();
        assert!(missing.contains("缺少字段"), "{missing}");
        let no_segments = parse_answer(
            r#"{"title": "x", "opening": "y", "segments": [], "closing": "z"}"#,
            &input,
        )
        .unwrap_err();
        assert!(no_segments.contains("商品环节"), "{no_segments}");
        let zero_minutes = parse_answer(
            r#"{"title": "x", "opening": "y", "closing": "z",
                "segments": [{"product": "p", "duration_minutes": 0}]}"#,
            &input,
        )
        .unwrap_err();
        assert!(zero_minutes.contains("时长"), "{zero_minutes}");
    }

    #[test]
    fn activities_deserialize_by_kind() {
        let list: Vec<Activity> = serde_json::from_str(
            r#"[{"kind": "flash_sale", "product_id": 1, "price_cents": 100, "stock": 5},
                {"kind": "lucky_bag", "prize": "x", "winners": 1}]"#,
        )
        .unwrap();
        assert!(matches!(
            list[0],
            Activity::FlashSale {
                per_user_limit: None,
                ..
            }
        ));
        assert!(serde_json::from_str::<Activity>(r#"{"kind": "raffle"}"#).is_err());
    }
}
