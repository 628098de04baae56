//! Load-test tasks over HTTP: start a plan, steer the run (rate, attach,
//! stop), the merged per-second series, live updates as server-sent
//! events, the run files and the generators' files, and the task pages.
//! What a task may do is `loadtest::runner`'s; this module reads requests
//! and writes answers.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use protocol::load::TaskFile;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::api::JsonBody;
use super::caller::{ApiCaller, PageCaller, PageRejection};
use super::error::{ApiError, ApiResult};
use super::pages::{Chrome, chrome, render};
use super::plans::file_download;
use crate::auth::Act;
use crate::inventory::StoredTask;
use crate::loadtest::results;
use crate::loadtest::runner::{Candidate, TaskDetail, TaskError};

/// Tasks the list shows.
const LIST_LIMIT: u32 = 500;
/// Live updates are sent at most this often (seconds arrive per generator).
const LIVE_EVERY: Duration = Duration::from_millis(500);

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotFound(what) => ApiError::NotFound(format!("no such {what}")),
            TaskError::Invalid(m) => ApiError::Invalid {
                field: None,
                message: m,
            },
            TaskError::Conflict(m) => ApiError::Conflict(m),
            TaskError::Plan(e) => e.into(),
            TaskError::Inventory(e) => e.into(),
            TaskError::Io(e) => {
                tracing::error!(error = %e, "task files");
                ApiError::Internal("task files unavailable (see the log)")
            }
        }
    }
}

fn audit(st: &AppState, caller: &ApiCaller, action: &str, detail: &str) {
    let _ = st
        .inventory
        .audit(&caller.subject.name, action, None, detail);
}

/// Starts a task from a plan: now, or at its scheduled start.
pub async fn run_plan(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(plan): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let id = st.runner.start(plan, &caller.subject.name).await?;
    audit(
        &st,
        &caller,
        "task_start",
        &format!("task {id} of plan {plan}"),
    );
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response())
}

pub async fn list(
    caller: ApiCaller,
    State(st): State<AppState>,
) -> ApiResult<Json<Vec<StoredTask>>> {
    caller.may(Act::UseLoadTests)?;
    Ok(Json(st.runner.list(LIST_LIMIT)?))
}

/// The load generators of a room and whether each could run a task now.
pub async fn room_generators(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(room): Path<i64>,
) -> ApiResult<Json<Vec<Candidate>>> {
    caller.may(Act::UseLoadTests)?;
    Ok(Json(st.runner.candidates(room)?))
}

/// A task with its generators, actions and who else could join.
#[derive(Serialize)]
pub struct TaskView {
    #[serde(flatten)]
    detail: TaskDetail,
    candidates: Vec<Candidate>,
}

fn view(st: &AppState, id: i64) -> ApiResult<TaskView> {
    let detail = st.runner.detail(id)?;
    let candidates = match detail.task.room_id {
        Some(r) => st.runner.candidates(r)?,
        None => Vec::new(),
    };
    Ok(TaskView { detail, candidates })
}

pub async fn get_one(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<TaskView>> {
    caller.may(Act::UseLoadTests)?;
    Ok(Json(view(&st, id)?))
}

pub async fn delete(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    caller.may(Act::UseLoadTests)?;
    st.runner.delete(id).await?;
    audit(&st, &caller, "task_delete", &format!("task {id}"));
    Ok(StatusCode::NO_CONTENT)
}

pub async fn stop(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<TaskView>> {
    caller.may(Act::UseLoadTests)?;
    st.runner.stop(id, &caller.subject.name)?;
    Ok(Json(view(&st, id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateBody {
    tps: f64,
}

pub async fn rate(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    JsonBody(b): JsonBody<RateBody>,
) -> ApiResult<Json<TaskView>> {
    caller.may(Act::UseLoadTests)?;
    st.runner.set_rate(id, b.tps, &caller.subject.name)?;
    Ok(Json(view(&st, id)?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AttachBody {
    /// A particular idle generator of the room; any idle one if absent.
    agent_id: Option<String>,
}

pub async fn attach(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult<Json<TaskView>> {
    caller.may(Act::UseLoadTests)?;
    let b: AttachBody = if body.iter().all(u8::is_ascii_whitespace) {
        AttachBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?
    };
    st.runner
        .attach(id, b.agent_id.as_deref(), &caller.subject.name)?;
    Ok(Json(view(&st, id)?))
}

pub async fn generator_stop(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path((id, agent)): Path<(i64, String)>,
) -> ApiResult<Json<TaskView>> {
    caller.may(Act::UseLoadTests)?;
    st.runner.stop_generator(id, &agent, &caller.subject.name)?;
    Ok(Json(view(&st, id)?))
}

pub async fn generator_rate(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path((id, agent)): Path<(i64, String)>,
    JsonBody(b): JsonBody<RateBody>,
) -> ApiResult<Json<TaskView>> {
    caller.may(Act::UseLoadTests)?;
    st.runner
        .set_generator_rate(id, &agent, b.tps, &caller.subject.name)?;
    Ok(Json(view(&st, id)?))
}

async fn file_response(
    path: &std::path::Path,
    name: &str,
    kind: &'static str,
) -> ApiResult<Response> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|_| ApiError::NotFound("the file is gone".into()))?;
    let len = file
        .metadata()
        .await
        .map_err(|_| ApiError::Internal("cannot read the file"))?
        .len();
    Ok(file_download(file, len, name, kind))
}

async fn generator_file(
    st: &AppState,
    id: i64,
    agent: &str,
    file: TaskFile,
) -> ApiResult<Response> {
    let path = st.runner.fetch_file(id, agent, file).await?;
    let host = st
        .runner
        .detail(id)?
        .generators
        .into_iter()
        .find(|g| g.agent_id == agent)
        .map(|g| g.hostname)
        .unwrap_or_else(|| agent.to_string());
    file_response(
        &path,
        &format!("task-{id}-{host}-{}", file.file_name()),
        "text/plain; charset=utf-8",
    )
    .await
}

/// The JMeter log of one generator, fetched from it now.
pub async fn generator_log(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path((id, agent)): Path<(i64, String)>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    generator_file(&st, id, &agent, TaskFile::Log).await
}

/// The full results of one generator (debug runs).
pub async fn generator_jtl(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path((id, agent)): Path<(i64, String)>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    generator_file(&st, id, &agent, TaskFile::Jtl).await
}

/// The exact files the task ran (with its SHA-256 in a header).
pub async fn artifact(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::UseLoadTests)?;
    let task = st.runner.detail(id)?.task;
    let mut r = file_response(
        &st.runner.artifact_file(id),
        &format!("task-{id}-{}-run.zip", task.plan_name),
        "application/zip",
    )
    .await?;
    if let Some(sha) = task.artifact_sha256
        && let Ok(v) = HeaderValue::from_str(&sha)
    {
        r.headers_mut().insert("x-checksum-sha256", v);
    }
    Ok(r)
}

pub async fn series(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<results::Series>> {
    caller.may(Act::UseLoadTests)?;
    Ok(Json(st.runner.series(id)?))
}

#[derive(Deserialize, Default)]
pub struct LiveQuery {
    /// Only seconds stored after this row (a reconnecting page); the whole
    /// series first when absent.
    after: Option<i64>,
}

/// Server-sent events of a task: `series` (points of the seconds that
/// changed: whole on connect, then only new or completed seconds, each
/// with `row` to resume from), `task` (the task view when it changed) and
/// `end` once the task is over and its last seconds were sent; then the
/// stream closes.
pub async fn live(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<LiveQuery>,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>> {
    caller.may(Act::UseLoadTests)?;
    view(&st, id)?;
    let rx = st.runner.subscribe();
    let state = LiveState {
        st,
        id,
        after: q.after.unwrap_or(0),
        last_view: String::new(),
        rx,
        done: false,
        first: true,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        if !s.first {
            // Wait for a change, then let a burst of them settle.
            let _ = tokio::time::timeout(Duration::from_secs(15), s.rx.changed()).await;
            tokio::time::sleep(LIVE_EVERY).await;
        }
        s.first = false;
        let events = s.poll();
        Some((futures_util::stream::iter(events), s))
    })
    .flat_map(|events| events);
    Ok(Sse::new(stream.map(Ok)).keep_alive(KeepAlive::default()))
}

use futures_util::StreamExt;

struct LiveState {
    st: AppState,
    id: i64,
    after: i64,
    last_view: String,
    rx: tokio::sync::watch::Receiver<u64>,
    done: bool,
    first: bool,
}

#[derive(Serialize)]
struct LiveSeries {
    row: i64,
    #[serde(flatten)]
    series: results::Series,
}

impl LiveState {
    fn poll(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let Ok(v) = view(&self.st, self.id) else {
            self.done = true;
            return out;
        };
        let over = !v.detail.task.status.is_active();
        let text = serde_json::to_string(&v).unwrap_or_default();
        if text != self.last_view {
            out.push(Event::default().event("task").data(text.clone()));
            self.last_view = text;
        }
        let inv = &self.st.inventory;
        if let Ok(new) = inv.task_seconds_after(self.id, self.after)
            && !new.is_empty()
        {
            let secs: BTreeSet<i64> = new.iter().map(|r| r.sec).collect();
            let row = new.iter().map(|r| r.row).max().unwrap_or(self.after);
            let (from, to) = (*secs.first().unwrap_or(&0), *secs.last().unwrap_or(&0));
            // Whole seconds: a second that got another generator's part
            // is sent again, complete.
            if let Ok(mut rows) = inv.task_seconds_between(self.id, from, to) {
                rows.retain(|r| secs.contains(&r.sec));
                let series = results::series(&rows);
                let body = LiveSeries { row, series };
                if let Ok(data) = serde_json::to_string(&body) {
                    out.push(Event::default().event("series").data(data));
                }
                self.after = row;
            }
        }
        if over {
            // Said outright: EventSource would otherwise reconnect.
            out.push(Event::default().event("end").data("{}"));
            self.done = true;
        }
        out
    }
}

// ---- pages ----------------------------------------------------------------

#[derive(Serialize)]
struct ListPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
}

pub async fn list_page(
    State(st): State<AppState>,
    c: PageCaller,
) -> Result<Response, PageRejection> {
    c.may(Act::UseLoadTests)?;
    Ok(render(
        &st,
        StatusCode::OK,
        "tasks.html",
        ListPage {
            chrome: chrome(&c, "tasks"),
        },
    ))
}

#[derive(Serialize)]
struct TaskPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    id: i64,
    name: String,
    max_tps: f64,
}

pub async fn task_page(
    State(st): State<AppState>,
    c: PageCaller,
    Path(id): Path<i64>,
) -> Result<Response, PageRejection> {
    c.may(Act::UseLoadTests)?;
    let task = st.runner.detail(id).map_err(ApiError::from)?.task;
    Ok(render(
        &st,
        StatusCode::OK,
        "task.html",
        TaskPage {
            chrome: chrome(&c, "tasks"),
            id,
            name: task.plan_name,
            max_tps: st.plans.settings.max_tps,
        },
    ))
}
