//! The server's requests answered in process (no socket): what each page shows, and what it refuses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::{Config, router};
use crate::pipeline::record::{
    ActionRecord, ApprovalRecord, Execution, Records, StageRecord, Status, Trigger,
};

const ADDR: &str = "127.0.0.1:4321";
const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const ID: &str = "6f1e2d3c-0000-4000-8000-00000000abcd";

/// A state dir holding one execution of `web` waiting at its Approval stage, its Build stage named
/// `<script>alert(1)</script>`, and its build action's log at `log`.
fn fixture(log: Option<PathBuf>) -> (tempfile::TempDir, Execution) {
    let state = tempfile::tempdir().expect("temp dir");
    let definition = serde_json::from_value(serde_json::json!({
        "name": "web",
        "stages": [
            {"name": "<script>alert(1)</script>", "actions": [{"name": "Compile",
                "actionTypeId": {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"}}]},
            {"name": "Approval", "actions": [{"name": "Ship it?",
                "actionTypeId": {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"}}]}
        ]
    }))
    .expect("pipeline");
    let mut compile = ActionRecord::pending("Compile", 1);
    compile.status = Status::Succeeded;
    compile.started_ms = Some(1_000);
    compile.ended_ms = Some(3_500);
    compile.log = log;
    let mut approve = ActionRecord::pending("Ship it?", 1);
    approve.status = Status::InProgress;
    approve.started_ms = Some(4_000);
    approve.approval = Some(ApprovalRecord {
        custom_data: Some("<img src=x onerror=alert(2)>".into()),
        external_entity_link: Some("javascript:alert(3)".into()),
        expires_ms: u64::MAX / 4,
        decision: None,
    });
    let execution = Execution {
        id: ID.into(),
        pipeline: "web".into(),
        sequence: 1,
        status: Status::InProgress,
        status_summary: None,
        trigger: Trigger {
            trigger_type: "StartPipelineExecution".into(),
            trigger_detail: "tester".into(),
        },
        started_ms: 1_000,
        ended_ms: None,
        file: "pipeline.json".into(),
        definition,
        project_dir: ".".into(),
        variables: Default::default(),
        source_revisions: Vec::new(),
        pending_revisions: Default::default(),
        waiting_for: None,
        stages: vec![
            StageRecord {
                name: "<script>alert(1)</script>".into(),
                status: Status::Succeeded,
                actions: vec![compile],
            },
            StageRecord {
                name: "Approval".into(),
                status: Status::InProgress,
                actions: vec![approve],
            },
        ],
    };
    Records::new(state.path()).save(&execution).expect("save");
    (state, execution)
}

fn config(state: &Path) -> Config {
    Config {
        state_dir: state.to_path_buf(),
        deployment_roots: vec![state.join("deployment-root")],
        token: TOKEN.into(),
    }
}

/// Sends a request built by `build` (Host and peer filled in) and gives the status, the headers and
/// the body.
async fn send(
    state: &Path,
    build: impl FnOnce(axum::http::request::Builder) -> axum::http::request::Builder,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let addr: SocketAddr = ADDR.parse().expect("addr");
    let mut request = build(Request::builder().header(header::HOST, ADDR))
        .body(Body::from(body.to_string()))
        .expect("request");
    request.extensions_mut().insert(ConnectInfo::<SocketAddr>(
        "127.0.0.1:5555".parse().expect("peer"),
    ));
    let response = router(config(state), addr)
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body");
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn get(state: &Path, uri: &str, cookie: bool) -> (StatusCode, String) {
    let (status, _, body) = send(
        state,
        |b| {
            let b = b.uri(uri);
            if cookie {
                b.header(header::COOKIE, format!("kiln_token_4321={TOKEN}"))
            } else {
                b
            }
        },
        "",
    )
    .await;
    (status, body)
}

async fn post_answer(state: &Path, cookie: Option<&str>, form: &str) -> (StatusCode, String) {
    let (status, headers, body) = send(
        state,
        |b| {
            let b = b
                .method("POST")
                .uri(format!("/pipelines/web/executions/{ID}/approvals/1/0"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            match cookie {
                Some(c) => b.header(header::COOKIE, format!("kiln_token_4321={c}")),
                None => b,
            }
        },
        form,
    )
    .await;
    let location = headers
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (
        status,
        if status == StatusCode::SEE_OTHER {
            location
        } else {
            body
        },
    )
}

fn request_file(state: &Path) -> PathBuf {
    Records::new(state)
        .execution_dir("web", ID)
        .expect("dir")
        .join("approval-1-0.json")
}

#[tokio::test]
async fn a_stage_named_script_is_shown_escaped() {
    let (state, _) = fixture(None);
    let (status, body) = get(
        state.path(),
        &format!("/pipelines/web/executions/{ID}"),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(body.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(!body.contains("<img"));
    assert!(!body.contains("href=\"javascript:"), "{body}");
    assert!(body.contains("Ship it?"));
    assert!(body.contains("CodeBuild"));
    let (_, list) = get(state.path(), "/pipelines/web", false).await;
    assert!(!list.contains("<script>alert"));
    assert!(list.contains("Ship it?"));
}

#[tokio::test]
async fn the_buttons_need_the_token_cookie() {
    let (state, _) = fixture(None);
    let url = format!("/pipelines/web/executions/{ID}");
    let (_, with) = get(state.path(), &url, true).await;
    assert!(with.contains("Approve</button>"), "{with}");
    assert!(with.contains(TOKEN));
    let (_, without) = get(state.path(), &url, false).await;
    assert!(!without.contains("<button"), "{without}");
    assert!(!without.contains(TOKEN));
    assert!(without.contains("open the address"));
}

#[tokio::test]
async fn the_token_in_the_address_becomes_a_strict_cookie() {
    let (state, _) = fixture(None);
    let (status, headers, _) = send(
        state.path(),
        |b| b.uri(format!("/pipelines/web?token={TOKEN}")),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/pipelines/web");
    let cookie = headers[header::SET_COOKIE].to_str().expect("ascii");
    assert!(cookie.starts_with(&format!("kiln_token_4321={TOKEN};")));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let (status, _, _) = send(state.path(), |b| b.uri("/?token=guess"), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_answer_without_the_token_is_forbidden() {
    let (state, _) = fixture(None);
    let form = format!("token={TOKEN}&decision=approve&comment=ok");
    assert_eq!(
        post_answer(state.path(), None, &form).await.0,
        StatusCode::FORBIDDEN
    );
    let wrong = "token=guess&decision=approve";
    assert_eq!(
        post_answer(state.path(), Some(TOKEN), wrong).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post_answer(state.path(), Some("guess"), &form).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post_answer(state.path(), Some(TOKEN), "decision=approve")
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert!(!request_file(state.path()).exists());
}

#[tokio::test]
async fn an_answer_with_the_token_is_written_for_the_driver() {
    let (state, _) = fixture(None);
    let form = format!("token={TOKEN}&decision=approve&comment=looks+%3Cgood%3E");
    let (status, location) = post_answer(state.path(), Some(TOKEN), &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, format!("/pipelines/web/executions/{ID}"));
    let answer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(request_file(state.path())).expect("request file"))
            .expect("json");
    assert_eq!(answer["approved"], true);
    assert_eq!(answer["comment"], "looks <good>");
    assert_eq!(answer["by"], "web (127.0.0.1:5555)");
    // The page shows the answer, escaped, and no buttons any more.
    let (_, body) = get(state.path(), &location, true).await;
    assert!(body.contains("Approved</strong>"), "{body}");
    assert!(body.contains("looks &lt;good&gt;"));
    assert!(!body.contains("<button"));
    // A second answer is refused.
    let (status, _) = post_answer(
        state.path(),
        Some(TOKEN),
        &form.replace("approve", "reject"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_forged_log_path_outside_the_state_dir_is_refused() {
    let outside = tempfile::tempdir().expect("temp dir");
    let secret = outside.path().join("shadow");
    std::fs::write(&secret, "root:secret-hash").expect("write");
    let (state, _) = fixture(Some(secret));
    let (status, body) = get(
        state.path(),
        &format!("/pipelines/web/executions/{ID}/logs/0/0"),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("secret-hash"), "{body}");
    assert!(body.contains("outside kiln"), "{body}");
    let (state, _) = fixture(Some("/etc/shadow".into()));
    let (_, body) = get(
        state.path(),
        &format!("/pipelines/web/executions/{ID}/logs/0/0"),
        true,
    )
    .await;
    assert!(!body.contains("root:"), "{body}");
}

#[tokio::test]
async fn an_actions_log_inside_the_state_dir_is_shown_escaped() {
    let (state, _) = fixture(None);
    let log = Records::new(state.path())
        .execution_dir("web", ID)
        .expect("dir")
        .join("compile.log");
    std::fs::create_dir_all(log.parent().expect("parent")).expect("mkdir");
    std::fs::write(&log, "building <b>now</b>\n").expect("write");
    let (_, execution) = fixture(Some(log.clone()));
    Records::new(state.path()).save(&execution).expect("save");
    let (status, body) = get(
        state.path(),
        &format!("/pipelines/web/executions/{ID}/logs/0/0"),
        false,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("building &lt;b&gt;now&lt;/b&gt;"), "{body}");
}

#[tokio::test]
async fn a_foreign_host_is_refused() {
    let (state, _) = fixture(None);
    let (status, _, body) = send(
        state.path(),
        |mut b| {
            if let Some(h) = b.headers_mut() {
                h.insert(header::HOST, "rebind.example:4321".parse().expect("value"));
            }
            b.uri("/")
        },
        "",
    )
    .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert!(!body.contains("/pipelines/web"), "{body}");
    let (status, _, _) = send(
        state.path(),
        |b| b.uri("/").header(header::HOST, "localhost:4321"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "two Host headers");
}

#[tokio::test]
async fn names_that_could_leave_the_state_dir_are_not_found() {
    let (state, _) = fixture(None);
    for uri in [
        "/pipelines/..".to_string(),
        format!("/pipelines/%2E%2E/executions/{ID}"),
        "/pipelines/web/executions/..%2F..%2Fx".to_string(),
        "/builds/..%2F..%2Fetc/1/log".to_string(),
        "/deployments/..%2Fx/log".to_string(),
    ] {
        let (status, _) = get(state.path(), &uri, true).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn every_page_is_also_json() {
    let (state, _) = fixture(None);
    let (status, body) = get(
        state.path(),
        &format!("/pipelines/web/executions/{ID}?format=json"),
        false,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let value: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(value["id"], ID);
    let (_, body) = get(state.path(), "/?format=json", false).await;
    let value: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(value[0]["name"], "web");
    assert_eq!(value[0]["latest"]["status"], "InProgress");
    for uri in [
        "/builds?format=json",
        "/deployments?format=json",
        "/pipelines/web?format=json",
    ] {
        let (status, body) = get(state.path(), uri, false).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&body).is_ok(),
            "{uri}: {body}"
        );
    }
}

/// Writes build `number` of `project` (its record when `status` is given, else it runs).
fn build(state: &Path, project: &str, number: u64, status: Option<&str>, log: &str) {
    let dir = state.join("builds").join(project);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(format!("{number}.log")), log).expect("log");
    if let Some(status) = status {
        let record = serde_json::json!({"build_id": format!("{project}:00000000-0000-4000-8000-000000000001"),
            "status": status, "start_time": 1_000, "duration_ms": 2_500, "cache": {"hit": true}});
        std::fs::write(dir.join(format!("{number}.json")), record.to_string()).expect("record");
    }
}

#[tokio::test]
async fn builds_are_listed_with_their_logs_and_a_running_one_reloads() {
    let (state, _) = fixture(None);
    build(state.path(), "app", 1, Some("SUCCEEDED"), "ok <b>\n");
    build(state.path(), "app", 2, None, "still going\n");
    let (status, body) = get(state.path(), "/builds", false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("/builds/app/1/log") && body.contains("/builds/app/2/log"),
        "{body}"
    );
    assert!(body.contains("SUCCEEDED") && body.contains("IN_PROGRESS"));
    let (_, done) = get(state.path(), "/builds/app/1/log", false).await;
    assert!(done.contains("ok &lt;b&gt;"), "{done}");
    assert!(!done.contains("http-equiv=\"refresh\""));
    let (_, running) = get(state.path(), "/builds/app/2/log", false).await;
    assert!(running.contains("still going"));
    assert!(running.contains("http-equiv=\"refresh\" content=\"2\""));
    let (status, _) = get(state.path(), "/builds/app/3/log", false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Writes a deployment record of group `web` under the fixture's deployment root, its folder
/// `dir`.
fn deployment(state: &Path, id: &str, dir: &Path) {
    let root = state.join("deployment-root");
    let records = root
        .join("deployment-records")
        .join(crate::deploy::group_id("web"));
    std::fs::create_dir_all(&records).expect("mkdir");
    let record = serde_json::json!({"id": id, "group": "web", "group_id": crate::deploy::group_id("web"),
        "application": "web", "revision": "file:///r/app.zip", "digest": null, "status": "Succeeded",
        "rollback_of": null, "rolled_back_by": null, "started": "2026-11-28T01:00:00Z",
        "duration_ms": 1200, "events": [], "error": null, "dir": dir});
    std::fs::write(records.join(format!("{id}.json")), record.to_string()).expect("record");
}

#[tokio::test]
async fn deployments_are_listed_and_a_forged_folder_is_not_read() {
    let (state, _) = fixture(None);
    let dir = state.path().join("deployment-root/g/d-GOOD00001");
    std::fs::create_dir_all(dir.join("logs")).expect("mkdir");
    std::fs::write(dir.join("logs/scripts.log"), "ApplicationStart: <ok>\n").expect("log");
    deployment(state.path(), "d-GOOD00001", &dir);
    let outside = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(outside.path().join("logs")).expect("mkdir");
    std::fs::write(outside.path().join("logs/scripts.log"), "not-yours").expect("log");
    deployment(state.path(), "d-FORGED001", outside.path());
    let (status, body) = get(state.path(), "/deployments", false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("/deployments/d-GOOD00001/log"), "{body}");
    let (_, good) = get(state.path(), "/deployments/d-GOOD00001/log", false).await;
    assert!(good.contains("ApplicationStart: &lt;ok&gt;"), "{good}");
    let (_, forged) = get(state.path(), "/deployments/d-FORGED001/log", false).await;
    assert!(!forged.contains("not-yours"), "{forged}");
    assert!(forged.contains("outside kiln"));
}

#[tokio::test]
async fn no_script_but_kiln_s_own_may_run_on_a_page() {
    let (state, _) = fixture(None);
    let (_, headers, _) = send(state.path(), |b| b.uri("/"), "").await;
    let policy = headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ascii");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'sha256-"), "{policy}");
    assert!(!policy.contains("script-src 'unsafe-inline'"), "{policy}");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
}

#[tokio::test]
async fn an_action_s_build_links_to_the_build_s_log() {
    let (state, mut execution) = fixture(None);
    build(state.path(), "app", 1, Some("SUCCEEDED"), "ok\n");
    execution.stages[0].actions[0].build_id =
        Some("app:00000000-0000-4000-8000-000000000001".into());
    execution.stages[1].actions[0].deployment_id = Some("d-ABCDEF123".into());
    Records::new(state.path()).save(&execution).expect("save");
    let (_, body) = get(
        state.path(),
        &format!("/pipelines/web/executions/{ID}"),
        false,
    )
    .await;
    assert!(body.contains("href=\"/builds/app/1/log\""), "{body}");
    assert!(
        body.contains("href=\"/deployments/d-ABCDEF123/log\""),
        "{body}"
    );
}

#[tokio::test]
async fn a_running_build_s_log_as_text_follows_it_until_the_build_ends() {
    let (state, _) = fixture(None);
    build(state.path(), "app", 1, None, "first <line>\n");
    let dir = state.path().join("builds/app");
    let finish = {
        let dir = dir.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.join("1.log"))
                .expect("log");
            std::io::Write::write_all(&mut log, b"Build 1: SUCCEEDED\n").expect("append");
            std::fs::write(
                dir.join("1.json"),
                r#"{"build_id":"app:1","status":"SUCCEEDED"}"#,
            )
            .expect("record");
        })
    };
    let (status, headers, body) =
        send(state.path(), |b| b.uri("/builds/app/1/log?format=text"), "").await;
    finish.await.expect("writer");
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/plain"))
    );
    assert_eq!(body, "first <line>\nBuild 1: SUCCEEDED\n");
}

#[tokio::test]
async fn a_forged_log_path_is_refused_as_text_too() {
    let outside = tempfile::tempdir().expect("temp dir");
    let secret = outside.path().join("shadow");
    std::fs::write(&secret, "root:secret-hash").expect("write");
    let (state, _) = fixture(Some(secret));
    let (status, body) = get(
        state.path(),
        &format!("/pipelines/web/executions/{ID}/logs/0/0?format=text"),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.contains("secret-hash"));
}
