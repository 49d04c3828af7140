//! Validated personal fields: each newtype can only be built through `parse`, so a value that
//! reaches storage has passed its check (GB 11643 for ID numbers, mainland mobile numbers, ...).

use crate::error::{ApiError, ErrorCode};

/// A Chinese resident ID number (18 characters, GB 11643-1999 check code), upper-case `X`.
#[derive(Clone, PartialEq, Eq)]
pub struct IdNumber(String);

impl std::fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdNumber({})", self.masked())
    }
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK_CODES: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

impl IdNumber {
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let value = input.trim().to_ascii_uppercase();
        let invalid = |why: &str| {
            ApiError::with_message(ErrorCode::InvalidIdNumber, format!("身份证号码无效：{why}"))
        };
        if value.len() != 18 || !value.is_ascii() {
            return Err(invalid("应为 18 位"));
        }
        let (body, check) = value.split_at(17);
        if !body.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("前 17 位应为数字"));
        }
        let birth = &body[6..14];
        if !valid_birth_date(birth) {
            return Err(invalid("出生日期不正确"));
        }
        let expected = Self::check_code(body);
        if !check.starts_with(expected) {
            return Err(invalid("校验码不正确"));
        }
        Ok(Self(value))
    }

    /// The GB 11643 check code of the first 17 digits.
    pub fn check_code(body17: &str) -> char {
        let sum: u32 = body17
            .bytes()
            .zip(ID_WEIGHTS)
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        ID_CHECK_CODES[(sum % 11) as usize]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `2201**********1234`: the first four and last four characters.
    pub fn masked(&self) -> String {
        format!("{}**********{}", &self.0[..4], &self.0[14..])
    }
}

fn valid_birth_date(yyyymmdd: &str) -> bool {
    let (Ok(year), Ok(month), Ok(day)) = (
        yyyymmdd[0..4].parse::<i32>(),
        yyyymmdd[4..6].parse::<u8>(),
        yyyymmdd[6..8].parse::<u8>(),
    ) else {
        return false;
    };
    let Ok(month) = time::Month::try_from(month) else {
        return false;
    };
    (1900..=2100).contains(&year) && time::Date::from_calendar_date(year, month, day).is_ok()
}

/// A mainland China mobile number (11 digits starting with 1[3-9]); `+86`/`86` prefixes and
/// spaces or dashes are accepted on input and dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Phone(String);

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

impl Phone {
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let digits: String = input
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        let digits = digits
            .strip_prefix("+86")
            .or_else(|| digits.strip_prefix("86").filter(|d| d.len() == 11))
            .unwrap_or(&digits);
        let ok = digits.len() == 11
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.starts_with('1')
            && matches!(digits.as_bytes()[1], b'3'..=b'9');
        if !ok {
            return Err(ApiError::with_message(
                ErrorCode::InvalidPhone,
                "手机号码无效：应为 11 位中国大陆手机号",
            ));
        }
        Ok(Self(digits.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `138****1234`.
    pub fn masked(&self) -> String {
        format!("{}****{}", &self.0[..3], &self.0[7..])
    }
}

/// A login name: 3–32 characters of ASCII letters, digits, `_`, `.` and `-`, starting with a
/// letter or digit; stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let value = input.trim().to_ascii_lowercase();
        let ok = (3..=32).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && value.as_bytes()[0].is_ascii_alphanumeric();
        if !ok {
            return Err(ApiError::validation(
                "用户名须为 3–32 位字母、数字、下划线、点或短横线，并以字母或数字开头",
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person's real name: 1–50 characters, no control characters and no markup brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let value = input.trim();
        let count = value.chars().count();
        let ok = (1..=50).contains(&count)
            && !value
                .chars()
                .any(|c| c.is_control() || matches!(c, '<' | '>' | '"' | '\'' | '`' | ';'));
        if !ok {
            return Err(ApiError::validation(
                "姓名须为 1–50 个字符，且不能包含 < > \" ' ` ; 等特殊字符",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A short free-text label (certificate numbers, codes): 1–64 printable characters without
/// markup brackets.
pub fn parse_label(input: &str, what: &str) -> Result<String, ApiError> {
    let value = input.trim();
    let count = value.chars().count();
    if !(1..=64).contains(&count)
        || value
            .chars()
            .any(|c| c.is_control() || c == '<' || c == '>')
    {
        return Err(ApiError::validation(format!(
            "{what}须为 1–64 个字符，且不能包含 < > 或控制字符"
        )));
    }
    Ok(value.to_owned())
}

/// A new password that meets the policy: 8–128 characters with at least one letter and one digit.
#[derive(Clone)]
pub struct NewPassword(String);

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(***)")
    }
}

impl NewPassword {
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let count = input.chars().count();
        let ok = (8..=128).contains(&count)
            && input.chars().any(|c| c.is_ascii_alphabetic())
            && input.chars().any(|c| c.is_ascii_digit());
        if !ok {
            return Err(ErrorCode::WeakPassword.into());
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds a valid ID number from a region code, birth date and sequence.
    fn make_id(prefix6: &str, birth: &str, seq: &str) -> String {
        let body = format!("{prefix6}{birth}{seq}");
        format!("{body}{}", IdNumber::check_code(&body))
    }

    #[test]
    fn known_valid_numbers() {
        // The GB 11643 worked example.
        assert!(IdNumber::parse("11010519491231002X").is_ok());
        assert!(
            IdNumber::parse("11010519491231002x").is_ok(),
            "lower-case x accepted"
        );
        assert_eq!(
            IdNumber::parse("11010519491231002x").unwrap().as_str(),
            "11010519491231002X"
        );
    }

    #[test]
    fn invalid_numbers_are_refused_with_the_reason() {
        for (input, why) in [
            ("110105194912310021", "校验码"),
            ("11010519491231002", "18 位"),
            ("1101051949123100A2", "数字"),
            ("110105194902300021", "出生日期"),
            ("", "18 位"),
            ("'; DROP TABLE x;--", "数字"),
        ] {
            let err = IdNumber::parse(input).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidIdNumber);
            assert!(err.message().contains(why), "{input}: {}", err.message());
        }
    }

    #[test]
    fn masks() {
        let id = IdNumber::parse(&make_id("220102", "19900307", "123")).unwrap();
        assert_eq!(id.masked().len(), 18);
        assert!(id.masked().starts_with("2201**********"));
        assert_eq!(
            Phone::parse("+86 138-0000-1234").unwrap().masked(),
            "138****1234"
        );
    }

    #[test]
    fn phones() {
        assert!(Phone::parse("13800001234").is_ok());
        assert!(Phone::parse("8613800001234").is_ok());
        assert!(Phone::parse("12800001234").is_err());
        assert!(Phone::parse("1380000123").is_err());
        assert!(Phone::parse("<script>").is_err());
    }

    #[test]
    fn usernames_names_and_passwords() {
        assert_eq!(
            Username::parse(" Trainee01 ").unwrap().as_str(),
            "trainee01"
        );
        assert!(Username::parse("a").is_err());
        assert!(Username::parse("x' OR '1'='1").is_err());
        assert!(PersonName::parse("张三").is_ok());
        assert!(PersonName::parse("<script>alert(1)</script>").is_err());
        assert!(PersonName::parse("Robert'); DROP TABLE accounts;--").is_err());
        assert!(NewPassword::parse("abc12345").is_ok());
        assert!(NewPassword::parse("abcdefgh").is_err());
        assert!(NewPassword::parse("1234567").is_err());
    }

    proptest! {
        #[test]
        fn every_generated_number_validates_and_any_single_digit_change_fails(
            seq in 0u32..1000, day in 1u32..=28, month in 1u32..=12, year in 1950u32..2010, pos in 0usize..17, delta in 1u8..10
        ) {
            let id = make_id("220102", &format!("{year:04}{month:02}{day:02}"), &format!("{seq:03}"));
            prop_assert!(IdNumber::parse(&id).is_ok());
            // GB 11643's weights detect every single-digit substitution.
            let mut bytes = id.into_bytes();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(IdNumber::parse(&changed).is_err());
        }
    }
}
