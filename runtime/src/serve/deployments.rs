//! The deployment pages: recent deployments of every deployment root, and a deployment's log (what
//! its hook scripts wrote).

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::html::{badge, duration, esc, page};
use super::{Html, Server, error, respond, wants_json};
use crate::deploy::{Deployment, Status};

/// How many deployments the page lists.
const SHOWN: usize = 100;

/// Every deployment of every root, newest first.
fn all(server: &Server) -> Vec<Deployment> {
    let mut list: Vec<Deployment> = server
        .config
        .deployment_roots
        .iter()
        .flat_map(|root| crate::deploy::list(root, None))
        .collect();
    list.sort_by(|a, b| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
    list.dedup_by(|a, b| a.id == b.id);
    list
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::InProgress => "InProgress",
        Status::Succeeded => "Succeeded",
        Status::Failed => "Failed",
    }
}

/// `GET /deployments`.
pub async fn index(State(server): State<Server>, headers: HeaderMap, uri: Uri) -> Response {
    super::blocking(move || {
        let mut list = all(&server);
        list.truncate(SHOWN);
        respond(wants_json(&headers, uri.query()), &list, || {
            let mut body = String::from("<h1>Deployments</h1>");
            if list.is_empty() {
                let roots: Vec<String> = server
                    .config
                    .deployment_roots
                    .iter()
                    .map(|r| format!("<code>{}</code>", esc(&r.display().to_string())))
                    .collect();
                let _ = write!(
                    body,
                    "<p class=\"note\">No deployments in {}.</p>",
                    roots.join(", ")
                );
                return page("Deployments", false, &body);
            }
            body.push_str(
                "<table><tr><th>Deployment</th><th>Group</th><th>Status</th><th>Started</th>\
                 <th>Duration</th><th>Revision</th><th>Log</th></tr>",
            );
            for d in &list {
                let log = if plain_id(&d.id) {
                    format!("<a href=\"/deployments/{}/log\">log</a>", esc(&d.id))
                } else {
                    String::new()
                };
                let _ = write!(
                    body,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                     <td>{}{}</td><td>{log}</td></tr>",
                    esc(&d.id),
                    esc(&d.group),
                    badge(status_word(d.status)),
                    esc(&d.started),
                    duration(d.duration_ms),
                    esc(&d.revision),
                    d.rollback_of
                        .as_deref()
                        .map(|r| format!(" (rollback of {})", esc(r)))
                        .unwrap_or_default(),
                );
            }
            body.push_str("</table>");
            let running = list.iter().any(|d| d.status == Status::InProgress);
            page("Deployments", running, &body)
        })
    })
    .await
}

/// A deployment named by an action's record: a link to its log when the id can be one.
pub(super) fn link(id: &str) -> String {
    if plain_id(id) {
        format!(
            "deployment <a href=\"/deployments/{id}/log\"><code>{id}</code></a>",
            id = esc(id)
        )
    } else {
        format!("deployment <code>{}</code>", esc(id))
    }
}

/// Whether `id` can be a deployment id in a URL: letters, digits and `-`.
fn plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `GET /deployments/{id}/log`: the hook scripts' log of a deployment, reloading while it runs.
pub async fn log(State(server): State<Server>, Path(id): Path<String>, uri: Uri) -> Response {
    super::blocking(move || {
        if !plain_id(&id) {
            return error(StatusCode::NOT_FOUND, "There is no such deployment.");
        }
        let Some(d) = all(&server).into_iter().find(|d| d.id == id) else {
            return error(StatusCode::NOT_FOUND, "There is no such deployment.");
        };
        let log = d.dir.join("logs/scripts.log");
        if super::wants_text(uri.query()) {
            let roots = server.log_roots();
            return super::logs::text(&log, &roots, move || {
                all(&server)
                    .iter()
                    .any(|d| d.id == id && d.status == Status::InProgress)
            });
        }
        let context = format!(
            "<p><a href=\"/deployments\">Deployments</a> › {} › <code>{}</code> {}</p>",
            esc(&d.group),
            esc(&d.id),
            badge(status_word(d.status))
        );
        Html(super::logs::log_page(
            &format!("{} deployment {}", d.group, d.id),
            &context,
            &log,
            &server.log_roots(),
            d.status == Status::InProgress,
        ))
        .into_response()
    })
    .await
}
