//! The monitoring side of the JSON API: agents, hosts and their newest
//! samples with their load score, series queries (one host, or the mean of
//! a group and room), alerts and their settings, store status. A user sees
//! only hosts whose agent runs on a server of one of their groups, and only
//! those hosts' alerts; agents, the store status and the alert settings are
//! for admins.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::error;

use super::AppState;
use super::api::JsonBody;
use super::caller::{ApiCaller, PageCaller, PageRejection};
use super::error::ApiError;
use super::pages::{Chrome, chrome, render};
use crate::alerts::rules::AlertRules;
use crate::auth::Act;
use crate::metrics::HostView;
use crate::metrics::embedded::{QueryResult, Resolution, Series};
use crate::metrics::score::{Score, busiest_first};

/// Where a monitored host sits now: read from the inventory at every
/// request, so a server moved to another group or room counts there at
/// once, with all of its history (no agent restart).
#[derive(Debug, Clone, Default)]
struct Placement {
    /// The group of the server it runs on; `None` = not linked (admins only).
    group_id: Option<i64>,
    group: Option<String>,
    room: Option<String>,
    server_id: Option<i64>,
    server_name: Option<String>,
    role: Option<certs::Role>,
    revoked: bool,
}

impl Placement {
    /// A monitored host the caller may see, in the group and room asked
    /// for (names; absent or empty = any). Load generators send facts but
    /// no samples: they are not monitored hosts. Revoked agents are gone.
    fn listed_for(
        &self,
        caller: &ApiCaller,
        group: &Option<String>,
        room: &Option<String>,
    ) -> bool {
        let wanted = |want: &Option<String>, have: &Option<String>| {
            want.as_deref()
                .is_none_or(|w| w.is_empty() || have.as_deref() == Some(w))
        };
        self.role == Some(certs::Role::Monitor)
            && !self.revoked
            && caller
                .may(Act::SeeHost {
                    group: self.group_id,
                })
                .is_ok()
            && wanted(group, &self.group)
            && wanted(room, &self.room)
    }
}

/// Agent id -> its placement.
fn placements(st: &AppState) -> Result<HashMap<String, Placement>, ApiError> {
    let servers: HashMap<i64, crate::inventory::Server> = st
        .inventory
        .servers(None)?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    Ok(st
        .inventory
        .agents()?
        .into_iter()
        .map(|a| {
            let server = a.server_id.and_then(|s| servers.get(&s));
            let p = Placement {
                group_id: server.map(|s| s.group_id),
                group: server.map(|s| s.group.clone()),
                room: server.map(|s| s.room.clone()),
                server_id: server.map(|s| s.id),
                server_name: server.map(|s| s.name.clone()),
                role: Some(a.role),
                revoked: a.revoked_at.is_some(),
            };
            (a.id.to_string(), p)
        })
        .collect())
}

/// Agent id -> group id of the server it runs on (if linked).
fn host_groups(st: &AppState) -> Result<HashMap<String, Option<i64>>, ApiError> {
    Ok(placements(st)?
        .into_iter()
        .map(|(id, p)| (id, p.group_id))
        .collect())
}

/// A host whose newest sample is older than this is shown as silent.
const SILENT_AFTER_MS: i64 = 30_000;

/// One agent as the API shows it: what the inventory knows plus whether it
/// is connected now.
#[derive(Debug, Serialize)]
struct AgentView {
    id: String,
    role: String,
    hostname: String,
    os: String,
    arch: String,
    agent_version: String,
    group: Option<String>,
    room: Option<String>,
    connected: bool,
    revoked: bool,
    address: Option<String>,
    /// Unix seconds.
    enrolled_at: u64,
    /// Unix milliseconds, while connected.
    connected_since: Option<u64>,
    /// Unix milliseconds, while connected.
    last_heartbeat: Option<u64>,
    /// Unix seconds of the last contact when not connected.
    last_seen: Option<u64>,
    /// Unix seconds.
    cert_not_after: u64,
}

pub(super) async fn agents(State(st): State<AppState>, caller: ApiCaller) -> Response {
    if let Err(e) = caller.may(Act::SeeOperations) {
        return e.into_response();
    }
    let known = match st.inventory.agents() {
        Ok(k) => k,
        Err(e) => {
            error!(error = %e, "listing agents");
            return (StatusCode::INTERNAL_SERVER_ERROR, "inventory unavailable").into_response();
        }
    };
    let views: Vec<AgentView> = known
        .into_iter()
        .map(|k| {
            let live = st.registry.get(&k.id);
            AgentView {
                id: k.id.to_string(),
                role: k.role.to_string(),
                hostname: live.as_ref().map_or(k.hostname, |l| l.hostname.clone()),
                os: live.as_ref().map_or(k.os, |l| l.os.clone()),
                arch: live.as_ref().map_or(k.arch, |l| l.arch.clone()),
                agent_version: live
                    .as_ref()
                    .map_or(k.agent_version, |l| l.agent_version.clone()),
                group: k.group,
                room: k.room,
                connected: live.is_some(),
                revoked: k.revoked_at.is_some(),
                address: live
                    .as_ref()
                    .map(|l| l.address.to_string())
                    .or(k.last_address),
                enrolled_at: k.enrolled_at,
                connected_since: live.as_ref().map(|l| l.connected_since),
                last_heartbeat: live.as_ref().map(|l| l.last_heartbeat),
                last_seen: k.last_seen,
                cert_not_after: k.cert_not_after,
            }
        })
        .collect();
    Json(views).into_response()
}

/// A monitored host: its newest sample and facts, its load score, where
/// it sits, and whether its agent is connected.
#[derive(Debug, Serialize)]
struct HostEntry {
    #[serde(flatten)]
    host: HostView,
    hostname: Option<String>,
    connected: bool,
    /// Not connected, or no sample for [`SILENT_AFTER_MS`].
    silent: bool,
    /// Since the newest sample (by the controller's clock).
    age_ms: Option<i64>,
    score: Option<Score>,
    group: Option<String>,
    room: Option<String>,
    server_id: Option<i64>,
    server_name: Option<String>,
    /// Bytes received from the agent on its current connection (all
    /// streams, QUIC overhead included).
    link_rx_bytes: Option<u64>,
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct HostsParams {
    /// Only hosts of this group (name).
    group: Option<String>,
    /// Only hosts of this room (name).
    room: Option<String>,
}

/// Monitored hosts the caller may see, busiest first (see
/// [`crate::metrics::score`]). Revoked agents are left out; their history
/// stays readable through their series.
pub(super) async fn hosts(
    State(st): State<AppState>,
    caller: ApiCaller,
    axum::extract::Query(p): axum::extract::Query<HostsParams>,
) -> Response {
    let places = match placements(&st) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let now = crate::metrics::embedded::now_ms();
    let mut entries: Vec<HostEntry> = st
        .metrics
        .hosts()
        .into_iter()
        .filter_map(|host| {
            let place = places
                .get(host.agent_id.as_str())
                .cloned()
                .unwrap_or_default();
            if !place.listed_for(&caller, &p.group, &p.room) {
                return None;
            }
            let live = st.registry.get(&host.agent_id);
            let age_ms = host.latest.as_ref().map(|l| (now - l.ts_ms as i64).max(0));
            let connected = live.is_some();
            Some(HostEntry {
                hostname: host
                    .facts
                    .as_ref()
                    .map(|f| f.hostname.clone())
                    .or_else(|| live.as_ref().map(|l| l.hostname.clone())),
                connected,
                silent: !connected || age_ms.is_some_and(|a| a > SILENT_AFTER_MS),
                age_ms,
                score: host.latest.as_ref().map(Score::of),
                group: place.group,
                room: place.room,
                server_id: place.server_id,
                server_name: place.server_name,
                link_rx_bytes: st.registry.rx_bytes(&host.agent_id),
                host,
            })
        })
        .collect();
    entries.sort_by(|a, b| {
        busiest_first(a.score.as_ref(), b.score.as_ref()).then_with(|| {
            let name = |e: &HostEntry| e.hostname.clone().unwrap_or_default();
            name(a).cmp(&name(b))
        })
    });
    Json(entries).into_response()
}

/// A chart's time range (Unix ms) and point budget, after retention.
#[derive(Debug, Clone, Copy)]
struct Range {
    from: i64,
    to: i64,
    max_points: usize,
    /// Nothing of the range is kept any more.
    gone: bool,
}

/// Defaults: the last hour, 2000 points. A start older than the longest
/// retention is moved to the oldest data kept, with a notice saying so;
/// the caller shows what exists. (Not a flattened struct: serde's
/// `flatten` cannot read numbers from a query string.)
fn resolve_range(
    st: &AppState,
    from: Option<i64>,
    to: Option<i64>,
    max_points: Option<usize>,
) -> Result<(Range, Option<String>), ApiError> {
    let now = crate::metrics::embedded::now_ms();
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to - 3_600_000);
    let max_points = max_points.unwrap_or(2000);
    if let Err(e) = crate::metrics::embedded::check_range(from, to, max_points) {
        return Err(ApiError::BadRequest(StatusCode::BAD_REQUEST, e.to_string()));
    }
    let days = st.web.retention.hour_days;
    let oldest = now - i64::from(days) * 86_400_000;
    if from >= oldest {
        return Ok((
            Range {
                from,
                to,
                max_points,
                gone: false,
            },
            None,
        ));
    }
    if to <= oldest {
        let notice = format!(
            "Metrics are kept for {days} days: nothing is left of this range (the oldest kept is from {}).",
            utc(oldest)
        );
        let r = Range {
            from,
            to,
            max_points,
            gone: true,
        };
        return Ok((r, Some(notice)));
    }
    let notice = format!(
        "Metrics are kept for {days} days: showing from {}, the oldest data kept.",
        utc(oldest)
    );
    let r = Range {
        from: oldest,
        to,
        max_points,
        gone: false,
    };
    Ok((r, Some(notice)))
}

/// `2026-11-27 20:45 UTC` for Unix ms.
fn utc(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", s.get(..16).unwrap_or(&s).replace('T', " "))
}

/// A series answer with the range actually queried and any notice.
#[derive(Debug, Serialize)]
struct Charted<T: Serialize> {
    #[serde(flatten)]
    body: T,
    from: i64,
    to: i64,
    notice: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct SeriesParams {
    /// Comma-separated field names, e.g. `cpu.busy_pct,cpu.iowait_pct`.
    fields: String,
    from: Option<i64>,
    to: Option<i64>,
    max_points: Option<usize>,
}

fn store_error(e: crate::metrics::StoreError) -> Response {
    match e {
        crate::metrics::StoreError::BadQuery(m) => (StatusCode::BAD_REQUEST, m).into_response(),
        other => {
            error!(error = %other, "metric query failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metric store unavailable",
            )
                .into_response()
        }
    }
}

pub(super) async fn host_series(
    State(st): State<AppState>,
    caller: ApiCaller,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(p): axum::extract::Query<SeriesParams>,
) -> Response {
    let group = match host_groups(&st) {
        Ok(g) => g.get(&id).copied(),
        Err(e) => return e.into_response(),
    };
    // An unknown host and a hidden one look the same.
    match group {
        Some(group) => {
            if let Err(e) = caller.may(Act::SeeHost { group }) {
                return e.into_response();
            }
        }
        None if caller.subject.admin => {}
        None => return ApiError::NotFound("no such host".into()).into_response(),
    }
    let (range, notice) = match resolve_range(&st, p.from, p.to, p.max_points) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let fields = match field_list(&p.fields) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let result = if range.gone {
        Ok(empty_result(&fields))
    } else {
        st.metrics
            .store()
            .query(&id, &fields, range.from, range.to, range.max_points)
            .await
    };
    match result {
        Ok(q) => Json(Charted {
            body: q,
            from: range.from,
            to: range.to,
            notice,
        })
        .into_response(),
        Err(e) => store_error(e),
    }
}

/// `a,b,c` -> the field names, 1 to 50 of them.
fn field_list(fields: &str) -> Result<Vec<String>, ApiError> {
    let fields: Vec<String> = fields
        .split(',')
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    if fields.is_empty() || fields.len() > 50 {
        return Err(ApiError::BadRequest(
            StatusCode::BAD_REQUEST,
            "give 1 to 50 fields".into(),
        ));
    }
    Ok(fields)
}

fn empty_result(fields: &[String]) -> QueryResult {
    QueryResult {
        resolution: Resolution::Hour,
        step_ms: 3_600_000,
        series: fields
            .iter()
            .map(|f| Series {
                field: f.clone(),
                points: Vec::new(),
            })
            .collect(),
    }
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct MeanParams {
    /// Comma-separated field names (`field` is the older one-field form).
    fields: Option<String>,
    field: Option<String>,
    /// Only hosts of this group (any when absent).
    group: Option<String>,
    /// Only hosts of this room (any when absent).
    room: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    max_points: Option<usize>,
}

/// The average of a field over the monitored hosts of a group and room.
/// Group and room are read from the inventory now, so a host that moved
/// counts where it is, with all of its history.
pub(super) async fn mean_series(
    State(st): State<AppState>,
    caller: ApiCaller,
    axum::extract::Query(p): axum::extract::Query<MeanParams>,
) -> Response {
    let (range, notice) = match resolve_range(&st, p.from, p.to, p.max_points) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let fields = match field_list(p.fields.as_deref().or(p.field.as_deref()).unwrap_or("")) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let places = match placements(&st) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    // The hosts `/api/hosts` lists for the same filter. A deleted server's
    // host keeps its history (admins read it per host) but belongs to no
    // group or room any more, so it leaves their averages.
    let mut hosts: Vec<String> = places
        .iter()
        .filter(|(_, pl)| pl.listed_for(&caller, &p.group, &p.room))
        .map(|(id, _)| id.clone())
        .collect();
    hosts.sort();
    let result = if range.gone || hosts.is_empty() {
        empty_result(&fields)
    } else {
        match st
            .metrics
            .store()
            .query_mean(&hosts, &fields, range.from, range.to, range.max_points)
            .await
        {
            Ok(q) => q,
            Err(e) => return store_error(e),
        }
    };
    Json(serde_json::json!({
        "hosts": hosts.len(),
        "host_ids": hosts,
        "result": result,
        "from": range.from,
        "to": range.to,
        "notice": notice,
    }))
    .into_response()
}

pub(super) async fn metrics_status(State(st): State<AppState>, caller: ApiCaller) -> Response {
    if let Err(e) = caller.may(Act::SeeOperations) {
        return e.into_response();
    }
    let store = st.metrics.store().clone();
    match tokio::task::spawn_blocking(move || store.status()).await {
        Ok(s) => Json(s).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "status unavailable").into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct AlertParams {
    limit: Option<usize>,
}

/// Open episodes and the stored alert history (newest first) with the
/// state of their mail, of the hosts the caller may see.
pub(super) async fn alerts(
    State(st): State<AppState>,
    caller: ApiCaller,
    axum::extract::Query(p): axum::extract::Query<AlertParams>,
) -> Response {
    let limit = p.limit.unwrap_or(200).clamp(1, 10_000);
    let groups = match host_groups(&st) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let names: HashMap<String, String> = st
        .metrics
        .hosts()
        .into_iter()
        .filter_map(|h| Some((h.agent_id.to_string(), h.facts?.hostname)))
        .collect();
    let visible = |host: &str| {
        let group = groups.get(host).copied().flatten();
        caller.may(Act::SeeHost { group }).is_ok()
    };
    let firing: Vec<serde_json::Value> = st
        .alerts
        .firing()
        .into_iter()
        .filter(|(host, _, _)| visible(host))
        .map(|(host, kind, since)| {
            serde_json::json!({ "hostname": names.get(&host), "host": host, "kind": kind, "since_ms": since })
        })
        .collect();
    // Filtering after the limit would show a user fewer than they could
    // see; a user's page reads further back, bounded.
    let fetch = if caller.subject.admin {
        limit
    } else {
        (limit * 20).min(50_000)
    };
    match st.alerts.list(fetch) {
        Ok(history) => {
            let history: Vec<serde_json::Value> = history
                .into_iter()
                .filter(|a| visible(&a.host))
                .take(limit)
                .map(|a| {
                    let mut v = serde_json::to_value(&a).unwrap_or_default();
                    v["hostname"] = serde_json::json!(names.get(&a.host));
                    v
                })
                .collect();
            Json(serde_json::json!({ "firing": firing, "history": history })).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// What the alerts page's admin part edits; never the SMTP password.
pub(super) async fn alert_settings(State(st): State<AppState>, caller: ApiCaller) -> Response {
    if let Err(e) = caller.may(Act::SeeOperations) {
        return e.into_response();
    }
    Json(serde_json::json!({
        "rules": st.alerts.rules(),
        "recipients": st.alerts.recipients(),
        "smtp": st.alerts.smtp(),
        "drop_caches_on_memory_low": st.alerts.drops_caches(),
    }))
    .into_response()
}

fn settings_error(e: crate::alerts::SettingsError) -> Response {
    match e {
        crate::alerts::SettingsError::Invalid(m) => ApiError::Invalid {
            field: None,
            message: m,
        }
        .into_response(),
        crate::alerts::SettingsError::Store(e) => ApiError::from(e).into_response(),
    }
}

pub(super) async fn alert_rules_put(
    State(st): State<AppState>,
    caller: ApiCaller,
    JsonBody(rules): JsonBody<AlertRules>,
) -> Response {
    if let Err(e) = caller.may(Act::EditAlerts) {
        return e.into_response();
    }
    match st.alerts.set_rules(rules, &caller.subject.name) {
        Ok(r) => Json(r).into_response(),
        Err(e) => settings_error(e),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Recipients {
    recipients: Vec<String>,
}

pub(super) async fn alert_recipients_put(
    State(st): State<AppState>,
    caller: ApiCaller,
    JsonBody(r): JsonBody<Recipients>,
) -> Response {
    if let Err(e) = caller.may(Act::EditAlerts) {
        return e.into_response();
    }
    match st.alerts.set_recipients(r.recipients, &caller.subject.name) {
        Ok(list) => Json(serde_json::json!({ "recipients": list })).into_response(),
        Err(e) => settings_error(e),
    }
}

pub(super) async fn alert_test_mail(State(st): State<AppState>, caller: ApiCaller) -> Response {
    if let Err(e) = caller.may(Act::EditAlerts) {
        return e.into_response();
    }
    use crate::alerts::TestMailError;
    match st.alerts.test_mail(&caller.subject.name).await {
        Ok(to) => Json(serde_json::json!({ "sent_to": to })).into_response(),
        Err(e @ (TestMailError::NoSmtp | TestMailError::NoRecipients)) => {
            ApiError::Conflict(e.to_string()).into_response()
        }
        Err(TestMailError::Failed(e)) => ApiError::Upstream(e.to_string()).into_response(),
    }
}

// ---- pages --------------------------------------------------------------

#[derive(Serialize)]
struct OverviewPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    groups: Vec<crate::inventory::Group>,
}

/// Every monitored host as a card, busiest first (admins).
pub(super) async fn overview_page(
    State(st): State<AppState>,
    c: PageCaller,
) -> Result<Response, PageRejection> {
    c.may(Act::SeeOperations)?;
    Ok(render(
        &st,
        StatusCode::OK,
        "overview.html",
        OverviewPage {
            chrome: chrome(&c, "overview"),
            groups: st.inventory.groups().map_err(ApiError::from)?,
        },
    ))
}

#[derive(Serialize)]
struct MonitorPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    groups: Vec<crate::inventory::Group>,
    rooms: Vec<crate::inventory::Room>,
    /// The longest any data is kept.
    retention_days: u32,
}

/// Charts of a group and room (their mean) or of one host (everyone, for
/// their groups).
pub(super) async fn monitor_page(
    State(st): State<AppState>,
    c: PageCaller,
) -> Result<Response, PageRejection> {
    let groups = st
        .inventory
        .groups()
        .map_err(ApiError::from)?
        .into_iter()
        .filter(|g| c.may(Act::SeeGroup { group: g.id }).is_ok())
        .collect();
    Ok(render(
        &st,
        StatusCode::OK,
        "monitor.html",
        MonitorPage {
            chrome: chrome(&c, "monitor"),
            groups,
            rooms: st.inventory.rooms().map_err(ApiError::from)?,
            retention_days: st.web.retention.hour_days,
        },
    ))
}

/// Current and past alerts; the rules, recipients and test mail for admins.
pub(super) async fn alerts_page(
    State(st): State<AppState>,
    c: PageCaller,
) -> Result<Response, PageRejection> {
    Ok(render(
        &st,
        StatusCode::OK,
        "alerts.html",
        chrome(&c, "alerts"),
    ))
}
