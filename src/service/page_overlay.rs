//! Signed-in comment pages from the shared page plus the caller's own overlay.
//!
//! A signed-in reader's page of comments (an article's top-level comments or reviews,
//! or the replies to one comment) differs from the anonymous page in three ways only:
//!
//! - their own comments carry `"mine": true` (the shared page keeps each item's
//!   [`owner`](CommentView::owner), so a copy can be flagged without the database);
//! - the comments they voted on carry their `my_vote`;
//! - their own comments still waiting for moderation are listed too, in order, and
//!   counted in `total`.
//!
//! So [`compose`] builds it from the anonymous page of the same query and the caller's
//! [`Overlay`]: every comment of theirs that is pending, anywhere (one indexed query on
//! `(author_id, status, …)`), and every vote of theirs (one query on the votes' user
//! index), kept per user by the route layer and retired with the pages (a vote is a
//! write, so it retires both). The merge is exact: the visible set for the caller is
//! the listed comments plus their pending ones, two disjoint sets, and the first
//! `limit` items of a union of two ordered sets after a cursor are among the first
//! `limit` of each. The anonymous page brings the first `limit` listed ones and
//! whether more follow; the overlay brings every pending one. Every order merges the
//! same way: `newest`/`oldest` by time, `best` by the stored `best_score` (a pending
//! comment has its own, 0 unless a moderator voted on it), `highest`/`lowest` by
//! stars, each then newest first, as the database orders them.
//! `tests/api/page_overlay.rs` compares the two paths byte for byte.
//!
//! **Adding a per-user field**: read the caller's values into the [`Overlay`], set the
//! field in [`compose`] where `mine` and `my_vote` are set, and count an item carrying
//! a value as "own" (so [`Composed::Shared`] is answered only when nothing on the page
//! is theirs). A new order must say in [`position`] where a pending comment falls in
//! it, or answer [`Composed::Uncached`] for it.

use std::{cmp::Ordering, collections::HashMap};

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::comments::{pending_by, view, CommentView, Page, Shown, ThreadQuery};
use crate::{
    auth::User,
    domain::{CommentKind, Cursor, KeyCursor, Stars, ThreadCursor, ThreadSort, Vote},
    entity::{comment, comment_vote},
    error::ApiError,
};

/// More pending comments than this for one user and their pages are read uncached
/// (exact as ever, just not from memory): it bounds an overlay's memory and work.
pub const MAX_PENDING: usize = 50;

/// The same bound on the pending comments' text, in bytes (an overlay holds bodies).
pub const MAX_PENDING_BYTES: usize = 32 * 1024;

/// The same bound on a user's votes: a reader with more has their pages read uncached.
pub const MAX_VOTES: usize = 500;

/// One user's comments still waiting for moderation, in every thread, oldest first,
/// and their votes by comment id; `None` where there are more than the bounds above.
#[derive(Debug, Clone)]
pub struct Overlay {
    pending: Option<Vec<CommentView>>,
    votes: Option<HashMap<String, Vote>>,
}

impl Overlay {
    /// Reads `user`'s pending comments (one query on the `(author_id, status, …)`
    /// index) and their votes (one on the votes' `user_id` index).
    pub async fn read(conn: &impl ConnectionTrait, user: &User) -> Result<Overlay, ApiError> {
        let rows = comment::Entity::find()
            .filter(pending_by(user))
            .order_by_asc(comment::Column::CreatedAt)
            .order_by_asc(comment::Column::Id)
            .limit(MAX_PENDING as u64 + 1)
            .into_partial_model::<Shown>()
            .all(conn)
            .await?;
        let votes: Vec<(String, String)> = comment_vote::Entity::find()
            .select_only()
            .column(comment_vote::Column::CommentId)
            .column(comment_vote::Column::Vote)
            .filter(comment_vote::Column::UserId.eq(&user.id))
            .limit(MAX_VOTES as u64 + 1)
            .into_tuple()
            .all(conn)
            .await?;
        let votes = (votes.len() <= MAX_VOTES).then(|| {
            votes
                .into_iter()
                .filter_map(|(id, v)| Vote::parse(&v).map(|v| (id, v)))
                .collect()
        });
        Ok(Overlay::of(
            rows.into_iter()
                .map(|c| view(c, Some(user), false))
                .collect(),
            votes,
        ))
    }

    /// An overlay of these pending comments (`user`'s, oldest first) and votes.
    pub fn of(pending: Vec<CommentView>, votes: Option<HashMap<String, Vote>>) -> Overlay {
        let bytes: usize = pending.iter().map(|c| c.body.len()).sum();
        let fits = pending.len() <= MAX_PENDING && bytes <= MAX_PENDING_BYTES;
        Overlay {
            pending: fits.then_some(pending),
            votes,
        }
    }
}

/// Which listing a page is of.
#[derive(Debug, Clone, Copy)]
pub enum Thread<'a> {
    /// An article's top-level comments of one kind (comments, or reviews, maybe of one
    /// number of stars).
    TopLevel {
        article_id: &'a str,
        kind: CommentKind,
        stars: Option<Stars>,
    },
    /// The direct replies to one comment.
    Replies { parent_id: &'a str },
}

impl Thread<'_> {
    fn holds(&self, c: &CommentView) -> bool {
        match *self {
            Thread::TopLevel {
                article_id,
                kind,
                stars,
            } => {
                c.parent_id.is_none()
                    && c.article_id == article_id
                    && c.kind == kind
                    && stars.is_none_or(|s| c.stars == Some(i16::from(s.get())))
            }
            Thread::Replies { parent_id } => c.parent_id.as_deref() == Some(parent_id),
        }
    }
}

/// What a signed-in reader gets.
#[derive(Debug)]
pub enum Composed {
    /// Exactly the anonymous page: nothing on it is theirs or voted on by them, and
    /// they have nothing pending in this thread.
    Shared,
    /// Their own page.
    Own(Page<CommentView>),
    /// The overlay cannot answer (too much pending, too many votes): read the page from
    /// the database.
    Uncached,
}

/// A comment's place in a listing: its key (stars or score) in keyed orders, its
/// time, its id.
struct Position<'a> {
    key: f64,
    created_at: chrono::DateTime<chrono::Utc>,
    id: &'a str,
}

fn position(sort: ThreadSort, c: &CommentView) -> Position<'_> {
    let key = match sort {
        ThreadSort::Best => c.best_score,
        ThreadSort::Highest | ThreadSort::Lowest => f64::from(c.stars.unwrap_or(0)),
        ThreadSort::Newest | ThreadSort::Oldest => 0.0,
    };
    Position {
        key,
        created_at: c.created_at,
        id: &c.id,
    }
}

/// Whether `a` comes before (`Less`) or after `b` in `sort`: as the database orders
/// (`service::comments::list`): the key, high to low (`lowest`: low to high), then
/// newest first; `oldest` alone runs by time upwards.
fn compare(sort: ThreadSort, a: &Position<'_>, b: &Position<'_>) -> Ordering {
    let by_time = (a.created_at, a.id).cmp(&(b.created_at, b.id));
    let by_key = a.key.partial_cmp(&b.key).unwrap_or(Ordering::Equal);
    match sort {
        ThreadSort::Oldest => by_time,
        ThreadSort::Newest => by_time.reverse(),
        ThreadSort::Best | ThreadSort::Highest => by_key.reverse().then(by_time.reverse()),
        ThreadSort::Lowest => by_key.then(by_time.reverse()),
    }
}

/// The cursor after `c` in `sort`, as the database path encodes it.
fn cursor_after(sort: ThreadSort, c: &CommentView) -> String {
    if sort.keyed() {
        KeyCursor {
            key: position(sort, c).key,
            created_at: c.created_at,
            id: c.id.clone(),
        }
        .encode()
    } else {
        Cursor {
            created_at: c.created_at,
            id: c.id.clone(),
        }
        .encode()
    }
}

/// The page `user` gets for query `q` on `thread`, from `shared` (the anonymous page of
/// the same query) and their `overlay`: what the uncached path answers them.
pub fn compose(
    shared: &Page<CommentView>,
    thread: Thread<'_>,
    q: &ThreadQuery,
    overlay: &Overlay,
    user: &User,
) -> Composed {
    let (Some(all_pending), Some(votes)) = (&overlay.pending, &overlay.votes) else {
        return Composed::Uncached;
    };
    let is_own = |c: &CommentView| c.owner.as_deref() == Some(user.id.as_str());
    let pending: Vec<&CommentView> = all_pending.iter().filter(|c| thread.holds(c)).collect();
    if pending.is_empty()
        && !shared
            .items
            .iter()
            .any(|c| is_own(c) || votes.contains_key(&c.id))
    {
        return Composed::Shared;
    }
    let sort = q.sort;
    let cursor = match &q.cursor {
        None => None,
        Some(ThreadCursor::Time(c)) if !sort.keyed() => Some(Position {
            key: 0.0,
            created_at: c.created_at,
            id: &c.id,
        }),
        Some(ThreadCursor::Key(c)) if sort.keyed() => Some(Position {
            key: c.key,
            created_at: c.created_at,
            id: &c.id,
        }),
        // Not a cursor of this sort: the database path says so.
        Some(_) => return Composed::Uncached,
    };
    let after_cursor = |c: &CommentView| {
        cursor
            .as_ref()
            .is_none_or(|k| compare(sort, &position(sort, c), k) == Ordering::Greater)
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
            my_vote: votes.get(&c.id).copied(),
            ..c.clone()
        })
        .collect();
    // Both runs are sorted already; a stable sort of their concatenation merges them.
    items.sort_by(|a, b| compare(sort, &position(sort, a), &position(sort, b)));
    items.truncate(limit);
    let next_cursor = if more {
        items.last().map(|c| cursor_after(sort, c))
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
    use crate::{auth::Role, domain::wilson_lower_bound, service::comments::VoteCounts};

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            name: id.into(),
            role: Role::Reader,
            verified: false,
        }
    }

    fn at(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::seconds(n)
    }

    fn comment(n: i64, owner: Option<&str>, status: &'static str) -> CommentView {
        // Votes and stars spread so that keys tie (ordered by time then) and differ.
        let (up, down) = (n.rem_euclid(4), n.rem_euclid(3));
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
            best_score: wilson_lower_bound(up, down),
            kind: CommentKind::Comment,
            stars: Some((n.rem_euclid(5) + 1) as i16),
            verified: false,
            votes: VoteCounts { up, down },
            my_vote: None,
        }
    }

    fn pending(n: i64) -> CommentView {
        CommentView {
            id: format!("c-{n:03}-p"),
            best_score: 0.0,
            votes: VoteCounts { up: 0, down: 0 },
            ..comment(n, Some("u"), "pending")
        }
    }

    /// The key of `c` in a keyed sort, as the database path's cursor holds it.
    fn key(sort: ThreadSort, c: &CommentView) -> f64 {
        match sort {
            ThreadSort::Best => c.best_score,
            _ => f64::from(c.stars.unwrap()),
        }
    }

    /// The page the uncached path gives `u`: every visible comment, in the order of
    /// `service::comments::list`, after the cursor as its SQL says, cut.
    fn oracle(
        listed: &[CommentView],
        pending: &[CommentView],
        votes: &HashMap<String, Vote>,
        q: &ThreadQuery,
        u: &User,
    ) -> Page<CommentView> {
        let mut all: Vec<CommentView> = listed.iter().chain(pending).cloned().collect();
        let newest_first =
            |a: &CommentView, b: &CommentView| (b.created_at, &b.id).cmp(&(a.created_at, &a.id));
        match q.sort {
            ThreadSort::Oldest => all.sort_by_key(|c| (c.created_at, c.id.clone())),
            ThreadSort::Newest => all.sort_by(newest_first),
            ThreadSort::Best | ThreadSort::Highest => all.sort_by(|a, b| {
                key(q.sort, b)
                    .total_cmp(&key(q.sort, a))
                    .then(newest_first(a, b))
            }),
            ThreadSort::Lowest => all.sort_by(|a, b| {
                key(q.sort, a)
                    .total_cmp(&key(q.sort, b))
                    .then(newest_first(a, b))
            }),
        }
        let total = all.len() as i64;
        let rest: Vec<CommentView> = all
            .into_iter()
            .filter(|c| match &q.cursor {
                None => true,
                Some(ThreadCursor::Time(k)) => match q.sort {
                    ThreadSort::Oldest => (c.created_at, &c.id) > (k.created_at, &k.id),
                    _ => (c.created_at, &c.id) < (k.created_at, &k.id),
                },
                Some(ThreadCursor::Key(k)) => {
                    let beyond = match q.sort {
                        ThreadSort::Lowest => key(q.sort, c) > k.key,
                        _ => key(q.sort, c) < k.key,
                    };
                    beyond
                        || (key(q.sort, c) == k.key
                            && (c.created_at, &c.id) < (k.created_at, &k.id))
                }
            })
            .map(|c| CommentView {
                mine: c.owner.as_deref() == Some(u.id.as_str()),
                my_vote: votes.get(&c.id).copied(),
                ..c
            })
            .collect();
        page_of(rest, q, total)
    }

    fn page_of(mut rest: Vec<CommentView>, q: &ThreadQuery, total: i64) -> Page<CommentView> {
        let limit = q.limit as usize;
        let more = rest.len() > limit;
        rest.truncate(limit);
        let next_cursor = more.then(|| {
            let c = rest.last().unwrap();
            if q.sort.keyed() {
                ThreadCursor::Key(KeyCursor {
                    key: key(q.sort, c),
                    created_at: c.created_at,
                    id: c.id.clone(),
                })
            } else {
                ThreadCursor::Time(Cursor {
                    created_at: c.created_at,
                    id: c.id.clone(),
                })
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

    fn top_level() -> Thread<'static> {
        Thread::TopLevel {
            article_id: "a",
            kind: CommentKind::Comment,
            stars: None,
        }
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
        let vote_sets: Vec<HashMap<String, Vote>> = vec![
            HashMap::new(),
            HashMap::from([("c-004".to_owned(), Vote::Up)]),
            (0..30)
                .filter(|n| n % 3 == 0)
                .map(|n| {
                    let v = if n % 2 == 0 { Vote::Up } else { Vote::Down };
                    (format!("c-{:03}", n * 2), v)
                })
                .collect(),
        ];
        let sorts = [
            ThreadSort::Newest,
            ThreadSort::Oldest,
            ThreadSort::Best,
            ThreadSort::Highest,
            ThreadSort::Lowest,
        ];
        for own in &pending_sets {
            for votes in &vote_sets {
                for sort in sorts {
                    for limit in [1u64, 3, 5, 20, 100] {
                        // Walk every page through the composed path's own cursors.
                        let mut cursor = None;
                        let mut pages = 0;
                        loop {
                            let q = ThreadQuery {
                                sort,
                                limit,
                                cursor: cursor.clone(),
                            };
                            let want = oracle(&listed, own, votes, &q, &u);
                            let shared = oracle(&listed, &[], &HashMap::new(), &q, &user("nobody"));
                            let overlay = Overlay::of(own.clone(), Some(votes.clone()));
                            let got = match compose(&shared, top_level(), &q, &overlay, &u) {
                                Composed::Shared => shared,
                                Composed::Own(p) => p,
                                Composed::Uncached => panic!("small overlays answer"),
                            };
                            assert_eq!(json(&got), json(&want), "{sort:?} limit {limit}");
                            pages += 1;
                            match want.next_cursor {
                                Some(c) => cursor = Some(ThreadCursor::decode(&c, sort).unwrap()),
                                None => break,
                            }
                            assert!(pages < 200);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pending_comments_of_other_threads_and_kinds_do_not_count() {
        let u = user("u");
        let q = ThreadQuery {
            sort: ThreadSort::Oldest,
            limit: 20,
            cursor: None,
        };
        let none = HashMap::new();
        let shared = oracle(&[comment(1, Some("x"), "approved")], &[], &none, &q, &u);
        let mut elsewhere = comment(2, Some("u"), "pending");
        elsewhere.article_id = "b".into();
        let mut reply = comment(3, Some("u"), "pending");
        reply.parent_id = Some("c-001".into());
        let mut review = comment(4, Some("u"), "pending");
        review.kind = CommentKind::Review;
        review.stars = Some(4);
        let overlay = Overlay::of(vec![elsewhere, reply, review], Some(none.clone()));
        assert!(matches!(
            compose(&shared, top_level(), &q, &overlay, &u),
            Composed::Shared
        ));
        let empty = Page {
            items: vec![],
            next_cursor: None,
            total: 0,
        };
        match compose(
            &empty,
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
        let reviews = |stars: Option<u8>| Thread::TopLevel {
            article_id: "a",
            kind: CommentKind::Review,
            stars: stars.map(|s| Stars::try_from(i64::from(s)).unwrap()),
        };
        assert!(matches!(
            compose(&empty, reviews(Some(3)), &q, &overlay, &u),
            Composed::Shared
        ));
        for stars in [None, Some(4)] {
            match compose(&empty, reviews(stars), &q, &overlay, &u) {
                Composed::Own(p) => assert_eq!(p.items[0].id, "c-004"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_vote_on_the_page_makes_it_the_readers_own() {
        let u = user("u");
        let q = ThreadQuery {
            sort: ThreadSort::Newest,
            limit: 20,
            cursor: None,
        };
        let none = HashMap::new();
        let shared = oracle(&[comment(1, Some("x"), "approved")], &[], &none, &q, &u);
        let votes = HashMap::from([("c-001".to_owned(), Vote::Down)]);
        match compose(
            &shared,
            top_level(),
            &q,
            &Overlay::of(vec![], Some(votes)),
            &u,
        ) {
            Composed::Own(p) => assert_eq!(p.items[0].my_vote, Some(Vote::Down)),
            other => panic!("{other:?}"),
        }
        // A vote elsewhere leaves the shared page as it is.
        let elsewhere = HashMap::from([("c-999".to_owned(), Vote::Up)]);
        assert!(matches!(
            compose(
                &shared,
                top_level(),
                &q,
                &Overlay::of(vec![], Some(elsewhere)),
                &u
            ),
            Composed::Shared
        ));
    }

    #[test]
    fn too_much_pending_or_too_many_votes_is_read_uncached() {
        let u = user("u");
        let q = ThreadQuery {
            sort: ThreadSort::Newest,
            limit: 20,
            cursor: None,
        };
        let none = HashMap::new();
        let shared = oracle(&[], &[], &none, &q, &u);
        let many: Vec<CommentView> = (0..=MAX_PENDING as i64)
            .map(|n| comment(n, Some("u"), "pending"))
            .collect();
        let thread = top_level();
        assert!(matches!(
            compose(
                &shared,
                thread,
                &q,
                &Overlay::of(many, Some(none.clone())),
                &u
            ),
            Composed::Uncached
        ));
        let mut long = comment(1, Some("u"), "pending");
        long.body = "x".repeat(MAX_PENDING_BYTES + 1);
        assert!(matches!(
            compose(
                &shared,
                thread,
                &q,
                &Overlay::of(vec![long], Some(none)),
                &u
            ),
            Composed::Uncached
        ));
        assert!(matches!(
            compose(&shared, thread, &q, &Overlay::of(vec![], None), &u),
            Composed::Uncached
        ));
    }
}
