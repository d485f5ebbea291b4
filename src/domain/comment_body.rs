use super::{is_forbidden_control, FieldError};

/// Plain comment text: trimmed, 1–5000 characters (not bytes), no control characters
/// but newline and tab. Stored and returned as written otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentBody(String);

impl CommentBody {
    pub const MAX_CHARS: usize = 5000;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let text = raw.trim();
        let err = |m: &str| Err(FieldError::new("body", m));
        if text.is_empty() {
            return err("must not be empty");
        }
        if text.chars().count() > Self::MAX_CHARS {
            return err("must be at most 5000 characters");
        }
        if text.chars().any(is_forbidden_control) {
            return err("must not contain control characters other than newline and tab");
        }
        Ok(CommentBody(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A display name given by a guest (or taken from a token): trimmed, 1–64 characters,
/// no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorName(String);

impl AuthorName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(FieldError::new(field, "must not be empty"));
        }
        if text.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(field, "must be at most 64 characters"));
        }
        if text.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "must not contain control characters",
            ));
        }
        Ok(AuthorName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_keeps_newlines_and_tabs() {
        let body = CommentBody::parse("  line one\n\tline two  ").unwrap();
        assert_eq!(body.as_str(), "line one\n\tline two");
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(CommentBody::parse(&"é".repeat(5000)).is_ok());
        assert!(CommentBody::parse(&"é".repeat(5001)).is_err());
    }

    #[test]
    fn rejects_bad_bodies_naming_the_field() {
        let long = "x".repeat(5001);
        for (bad, why) in [
            ("", "empty"),
            ("  \n\t ", "blank"),
            ("bell\u{7}", "control"),
            ("nul\0", "nul"),
            (long.as_str(), "too long"),
        ] {
            let err = CommentBody::parse(bad).expect_err(why);
            assert_eq!(err.field, "body", "{why}");
        }
    }

    #[test]
    fn author_names_are_bounded() {
        assert_eq!(
            AuthorName::parse("author_name", " Mia ").unwrap().as_str(),
            "Mia"
        );
        assert!(AuthorName::parse("author_name", "").is_err());
        assert!(AuthorName::parse("author_name", &"m".repeat(65)).is_err());
        assert!(AuthorName::parse("author_name", "a\nb").is_err());
    }
}
