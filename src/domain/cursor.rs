use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};

use super::FieldError;

/// Order of a listing. Ties on `created_at` are broken by id, so the order is total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Sort {
    Newest,
    #[default]
    Oldest,
}

impl Sort {
    pub fn parse(field: &str, raw: Option<&str>, default: Sort) -> Result<Sort, FieldError> {
        match raw {
            None => Ok(default),
            Some("newest") => Ok(Sort::Newest),
            Some("oldest") => Ok(Sort::Oldest),
            Some(_) => Err(FieldError::new(field, "must be newest or oldest")),
        }
    }
}

/// A keyset position: the last row a page ended on. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "1|{}|{}",
            self.created_at.timestamp_micros(),
            self.id
        ))
    }

    pub fn decode(raw: &str) -> Result<Cursor, FieldError> {
        let bad = || FieldError::new("cursor", "is not a cursor this service gave out");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.splitn(3, '|');
        let (Some("1"), Some(micros), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        // Ids are comment ids, log ids or user ids (bans), none longer than 200 bytes.
        // No control characters either (a NUL byte would reach the database).
        if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
            return Err(bad());
        }
        Ok(Cursor {
            created_at,
            id: id.to_owned(),
        })
    }
}

/// Page size: 1–100, 20 when absent.
pub fn parse_limit(raw: Option<i64>) -> Result<u64, FieldError> {
    match raw {
        None => Ok(20),
        Some(n @ 1..=100) => Ok(n as u64),
        Some(_) => Err(FieldError::new("limit", "must be from 1 to 100")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap(),
            id: "0193abcd-0000-7000-8000-000000000000".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn garbage_cursors_are_refused() {
        for bad in [
            "",
            "!!!",
            "bm90IGEgY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("2|1|x"),
            &URL_SAFE_NO_PAD.encode("1|x|y"),
        ] {
            assert_eq!(Cursor::decode(bad).unwrap_err().field, "cursor", "{bad}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None).unwrap(), 20);
        assert_eq!(parse_limit(Some(100)).unwrap(), 100);
        assert!(parse_limit(Some(0)).is_err());
        assert!(parse_limit(Some(101)).is_err());
    }

    #[test]
    fn sorts() {
        assert_eq!(
            Sort::parse("sort", None, Sort::Newest).unwrap(),
            Sort::Newest
        );
        assert_eq!(
            Sort::parse("sort", Some("oldest"), Sort::Newest).unwrap(),
            Sort::Oldest
        );
        assert!(Sort::parse("sort", Some("best"), Sort::Newest).is_err());
    }
}
