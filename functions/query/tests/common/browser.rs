//! A real browser for the console's tests: Debian's headless Chromium driven through
//! chromedriver with the W3C WebDriver protocol (a few JSON calls over HTTP, so no client
//! crate), and the query handler served over real HTTP under a function URL's prefix.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::log::Api;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where the console is, as `cargo lambda watch` serves it.
pub const PREFIX: &str = "/lambda-url/query";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The query handler on a loopback port, under [`PREFIX`].
pub struct Server {
    pub origin: String,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(api: Arc<Api>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let api = api.clone();
            async move { api.serve(request).await }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { origin, task }
    }

    /// The console's address.
    pub fn console(&self) -> String {
        format!("{}{PREFIX}/console/", self.origin)
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}{PREFIX}{path}", self.origin)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Api {
    /// Answers one HTTP request as API Gateway would hand it to the function: the
    /// function URL's prefix taken off the path.
    pub async fn serve(&self, request: axum::extract::Request) -> axum::response::Response {
        let (mut parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, 6 << 20).await.unwrap();
        let path_and_query = parts.uri.path_and_query().unwrap().as_str();
        let Some(rest) = path_and_query.strip_prefix(PREFIX) else {
            return axum::response::Response::builder()
                .status(404)
                .body(axum::body::Body::from("not under the function's prefix"))
                .unwrap();
        };
        parts.uri = rest.parse().unwrap();
        let body = if bytes.is_empty() {
            lambda_http::Body::Empty
        } else {
            lambda_http::Body::Binary(bytes.to_vec())
        };
        let response = self
            .handle(lambda_http::Request::from_parts(parts, body))
            .await;
        let (parts, body) = response.into_parts();
        let body = match body {
            lambda_http::Body::Empty => axum::body::Body::empty(),
            lambda_http::Body::Text(text) => axum::body::Body::from(text),
            lambda_http::Body::Binary(bytes) => axum::body::Body::from(bytes),
            _ => unreachable!("the query function answers text"),
        };
        axum::response::Response::from_parts(parts, body)
    }
}

/// One headless Chromium with its own chromedriver, profile and download directory.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    pub downloads: PathBuf,
    profile: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts Chromium at `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Self {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: scripts/install-tools installs Debian's chromium and chromium-driver"
            );
        }
        let name = sentinel_testing::unique_name("console");
        let root = std::env::temp_dir().join(name);
        let downloads = root.join("downloads");
        let profile = root.join("profile");
        std::fs::create_dir_all(&downloads).unwrap();
        std::fs::create_dir_all(&profile).unwrap();
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(response) = ready {
                let status: Value = response.json().await.unwrap_or_default();
                if status["value"]["ready"] == json!(true) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-extensions", "--lang=en-US",
                         format!("--user-data-dir={}", profile.display()),
                         format!("--window-size={width},{height}")],
                "prefs": {"download.default_directory": downloads.display().to_string(),
                          "download.prompt_for_download": false}
            }
        }}});
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {response}"));
        let browser = Self {
            http,
            session: format!("{base}/session/{id}"),
            driver,
            downloads,
            profile,
        };
        // Chromium's windows are at least 500 pixels wide: a phone's width is emulated.
        if width < 500 {
            browser
                .command(
                    "POST",
                    "/goog/cdp/execute",
                    json!({"cmd": "Emulation.setDeviceMetricsOverride",
                           "params": {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": true}}),
                )
                .await;
        }
        browser
            .command(
                "POST",
                "/goog/cdp/execute",
                json!({"cmd": "Browser.setDownloadBehavior",
                       "params": {"behavior": "allow", "downloadPath": browser.downloads.display().to_string()}}),
            )
            .await;
        browser
    }

    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = response["value"]["error"].as_str() {
            panic!(
                "WebDriver {method} {path}: {error}: {}",
                response["value"]["message"]
            );
        }
        response["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) and answers its value.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits until `script` answers something truthy, and answers it.
    pub async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let value = self.run(script, json!([])).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the page reads:\n{}\n{}",
                self.text("body").await,
                self.log().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the page logged to its console (errors included).
    pub async fn log(&self) -> String {
        let url = format!("{}/se/log", self.session);
        let Ok(response) = self
            .http
            .post(url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
        else {
            return String::new();
        };
        let entries: Value = response.json().await.unwrap_or_default();
        entries["value"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// The visible text of the first element matching `css` ("" if none).
    pub async fn text(&self, css: &str) -> String {
        self.run(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .command(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found[ELEMENT].as_str().unwrap().to_string()
    }

    /// Clicks the element as a person would (the WebDriver scrolls it into view first).
    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.command("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    /// Clears a field and types `text` into it, key by key.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.command("POST", &format!("/element/{id}/clear"), json!({}))
            .await;
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Sends keys to whatever has the focus (e.g. "\u{E004}" is Tab, "\u{E007}" Enter).
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.command(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    pub async fn url(&self) -> String {
        self.command("GET", "/url", json!({}))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.command("GET", "/screenshot", json!({})).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// Waits for a finished download named `name` and answers its text.
    pub async fn download(&self, name: &str) -> String {
        let path = self.downloads.join(name);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "no download {name} in {}",
                self.downloads.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::read_to_string(path).unwrap()
    }
}

impl Drop for Browser {
    /// Ends the session (which closes Chromium), then chromedriver, also when a test fails.
    fn drop(&mut self) {
        let session = self.session.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let _ = reqwest::Client::new()
                    .delete(&session)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
            });
        })
        .join();
        let _ = self.driver.start_kill();
        let _ = std::fs::remove_dir_all(self.profile.parent().unwrap());
    }
}
