//! AI live scripts (直播脚本): from the trainee's products and the selling tools they plan to run,
//! a structured script — opening, one segment per product with selling points, talk, interaction
//! prompts and activity cues, closing — written by an OpenAI-compatible model (`llm_base_url`,
//! `llm_model`, `llm_api_key`) and streamed into the page as Server-Sent Events while it is
//! written, or, with no model configured, by the built-in template. The answer always says which
//! one wrote it. The trainee edits the script and keeps every version; the instructors of their
//! class may read them.
//!
//! `rules` is the pure part (the document, the prompt, the answer's parser, the template), `llm`
//! the model's client, `store` the documents and versions.

mod llm;
mod rules;
mod store;

use std::collections::HashSet;
use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiJson, ApiPath, CurrentUser};
use foundation::identity::{Principal, Role};
use foundation::org::Ref;
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use futures::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use self::llm::{Answer, Llm};
use self::rules::{Activity, LiveScript, ProductFacts, ScriptInput, SkuFacts};
use crate::util::{self, MAX_PRICE_CENTS, MAX_STOCK};
use crate::{Commerce, shops};

const MAX_PRODUCTS: usize = 20;
const MAX_ACTIVITIES: usize = 20;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateScript {
    /// The room the show is for (its title becomes the theme); you must run its selling tools (its host, or an instructor of a live class).
    pub room_id: Option<i64>,
    /// Products of your own shop, in the order they are explained (1–20).
    pub product_ids: Vec<i64>,
    /// Selling tools planned for the show.
    #[serde(default)]
    pub activities: Vec<Activity>,
    /// Length of the show (10–480 minutes).
    pub duration_minutes: u32,
    /// Who watches, e.g. "宝妈", "上班族".
    pub audience: Option<String>,
    /// Answer as Server-Sent Events (also chosen by `Accept: text/event-stream`).
    pub stream: Option<bool>,
    /// Write with the built-in template even when a model is configured (say, after it failed).
    pub template: Option<bool>,
}

/// A generated script, and what wrote it.
#[derive(Debug, Serialize, ToSchema)]
pub struct GeneratedScript {
    pub script: LiveScript,
    /// llm | template
    pub generator: String,
    /// The model, when `generator` is llm.
    pub model: Option<String>,
    /// Which generator wrote it, for people.
    pub note: String,
}

impl GeneratedScript {
    fn template(script: LiveScript, asked: bool) -> Self {
        let why = if asked {
            "按你的选择，未使用 AI"
        } else {
            "平台未配置 AI 服务"
        };
        Self {
            script,
            generator: "template".into(),
            model: None,
            note: format!("本脚本由内置模板生成（{why}）"),
        }
    }

    fn llm(script: LiveScript, model: &str) -> Self {
        Self {
            script,
            generator: "llm".into(),
            model: Some(model.to_owned()),
            note: format!("本脚本由 AI 模型 {model} 生成，请核对商品信息后再使用"),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveScript {
    /// Defaults to the script's own title (and replaces it when given).
    pub title: Option<String>,
    pub script: LiveScript,
    /// llm | template | manual
    pub generator: String,
    /// The model of an llm script.
    pub model: Option<String>,
    /// The room the script is for; you must run its selling tools (its host, or an instructor of a live class).
    pub room_id: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditScript {
    pub title: Option<String>,
    pub script: LiveScript,
    /// The version this edit started from; when a newer one was saved meanwhile: 409.
    pub base_version: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScriptSummary {
    pub id: i64,
    pub owner: Ref,
    pub room_id: Option<i64>,
    pub title: String,
    /// llm | template | manual: what wrote the first version.
    pub generator: String,
    pub model: Option<String>,
    pub latest_version: i64,
    /// Whether the caller wrote it (instructors may read their trainees' scripts).
    pub mine: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    pub version: i64,
    pub created_at: i64,
}

/// A document with its latest version and the list of all its versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScriptDetail {
    #[serde(flatten)]
    pub summary: ScriptSummary,
    /// The latest version.
    pub script: LiveScript,
    /// Oldest first.
    pub versions: Vec<VersionInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScriptVersion {
    pub script_id: i64,
    pub version: i64,
    pub created_at: i64,
    pub script: LiveScript,
}

fn summary(row: &store::ScriptRow, p: &Principal) -> ScriptSummary {
    ScriptSummary {
        id: row.id,
        owner: row.owner.clone(),
        room_id: row.room_id,
        title: row.title.clone(),
        generator: row.generator.clone(),
        model: row.model.clone(),
        latest_version: row.latest_version,
        mine: row.owner.id == p.account_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

// ---------------------------------------------------------------------------------------------
// Generation.

fn check_activity(activity: &Activity, products: &[i64]) -> ApiResult<()> {
    match activity {
        Activity::FlashSale {
            product_id,
            price_cents,
            stock,
            per_user_limit,
        } => {
            if !products.contains(product_id) {
                return Err(ApiError::validation("秒杀的商品须是本次脚本要讲的商品之一"));
            }
            util::cents(*price_cents, "秒杀价", MAX_PRICE_CENTS)?;
            util::count(*stock, "秒杀库存", 1, MAX_STOCK)?;
            if let Some(limit) = per_user_limit {
                util::count(*limit, "每人限购", 1, 99)?;
            }
        }
        Activity::RedPacket {
            total_cents,
            count,
            greeting,
        } => {
            util::cents(*total_cents, "红包总额", 10_000_000)?;
            util::count(*count, "红包个数", 1, 10_000)?;
            util::text(greeting.as_deref().unwrap_or_default(), "祝福语", 0, 30)?;
        }
        Activity::Coupon {
            title,
            threshold_cents,
            discount_cents,
            total_quota,
        } => {
            util::text(title.as_deref().unwrap_or_default(), "优惠券名称", 0, 30)?;
            util::cents(*discount_cents, "优惠金额", MAX_PRICE_CENTS)?;
            if *threshold_cents < 0 || *threshold_cents > MAX_PRICE_CENTS {
                return Err(ApiError::validation(
                    "使用门槛须在 0 元到 100 万元之间（0 为无门槛）",
                ));
            }
            if *threshold_cents > 0 && discount_cents >= threshold_cents {
                return Err(ApiError::validation("优惠金额须小于使用门槛"));
            }
            if let Some(quota) = total_quota {
                util::count(*quota, "发放总量", 1, 1_000_000)?;
            }
        }
        Activity::LuckyBag {
            prize,
            winners,
            keyword,
            duration_seconds,
            watch_minutes,
        } => {
            util::text(prize, "福袋奖品", 1, 40)?;
            util::count(*winners, "中奖人数", 1, 1000)?;
            let keyword = util::text(keyword.as_deref().unwrap_or_default(), "口令", 0, 20)?;
            if let Some(secs) = duration_seconds {
                util::count(*secs, "开奖倒计时（秒）", 10, 3600)?;
            }
            // The same rules as launching one (lucky_bags.rs): a watch bag has no keyword, and
            // its countdown is long enough to watch the minutes.
            if let Some(minutes) = watch_minutes {
                util::count(*minutes, "福袋观看时长（分钟）", 1, 60)?;
                if !keyword.is_empty() {
                    return Err(ApiError::validation(
                        "观看时长福袋不需要口令：观众看满时长即可参与",
                    ));
                }
                if duration_seconds.is_some_and(|secs| secs < minutes * 60) {
                    return Err(ApiError::validation(
                        "福袋的开奖倒计时须不短于观看时长，否则没有人能满足条件",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The facts a script is written from, checked: the caller's own products, their room.
async fn script_input(
    state: &AppState,
    commerce: &Commerce,
    p: &Principal,
    body: &GenerateScript,
) -> ApiResult<ScriptInput> {
    if body.product_ids.is_empty() || body.product_ids.len() > MAX_PRODUCTS {
        return Err(ApiError::validation(format!(
            "请选择 1–{MAX_PRODUCTS} 款商品"
        )));
    }
    let mut seen = HashSet::new();
    if !body.product_ids.iter().all(|id| seen.insert(*id)) {
        return Err(ApiError::validation("商品不能重复选择"));
    }
    let duration = util::count(
        i64::from(body.duration_minutes),
        "直播时长（分钟）",
        10,
        480,
    )?;
    let audience = util::text(
        body.audience.as_deref().unwrap_or_default(),
        "目标观众",
        0,
        60,
    )?;
    if body.activities.len() > MAX_ACTIVITIES {
        return Err(ApiError::validation(format!(
            "计划的活动最多 {MAX_ACTIVITIES} 个"
        )));
    }
    for activity in &body.activities {
        check_activity(activity, &body.product_ids)?;
    }
    let theme = match body.room_id {
        Some(room) => {
            commerce.require_tools(p, room).await?;
            let title: Option<String> = sqlx::query_scalar("SELECT title FROM rooms WHERE id = $1")
                .bind(room)
                .fetch_optional(state.db.pool())
                .await?;
            title
        }
        None => None,
    };
    let mut products = Vec::with_capacity(body.product_ids.len());
    for &id in &body.product_ids {
        let not_found = || {
            ApiError::with_message(
                ErrorCode::NotFound,
                format!("商品 {id} 不存在，或不是你店铺的商品"),
            )
        };
        let product = shops::product_by_id(state, id)
            .await?
            .ok_or_else(not_found)?;
        let shop = shops::shop_by_id(state, product.shop_id)
            .await?
            .ok_or_else(not_found)?;
        if shop.owner_id != p.account_id {
            return Err(not_found());
        }
        let skus = shops::skus_of(state, id)
            .await?
            .into_iter()
            .map(|s| SkuFacts {
                spec: s.spec,
                price_cents: s.price_cents,
                stock: s.stock,
            })
            .collect();
        products.push(ProductFacts {
            id,
            title: product.title,
            description: product.description,
            skus,
        });
    }
    Ok(ScriptInput {
        theme,
        products,
        activities: body.activities.clone(),
        duration_minutes: u32::try_from(duration).unwrap_or(60),
        audience: Some(audience).filter(|a| !a.is_empty()),
    })
}

fn wants_stream(headers: &HeaderMap, asked: Option<bool>) -> bool {
    asked.unwrap_or_else(|| {
        headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"))
    })
}

fn event(name: &'static str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name).data("{}"))
}

fn error_event(err: &ApiError) -> Event {
    event(
        "error",
        &ErrorBody {
            code: err.code.as_str(),
            message: err.message().to_owned(),
        },
    )
}

#[derive(Serialize)]
struct StartData<'a> {
    generator: &'a str,
    model: Option<&'a str>,
}

#[derive(Serialize)]
struct DeltaData<'a> {
    text: &'a str,
}

fn bad_output(reason: String) -> ApiError {
    tracing::warn!(reason, "the AI answer is not a usable script");
    ApiError::with_message(ErrorCode::LlmBadOutput, format!("{reason}，请重新生成"))
}

/// A model's answer, streamed in and parsed at its end.
struct Run {
    answer: Option<Answer>,
    input: ScriptInput,
    model: String,
}

async fn next_event(mut run: Run) -> Option<(Result<Event, Infallible>, Run)> {
    let answer = run.answer.as_mut()?;
    let event = match answer.next().await {
        Ok(Some(piece)) => event("delta", &DeltaData { text: &piece }),
        Ok(None) => {
            let text = std::mem::take(&mut answer.text);
            run.answer = None;
            match rules::parse_answer(&text, &run.input) {
                Ok(script) => event("done", &GeneratedScript::llm(script, &run.model)),
                Err(reason) => error_event(&bad_output(reason)),
            }
        }
        Err(e) => {
            run.answer = None;
            error_event(&e)
        }
    };
    Some((Ok(event), run))
}

fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Write a live script from your products and planned activities: with the configured
/// OpenAI-compatible model, or else (or when `template` is asked) the built-in template;
/// `generator` and `note` say which.
///
/// Streaming (`stream: true` or `Accept: text/event-stream`) answers Server-Sent Events:
/// `start` (`{generator, model}`), then `delta` (`{text}`) as the model writes, then `done`
/// (a `GeneratedScript`) or `error` (`{code, message}`). Failures before the model writes
/// anything are answered as ordinary errors (502 `llm_unavailable` / `llm_auth_failed`,
/// 504 `llm_timeout`).
#[utoipa::path(post, path = "/api/v1/live-scripts/generate", tag = "commerce",
    request_body = GenerateScript,
    responses((status = 200, body = GeneratedScript,
               description = "the script (JSON), or with streaming text/event-stream events start, delta, done | error"),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 504, body = ErrorBody)))]
pub async fn generate(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<GenerateScript>,
) -> ApiResult<Response> {
    let input = script_input(&state, &commerce, &p, &body).await?;
    let streaming = wants_stream(&headers, body.stream);
    let asked_template = body.template.unwrap_or(false);
    let llm = if asked_template {
        None
    } else {
        Llm::from_config(&state.config)
    };
    let Some(llm) = llm else {
        let generated = GeneratedScript::template(rules::template(&input), asked_template);
        if !streaming {
            return Ok(Json(generated).into_response());
        }
        let events = [
            event(
                "start",
                &StartData {
                    generator: "template",
                    model: None,
                },
            ),
            event("done", &generated),
        ];
        return Ok(sse(stream::iter(events.map(Ok))));
    };
    let llm = llm?;
    let answer = llm.start(&rules::prompt(&input)).await?;
    let model = llm.model().to_owned();
    if !streaming {
        let text = answer.collect().await?;
        let script = rules::parse_answer(&text, &input).map_err(bad_output)?;
        return Ok(Json(GeneratedScript::llm(script, &model)).into_response());
    }
    let start = event(
        "start",
        &StartData {
            generator: "llm",
            model: Some(&model),
        },
    );
    let run = Run {
        answer: Some(answer),
        input,
        model,
    };
    let events = stream::once(async { Ok(start) }).chain(stream::unfold(run, next_event));
    Ok(sse(events))
}

// ---------------------------------------------------------------------------------------------
// Documents and versions.

/// The document if `p` may read it: its author, or an instructor of the author's class.
async fn readable(state: &AppState, p: &Principal, id: i64) -> ApiResult<store::ScriptRow> {
    let not_found = || ApiError::with_message(ErrorCode::NotFound, "直播脚本不存在");
    let row = store::by_id(state, id).await?.ok_or_else(not_found)?;
    if row.owner.id == p.account_id
        || (p.has(Role::Instructor) && store::teaches(state, p.account_id, row.owner.id).await?)
    {
        Ok(row)
    } else {
        Err(not_found())
    }
}

async fn owned(state: &AppState, p: &Principal, id: i64) -> ApiResult<store::ScriptRow> {
    let row = readable(state, p, id).await?;
    if row.owner.id != p.account_id {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "只有脚本的作者可以修改它",
        ));
    }
    Ok(row)
}

/// The script to store: titled, tidied and checked.
fn checked(title: Option<String>, script: LiveScript) -> ApiResult<LiveScript> {
    let mut script = script;
    if let Some(title) = title {
        script.title = util::text(&title, "脚本标题", 1, 60)?;
    }
    let script = script.tidied();
    script
        .check()
        .map_err(|reason| ApiError::validation(format!("脚本内容不完整：{reason}")))?;
    Ok(script)
}

async fn detail(state: &AppState, p: &Principal, id: i64) -> ApiResult<ScriptDetail> {
    let row = readable(state, p, id).await?;
    let latest = store::version(state, id, row.latest_version)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let versions = store::versions(state, id)
        .await?
        .into_iter()
        .map(|(version, created_at)| VersionInfo {
            version,
            created_at,
        })
        .collect();
    Ok(ScriptDetail {
        summary: summary(&row, p),
        script: latest.script,
        versions,
    })
}

/// Keep a script (generated or written by hand) as a new document, version 1.
#[utoipa::path(post, path = "/api/v1/live-scripts", tag = "commerce", request_body = SaveScript,
    responses((status = 201, body = ScriptDetail), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn save_script(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiJson(body): ApiJson<SaveScript>,
) -> ApiResult<(StatusCode, Json<ScriptDetail>)> {
    let generator = match body.generator.as_str() {
        g @ ("llm" | "template" | "manual") => g,
        _ => {
            return Err(ApiError::validation(
                "generator 须为 llm、template 或 manual",
            ));
        }
    };
    let model = match (generator, body.model.as_deref()) {
        ("llm", Some(model)) => Some(util::text(model, "模型名称", 1, 100)?),
        _ => None,
    };
    if let Some(room) = body.room_id {
        commerce.require_tools(&p, room).await?;
    }
    let script = checked(body.title, body.script)?;
    let id = store::create(
        &state,
        store::NewScript {
            owner: p.account_id,
            room_id: body.room_id,
            generator,
            model: model.as_deref(),
        },
        &script,
        state.clock.now_millis(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(detail(&state, &p, id).await?)))
}

/// My scripts, the most recently saved first.
#[utoipa::path(get, path = "/api/v1/live-scripts", tag = "commerce",
    responses((status = 200, body = [ScriptSummary])))]
pub async fn list_scripts(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> ApiResult<Json<Vec<ScriptSummary>>> {
    let rows = store::of_owner(&state, p.account_id).await?;
    Ok(Json(rows.iter().map(|r| summary(r, &p)).collect()))
}

/// A script: its latest version and the list of its versions.
#[utoipa::path(get, path = "/api/v1/live-scripts/{id}", tag = "commerce",
    params(("id" = i64, Path, description = "script id")),
    responses((status = 200, body = ScriptDetail), (status = 404, body = ErrorBody)))]
pub async fn get_script(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ScriptDetail>> {
    Ok(Json(detail(&state, &p, id).await?))
}

/// Save an edited script as its next version (every version is kept).
#[utoipa::path(put, path = "/api/v1/live-scripts/{id}", tag = "commerce", request_body = EditScript,
    params(("id" = i64, Path, description = "script id")),
    responses((status = 200, body = ScriptDetail), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn edit_script(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<EditScript>,
) -> ApiResult<Json<ScriptDetail>> {
    owned(&state, &p, id).await?;
    let script = checked(body.title, body.script)?;
    store::add_version(
        &state,
        id,
        &script,
        body.base_version,
        state.clock.now_millis(),
    )
    .await?;
    Ok(Json(detail(&state, &p, id).await?))
}

/// One version of a script.
#[utoipa::path(get, path = "/api/v1/live-scripts/{id}/versions/{version}", tag = "commerce",
    params(("id" = i64, Path, description = "script id"),
           ("version" = i64, Path, description = "version number, from 1")),
    responses((status = 200, body = ScriptVersion), (status = 404, body = ErrorBody)))]
pub async fn get_version(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath((id, version)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<ScriptVersion>> {
    readable(&state, &p, id).await?;
    let row = store::version(&state, id, version)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "这个版本不存在"))?;
    Ok(Json(ScriptVersion {
        script_id: id,
        version: row.version,
        created_at: row.created_at,
        script: row.script,
    }))
}
