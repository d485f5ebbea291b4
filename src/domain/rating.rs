use super::FieldError;

/// A rating: 1 to 5 whole stars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stars(u8);

impl Stars {
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for Stars {
    type Error = FieldError;

    fn try_from(v: i64) -> Result<Self, FieldError> {
        if (1..=5).contains(&v) {
            Ok(Stars(v as u8))
        } else {
            Err(FieldError::new(
                "stars",
                "must be a whole number from 1 to 5",
            ))
        }
    }
}

/// The kept rating counters of one article. All figures are derived from these with
/// integer arithmetic, so that rounding is exact (4.95 never becomes 4.9499…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Aggregate {
    /// Ratings with 1..=5 stars, at index 0..=4.
    pub histogram: [i64; 5],
}

impl Aggregate {
    pub fn count(&self) -> i64 {
        self.histogram.iter().sum()
    }

    pub fn sum(&self) -> i64 {
        self.histogram.iter().zip(1..).map(|(n, s)| n * s).sum()
    }

    /// The exact mean rounded half-up to `decimals` places, as an integer scaled by
    /// 10^decimals: floor(sum·10^d / count + ½) = (2·sum·10^d + count) / (2·count).
    fn mean_scaled(&self, decimals: u32) -> Option<i64> {
        let count = self.count();
        (count > 0).then(|| {
            let scale = 10i64.pow(decimals);
            (2 * self.sum() * scale + count) / (2 * count)
        })
    }

    /// The mean rounded half-up to 2 decimals; `None` when there are no ratings.
    pub fn average(&self) -> Option<f64> {
        // n/100 as f64 is the closest double to the 2-decimal figure, and serde_json
        // prints the shortest representation, so 496 becomes exactly `4.96`.
        self.mean_scaled(2).map(|n| n as f64 / 100.0)
    }

    /// `"4.7 (3 reviews)"`, `"4.0 (1 review)"`, or `"No reviews yet"`. Rounds the exact
    /// mean (not the 2-decimal average) half-up to one decimal.
    pub fn display(&self) -> String {
        match self.mean_scaled(1) {
            None => "No reviews yet".to_owned(),
            Some(tenths) => {
                let count = self.count();
                let noun = if count == 1 { "review" } else { "reviews" };
                format!("{}.{} ({count} {noun})", tenths / 10, tenths % 10)
            }
        }
    }

    /// Adds (`+1`) or removes (`-1`) one rating of `stars`.
    pub fn add(&mut self, stars: Stars, sign: i64) {
        self.histogram[usize::from(stars.get()) - 1] += sign;
    }

    /// A strong validator for this aggregate's representation: it changes exactly when
    /// the counts do. `variant` tells the JSON and JSON-LD forms apart.
    pub fn etag(&self, article_id: &str, variant: &str) -> String {
        let h = self.histogram;
        // Article ids are 1–200 chars of a safe alphabet, so they can stand in the tag.
        format!(
            "\"{variant}-{}-{}-{}-{}-{}-{article_id}\"",
            h[0], h[1], h[2], h[3], h[4]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(histogram: [i64; 5]) -> Aggregate {
        Aggregate { histogram }
    }

    #[test]
    fn stars_accept_one_to_five_only() {
        for ok in 1..=5 {
            assert_eq!(Stars::try_from(ok).unwrap().get() as i64, ok);
        }
        for bad in [0, 6, -1, 100] {
            assert_eq!(Stars::try_from(bad).unwrap_err().field, "stars");
        }
    }

    #[test]
    fn no_ratings_has_no_average() {
        let a = agg([0; 5]);
        assert_eq!(a.count(), 0);
        assert_eq!(a.average(), None);
        assert_eq!(a.display(), "No reviews yet");
    }

    #[test]
    fn one_review_is_singular() {
        let a = agg([0, 0, 0, 1, 0]);
        assert_eq!(a.average(), Some(4.0));
        assert_eq!(a.display(), "4.0 (1 review)");
    }

    #[test]
    fn forty_seven_reviews_show_five_point_oh() {
        let a = agg([0, 0, 0, 2, 45]);
        assert_eq!(a.sum(), 233);
        assert_eq!(a.average(), Some(4.96));
        assert_eq!(a.display(), "5.0 (47 reviews)");
    }

    #[test]
    fn three_reviews_round_to_one_decimal() {
        // 5 + 5 + 4 = 14 / 3 = 4.666… → 4.67 and 4.7
        let a = agg([0, 0, 0, 1, 2]);
        assert_eq!(a.average(), Some(4.67));
        assert_eq!(a.display(), "4.7 (3 reviews)");
    }

    #[test]
    fn exact_half_rounds_up() {
        // 950 fives and 50 fours: 4950 / 1000 = 4.95 exactly → display 5.0, average 4.95
        let a = agg([0, 0, 0, 50, 950]);
        assert_eq!(a.sum(), 4950);
        assert_eq!(a.average(), Some(4.95));
        assert_eq!(a.display(), "5.0 (1000 reviews)");
    }

    #[test]
    fn display_rounds_the_exact_mean_not_the_two_decimal_figure() {
        // 4949 / 1000 = 4.949: average rounds to 4.95, but the display must be 4.9.
        let a = agg([0, 0, 1, 49, 950]);
        assert_eq!(a.sum(), 4949);
        assert_eq!(a.average(), Some(4.95));
        assert_eq!(a.display(), "4.9 (1000 reviews)");
    }

    #[test]
    fn average_half_cent_rounds_up() {
        // 1 + 2 = 3 / 2 = 1.5; 1+1+2+... : 1.125 → 1.13 (half-up at the third decimal)
        let a = agg([7, 1, 0, 0, 0]); // 9 / 8 = 1.125
        assert_eq!(a.average(), Some(1.13));
        assert_eq!(a.display(), "1.1 (8 reviews)");
    }

    #[test]
    fn etag_changes_with_counts_and_variant() {
        let a = agg([1, 0, 0, 0, 0]);
        let b = agg([0, 1, 0, 0, 0]);
        assert_ne!(a.etag("x", "j"), b.etag("x", "j"));
        assert_ne!(a.etag("x", "j"), a.etag("x", "ld"));
        assert_ne!(a.etag("x", "j"), a.etag("y", "j"));
        assert!(a.etag("x", "j").starts_with('"') && a.etag("x", "j").ends_with('"'));
    }
}
