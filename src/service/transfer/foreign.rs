//! What the Disqus, WXR and Isso readers produce: threads (future articles) and their
//! comments, with the source's ids, before any of it is checked against the database.

use chrono::{DateTime, Utc};

use crate::domain::ArticleId;

#[derive(Debug, Default)]
pub struct Foreign {
    pub threads: Vec<Thread>,
    pub comments: Vec<Comment>,
    /// Records the source holds that tally has no place for (pingbacks, trackbacks).
    pub skipped: u64,
}

#[derive(Debug)]
pub struct Thread {
    /// The source's id of the thread (what comments name).
    pub source_id: String,
    /// Where to name it in a refusal: `thread 7651269`, `item 12`.
    pub at: String,
    /// The article it becomes, or why it cannot.
    pub article: Result<String, String>,
    pub title: Option<String>,
    pub url: Option<String>,
    pub comments_open: bool,
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub struct Comment {
    pub source_id: String,
    /// `post 1019370213`, `comment 7`.
    pub at: String,
    pub thread_id: String,
    pub parent_id: Option<String>,
    pub author_name: String,
    /// Plain text already.
    pub body: String,
    /// A tally status (`approved`, `pending`, `spam`, `deleted`), or why none fits.
    pub status: Result<&'static str, String>,
    pub created_at: Result<DateTime<Utc>, String>,
}

/// An article id from a path or a slug: characters an article id cannot hold become
/// `-`, leading and trailing `-` are dropped.
pub fn article_id_from(raw: &str) -> Result<String, String> {
    let mapped: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | ':' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let id = mapped.trim_matches('-');
    ArticleId::check(id)
        .map(str::to_owned)
        .map_err(|_| format!("{raw:?} gives no valid article id ({id:?})"))
}

/// The path of a URL (`https://host/a/b?x#y` → `/a/b`).
pub fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("")
}

/// A display name as tally stores it: trimmed, control characters out, at most 64
/// characters, `Anonymous` when empty.
pub fn author_name(raw: Option<&str>) -> String {
    let name: String = raw
        .unwrap_or("")
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(crate::domain::AuthorName::MAX_CHARS)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        "Anonymous".into()
    } else {
        name.to_owned()
    }
}

/// Appends an XML text node to `text`, decoded (entity references come as their own
/// events since quick-xml 0.38: see [`push_xml_ref`]).
pub fn push_xml_text(text: &mut String, e: &quick_xml::events::BytesText) -> Result<(), String> {
    text.push_str(&e.decode().map_err(|e| e.to_string())?);
    Ok(())
}

/// Appends what an XML entity or character reference (`&amp;`, `&#233;`) stands for;
/// an entity XML does not predefine is kept as written.
pub fn push_xml_ref(text: &mut String, e: &quick_xml::events::BytesRef) -> Result<(), String> {
    if let Some(c) = e.resolve_char_ref().map_err(|e| e.to_string())? {
        text.push(c);
        return Ok(());
    }
    let name = e.decode().map_err(|e| e.to_string())?;
    match quick_xml::escape::resolve_predefined_entity(&name) {
        Some(s) => text.push_str(s),
        None => {
            text.push('&');
            text.push_str(&name);
            text.push(';');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_slugs_become_article_ids() {
        assert_eq!(
            article_id_from("/blog/hello-world/").unwrap(),
            "blog-hello-world"
        );
        assert_eq!(
            article_id_from("/notes/2024/why?").unwrap(),
            "notes-2024-why"
        );
        assert_eq!(article_id_from("héllo wörld").unwrap(), "h-llo-w-rld");
        assert!(article_id_from("/").is_err());
        assert_eq!(url_path("https://example.org/a/b/?p=1#c"), "/a/b/");
        assert_eq!(url_path("https://example.org"), "");
    }
}
