use super::FieldError;

/// The host's key for an article: 1–200 chars of `A-Z a-z 0-9 . _ ~ : -`, starting with
/// a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArticleId(String);

impl ArticleId {
    pub const MAX_LEN: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::check(raw).map(|id| ArticleId(id.to_owned()))
    }

    /// Whether `raw` is a valid article id, without taking a copy (for hot paths that
    /// only look it up, such as the batch of aggregates).
    pub fn check(raw: &str) -> Result<&str, FieldError> {
        let ok_byte =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b':' | b'-');
        let starts_well = raw
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric);
        if raw.len() > Self::MAX_LEN || !starts_well || !raw.bytes().all(ok_byte) {
            return Err(FieldError::new(
                "article_id",
                "must be 1–200 characters of A-Z a-z 0-9 . _ ~ : - starting with a letter or digit",
            ));
        }
        Ok(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::fmt::Display for ArticleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in [
            "why-back-cracks",
            "a",
            "2026:news.item_1~x",
            &"a".repeat(200),
        ] {
            assert!(ArticleId::parse(ok).is_ok(), "{ok} should be accepted");
            assert_eq!(ArticleId::check(ok), Ok(ok));
        }
    }

    #[test]
    fn rejects_everything_else() {
        let long = "a".repeat(201);
        let cases = [
            ("", "empty"),
            ("-lead", "leading dash"),
            (".lead", "leading dot"),
            ("has space", "space"),
            ("slash/inside", "slash"),
            ("ümlaut", "non-ascii"),
            (long.as_str(), "too long"),
            ("semi;colon", "semicolon"),
        ];
        for (bad, why) in cases {
            let err = ArticleId::parse(bad).expect_err(why);
            assert_eq!(err.field, "article_id", "{why}");
            assert_eq!(ArticleId::check(bad), Err(err), "{why}");
        }
    }
}
