//! Load-test plans over HTTP: the JSON API the plan editor saves through,
//! data-file uploads, and the plan pages. Everything a plan may be is
//! decided by `loadtest` and `loadplan`; this module only reads requests
//! and writes answers.

use std::path::PathBuf;

use axum::Json;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use loadplan::TestPlan;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::api::JsonBody;
use super::caller::{ApiCaller, PageCaller, PageRejection};
use super::error::{ApiError, ApiResult};
use super::pages::{Chrome, chrome, render};
use crate::auth::Act;
use crate::inventory::{PlanFile, PlanKind, StoredPlan};
use crate::loadtest::RoomGenerators;

/// Load generators per room id.
type Generators = std::collections::HashMap<i64, RoomGenerators>;

/// A plan as the list shows it.
#[derive(Serialize)]
struct PlanSummary {
    id: i64,
    name: String,
    kind: PlanKind,
    enabled: bool,
    load: loadplan::Load,
    duration_secs: u32,
    automatic: bool,
    room_id: Option<i64>,
    room: Option<String>,
    generators: u32,
    /// Load generators of the plan's room.
    room_generators: RoomGenerators,
    thread_groups: usize,
    samplers: usize,
    updated_by: String,
    updated_at: u64,
}

fn summaries(st: &AppState, gens: &Generators) -> ApiResult<Vec<PlanSummary>> {
    let rooms = st.inventory.rooms()?;
    Ok(st
        .inventory
        .plans()?
        .into_iter()
        .map(|p| {
            let room_id = p.plan.run.room_id;
            PlanSummary {
                id: p.id,
                kind: p.kind,
                enabled: p.plan.enabled,
                load: p.plan.run.load,
                duration_secs: p.plan.run.duration_secs,
                automatic: matches!(p.plan.run.schedule, loadplan::Schedule::Automatic { .. }),
                room: room_id
                    .and_then(|r| rooms.iter().find(|x| x.id == r).map(|x| x.name.clone())),
                room_generators: room_id
                    .and_then(|r| gens.get(&r).copied())
                    .unwrap_or_default(),
                room_id,
                generators: p.plan.run.generators,
                thread_groups: p.plan.thread_groups.len(),
                samplers: p
                    .plan
                    .thread_groups
                    .iter()
                    .flat_map(|g| &g.controllers)
                    .map(|c| c.samplers.len())
                    .sum(),
                name: p.plan.name,
                updated_by: p.updated_by,
                updated_at: p.updated_at,
            }
        })
        .collect())
}

pub async fn list(caller: ApiCaller, State(st): State<AppState>) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let gens = st.plans.generators(&st.registry);
    Ok(Json(summaries(&st, &gens)?).into_response())
}

/// A plan with its files, as the editor loads it.
#[derive(Serialize)]
struct PlanDetail {
    #[serde(flatten)]
    stored: StoredPlan,
    files: Vec<PlanFile>,
}

pub async fn get_one(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let stored = st.plans.get(id)?;
    let files = st.inventory.plan_files(id)?;
    Ok(Json(PlanDetail { stored, files }).into_response())
}

pub async fn create(
    caller: ApiCaller,
    State(st): State<AppState>,
    JsonBody(plan): JsonBody<TestPlan>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let id = st.plans.create(&plan, &caller.subject.name).await?;
    audit(&st, &caller, "plan_create", &plan.name);
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": id, "revision": 1 })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveBody {
    /// The revision the editor loaded.
    revision: i64,
    plan: TestPlan,
}

pub async fn save(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    JsonBody(b): JsonBody<SaveBody>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let revision = st
        .plans
        .save(id, b.revision, &b.plan, &caller.subject.name)
        .await?;
    audit(
        &st,
        &caller,
        "plan_save",
        &format!("{} (revision {revision})", b.plan.name),
    );
    Ok(Json(serde_json::json!({ "id": id, "revision": revision })).into_response())
}

pub async fn delete(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let name = st.plans.get(id)?.plan.name;
    st.plans.delete(id).await?;
    audit(&st, &caller, "plan_delete", &name);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn copy(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let new = st.plans.copy(id, &caller.subject.name).await?;
    let name = st.plans.get(new)?.plan.name;
    audit(&st, &caller, "plan_copy", &name);
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": new, "name": name })),
    )
        .into_response())
}

/// Largest .jmx accepted for import (the parser has its own ceiling too).
const MAX_JMX: u64 = 16 << 20;

/// Imports an uploaded .jmx as a new plan; answers the plan's id and what
/// the import left out or changed.
pub async fn import(
    caller: ApiCaller,
    State(st): State<AppState>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let Some(file) = spool_file(&headers, &mut multipart, &st.upload_spool, MAX_JMX).await? else {
        return Err(ApiError::invalid("file", "no .jmx file in the upload"));
    };
    let bytes = tokio::fs::read(&file.path)
        .await
        .map_err(|_| ApiError::Internal("cannot read the upload spool"))?;
    let (id, plan, notes) = st
        .plans
        .import(&bytes, &file.name, &caller.subject.name)
        .await?;
    audit(
        &st,
        &caller,
        "plan_import",
        &format!("{} from {} ({} notes)", plan.name, file.name, notes.len()),
    );
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": id, "name": plan.name, "notes": notes })),
    )
        .into_response())
}

/// The plan as a .jmx JMeter opens (GUI) or runs (non-GUI) unchanged.
pub async fn jmx(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let stored = st.plans.get(id)?;
    if stored.kind == PlanKind::Upload {
        return Err(ApiError::NotFound(
            "an uploaded JMeter zip has its own .jmx: download the zip".into(),
        ));
    }
    let bytes = loadplan::jmx::generate(&stored.plan);
    let len = bytes.len() as u64;
    let stream = futures_util::stream::once(async move { Ok(bytes::Bytes::from(bytes)) });
    Ok(download(
        Box::pin(stream),
        len,
        &format!("{}.jmx", stored.plan.name),
        "application/xml",
    ))
}

/// Takes an uploaded JMeter zip as a new plan (run settings to be set in
/// the editor).
pub async fn upload(
    caller: ApiCaller,
    State(st): State<AppState>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let limit = st.plans.settings.max_upload_mib << 20;
    let Some(file) = spool_file(&headers, &mut multipart, &st.upload_spool, limit).await? else {
        return Err(ApiError::invalid("file", "no zip file in the upload"));
    };
    let (id, stored) = st
        .plans
        .upload(
            &file.path,
            &file.name,
            file.len,
            &file.sha256,
            &caller.subject.name,
        )
        .await?;
    audit(
        &st,
        &caller,
        "plan_upload",
        &format!(
            "{} from {} ({} bytes)",
            stored.plan.name, file.name, file.len
        ),
    );
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": id, "name": stored.plan.name, "bundle": stored.bundle })),
    )
        .into_response())
}

/// The uploaded zip of a plan, as it was uploaded.
pub async fn bundle(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let stored = st.plans.get(id)?;
    let Some(b) = stored.bundle else {
        return Err(ApiError::NotFound(
            "this plan was built in the editor: download its .jmx".into(),
        ));
    };
    let (len, stream) = st.files.get(&b.key).await.map_err(|e| {
        tracing::error!(error = %e, "reading an uploaded zip");
        ApiError::NotFound("the zip is missing from the file store".into())
    })?;
    Ok(download(
        stream,
        len,
        &format!("{}.zip", stored.plan.name),
        "application/zip",
    ))
}

/// Builds the run files of a plan (what a task would run) and answers
/// their digest, what preparing them noticed, and each generator's `-J`
/// arguments, without keeping them.
pub async fn prepare(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let dest = tempfile::Builder::new()
        .suffix(".zip")
        .tempfile_in(&st.upload_spool)
        .map_err(|_| ApiError::Internal("cannot write the upload spool"))?
        .into_temp_path();
    let run = st.plans.build_artifact(id, &dest).await?;
    Ok(Json(run).into_response())
}

/// The run files of a plan as one zip: the prepared .jmx and every file it
/// reads (its SHA-256 in `X-Checksum-Sha256`), to inspect or run by hand.
pub async fn run_files(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let name = st.plans.get(id)?.plan.name;
    let dest = tempfile::Builder::new()
        .suffix(".zip")
        .tempfile_in(&st.upload_spool)
        .map_err(|_| ApiError::Internal("cannot write the upload spool"))?
        .into_temp_path();
    let run = st.plans.build_artifact(id, &dest).await?;
    // Open, then let the temp path go: the open file streams on, and the
    // name is gone from the spool at once.
    let file = tokio::fs::File::open(&dest)
        .await
        .map_err(|_| ApiError::Internal("cannot read the run files"))?;
    drop(dest);
    let mut r = file_download(
        file,
        run.size,
        &format!("{name}-run.zip"),
        "application/zip",
    );
    if let Ok(v) = HeaderValue::from_str(&run.sha256) {
        r.headers_mut().insert("x-checksum-sha256", v);
    }
    Ok(r)
}

/// A multipart file field written to a spool file, with its size and
/// SHA-256; refused (and removed) as soon as it passes `limit` bytes.
pub struct Spooled {
    pub name: String,
    pub path: tempfile::TempPath,
    pub len: u64,
    pub sha256: String,
}

/// Spools the next file field of `multipart`, or `None` when there is none.
pub async fn spool_file(
    headers: &HeaderMap,
    multipart: &mut Multipart,
    dir: &std::path::Path,
    limit: u64,
) -> ApiResult<Option<Spooled>> {
    // A body announced far over the limit is refused before it is read, so
    // a client waiting for "100 Continue" hears 413 instead of sending
    // gigabytes first. (Multipart framing adds a little; 64 KiB allows it.)
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit + 64 * 1024) {
        return Err(ApiError::BadRequest(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the upload is larger than the limit of {} MiB", limit >> 20),
        ));
    }
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::BadRequest(StatusCode::BAD_REQUEST, e.to_string())
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let Some(name) = field.file_name().map(str::to_string) else {
            continue;
        };
        let tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|_| ApiError::Internal("cannot write the upload spool"))?
            .into_temp_path();
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|_| ApiError::Internal("cannot write the upload spool"))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut len = 0u64;
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            len += chunk.len() as u64;
            if len > limit {
                return Err(ApiError::BadRequest(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("{name}: larger than the limit of {} MiB", limit >> 20),
                ));
            }
            ctx.update(&chunk);
            f.write_all(&chunk)
                .await
                .map_err(|_| ApiError::Internal("cannot write the upload spool"))?;
        }
        f.flush()
            .await
            .map_err(|_| ApiError::Internal("cannot write the upload spool"))?;
        return Ok(Some(Spooled {
            name,
            path: tmp,
            len,
            sha256: hex::encode(ctx.finish()),
        }));
    }
    Ok(None)
}

pub async fn file_upload(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    st.plans.get(id)?;
    let limit = st.plans.settings.max_data_file_mib << 20;
    let Some(file) = spool_file(&headers, &mut multipart, &st.upload_spool, limit).await? else {
        return Err(ApiError::invalid("file", "no file in the upload"));
    };
    let stored = st
        .plans
        .put_data_file(id, &file.name, &file.path, file.len, &file.sha256)
        .await?;
    audit(
        &st,
        &caller,
        "plan_file_upload",
        &format!("plan {id}: {} ({} bytes)", stored.name, stored.bytes),
    );
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

pub async fn file_get(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path((id, name)): Path<(i64, String)>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let file = st
        .inventory
        .plan_files(id)?
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(|| ApiError::NotFound("no such file in this plan".into()))?;
    let (len, stream) = st.files.get(&file.key).await.map_err(|e| {
        tracing::error!(error = %e, "reading a plan file");
        ApiError::NotFound("the file is missing from the file store".into())
    })?;
    Ok(download(stream, len, &file.name, "text/csv"))
}

pub async fn file_delete(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path((id, name)): Path<(i64, String)>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    st.plans.delete_data_file(id, &name).await?;
    audit(
        &st,
        &caller,
        "plan_file_delete",
        &format!("plan {id}: {name}"),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A streamed attachment, named as the server-file downloads name theirs.
pub fn download(
    stream: futures_util::stream::BoxStream<'static, Result<bytes::Bytes, object_store::Error>>,
    len: u64,
    name: &str,
    content_type: &'static str,
) -> Response {
    let mut r = axum::body::Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_DISPOSITION,
        super::files::content_disposition(name),
    );
    r
}

/// A download of a local file already open.
pub fn file_download(
    file: tokio::fs::File,
    len: u64,
    name: &str,
    content_type: &'static str,
) -> Response {
    let stream =
        tokio_util::io::ReaderStream::new(file).map_err(|e| object_store::Error::Generic {
            store: "local file",
            source: Box::new(e),
        });
    download(Box::pin(stream), len, name, content_type)
}

fn audit(st: &AppState, caller: &ApiCaller, action: &str, detail: &str) {
    let _ = st
        .inventory
        .audit(&caller.subject.name, action, None, detail);
}

// ---- pages ----------------------------------------------------------------

#[derive(Serialize)]
struct ListPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    plans: Vec<PlanSummary>,
    rooms: Vec<RoomChoice>,
    max_upload_mib: u64,
}

#[derive(Serialize)]
struct RoomChoice {
    id: i64,
    name: String,
    purpose: String,
    generators: RoomGenerators,
}

fn room_choices(st: &AppState, gens: &Generators) -> ApiResult<Vec<RoomChoice>> {
    Ok(st
        .inventory
        .rooms()?
        .into_iter()
        .map(|r| RoomChoice {
            generators: gens.get(&r.id).copied().unwrap_or_default(),
            id: r.id,
            name: r.name,
            purpose: r.purpose.as_str().to_string(),
        })
        .collect())
}

pub async fn list_page(
    State(st): State<AppState>,
    c: PageCaller,
) -> Result<Response, PageRejection> {
    c.may(Act::UseLoadTests)?;
    let gens = st.plans.generators(&st.registry);
    let plans = summaries(&st, &gens)?;
    let rooms = room_choices(&st, &gens)?;
    Ok(render(
        &st,
        StatusCode::OK,
        "plans.html",
        ListPage {
            chrome: chrome(&c, "plans"),
            plans,
            rooms,
            max_upload_mib: st.plans.settings.max_upload_mib,
        },
    ))
}

#[derive(Serialize)]
struct EditorPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    id: i64,
    name: String,
    kind: PlanKind,
    rooms: Vec<RoomChoice>,
    limits: Limits,
}

/// The ceilings the editor's help text quotes.
#[derive(Serialize)]
struct Limits {
    max_tps: f64,
    max_threads: u32,
    max_duration_secs: u32,
    max_generators: u32,
    max_data_file_mib: u64,
}

pub async fn editor_page(
    State(st): State<AppState>,
    c: PageCaller,
    Path(id): Path<i64>,
) -> Result<Response, PageRejection> {
    c.may(Act::UseLoadTests)?;
    let stored = st.plans.get(id).map_err(ApiError::from)?;
    let s = &st.plans.settings;
    let page = EditorPage {
        chrome: chrome(&c, "plans"),
        id,
        name: stored.plan.name,
        kind: stored.kind,
        rooms: room_choices(&st, &st.plans.generators(&st.registry))?,
        limits: Limits {
            max_tps: s.max_tps,
            max_threads: s.max_threads,
            max_duration_secs: s.max_duration_secs,
            max_generators: s.max_generators,
            max_data_file_mib: s.max_data_file_mib,
        },
    };
    Ok(render(&st, StatusCode::OK, "plan.html", page))
}

/// Where spooled uploads go: beside the recordings' spool.
pub fn upload_spool_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("spool/uploads")
}
