//! A real browser for the end-to-end tests: Debian's headless Chromium, driven through
//! chromedriver's WebDriver HTTP API (W3C), each test with its own chromedriver (on a port it
//! picks), its own profile in a temp dir, both stopped when the [`Browser`] is dropped.
//!
//! ```ignore
//! let Some(browser) = Browser::start() else { return }; // SKIPPED when not installed (not in CI)
//! browser.open("http://127.0.0.1:8080/");
//! browser.type_into("textarea[name=comment]", "looks good");
//! browser.click("button.approve");
//! browser.wait_for_text("body", "Approved");
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// Where Debian's packages `chromium` and `chromium-driver` put them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key W3C WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a wait lasts before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium session; `None` (after a loud SKIPPED line) when they
    /// are not installed, a failure in CI.
    pub fn start() -> Option<Browser> {
        if !Path::new(CHROMIUM).is_file() || !Path::new(CHROMEDRIVER).is_file() {
            let install = "apt-get install chromium chromium-driver (tests/services/install.sh)";
            if std::env::var_os("CI").is_some() {
                panic!("Chromium is not installed, and CI must run every test: run {install}");
            }
            eprintln!(
                "\n*** SKIPPED: Chromium is not installed; run `{install}` to run this test ***\n"
            );
            return None;
        }
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let port = driver_port(&mut driver);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let profile = tempfile::tempdir().expect("temp dir");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let mut browser = Browser {
            driver,
            session: String::new(),
            http,
            _profile: profile,
        };
        let created = browser.call(
            reqwest::Method::POST,
            &format!("{base}/session"),
            Some(capabilities),
        );
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_string();
        browser.session = format!("{base}/session/{id}");
        Some(browser)
    }

    /// Goes to `url` and waits for the page to load.
    pub fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    /// The address of the page shown.
    pub fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's HTML as the browser has it now.
    pub fn source(&self) -> String {
        self.command(reqwest::Method::GET, "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Clicks the first element matching `css` (waiting for it to appear).
    pub fn click(&self, css: &str) {
        self.on_element(css, |element| {
            self.try_command(
                reqwest::Method::POST,
                &format!("/element/{element}/click"),
                Some(json!({})),
            )
        });
    }

    /// Types `text` into the first element matching `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, |element| {
            self.try_command(
                reqwest::Method::POST,
                &format!("/element/{element}/value"),
                Some(json!({ "text": text })),
            )
        });
    }

    /// The visible text of the first element matching `css`.
    pub fn text_of(&self, css: &str) -> String {
        self.on_element(css, |element| self.try_text(element))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// How many elements match `css` now.
    pub fn count(&self, css: &str) -> usize {
        self.command(
            reqwest::Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .map_or(0, Vec::len)
    }

    /// Waits until the text of the first element matching `css` holds `text`; its text. Pages
    /// that reload themselves are fine: each look finds the element again.
    pub fn wait_for_text(&self, css: &str, text: &str) -> String {
        let start = Instant::now();
        loop {
            let now = self
                .try_find(css)
                .and_then(|element| self.try_text(&element).ok())
                .map(|v| v.as_str().unwrap_or_default().to_string());
            if let Some(now) = &now
                && now.contains(text)
            {
                return now.clone();
            }
            assert!(
                start.elapsed() < PATIENCE,
                "`{css}` never showed {text:?}; it shows {now:?} at {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `script` (a function body: `return …`) in the page; what it returns.
    pub fn execute(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Forgets every cookie of the page's site.
    pub fn delete_cookies(&self) {
        self.command(reqwest::Method::DELETE, "/cookie", None);
    }

    /// Writes a PNG of the window to `path`.
    pub fn screenshot(&self, path: &Path) {
        let png = self.command(reqwest::Method::GET, "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("base64 screenshot");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot folder");
        }
        std::fs::write(path, bytes).expect("write screenshot");
    }

    /// Does `act` on the first element matching `css`, finding it again when the page was
    /// replaced in between (a reload, a redirect): WebDriver's "stale element reference".
    fn on_element(&self, css: &str, act: impl Fn(&str) -> Result<Value, Value>) -> Value {
        let start = Instant::now();
        loop {
            let last = match self.try_find(css) {
                Some(element) => match act(&element) {
                    Ok(value) => return value,
                    Err(e) if e["error"] == "stale element reference" => e,
                    Err(e) => panic!("WebDriver on `{css}`: {e}"),
                },
                None => Value::Null,
            };
            assert!(
                start.elapsed() < PATIENCE,
                "no `{css}` on {} ({last}):\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn try_text(&self, element: &str) -> Result<Value, Value> {
        self.try_command(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
    }

    fn try_find(&self, css: &str) -> Option<String> {
        let response = self
            .http
            .post(format!("{}/element", self.session))
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .expect("chromedriver answers");
        let ok = response.status().is_success();
        let value: Value = response.json().expect("json");
        ok.then(|| value["value"][ELEMENT].as_str().map(str::to_string))
            .flatten()
    }

    /// A command of this session: `path` after `/session/ID`; its `value`.
    fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("{}{path}", self.session), body)
    }

    /// A command of this session; its `value`, or WebDriver's error (`{error, message}`).
    fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        self.try_call(method, &format!("{}{path}", self.session), body)
    }

    fn call(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
        self.try_call(method, url, body)
            .unwrap_or_else(|e| panic!("WebDriver {url}: {e}"))
    }

    fn try_call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("chromedriver answers");
        let ok = response.status().is_success();
        let mut value: Value = response.json().expect("chromedriver's JSON");
        let mut value = value["value"].take();
        if ok {
            return Ok(value);
        }
        // Chromium's stack addresses say nothing to a test's reader.
        if let Some(error) = value.as_object_mut() {
            error.remove("stacktrace");
        }
        Err(value)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Ends Chromium; chromedriver is stopped below whatever the answer.
            let _ = self.http.delete(&self.session).send();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The port chromedriver says it listens on (`--port=0` picks a free one).
fn driver_port(driver: &mut Child) -> u16 {
    let stdout = driver.stdout.take().expect("chromedriver's stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let _ = tx.send(rest.trim_end_matches('.').trim().parse::<u16>().ok());
            }
        }
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(Some(port)) => port,
        other => {
            let _ = driver.kill();
            panic!("chromedriver did not say its port: {other:?}")
        }
    }
}

/// Where a test's screenshot goes: `docs/images/NAME` when KILN_UPDATE_SCREENSHOT=1 (the README's
/// picture is made that way), else a file of the test run's.
pub fn screenshot_path(name: &str) -> PathBuf {
    if std::env::var("KILN_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/images")
            .join(name)
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
    }
}
