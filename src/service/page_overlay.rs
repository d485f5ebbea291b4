//! Signed-in comment pages from the shared page plus the caller's own overlay.
//!
//! A signed-in reader's page of comments (an article's top-level comments, or the
//! replies to one comment) differs from the anonymous page in two ways only:
//!
//! - their own comments carry `"mine": true` (the shared page keeps each item's
//!   [`owner`](CommentView::owner), so a copy can be flagged without the database);
//! - their own comments still waiting for moderation are listed too, in order, and
//!   counted in `total`.
//!
//! So [`compose`] builds it from the anonymous page of the same query and the caller's
//! [`Overlay`]: every comment of theirs that is pending, anywhere (one indexed query on
//! `(author_id, status, …)`, kept per user by the route layer and retired with the
//! pages). The merge is exact: the visible set for the caller is the listed comments
//! plus their pending ones, two disjoint sets, and the first `limit` items of a union of
//! two ordered sets after a cursor are among the first `limit` of each. The anonymous
//! page brings the first `limit` listed ones and whether more follow; the overlay brings
//! every pending one. `tests/api/page_overlay.rs` compares the two paths byte for byte.
//!
//! **Adding a per-user field** (e.g. `my_vote`): read the caller's values for the
//! comments they might see into the [`Overlay`] (for votes: their votes, by comment id,
//! in the same round trip or a second query run only when they voted at all), set the
//! field in [`compose`] where `mine` is set, and count an item carrying a value as
//! "own" (so [`Composed::Shared`] is answered only when nothing on the page is
//! theirs). A new order (e.g. `sort=best`) must either say in [`compose`] where a
//! pending comment falls in it, or answer [`Composed::Uncached`] for it.

use std::cmp::Ordering;

use sea_orm::{ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::comments::{pending_by, view, CommentView, ListQuery, Page, Shown};
use crate::{
    auth::User,
    domain::{Cursor, Sort},
    entity::comment,
    error::ApiError,
};

/// More pending comments than this for one user and their pages are read uncached
/// (exact as ever, just not from memory): it bounds an overlay's memory and work.
pub const MAX_PENDING: usize = 50;

/// The same bound on the pending comments' text, in bytes (an overlay holds bodies).
pub const MAX_PENDING_BYTES: usize = 32 * 1024;

/// One user's comments still waiting for moderation, in every thread, oldest first;
/// `None` when there are more than [`MAX_PENDING`] or [`MAX_PENDING_BYTES`] of them.
#[derive(Debug, Clone)]
pub struct Overlay {
    pending: Option<Vec<CommentView>>,
}

impl Overlay {
    /// Reads `user`'s pending comments: one query on the `(author_id, status, …)` index.
    pub async fn read(conn: &impl ConnectionTrait, user: &User) -> Result<Overlay, ApiError> {
        let rows = comment::Entity::find()
            .filter(pending_by(user))
            .order_by_asc(comment::Column::CreatedAt)
            .order_by_asc(comment::Column::Id)
            .limit(MAX_PENDING as u64 + 1)
            .into_partial_model::<Shown>()
            .all(conn)
            .await?;
        Ok(Overlay::of(
            rows.into_iter()
                .map(|c| view(c, Some(user), false))
                .collect(),
        ))
    }

    /// An overlay of these pending comments (`user`'s, oldest first).
    pub fn of(pending: Vec<CommentView>) -> Overlay {
        let bytes: usize = pending.iter().map(|c| c.body.len()).sum();
        let fits = pending.len() <= MAX_PENDING && bytes <= MAX_PENDING_BYTES;
        Overlay {
            pending: fits.then_some(pending),
        }
    }
}

/// Which listing a page is of.
#[derive(Debug, Clone, Copy)]
pub enum Thread<'a> {
    /// An article's top-level comments.
    TopLevel { article_id: &'a str },
    /// The direct replies to one comment.
    Replies { parent_id: &'a str },
}

impl Thread<'_> {
    fn holds(&self, c: &CommentView) -> bool {
        match *self {
            Thread::TopLevel { article_id } => c.parent_id.is_none() && c.article_id == article_id,
            Thread::Replies { parent_id } => c.parent_id.as_deref() == Some(parent_id),
        }
    }
}

/// What a signed-in reader gets.
#[derive(Debug)]
pub enum Composed {
    /// Exactly the anonymous page: nothing on it is theirs and they have nothing
    /// pending in this thread.
    Shared,
    /// Their own page.
    Own(Page<CommentView>),
    /// The overlay cannot answer (too much pending): read the page from the database.
    Uncached,
}

/// The page `user` gets for query `q` on `thread`, from `shared` (the anonymous page of
/// the same query) and their `overlay`: what the uncached path answers them.
pub fn compose(
    shared: &Page<CommentView>,
    thread: Thread<'_>,
    q: &ListQuery,
    overlay: &Overlay,
    user: &User,
) -> Composed {
    let Some(all_pending) = &overlay.pending else {
        return Composed::Uncached;
    };
    let is_own = |c: &CommentView| c.owner.as_deref() == Some(user.id.as_str());
    let pending: Vec<&CommentView> = all_pending.iter().filter(|c| thread.holds(c)).collect();
    if pending.is_empty() && !shared.items.iter().any(is_own) {
        return Composed::Shared;
    }
    let order = |a: &CommentView, b: &CommentView| -> Ordering {
        let by_key = (a.created_at, a.id.as_str()).cmp(&(b.created_at, b.id.as_str()));
        match q.sort {
            Sort::Oldest => by_key,
            Sort::Newest => by_key.reverse(),
        }
    };
    let after_cursor = |c: &CommentView| match &q.cursor {
        None => true,
        Some(Cursor { created_at, id }) => {
            let by_key = (c.created_at, c.id.as_str()).cmp(&(*created_at, id.as_str()));
            match q.sort {
                Sort::Oldest => by_key == Ordering::Greater,
                Sort::Newest => by_key == Ordering::Less,
            }
        }
    };
    let limit = q.limit as usize;
    let later: Vec<&CommentView> = pending
        .iter()
        .copied()
        .filter(|c| after_cursor(c))
        .collect();
    // The shared page holds the first `limit` listed comments after the cursor, and
    // says whether more follow; `later` holds every pending one after it.
    let more = shared.next_cursor.is_some() || shared.items.len() + later.len() > limit;
    let mut items: Vec<CommentView> = shared
        .items
        .iter()
        .chain(later)
        .map(|c| CommentView {
            mine: is_own(c),
            ..c.clone()
        })
        .collect();
    // Both runs are sorted already; a stable sort of their concatenation merges them.
    items.sort_by(order);
    items.truncate(limit);
    let next_cursor = if more {
        items.last().map(|c| {
            Cursor {
                created_at: c.created_at,
                id: c.id.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    Composed::Own(Page {
        items,
        next_cursor,
        total: shared.total + pending.len() as i64,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::*;
    use crate::auth::Role;

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            name: id.into(),
            role: Role::Reader,
        }
    }

    fn at(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::seconds(n)
    }

    fn comment(n: i64, owner: Option<&str>, status: &'static str) -> CommentView {
        CommentView {
            id: format!("c-{n:03}"),
            article_id: "a".into(),
            parent_id: None,
            author: None,
            body: format!("comment {n}"),
            status,
            created_at: at(n),
            edited_at: None,
            reply_count: 0,
            mine: false,
            owner: owner.map(str::to_owned),
        }
    }

    fn pending(n: i64) -> CommentView {
        CommentView {
            id: format!("c-{n:03}-p"),
            ..comment(n, Some("u"), "pending")
        }
    }

    /// The page the uncached path gives `u`: every visible comment, in order, cut.
    fn oracle(
        listed: &[CommentView],
        pending: &[CommentView],
        q: &ListQuery,
        u: &User,
    ) -> Page<CommentView> {
        let mut all: Vec<CommentView> = listed.iter().chain(pending).cloned().collect();
        all.sort_by_key(|c| (c.created_at, c.id.clone()));
        if q.sort == Sort::Newest {
            all.reverse();
        }
        let total = all.len() as i64;
        let rest: Vec<CommentView> = all
            .into_iter()
            .filter(|c| match &q.cursor {
                None => true,
                Some(k) => match q.sort {
                    Sort::Oldest => (c.created_at, &c.id) > (k.created_at, &k.id),
                    Sort::Newest => (c.created_at, &c.id) < (k.created_at, &k.id),
                },
            })
            .map(|c| CommentView {
                mine: c.owner.as_deref() == Some(u.id.as_str()),
                ..c
            })
            .collect();
        page_of(rest, q.limit as usize, total)
    }

    fn page_of(mut rest: Vec<CommentView>, limit: usize, total: i64) -> Page<CommentView> {
        let more = rest.len() > limit;
        rest.truncate(limit);
        let next_cursor = more.then(|| {
            let c = rest.last().unwrap();
            Cursor {
                created_at: c.created_at,
                id: c.id.clone(),
            }
            .encode()
        });
        Page {
            items: rest,
            next_cursor,
            total,
        }
    }

    fn json(p: &Page<CommentView>) -> String {
        serde_json::to_string(p).unwrap()
    }

    #[test]
    fn the_composed_page_is_the_uncached_one_for_every_shape() {
        let u = user("u");
        // 0..30: listed comments, some by `u`, some by guests; pending ones of `u`
        // interleaved (some at the same instant as a listed one, ordered by id).
        let listed: Vec<CommentView> = (0..30)
            .map(|n| match n % 7 {
                0 => comment(n * 2, Some("u"), "approved"),
                1 => comment(n * 2, None, "approved"),
                _ => comment(n * 2, Some("other"), "approved"),
            })
            .collect();
        let pending_sets: Vec<Vec<CommentView>> = vec![
            vec![],
            vec![pending(1)],
            vec![pending(-5), pending(99)],
            (0..12).map(|n| pending(n * 5 + 1)).collect(),
            // At the same instants as listed ones: ties are broken by id.
            vec![pending(10), pending(56)],
        ];
        for own in &pending_sets {
            for sort in [Sort::Newest, Sort::Oldest] {
                for limit in [1u64, 2, 3, 5, 20, 100] {
                    // Walk every page through the composed path's own cursors.
                    let mut cursor = None;
                    let mut pages = 0;
                    loop {
                        let q = ListQuery {
                            sort,
                            limit,
                            cursor: cursor.clone(),
                        };
                        let want = oracle(&listed, own, &q, &u);
                        let shared = oracle(&listed, &[], &q, &user("nobody"));
                        let overlay = Overlay::of(own.clone());
                        let got = match compose(
                            &shared,
                            Thread::TopLevel { article_id: "a" },
                            &q,
                            &overlay,
                            &u,
                        ) {
                            Composed::Shared => shared,
                            Composed::Own(p) => p,
                            Composed::Uncached => panic!("small overlays answer"),
                        };
                        assert_eq!(json(&got), json(&want), "{sort:?} limit {limit}");
                        pages += 1;
                        match want.next_cursor {
                            Some(c) => cursor = Some(Cursor::decode(&c).unwrap()),
                            None => break,
                        }
                        assert!(pages < 200);
                    }
                }
            }
        }
    }

    #[test]
    fn pending_comments_of_other_threads_do_not_count() {
        let u = user("u");
        let q = ListQuery {
            sort: Sort::Oldest,
            limit: 20,
            cursor: None,
        };
        let shared = oracle(&[comment(1, Some("x"), "approved")], &[], &q, &u);
        let mut elsewhere = comment(2, Some("u"), "pending");
        elsewhere.article_id = "b".into();
        let mut reply = comment(3, Some("u"), "pending");
        reply.parent_id = Some("c-001".into());
        let overlay = Overlay::of(vec![elsewhere, reply]);
        assert!(matches!(
            compose(
                &shared,
                Thread::TopLevel { article_id: "a" },
                &q,
                &overlay,
                &u
            ),
            Composed::Shared
        ));
        match compose(
            &Page {
                items: vec![],
                next_cursor: None,
                total: 0,
            },
            Thread::Replies { parent_id: "c-001" },
            &q,
            &overlay,
            &u,
        ) {
            Composed::Own(p) => {
                assert_eq!(p.total, 1);
                assert_eq!(p.items[0].id, "c-003");
                assert!(p.items[0].mine);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_much_pending_is_read_uncached() {
        let u = user("u");
        let q = ListQuery {
            sort: Sort::Newest,
            limit: 20,
            cursor: None,
        };
        let shared = oracle(&[], &[], &q, &u);
        let many: Vec<CommentView> = (0..=MAX_PENDING as i64)
            .map(|n| comment(n, Some("u"), "pending"))
            .collect();
        let thread = Thread::TopLevel { article_id: "a" };
        assert!(matches!(
            compose(&shared, thread, &q, &Overlay::of(many), &u),
            Composed::Uncached
        ));
        let mut long = comment(1, Some("u"), "pending");
        long.body = "x".repeat(MAX_PENDING_BYTES + 1);
        assert!(matches!(
            compose(&shared, thread, &q, &Overlay::of(vec![long]), &u),
            Composed::Uncached
        ));
    }
}
