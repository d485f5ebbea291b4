//! The learned spam model's pure part: the tokenizer (normalised words plus link
//! domains) and multinomial naive Bayes scoring with add-one smoothing. Counts are kept
//! in the database by `service::spam`; this module only reads them.

use std::collections::{BTreeMap, HashMap};

/// The most distinct tokens one comment teaches or is scored on (the first ones seen).
pub const MAX_TOKENS_PER_TEXT: usize = 300;
/// Longer runs of letters are not words (base64, hashes): they are cut to this length.
const MAX_TOKEN_CHARS: usize = 40;

/// What a decision teaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpamLabel {
    Spam,
    Ham,
}

impl SpamLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            SpamLabel::Spam => "spam",
            SpamLabel::Ham => "ham",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "spam" => Some(SpamLabel::Spam),
            "ham" => Some(SpamLabel::Ham),
            _ => None,
        }
    }
}

/// The tokens of a text with their counts: lower-cased words of 2–40 letters or
/// digits (numbers longer than 4 digits become `#num`), and `domain:<host>` for every
/// link (`http(s)://host…` or `www.host…`), the host without `www.`.
pub fn tokenize(text: &str) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    let add = |t: String, out: &mut BTreeMap<String, i64>| {
        if let Some(n) = out.get_mut(&t) {
            *n += 1;
        } else if out.len() < MAX_TOKENS_PER_TEXT {
            out.insert(t, 1);
        }
    };
    let lower = text.to_lowercase();
    for (i, _) in lower.match_indices("http") {
        let rest = &lower[i..];
        let rest = rest
            .strip_prefix("https://")
            .or_else(|| rest.strip_prefix("http://"));
        if let Some(host) = rest.and_then(host_of) {
            add(format!("domain:{host}"), &mut out);
        }
    }
    for (i, _) in lower.match_indices("www.") {
        let before = lower[..i].chars().next_back();
        if before.is_none_or(|c| c.is_whitespace() || c == '(' || c == '<') {
            if let Some(host) = host_of(&lower[i..]) {
                add(format!("domain:{host}"), &mut out);
            }
        }
    }
    for word in lower.split(|c: char| !c.is_alphanumeric()) {
        let n = word.chars().count();
        if n < 2 {
            continue;
        }
        let t = if word.chars().all(|c| c.is_ascii_digit()) && n > 4 {
            "#num".to_owned()
        } else {
            word.chars().take(MAX_TOKEN_CHARS).collect()
        };
        add(t, &mut out);
    }
    out
}

/// The host at the start of `rest` (after the scheme), without `www.`, if it looks like one.
fn host_of(rest: &str) -> Option<String> {
    let host: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '.' || *c == '-')
        .take(MAX_TOKEN_CHARS + 10)
        .collect();
    let host = host.trim_end_matches('.');
    let host = host.strip_prefix("www.").unwrap_or(host);
    (host.contains('.') && host.len() >= 3)
        .then(|| host.chars().take(MAX_TOKEN_CHARS + 10).collect())
}

/// The model's counts, as loaded from the database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpamCounts {
    pub spam_docs: i64,
    pub ham_docs: i64,
    pub spam_words: i64,
    pub ham_words: i64,
    /// token → (spam, ham)
    pub tokens: HashMap<String, (i64, i64)>,
}

impl SpamCounts {
    /// The probability that a text with these tokens is spam, or `None` until the
    /// model has learned from at least `min_examples` comments of each kind.
    /// Tokens the model never saw are ignored; known ones weigh
    /// `log P(token | class)` with add-one smoothing over the vocabulary.
    pub fn probability(&self, tokens: &BTreeMap<String, i64>, min_examples: u32) -> Option<f64> {
        let min = i64::from(min_examples);
        if self.spam_docs < min || self.ham_docs < min {
            return None;
        }
        let v = self.tokens.len().max(1) as f64;
        let spam_total = self.spam_words.max(0) as f64 + v;
        let ham_total = self.ham_words.max(0) as f64 + v;
        let mut log_odds = (self.spam_docs as f64).ln() - (self.ham_docs as f64).ln();
        for (t, n) in tokens {
            if let Some(&(s, h)) = self.tokens.get(t) {
                let ps = (s.max(0) as f64 + 1.0) / spam_total;
                let ph = (h.max(0) as f64 + 1.0) / ham_total;
                log_odds += *n as f64 * (ps.ln() - ph.ln());
            }
        }
        Some(1.0 / (1.0 + (-log_odds).exp()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_lowercased_words_and_link_domains() {
        let t = tokenize(
            "Buy CHEAP pills at https://www.Pills.example/x?y and www.more.example now! 123456 a",
        );
        assert_eq!(t.get("cheap"), Some(&1));
        assert_eq!(t.get("domain:pills.example"), Some(&1));
        assert_eq!(t.get("domain:more.example"), Some(&1));
        assert_eq!(t.get("#num"), Some(&1));
        assert!(!t.contains_key("a"), "one-letter words are dropped");
    }

    #[test]
    fn tokens_per_text_are_bounded() {
        let text: String = (0..1000).map(|i| format!("w{i} ")).collect();
        assert_eq!(tokenize(&text).len(), MAX_TOKENS_PER_TEXT);
    }

    #[test]
    fn probability_is_none_below_the_minimum_and_leans_to_the_evidence() {
        let mut c = SpamCounts {
            spam_docs: 2,
            ham_docs: 2,
            spam_words: 4,
            ham_words: 4,
            ..Default::default()
        };
        c.tokens.insert("viagra".into(), (4, 0));
        c.tokens.insert("article".into(), (0, 4));
        assert_eq!(c.probability(&tokenize("viagra"), 3), None);
        assert!(c.probability(&tokenize("viagra viagra"), 2).unwrap() > 0.9);
        assert!(
            c.probability(&tokenize("nice article, article"), 2)
                .unwrap()
                < 0.1
        );
        let unknown = c.probability(&tokenize("zzz"), 2).unwrap();
        assert!((unknown - 0.5).abs() < 1e-9, "no evidence: the prior");
    }
}
