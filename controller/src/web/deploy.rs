//! Agent deployment over HTTP: start a deploy or removal on a server
//! (admin), follow its steps, list and upload agent packages, create join
//! tokens with the one-line install for hosts the controller cannot SSH
//! into, and serve packages for it.

use axum::Json;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::api::JsonBody;
use super::caller::ApiCaller;
use super::error::{ApiError, ApiResult};
use crate::auth::Act;
use crate::deploy::{Action, packages};

/// Largest package accepted by upload (a release agent is a few MiB).
const MAX_PACKAGE: u64 = 256 * 1024 * 1024;

#[derive(Deserialize)]
pub struct DeployBody {
    role: String,
}

fn role_of(s: &str) -> ApiResult<certs::Role> {
    s.parse().map_err(|_| {
        ApiError::invalid(
            "role",
            format!("{s:?} is not an agent role (monitor or jmeter)"),
        )
    })
}

async fn start(
    st: AppState,
    caller: ApiCaller,
    id: i64,
    role: &str,
    action: Action,
) -> ApiResult<Response> {
    let server = st.inventory.server(id)?;
    caller.may(Act::EditServer {
        group: server.group_id,
    })?;
    let role = role_of(role)?;
    let cred = st.inventory.server_credential(id, &st.vault)?.ok_or_else(|| {
        ApiError::Conflict(format!(
            "server {:?} has no stored SSH credential; add one, or install by hand with the one-line install",
            server.name
        ))
    })?;
    let job = st
        .deployer
        .start(server, cred, role, action, &caller.subject.name)
        .map_err(ApiError::Conflict)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "job": job })),
    )
        .into_response())
}

pub async fn deploy(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    JsonBody(b): JsonBody<DeployBody>,
) -> ApiResult<Response> {
    start(st, caller, id, &b.role, Action::Deploy).await
}

pub async fn remove(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    JsonBody(b): JsonBody<DeployBody>,
) -> ApiResult<Response> {
    start(st, caller, id, &b.role, Action::Remove).await
}

pub async fn job(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.may(Act::SeeOperations)?;
    let job = st.deployer.jobs.get(&id).ok_or_else(|| {
        ApiError::NotFound("no such job (jobs are kept until the controller restarts)".into())
    })?;
    Ok(Json(job).into_response())
}

pub async fn packages_list(caller: ApiCaller, State(st): State<AppState>) -> ApiResult<Response> {
    caller.may(Act::SeeOperations)?;
    let pkgs = packages::scan(&st.deployer.packages_dir)
        .map_err(|_| ApiError::Internal("cannot read the packages folder"))?;
    Ok(Json(pkgs).into_response())
}

/// Stores uploaded agent packages (tarballs named as `scripts/dist` names
/// them) in the packages folder.
pub async fn packages_upload(
    caller: ApiCaller,
    State(st): State<AppState>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> ApiResult<Response> {
    caller.may(Act::EditEstate)?;
    let dir = st.deployer.packages_dir.clone();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|_| ApiError::Internal("cannot create the packages folder"))?;
    let mut stored = Vec::new();
    while let Some(file) =
        super::plans::spool_file(&headers, &mut multipart, &st.upload_spool, MAX_PACKAGE).await?
    {
        let name = file.name;
        if packages::parse_name(&name).is_none() {
            return Err(ApiError::invalid(
                "file",
                format!(
                    "{name:?} is not an agent package name (agent-<monitor|jmeter>-<version>-linux-<arch>.tar.gz)"
                ),
            ));
        }
        let mut head = [0u8; 2];
        let gzip = match tokio::fs::File::open(&file.path).await {
            Ok(mut f) => {
                use tokio::io::AsyncReadExt;
                f.read_exact(&mut head).await.is_ok() && head == [0x1f, 0x8b]
            }
            Err(_) => false,
        };
        if !gzip {
            return Err(ApiError::invalid(
                "file",
                format!("{name} is not a gzip file"),
            ));
        }
        // Copied, not renamed: the spool may be on another file system; a
        // half-copied file never carries the package's name.
        let part = dir.join(format!(".{name}.part"));
        tokio::fs::copy(&file.path, &part)
            .await
            .map_err(|_| ApiError::Internal("cannot write the packages folder"))?;
        tokio::fs::rename(&part, dir.join(&name))
            .await
            .map_err(|_| ApiError::Internal("cannot write the packages folder"))?;
        let size = file.len;
        let _ = st.inventory.audit(
            &caller.subject.name,
            "package_upload",
            None,
            &format!("{name} ({size} bytes)"),
        );
        stored.push(serde_json::json!({ "name": name, "bytes": size }));
    }
    if stored.is_empty() {
        return Err(ApiError::invalid("file", "no package in the upload"));
    }
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "stored": stored })),
    )
        .into_response())
}

/// A registered package, for hosts installing by hand (`curl` it, check
/// its SHA-256 from the install line, unpack, run install.sh). Public:
/// packages hold no secret, and the install line carries the digest.
pub async fn package_file(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    if packages::parse_name(&name).is_none() {
        return Err(ApiError::NotFound("no such package".into()));
    }
    let path = st.deployer.packages_dir.join(&name);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::NotFound("no such package".into()))?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let mut r =
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/gzip"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(r)
}

#[derive(Deserialize)]
pub struct TokenBody {
    role: String,
    #[serde(default = "one")]
    uses: u32,
    #[serde(default = "sixty")]
    ttl_minutes: u64,
}

fn one() -> u32 {
    1
}

fn sixty() -> u64 {
    60
}

/// One way to install an agent on a host the controller cannot reach over
/// SSH: a shell line per registered package that downloads it from this
/// controller, checks its SHA-256 (so the line itself vouches for what runs,
/// over HTTP or HTTPS alike), unpacks it and runs its install.sh with the
/// token and the CA pin.
#[derive(Serialize)]
struct InstallLine {
    arch: String,
    file: String,
    sha256: String,
    command: String,
}

/// Creates a join token and the install lines that use it. The token is
/// shown once.
pub async fn token_create(
    caller: ApiCaller,
    State(st): State<AppState>,
    headers: HeaderMap,
    JsonBody(b): JsonBody<TokenBody>,
) -> ApiResult<Response> {
    caller.may(Act::ManageUsers)?;
    let role = role_of(&b.role)?;
    if b.uses == 0 || b.uses > 10_000 {
        return Err(ApiError::invalid("uses", "between 1 and 10000"));
    }
    if b.ttl_minutes == 0 || b.ttl_minutes > 60 * 24 * 30 {
        return Err(ApiError::invalid(
            "ttl_minutes",
            "between 1 minute and 30 days",
        ));
    }
    let t = crate::gateway::create_token(
        &st.inventory,
        role,
        b.uses,
        std::time::Duration::from_secs(b.ttl_minutes * 60),
        None,
        None,
    )?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if st.web.secure_cookies {
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://{host}{}", st.web.prefix);
    let secret = t.token.expose_secret().to_string();
    let mut lines = Vec::new();
    let all = packages::scan(&st.deployer.packages_dir)
        .map_err(|_| ApiError::Internal("cannot read the packages folder"))?;
    for p in all.iter().filter(|p| p.role == role) {
        let data = tokio::fs::read(&p.path)
            .await
            .map_err(|_| ApiError::Internal("cannot read a package"))?;
        let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, &data));
        let dir = p.file_name.trim_end_matches(".tar.gz");
        let command = format!(
            "curl -fsSLO {base}/packages/{f} && echo '{sha}  {f}' | sha256sum -c - && tar -xzf {f} && sudo MYPLATFORM_TOKEN={secret} sh {dir}/install.sh --controller {gw} --ca-pin {pin}",
            f = p.file_name,
            gw = st.deployer.gateway,
            pin = st.deployer.ca_pin,
        );
        lines.push(InstallLine {
            arch: p.arch.clone(),
            file: p.file_name.clone(),
            sha256: sha,
            command,
        });
    }
    let _ = st.inventory.audit(
        &caller.subject.name,
        "token_create",
        None,
        &format!("{role}, {} use(s), {} min", b.uses, b.ttl_minutes),
    );
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "token": secret,
            "role": role.to_string(),
            "uses": b.uses,
            "expires_at": t.policy.expires_at,
            "agent_command": format!(
                "agent-{role} --controller {} --token {secret} --ca-pin {}",
                st.deployer.gateway, st.deployer.ca_pin
            ),
            "install_lines": lines,
        })),
    )
        .into_response())
}

pub async fn tokens_list(caller: ApiCaller, State(st): State<AppState>) -> ApiResult<Response> {
    caller.may(Act::ManageUsers)?;
    let live = st.inventory.live_tokens(crate::inventory::unix_now())?;
    Ok(Json(
        live.into_iter()
            .map(|t| {
                serde_json::json!({
                    "role": t.role.to_string(), "uses_left": t.uses_left, "expires_at": t.expires_at,
                    "group": t.group, "room": t.room,
                })
            })
            .collect::<Vec<_>>(),
    )
    .into_response())
}
