//! HTML comment bodies (Disqus, WordPress) as plain text: tags dropped, entities
//! decoded, `<br>` as a newline and paragraph ends as a blank line.

/// Tags that end a block: a paragraph break in the text.
const BLOCKS: [&str; 14] = [
    "p",
    "div",
    "blockquote",
    "pre",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
];

pub fn to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&html_escape::decode_html_entities(&rest[..open]));
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            // A lone `<` is text.
            out.push_str(&html_escape::decode_html_entities(&rest[open..]));
            rest = "";
            break;
        };
        let tag = after[..close].trim();
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if name == "br" {
            out.push('\n');
        } else if BLOCKS.contains(&name.as_str()) {
            out.push_str("\n\n");
        }
        rest = &after[close + 1..];
    }
    out.push_str(&html_escape::decode_html_entities(rest));
    tidy(&out)
}

/// Trailing spaces off every line, at most one blank line in a row, no blank lines
/// around the text.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.replace("\r\n", "\n").split('\n') {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_text;

    #[test]
    fn tags_go_entities_decode_breaks_and_paragraphs_become_newlines() {
        assert_eq!(
            to_text("<p>Hello &amp; <b>welcome</b>,<br/>friend &lt;3</p><p>Second&nbsp;para</p>"),
            "Hello & welcome,\nfriend <3\n\nSecond\u{a0}para"
        );
        assert_eq!(to_text("plain\ntext"), "plain\ntext");
        assert_eq!(to_text("a < b"), "a < b");
        assert_eq!(to_text("<p></p>"), "");
    }
}
