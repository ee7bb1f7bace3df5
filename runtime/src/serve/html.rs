//! The pages' HTML: escaping, the common layout (its CSS inline, nothing loaded from elsewhere) and
//! the small pieces every page uses (status badges, durations, times).
//!
//! Every value shown comes from a record that anyone able to write kiln's state dir (or a
//! pipeline file, or a commit message) controls, so nothing reaches a page unescaped: text goes
//! through [`esc`], and a link from a record is a link only when it is http or https.

use std::fmt::Write as _;

/// `text` escaped for HTML text and for attribute values in double or single quotes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link to `url` showing `text` when `url` is http or https; otherwise the url as plain text, so
/// a record cannot put a `javascript:` link on a page.
pub fn external_link(url: &str) -> String {
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        format!(
            r#"<a href="{}" rel="noopener noreferrer nofollow">{}</a>"#,
            esc(url.trim_start()),
            esc(url)
        )
    } else {
        format!("<code>{}</code>", esc(url))
    }
}

/// A status as a coloured badge; `status` is one of kiln's own words (CodePipeline's, CodeBuild's
/// or CodeDeploy's), turned into a CSS class by keeping its letters only.
pub fn badge(status: &str) -> String {
    format!(
        r#"<span class="badge {}">{}</span>"#,
        status_class(status),
        esc(status)
    )
}

/// The CSS class of a status: `ok`, `failed`, `running`, `pending` or `ended`.
pub fn status_class(status: &str) -> &'static str {
    let key: String = status
        .chars()
        .filter(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_lowercase();
    match key.as_str() {
        "succeeded" => "ok",
        "failed" | "fault" | "timedout" => "failed",
        "inprogress" | "stopping" => "running",
        "pending" => "pending",
        _ => "ended",
    }
}

/// A duration for people: `0.4s`, `12.3s`, `3m 05s`, `1h 02m`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A time (milliseconds since the epoch) in the local time zone, to the second.
pub fn time(ms: u64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(ms as i64) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        }
        chrono::LocalResult::None => "-".into(),
    }
}

/// A whole page: the layout around `body`, reloading itself every 2 s when `refresh` is set.
pub fn page(title: &str, refresh: bool, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + CSS.len() + 1024);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    // Not `no-referrer`: with it a browser sends `Origin: null` on the approval form's POST,
    // which the origin check refuses. Links out carry `noreferrer` themselves.
    out.push_str("<meta name=\"referrer\" content=\"same-origin\">");
    if refresh {
        out.push_str("<meta http-equiv=\"refresh\" content=\"2\">");
    }
    let _ = write!(
        out,
        "<title>{} · kiln</title><style>{CSS}</style>",
        esc(title)
    );
    out.push_str(
        "</head><body><header><a class=\"brand\" href=\"/\">kiln</a><nav>\
         <a href=\"/\">Pipelines</a><a href=\"/builds\">Builds</a>\
         <a href=\"/deployments\">Deployments</a></nav></header><main>",
    );
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

const CSS: &str = "
:root{--ok:#1d8102;--failed:#d13212;--running:#0073bb;--pending:#687078;--ended:#545b64;
--line:#d5dbdb;--bg:#f2f3f3;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:15px;color:#16191f}
body{margin:0;background:var(--bg)}
header{background:#232f3e;color:#fff;padding:.6rem 1.2rem;display:flex;gap:2rem;align-items:center}
header a{color:#fff;text-decoration:none}header .brand{font-weight:700;font-size:1.15rem}
nav{display:flex;gap:1.2rem}
main{padding:1rem 1.2rem;max-width:100%}
h1{font-size:1.35rem;margin:.4rem 0 .8rem}h2{font-size:1.05rem;margin:0 0 .5rem}
a{color:#0073bb}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:1.2rem}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#fafafa;font-weight:600}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.86rem}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:1rem;color:#fff;font-size:.8rem;font-weight:600}
.badge.ok{background:var(--ok)}.badge.failed{background:var(--failed)}.badge.running{background:var(--running)}
.badge.pending{background:var(--pending)}.badge.ended{background:var(--ended)}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;background:#fff;padding:.8rem;margin-bottom:1rem;border:1px solid var(--line)}
.facts dt{color:#545b64}.facts dd{margin:0}
.stages{display:flex;gap:0;align-items:stretch;overflow-x:auto;padding-bottom:.5rem}
.stage{background:#fff;border:1px solid var(--line);border-top:4px solid var(--pending);min-width:16rem;max-width:22rem;padding:.7rem}
.stage.ok{border-top-color:var(--ok)}.stage.failed{border-top-color:var(--failed)}.stage.running{border-top-color:var(--running)}
.arrow{align-self:center;color:#879596;font-size:1.6rem;padding:0 .4rem}
.action{border:1px solid var(--line);border-left:4px solid var(--pending);padding:.5rem .6rem;margin-top:.6rem;background:#fff}
.action.ok{border-left-color:var(--ok)}.action.failed{border-left-color:var(--failed)}.action.running{border-left-color:var(--running)}
.action .name{font-weight:600;word-break:break-word}.action .meta{color:#545b64;font-size:.85rem;margin:.2rem 0}
.action .error{color:var(--failed);font-size:.85rem;white-space:pre-wrap;word-break:break-word}
.approval{background:#f1faff;border:1px solid #99cbe4;padding:.5rem;margin-top:.5rem}
.approval .custom{white-space:pre-wrap;word-break:break-word}
.approval textarea{width:100%;box-sizing:border-box;min-height:3.5rem;font:inherit}
.approval button{margin-top:.4rem;margin-right:.4rem;padding:.3rem .9rem;border-radius:2px;border:1px solid;font-weight:600;cursor:pointer}
button.approve{background:#ec7211;border-color:#ec7211;color:#fff}button.reject{background:#fff;border-color:#545b64;color:#16191f}
.note{color:#545b64;font-size:.85rem}
pre.log{background:#16191f;color:#eaeded;padding:.8rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all;min-height:4rem}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn only_http_links_are_links() {
        assert!(external_link("https://example.com/a?b=1&c").starts_with("<a href="));
        assert!(external_link("https://example.com/a?b=1&c").contains("b=1&amp;c"));
        assert!(!external_link("javascript:alert(1)").contains("<a"));
        assert!(!external_link(" JavaScript:alert(1)").contains("href"));
        assert!(!external_link("data:text/html,<b>").contains("<b>"));
    }

    #[test]
    fn statuses_of_every_service_get_a_colour() {
        assert_eq!(status_class("Succeeded"), "ok");
        assert_eq!(status_class("SUCCEEDED"), "ok");
        assert_eq!(status_class("IN_PROGRESS"), "running");
        assert_eq!(status_class("InProgress"), "running");
        assert_eq!(status_class("FAILED"), "failed");
        assert_eq!(status_class("\"><x"), "ended");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(400), "0.4s");
        assert_eq!(duration(65_000), "1m 05s");
        assert_eq!(duration(3_720_000), "1h 02m");
    }
}
