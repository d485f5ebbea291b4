//! Votes, the orders of comment and review listings, and the ranking maths of reviews
//! and votes: the Wilson lower bound behind `sort=best` and the Bayesian average
//! behind `GET /ratings/top`.

use std::cmp::Ordering;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};

use super::{Cursor, FieldError};

/// A reader's vote on a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Vote {
    Up,
    Down,
}

impl Vote {
    pub fn parse(raw: &str) -> Option<Vote> {
        match raw {
            "up" => Some(Vote::Up),
            "down" => Some(Vote::Down),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Vote::Up => "up",
            Vote::Down => "down",
        }
    }

    /// What this vote adds to (up, down).
    pub fn counts(self) -> (i64, i64) {
        match self {
            Vote::Up => (1, 0),
            Vote::Down => (0, 1),
        }
    }
}

/// What a comment is: a comment, or a review (a rating's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommentKind {
    Comment,
    Review,
}

impl CommentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CommentKind::Comment => "comment",
            CommentKind::Review => "review",
        }
    }

    /// The stored name; the CHECK constraint admits only these two.
    pub fn parse(raw: &str) -> CommentKind {
        if raw == "review" {
            CommentKind::Review
        } else {
            CommentKind::Comment
        }
    }
}

/// z for a two-sided 95 % interval.
const Z: f64 = 1.959_963_984_540_054;

/// The lower bound of the 95 % Wilson score interval of `up / (up + down)`; 0 with no
/// votes. Ranks 90 up / 10 down (0.826) above 1 up / 0 down (0.207).
pub fn wilson_lower_bound(up: i64, down: i64) -> f64 {
    let n = (up + down) as f64;
    if n <= 0.0 {
        return 0.0;
    }
    let p = up as f64 / n;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let margin = Z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt();
    ((centre - margin) / (1.0 + z2 / n)).max(0.0)
}

/// The order of a comment, reply or review listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ThreadSort {
    Newest,
    Oldest,
    /// Wilson lower bound of the votes, then newest first.
    Best,
    /// Reviews only: most stars first, then newest first.
    Highest,
    /// Reviews only: fewest stars first, then newest first.
    Lowest,
}

impl ThreadSort {
    /// `reviews`: whether `highest` and `lowest` are allowed.
    pub fn parse(
        raw: Option<&str>,
        default: ThreadSort,
        reviews: bool,
    ) -> Result<Self, FieldError> {
        match raw {
            None => Ok(default),
            Some("newest") => Ok(ThreadSort::Newest),
            Some("oldest") => Ok(ThreadSort::Oldest),
            Some("best") => Ok(ThreadSort::Best),
            Some("highest") if reviews => Ok(ThreadSort::Highest),
            Some("lowest") if reviews => Ok(ThreadSort::Lowest),
            Some(_) if reviews => Err(FieldError::new(
                "sort",
                "must be best, newest, oldest, highest or lowest",
            )),
            Some(_) => Err(FieldError::new("sort", "must be newest, oldest or best")),
        }
    }

    /// Whether pages are cut by a [`KeyCursor`] (a score or stars before the time).
    pub fn keyed(self) -> bool {
        matches!(
            self,
            ThreadSort::Best | ThreadSort::Highest | ThreadSort::Lowest
        )
    }
}

/// A listing's keyset position: by time, or by a key (score, stars) then time.
#[derive(Debug, Clone, PartialEq)]
pub enum ThreadCursor {
    Time(Cursor),
    Key(KeyCursor),
}

impl ThreadCursor {
    pub fn encode(&self) -> String {
        match self {
            ThreadCursor::Time(c) => c.encode(),
            ThreadCursor::Key(c) => c.encode(),
        }
    }

    /// A cursor of the kind `sort` cuts pages with.
    pub fn decode(raw: &str, sort: ThreadSort) -> Result<ThreadCursor, FieldError> {
        if sort.keyed() {
            KeyCursor::decode(raw).map(ThreadCursor::Key)
        } else {
            Cursor::decode(raw).map(ThreadCursor::Time)
        }
    }
}

/// The last row of a page ordered by a key (a score, stars), then newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyCursor {
    pub key: f64,
    pub created_at: DateTime<Utc>,
    pub id: String,
}

impl KeyCursor {
    pub fn encode(&self) -> String {
        // The key's bits, so the row compares equal to it again exactly.
        URL_SAFE_NO_PAD.encode(format!(
            "k|{:016x}|{}|{}",
            self.key.to_bits(),
            self.created_at.timestamp_micros(),
            self.id
        ))
    }

    pub fn decode(raw: &str) -> Result<KeyCursor, FieldError> {
        let bad = || FieldError::new("cursor", "is not a cursor this service gave out");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.splitn(4, '|');
        let (Some("k"), Some(bits), Some(micros), Some(id)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let key = f64::from_bits(u64::from_str_radix(bits, 16).map_err(|_| bad())?);
        if !key.is_finite() {
            return Err(bad());
        }
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        if id.is_empty() || id.len() > 200 {
            return Err(bad());
        }
        Ok(KeyCursor {
            key,
            created_at,
            id: id.to_owned(),
        })
    }
}

/// The site's prior for Bayesian averages: the mean of all its ratings (`sum / count`)
/// and the weight `C` (setting `rating_prior_weight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prior {
    pub count: i64,
    pub sum: i64,
    pub weight: i64,
}

/// An article's Bayesian average `(C·m + sum) / (C + count)` with `m = S / N`, kept as
/// the exact fraction `(C·S + sum·N) / (N·(C + count))`, so ranking compares exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BayesScore {
    num: i128,
    den: i128,
}

impl Prior {
    /// The site mean rounded half-up to 2 decimals; `None` without ratings.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| round_half_up_2(i128::from(self.sum), i128::from(self.count)))
    }

    /// The score of an article with `count` ratings summing to `sum`; `None` when it has
    /// none (or the site has none).
    pub fn score(&self, count: i64, sum: i64) -> Option<BayesScore> {
        if count <= 0 || self.count <= 0 {
            return None;
        }
        let (c, s_site, n_site) = (
            i128::from(self.weight),
            i128::from(self.sum),
            i128::from(self.count),
        );
        Some(BayesScore {
            num: c * s_site + i128::from(sum) * n_site,
            den: n_site * (c + i128::from(count)),
        })
    }

    /// The fewest ratings an article needs to score at least `t` (`t` > the site mean,
    /// below 5): its score is at most `(C·m + 5n) / (C + n)`. `None` when any count
    /// might (t not above the mean).
    pub fn min_count_for(&self, t: &BayesScore) -> Option<i64> {
        // (C·m + 5n)/(C+n) >= t  ⇔  n·(5 − t) >= C·(t − m).
        let m = self.mean_exact()?;
        let (t_num, t_den) = (t.num, t.den);
        // t − m = (t_num·m_den − m_num·t_den) / (t_den·m_den)
        let above = t_num * m.1 - m.0 * t_den;
        if above <= 0 {
            return None;
        }
        let below_five = 5 * t_den - t_num;
        if below_five <= 0 {
            // t = 5: only articles whose every rating is 5, with any count ≥ 1, and
            // only if the mean is 5 too, which `above` ruled out.
            return Some(i64::MAX);
        }
        // n >= C·(t − m)/(5 − t) = C·above·t_den / (t_den·m_den·below_five)
        let num = i128::from(self.weight) * above;
        let den = m.1 * below_five;
        let n = (num + den - 1) / den;
        Some(i64::try_from(n).unwrap_or(i64::MAX))
    }

    fn mean_exact(&self) -> Option<(i128, i128)> {
        (self.count > 0).then(|| (i128::from(self.sum), i128::from(self.count)))
    }
}

impl BayesScore {
    /// Rounded half-up to 2 decimals.
    pub fn rounded(&self) -> f64 {
        round_half_up_2(self.num, self.den)
    }

    /// The score as a float (for comparisons in SQL, with a margin).
    pub fn approx(&self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl Ord for BayesScore {
    fn cmp(&self, other: &Self) -> Ordering {
        // Denominators are positive.
        (self.num * other.den).cmp(&(other.num * self.den))
    }
}

impl PartialOrd for BayesScore {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `num / den` (den > 0, num ≥ 0) rounded half-up to 2 decimals, exactly.
fn round_half_up_2(num: i128, den: i128) -> f64 {
    let hundredths = (200 * num + den) / (2 * den);
    hundredths as f64 / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_ranks_many_good_votes_above_one() {
        let one = wilson_lower_bound(1, 0);
        let many = wilson_lower_bound(90, 10);
        assert!((one - 0.2065).abs() < 0.001, "{one}");
        assert!((many - 0.8256).abs() < 0.001, "{many}");
        assert!(one < many);
        assert_eq!(wilson_lower_bound(0, 0), 0.0);
        assert_eq!(wilson_lower_bound(0, 5), 0.0);
        assert!(wilson_lower_bound(5, 5) < wilson_lower_bound(6, 4));
    }

    #[test]
    fn sorts_parse_per_listing() {
        assert_eq!(
            ThreadSort::parse(Some("best"), ThreadSort::Newest, false).unwrap(),
            ThreadSort::Best
        );
        assert!(ThreadSort::parse(Some("highest"), ThreadSort::Newest, false).is_err());
        assert_eq!(
            ThreadSort::parse(Some("lowest"), ThreadSort::Best, true).unwrap(),
            ThreadSort::Lowest
        );
        assert_eq!(
            ThreadSort::parse(None, ThreadSort::Best, true).unwrap(),
            ThreadSort::Best
        );
        assert_eq!(
            ThreadSort::parse(Some("nope"), ThreadSort::Best, true)
                .unwrap_err()
                .field,
            "sort"
        );
    }

    #[test]
    fn key_cursors_round_trip_and_refuse_time_cursors() {
        let c = KeyCursor {
            key: 0.206_549_3,
            created_at: DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap(),
            id: "0193abcd-0000-7000-8000-000000000000".into(),
        };
        assert_eq!(KeyCursor::decode(&c.encode()).unwrap(), c);
        let t = Cursor {
            created_at: c.created_at,
            id: c.id.clone(),
        };
        assert!(KeyCursor::decode(&t.encode()).is_err());
        assert!(Cursor::decode(&c.encode()).is_err());
    }

    #[test]
    fn bayesian_scores_match_hand_computed_values() {
        // Site: 10 ratings summing to 40 (mean 4), C = 5.
        let prior = Prior {
            count: 10,
            sum: 40,
            weight: 5,
        };
        assert_eq!(prior.mean(), Some(4.0));
        // One 5: (5·4 + 5) / 6 = 4.1666… → 4.17.
        assert_eq!(prior.score(1, 5).unwrap().rounded(), 4.17);
        // Three 5s: (20 + 15) / 8 = 4.375 → 4.38 (half-up).
        assert_eq!(prior.score(3, 15).unwrap().rounded(), 4.38);
        // Three 1s: (20 + 3) / 8 = 2.875 → 2.88 (half-up).
        assert_eq!(prior.score(3, 3).unwrap().rounded(), 2.88);
        // Two 1s: (20 + 2) / 7 = 3.1428… → 3.14 (down).
        assert_eq!(prior.score(2, 2).unwrap().rounded() * 100.0, 314.0);
        assert!(prior.score(3, 15).unwrap() > prior.score(1, 5).unwrap());
        assert_eq!(prior.score(0, 0), None);
        // C = 0: the plain mean.
        let plain = Prior { weight: 0, ..prior };
        assert_eq!(plain.score(2, 9).unwrap().rounded(), 4.5);
        // 4.125 exactly rounds up to 4.13.
        let p = Prior {
            count: 8,
            sum: 33,
            weight: 0,
        };
        assert_eq!(p.mean(), Some(4.13));
    }

    #[test]
    fn min_count_bounds_who_can_reach_a_score() {
        let prior = Prior {
            count: 10,
            sum: 40,
            weight: 5,
        };
        // To reach 4.5 an article needs n·(5 − 4.5) ≥ 5·(4.5 − 4): n ≥ 5.
        let t = prior.score(5, 25).unwrap(); // (20 + 25)/10 = 4.5
        assert_eq!(prior.min_count_for(&t), Some(5));
        // Below the mean, any count might.
        let low = prior.score(2, 2).unwrap();
        assert_eq!(prior.min_count_for(&low), None);
    }
}
