// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! GRAPHQL_GRAPHIQL: off, `/graphql` is what it was and there are no assets;
//! on, a browser gets GraphiQL and its files from the api itself, and a real
//! Chromium runs a query through it with a bearer token.

mod common;

use common::{Method, Value, call, json, spawn_api, token};
use sha2::{Digest, Sha256};
use std::time::Duration;
use stockflow_testkit::{ProcessGroup, TestApp, TestAppBuilder};

/// What a browser sends when it opens a page.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

const JS: &str = "text/javascript; charset=utf-8";

/// Each file the page loads, its type, and whether it is vendored (listed
/// with its SHA-256 in assets/graphiql/README.md).
const ASSETS: &[(&str, &str, bool)] = &[
    ("graphiql-4.1.2.min.js", JS, true),
    ("graphiql-4.1.2.min.css", "text/css; charset=utf-8", true),
    ("react-18.3.1.production.min.js", JS, true),
    ("react-dom-18.3.1.production.min.js", JS, true),
    ("stockflow-graphiql.js", JS, false),
];

async fn spawn_graphiql() -> TestApp {
    spawn_api(TestApp::builder().env("GRAPHQL_GRAPHIQL", "true")).await
}

/// GET `path` with `accept`, and `token` if any.
async fn get(app: &TestApp, path: &str, accept: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(app.url(path)).header("Accept", accept);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn content_type(response: &reqwest::Response) -> &str {
    response.headers()["content-type"].to_str().unwrap()
}

/// GET /graphql's answers to requests that do not open the page: without
/// a query (as `accept` asks), no token is the 401 problem and a token
/// REST's 400; with a query, a browser's included, the API's own.
async fn api_get_is_unchanged(app: &TestApp, viewer: &str, accept: &str) {
    let response = get(app, "/graphql", accept, None).await;
    assert_eq!(response.status(), 401, "{accept}");
    assert!(content_type(&response).starts_with("application/problem+json"));
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "unauthorized");

    let response = get(app, "/graphql", accept, Some(viewer)).await;
    assert_eq!(response.status(), 400, "{accept}");
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "bad_request");

    let query = "/graphql?query=%7B%20me%20%7B%20organization%20%7B%20slug%20%7D%20%7D%20%7D";
    let response = get(app, query, BROWSER_ACCEPT, None).await;
    assert_eq!(response.status(), 401, "a query is the API's, token and all, even from a browser");
    let response = get(app, query, BROWSER_ACCEPT, Some(viewer)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["data"]["me"]["organization"]["slug"], "acme");
}

#[tokio::test]
async fn off_by_default_graphql_answers_a_browser_as_before_and_has_no_assets() {
    let app = spawn_api(TestAppBuilder::default()).await;
    let viewer = token(&app, "acme", "viewer");
    api_get_is_unchanged(&app, &viewer, BROWSER_ACCEPT).await;
    for (file, _, _) in ASSETS {
        let response = get(&app, &format!("/graphql/assets/{file}"), BROWSER_ACCEPT, None).await;
        assert_eq!(response.status(), 404, "{file}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn on_a_browser_gets_the_page_and_its_files_from_the_api() {
    let app = spawn_graphiql().await;
    let viewer = token(&app, "acme", "viewer");

    let response = get(&app, "/graphql", BROWSER_ACCEPT, None).await;
    assert_eq!(response.status(), 200, "the page needs no token");
    assert_eq!(content_type(&response), "text/html; charset=utf-8");
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    let page = response.text().await.unwrap();
    for (file, _, _) in ASSETS {
        assert!(page.contains(&format!("\"/graphql/assets/{file}\"")), "the page loads {file}");
    }
    assert!(!page.contains("http://") && !page.contains("https://"), "nothing from elsewhere: {page}");

    // Everything that is not a browser opening the page is the API's.
    for accept in ["application/json", "application/graphql-response+json", "*/*"] {
        api_get_is_unchanged(&app, &viewer, accept).await;
    }

    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/graphiql/README.md")).unwrap();
    for (file, expected, vendored) in ASSETS {
        let response = app.get(&format!("/graphql/assets/{file}")).await;
        assert_eq!(response.status(), 200, "{file}");
        assert_eq!(content_type(&response), *expected, "{file}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let body = response.bytes().await.unwrap();
        let on_disk = std::fs::read(format!("{}/assets/graphiql/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(body == on_disk, "{file} is served as committed");
        if *vendored {
            let digest = format!("{:x}", Sha256::digest(&body));
            assert!(manifest.contains(&format!("| `{file}` |")) && manifest.contains(&digest), "{file}: {digest}");
        }
    }
    let response = app.get("/graphql/assets/graphiql.js.map").await;
    assert_eq!(response.status(), 404);
    let response = app.http.post(app.url("/graphql/assets/stockflow-graphiql.js")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn chromium_runs_a_query_through_graphiql_with_a_bearer_token() {
    let app = spawn_graphiql().await;
    let member = token(&app, "acme", "member");
    let sku = "GQL-UI-7";
    let (status, _) =
        call(&app, &member, Method::POST, "/v1/products", Some(json!({"sku": sku, "name": "Rye flour", "unit": "kg"})))
            .await;
    assert_eq!(status, 201);

    let browser = Browser::start(&app.http).await;
    browser.navigate(&app.url("/graphql")).await;
    // Ready when GraphiQL shows what the page gives it, the placeholder in
    // the headers editor, and the API's 401 to the schema's fetch with it:
    // the page is open to all, the API is not.
    stockflow_testkit::eventually("GraphiQL, with its schema refused", Duration::from_secs(30), || async {
        let [query, headers, response] = browser.editors().await;
        let ready = query.starts_with("# Put your token")
            && headers == r#"{"Authorization": "Bearer <token>"}"#
            && response.contains(r#""code": "unauthorized""#);
        ready.then_some(())
    })
    .await;

    // The editors are CodeMirror's: set through its API, as typing would
    // (GraphiQL hears the change), without the keystroke-level quirks of
    // auto-closed brackets.
    let query = "{ products(first: 5) { edges { node { sku } } } }";
    let headers = format!(r#"{{"Authorization": "Bearer {member}"}}"#);
    browser
        .execute(
            "const [editors, values] = arguments;
             editors.forEach((selector, n) => document.querySelector(selector).CodeMirror.setValue(values[n]));",
            json!([&EDITORS[..2], [query, headers]]),
        )
        .await;
    // As after a human's pause: GraphiQL takes an edit into its tab 100 ms
    // after the last change, which its history records a run from, and
    // stores the query after 500 ms.
    stockflow_testkit::eventually("GraphiQL to take the edits in", Duration::from_secs(10), || async {
        (browser.execute("return localStorage.getItem('graphiql:query')", json!([])).await == query).then_some(())
    })
    .await;
    let run = browser.find(".graphiql-execute-button").await.expect("GraphiQL's run button");
    browser.click(&run).await;

    let response = stockflow_testkit::eventually("the SKU in GraphiQL's result", Duration::from_secs(30), || async {
        let [_, _, response] = browser.editors().await;
        response.contains(sku).then_some(response)
    })
    .await;
    let response: Value = serde_json::from_str(&response).unwrap();
    assert_eq!(response["data"]["products"]["edges"][0]["node"]["sku"], sku, "{response}");

    // GraphiQL's history keeps the run, but not its token, which the next
    // user of the browser would find there.
    stockflow_testkit::eventually("the run in GraphiQL's history", Duration::from_secs(10), || async {
        let history = browser.execute("return localStorage.getItem('graphiql:queries')", json!([])).await;
        let history: Value = serde_json::from_str(history.as_str()?).ok()?;
        history["queries"].as_array()?.iter().any(|run| run["query"] == query).then_some(())
    })
    .await;
    let stored = browser.execute("return JSON.stringify(Object.entries(localStorage))", json!([])).await;
    assert!(!stored.as_str().unwrap().contains(&member), "the token is stored: {stored}");

    // GraphiQL's dialogs add inline styles as they open: what the page's
    // CSP allows styles for.
    let settings = browser.find("button[aria-label='Open settings dialog']").await.expect("the settings button");
    browser.click(&settings).await;
    stockflow_testkit::eventually("the settings dialog", Duration::from_secs(10), || browser.find("[role=dialog]"))
        .await;
    let refused = browser.csp_violations().await;
    assert!(refused.is_empty(), "the page's CSP refused: {refused:?}");
    browser.quit().await;
    app.stop().await.unwrap();
}

/// Chromium, headless, driven through chromedriver over the W3C WebDriver
/// protocol. chromedriver runs in a process group of its own with the
/// Chromium it starts; dropping this (a failed test included) stops them.
struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`
    session: String,
    _driver: ProcessGroup,
}

/// GraphiQL's query, headers and result editors. The headers editor is the
/// visible one of the tools under the query while they show the headers.
const EDITORS: [&str; 3] = [
    ".graphiql-query-editor .CodeMirror",
    "section.graphiql-editor-tool[aria-label='Headers'] .graphiql-editor:not(.hidden) .CodeMirror",
    ".graphiql-response .CodeMirror",
];

/// A browser starts slowly on a busy machine; each command gets this long.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// W3C WebDriver's key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start(http: &reqwest::Client) -> Self {
        let chromedriver = "/usr/bin/chromedriver";
        assert!(std::path::Path::new(chromedriver).exists(), "{chromedriver} is missing: run `make services`");
        let port = stockflow_testkit::free_port();
        let mut command = std::process::Command::new(chromedriver);
        command.arg(format!("--port={port}")).stdout(std::process::Stdio::null());
        let driver = ProcessGroup::spawn(command, "chromedriver", "TERM");
        let base = format!("http://127.0.0.1:{port}");
        stockflow_testkit::eventually("chromedriver to be ready", Duration::from_secs(30), || async {
            let status: Value = http.get(format!("{base}/status")).send().await.ok()?.json().await.ok()?;
            (status["value"]["ready"] == true).then_some(())
        })
        .await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu"],
            },
            // The console, where Chromium reports what a CSP refused.
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let response = http.post(format!("{base}/session")).json(&capabilities).timeout(COMMAND_TIMEOUT).send().await;
        let body: Value = response.unwrap().json().await.unwrap();
        let id = body["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {body}"));
        Self { http: http.clone(), session: format!("{base}/session/{id}"), _driver: driver }
    }

    /// Sends one command; its `value`, or the WebDriver error as `Err`.
    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.session)).timeout(COMMAND_TIMEOUT);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|error| panic!("WebDriver {path}: {error}"));
        let ok = response.status().is_success();
        let value = response.json::<Value>().await.unwrap()["value"].take();
        if ok { Ok(value) } else { Err(value) }
    }

    async fn navigate(&self, url: &str) {
        self.command(Method::POST, "/url", Some(json!({"url": url}))).await.unwrap();
    }

    async fn execute(&self, script: &str, args: Value) -> Value {
        let body = json!({"script": script, "args": args});
        self.command(Method::POST, "/execute/sync", Some(body))
            .await
            .unwrap_or_else(|error| panic!("{script}: {error}"))
    }

    /// The text of each of GraphiQL's [`EDITORS`]; empty until it exists.
    async fn editors(&self) -> [String; 3] {
        let script =
            "return arguments[0].map((selector) => document.querySelector(selector)?.CodeMirror?.getValue() ?? '')";
        let texts = self.execute(script, json!([EDITORS])).await;
        std::array::from_fn(|n| texts[n].as_str().unwrap_or_else(|| panic!("{texts}")).to_owned())
    }

    /// The element `css` selects, if there is one.
    async fn find(&self, css: &str) -> Option<String> {
        let body = json!({"using": "css selector", "value": css});
        let element = self.command(Method::POST, "/element", Some(body)).await.ok()?;
        element[ELEMENT].as_str().map(ToOwned::to_owned)
    }

    async fn click(&self, element: &str) {
        self.command(Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await.unwrap();
    }

    /// The console's messages about a Content Security Policy.
    async fn csp_violations(&self) -> Vec<String> {
        let log = self.command(Method::POST, "/se/log", Some(json!({"type": "browser"}))).await.unwrap();
        log.as_array()
            .unwrap()
            .iter()
            .filter_map(|entry| entry["message"].as_str())
            .filter(|message| message.contains("Content Security Policy"))
            .map(ToOwned::to_owned)
            .collect()
    }

    /// Closes Chromium the way a user would; the drop then stops chromedriver.
    async fn quit(self) {
        self.command(Method::DELETE, "", None).await.unwrap();
    }
}
