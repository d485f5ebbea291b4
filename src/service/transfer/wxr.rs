//! WordPress's export (WXR: RSS 2.0 with `wp:` elements), read as a stream. An
//! `<item>` becomes the article named by its `wp:post_name`; its `wp:comment`s keep
//! their status (`1` approved, `0` pending, `spam`, `trash` deleted), parent, author
//! and GMT time. Pingbacks and trackbacks are skipped.

use std::io::BufRead;

use chrono::{DateTime, NaiveDateTime, Utc};
use quick_xml::events::Event;

use super::foreign::{self, Foreign};

#[derive(Default)]
struct Item {
    title: String,
    link: String,
    post_id: String,
    post_name: String,
    post_date_gmt: String,
    comment_status: String,
}

#[derive(Default)]
struct WpComment {
    id: String,
    author: String,
    date: String,
    date_gmt: String,
    content: String,
    approved: String,
    kind: String,
    parent: String,
}

/// Reads a WXR file; `Err` when it is no readable XML (exit 2).
pub fn read(input: impl BufRead, progress: impl Fn(u64)) -> Result<Foreign, String> {
    let mut reader = quick_xml::Reader::from_reader(input);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    let mut item: Option<Item> = None;
    let mut comment: Option<WpComment> = None;
    let mut comments: Vec<WpComment> = Vec::new();
    let mut out = Foreign::default();
    let mut root_seen = false;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = e.local_name().as_ref().to_vec();
                if path.is_empty() {
                    if name != b"rss" {
                        return Err("not a WXR file: the root element is not <rss>".into());
                    }
                    root_seen = true;
                }
                match (path.len(), name.as_slice()) {
                    (2, b"item") => item = Some(Item::default()),
                    (3, b"comment") => comment = Some(WpComment::default()),
                    _ => {}
                }
                text.clear();
                path.push(name);
                if matches!(event, Event::Empty(_)) {
                    end(
                        &mut path,
                        &mut text,
                        &mut item,
                        &mut comment,
                        &mut comments,
                        &mut out,
                    );
                }
            }
            Event::Text(e) => super::foreign::push_xml_text(&mut text, &e)?,
            Event::GeneralRef(e) => super::foreign::push_xml_ref(&mut text, &e)?,
            Event::CData(e) => text.push_str(&String::from_utf8_lossy(&e.into_inner())),
            Event::End(_) => end(
                &mut path,
                &mut text,
                &mut item,
                &mut comment,
                &mut comments,
                &mut out,
            ),
            Event::Eof => {
                if let Some(open) = path.last() {
                    return Err(format!(
                        "the file ends inside <{}>",
                        String::from_utf8_lossy(open)
                    ));
                }
                break;
            }
            _ => {}
        }
        progress(reader.buffer_position());
        buf.clear();
    }
    if !root_seen {
        return Err("not a WXR file: no <rss> element".into());
    }
    Ok(out)
}

fn end(
    path: &mut Vec<Vec<u8>>,
    text: &mut String,
    item: &mut Option<Item>,
    comment: &mut Option<WpComment>,
    comments: &mut Vec<WpComment>,
    out: &mut Foreign,
) {
    let value = std::mem::take(text);
    let names: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
    match names.as_slice() {
        [_, _, b"item"] => {
            if let Some(i) = item.take() {
                finish_item(i, std::mem::take(comments), out);
            }
        }
        [_, _, b"item", b"comment"] => {
            if let Some(c) = comment.take() {
                comments.push(c);
            }
        }
        [_, _, b"item", field] => {
            if let Some(i) = item.as_mut() {
                match *field {
                    b"title" => i.title = value,
                    b"link" => i.link = value,
                    b"post_id" => i.post_id = value,
                    b"post_name" => i.post_name = value,
                    b"post_date_gmt" => i.post_date_gmt = value,
                    b"comment_status" => i.comment_status = value,
                    _ => {}
                }
            }
        }
        [_, _, b"item", b"comment", field] => {
            if let Some(c) = comment.as_mut() {
                match *field {
                    b"comment_id" => c.id = value,
                    b"comment_author" => c.author = value,
                    b"comment_date" => c.date = value,
                    b"comment_date_gmt" => c.date_gmt = value,
                    b"comment_content" => c.content = value,
                    b"comment_approved" => c.approved = value,
                    b"comment_type" => c.kind = value,
                    b"comment_parent" => c.parent = value,
                    _ => {}
                }
            }
        }
        _ => {}
    }
    path.pop();
}

/// WordPress's `2024-01-01 09:00:00` (GMT; `0000-00-00 00:00:00` when unknown).
fn time(raw: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

fn finish_item(i: Item, comments: Vec<WpComment>, out: &mut Foreign) {
    if comments.is_empty() {
        return;
    }
    let slug = i.post_name.trim();
    let article = if slug.is_empty() {
        Err(format!("post {} has no wp:post_name", i.post_id.trim()))
    } else {
        foreign::article_id_from(slug)
    };
    out.threads.push(foreign::Thread {
        source_id: i.post_id.trim().to_owned(),
        at: format!("item {}", i.post_id.trim()),
        article,
        title: Some(i.title.trim().to_owned()).filter(|s| !s.is_empty()),
        url: Some(i.link.trim().to_owned()).filter(|s| !s.is_empty()),
        comments_open: i.comment_status.trim() != "closed",
        created_at: time(&i.post_date_gmt),
    });
    for c in comments {
        if matches!(c.kind.trim(), "pingback" | "trackback") {
            out.skipped += 1;
            continue;
        }
        let status = match c.approved.trim() {
            "1" | "approve" => Ok("approved"),
            "0" | "hold" => Ok("pending"),
            "spam" => Ok("spam"),
            "trash" | "post-trashed" => Ok("deleted"),
            other => Err(format!("unknown wp:comment_approved {other:?}")),
        };
        let created_at = time(&c.date_gmt)
            .or_else(|| time(&c.date))
            .ok_or_else(|| format!("no usable wp:comment_date_gmt ({:?})", c.date_gmt));
        let parent = c.parent.trim();
        out.comments.push(foreign::Comment {
            at: format!("comment {}", c.id.trim()),
            source_id: c.id.trim().to_owned(),
            thread_id: i.post_id.trim().to_owned(),
            parent_id: (!parent.is_empty() && parent != "0").then(|| parent.to_owned()),
            author_name: foreign::author_name(Some(&c.author)),
            body: super::html::to_text(&c.content),
            status,
            created_at,
        });
    }
}
