//! Disqus's XML export (`<disqus>` with `<thread dsq:id>` and `<post dsq:id>`
//! elements), read as a stream.
//!
//! A thread becomes the article named by its `<id>` when that is a valid article id,
//! else by its `<link>`'s path. A post's status: `<isDeleted>true` → deleted,
//! `<isSpam>true` → spam, `<isApproved>false` → pending, else approved.

use std::io::BufRead;

use chrono::{DateTime, Utc};
use quick_xml::events::{BytesStart, Event};

use super::foreign::{self, Foreign};
use crate::domain::ArticleId;

#[derive(Default)]
struct Thread {
    dsq_id: String,
    id: String,
    link: String,
    title: String,
    created_at: String,
    is_closed: String,
}

#[derive(Default)]
struct Post {
    dsq_id: String,
    message: String,
    created_at: String,
    is_deleted: String,
    is_spam: String,
    is_approved: String,
    author_name: String,
    thread: String,
    parent: Option<String>,
}

fn dsq_id(e: &BytesStart) -> Result<String, String> {
    for a in e.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        if a.key.local_name().as_ref() == b"id" {
            return Ok(a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?
                .into_owned());
        }
    }
    Ok(String::new())
}

/// Reads a Disqus export; `Err` when it is no readable XML (exit 2).
pub fn read(input: impl BufRead, progress: impl Fn(u64)) -> Result<Foreign, String> {
    let mut reader = quick_xml::Reader::from_reader(input);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    // Local names of the open elements.
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    let mut thread: Option<Thread> = None;
    let mut post: Option<Post> = None;
    let mut out = Foreign::default();
    let mut root_seen = false;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.local_name().as_ref().to_vec();
                if path.is_empty() {
                    if name != b"disqus" {
                        return Err("not a Disqus export: the root element is not <disqus>".into());
                    }
                    root_seen = true;
                }
                match (path.len(), name.as_slice()) {
                    (1, b"thread") => {
                        thread = Some(Thread {
                            dsq_id: dsq_id(e)?,
                            ..Thread::default()
                        })
                    }
                    (1, b"post") => {
                        post = Some(Post {
                            dsq_id: dsq_id(e)?,
                            ..Post::default()
                        })
                    }
                    (2, b"thread") => {
                        if let Some(p) = post.as_mut() {
                            p.thread = dsq_id(e)?;
                        }
                    }
                    (2, b"parent") => {
                        if let Some(p) = post.as_mut() {
                            p.parent = Some(dsq_id(e)?).filter(|s| !s.is_empty());
                        }
                    }
                    _ => {}
                }
                text.clear();
                path.push(name);
                if empty {
                    end(&mut path, &mut text, &mut thread, &mut post, &mut out);
                }
            }
            Event::Text(e) => super::foreign::push_xml_text(&mut text, &e)?,
            Event::GeneralRef(e) => super::foreign::push_xml_ref(&mut text, &e)?,
            Event::CData(e) => text.push_str(&String::from_utf8_lossy(&e.into_inner())),
            Event::End(_) => end(&mut path, &mut text, &mut thread, &mut post, &mut out),
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
        return Err("not a Disqus export: no <disqus> element".into());
    }
    Ok(out)
}

fn end(
    path: &mut Vec<Vec<u8>>,
    text: &mut String,
    thread: &mut Option<Thread>,
    post: &mut Option<Post>,
    out: &mut Foreign,
) {
    let value = std::mem::take(text);
    let names: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
    match names.as_slice() {
        [_, b"thread"] => {
            if let Some(t) = thread.take() {
                out.threads.push(finish_thread(t));
            }
        }
        [_, b"post"] => {
            if let Some(p) = post.take() {
                out.comments.push(finish_post(p));
            }
        }
        [_, b"thread", field] => {
            if let Some(t) = thread.as_mut() {
                match *field {
                    b"id" => t.id = value,
                    b"link" => t.link = value,
                    b"title" => t.title = value,
                    b"createdAt" => t.created_at = value,
                    b"isClosed" => t.is_closed = value,
                    _ => {}
                }
            }
        }
        [_, b"post", field] => {
            if let Some(p) = post.as_mut() {
                match *field {
                    b"message" => p.message = value,
                    b"createdAt" => p.created_at = value,
                    b"isDeleted" => p.is_deleted = value,
                    b"isSpam" => p.is_spam = value,
                    b"isApproved" => p.is_approved = value,
                    _ => {}
                }
            }
        }
        [_, b"post", b"author", b"name"] => {
            if let Some(p) = post.as_mut() {
                p.author_name = value;
            }
        }
        _ => {}
    }
    path.pop();
}

fn time(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("createdAt {raw:?} is no RFC 3339 time"))
}

fn finish_thread(t: Thread) -> foreign::Thread {
    let article = if ArticleId::check(t.id.trim()).is_ok() {
        Ok(t.id.trim().to_owned())
    } else {
        foreign::article_id_from(foreign::url_path(t.link.trim()))
    };
    foreign::Thread {
        at: format!("thread {}", t.dsq_id),
        source_id: t.dsq_id,
        article,
        title: Some(t.title.trim().to_owned()).filter(|s| !s.is_empty()),
        url: Some(t.link.trim().to_owned()).filter(|s| !s.is_empty()),
        comments_open: t.is_closed.trim() != "true",
        created_at: time(&t.created_at).ok(),
    }
}

fn finish_post(p: Post) -> foreign::Comment {
    let yes = |s: &str| s.trim() == "true";
    let status = if yes(&p.is_deleted) {
        "deleted"
    } else if yes(&p.is_spam) {
        "spam"
    } else if p.is_approved.trim() == "false" {
        "pending"
    } else {
        "approved"
    };
    foreign::Comment {
        at: format!("post {}", p.dsq_id),
        source_id: p.dsq_id,
        thread_id: p.thread,
        parent_id: p.parent,
        author_name: foreign::author_name(Some(&p.author_name)),
        body: super::html::to_text(&p.message),
        status: Ok(status),
        created_at: time(&p.created_at),
    }
}
