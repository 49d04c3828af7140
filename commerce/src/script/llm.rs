//! The OpenAI-compatible model behind AI live scripts, through async-openai: one streamed chat
//! completion per script, and every way it can fail mapped to an error code of the table
//! (`llm_unavailable`, `llm_auth_failed`, `llm_timeout`, `llm_bad_output`) with a Chinese message.
//! What the endpoint said is logged, never its key.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage, ChatCompletionResponseStream,
    CreateChatCompletionRequestArgs, CreateChatCompletionStreamResponse,
};
use foundation::config::Config;
use foundation::{ApiError, ErrorCode};
use futures::StreamExt;
use tokio::time::Instant;

use super::rules::Prompt;

/// Time to open a connection to the endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while the answer streams in.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest time for a whole script.
pub const DEADLINE: Duration = Duration::from_secs(180);
/// Largest answer accepted (a long script is ~20 KB of JSON).
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// The configured endpoint and model.
pub struct Llm {
    client: Client<OpenAIConfig>,
    model: String,
}

impl Llm {
    /// The model of `config`, or `None` when no endpoint is configured (the template writes).
    pub fn from_config(config: &Config) -> Option<Result<Self, ApiError>> {
        let base = config.llm_base_url.as_deref()?;
        Some(Self::new(
            base,
            config.llm_api_key.as_deref(),
            config.llm_model.trim(),
        ))
    }

    fn new(base: &str, key: Option<&str>, model: &str) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("livecamp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                tracing::error!(error = %e, "could not build the AI HTTP client");
                ApiError::new(ErrorCode::LlmUnavailable)
            })?;
        // Only our configuration speaks: no OPENAI_* environment variable reaches the endpoint.
        let config = OpenAIConfig::new()
            .with_api_base(base.trim_end_matches('/'))
            .with_api_key(key.unwrap_or_default())
            .with_org_id("")
            .with_project_id("");
        Ok(Self {
            client: Client::with_config(config).with_http_client(http),
            model: model.to_owned(),
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Sends the prompt and waits for the answer to begin; failures before any text (no
    /// connection, refused key, unknown model, server error) come back here.
    pub async fn start(&self, prompt: &Prompt) -> Result<Answer, ApiError> {
        let deadline = Instant::now() + DEADLINE;
        let messages: Vec<ChatCompletionRequestMessage> = vec![
            ChatCompletionRequestSystemMessage::from(prompt.system.as_str()).into(),
            ChatCompletionRequestUserMessage::from(prompt.user.as_str()).into(),
        ];
        let request = CreateChatCompletionRequestArgs::default()
            .model(self.model.clone())
            .messages(messages)
            .stream(true)
            .build()
            .map_err(|e| self.failure(e))?;
        let stream = tokio::time::timeout_at(deadline, self.client.chat().create_stream(request))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| self.failure(e))?;
        Ok(Answer {
            stream,
            deadline,
            text: String::new(),
            model: self.model.clone(),
        })
    }

    fn failure(&self, err: OpenAIError) -> ApiError {
        upstream_error(&self.model, err)
    }
}

/// An answer being streamed in.
pub struct Answer {
    stream: ChatCompletionResponseStream,
    deadline: Instant,
    /// Everything received so far.
    pub text: String,
    model: String,
}

impl Answer {
    /// The next piece of text, or `None` when the answer is complete.
    pub async fn next(&mut self) -> Result<Option<String>, ApiError> {
        loop {
            let item = tokio::time::timeout_at(self.deadline, self.stream.next())
                .await
                .map_err(|_| timed_out())?;
            let chunk = match item {
                None => return Ok(None),
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => return Err(upstream_error(&self.model, e)),
            };
            let piece = text_of(&chunk);
            if piece.is_empty() {
                continue;
            }
            if self.text.len() + piece.len() > MAX_ANSWER_BYTES {
                return Err(ApiError::with_message(
                    ErrorCode::LlmBadOutput,
                    "AI 返回的内容过长，请减少商品数量后重试",
                ));
            }
            self.text.push_str(&piece);
            return Ok(Some(piece));
        }
    }

    /// Waits for the rest of the answer; returns all of it.
    pub async fn collect(mut self) -> Result<String, ApiError> {
        while self.next().await?.is_some() {}
        Ok(self.text)
    }
}

/// The text of the first choice in a chunk.
fn text_of(chunk: &CreateChatCompletionStreamResponse) -> String {
    chunk
        .choices
        .iter()
        .filter(|c| c.index == 0)
        .filter_map(|c| c.delta.content.as_deref())
        .collect()
}

fn timed_out() -> ApiError {
    tracing::warn!("the AI endpoint did not answer in time");
    ApiError::new(ErrorCode::LlmTimeout)
}

/// What a client sees of an endpoint's failure.
fn upstream_error(model: &str, err: OpenAIError) -> ApiError {
    tracing::warn!(error = %err, model, "AI live script request failed");
    match err {
        OpenAIError::Reqwest(e) if e.is_timeout() => ApiError::new(ErrorCode::LlmTimeout),
        OpenAIError::Reqwest(e) if e.is_connect() => ApiError::with_message(
            ErrorCode::LlmUnavailable,
            "无法连接 AI 服务，请稍后再试；如一直失败，请联系管理员检查 llm_base_url 配置",
        ),
        OpenAIError::Reqwest(_) | OpenAIError::StreamError(_) => ApiError::with_message(
            ErrorCode::LlmUnavailable,
            "与 AI 服务的连接中断了，请重新生成",
        ),
        OpenAIError::ApiError(response) => {
            let status = response.status_code.as_u16();
            match status {
                401 | 403 => ErrorCode::LlmAuthFailed.into(),
                404 => ApiError::with_message(
                    ErrorCode::LlmUnavailable,
                    format!(
                        "AI 服务找不到模型“{model}”或接口地址不正确，请联系管理员检查 llm_model 和 llm_base_url 配置"
                    ),
                ),
                408 | 504 => ErrorCode::LlmTimeout.into(),
                429 => ApiError::with_message(
                    ErrorCode::LlmUnavailable,
                    "AI 服务繁忙或额度已用完（HTTP 429），请稍后再试",
                ),
                500..=599 => ApiError::with_message(
                    ErrorCode::LlmUnavailable,
                    format!("AI 服务出错了（HTTP {status}），请稍后再试"),
                ),
                _ => ApiError::with_message(
                    ErrorCode::LlmUnavailable,
                    format!("AI 服务拒绝了请求（HTTP {status}），请联系管理员检查 AI 服务配置"),
                ),
            }
        }
        OpenAIError::JSONDeserialize(..) => ApiError::with_message(
            ErrorCode::LlmBadOutput,
            "AI 服务的应答不是 OpenAI 兼容的格式，请联系管理员检查 llm_base_url 配置",
        ),
        _ => ErrorCode::LlmUnavailable.into(),
    }
}
