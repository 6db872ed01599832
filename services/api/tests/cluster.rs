// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

//! The api and the worker on a three-node RabbitMQ cluster
//! (scripts/rabbitmq-cluster.sh, `make test-cluster`): AMQP_URL names the
//! three nodes; the node each service is connected to is stopped, then the
//! quorum leader of the exports queue, while exports are requested. Ignored
//! by `make test`, which has no cluster: `make test-cluster` runs it.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use stockflow_telemetry::Shutdown;
use stockflow_testkit::{TestApp, eventually};

const WITHIN: Duration = Duration::from_secs(30);
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/rabbitmq-cluster.sh");

fn cluster(args: &[&str]) -> String {
    let output = Command::new("bash").arg(SCRIPT).args(args).output().expect("run rabbitmq-cluster.sh");
    assert!(output.status.success(), "rabbitmq-cluster.sh {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// rabbitmqctl on the first node that answers (one may be stopped), as JSON.
fn query(args: &[&str]) -> Value {
    for node in ["1", "2", "3"] {
        let output = Command::new("bash")
            .arg(SCRIPT)
            .args(["ctl", node, "-q"])
            .args(args)
            .args(["--formatter", "json"])
            .output()
            .expect("run rabbitmq-cluster.sh");
        if output.status.success() {
            return serde_json::from_slice(&output.stdout).unwrap();
        }
    }
    panic!("no node of the cluster answers {args:?}");
}

/// The node (1 to 3) that serves the connection named `stockflow-<service>`
/// of this test, told by the AMQP port it is connected to.
fn node_of(service: &str, namespace_port: &[u16]) -> Option<u8> {
    let connections = query(&["list_connections", "port", "peer_port", "client_properties"]);
    connections.as_array().unwrap().iter().find_map(|c| {
        let properties = c["client_properties"].to_string();
        let ours = properties.contains(&format!("stockflow-{service}"))
            && namespace_port.contains(&u16::try_from(c["peer_port"].as_u64()?).ok()?);
        ours.then(|| u8::try_from(c["port"].as_u64()? - 5680).ok()).flatten()
    })
}

/// The local ports of this process's AMQP connections: how the test tells
/// its own services' connections from those of other test processes.
fn our_ports() -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = u16::from_str_radix(fields[1].rsplit(':').next()?, 16).ok()?;
            let remote = u16::from_str_radix(fields[2].rsplit(':').next()?, 16).ok()?;
            ((5681..=5683).contains(&remote) && inodes.iter().any(|i| i == fields[9])).then_some(local)
        })
        .collect()
}

async fn connected_node(service: &str) -> u8 {
    eventually(&format!("the {service} to be connected"), WITHIN, || async { node_of(service, &our_ports()) }).await
}

fn exports_leader(namespace: &str) -> u8 {
    let queues = query(&["list_queues", "name", "leader"]);
    let queue = format!("{namespace}.exports");
    let leader = queues.as_array().unwrap().iter().find(|q| q["name"] == queue.as_str()).expect("the exports queue");
    let name = leader["leader"].as_str().unwrap();
    name.strip_prefix("sf").and_then(|rest| rest.split('@').next()).unwrap().parse().unwrap()
}

async fn ready(app: &TestApp, worker_port: u16) {
    let last = std::sync::Mutex::new(Value::Null);
    let api_ready = tokio::time::timeout(WITHIN, async {
        loop {
            let (status, body) = app.readyz().await;
            if status == 200 {
                return;
            }
            *last.lock().unwrap() = body;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(api_ready.is_ok(), "the api not ready within {WITHIN:?}: {}", last.lock().unwrap());
    let url = format!("http://127.0.0.1:{worker_port}/readyz");
    eventually("the worker to be ready", WITHIN, || async {
        let status = app.http.get(&url).send().await.ok()?.status().as_u16();
        (status == 200).then_some(())
    })
    .await;
}

async fn request_exports(app: &TestApp, token: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let (status, export) =
            call(app, token, Method::POST, "/v1/exports", Some(json!({"kind": "batches", "format": "csv"}))).await;
        assert_eq!(status, 202, "{export}");
        ids.push(export["id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn all_succeed(app: &TestApp, token: &str, ids: &[String]) {
    for id in ids {
        eventually(&format!("export {id} to succeed"), Duration::from_secs(60), || async {
            let (_, export) = call(app, token, Method::GET, &format!("/v1/exports/{id}"), None).await;
            match export["status"].as_str() {
                Some("succeeded") => Some(()),
                Some("failed") => panic!("export {id} failed: {export}"),
                _ => None,
            }
        })
        .await;
    }
}

/// Stops one node's broker application and starts it again once `during`
/// is done; the cluster keeps a majority throughout.
async fn with_node_stopped<F: std::future::Future<Output = ()>>(node: u8, during: F) {
    let node = node.to_string();
    cluster(&["ctl", &node, "-q", "stop_app"]);
    during.await;
    cluster(&["ctl", &node, "-q", "start_app"]);
    cluster(&["ctl", &node, "-q", "await_startup"]);
}

#[tokio::test]
#[ignore = "needs the three-node cluster of `make test-cluster`"]
async fn jobs_complete_exactly_once_while_nodes_of_the_cluster_stop() {
    let urls = cluster(&["urls"]).trim().to_owned();
    let app = TestApp::builder()
        .env("AMQP_URL", &urls)
        .spawn(|env, shutdown| async move {
            let app = stockflow_api::Application::build(stockflow_api::Settings::from_env(&env)?, shutdown).await?;
            let address = app.address();
            Ok((address, Box::pin(async move { Ok(app.run_until_stopped().await?) }) as _))
        })
        .await;
    let worker_shutdown = Shutdown::new();
    let worker_port = stockflow_testkit::free_port();
    let worker_env = app.env.clone().with("WORKER_HEALTH_BIND", format!("127.0.0.1:{worker_port}"));
    let worker = stockflow_worker::Application::build(
        stockflow_worker::Settings::from_env(&worker_env).unwrap(),
        worker_shutdown.clone(),
    )
    .await
    .unwrap();
    let worker_task = tokio::spawn(async move { worker.run_until_stopped().await.unwrap() });
    ready(&app, worker_port).await;
    let member = token(&app, "acme", "member");
    let mut requested = request_exports(&app, &member, 3).await;
    all_succeed(&app, &member, &requested).await;

    // The worker's node stops: it moves to another; jobs asked meanwhile complete.
    let node = connected_node("worker").await;
    with_node_stopped(node, async {
        assert_ne!(connected_node("worker").await, node, "the worker moved off the stopped node");
        ready(&app, worker_port).await;
        let ids = request_exports(&app, &member, 3).await;
        all_succeed(&app, &member, &ids).await;
        requested.extend(ids);
    })
    .await;

    // The api's node stops: jobs it writes meanwhile reach the queue from
    // the outbox once it has moved.
    let node = connected_node("api").await;
    with_node_stopped(node, async {
        let ids = request_exports(&app, &member, 3).await;
        assert_ne!(connected_node("api").await, node, "the api moved off the stopped node");
        ready(&app, worker_port).await;
        all_succeed(&app, &member, &ids).await;
        requested.extend(ids);
    })
    .await;

    // The quorum leader of the exports queue stops: another node leads.
    let leader = exports_leader(&app.namespace);
    with_node_stopped(leader, async {
        let ids = request_exports(&app, &member, 3).await;
        ready(&app, worker_port).await;
        all_succeed(&app, &member, &ids).await;
        assert_ne!(exports_leader(&app.namespace), leader, "a new leader");
        requested.extend(ids);
    })
    .await;

    // Exactly once: one row per request, each succeeded, one file each.
    wait_for_outbox(&app).await;
    let (_, listing) = call(&app, &member, Method::GET, "/v1/exports?limit=100", None).await;
    let listed: BTreeSet<&str> =
        listing["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    let asked: BTreeSet<&str> = requested.iter().map(String::as_str).collect();
    assert_eq!(listed, asked, "{listing}");
    let files = walk(&app.storage_root.path().join("media"));
    assert_eq!(files, requested.len(), "one file per export");

    worker_shutdown.trigger();
    worker_task.await.unwrap();
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum()
        })
        .unwrap_or(0)
}
