//! The pipeline pages: the pipelines, one pipeline's executions, one execution as the console shows
//! it (stages left to right, actions in them), an action's log, and the answer to an approval.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::html::{badge, duration, esc, external_link, page, status_class, time};
use super::{Server, error, guard, respond, see_other, wants_json};
use crate::pipeline::record::{
    ActionRecord, Decision, Execution, RecordError, Status, now_ms, safe_name,
};

/// `GET /`: every pipeline with executions, and its latest one.
pub async fn index(State(server): State<Server>, headers: HeaderMap, uri: Uri) -> Response {
    super::blocking(move || {
        let records = server.records();
        let list: Vec<(String, Option<Execution>)> = records
            .pipelines()
            .into_iter()
            .map(|name| {
                let latest = records.executions(&name).into_iter().next();
                (name, latest)
            })
            .collect();
        let json: Vec<serde_json::Value> = list
            .iter()
            .map(|(name, latest)| serde_json::json!({ "name": name, "latest": latest }))
            .collect();
        respond(wants_json(&headers, uri.query()), json, || {
            let mut body = String::from("<h1>Pipelines</h1>");
            if list.is_empty() {
                let _ = write!(
                    body,
                    "<p class=\"note\">No pipeline has run yet (kiln keeps executions in <code>{}</code>).</p>",
                    esc(&server
                        .config
                        .state_dir
                        .join("pipelines")
                        .display()
                        .to_string())
                );
            } else {
                body.push_str(
                    "<table><tr><th>Pipeline</th><th>Latest execution</th><th>Status</th>\
                     <th>Source revision</th><th>Started</th><th>Duration</th></tr>",
                );
                for (name, latest) in &list {
                    let _ = write!(
                        body,
                        "<tr><td><a href=\"/pipelines/{n}\">{n}</a></td>",
                        n = esc(name)
                    );
                    match latest {
                        Some(e) => body.push_str(&execution_cells(name, e)),
                        None => body.push_str("<td colspan=\"5\" class=\"note\">none readable</td>"),
                    }
                    body.push_str("</tr>");
                }
                body.push_str("</table>");
            }
            let running = list
                .iter()
                .any(|(_, e)| e.as_ref().is_some_and(|e| !e.status.is_final()));
            page("Pipelines", running, &body)
        })
    })
    .await
}

/// How many executions a pipeline's page lists.
const SHOWN: usize = 100;

/// `GET /pipelines/{name}`: its executions, newest first, and the latest one's stages.
pub async fn pipeline(
    State(server): State<Server>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    super::blocking(move || {
        if !safe_name(&name) {
            return error(StatusCode::NOT_FOUND, "There is no pipeline of that name.");
        }
        let executions = server.records().executions(&name);
        if executions.is_empty() {
            return error(
                StatusCode::NOT_FOUND,
                &format!("The pipeline {name} has no executions."),
            );
        }
        let authorized = server.authorized(&headers);
        respond(wants_json(&headers, uri.query()), &executions, || {
            let mut body = format!("<h1>{}</h1>", esc(&name));
            let mut refresh = false;
            if let Some(latest) = executions.first() {
                let (stages, form) = stages_html(&server, &name, latest, authorized);
                refresh = !latest.status.is_final() && !form;
                let _ = write!(
                    body,
                    "<h2>Latest execution <a href=\"{}\"><code>{}</code></a> {}</h2>{stages}",
                    execution_url(&name, &latest.id),
                    esc(short(&latest.id)),
                    badge(latest.status.as_str())
                );
            }
            body.push_str(
                "<h2>Executions</h2><table><tr><th>Execution</th><th>Status</th><th>Trigger</th>\
                 <th>Source revision</th><th>Started</th><th>Duration</th></tr>",
            );
            for e in executions.iter().take(SHOWN) {
                let _ = write!(
                    body,
                    "<tr><td><a href=\"{}\"><code>{}</code></a></td><td>{}</td><td>{}<br><span class=\"note\">{}</span></td>\
                     <td>{}</td><td>{}</td><td>{}</td></tr>",
                    execution_url(&name, &e.id),
                    esc(short(&e.id)),
                    badge(e.status.as_str()),
                    esc(&e.trigger.trigger_type),
                    esc(&e.trigger.trigger_detail),
                    source_revision(e),
                    esc(&time(e.started_ms)),
                    esc(&execution_duration(e)),
                );
            }
            body.push_str("</table>");
            page(&name, refresh, &body)
        })
    })
    .await
}

/// `GET /pipelines/{name}/executions/{id}`: the execution as the console shows it.
pub async fn execution(
    State(server): State<Server>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    super::blocking(move || {
        let execution = match load(&server, &name, &id) {
            Ok(e) => e,
            Err(response) => return *response,
        };
        let authorized = server.authorized(&headers);
        respond(wants_json(&headers, uri.query()), &execution, || {
            execution_page(&server, &name, &execution, authorized)
        })
    })
    .await
}

fn execution_page(server: &Server, name: &str, e: &Execution, authorized: bool) -> String {
    let (stages, form) = stages_html(server, name, e, authorized);
    let mut body = format!(
        "<h1><a href=\"/pipelines/{n}\">{n}</a> › <code>{}</code> {}</h1>",
        esc(short(&e.id)),
        badge(e.status.as_str()),
        n = esc(name),
    );
    body.push_str("<dl class=\"facts\">");
    let mut fact = |k: &str, v: String| {
        let _ = write!(body, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    };
    fact(
        "Execution",
        format!("<code>{}</code> (#{})", esc(&e.id), e.sequence),
    );
    if let Some(summary) = &e.status_summary {
        fact("Summary", esc(summary));
    }
    fact(
        "Trigger",
        format!(
            "{} <span class=\"note\">{}</span>",
            esc(&e.trigger.trigger_type),
            esc(&e.trigger.trigger_detail)
        ),
    );
    fact("Source revision", source_revision(e));
    fact("Started", esc(&time(e.started_ms)));
    fact("Duration", esc(&execution_duration(e)));
    fact("Mode", esc(e.definition.execution_mode.as_str()));
    if let Some(stage) = &e.waiting_for {
        fact(
            "Waiting",
            format!("to enter {} (another execution is in it)", esc(stage)),
        );
    }
    body.push_str("</dl>");
    body.push_str(&stages);
    let refresh = !e.status.is_final() && !form;
    if !e.status.is_final() && refresh {
        body.push_str(
            "<p class=\"note\">In progress: this page reloads itself every 2 seconds.</p>",
        );
    }
    page(&format!("{name} {}", short(&e.id)), refresh, &body)
}

/// The stages, left to right, and whether an approval form is on them (a page that holds one does
/// not reload itself: a comment being typed would be lost).
fn stages_html(server: &Server, name: &str, e: &Execution, authorized: bool) -> (String, bool) {
    let mut out = String::from("<div class=\"stages\">");
    let mut form = false;
    for (s, stage) in e.stages.iter().enumerate() {
        if s > 0 {
            out.push_str("<div class=\"arrow\" aria-hidden=\"true\">→</div>");
        }
        let _ = write!(
            out,
            "<section class=\"stage {}\" data-stage=\"{}\"><h2>{}</h2>{}",
            status_class(stage.status.as_str()),
            esc(&stage.name),
            esc(&stage.name),
            badge(stage.status.as_str())
        );
        for (a, action) in stage.actions.iter().enumerate() {
            let provider = e
                .definition
                .stages
                .get(s)
                .and_then(|d| d.actions.iter().find(|x| x.name == action.name))
                .map(|d| d.action_type_id.provider.clone())
                .unwrap_or_default();
            let _ = write!(
                out,
                "<div class=\"action {}\" data-action=\"{}\"><div class=\"name\">{}</div>\
                 <div class=\"meta\">{} {} {}</div>",
                status_class(action.status.as_str()),
                esc(&action.name),
                esc(&action.name),
                esc(&provider),
                badge(action.status.as_str()),
                esc(&action_duration(action)),
            );
            let mut links = Vec::new();
            if action.log.is_some() {
                links.push(format!(
                    "<a href=\"{}/logs/{s}/{a}\">log</a>",
                    execution_url(name, &e.id)
                ));
            }
            if let Some(build) = &action.build_id {
                links.push(super::builds::link(&server.config.state_dir, build));
            }
            if let Some(deployment) = &action.deployment_id {
                links.push(super::deployments::link(deployment));
            }
            if !links.is_empty() {
                let _ = write!(out, "<div class=\"meta\">{}</div>", links.join(" · "));
            }
            if let Some(err) = &action.error {
                let _ = write!(out, "<div class=\"error\">{}</div>", esc(err));
            }
            if action.approval.is_some() {
                let (html, has_form) = approval_html(server, name, e, s, a, action, authorized);
                out.push_str(&html);
                form |= has_form;
            }
            out.push_str("</div>");
        }
        out.push_str("</section>");
    }
    out.push_str("</div>");
    (out, form)
}

/// A manual approval's box: what it asks, its answer, or the form to give one.
fn approval_html(
    server: &Server,
    name: &str,
    e: &Execution,
    s: usize,
    a: usize,
    action: &ActionRecord,
    authorized: bool,
) -> (String, bool) {
    let Some(approval) = &action.approval else {
        return (String::new(), false);
    };
    let mut out = String::from("<div class=\"approval\">");
    if let Some(data) = &approval.custom_data {
        let _ = write!(out, "<p class=\"custom\">{}</p>", esc(data));
    }
    if let Some(link) = &approval.external_entity_link {
        let _ = write!(out, "<p>Review: {}</p>", external_link(link));
    }
    let mut form = false;
    if let Some(d) = &approval.decision {
        out.push_str(&decision_html(d, ""));
    } else if let Some(d) = server.records().approval_answer(name, &e.id, s, a) {
        out.push_str(&decision_html(
            &d,
            " The execution takes the answer in a moment.",
        ));
    } else if action.status == Status::InProgress {
        if authorized {
            form = true;
            let _ = write!(
                out,
                "<form method=\"post\" action=\"{}/approvals/{s}/{a}\">\
                 <input type=\"hidden\" name=\"token\" value=\"{}\">\
                 <label for=\"comment-{s}-{a}\">Comment</label>\
                 <textarea id=\"comment-{s}-{a}\" name=\"comment\" maxlength=\"2000\"></textarea>\
                 <button class=\"approve\" name=\"decision\" value=\"approve\">Approve</button>\
                 <button class=\"reject\" name=\"decision\" value=\"reject\">Reject</button></form>",
                execution_url(name, &e.id),
                esc(&server.config.token),
            );
        } else {
            out.push_str(
                "<p class=\"note waiting\">Waiting for approval. To approve or reject, open the \
                 address <code>kiln serve</code> printed (it carries the token), or run \
                 <code>kiln pipeline approve</code>.</p>",
            );
        }
        let _ = write!(
            out,
            "<p class=\"note\">Expires {}.</p>",
            esc(&time(approval.expires_ms))
        );
    }
    out.push_str("</div>");
    (out, form)
}

fn decision_html(d: &Decision, after: &str) -> String {
    let mut out = format!(
        "<p class=\"decision\"><strong>{}</strong> by {} at {}.{}</p>",
        if d.approved { "Approved" } else { "Rejected" },
        esc(&d.by),
        esc(&time(d.at_ms)),
        esc(after)
    );
    if !d.comment.is_empty() {
        let _ = write!(out, "<p class=\"custom\">“{}”</p>", esc(&d.comment));
    }
    out
}

/// What the approval form posts.
#[derive(Deserialize, Default)]
struct AnswerForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    decision: String,
}

/// The longest comment kept.
const COMMENT_MAX: usize = 2000;

/// `POST /pipelines/{name}/executions/{id}/approvals/{stage}/{action}`: answers a waiting
/// approval for its execution's driver, then back to the execution (303).
pub async fn answer(
    State(server): State<Server>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((name, id, s, a)): Path<(String, String, usize, usize)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    super::blocking(move || {
        let form: AnswerForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        if !server.authorized(&headers)
            || !guard::same(&form.token, &server.config.token)
            || !guard::same_origin(&headers)
        {
            return error(
                StatusCode::FORBIDDEN,
                "Answering an approval needs the token kiln serve printed: open the address it printed.",
            );
        }
        let approved = match form.decision.as_str() {
            "approve" => true,
            "reject" => false,
            _ => return error(StatusCode::BAD_REQUEST, "Approve or reject?"),
        };
        let execution = match load(&server, &name, &id) {
            Ok(e) => e,
            Err(response) => return *response,
        };
        let waiting = execution
            .stages
            .get(s)
            .and_then(|stage| stage.actions.get(a))
            .is_some_and(|action| {
                action.status == Status::InProgress
                    && action
                        .approval
                        .as_ref()
                        .is_some_and(|ap| ap.decision.is_none())
            });
        if !waiting {
            return error(
                StatusCode::CONFLICT,
                "That action is not an approval waiting for an answer.",
            );
        }
        let decision = Decision {
            approved,
            by: format!("web ({peer})"),
            comment: form.comment.chars().take(COMMENT_MAX).collect(),
            at_ms: now_ms(),
        };
        match server
            .records()
            .request_approval(&name, &execution.id, s, a, &decision)
        {
            Ok(()) => see_other(&execution_url(&name, &execution.id)),
            Err(RecordError::Refused(why)) => error(StatusCode::CONFLICT, &why),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    })
    .await
}

/// `GET /pipelines/{name}/executions/{id}/logs/{stage}/{action}`: the log the action's record
/// names, while it runs too.
pub async fn action_log(
    State(server): State<Server>,
    Path((name, id, s, a)): Path<(String, String, usize, usize)>,
    uri: Uri,
) -> Response {
    super::blocking(move || {
        let execution = match load(&server, &name, &id) {
            Ok(e) => e,
            Err(response) => return *response,
        };
        let Some((stage, action)) = execution
            .stages
            .get(s)
            .and_then(|st| Some((&st.name, st.actions.get(a)?)))
        else {
            return error(StatusCode::NOT_FOUND, "The execution has no such action.");
        };
        let Some(log) = &action.log else {
            return error(StatusCode::NOT_FOUND, "This action has no log.");
        };
        if super::wants_text(uri.query()) {
            let roots = server.log_roots();
            let (server, name, id) = (server.clone(), name.clone(), execution.id.clone());
            return super::logs::text(log, &roots, move || {
                server.records().load(&name, &id).is_ok_and(|e| {
                    e.stages
                        .get(s)
                        .and_then(|st| st.actions.get(a))
                        .is_some_and(|x| !x.status.is_final())
                })
            });
        }
        let context = format!(
            "<p><a href=\"{}\">{} <code>{}</code></a> › {} › {} {}</p>",
            execution_url(&name, &execution.id),
            esc(&name),
            esc(short(&execution.id)),
            esc(stage),
            esc(&action.name),
            badge(action.status.as_str())
        );
        super::Html(super::logs::log_page(
            &format!("{stage} / {}", action.name),
            &context,
            log,
            &server.log_roots(),
            !action.status.is_final(),
        ))
        .into_response()
    })
    .await
}

/// An execution of a pipeline, or the page that says why not.
fn load(server: &Server, name: &str, id: &str) -> Result<Execution, Box<Response>> {
    if !safe_name(name) {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "There is no pipeline of that name.",
        )));
    }
    server.records().load(name, id).map_err(|e| {
        Box::new(match e {
            RecordError::NotFound(_) => error(StatusCode::NOT_FOUND, "There is no such execution."),
            RecordError::Refused(why) => error(StatusCode::BAD_REQUEST, &why),
            e => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        })
    })
}

/// The cells of an execution in the pipelines table.
fn execution_cells(name: &str, e: &Execution) -> String {
    format!(
        "<td><a href=\"{}\"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        execution_url(name, &e.id),
        esc(short(&e.id)),
        badge(e.status.as_str()),
        source_revision(e),
        esc(&time(e.started_ms)),
        esc(&execution_duration(e))
    )
}

fn execution_url(name: &str, id: &str) -> String {
    format!("/pipelines/{}/executions/{}", esc(name), esc(id))
}

/// The start of an id, as the console shows it.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn source_revision(e: &Execution) -> String {
    let parts: Vec<String> = e
        .source_revisions
        .iter()
        .map(|r| {
            format!(
                "<code>{}</code> {}",
                esc(r.revision_id.get(..12).unwrap_or(&r.revision_id)),
                esc(&r.revision_summary)
            )
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("<br>")
    }
}

fn execution_duration(e: &Execution) -> String {
    let end = e.ended_ms.unwrap_or_else(now_ms);
    duration(end.saturating_sub(e.started_ms))
}

fn action_duration(a: &ActionRecord) -> String {
    match (a.started_ms, a.ended_ms) {
        (Some(start), Some(end)) => duration(end.saturating_sub(start)),
        (Some(start), None) if !a.status.is_final() => duration(now_ms().saturating_sub(start)),
        _ => String::new(),
    }
}
