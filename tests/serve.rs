//! `kiln serve`: the pages over a state dir holding an execution that waits at a manual approval,
//! driven as a user does (a real headless Chromium for the approval), and what the server refuses.

use std::path::{Path, PathBuf};

use kiln::pipeline::record::{
    ActionRecord, ApprovalRecord, Execution, Records, SourceRevision, StageRecord, Status, Trigger,
};

use crate::support::browser::{Browser, screenshot_path};
use crate::support::serve::Serve;

const ID: &str = "3f6c2a1e-7b4d-4c8e-9a10-5d2e8f7b9c01";

/// A state dir holding one execution of `hello-web` (Source → Build → Approval → Deploy) waiting at
/// its manual approval; the build action's log is `build_log` when given, else a log of its own.
fn waiting_execution(build_log: Option<PathBuf>) -> tempfile::TempDir {
    let state = tempfile::tempdir().expect("temp dir");
    let records = Records::new(state.path());
    let action = |category: &str, provider: &str, name: &str| {
        serde_json::json!({"name": name, "actionTypeId":
            {"category": category, "owner": "AWS", "provider": provider, "version": "1"}})
    };
    let definition = serde_json::from_value(serde_json::json!({
        "name": "hello-web",
        "stages": [
            {"name": "Source", "actions": [action("Source", "CodeCommit", "Checkout")]},
            {"name": "Build", "actions": [action("Build", "CodeBuild", "Build"), action("Test", "CodeBuild", "UnitTests")]},
            {"name": "Approval", "actions": [action("Approval", "Manual", "ReleaseApproval")]},
            {"name": "Deploy", "actions": [action("Deploy", "CodeDeploy", "DeployWeb")]},
        ]
    }))
    .expect("pipeline");
    let log = build_log.unwrap_or_else(|| {
        let log = records
            .execution_dir("hello-web", ID)
            .expect("dir")
            .join("Build-Build.log");
        std::fs::create_dir_all(log.parent().expect("parent")).expect("mkdir");
        std::fs::write(
            &log,
            "[Container] Entering phase BUILD\ncargo build --release\n<done>\n",
        )
        .expect("log");
        log
    });
    let t0 = kiln::pipeline::record::now_ms() - 95_000;
    let done = |name: &str, start: u64, secs: u64| {
        let mut a = ActionRecord::pending(name, 1);
        a.status = Status::Succeeded;
        a.started_ms = Some(t0 + start * 1000);
        a.ended_ms = Some(t0 + (start + secs) * 1000);
        a.attempts = 1;
        a
    };
    let mut build = done("Build", 4, 41);
    build.log = Some(log);
    build.build_id = Some("hello-web:5b0c7d3e-1f2a-4b3c-8d4e-6f7a8b9c0d1e".into());
    let mut tests = done("UnitTests", 4, 23);
    tests.run_order = 1;
    let mut approval = ActionRecord::pending("ReleaseApproval", 1);
    approval.status = Status::InProgress;
    approval.started_ms = Some(t0 + 46_000);
    approval.attempts = 1;
    approval.approval = Some(ApprovalRecord {
        custom_data: Some("Release 1.4 to production? <b>check the staging page first</b>".into()),
        external_entity_link: Some("https://staging.example.com/release/1.4".into()),
        expires_ms: kiln::pipeline::record::now_ms() + 7 * 24 * 3600 * 1000,
        decision: None,
    });
    let execution = Execution {
        id: ID.into(),
        pipeline: "hello-web".into(),
        sequence: 7,
        status: Status::InProgress,
        status_summary: None,
        trigger: Trigger {
            trigger_type: "Webhook".into(),
            trigger_detail: "main@8d3f0a2".into(),
        },
        started_ms: t0,
        ended_ms: None,
        file: "pipeline.json".into(),
        definition,
        project_dir: ".".into(),
        variables: Default::default(),
        source_revisions: vec![SourceRevision {
            action_name: "Checkout".into(),
            revision_id: "8d3f0a2c41b7e95d0c6a".into(),
            revision_summary: "Say hello in the page's <title>".into(),
        }],
        pending_revisions: Default::default(),
        waiting_for: None,
        stages: vec![
            StageRecord {
                name: "Source".into(),
                status: Status::Succeeded,
                actions: vec![done("Checkout", 0, 3)],
            },
            StageRecord {
                name: "Build".into(),
                status: Status::Succeeded,
                actions: vec![build, tests],
            },
            StageRecord {
                name: "Approval".into(),
                status: Status::InProgress,
                actions: vec![approval],
            },
            StageRecord {
                name: "Deploy".into(),
                status: Status::Pending,
                actions: vec![ActionRecord::pending("DeployWeb", 1)],
            },
        ],
    };
    records.save(&execution).expect("save the record");
    state
}

fn request_file(state: &Path) -> PathBuf {
    Records::new(state)
        .execution_dir("hello-web", ID)
        .expect("dir")
        .join("approval-2-0.json")
}

#[test]
fn an_approval_is_given_through_the_page_in_a_real_browser() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let state = waiting_execution(None);
    let serve = Serve::start(state.path());
    let page = serve.url(&format!("/pipelines/hello-web/executions/{ID}"));

    // Without the token: the approval waits, and there is nothing to press.
    browser.open(&page);
    let stages = browser.wait_for_text(".stages", "ReleaseApproval");
    for name in [
        "Source",
        "Checkout",
        "Build",
        "UnitTests",
        "Approval",
        "Deploy",
        "DeployWeb",
    ] {
        assert!(stages.contains(name), "{name} is not shown: {stages}");
    }
    assert!(browser.text_of("[data-stage=Build]").contains("Succeeded"));
    assert!(
        browser
            .text_of("[data-action=ReleaseApproval]")
            .contains("InProgress")
    );
    assert!(
        browser
            .text_of("[data-action=DeployWeb]")
            .contains("Pending")
    );
    assert!(
        browser
            .text_of(".approval")
            .contains("<b>check the staging page first</b>")
    );
    assert_eq!(browser.count("button"), 0);
    assert!(browser.text_of(".approval").contains("open the address"));

    // The address kiln serve printed hands the browser the token: now the buttons are there.
    browser.open(&serve.token_url());
    assert!(!browser.url().contains("token="), "{}", browser.url());
    browser.open(&page);
    browser.type_into("textarea[name=comment]", "Staging looks good <3");
    assert_eq!(browser.count("button.approve"), 1);
    browser.screenshot(&screenshot_path("pipeline.png"));
    browser.click("button.approve");
    browser.wait_for_text("[data-action=ReleaseApproval]", "Approved");
    assert!(
        browser.url().ends_with(&format!("/executions/{ID}")),
        "{}",
        browser.url()
    );

    let answer: serde_json::Value = serde_json::from_slice(
        &std::fs::read(request_file(state.path())).expect("the request file"),
    )
    .expect("json");
    assert_eq!(answer["approved"], true, "{answer}");
    assert_eq!(answer["comment"], "Staging looks good <3");
    assert!(
        answer["by"]
            .as_str()
            .unwrap_or_default()
            .starts_with("web (127.0.0.1:")
    );

    // The answer shows without the token too, and nothing can be pressed again.
    browser.delete_cookies();
    browser.open(&page);
    browser.wait_for_text("[data-action=ReleaseApproval]", "Staging looks good <3");
    assert_eq!(browser.count("button"), 0);

    // The build's log, through the action's link.
    browser.click("[data-action=Build] a");
    assert!(
        browser
            .wait_for_text("pre.log", "cargo build")
            .contains("<done>")
    );
}

#[test]
fn kiln_serve_answers_only_to_its_own_host_and_refuses_answers_without_the_token() {
    let state = waiting_execution(None);
    let serve = Serve::start(state.path());
    let page = format!("/pipelines/hello-web/executions/{ID}");
    assert!(serve.get(&page, None).starts_with("HTTP/1.1 200"));
    let port = serve.base.rsplit(':').next().unwrap_or_default();
    assert!(
        serve
            .get(&page, Some(&format!("localhost:{port}")))
            .starts_with("HTTP/1.1 200")
    );
    let rebound = serve.get(&page, Some(&format!("rebind.example:{port}")));
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(!rebound.contains("ReleaseApproval"));

    let addr = serve.addr();
    let body = format!("token={}&decision=approve&comment=sneaky", serve.token);
    let forbidden = serve.raw(&format!(
        "POST {page}/approvals/2/0 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    assert!(forbidden.starts_with("HTTP/1.1 403"), "{forbidden}");
    assert!(!request_file(state.path()).exists());
}

#[test]
fn a_forged_record_cannot_make_kiln_serve_read_a_file_outside_the_state_dir() {
    let outside = tempfile::tempdir().expect("temp dir");
    let secret = outside.path().join("shadow");
    std::fs::write(&secret, "root:$6$not-for-the-web").expect("write");
    for log in [
        secret,
        PathBuf::from("/etc/shadow"),
        PathBuf::from("/etc/passwd"),
    ] {
        let state = waiting_execution(Some(log.clone()));
        let serve = Serve::start(state.path());
        let response = serve.get(
            &format!("/pipelines/hello-web/executions/{ID}/logs/1/0"),
            None,
        );
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            !response.contains("root:"),
            "{} was shown:\n{response}",
            log.display()
        );
        assert!(response.contains("outside kiln"), "{response}");
    }
}

#[test]
fn kiln_serve_stops_at_ctrl_c() {
    let state = waiting_execution(None);
    let mut serve = Serve::start(state.path());
    // Once it has answered, kiln has its signal handlers (they are set up beside the command).
    assert!(serve.get("/", None).starts_with("HTTP/1.1 200"));
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(serve.child.id() as i32, libc::SIGINT) };
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = serve.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "still serving"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    assert!(
        std::net::TcpStream::connect(serve.addr()).is_err(),
        "still listening"
    );
}

#[test]
fn a_running_build_s_log_follows_its_end_in_the_browser() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let state = waiting_execution(None);
    // Build 1 of `app` has a log and no record yet: it runs.
    let builds = state.path().join("builds/app");
    std::fs::create_dir_all(&builds).expect("mkdir");
    let lines: String = (1..=400).map(|n| format!("step {n}\n")).collect();
    std::fs::write(builds.join("1.log"), lines).expect("log");
    let serve = Serve::start(state.path());
    browser.open(&serve.url("/builds"));
    browser.wait_for_text("table", "IN_PROGRESS");
    browser.click("a[href='/builds/app/1/log']");
    assert!(
        browser
            .wait_for_text("pre.log", "step 400")
            .contains("step 1\n")
    );
    // The page's one script ran (the Content-Security-Policy allows it by its hash): the end of
    // the log is in view.
    let scrolled = browser.execute("return window.scrollY");
    assert!(scrolled.as_f64().unwrap_or(0.0) > 0.0, "scrollY {scrolled}");
    // It reloads itself while the build runs, and shows what was added.
    std::fs::write(builds.join("1.log"), "step 1\nstep 401 <new>\n").expect("log");
    browser.wait_for_text("pre.log", "step 401 <new>");
}
