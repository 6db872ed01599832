//! `POST /v1/batches/{id}/attachments`: a multipart `file` field streamed
//! straight into storage, its type sniffed from its first bytes and its size
//! capped while it streams.

use super::{AttachmentView, Uploads};
use crate::auth::Caller;
use crate::openapi::problems;
use crate::problem::ApiError;
use actix_multipart::Multipart;
use actix_web::{HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use stockflow_db::attachments::{self, NewAttachment};
use stockflow_db::{Database, DbError, batches};
use stockflow_domain::{DisplayFilename, Role, SNIFF_BYTES, sniff};
use stockflow_storage::{ByteStream, Key, PutMode, StorageError};
use tokio::sync::mpsc;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use uuid::Uuid;

/// Chunks in flight between the request and the storage put: enough to keep
/// both busy, few enough that a slow store slows the client, not our memory.
const CHANNEL_CHUNKS: usize = 4;

/// What the request side sends the put. The put sees the end of the body
/// only on `End`: a channel that closes without it (a client that went away,
/// a request cancelled) fails the put, so a cut-off body is never stored.
enum Message {
    Chunk(Bytes),
    End,
}

/// The multipart body, as the OpenAPI document describes it; the handler
/// reads it field by field instead, so nothing is buffered whole.
pub(crate) struct UploadForm;

impl utoipa::PartialSchema for UploadForm {
    fn schema() -> RefOr<Schema> {
        let file = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some(
                "The file. Its type is sniffed from its first bytes; its part's filename is kept for display only.",
            ));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("file", file)
            .required("file")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some("Only the field `file`: any other is refused (422 naming it)."))
            .into()
    }
}

impl utoipa::ToSchema for UploadForm {}

#[utoipa::path(
    post,
    path = "/v1/batches/{id}/attachments",
    tag = "attachments",
    operation_id = "upload_attachment",
    description = "Needs the member role. The file streams straight into storage; a client that \
        disconnects midway leaves nothing behind.",
    params(("id" = Uuid, Path, description = "The batch's id")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored", body = AttachmentView,
            headers(("Location" = String, description = "The attachment's path"))),
        (status = 400, response = problems::BadRequest),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::NotFound),
        (status = 413, response = problems::PayloadTooLarge),
        (status = 415, response = problems::UnsupportedMediaType),
        (status = 422, response = problems::ValidationFailed),
    ),
)]
#[tracing::instrument(skip_all, fields(org = %caller.org.slug, batch = %batch), err(level = "info"))]
pub(crate) async fn upload(
    caller: Caller,
    database: web::Data<Database>,
    uploads: web::Data<Uploads>,
    batch: web::Path<Uuid>,
    mut multipart: Multipart,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Member)?;
    let (org, batch) = (caller.org.id, batch.into_inner());
    let exists = database.run(move |conn| batches::find(conn, org, batch).map_err(ApiError::from)).await?.is_some();
    if !exists {
        return Err(ApiError::NotFound("batch"));
    }
    let mut field = match multipart.next().await {
        Some(Ok(field)) if field.name() == Some("file") => field,
        Some(Ok(field)) => return Err(unknown_part(&field)),
        Some(Err(error)) => return Err(malformed(&error)),
        None => return Err(ApiError::invalid("file", "send the file as a multipart form field named \"file\"")),
    };
    let filename = DisplayFilename::sanitize(
        field.content_disposition().and_then(|disposition| disposition.get_filename()).unwrap_or_default(),
    );
    let max = uploads.settings.max_upload_bytes.get();
    let too_large = || ApiError::PayloadTooLarge(format!("the file is larger than {max} bytes (MAX_UPLOAD_BYTES)"));

    // The type is decided before anything is stored.
    let mut head = BytesMut::new();
    // A field must not be polled again once it has ended.
    let mut ended = false;
    while head.len() < SNIFF_BYTES {
        match field.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(error)) => return Err(ApiError::BadRequest(format!("the upload was interrupted: {error}"))),
            None => {
                ended = true;
                break;
            }
        }
    }
    if head.len() as u64 > max {
        return Err(too_large());
    }
    let mime = sniff(&head[..head.len().min(SNIFF_BYTES)], &filename)
        .filter(|mime| uploads.settings.allowed_types.allows(*mime))
        .ok_or(ApiError::UnsupportedType)?;
    let filename = filename.for_type(mime);

    let id = Uuid::new_v4();
    let key = Key::attachment(org, id);
    let row = (key.as_str().to_owned(), filename.as_str().to_owned(), mime.as_str(), caller.user.id);
    database
        .run(move |conn| {
            let (storage_key, filename, content_type, created_by) = &row;
            let new = NewAttachment {
                id,
                org_id: org,
                batch_id: batch,
                storage_key,
                filename,
                content_type,
                created_by: *created_by,
            };
            attachments::insert_pending(conn, &new).map_err(ApiError::from)
        })
        .await?;

    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    // The put runs as its own task, so it finishes (or cleans up) even when
    // this request is dropped midway.
    let store = tokio::spawn(store(uploads.clone(), database.clone(), key, id, receiver));
    let streamed = match forward(head.freeze(), (!ended).then_some(&mut field), &sender, max).await {
        Ok(()) => {
            drop(field);
            nothing_after_the_file(&mut multipart).await
        }
        interrupted => interrupted,
    };
    // Without `End` the put fails and keeps nothing: a body that turns out
    // to be wrong after the file is never stored.
    if streamed.is_ok() {
        // Fails only if the put already ended (with an error it reports).
        let _ = sender.send(Message::End).await;
    }
    drop(sender);
    let stored = store.await.map_err(|error| ApiError::Internal(DbError::from(error)))?;
    match (streamed, stored) {
        (Err(Interrupted::TooLarge), _) => Err(too_large()),
        (Err(Interrupted::Client(error)), _) => {
            Err(ApiError::BadRequest(format!("the upload was interrupted: {error}")))
        }
        (Err(Interrupted::Refused(error)), _) => Err(error),
        (Ok(()), Err(error)) => Err(error),
        (Ok(()), Ok(attachment)) => Ok(HttpResponse::Created()
            .insert_header(("Location", format!("/v1/attachments/{}", attachment.id)))
            .json(AttachmentView::from(attachment))),
    }
}

enum Interrupted {
    TooLarge,
    Client(actix_multipart::MultipartError),
    /// The body goes on with another part after the file.
    Refused(ApiError),
}

/// The body must hold the file and nothing else, as a JSON body may hold
/// no unknown field: another part is a 422 naming it.
async fn nothing_after_the_file(multipart: &mut Multipart) -> Result<(), Interrupted> {
    match multipart.next().await {
        None => Ok(()),
        Some(Ok(field)) => Err(Interrupted::Refused(unknown_part(&field))),
        Some(Err(error)) => Err(Interrupted::Refused(malformed(&error))),
    }
}

fn unknown_part(field: &actix_multipart::Field) -> ApiError {
    match field.name() {
        Some("file") => ApiError::invalid("file", "send one file only"),
        Some(name) => ApiError::invalid(name, "unknown field; send only the multipart field \"file\""),
        None => ApiError::invalid("body", "a part without a name; send only the multipart field \"file\""),
    }
}

fn malformed(error: &actix_multipart::MultipartError) -> ApiError {
    ApiError::BadRequest(format!("the multipart body is malformed: {error}"))
}

/// Sends the body on to the put, counting bytes so the limit holds however
/// the client chunks it.
async fn forward(
    head: Bytes,
    rest: Option<&mut actix_multipart::Field>,
    sender: &mpsc::Sender<Message>,
    max: u64,
) -> Result<(), Interrupted> {
    let mut size = head.len() as u64;
    if !head.is_empty() && sender.send(Message::Chunk(head)).await.is_err() {
        return Ok(());
    }
    let Some(field) = rest else { return Ok(()) };
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(Interrupted::Client)?;
        size += chunk.len() as u64;
        if size > max {
            return Err(Interrupted::TooLarge);
        }
        if sender.send(Message::Chunk(chunk)).await.is_err() {
            // The put gave up; its error is the one to report.
            return Ok(());
        }
    }
    Ok(())
}

/// Puts the body, then marks the row stored. On any failure it removes the
/// pending row, and the object too when the put had stored one, so a row
/// update that fails leaves no orphan behind.
async fn store(
    uploads: web::Data<Uploads>,
    database: web::Data<Database>,
    key: Key,
    id: Uuid,
    receiver: mpsc::Receiver<Message>,
) -> Result<attachments::Attachment, ApiError> {
    let put = uploads.storage.put(&key, body(receiver), PutMode::CreateNew).await;
    let outcome = match put {
        Ok(stored) => {
            let marked = database
                .run(move |conn| {
                    attachments::mark_stored(conn, id, stored.size, &stored.sha256).map_err(ApiError::from)
                })
                .await;
            if marked.is_err()
                && let Err(error) = uploads.storage.delete(&key).await
            {
                tracing::warn!(attachment = %id, %key, %error, "cannot remove the object of a failed upload; the sweep will");
            }
            marked
        }
        Err(StorageError::Body(_)) => Err(ApiError::BadRequest("the upload did not complete".to_owned())),
        Err(error) => Err(ApiError::Storage(error)),
    };
    if outcome.is_err() {
        let removed = database.run(move |conn| attachments::delete_pending(conn, id).map_err(DbError::from)).await;
        if let Err(error) = removed {
            tracing::warn!(attachment = %id, %error, "cannot remove the row of a failed upload; the sweep will");
        }
    }
    outcome
}

fn body(receiver: mpsc::Receiver<Message>) -> ByteStream {
    futures_util::stream::unfold((receiver, false), |(mut receiver, ended)| async move {
        if ended {
            return None;
        }
        match receiver.recv().await {
            Some(Message::Chunk(chunk)) => Some((Ok(chunk), (receiver, false))),
            Some(Message::End) => None,
            None => Some((
                Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the upload stopped before its end")),
                (receiver, true),
            )),
        }
    })
    .boxed()
}
