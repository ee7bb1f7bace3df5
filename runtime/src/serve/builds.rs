//! The build pages: recent builds of every project, and a build's log.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::html::{badge, duration, esc, page, time};
use super::{Html, Server, error, respond, wants_json};
use crate::build::history;

/// How many builds the page lists.
const SHOWN: usize = 100;

/// `GET /builds`: the newest builds of every project.
pub async fn index(State(server): State<Server>, headers: HeaderMap, uri: Uri) -> Response {
    super::blocking(move || {
        let state = &server.config.state_dir;
        let mut list = history::list_all(state);
        list.truncate(SHOWN);
        let projects = history::projects(state);
        respond(wants_json(&headers, uri.query()), &list, || {
            let mut body = String::from("<h1>Builds</h1>");
            if list.is_empty() {
                let _ = write!(
                    body,
                    "<p class=\"note\">No builds yet (kiln keeps them in <code>{}</code>).</p>",
                    esc(&state.join("builds").display().to_string())
                );
                return page("Builds", false, &body);
            }
            let _ = write!(
                body,
                "<p class=\"note\">Projects: {}</p>",
                projects
                    .iter()
                    .map(|p| esc(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            body.push_str(
                "<table><tr><th>Project</th><th>Build</th><th>Status</th><th>Started</th>\
                 <th>Duration</th><th>Cache</th><th>Source version</th><th>Log</th></tr>",
            );
            for b in &list {
                let running = b.status == "IN_PROGRESS";
                let _ = write!(
                    body,
                    "<tr><td>{p}</td><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                     <td><code>{}</code></td><td><a href=\"/builds/{p}/{n}/log\">log</a></td></tr>",
                    badge(&b.status),
                    esc(&time(b.start_time)),
                    b.duration_ms.map(duration).unwrap_or_default(),
                    if running {
                        ""
                    } else if b.cache_hit {
                        "hit"
                    } else {
                        "miss"
                    },
                    esc(b
                        .source_version
                        .as_deref()
                        .map(|v| v.get(..12).unwrap_or(v))
                        .unwrap_or("")),
                    p = esc(&b.project),
                    n = b.build_number,
                );
            }
            body.push_str("</table>");
            let running = list.iter().any(|b| b.status == "IN_PROGRESS");
            page("Builds", running, &body)
        })
    })
    .await
}

/// A build named by an action's record (`project:uuid`): a link to its log when kiln has it.
pub(super) fn link(state: &std::path::Path, build_id: &str) -> String {
    let found = history::Which::parse(build_id)
        .ok()
        .filter(|w| matches!(w, history::Which::Id(_)))
        .and_then(|which| history::find(state, "", &which).ok());
    match (found, build_id.split_once(':')) {
        (Some((_, number)), Some((project, _))) => format!(
            "build <a href=\"/builds/{p}/{number}/log\" title=\"{id}\">{p} #{number}</a>",
            p = esc(project),
            id = esc(build_id)
        ),
        _ => format!("build <code>{}</code>", esc(build_id)),
    }
}

/// `GET /builds/{project}/{number}/log`: a build's log, reloading while the build runs.
pub async fn log(
    State(server): State<Server>,
    Path((project, number)): Path<(String, u64)>,
    uri: Uri,
) -> Response {
    super::blocking(move || {
        let state = &server.config.state_dir;
        // Only a project kiln lists: its name is a plain folder name of the state dir.
        if !history::projects(state).contains(&project) {
            return error(StatusCode::NOT_FOUND, "There is no project of that name.");
        }
        let records = history::records_dir(state, &project);
        let log = records.join(format!("{number}.log"));
        let running = !history::finished(&records, number);
        if super::wants_text(uri.query()) {
            return super::logs::text(&log, &server.log_roots(), move || {
                !history::finished(&records, number)
            });
        }
        let status = history::list(state, &project)
            .into_iter()
            .find(|b| b.build_number == number)
            .map(|b| b.status);
        let Some(status) = status else {
            return error(StatusCode::NOT_FOUND, "The project has no such build.");
        };
        let context = format!(
            "<p><a href=\"/builds\">Builds</a> › {} › {number} {}</p>",
            esc(&project),
            badge(&status)
        );
        Html(super::logs::log_page(
            &format!("{project} build {number}"),
            &context,
            &log,
            &server.log_roots(),
            running,
        ))
        .into_response()
    })
    .await
}
