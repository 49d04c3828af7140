//! The one error table of the HTTP edge: every error code, its HTTP status and its default
//! Chinese message, and `ApiError`, the only error type handlers return.
//!
//! Domain crates keep their own typed errors and convert them into an [`ApiError`] with a code
//! from this table; nothing else decides what a client sees. Internal errors are logged with
//! their cause and answered with a generic message, so no SQL or path ever leaks to a client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

macro_rules! error_codes {
    ($( $variant:ident => ($status:ident, $code:literal, $message:literal), )*) => {
        /// Every error code livecamp answers with. The `code` string is a stable contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $( $variant, )* }

        impl ErrorCode {
            /// All codes, for documentation and the exhaustiveness test.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The stable machine-readable code.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )* }
            }

            /// The HTTP status this code is answered with.
            pub fn status(self) -> StatusCode {
                match self { $( ErrorCode::$variant => StatusCode::$status, )* }
            }

            /// The default message shown to people (Simplified Chinese).
            pub fn default_message(self) -> &'static str {
                match self { $( ErrorCode::$variant => $message, )* }
            }
        }
    };
}

error_codes! {
    // 400
    BadRequest => (BAD_REQUEST, "bad_request", "请求格式不正确"),
    MalformedJson => (BAD_REQUEST, "malformed_json", "请求内容不是有效的 JSON"),
    ValidationFailed => (BAD_REQUEST, "validation_failed", "提交的内容未通过校验"),
    InvalidIdNumber => (BAD_REQUEST, "invalid_id_number", "身份证号码无效"),
    InvalidPhone => (BAD_REQUEST, "invalid_phone", "手机号码无效"),
    WeakPassword => (BAD_REQUEST, "weak_password", "密码至少 8 位，且须同时包含字母和数字"),
    InvalidSdp => (BAD_REQUEST, "invalid_sdp", "SDP 无效，或不含音视频"),
    IdempotencyKeyRequired => (BAD_REQUEST, "idempotency_key_required", "请求缺少 Idempotency-Key 请求头（1–64 个字母、数字、- 或 _）"),
    CouponNotApplicable => (BAD_REQUEST, "coupon_not_applicable", "这张优惠券不能用于本订单"),
    CouponExpired => (BAD_REQUEST, "coupon_expired", "优惠券不在有效期内"),
    VideoTooLong => (BAD_REQUEST, "video_too_long", "视频太长，请剪短后再上传"),
    // 401
    Unauthenticated => (UNAUTHORIZED, "unauthenticated", "请先登录"),
    InvalidCredentials => (UNAUTHORIZED, "invalid_credentials", "用户名或密码错误"),
    SessionEnded => (UNAUTHORIZED, "session_ended", "账号已在其他地方登录，或会话已过期，请重新登录"),
    InvalidStreamKey => (UNAUTHORIZED, "invalid_stream_key", "推流密钥无效或已停用，请在直播间重新生成推流密钥"),
    // 403
    Forbidden => (FORBIDDEN, "forbidden", "没有权限执行此操作"),
    CsrfFailed => (FORBIDDEN, "csrf_failed", "请求校验失败，请刷新页面后重试"),
    AccountDisabled => (FORBIDDEN, "account_disabled", "账号已停用"),
    // 404, 405
    NotFound => (NOT_FOUND, "not_found", "请求的资源不存在"),
    MethodNotAllowed => (METHOD_NOT_ALLOWED, "method_not_allowed", "不支持该请求方法"),
    // 409
    Conflict => (CONFLICT, "conflict", "操作与当前状态冲突"),
    UsernameTaken => (CONFLICT, "username_taken", "用户名已被使用"),
    IdNumberTaken => (CONFLICT, "id_number_taken", "该身份证号码已登记"),
    NotPublishing => (CONFLICT, "not_publishing", "主播还没有开始推流"),
    AlreadyPublishing => (CONFLICT, "already_publishing", "这个直播间已经有人在推流"),
    SoldOut => (CONFLICT, "sold_out", "已售罄"),
    LimitReached => (CONFLICT, "limit_reached", "已达到每人限购数量"),
    SaleNotOpen => (CONFLICT, "sale_not_open", "秒杀尚未开始"),
    AlreadyGrabbed => (CONFLICT, "already_grabbed", "你已经抢过这个红包了"),
    InsufficientBalance => (CONFLICT, "insufficient_balance", "模拟账户余额不足"),
    InvalidTransition => (CONFLICT, "invalid_transition", "订单当前状态不允许此操作"),
    ShopExists => (CONFLICT, "shop_exists", "你已经开过店铺了"),
    CouponExhausted => (CONFLICT, "coupon_exhausted", "优惠券已被领完"),
    VideoNotReady => (CONFLICT, "video_not_ready", "视频还在处理中，请稍后再试"),
    BotsNotLive => (CONFLICT, "bots_not_live", "直播开始后才能添加模拟买家"),
    // 410
    SaleEnded => (GONE, "sale_ended", "秒杀已结束"),
    RedPacketEmpty => (GONE, "red_packet_empty", "红包已被抢完"),
    RedPacketExpired => (GONE, "red_packet_expired", "红包已过期"),
    // 413, 415
    PayloadTooLarge => (PAYLOAD_TOO_LARGE, "payload_too_large", "请求内容过大"),
    VideoTooLarge => (PAYLOAD_TOO_LARGE, "video_too_large", "视频文件太大"),
    UnsupportedMediaType => (UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "请求内容类型不受支持"),
    VideoUnsupported => (UNSUPPORTED_MEDIA_TYPE, "video_unsupported", "无法识别这个视频文件，请上传 MP4、MOV、WebM 等常见格式的视频"),
    // 422
    UnprocessableEntity => (UNPROCESSABLE_ENTITY, "unprocessable_entity", "请求字段缺失或类型不正确"),
    IdempotencyKeyReused => (UNPROCESSABLE_ENTITY, "idempotency_key_reused", "这个 Idempotency-Key 已用于另一个请求"),
    // 423, 429
    AccountLocked => (LOCKED, "account_locked", "登录失败次数过多，账号已临时锁定"),
    RateLimited => (TOO_MANY_REQUESTS, "rate_limited", "操作过于频繁，请稍后再试"),
    // 5xx
    Internal => (INTERNAL_SERVER_ERROR, "internal", "服务器内部错误，请稍后再试"),
    Unavailable => (SERVICE_UNAVAILABLE, "unavailable", "服务暂不可用，请稍后再试"),
    LlmUnavailable => (BAD_GATEWAY, "llm_unavailable", "AI 服务暂时无法使用，请稍后再试，或改用内置模板生成"),
    LlmAuthFailed => (BAD_GATEWAY, "llm_auth_failed", "AI 服务拒绝了访问密钥，请联系管理员检查 llm_api_key 配置"),
    LlmBadOutput => (BAD_GATEWAY, "llm_bad_output", "AI 返回的脚本格式不正确，请重新生成"),
    LlmTimeout => (GATEWAY_TIMEOUT, "llm_timeout", "AI 服务响应超时，请稍后再试"),
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, from the error table.
    pub code: &'static str,
    /// Human-readable explanation in Simplified Chinese.
    pub message: String,
}

/// The error every handler returns: a code from the table plus an optional specific message.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: None,
        }
    }

    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: Some(message.into()),
        }
    }

    /// An unexpected failure: logged here with its cause, answered with a generic 500.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(ErrorCode::Internal)
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound)
    }

    pub fn forbidden() -> Self {
        Self::new(ErrorCode::Forbidden)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::with_message(ErrorCode::ValidationFailed, message)
    }

    pub fn message(&self) -> &str {
        self.message
            .as_deref()
            .unwrap_or_else(|| self.code.default_message())
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message())
    }
}

impl std::error::Error for ApiError {}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => Self::not_found(),
            sqlx::Error::PoolTimedOut => {
                tracing::warn!(error = %err, "database pool exhausted");
                Self::new(ErrorCode::Unavailable)
            }
            // Contention, not a bug: PostgreSQL's deadlock and serialization failures, SQLite's
            // busy and locked (after its busy timeout). The request can be retried.
            sqlx::Error::Database(db)
                if matches!(
                    db.code().as_deref(),
                    Some("40P01" | "40001" | "5" | "6" | "261" | "517")
                ) =>
            {
                tracing::warn!(error = %err, "database contention");
                Self::new(ErrorCode::Unavailable)
            }
            _ => Self::internal(err),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::internal(format!("{err:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body = ErrorBody {
            code: self.code.as_str(),
            message: self.message().to_owned(),
        };
        (status, Json(body)).into_response()
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_statuses_are_errors() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(
                s.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{s} is not snake_case"
            );
            assert!(
                code.status().is_client_error() || code.status().is_server_error(),
                "{s} maps to a non-error status"
            );
            assert!(!code.default_message().is_empty());
        }
    }
}
