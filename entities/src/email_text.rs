//! The plain text of an email: derived from HTML when a sender gave only HTML (for the
//! inbox preview, search and the text part), and a reply's own words without the history
//! its mail program quoted below them (for the preview).

/// Lines wide enough that a paragraph stays one line: the text is read on screens, not
/// printed.
const WIDTH: usize = 10_000;

/// The text of an HTML body: paragraphs, lists and links kept readable, markup and scripts
/// gone. Never fails: markup html2text cannot read leaves its tags stripped the crude way.
pub fn from_html(html: &str) -> String {
    match html2text::config::plain_no_decorate()
        .no_table_borders()
        .string_from_read(html.as_bytes(), WIDTH)
    {
        Ok(text) => tidy(&text),
        Err(_) => tidy(&strip_tags(html)),
    }
}

/// Trailing spaces and runs of blank lines removed.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_owned()
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// A reply's new text: everything above the quoted history (`> ` lines and the
/// "On … wrote:" line before them, or an Outlook "-----Original Message-----" /
/// "From: … Sent: …" block). The whole text when nothing looks quoted.
pub fn without_quoted(text: &str) -> &str {
    let mut offset = 0;
    let mut cut = None;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
        let attribution = (t.starts_with("On ") && t.ends_with("wrote:"))
            || (t.starts_with("On ") && next.ends_with("wrote:"));
        if t.starts_with('>')
            || attribution
            || t.starts_with("-----Original Message-----")
            || (t.starts_with("From:") && next.starts_with("Sent:"))
        {
            cut = Some(offset);
            break;
        }
        offset += line.len();
    }
    match cut {
        Some(0) | None => text.trim(),
        Some(at) => text[..at].trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_readable_text() {
        let text = from_html(
            "<html><head><style>p{color:red}</style></head><body><h1>Hello Grace</h1>\
             <p>Your visit is <b>tomorrow</b> at 10:00.</p><ul><li>Bring a towel</li></ul>\
             <script>alert(1)</script></body></html>",
        );
        assert!(text.contains("Hello Grace"), "{text}");
        assert!(text.contains("Your visit is tomorrow at 10:00."), "{text}");
        assert!(text.contains("Bring a towel"), "{text}");
        assert!(!text.contains('<') && !text.contains("alert") && !text.contains("color"));
    }

    #[test]
    fn quoted_history_is_cut_from_replies() {
        let gmail = "Thanks, see you then!\n\nOn Mon, Dec 7, 2026 at 9:00 AM Serenity Spa <desk@spa.example> wrote:\n> Your visit is tomorrow.\n";
        assert_eq!(without_quoted(gmail), "Thanks, see you then!");
        let wrapped = "Yes please\n\nOn Mon, Dec 7, 2026 at 9:00 AM Serenity Spa\n<desk@spa.example> wrote:\n> Shall we?";
        assert_eq!(without_quoted(wrapped), "Yes please");
        let outlook = "Works for me.\r\n\r\n-----Original Message-----\r\nFrom: Spa\r\n";
        assert_eq!(without_quoted(outlook), "Works for me.");
        assert_eq!(
            without_quoted("Just text\nover lines"),
            "Just text\nover lines"
        );
        assert_eq!(without_quoted("> only a quote"), "> only a quote");
    }
}
