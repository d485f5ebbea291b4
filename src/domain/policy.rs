//! The site's moderation policy and the automatic rule pipeline run on every new or
//! edited comment.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

use super::{FieldError, ModerationStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModerationMode {
    /// A comment that trips no rule goes live at once.
    Post,
    /// Every comment waits for a moderator.
    Pre,
}

impl ModerationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ModerationMode::Post => "post",
            ModerationMode::Pre => "pre",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "post" => Some(ModerationMode::Post),
            "pre" => Some(ModerationMode::Pre),
            _ => None,
        }
    }
}

/// The moderation settings an admin edits (`/api/v1/admin/settings`). The `#[schema]`
/// bounds document [`Policy::validate`] in the OpenAPI spec and must say the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub moderation_mode: ModerationMode,
    /// Whether guests (no token) may post; their comments always wait in the queue.
    pub guest_comments: bool,
    /// Words that reject a comment outright (whole words, case-insensitive).
    #[schema(schema_with = word_list)]
    pub banned_words: Vec<String>,
    /// Words that send a comment to the queue.
    #[schema(schema_with = word_list)]
    pub suspect_words: Vec<String>,
    /// More links than this send a comment to the queue.
    #[schema(minimum = 0, maximum = 1000)]
    pub max_links: u32,
    /// Unresolved flags that hide an approved comment until a moderator decides.
    #[schema(minimum = 1, maximum = 1000)]
    pub flag_threshold: u32,
    /// How long an author may edit a comment, in seconds (at most 30 days).
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub edit_window_secs: u64,
    /// Authors with fewer approved comments than this are held for moderation.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub trusted_after_approved: u32,
    /// A learned spam probability at or above this sends a comment to the queue (0 < t ≤ 1).
    #[serde(default = "default_spam_threshold")]
    #[schema(exclusive_minimum = 0, maximum = 1, default = 0.9)]
    pub spam_threshold: f64,
    /// The learned spam model scores nothing until it has learned from this many
    /// comments of each kind (spam and not spam).
    #[serde(default = "default_spam_min_examples")]
    #[schema(minimum = 1, default = 20)]
    pub spam_min_examples: u32,
    /// `C` of `GET /api/v1/ratings/top`'s Bayesian average `(C·m + sum) / (C + count)`:
    /// how many ratings of the site's mean every article starts with. A whole number.
    #[serde(default = "default_prior_weight")]
    #[schema(minimum = 0, maximum = 1_000_000, default = 5)]
    pub rating_prior_weight: i64,
    /// Rejected and spam comments created longer ago than this many days are purged
    /// (their log rows kept); `null` (or absent) keeps them forever.
    #[serde(default)]
    #[schema(minimum = 1, required = true)]
    pub retention_days_rejected: Option<u32>,
    /// Where each new or edited comment is POSTed for a verdict after the rules
    /// (http or https; a non-public address is refused unless
    /// `TALLY_WEBHOOK_ALLOW_PRIVATE=true`); `null` (or absent): no call.
    #[serde(default)]
    #[schema(required = true, max_length = 2000)]
    pub external_moderation_url: Option<String>,
    /// How long the external moderation call may take, in milliseconds (1–10000).
    #[serde(default = "default_external_timeout_ms")]
    #[schema(minimum = 1, maximum = 10000, default = 1000)]
    pub external_moderation_timeout_ms: u32,
}

fn default_external_timeout_ms() -> u32 {
    1000
}

fn default_spam_threshold() -> f64 {
    0.9
}

fn default_spam_min_examples() -> u32 {
    20
}

fn default_prior_weight() -> i64 {
    5
}

/// The schema of a word list: at most [`Policy::MAX_WORDS`] words of 1–100 characters.
fn word_list() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(100))
                .pattern(Some(r"\S")),
        )
        .max_items(Some(Policy::MAX_WORDS))
        .build()
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            moderation_mode: ModerationMode::Post,
            guest_comments: false,
            banned_words: vec![],
            suspect_words: vec![],
            max_links: 2,
            flag_threshold: 3,
            edit_window_secs: 900,
            trusted_after_approved: 0,
            spam_threshold: default_spam_threshold(),
            spam_min_examples: default_spam_min_examples(),
            rating_prior_weight: default_prior_weight(),
            retention_days_rejected: None,
            external_moderation_url: None,
            external_moderation_timeout_ms: default_external_timeout_ms(),
        }
    }
}

impl Policy {
    pub const MAX_WORDS: usize = 10_000;

    /// Checks every field; returns all problems at once.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = vec![];
        for (field, words) in [
            ("banned_words", &self.banned_words),
            ("suspect_words", &self.suspect_words),
        ] {
            if words.len() > Self::MAX_WORDS {
                errors.push(FieldError::new(field, "must have at most 10000 words"));
            }
            if let Some(i) = words
                .iter()
                .position(|w| w.trim().is_empty() || w.chars().count() > 100)
            {
                errors.push(FieldError::new(
                    format!("{field}[{i}]"),
                    "must be 1–100 characters",
                ));
            }
        }
        if self.max_links > 1000 {
            errors.push(FieldError::new("max_links", "must be from 0 to 1000"));
        }
        if !(1..=1000).contains(&self.flag_threshold) {
            errors.push(FieldError::new("flag_threshold", "must be from 1 to 1000"));
        }
        if self.edit_window_secs > 30 * 86_400 {
            errors.push(FieldError::new(
                "edit_window_secs",
                "must be from 0 to 2592000 (30 days)",
            ));
        }
        if self.trusted_after_approved > 1_000_000 {
            errors.push(FieldError::new(
                "trusted_after_approved",
                "must be from 0 to 1000000",
            ));
        }
        if !(self.spam_threshold > 0.0 && self.spam_threshold <= 1.0) {
            errors.push(FieldError::new(
                "spam_threshold",
                "must be above 0 and at most 1",
            ));
        }
        if self.spam_min_examples < 1 {
            errors.push(FieldError::new("spam_min_examples", "must be at least 1"));
        }
        if !(0..=1_000_000).contains(&self.rating_prior_weight) {
            errors.push(FieldError::new(
                "rating_prior_weight",
                "must be from 0 to 1000000",
            ));
        }
        if self.retention_days_rejected == Some(0) {
            errors.push(FieldError::new(
                "retention_days_rejected",
                "must be null (keep forever) or at least 1",
            ));
        }
        if !(1..=10_000).contains(&self.external_moderation_timeout_ms) {
            errors.push(FieldError::new(
                "external_moderation_timeout_ms",
                "must be from 1 to 10000",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// What the pipeline knows about one submission.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    pub body: &'a str,
    pub is_guest: bool,
    /// The article's own mode, if it overrides the site's.
    pub article_mode: Option<ModerationMode>,
    /// How many approved comments the author has.
    pub author_approved: i64,
    /// Whether the same author posted the same normalised text within the last 6 hours.
    pub is_repeat: bool,
    /// The learned spam model's probability (`None`: too few examples to score).
    pub spam_probability: Option<f64>,
}

/// The pipeline's verdict: where the comment goes, a 0–1 risk score and every signal seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub status: ModerationStatus,
    pub score: f64,
    pub reasons: Vec<String>,
    /// The learned spam model's probability, as the submission gave it.
    pub spam_probability: Option<f64>,
}

/// A policy with its word lists compiled once (per settings change, not per comment).
#[derive(Debug)]
pub struct CompiledPolicy {
    pub policy: Policy,
    banned: WordMatcher,
    suspect: WordMatcher,
}

impl CompiledPolicy {
    pub fn new(policy: Policy) -> Self {
        let banned = WordMatcher::new(&policy.banned_words);
        let suspect = WordMatcher::new(&policy.suspect_words);
        CompiledPolicy {
            policy,
            banned,
            suspect,
        }
    }

    /// Runs the rules in their fixed order. The first rule that fires decides the status;
    /// every signal still counts towards the score and is listed in `reasons`.
    pub fn evaluate(&self, s: &Submission<'_>) -> Evaluation {
        let p = &self.policy;
        let text = s.body.to_lowercase();
        let mut status: Option<ModerationStatus> = None;
        let mut reasons = vec![];
        let mut risk = Risk::default();
        let decide = |st: ModerationStatus, status: &mut Option<ModerationStatus>| {
            status.get_or_insert(st);
        };

        let banned = self.banned.find(&text);
        if !banned.is_empty() {
            decide(ModerationStatus::Rejected, &mut status);
            risk.add(1.0);
            reasons.extend(banned.iter().map(|w| format!("banned_word:{w}")));
        }
        if s.is_guest {
            decide(ModerationStatus::Pending, &mut status);
            risk.add(0.1);
            reasons.push("guest".to_owned());
        }
        if s.article_mode.unwrap_or(p.moderation_mode) == ModerationMode::Pre {
            decide(ModerationStatus::Pending, &mut status);
            reasons.push("pre_moderation".to_owned());
        }
        if s.is_repeat {
            decide(ModerationStatus::Pending, &mut status);
            risk.add(0.4);
            reasons.push("repeat_post".to_owned());
        }
        let suspect = self.suspect.find(&text);
        if !suspect.is_empty() {
            decide(ModerationStatus::Pending, &mut status);
            for w in &suspect {
                risk.add(0.3);
                reasons.push(format!("suspect_word:{w}"));
            }
        }
        let links = count_links(&text);
        if links > p.max_links as usize {
            decide(ModerationStatus::Pending, &mut status);
            risk.add((0.2 + 0.1 * (links - p.max_links as usize) as f64).min(0.8));
            reasons.push(format!("links:{links}"));
        }
        if let Some(prob) = s.spam_probability.filter(|prob| *prob >= p.spam_threshold) {
            decide(ModerationStatus::Pending, &mut status);
            risk.add(prob);
            reasons.push(format!("spam_model:{prob:.2}"));
        }
        if !s.is_guest && s.author_approved < i64::from(p.trusted_after_approved) {
            decide(ModerationStatus::Pending, &mut status);
            risk.add(0.1);
            reasons.push(format!(
                "new_author:{}/{}",
                s.author_approved, p.trusted_after_approved
            ));
        }
        Evaluation {
            status: status.unwrap_or(ModerationStatus::Approved),
            score: risk.score(),
            reasons,
            spam_probability: s.spam_probability,
        }
    }
}

/// Independent signals combine as 1 − Π(1 − wᵢ): always within 0–1, monotone in each.
#[derive(Default)]
struct Risk(f64);

impl Risk {
    fn add(&mut self, weight: f64) {
        self.0 = 1.0 - (1.0 - self.0) * (1.0 - weight.clamp(0.0, 1.0));
    }

    fn score(&self) -> f64 {
        (self.0 * 100.0).round() / 100.0
    }
}

/// Case-insensitive, Unicode-aware whole-word matching of many words in one pass
/// (an Aho-Corasick automaton over the lower-cased words).
#[derive(Debug)]
struct WordMatcher {
    automaton: Option<AhoCorasick>,
    words: Vec<String>,
}

impl WordMatcher {
    fn new(words: &[String]) -> Self {
        let words: Vec<String> = words
            .iter()
            .map(|w| w.trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        let automaton = (!words.is_empty())
            .then(|| {
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(&words)
                    .ok()
            })
            .flatten();
        WordMatcher { automaton, words }
    }

    /// The distinct words found in `text` (already lower-cased), in order of appearance.
    fn find(&self, text: &str) -> Vec<String> {
        let Some(ac) = &self.automaton else {
            return vec![];
        };
        let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let mut found: Vec<String> = vec![];
        for m in ac.find_overlapping_iter(text) {
            let before = text[..m.start()].chars().next_back();
            let after = text[m.end()..].chars().next();
            if is_word(before) || is_word(after) {
                continue;
            }
            let word = &self.words[m.pattern().as_usize()];
            if !found.contains(word) {
                found.push(word.clone());
            }
        }
        found
    }
}

/// Counts links: `http://…`, `https://…` and bare `www.…`.
fn count_links(lower: &str) -> usize {
    let schemes = lower.matches("http://").count() + lower.matches("https://").count();
    let bare_www = lower
        .match_indices("www.")
        .filter(|(i, _)| !lower[..*i].ends_with("//"))
        .count();
    schemes + bare_www
}

/// The text used to spot repeated posts: lower case, words only, single spaces.
pub fn normalise_for_repeat(body: &str) -> String {
    body.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(body: &str) -> Submission<'_> {
        Submission {
            body,
            is_guest: false,
            article_mode: None,
            author_approved: 10,
            is_repeat: false,
            spam_probability: None,
        }
    }

    fn policy(f: impl FnOnce(&mut Policy)) -> CompiledPolicy {
        let mut p = Policy::default();
        f(&mut p);
        CompiledPolicy::new(p)
    }

    #[test]
    fn a_clean_comment_goes_live_in_post_mode() {
        let e = policy(|_| {}).evaluate(&sub("Thanks, the open-book stretch helps."));
        assert_eq!(e.status, ModerationStatus::Approved);
        assert!(e.reasons.is_empty());
        assert_eq!(e.score, 0.0);
    }

    #[test]
    fn banned_words_reject_whole_words_case_insensitively() {
        let p = policy(|p| p.banned_words = vec!["Scam".into(), "Ärger".into()]);
        let e = p.evaluate(&sub("What a SCAM this is"));
        assert_eq!(e.status, ModerationStatus::Rejected);
        assert_eq!(e.reasons, vec!["banned_word:scam"]);
        assert_eq!(e.score, 1.0);
        assert_eq!(
            p.evaluate(&sub("so much ärger")).status,
            ModerationStatus::Rejected
        );
        // Inside another word it is not a match.
        assert_eq!(
            p.evaluate(&sub("scampi for dinner")).status,
            ModerationStatus::Approved
        );
    }

    #[test]
    fn pre_mode_and_guests_wait() {
        let pre = policy(|p| p.moderation_mode = ModerationMode::Pre);
        let e = pre.evaluate(&sub("hello"));
        assert_eq!(
            (e.status, e.reasons),
            (ModerationStatus::Pending, vec!["pre_moderation".to_owned()])
        );
        let post = policy(|_| {});
        let mut s = sub("hello");
        s.article_mode = Some(ModerationMode::Pre);
        assert_eq!(
            post.evaluate(&s).status,
            ModerationStatus::Pending,
            "article override"
        );
        let mut s = sub("hello");
        s.is_guest = true;
        assert_eq!(post.evaluate(&s).status, ModerationStatus::Pending, "guest");
        let mut s = sub("hello");
        s.article_mode = Some(ModerationMode::Post);
        assert_eq!(
            pre.evaluate(&s).status,
            ModerationStatus::Approved,
            "article post overrides site pre"
        );
    }

    #[test]
    fn banned_words_win_over_later_rules() {
        let p = policy(|p| {
            p.banned_words = vec!["casino".into()];
            p.moderation_mode = ModerationMode::Pre;
        });
        assert_eq!(
            p.evaluate(&sub("casino")).status,
            ModerationStatus::Rejected
        );
    }

    #[test]
    fn suspect_words_links_repeats_and_new_authors_send_to_pending_with_reasons() {
        let p = policy(|p| {
            p.suspect_words = vec!["casino".into()];
            p.trusted_after_approved = 3;
        });
        let e = p.evaluate(&sub("best Casino here"));
        assert_eq!(
            (e.status, e.reasons.clone()),
            (
                ModerationStatus::Pending,
                vec!["suspect_word:casino".to_owned()]
            )
        );
        let e = p.evaluate(&sub("see http://a.example https://b.example www.c.example"));
        assert_eq!(e.reasons, vec!["links:3"]);
        let mut s = sub("again");
        s.is_repeat = true;
        assert_eq!(p.evaluate(&s).reasons, vec!["repeat_post"]);
        let mut s = sub("hi");
        s.author_approved = 1;
        assert_eq!(p.evaluate(&s).reasons, vec!["new_author:1/3"]);
    }

    #[test]
    fn score_grows_with_signals_and_stays_within_one() {
        let p = policy(|p| p.suspect_words = vec!["a".into(), "b".into(), "c".into(), "d".into()]);
        let one = p.evaluate(&sub("a")).score;
        let four = p.evaluate(&sub("a b c d http://x http://y http://z")).score;
        assert!(one > 0.0 && one < four && four <= 1.0, "{one} {four}");
    }

    #[test]
    fn links_count_schemes_and_bare_www() {
        assert_eq!(count_links("http://a https://b www.c"), 3);
        assert_eq!(count_links("https://www.a.example"), 1);
        assert_eq!(count_links("no links"), 0);
    }

    #[test]
    fn repeat_normalisation_ignores_case_spacing_and_punctuation() {
        assert_eq!(
            normalise_for_repeat("Great  post!!\nReally."),
            normalise_for_repeat("great post really")
        );
    }

    #[test]
    fn validation_names_fields() {
        let p = Policy {
            flag_threshold: 0,
            banned_words: vec!["ok".into(), " ".into()],
            ..Default::default()
        };
        let fields: Vec<String> = p
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, vec!["banned_words[1]", "flag_threshold"]);
    }

    #[test]
    fn thousands_of_words_compile_once_and_match() {
        let words: Vec<String> = (0..5000).map(|i| format!("word{i}")).collect();
        let p = policy(|p| p.suspect_words = words);
        assert_eq!(
            p.evaluate(&sub("this has word4999 in it")).reasons,
            vec!["suspect_word:word4999"]
        );
    }

    #[test]
    fn a_spam_probability_at_the_threshold_holds_the_comment_with_its_reason() {
        let p = policy(|p| p.spam_threshold = 0.9);
        let at = |prob: Option<f64>| {
            p.evaluate(&Submission {
                spam_probability: prob,
                ..sub("hello")
            })
        };
        let held = at(Some(0.9));
        assert_eq!(held.status, ModerationStatus::Pending);
        assert_eq!(held.reasons, vec!["spam_model:0.90"]);
        assert_eq!(held.spam_probability, Some(0.9));
        assert_eq!(at(Some(0.974)).reasons, vec!["spam_model:0.97"]);
        assert_eq!(at(Some(0.89)).status, ModerationStatus::Approved);
        assert_eq!(at(None).status, ModerationStatus::Approved);
    }
}
