use sha2::{Digest, Sha256};

use super::FieldError;

/// A client's `Idempotency-Key`: 1–255 printable ASCII characters (space to `~`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;
    pub const HEADER: &'static str = "Idempotency-Key";

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.is_empty()
            || raw.len() > Self::MAX_LEN
            || !raw.bytes().all(|b| (b' '..=b'~').contains(&b))
        {
            return Err(FieldError::new(
                Self::HEADER,
                "must be 1–255 printable ASCII characters",
            ));
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The fingerprint of a request, to tell a retry from a different request under the same
/// key: SHA-256 (hex) over the method, the path and the exact body bytes. Each part is
/// length-prefixed so no two different requests can hash the same input.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        let long = "k".repeat(255);
        for ok in [
            "a",
            "7f0c2a9e-1d2b-4c1e-9f7a-3b2d1c0e9f8a",
            "with space",
            "~!",
            &long,
        ] {
            assert!(
                IdempotencyKey::parse(ok).is_ok(),
                "{ok:?} should be accepted"
            );
        }
        let too_long = "k".repeat(256);
        for (bad, why) in [
            ("", "empty"),
            (too_long.as_str(), "256 characters"),
            ("tab\there", "control character"),
            ("caf\u{e9}", "not ASCII"),
            ("nl\n", "newline"),
        ] {
            let err = IdempotencyKey::parse(bad).expect_err(why);
            assert_eq!(err.field, "Idempotency-Key", "{why}");
        }
    }

    #[test]
    fn the_hash_tells_method_path_and_body_apart() {
        let base = request_hash("POST", "/a", b"{}");
        assert_eq!(base.len(), 64);
        assert_eq!(base, request_hash("POST", "/a", b"{}"));
        assert_ne!(base, request_hash("PUT", "/a", b"{}"));
        assert_ne!(base, request_hash("POST", "/b", b"{}"));
        assert_ne!(base, request_hash("POST", "/a", b"{ }"));
        // Moving bytes between parts changes the hash (length prefixes).
        assert_ne!(
            request_hash("POST", "/a{", b"}"),
            request_hash("POST", "/a", b"{}")
        );
    }
}
