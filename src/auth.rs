//! Identity. The host site mints JWTs; tally only verifies them, accepting exactly one
//! configured algorithm (RFC 8725). Handlers take a `Reader`, `MaybeReader`, `Moderator`
//! or `Admin` extractor and never look at headers themselves.

use std::{future::Future, pin::Pin, sync::Arc};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpMessage, HttpRequest};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{config::JwtSettings, error::ApiError};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Moderator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "moderator" => Some(Role::Moderator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The token's `verified` claim (the host decides what it means: subscriber,
    /// buyer); comments written with it are marked `verified`.
    pub verified: bool,
}

impl User {
    pub fn is_moderator(&self) -> bool {
        self.role >= Role::Moderator
    }
}

/// The claims tally reads. Unknown claims are ignored; claims of the wrong type make
/// the token invalid.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// Optional: `true` marks the reader as verified (see `User::verified`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

/// Verification (and, with a shared secret, signing) keys.
pub struct JwtKeys {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    pub algorithm: Algorithm,
    /// True when no key was configured and a random secret was made at start.
    pub ephemeral: bool,
    issuer: Option<String>,
    audience: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("set either TALLY_JWT_SECRET or TALLY_JWT_PUBLIC_KEY_FILE, not both")]
    Both,
    #[error("TALLY_JWT_PUBLIC_KEY_FILE: cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("TALLY_JWT_PUBLIC_KEY_FILE: not an RSA, EC or Ed25519 public key in PEM form")]
    BadKey,
    #[error("TALLY_JWT_ALGORITHM: unknown algorithm {0:?}")]
    UnknownAlgorithm(String),
    #[error("TALLY_JWT_ALGORITHM: {0} does not fit the configured key")]
    AlgorithmMismatch(String),
    #[error("minting tokens needs TALLY_JWT_SECRET (a public key can only verify)")]
    CannotMint,
    #[error("cannot sign token: {0}")]
    Sign(String),
}

impl JwtKeys {
    /// Builds the keys from configuration. With no key at all a random 256-bit secret is
    /// made, for local trying only.
    pub fn from_settings(s: &JwtSettings) -> Result<Self, KeyError> {
        let wanted = s
            .algorithm
            .as_deref()
            .map(|a| {
                a.parse::<Algorithm>()
                    .map_err(|_| KeyError::UnknownAlgorithm(a.to_owned()))
            })
            .transpose()?;
        let (decoding, encoding, inferred, ephemeral) = match (&s.secret, &s.public_key_file) {
            (Some(_), Some(_)) => return Err(KeyError::Both),
            (Some(secret), None) => {
                if secret.len() < 32 {
                    tracing::warn!(
                        "TALLY_JWT_SECRET is shorter than 32 bytes; use a longer random secret"
                    );
                }
                let b = secret.as_bytes();
                (
                    DecodingKey::from_secret(b),
                    Some(EncodingKey::from_secret(b)),
                    Algorithm::HS256,
                    false,
                )
            }
            (None, Some(path)) => {
                let pem = std::fs::read(path)
                    .map_err(|e| KeyError::Read(path.display().to_string(), e))?;
                let (key, alg) = DecodingKey::from_rsa_pem(&pem)
                    .map(|k| (k, Algorithm::RS256))
                    .or_else(|_| DecodingKey::from_ec_pem(&pem).map(|k| (k, Algorithm::ES256)))
                    .or_else(|_| DecodingKey::from_ed_pem(&pem).map(|k| (k, Algorithm::EdDSA)))
                    .map_err(|_| KeyError::BadKey)?;
                (key, None, alg, false)
            }
            (None, None) => {
                let secret: [u8; 32] = rand::random();
                (
                    DecodingKey::from_secret(&secret),
                    Some(EncodingKey::from_secret(&secret)),
                    Algorithm::HS256,
                    true,
                )
            }
        };
        let algorithm = match wanted {
            None => inferred,
            Some(a) if a.family() == inferred.family() => a,
            Some(a) => return Err(KeyError::AlgorithmMismatch(format!("{a:?}"))),
        };
        if inferred == Algorithm::EdDSA && algorithm != Algorithm::EdDSA {
            return Err(KeyError::AlgorithmMismatch(format!("{algorithm:?}")));
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = &s.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        match &s.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        Ok(JwtKeys {
            decoding,
            encoding,
            validation,
            algorithm,
            ephemeral,
            issuer: s.issuer.clone(),
            audience: s.audience.clone(),
        })
    }

    /// Verifies a token and turns its claims into a user. Every failure is a 401.
    pub fn verify(&self, token: &str) -> Result<User, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                tracing::debug!(error = %e, "token refused");
                ApiError::Unauthorized("the bearer token is invalid or expired".into())
            })?;
        let c = data.claims;
        let bad = |why: &str| ApiError::Unauthorized(format!("the bearer token is invalid: {why}"));
        let sub_len = c.sub.chars().count();
        if sub_len == 0 || sub_len > 128 || c.sub.chars().any(char::is_control) {
            return Err(bad("sub must be 1–128 characters"));
        }
        let name = match c.name.as_deref().map(str::trim) {
            Some(n) if !n.is_empty() && !n.chars().any(char::is_control) => {
                n.chars().take(64).collect()
            }
            _ => c.sub.chars().take(64).collect(),
        };
        // An unknown role is never elevated: it counts as a reader.
        let role = c
            .role
            .as_deref()
            .and_then(Role::parse)
            .unwrap_or(Role::Reader);
        Ok(User {
            id: c.sub,
            name,
            role,
            verified: c.verified.unwrap_or(false),
        })
    }

    /// Mints a token (for `tally token`, the start-up banner and tests).
    pub fn mint(
        &self,
        sub: &str,
        name: Option<&str>,
        role: Role,
        ttl_secs: i64,
    ) -> Result<String, KeyError> {
        let key = self.encoding.as_ref().ok_or(KeyError::CannotMint)?;
        let claims = Claims {
            sub: sub.to_owned(),
            name: name.map(str::to_owned),
            role: Some(role.as_str().to_owned()),
            exp: chrono::Utc::now().timestamp() + ttl_secs,
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(serde_json::Value::String),
            verified: None,
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }
}

fn bearer(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::Unauthorized(
            "expected Authorization: Bearer <token>".into(),
        )),
    }
}

/// A caller already verified for this request (by the rate limiter), kept in the
/// request's extensions so the token is checked once.
#[derive(Clone)]
struct Identified(Option<User>);

/// The caller, if any. A token that is present but invalid is a 401, never a guest.
pub fn identify(req: &HttpRequest) -> Result<Option<User>, ApiError> {
    let cached = req.extensions().get::<Identified>().cloned();
    if let Some(Identified(user)) = cached {
        return Ok(user);
    }
    let user = match bearer(req)? {
        None => None,
        Some(token) => {
            let keys = req
                .app_data::<web::Data<Arc<JwtKeys>>>()
                .ok_or_else(|| ApiError::Internal("JwtKeys not registered".into()))?;
            Some(keys.verify(token)?)
        }
    };
    req.extensions_mut().insert(Identified(user.clone()));
    Ok(user)
}

macro_rules! extractor {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub User);

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                let result = identify(req).and_then(|user| {
                    let user = user.ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
                    let check: fn(&User) -> Result<(), ApiError> = $check;
                    check(&user)?;
                    Ok($name(user))
                });
                Box::pin(async move { result })
            }
        }
    };
}

extractor!(
    /// Any authenticated user.
    Reader,
    |_| Ok(())
);
extractor!(
    /// A moderator or admin.
    Moderator,
    |u| if u.is_moderator() { Ok(()) } else { Err(ApiError::Forbidden("this needs the moderator role".into())) }
);
extractor!(
    /// An admin.
    Admin,
    |u| if u.role == Role::Admin { Ok(()) } else { Err(ApiError::Forbidden("this needs the admin role".into())) }
);

/// The caller if a token was sent, or a guest.
#[derive(Debug, Clone)]
pub struct MaybeReader(pub Option<User>);

impl FromRequest for MaybeReader {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(identify(req).map(MaybeReader))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn keys(f: impl FnOnce(&mut JwtSettings)) -> JwtKeys {
        let mut s = JwtSettings {
            secret: Some(SECRET.into()),
            ..Default::default()
        };
        f(&mut s);
        JwtKeys::from_settings(&s).unwrap()
    }

    fn sign(claims: serde_json::Value, alg: Algorithm, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn a_minted_token_verifies() {
        let k = keys(|_| {});
        let t = k.mint("u-1", Some("Mia"), Role::Moderator, 60).unwrap();
        assert_eq!(
            k.verify(&t).unwrap(),
            User {
                id: "u-1".into(),
                name: "Mia".into(),
                role: Role::Moderator,
                verified: false,
            }
        );
    }

    #[test]
    fn name_falls_back_to_sub_and_unknown_role_is_a_reader() {
        let k = keys(|_| {});
        let t = sign(
            serde_json::json!({"sub": "u-2", "exp": now() + 60, "role": "superuser"}),
            Algorithm::HS256,
            SECRET.as_bytes(),
        );
        assert_eq!(
            k.verify(&t).unwrap(),
            User {
                id: "u-2".into(),
                name: "u-2".into(),
                role: Role::Reader,
                verified: false,
            }
        );
    }

    #[test]
    fn bad_tokens_are_refused() {
        let k = keys(|s| {
            s.issuer = Some("https://host.example".into());
            s.audience = Some("tally".into());
        });
        let good = serde_json::json!({"sub": "u", "exp": now() + 60, "iss": "https://host.example", "aud": "tally"});
        assert!(
            k.verify(&sign(good.clone(), Algorithm::HS256, SECRET.as_bytes()))
                .is_ok(),
            "baseline"
        );
        let with = |patch: serde_json::Value| {
            let mut c = good.clone();
            for (key, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(key);
                } else {
                    c[key] = v.clone();
                }
            }
            sign(c, Algorithm::HS256, SECRET.as_bytes())
        };
        let none_alg = {
            let header = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                r#"{"alg":"none","typ":"JWT"}"#,
            );
            let body = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                good.to_string(),
            );
            format!("{header}.{body}.")
        };
        let cases: Vec<(String, &str)> = vec![
            (none_alg, "alg none"),
            (
                sign(good.clone(), Algorithm::HS512, SECRET.as_bytes()),
                "other algorithm",
            ),
            (
                sign(
                    good.clone(),
                    Algorithm::HS256,
                    b"another-secret-another-secret-xx",
                ),
                "bad signature",
            ),
            (with(serde_json::json!({"exp": null})), "missing exp"),
            (with(serde_json::json!({"exp": now() - 120})), "expired"),
            (
                with(serde_json::json!({"nbf": now() + 120})),
                "not yet valid",
            ),
            (with(serde_json::json!({"iss": null})), "missing iss"),
            (
                with(serde_json::json!({"iss": "https://evil.example"})),
                "wrong iss",
            ),
            (with(serde_json::json!({"aud": null})), "missing aud"),
            (with(serde_json::json!({"aud": "other"})), "wrong aud"),
            (with(serde_json::json!({"sub": null})), "missing sub"),
            (with(serde_json::json!({"sub": ""})), "empty sub"),
            (
                with(serde_json::json!({"sub": "x".repeat(129)})),
                "long sub",
            ),
            (
                with(serde_json::json!({"sub": 42})),
                "sub of the wrong type",
            ),
            (
                with(serde_json::json!({"exp": "tomorrow"})),
                "exp of the wrong type",
            ),
            ("not.a.token".into(), "garbage"),
        ];
        for (token, why) in cases {
            assert!(
                matches!(k.verify(&token), Err(ApiError::Unauthorized(_))),
                "{why} must be refused"
            );
        }
    }

    #[test]
    fn expiry_within_leeway_is_accepted() {
        let k = keys(|_| {});
        let t = sign(
            serde_json::json!({"sub": "u", "exp": now() - 2}),
            Algorithm::HS256,
            SECRET.as_bytes(),
        );
        assert!(k.verify(&t).is_ok());
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn public_keys_verify_their_own_algorithm_only() {
        let cases = [
            (
                "rs256",
                Algorithm::RS256,
                EncodingKey::from_rsa_pem as fn(&[u8]) -> _,
            ),
            ("es256", Algorithm::ES256, EncodingKey::from_ec_pem),
            ("ed25519", Algorithm::EdDSA, EncodingKey::from_ed_pem),
        ];
        for (name, alg, load) in cases {
            let settings = JwtSettings {
                public_key_file: Some(fixture(&format!("{name}.pub"))),
                ..Default::default()
            };
            let keys = JwtKeys::from_settings(&settings).unwrap();
            assert_eq!(
                keys.algorithm, alg,
                "{name}: algorithm inferred from the key"
            );
            assert!(matches!(
                keys.mint("u", None, Role::Reader, 60),
                Err(KeyError::CannotMint)
            ));

            let private = std::fs::read(fixture(&format!("{name}.key"))).unwrap();
            let claims = serde_json::json!({"sub": "u-1", "exp": now() + 60});
            let token =
                jsonwebtoken::encode(&Header::new(alg), &claims, &load(&private).unwrap()).unwrap();
            assert_eq!(
                keys.verify(&token).unwrap().id,
                "u-1",
                "{name}: a token signed with the private key"
            );

            // Key confusion: an HS256 token whose "secret" is the public key PEM.
            let public = std::fs::read(fixture(&format!("{name}.pub"))).unwrap();
            let forged = sign(claims.clone(), Algorithm::HS256, &public);
            assert!(
                keys.verify(&forged).is_err(),
                "{name}: HS256 signed with the public key is refused"
            );
        }
    }

    #[test]
    fn a_configured_algorithm_must_fit_the_key() {
        let rsa = |alg: &str| JwtSettings {
            public_key_file: Some(fixture("rs256.pub")),
            algorithm: Some(alg.into()),
            ..Default::default()
        };
        assert_eq!(
            JwtKeys::from_settings(&rsa("RS512")).unwrap().algorithm,
            Algorithm::RS512
        );
        assert!(matches!(
            JwtKeys::from_settings(&rsa("ES256")),
            Err(KeyError::AlgorithmMismatch(_))
        ));
        assert!(matches!(
            JwtKeys::from_settings(&rsa("HS256")),
            Err(KeyError::AlgorithmMismatch(_))
        ));
        assert!(matches!(
            JwtKeys::from_settings(&rsa("nope")),
            Err(KeyError::UnknownAlgorithm(_))
        ));
        let missing = JwtSettings {
            public_key_file: Some("/no/such/key.pem".into()),
            ..Default::default()
        };
        assert!(matches!(
            JwtKeys::from_settings(&missing),
            Err(KeyError::Read(..))
        ));
        let not_a_key = JwtSettings {
            public_key_file: Some(fixture("README.md")),
            ..Default::default()
        };
        assert!(matches!(
            JwtKeys::from_settings(&not_a_key),
            Err(KeyError::BadKey)
        ));
    }

    #[test]
    fn configuration_errors() {
        let both = JwtSettings {
            secret: Some(SECRET.into()),
            public_key_file: Some("/x".into()),
            ..Default::default()
        };
        assert!(matches!(JwtKeys::from_settings(&both), Err(KeyError::Both)));
        let mismatch = JwtSettings {
            secret: Some(SECRET.into()),
            algorithm: Some("RS256".into()),
            ..Default::default()
        };
        assert!(matches!(
            JwtKeys::from_settings(&mismatch),
            Err(KeyError::AlgorithmMismatch(_))
        ));
        let none = JwtKeys::from_settings(&JwtSettings::default()).unwrap();
        assert!(none.ephemeral);
    }
}
