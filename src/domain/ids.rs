//! Ids taken from paths, query strings and bodies, parsed before any query: a value
//! the database could not store (a NUL byte, which PostgreSQL refuses in text, another
//! control character, an overlong id) is refused here, the same way on SQLite and
//! PostgreSQL, instead of reaching the database.

use super::FieldError;

/// Whether `raw` has 1..=`max` characters and none of them a control character.
fn storable(raw: &str, max: usize) -> bool {
    !raw.is_empty() && raw.chars().count() <= max && !raw.chars().any(char::is_control)
}

/// A comment's id: opaque (a UUIDv7 for comments made here), 1–64 characters, no
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommentId(String);

impl CommentId {
    pub const MAX_LEN: usize = 64;

    /// Parses the comment id given as input `field` (`id`, `comment_id`, `parent_id`).
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        if storable(raw, Self::MAX_LEN) {
            Ok(CommentId(raw.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                "must be a comment id: 1–64 characters, no control characters",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A user's id as bans and the audit log name it: a token's `sub` (1–128 characters)
/// or `guest:<author name>`; 1–160 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 160;

    /// Parses the user id given as input `field` (`user_id`, `actor`).
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        if storable(raw, Self::MAX_LEN) {
            Ok(UserId(raw.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                "must be a user id: 1–160 characters, no control characters",
            ))
        }
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
    fn ids_the_database_can_store_are_accepted() {
        for ok in ["019ab3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b", "x", &"c".repeat(64)] {
            assert_eq!(
                CommentId::parse("id", ok).map(|c| c.into_inner()),
                Ok(ok.to_owned())
            );
        }
        for ok in ["u-1", "guest:Ada Lovelace", "ümlaut", &"u".repeat(160)] {
            assert_eq!(
                UserId::parse("user_id", ok).map(|u| u.into_inner()),
                Ok(ok.to_owned())
            );
        }
    }

    #[test]
    fn ids_the_database_would_refuse_are_rejected_naming_the_field() {
        let long_comment = "c".repeat(65);
        let long_user = "u".repeat(161);
        let cases = [
            ("", "empty"),
            ("x\0y", "a NUL byte"),
            ("x\u{1}y", "a control character"),
            ("line\nbreak", "a newline"),
        ];
        for (bad, why) in cases {
            let e = CommentId::parse("comment_id", bad).expect_err(why);
            assert_eq!(e.field, "comment_id", "{why}");
            let e = UserId::parse("actor", bad).expect_err(why);
            assert_eq!(e.field, "actor", "{why}");
        }
        assert!(
            CommentId::parse("id", &long_comment).is_err(),
            "overlong comment id"
        );
        assert!(
            UserId::parse("user_id", &long_user).is_err(),
            "overlong user id"
        );
    }
}
