//! HS256 JWTs signed in-process with the secret the server under test is given.

use jsonwebtoken::{EncodingKey, Header};
use tally::auth::Claims;

/// The secret tally is started with (`TALLY_JWT_SECRET`); bench only.
pub const SECRET: &str = "tally-bench-only-secret-0123456789abcdef";

/// A token for `sub` with `role`, valid for ten years.
pub fn mint(sub: &str, name: &str, role: &str) -> Result<String, String> {
    let claims = Claims {
        sub: sub.to_owned(),
        name: Some(name.to_owned()),
        role: Some(role.to_owned()),
        exp: chrono::Utc::now().timestamp() + 10 * 365 * 24 * 3600,
        nbf: None,
        iss: None,
        aud: None,
        verified: None,
    };
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .map_err(|e| format!("cannot sign a token: {e}"))
}

/// Tokens of `n` distinct readers `r-1` … `r-n`.
pub fn readers(n: u32) -> Result<Vec<String>, String> {
    (1..=n)
        .map(|i| mint(&format!("r-{i}"), &format!("Reader {i}"), "reader"))
        .collect()
}
