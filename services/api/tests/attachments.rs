// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! Attachments over HTTP: uploads streamed into real storage, hostile
//! uploads refused, and each download mode (stream, x-accel through the
//! real nginx, redirect to a presigned URL on a real S3 server).

mod common;

use common::{Method, Value, call, json, token};
use reqwest::multipart::{Form, Part};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use stockflow_api::{Application, Settings};
use stockflow_testkit::{Nginx, S3Server, TestApp};

const LIMIT: usize = 64 * 1024;

async fn spawn_with(env: &[(&str, &str)]) -> TestApp {
    let mut builder = TestApp::builder().env("MAX_UPLOAD_BYTES", &LIMIT.to_string());
    for (var, value) in env {
        builder = builder.env(var, value);
    }
    builder
        .spawn(|env, shutdown| async move {
            let app = Application::build(Settings::from_env(&env)?, shutdown).await?;
            let address = app.address();
            Ok((address, Box::pin(async move { Ok(app.run_until_stopped().await?) }) as _))
        })
        .await
}

fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..len.saturating_sub(8)).map(|i| (i * 31 % 251) as u8));
    bytes.truncate(len);
    bytes
}

/// A product and a batch to attach files to; returns the batch id.
async fn batch(app: &TestApp, token: &str) -> String {
    let (_, product) =
        call(app, token, Method::POST, "/v1/products", Some(json!({"sku": "P", "name": "p", "unit": "kg"}))).await;
    let body =
        json!({"product_id": product["id"], "code": "B-1", "quantity": 1, "produced_at": "2026-11-20T08:00:00Z"});
    let (status, batch) = call(app, token, Method::POST, "/v1/batches", Some(body)).await;
    assert_eq!(status, 201, "{batch}");
    batch["id"].as_str().unwrap().to_owned()
}

async fn upload(app: &TestApp, token: &str, batch: &str, filename: &str, mime: &str, bytes: Vec<u8>) -> (u16, Value) {
    let part = Part::bytes(bytes).file_name(filename.to_owned()).mime_str(mime).unwrap();
    let form = Form::new().part("file", part);
    let response = app
        .http
        .post(app.url(&format!("/v1/batches/{batch}/attachments")))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn media(app: &TestApp) -> PathBuf {
    app.storage_root.path().join("media")
}

/// Every file under the media root, temp files included.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else { return found };
    for entry in entries.flatten() {
        if entry.file_type().unwrap().is_dir() {
            found.extend(files_under(&entry.path()));
        } else {
            found.push(entry.path());
        }
    }
    found
}

fn attachment_rows(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    stockflow_db::schema::attachments::table.count().get_result(&mut app.database.connect()).unwrap()
}

#[tokio::test]
async fn an_upload_streams_into_storage_and_downloads_with_ranges() {
    let app = spawn_with(&[]).await;
    let member = token(&app, "acme", "member");
    let batch = batch(&app, &member).await;
    let bytes = png(40_000);
    let (status, attachment) = upload(&app, &member, &batch, "../../photo.png", "text/html", bytes.clone()).await;
    assert_eq!(status, 201, "{attachment}");
    assert_eq!(attachment["content_type"], "image/png", "sniffed, not the declared text/html");
    assert_eq!(attachment["filename"], "photo.png");
    assert_eq!(attachment["size_bytes"], 40_000);
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(attachment["sha256"], digest);
    let id = attachment["id"].as_str().unwrap();
    let stored = files_under(&media(&app));
    assert_eq!(stored.len(), 1);
    assert!(stored[0].ends_with(format!("attachments/{id}")), "the key is generated, never the filename: {stored:?}");

    let content =
        app.http.get(app.url(&format!("/v1/attachments/{id}/content"))).bearer_auth(&member).send().await.unwrap();
    assert_eq!(content.status(), 200);
    let header = |name: &str| content.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("content-type").as_deref(), Some("image/png"));
    assert_eq!(header("content-disposition").as_deref(), Some(r#"attachment; filename="photo.png""#));
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header("content-length").as_deref(), Some("40000"));
    assert_eq!(content.bytes().await.unwrap(), bytes);

    let ranged = |range: &'static str| {
        app.http
            .get(app.url(&format!("/v1/attachments/{id}/content")))
            .bearer_auth(&member)
            .header("range", range)
            .send()
    };
    let part = ranged("bytes=10-19").await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 10-19/40000");
    assert_eq!(part.bytes().await.unwrap(), bytes[10..20]);
    let tail = ranged("bytes=-5").await.unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), bytes[39_995..]);
    let beyond = ranged("bytes=50000-").await.unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(beyond.headers()["content-range"], "bytes */40000");

    let (status, listing) = call(&app, &member, Method::GET, &format!("/v1/batches/{batch}/attachments"), None).await;
    assert_eq!((status, listing["items"][0]["id"].as_str()), (200, Some(id)));
    let (status, problem) = call(&app, &member, Method::DELETE, &format!("/v1/batches/{batch}"), None).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("in_use")), "a batch with attachments stays");

    assert_eq!(call(&app, &member, Method::DELETE, &format!("/v1/attachments/{id}"), None).await.0, 204);
    assert!(files_under(&media(&app)).is_empty(), "the object goes with the row");
    assert_eq!(call(&app, &member, Method::GET, &format!("/v1/attachments/{id}"), None).await.0, 404);
}

#[tokio::test]
async fn hostile_uploads_are_refused_or_defused() {
    let app = spawn_with(&[]).await;
    let member = token(&app, "acme", "member");
    let batch = batch(&app, &member).await;

    let html = b"<!DOCTYPE html><script>alert(document.cookie)</script>".to_vec();
    let (status, problem) = upload(&app, &member, &batch, "cat.png", "image/png", html).await;
    assert_eq!((status, problem["code"].as_str()), (415, Some("unsupported_media_type")), "{problem}");
    let (status, _) =
        upload(&app, &member, &batch, "tool.exe", "image/png", b"MZ\x90\x00\x03\x00\x00\x00".to_vec()).await;
    assert_eq!(status, 415);
    assert_eq!(attachment_rows(&app), 0);
    assert!(files_under(&media(&app)).is_empty(), "a refused upload stores nothing");

    let mut jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF".to_vec();
    jpeg.extend([7u8; 100]);
    let (status, attachment) = upload(&app, &member, &batch, "a.jpg.php", "application/x-php", jpeg).await;
    assert_eq!(status, 201, "{attachment}");
    assert_eq!(
        (attachment["content_type"].as_str(), attachment["filename"].as_str()),
        (Some("image/jpeg"), Some("a.jpg.php.jpg"))
    );
    // HTTP forbids NUL in a header, so a NUL in the part's filename makes the
    // multipart body itself malformed: refused whole, nothing stored.
    let (status, problem) = upload(&app, &member, &batch, "evil\0name.png", "image/png", png(100)).await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("bad_request")), "{problem}");
    assert_eq!(attachment_rows(&app), 1);
    let (status, attachment) = upload(&app, &member, &batch, "evil\tname.png", "image/png", png(100)).await;
    assert_eq!((status, attachment["filename"].as_str()), (201, Some("evilname.png")), "{attachment}");

    let before = files_under(&media(&app)).len();
    let (status, problem) = upload(&app, &member, &batch, "big.png", "image/png", png(LIMIT + 1)).await;
    assert_eq!((status, problem["code"].as_str()), (413, Some("payload_too_large")), "{problem}");
    assert_eq!(files_under(&media(&app)).len(), before, "nothing kept, no temp file left");
    assert_eq!(attachment_rows(&app), 2);
    let (status, _) = upload(&app, &member, &batch, "exact.png", "image/png", png(LIMIT)).await;
    assert_eq!(status, 201, "exactly the limit is allowed");
}

/// Markup anywhere in the sniffed bytes is refused, whatever comes first;
/// a stored file's display name ends with its type's extension and has no
/// invisible characters that would make it read as another name.
#[tokio::test]
async fn markup_is_refused_and_display_names_say_what_the_file_is() {
    let app = spawn_with(&[]).await;
    let member = token(&app, "acme", "member");
    let batch = batch(&app, &member).await;
    for page in [
        "Dear customer, your invoice:\n<h1>Invoice</h1><script>fetch('/steal')</script>",
        "figures for November\n\n<FORM action=https://evil.example><input name=password>",
        "just text, then <iframe src=x>",
    ] {
        let (status, problem) = upload(&app, &member, &batch, "report.txt", "text/plain", page.into()).await;
        assert_eq!((status, problem["code"].as_str()), (415, Some("unsupported_media_type")), "{page}");
    }
    assert_eq!(attachment_rows(&app), 0);
    assert!(files_under(&media(&app)).is_empty(), "a refused upload stores nothing");

    let named = async |filename: &str, bytes: &[u8]| {
        let part = Part::bytes(bytes.to_vec()).file_name(filename.to_owned());
        // Raw UTF-8 in `filename="..."`, as browsers send it.
        let form = Form::new().percent_encode_noop().part("file", part);
        let url = app.url(&format!("/v1/batches/{batch}/attachments"));
        let response = app.http.post(url).bearer_auth(&member).multipart(form).send().await.unwrap();
        assert_eq!(response.status(), 201, "{filename}");
        let attachment: Value = response.json().await.unwrap();
        attachment["filename"].as_str().unwrap().to_owned()
    };
    assert_eq!(named("invoice.exe", b"%PDF-1.7\n").await, "invoice.exe.pdf");
    assert_eq!(named("invoice\u{202e}fdp.js", b"hello").await, "invoicefdp.js.txt");
    assert_eq!(named("\u{feff}scan\u{200b}.PNG", &png(64)).await, "scan.PNG");
    assert_eq!(named("notes", b"a < b").await, "notes.txt");
}

/// The body holds the file and nothing else, as a JSON body holds no
/// unknown field: any other part, before or after the file, is a 422
/// naming it, and nothing is stored.
#[tokio::test]
async fn a_part_other_than_the_file_is_refused_and_nothing_is_kept() {
    let app = spawn_with(&[]).await;
    let member = token(&app, "acme", "member");
    let batch = batch(&app, &member).await;
    let file = || Part::bytes(png(10_000)).file_name("scan.png");
    for (form, field) in [
        (Form::new().text("note", "x").part("file", file()), "note"),
        (Form::new().part("file", file()).text("note", "x"), "note"),
        (Form::new().part("file", file()).part("file", file()), "file"),
    ] {
        let url = app.url(&format!("/v1/batches/{batch}/attachments"));
        let response = app.http.post(url).bearer_auth(&member).multipart(form).send().await.unwrap();
        let status = response.status().as_u16();
        let problem: Value = response.json().await.unwrap();
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some(field)), "{problem}");
    }
    assert_eq!(attachment_rows(&app), 0);
    assert!(files_under(&media(&app)).is_empty(), "nothing stored: {:?}", files_under(&media(&app)));
}

/// The object is stored, then recording it fails for real (a trigger
/// refuses the update): the upload answers 500 and leaves neither the row
/// nor the object behind.
#[tokio::test]
async fn an_upload_whose_row_update_fails_leaves_no_orphan_object() {
    use diesel::prelude::*;
    let app = spawn_with(&[]).await;
    let member = token(&app, "acme", "member");
    let batch = batch(&app, &member).await;
    diesel::sql_query(
        "CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'attachments are read-only in this test'; END $$",
    )
    .execute(&mut app.database.connect())
    .unwrap();
    diesel::sql_query(
        "CREATE TRIGGER refuse_update BEFORE UPDATE ON attachments FOR EACH ROW EXECUTE FUNCTION refuse_update()",
    )
    .execute(&mut app.database.connect())
    .unwrap();

    let (status, problem) = upload(&app, &member, &batch, "scan.png", "image/png", png(20_000)).await;
    assert_eq!((status, problem["code"].as_str()), (500, Some("internal_error")), "{problem}");
    assert_eq!(attachment_rows(&app), 0, "the pending row is removed");
    assert!(files_under(&media(&app)).is_empty(), "no orphan object: {:?}", files_under(&media(&app)));
}

#[tokio::test]
async fn a_client_that_disconnects_midway_leaves_nothing() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_with(&[]).await;
    let member = token(&app, "acme", "member");
    let batch = batch(&app, &member).await;
    let boundary = "XyZ";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"half.png\"\r\nContent-Type: image/png\r\n\r\n"
    );
    let request = format!(
        "POST /v1/batches/{batch}/attachments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {member}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{head}",
        head.len() + 60_000
    );
    let mut socket = tokio::net::TcpStream::connect(app.address).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(&png(30_000)).await.unwrap();
    socket.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(socket);
    stockflow_testkit::eventually("the half upload to be cleaned up", Duration::from_secs(10), || async {
        (attachment_rows(&app) == 0 && files_under(&media(&app)).is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn roles_and_organizations_bound_attachments() {
    let app = spawn_with(&[]).await;
    let member = token(&app, "acme", "member");
    let viewer = token(&app, "acme", "viewer");
    let outsider = token(&app, "globex", "admin");
    let batch = batch(&app, &member).await;
    let (status, problem) = upload(&app, &viewer, &batch, "a.png", "image/png", png(100)).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    let (_, attachment) = upload(&app, &member, &batch, "a.png", "image/png", png(100)).await;
    let id = attachment["id"].as_str().unwrap();
    let content = app.http.get(app.url(&format!("/v1/attachments/{id}/content"))).bearer_auth(&viewer).send().await;
    assert_eq!(content.unwrap().status(), 200, "viewers download");
    assert_eq!(call(&app, &viewer, Method::DELETE, &format!("/v1/attachments/{id}"), None).await.0, 403);

    assert_eq!(upload(&app, &outsider, &batch, "a.png", "image/png", png(100)).await.0, 404);
    for (method, path) in [
        (Method::GET, format!("/v1/batches/{batch}/attachments")),
        (Method::GET, format!("/v1/attachments/{id}")),
        (Method::GET, format!("/v1/attachments/{id}/content")),
        (Method::DELETE, format!("/v1/attachments/{id}")),
    ] {
        assert_eq!(call(&app, &outsider, method.clone(), &path, None).await.0, 404, "{method} {path}");
    }
    assert_eq!(files_under(&media(&app)).len(), 1, "still there");
}

#[tokio::test]
async fn x_accel_hands_the_file_to_nginx_and_the_protected_location_is_internal() {
    let app = spawn_with(&[("ATTACHMENT_DELIVERY", "x-accel")]).await;
    let member = token(&app, "acme", "member");
    let batch = batch(&app, &member).await;
    let bytes = png(20_000);
    let (_, attachment) = upload(&app, &member, &batch, "scan.png", "image/png", bytes.clone()).await;
    let id = attachment["id"].as_str().unwrap();

    let direct =
        app.http.get(app.url(&format!("/v1/attachments/{id}/content"))).bearer_auth(&member).send().await.unwrap();
    let key = format!(
        "{}/attachments/{id}",
        direct.headers()["x-accel-redirect"].to_str().unwrap().split('/').nth(3).unwrap()
    );
    assert_eq!(direct.headers()["x-accel-redirect"], format!("/_protected/media/{key}"));
    assert!(direct.bytes().await.unwrap().is_empty(), "the API sends no body itself");

    let nginx = Nginx::start(app.address.port(), &media(&app)).await;
    let via =
        app.http.get(nginx.url(&format!("/v1/attachments/{id}/content"))).bearer_auth(&member).send().await.unwrap();
    assert_eq!(via.status(), 200);
    let header = |name: &str| via.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("content-type").as_deref(), Some("image/png"));
    assert_eq!(header("content-disposition").as_deref(), Some(r#"attachment; filename="scan.png""#));
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(via.bytes().await.unwrap(), bytes);

    let ranged = app
        .http
        .get(nginx.url(&format!("/v1/attachments/{id}/content")))
        .bearer_auth(&member)
        .header("range", "bytes=0-7")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap(), bytes[..8]);

    let sneaky = app.http.get(nginx.url(&format!("/_protected/media/{key}"))).send().await.unwrap();
    assert_eq!(sneaky.status(), 404, "the protected location must not be reachable directly");
    let unauthorised = app.http.get(nginx.url(&format!("/v1/attachments/{id}/content"))).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401);
}

#[tokio::test]
async fn redirect_sends_clients_to_a_presigned_url_on_s3() {
    let s3 = S3Server::start().await;
    s3.create_bucket("media");
    let env: Vec<(String, String)> = s3.env("S3_", "media");
    let mut pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.extend([("STORAGE_BACKEND", "s3"), ("ATTACHMENT_DELIVERY", "redirect"), ("PRESIGN_TTL_SECS", "60")]);
    let app = spawn_with(&pairs).await;
    let member = token(&app, "acme", "member");
    let batch = batch(&app, &member).await;
    let bytes = png(30_000);
    let (status, attachment) = upload(&app, &member, &batch, "report final.png", "image/png", bytes.clone()).await;
    assert_eq!(status, 201, "{attachment}");
    let id = attachment["id"].as_str().unwrap();

    let no_redirects =
        stockflow_testkit::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let answer =
        no_redirects.get(app.url(&format!("/v1/attachments/{id}/content"))).bearer_auth(&member).send().await.unwrap();
    assert_eq!(answer.status(), 302);
    assert_eq!(answer.headers()["x-content-type-options"], "nosniff");
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&s3.endpoint()) && location.contains("X-Amz-Expires=60"), "{location}");

    let fetched = reqwest::get(&location).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers()["content-disposition"], r#"attachment; filename="report final.png""#);
    assert_eq!(fetched.bytes().await.unwrap(), bytes);
}

#[test]
fn delivery_modes_must_suit_the_storage_backend() {
    for (delivery, backend) in [("x-accel", "s3"), ("redirect", "local")] {
        let mut env = stockflow_config::Env::from_pairs([
            ("DATABASE_URL", "postgres://u:p@127.0.0.1/db"),
            ("AMQP_URL", "amqp://127.0.0.1:5672/%2f"),
            ("MEDIA_ROOT", "/tmp/media"),
            ("ATTACHMENT_DELIVERY", delivery),
            ("STORAGE_BACKEND", backend),
        ]);
        if backend == "s3" {
            env = env.with("S3_BUCKET", "media").with("AWS_ACCESS_KEY_ID", "k").with("AWS_SECRET_ACCESS_KEY", "s");
        }
        let error = Settings::from_env(&env).unwrap_err().to_string();
        assert!(
            error.starts_with("ATTACHMENT_DELIVERY: expected stream, or x-accel with STORAGE_BACKEND=local"),
            "{error}"
        );
    }
}
