//! Small input checks shared by the commerce routes: texts, amounts, idempotency keys, and the
//! masked names order notices show.

use axum::http::HeaderMap;
use foundation::{ApiError, ErrorCode};

/// A trimmed text of `min..=max` characters without control characters or angle brackets.
pub fn text(input: &str, what: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let value = input.trim();
    let count = value.chars().count();
    let bad_char = value
        .chars()
        .any(|c| (c.is_control() && c != '\n') || c == '<' || c == '>');
    if count < min || count > max || bad_char {
        return Err(ApiError::validation(format!(
            "{what}须为 {min}–{max} 个字符，且不能包含 < > 或控制字符"
        )));
    }
    Ok(value.to_owned())
}

/// An amount of money in cents, `1..=max`.
pub fn cents(value: i64, what: &str, max: i64) -> Result<i64, ApiError> {
    if value < 1 || value > max {
        return Err(ApiError::validation(format!(
            "{what}须在 0.01 元到 {} 元之间（以分为单位的整数）",
            max / 100
        )));
    }
    Ok(value)
}

/// A count in `min..=max`.
pub fn count(value: i64, what: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    if value < min || value > max {
        return Err(ApiError::validation(format!(
            "{what}须在 {min} 到 {max} 之间"
        )));
    }
    Ok(value)
}

/// Largest price of one item: ¥1,000,000.
pub const MAX_PRICE_CENTS: i64 = 100_000_000;
/// Largest stock of one SKU.
pub const MAX_STOCK: i64 = 10_000_000;

/// The `Idempotency-Key` header: 1–64 of `[A-Za-z0-9_-]`. `None` when absent.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default().trim();
    let valid = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(ErrorCode::IdempotencyKeyRequired.into());
    }
    Ok(Some(key.to_owned()))
}

/// An optional JSON body: empty means the defaults; anything else must parse.
pub fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::with_message(
                ErrorCode::UnprocessableEntity,
                format!("请求字段缺失或类型不正确：{e}"),
            )
        } else {
            ErrorCode::MalformedJson.into()
        }
    })
}

/// A name as order notices show it to the room: the first character, then `*`.
pub fn masked_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => format!("{first}{}", "*".repeat(chars.count().clamp(1, 2))),
        None => "*".to_owned(),
    }
}

/// A JSON array of strings stored in a TEXT column (images, quick replies).
pub fn string_list(stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_default()
}

/// Whether a database error is a unique-constraint violation (on either engine).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation() || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_names_and_checks_keys() {
        assert_eq!(masked_name("张三"), "张*");
        assert_eq!(masked_name("欧阳娜娜"), "欧**");
        assert_eq!(masked_name(""), "*");
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers).unwrap(), None);
        headers.insert("idempotency-key", "abc-123_X".parse().unwrap());
        assert_eq!(
            idempotency_key(&headers).unwrap().as_deref(),
            Some("abc-123_X")
        );
        headers.insert("idempotency-key", "has space".parse().unwrap());
        assert!(idempotency_key(&headers).is_err());
        assert!(cents(0, "价格", MAX_PRICE_CENTS).is_err());
        assert!(cents(-5, "价格", MAX_PRICE_CENTS).is_err());
        assert_eq!(cents(1, "价格", MAX_PRICE_CENTS).unwrap(), 1);
        assert!(text("  ", "名称", 1, 10).is_err());
        assert!(text("<b>", "名称", 1, 10).is_err());
    }
}
