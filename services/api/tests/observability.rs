// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! Request ids, `/metrics` and the request's log lines, seen from outside:
//! over HTTP in-process, and from the stdout of the real binary.

mod common;

use common::{Method, Value, json, spawn_app, token};
use reqwest::header::HeaderValue;
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::Duration;
use stockflow_api::commands::{TokenRequest, create_token};
use stockflow_testkit::{ProcessEnv, TestApp, eventually, free_port};
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-api");

/// One request whose answer has a known status.
struct Case {
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<&'static str>,
    status: u16,
}

/// A success, and problems from auth, the default service, a path
/// extractor, a JSON extractor and a handler's validation.
fn cases(app: &TestApp) -> Vec<Case> {
    let member = token(app, "acme", "member");
    let case = |method, path: &str, token: Option<&str>, body, status| Case {
        method,
        path: path.to_owned(),
        token: token.map(str::to_owned),
        body,
        status,
    };
    vec![
        case(Method::GET, "/v1/me", Some(&member), None, 200),
        case(Method::GET, "/v1/me", None, None, 401),
        case(Method::GET, "/no/such/route", None, None, 404),
        case(Method::GET, "/v1/products/not-a-uuid", Some(&member), None, 404),
        case(Method::POST, "/v1/products", Some(&member), Some("{not json"), 400),
        case(Method::POST, "/v1/products", Some(&member), Some(r#"{"sku":"-","name":"","unit":"kg"}"#), 422),
    ]
}

/// Sends `case` with `sent` as its `x-request-id` and returns the echoed id.
async fn echoed(app: &TestApp, case: &Case, sent: Option<HeaderValue>) -> String {
    let mut request = app.http.request(case.method.clone(), app.url(&case.path));
    if let Some(token) = &case.token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = case.body {
        request = request.header("content-type", "application/json").body(body);
    }
    if let Some(sent) = sent {
        request = request.header("x-request-id", sent);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), case.status, "{} {}", case.method, case.path);
    let ids: Vec<_> = response.headers().get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "exactly one x-request-id on {} {}", case.method, case.path);
    ids[0].to_str().expect("an ASCII id").to_owned()
}

fn is_uuid_v4(id: &str) -> bool {
    Uuid::parse_str(id).is_ok_and(|uuid| uuid.get_version_num() == 4)
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_on_successes_and_problems() {
    let app = spawn_app().await;
    for (n, case) in cases(&app).iter().enumerate() {
        let sent = format!("client-{n}.A_b-{}", Uuid::new_v4().simple());
        assert_eq!(echoed(&app, case, Some(HeaderValue::from_str(&sent).unwrap())).await, sent);
    }
}

#[tokio::test]
async fn a_missing_or_unsafe_request_id_is_replaced_by_a_fresh_uuid() {
    let app = spawn_app().await;
    let unsafe_ids = [
        "x".repeat(300),
        "two words".to_owned(),
        "tab\there".to_owned(),
        "quote\"d".to_owned(),
        "semi;colon".to_owned(),
    ];
    // A raw newline never reaches the app: HTTP framing ends the header there.
    for case in cases(&app) {
        let mut seen = Vec::new();
        for sent in unsafe_ids
            .iter()
            .map(|id| Some(HeaderValue::from_str(id).unwrap()))
            .chain([Some(HeaderValue::from_bytes(b"caf\xe9").unwrap()), None])
        {
            let shown = format!("{sent:?}");
            let id = echoed(&app, &case, sent).await;
            assert!(is_uuid_v4(&id), "{shown} on {} {} must become a uuid, got {id:?}", case.method, case.path);
            seen.push(id);
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), unsafe_ids.len() + 2, "every request gets its own id");
    }
}

/// The counter lines of `/metrics`, after checking its format and families.
async fn scrape(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();
    for line in
        ["# TYPE stockflow_http_requests_total counter", "# TYPE stockflow_http_request_duration_seconds histogram"]
    {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("# HELP stockflow_http_requests_total ")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("# HELP stockflow_http_request_duration_seconds ")), "{text}");
    text
}

fn value_of<'t>(text: &'t str, series: &str) -> Option<&'t str> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
}

#[tokio::test]
async fn metrics_count_and_time_requests_by_route_pattern_method_and_status() {
    let app = spawn_app().await;
    let member = token(&app, "acme", "member");
    let body = json!({"sku": "FL-00", "name": "Rye flour", "unit": "kg"});
    let (status, created) = common::call(&app, &member, Method::POST, "/v1/products", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(common::call(&app, &member, Method::GET, &format!("/v1/products/{id}"), None).await.0, 200);
    }
    let missing = Uuid::new_v4();
    assert_eq!(common::call(&app, &member, Method::GET, &format!("/v1/products/{missing}"), None).await.0, 404);
    for path in ["/nope", &format!("/v1/nothing/{missing}"), "/v1/products/x/y"] {
        assert_eq!(app.get(path).await.status(), 404, "{path}");
    }

    let text = scrape(&app).await;
    let counter = |method: &str, route: &str, status: u16| {
        let series = format!(r#"stockflow_http_requests_total{{method="{method}",route="{route}",status="{status}"}}"#);
        value_of(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}")).to_owned()
    };
    assert_eq!(counter("POST", "/v1/products", 201), "1");
    assert_eq!(counter("GET", "/v1/products/{id}", 200), "2");
    assert_eq!(counter("GET", "/v1/products/{id}", 404), "1");
    assert_eq!(counter("GET", "unmatched", 404), "3", "paths no route serves share one series");

    let labels = r#"method="GET",route="/v1/products/{id}",status="200""#;
    let histogram = |suffix: &str, extra: &str| {
        let series = format!("stockflow_http_request_duration_seconds_{suffix}{{{labels}{extra}}}");
        value_of(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}")).to_owned()
    };
    assert_eq!(histogram("count", ""), "2");
    assert_eq!(histogram("bucket", r#",le="+Inf""#), "2");
    assert!(histogram("sum", "").parse::<f64>().unwrap() > 0.0);
    let buckets: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("stockflow_http_request_duration_seconds_bucket{{{labels},")))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 12, "11 bounds and +Inf");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "buckets are cumulative: {buckets:?}");

    for raw in [id.as_str(), &missing.to_string(), "/nope", "/v1/products/x/y"] {
        assert!(!text.contains(raw), "a raw path leaked into the labels: {raw}");
    }
}

/// The api binary with its JSON logs on a pipe, killed if the test fails.
struct Logged(Child);

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Logged {
    /// Sends SIGTERM and returns every log line once the process has exited.
    fn stop(mut self) -> Vec<Value> {
        let pid = self.0.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        // Read to the end first: the pipe closes when the process exits.
        let mut stdout = String::new();
        self.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        assert!(self.0.wait().unwrap().success(), "the api must stop cleanly");
        stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}")))
            .collect()
    }
}

/// The request id on the spans of a log line, if any.
fn span_request_id(line: &Value) -> Option<&str> {
    line["spans"].as_array()?.iter().find_map(|span| span["request_id"].as_str())
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_request_id() {
    // `warn` for the middleware's own target, so the request id must reach
    // the lines even where info spans are filtered out; the products span
    // stays on so the handler's error line names the product it missed.
    let filter = "warn,stockflow_api::products=info,stockflow_api::access=info";
    let env = ProcessEnv::new().with("LOG_FORMAT", "json").with("LOG_LEVEL", filter);
    let request = TokenRequest {
        org: "acme".into(),
        role: "viewer".into(),
        name: "logs".into(),
        email: None,
        expires_in: None,
        operator: false,
    };
    let token = create_token(&mut env.database.connect(), request).unwrap().expose().to_owned();
    let port = free_port();
    let process = Logged(
        env.command(BINARY)
            .env("API_BIND", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the api"),
    );
    let client = stockflow_testkit::http_client();
    let base = format!("http://127.0.0.1:{port}");
    eventually("the api to answer /healthz", Duration::from_secs(20), || async {
        let response = client.get(format!("{base}/healthz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;

    let missing = Uuid::new_v4();
    let sent = format!("logs-{}", Uuid::new_v4().simple());
    let response = client
        .get(format!("{base}/v1/products/{missing}"))
        .bearer_auth(&token)
        .header("x-request-id", &sent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], sent.as_str());
    let size = response.bytes().await.unwrap().len();

    let lines = process.stop();
    let all = || lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    let ours: Vec<&Value> = lines.iter().filter(|line| line.to_string().contains(&missing.to_string())).collect();
    assert!(ours.len() >= 2, "expected the handler's error and the access log for {missing}:\n{}", all());
    for line in &ours {
        let id = span_request_id(line);
        assert_eq!(id, Some(sent.as_str()), "a line of the request without its request id: {line}");
    }

    // A 404 is the client's business, not an incident: logged at info.
    let error = ours
        .iter()
        .find(|line| line["error"] == "no such product")
        .unwrap_or_else(|| panic!("no event for the handler's error:\n{}", all()));
    assert_eq!(error["level"], "INFO", "{error}");

    let access = ours
        .iter()
        .find(|line| line["target"] == "stockflow_api::access")
        .unwrap_or_else(|| panic!("no access log line:\n{}", all()));
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["request_id"], sent.as_str());
    assert_eq!(access["method"], "GET");
    assert_eq!(access["route"], "/v1/products/{id}");
    assert_eq!(access["path"], format!("/v1/products/{missing}"));
    assert_eq!(access["status"], 404);
    assert_eq!(access["bytes"], size as u64);
    assert!(access["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{access}");
}
