//! The lines of `tally export`: a header, then one object a line tagged with its
//! `type`, every column of the row under its column name, timestamps as RFC 3339 in
//! UTC with microseconds (the precision both databases store), so that an export
//! imported and exported again gives the same bytes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::entity::{article, ban, comment, comment_vote, flag, moderation_log, rating, setting};

pub const FORMAT: &str = "tally-export";
pub const VERSION: u32 = 1;

/// The first line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub exported_at: String,
}

/// The types, in the order an export lists them.
pub const TYPES: [&str; 9] = [
    "settings", "article", "comment", "rating", "flag", "vote", "ban", "log", "webhook",
];

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Line {
    Settings(SettingLine),
    Article(ArticleLine),
    Comment(CommentLine),
    Rating(RatingLine),
    Flag(FlagLine),
    Vote(VoteLine),
    Ban(BanLine),
    Log(LogLine),
    /// A webhook's columns but its secret (the table is optional: exported when it
    /// exists; never imported, its secret being left out).
    Webhook(serde_json::Map<String, serde_json::Value>),
}

impl Line {
    pub fn kind(&self) -> &'static str {
        match self {
            Line::Settings(_) => "settings",
            Line::Article(_) => "article",
            Line::Comment(_) => "comment",
            Line::Rating(_) => "rating",
            Line::Flag(_) => "flag",
            Line::Vote(_) => "vote",
            Line::Ban(_) => "ban",
            Line::Log(_) => "log",
            Line::Webhook(_) => "webhook",
        }
    }
}

/// Parses one line. Lines as `tally export` writes them start with their `type`
/// (`{"type":"comment",…`): those are read straight into their type's struct, which
/// spares serde's tagged-enum path buffering every field first (the bulk of an
/// import's parsing time); any other line goes the general way.
pub fn parse(line: &mut String) -> Result<Line, serde_json::Error> {
    fn rest<'a, T: Deserialize<'a>>(
        line: &'a mut String,
        prefix: usize,
        wrap: impl FnOnce(T) -> Line,
    ) -> Result<Line, serde_json::Error> {
        // `{"type":"comment","id":…}` → `{"id":…}`: the comma ending the prefix becomes
        // the object's opening brace (one byte for one, nothing moves).
        line.replace_range(prefix - 1..prefix, "{");
        serde_json::from_str::<T>(&line[prefix - 1..]).map(wrap)
    }
    macro_rules! fast {
        ($($name:literal => $variant:ident),*) => {
            $(
                let prefix = concat!("{\"type\":\"", $name, "\",");
                if line.starts_with(prefix) {
                    return rest(line, prefix.len(), Line::$variant);
                }
            )*
        };
    }
    fast!(
        "comment" => Comment,
        "vote" => Vote,
        "flag" => Flag,
        "rating" => Rating,
        "log" => Log,
        "article" => Article,
        "ban" => Ban,
        "settings" => Settings
    );
    serde_json::from_str(line)
}

/// Timestamps as `2026-12-07T00:00:00.000000Z`.
pub mod micros {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = std::borrow::Cow::<str>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::format(t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            match Option::<std::borrow::Cow<str>>::deserialize(d)? {
                None => Ok(None),
                Some(raw) => DateTime::parse_from_rfc3339(&raw)
                    .map(|t| Some(t.with_timezone(&Utc)))
                    .map_err(serde::de::Error::custom),
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingLine {
    pub key: String,
    pub value: String,
    #[serde(with = "micros")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArticleLine {
    pub id: String,
    pub title: Option<String>,
    pub url: Option<String>,
    pub comments_open: bool,
    pub moderation_mode: Option<String>,
    pub registered: bool,
    pub rating_count: i64,
    pub rating_sum: i64,
    pub stars_1: i64,
    pub stars_2: i64,
    pub stars_3: i64,
    pub stars_4: i64,
    pub stars_5: i64,
    pub comment_count: i64,
    pub top_level_count: i64,
    pub review_count: i64,
    #[serde(with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "micros")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentLine {
    pub id: String,
    pub article_id: String,
    pub parent_id: Option<String>,
    pub author_id: String,
    pub author_name: String,
    pub is_guest: bool,
    pub body: String,
    pub status: String,
    pub version: i32,
    pub reply_count: i64,
    pub flag_count: i32,
    pub auto_score: f64,
    pub auto_reasons: String,
    pub fingerprint: Option<String>,
    #[serde(with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "micros")]
    pub updated_at: DateTime<Utc>,
    #[serde(with = "micros::option")]
    pub edited_at: Option<DateTime<Utc>>,
    pub spam_probability: Option<f64>,
    pub kind: String,
    pub stars: Option<i16>,
    pub verified: bool,
    pub votes_up: i64,
    pub votes_down: i64,
    pub best_score: f64,
    pub flag_weight: f64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatingLine {
    pub article_id: String,
    pub user_id: String,
    pub stars: i16,
    #[serde(with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "micros")]
    pub updated_at: DateTime<Utc>,
    pub review_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagLine {
    pub comment_id: String,
    pub user_id: String,
    pub reason: String,
    pub note: Option<String>,
    #[serde(with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "micros::option")]
    pub resolved_at: Option<DateTime<Utc>>,
    pub weight: f64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteLine {
    pub comment_id: String,
    pub user_id: String,
    pub vote: String,
    #[serde(with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "micros")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanLine {
    pub user_id: String,
    pub reason: String,
    pub created_by: String,
    #[serde(with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "micros::option")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    pub id: i64,
    #[serde(with = "micros")]
    pub at: DateTime<Utc>,
    pub actor_id: String,
    pub actor_name: String,
    pub action: String,
    pub comment_id: Option<String>,
    pub subject_user_id: Option<String>,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub reason: Option<String>,
}

/// Row ↔ line, field for field.
macro_rules! same_fields {
    ($model:ty, $line:ident, [$($f:ident),* $(,)?]) => {
        impl From<$model> for $line {
            fn from(m: $model) -> Self {
                $line { $($f: m.$f),* }
            }
        }
        impl From<$line> for $model {
            fn from(l: $line) -> Self {
                Self { $($f: l.$f),* }
            }
        }
    };
}

same_fields!(setting::Model, SettingLine, [key, value, updated_at]);
same_fields!(
    article::Model,
    ArticleLine,
    [
        id,
        title,
        url,
        comments_open,
        moderation_mode,
        registered,
        rating_count,
        rating_sum,
        stars_1,
        stars_2,
        stars_3,
        stars_4,
        stars_5,
        comment_count,
        top_level_count,
        review_count,
        created_at,
        updated_at
    ]
);
same_fields!(
    comment::Model,
    CommentLine,
    [
        id,
        article_id,
        parent_id,
        author_id,
        author_name,
        is_guest,
        body,
        status,
        version,
        reply_count,
        flag_count,
        auto_score,
        auto_reasons,
        fingerprint,
        created_at,
        updated_at,
        edited_at,
        spam_probability,
        kind,
        stars,
        verified,
        votes_up,
        votes_down,
        best_score,
        flag_weight
    ]
);
same_fields!(
    rating::Model,
    RatingLine,
    [article_id, user_id, stars, created_at, updated_at, review_id]
);
same_fields!(
    flag::Model,
    FlagLine,
    [
        comment_id,
        user_id,
        reason,
        note,
        created_at,
        resolved_at,
        weight
    ]
);
same_fields!(
    comment_vote::Model,
    VoteLine,
    [comment_id, user_id, vote, created_at, updated_at]
);
same_fields!(
    ban::Model,
    BanLine,
    [user_id, reason, created_by, created_at, expires_at]
);
same_fields!(
    moderation_log::Model,
    LogLine,
    [
        id,
        at,
        actor_id,
        actor_name,
        action,
        comment_id,
        subject_user_id,
        from_status,
        to_status,
        reason
    ]
);
