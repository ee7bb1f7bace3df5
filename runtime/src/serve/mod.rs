//! `kiln serve`: the web page over pipelines, builds and deployments, as the CodePipeline console
//! shows them: stages left to right, each action with its status, duration and log, and
//! Approve/Reject on a waiting manual approval.
//!
//! The pages are made on the server from the records in the state dir (no JavaScript is needed;
//! pages with something running reload themselves every 2 s), and each is also JSON with
//! `?format=json` or `Accept: application/json`. The server only reads records, except for one
//! thing: an approval's answer, written as the request file the execution's driver waits for
//! ([`crate::pipeline::record::Records::request_approval`]); the driver acts on it and records it.
//!
//! What keeps it safe to run (see [`guard`] and [`logs`]): every record value is escaped; the Host
//! header must name the server; answering an approval needs the token printed at start; a log is
//! read only from inside the folders kiln writes logs to.
//!
//! Routes:
//!
//! A log page is also plain text with `?format=text`, streamed as the log grows while its work
//! runs (as `tail -f`, for `curl -N`).
//!
//! ```text
//! GET  /                                             pipelines, each with its latest execution
//! GET  /pipelines/{name}                             its executions, and the latest's stages
//! GET  /pipelines/{name}/executions/{id}             one execution's stages and actions
//! POST /pipelines/{name}/executions/{id}/approvals/{stage}/{action}   approve or reject
//! GET  /pipelines/{name}/executions/{id}/logs/{stage}/{action}        an action's log
//! GET  /builds                                       recent builds of every project
//! GET  /builds/{project}/{number}/log                a build's log
//! GET  /deployments                                  recent deployments of every root
//! GET  /deployments/{id}/log                         a deployment's hook scripts' log
//! ```

mod builds;
mod deployments;
pub mod guard;
pub mod html;
pub mod logs;
mod pipelines;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use guard::new_token;

/// What a server shows and who may answer approvals.
#[derive(Debug, Clone)]
pub struct Config {
    /// kiln's state dir: build records and logs, pipeline executions.
    pub state_dir: PathBuf,
    /// The deployment roots whose deployments are shown (and whose logs may be read).
    pub deployment_roots: Vec<PathBuf>,
    /// The token that answering an approval needs.
    pub token: String,
}

/// The state every handler shares.
#[derive(Debug, Clone)]
struct Server {
    config: Arc<Config>,
    /// The address the listener is bound to: the Host header must name it.
    addr: SocketAddr,
}

impl Server {
    /// The folders whose files may be shown as logs.
    fn log_roots(&self) -> Vec<PathBuf> {
        let mut roots = vec![
            self.config.state_dir.join("builds"),
            self.config.state_dir.join("pipelines"),
        ];
        roots.extend(self.config.deployment_roots.iter().cloned());
        roots
    }

    fn records(&self) -> crate::pipeline::record::Records {
        crate::pipeline::record::Records::new(&self.config.state_dir)
    }

    /// Whether the request carries the token in its cookie.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        guard::has_token(headers, self.addr, &self.config.token)
    }
}

/// The application for a listener bound to `addr`.
pub fn router(config: Config, addr: SocketAddr) -> Router {
    let server = Server {
        config: Arc::new(config),
        addr,
    };
    Router::new()
        .route("/", get(pipelines::index))
        .route("/pipelines/{name}", get(pipelines::pipeline))
        .route(
            "/pipelines/{name}/executions/{id}",
            get(pipelines::execution),
        )
        .route(
            "/pipelines/{name}/executions/{id}/approvals/{stage}/{action}",
            post(pipelines::answer),
        )
        .route(
            "/pipelines/{name}/executions/{id}/logs/{stage}/{action}",
            get(pipelines::action_log),
        )
        .route("/builds", get(builds::index))
        .route("/builds/{project}/{number}/log", get(builds::log))
        .route("/deployments", get(deployments::index))
        .route("/deployments/{id}/log", get(deployments::log))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(server.clone(), gate))
        .with_state(server)
}

/// Serves on `listener` until `shutdown` completes, then lets requests under way finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let app = router(config, addr).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Before every handler: refuses a Host that is not this server's, and trades a `?token=` in the
/// address for the cookie.
async fn gate(State(server): State<Server>, request: Request, next: Next) -> Response {
    if !guard::host_allowed(request.headers(), server.addr) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "This server answers to its own address or localhost only.",
        );
    }
    let given = request.uri().query().and_then(|q| {
        url_pairs(q)
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    });
    if let Some(given) = given {
        if !guard::same(&given, &server.config.token) {
            return error(
                StatusCode::FORBIDDEN,
                "This token is not the one kiln serve printed.",
            );
        }
        let rest: Vec<(String, String)> = request
            .uri()
            .query()
            .map(url_pairs)
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k != "token")
            .collect();
        let mut location = request.uri().path().to_string();
        if !rest.is_empty() {
            location.push('?');
            location.push_str(&encode_pairs(&rest));
        }
        let mut response = see_other(&location);
        if let Ok(cookie) = HeaderValue::from_str(&guard::set_cookie(server.addr, &given)) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        return response;
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(policy) = HeaderValue::from_str(content_security_policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What a page may load and run: its inline CSS, kiln's one script (by its hash), forms posted to
/// this server; nothing from elsewhere. Were a record's value ever to slip through unescaped, a
/// script in it would still not run.
fn content_security_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(logs::FOLLOW_SCRIPT.as_bytes()));
        format!(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

/// Runs a page's work (reading records and logs: file system calls that may be slow) on a thread
/// where blocking is fine, not on one of the runtime's few.
async fn blocking(page: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(page).await.unwrap_or_else(|_| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "kiln serve failed to make this page.",
        )
    })
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "There is no such page.")
}

/// A page saying what went wrong, with its status.
fn error(status: StatusCode, message: &str) -> Response {
    let body = html::page(
        status.canonical_reason().unwrap_or("Error"),
        false,
        &format!(
            "<h1>{}</h1><p>{}</p><p><a href=\"/\">Pipelines</a></p>",
            status.as_u16(),
            html::esc(message)
        ),
    );
    (status, Html(body)).into_response()
}

/// A redirect that a browser follows with GET (after a POST too).
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// An HTML body.
struct Html(String);

impl IntoResponse for Html {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], self.0).into_response()
    }
}

/// Whether the client asked for JSON: `?format=json` or an Accept header that prefers it.
fn wants_json(headers: &HeaderMap, query: Option<&str>) -> bool {
    let by_query = query
        .map(url_pairs)
        .unwrap_or_default()
        .iter()
        .any(|(k, v)| k == "format" && v == "json");
    let by_accept = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.trim_start().starts_with("application/json"));
    by_query || by_accept
}

/// Whether a log is asked for as plain text: `?format=text`.
fn wants_text(query: Option<&str>) -> bool {
    query
        .map(url_pairs)
        .unwrap_or_default()
        .iter()
        .any(|(k, v)| k == "format" && v == "text")
}

/// A page as HTML, or its data as JSON when asked.
fn respond(json: bool, data: impl serde::Serialize, html: impl FnOnce() -> String) -> Response {
    if json {
        axum::Json(data).into_response()
    } else {
        Html(html()).into_response()
    }
}

/// The pairs of a query string, decoded.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default()
}

fn encode_pairs(pairs: &[(String, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

#[cfg(test)]
mod tests;
