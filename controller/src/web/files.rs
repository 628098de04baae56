//! Upload to and download from a managed server through the browser:
//! `POST /api/servers/{id}/files?dir=/abs/dir` (multipart, several files,
//! streamed to SFTP as they arrive, a result per file) and
//! `GET`/`HEAD /api/servers/{id}/files?path=/abs/file` (streamed from SFTP
//! with constant memory). Both are policy-checked like the shell, switched
//! off by `shell.transfers = false`, and written to the audit log with path
//! and size. Refusals carry their reason in the JSON body (the page asks
//! with `HEAD` first, and on a refusal reads the reason with `GET`).

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tracing::info;

use super::AppState;
use super::caller::ApiCaller;
use super::error::ApiError;
use crate::auth::Act;
use crate::inventory::Server;
use crate::shell::transfer::{self, FileName, RemotePath, TransferError};
use crate::ssh::{self, Connection};

fn refusal(e: ApiError) -> Response {
    e.into_response()
}

fn transfer_error(e: TransferError) -> ApiError {
    match e {
        TransferError::InvalidPath(p) => ApiError::invalid("path", p.to_string()),
        TransferError::NotFound { .. } => ApiError::NotFound(e.to_string()),
        TransferError::NoSpace { .. } => {
            ApiError::BadRequest(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
        }
        TransferError::Ssh(_) => ApiError::Upstream(e.to_string()),
        TransferError::Protocol(_) | TransferError::SourceFailed(_) => {
            ApiError::Upstream(e.to_string())
        }
        TransferError::NotADirectory { .. }
        | TransferError::IsADirectory { .. }
        | TransferError::NotARegularFile { .. }
        | TransferError::PermissionDenied { .. } => ApiError::invalid("path", e.to_string()),
    }
}

/// The server, if the caller may transfer files with it.
fn allowed(st: &AppState, caller: &ApiCaller, id: i64) -> Result<Server, ApiError> {
    let server = st.inventory.server(id)?;
    caller.may(Act::SeeServer {
        group: server.group_id,
    })?;
    caller.may(Act::UseServer {
        group: server.group_id,
    })?;
    if !st.shell.transfers {
        return Err(ApiError::BadRequest(
            StatusCode::FORBIDDEN,
            "uploads and downloads are switched off on this controller".into(),
        ));
    }
    Ok(server)
}

async fn connect(st: &AppState, server: &Server) -> Result<Connection, ApiError> {
    let cred = st
        .inventory
        .server_credential(server.id, &st.vault)?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "server {:?} has no stored SSH credential",
                server.name
            ))
        })?;
    let conn = ssh::connect_server(
        server,
        &cred,
        Duration::from_secs(st.shell.connect_timeout_secs),
    )
    .await
    .map_err(|e| ApiError::Upstream(format!("cannot reach {}: {e}", server.name)))?;
    if server.host_key.is_none() {
        let _ = st.inventory.set_host_key(server.id, Some(&conn.host_key()));
    }
    Ok(conn)
}

#[derive(Deserialize)]
pub struct UploadQuery {
    dir: String,
}

#[derive(Serialize)]
struct FileResult {
    name: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub async fn upload(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<UploadQuery>,
    mut multipart: Multipart,
) -> Response {
    let server = match allowed(&st, &caller, id) {
        Ok(s) => s,
        Err(e) => return refusal(e),
    };
    let dir = match RemotePath::parse(&q.dir) {
        Ok(d) => d,
        Err(e) => return refusal(ApiError::invalid("dir", e.to_string())),
    };
    let conn = match connect(&st, &server).await {
        Ok(c) => c,
        Err(e) => return refusal(e),
    };
    let mut results = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                results.push(FileResult {
                    name: "(request)".into(),
                    ok: false,
                    bytes: None,
                    path: None,
                    error: Some(format!("the upload was interrupted: {e}")),
                });
                break;
            }
        };
        let Some(raw_name) = field.file_name().map(str::to_string) else {
            // Not a file (a stray form field): skip its content.
            continue;
        };
        let name = match FileName::parse(&raw_name) {
            Ok(n) => n,
            Err(e) => {
                results.push(FileResult {
                    name: raw_name,
                    ok: false,
                    bytes: None,
                    path: None,
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        let path = format!("{}/{}", dir.as_str().trim_end_matches('/'), name.as_str());
        let body = field.map(|c| c.map_err(|e| e.to_string()));
        let r = transfer::upload(&conn, &dir, &name, Box::pin(body), |_| {}).await;
        match r {
            Ok(bytes) => {
                let _ = st.inventory.audit(
                    &caller.subject.name,
                    "upload",
                    Some((server.id, &server.name)),
                    &format!("{path} ({bytes} bytes)"),
                );
                info!(user = %caller.subject.name, server = %server.name, %path, bytes, "uploaded");
                results.push(FileResult {
                    name: raw_name,
                    ok: true,
                    bytes: Some(bytes),
                    path: Some(path),
                    error: None,
                });
            }
            Err(e) => {
                let _ = st.inventory.audit(
                    &caller.subject.name,
                    "upload_failed",
                    Some((server.id, &server.name)),
                    &format!("{path}: {e}"),
                );
                results.push(FileResult {
                    name: raw_name,
                    ok: false,
                    bytes: None,
                    path: Some(path),
                    error: Some(e.to_string()),
                });
            }
        }
    }
    conn.disconnect().await;
    let failed = results.iter().filter(|r| !r.ok).count();
    let status = if results.is_empty() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else if failed == 0 {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let error = match (results.is_empty(), failed) {
        (true, _) => Some("no file in the upload".to_string()),
        (false, 0) => None,
        (false, n) => Some(format!("{n} of {} file(s) failed", results.len())),
    };
    (
        status,
        axum::Json(serde_json::json!({ "files": results, "error": error })),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct DownloadQuery {
    path: String,
}

/// `filename*` per RFC 6266/5987: any name survives, quotes and newlines
/// included, without breaking the header.
pub(super) fn content_disposition(name: &str) -> HeaderValue {
    let mut enc = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{enc}"))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

pub async fn download(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<DownloadQuery>,
) -> Response {
    let server = match allowed(&st, &caller, id) {
        Ok(s) => s,
        Err(e) => return refusal(e),
    };
    let path = match RemotePath::parse(&q.path) {
        Ok(p) => p,
        Err(e) => return refusal(ApiError::invalid("path", e.to_string())),
    };
    let conn = match connect(&st, &server).await {
        Ok(c) => c,
        Err(e) => return refusal(e),
    };
    let dl = match transfer::download(&conn, &path).await {
        Ok(d) => d,
        Err(e) => return refusal(transfer_error(e)),
    };
    let _ = st.inventory.audit(
        &caller.subject.name,
        "download",
        Some((server.id, &server.name)),
        &format!("{} ({} bytes)", path.as_str(), dl.size),
    );
    info!(user = %caller.subject.name, server = %server.name, path = path.as_str(), bytes = dl.size, "download");
    // The stream must keep the SSH connection open until its last byte.
    let stream = dl.stream.map(move |chunk| {
        let _keep = &conn;
        chunk.map_err(std::io::Error::other)
    });
    let mut r = axum::body::Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(dl.size));
    h.insert(header::CONTENT_DISPOSITION, content_disposition(&dl.name));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_file_name_makes_a_valid_header() {
        let h = content_disposition("a \"b\"\n;c 世.txt");
        let s = h.to_str().unwrap();
        assert!(
            s.starts_with("attachment; filename*=UTF-8''a%20%22b%22%0A%3Bc%20%E4%B8%96.txt"),
            "{s}"
        );
    }
}
