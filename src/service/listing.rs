//! Keyset listings: the page type every listing answers with, cutting rows to a page,
//! and the (created_at, id) cursor of comment rows.

use sea_orm::{ColumnTrait, Condition};
use serde::Serialize;

use crate::{
    domain::{Cursor, Sort},
    entity::comment,
};

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub sort: Sort,
    pub limit: u64,
    pub cursor: Option<Cursor>,
}

/// A page of a listing that has no total; `next_cursor` is `null` on the last page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CursorPage<T> {
    pub items: Vec<T>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Cuts `rows` (fetched with `limit + 1`) to a page; the extra row says there is more.
pub fn paginate<T>(
    mut rows: Vec<T>,
    limit: u64,
    cursor_of: impl Fn(&T) -> Cursor,
) -> CursorPage<T> {
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| cursor_of(r).encode())
    } else {
        None
    };
    CursorPage {
        items: rows,
        next_cursor,
    }
}

/// The keyset position of a comment row.
pub fn comment_cursor(c: &comment::Model) -> Cursor {
    Cursor {
        created_at: c.created_at,
        id: c.id.clone(),
    }
}

/// Keyset condition: rows strictly after `cursor` in `sort` order.
pub fn after_cursor(
    created: comment::Column,
    id: comment::Column,
    sort: Sort,
    cursor: &Cursor,
) -> Condition {
    // `created_at >= t AND (created_at > t OR id > i)`: the first, redundant term is a
    // plain range both planners turn into an index bound, so a page deep in a long
    // thread seeks to its start instead of filtering every row before it.
    let (t, i) = (cursor.created_at, cursor.id.clone());
    match sort {
        Sort::Oldest => Condition::all()
            .add(created.gte(t))
            .add(Condition::any().add(created.gt(t)).add(id.gt(i))),
        Sort::Newest => Condition::all()
            .add(created.lte(t))
            .add(Condition::any().add(created.lt(t)).add(id.lt(i))),
    }
}
