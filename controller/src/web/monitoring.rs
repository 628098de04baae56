//! The monitoring side of the JSON API: agents, hosts and their newest
//! samples, series queries, alerts, store status. A user sees only hosts
//! whose agent runs on a server of one of their groups; agents, alerts and
//! the store status are for admins.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::error;

use super::AppState;
use super::caller::ApiCaller;
use super::error::ApiError;
use crate::auth::Act;
use crate::metrics::HostView;

/// Agent id -> group id of the server it runs on (if linked).
fn host_groups(st: &AppState) -> Result<HashMap<String, Option<i64>>, ApiError> {
    let servers: HashMap<i64, i64> = st
        .inventory
        .servers(None)?
        .into_iter()
        .map(|s| (s.id, s.group_id))
        .collect();
    Ok(st
        .inventory
        .agents()?
        .into_iter()
        .map(|a| {
            let g = a.server_id.and_then(|s| servers.get(&s).copied());
            (a.id.to_string(), g)
        })
        .collect())
}

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

/// A monitored host: its newest sample and facts, and whether its agent is
/// connected.
#[derive(Debug, Serialize)]
struct HostEntry {
    #[serde(flatten)]
    host: HostView,
    hostname: Option<String>,
    connected: bool,
    /// Bytes received from the agent on its current connection (all
    /// streams, QUIC overhead included).
    link_rx_bytes: Option<u64>,
}

pub(super) async fn hosts(State(st): State<AppState>, caller: ApiCaller) -> Response {
    let groups = match host_groups(&st) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let entries: Vec<HostEntry> = st
        .metrics
        .hosts()
        .into_iter()
        .filter(|h| {
            let group = groups.get(&h.agent_id.to_string()).copied().flatten();
            caller.may(Act::SeeHost { group }).is_ok()
        })
        .map(|host| {
            let live = st.registry.get(&host.agent_id);
            HostEntry {
                hostname: host
                    .facts
                    .as_ref()
                    .map(|f| f.hostname.clone())
                    .or_else(|| live.as_ref().map(|l| l.hostname.clone())),
                connected: live.is_some(),
                link_rx_bytes: st.registry.rx_bytes(&host.agent_id),
                host,
            }
        })
        .collect();
    Json(entries).into_response()
}

/// Time range (Unix ms) and point budget of a chart; defaults: the last
/// hour, 2000 points. (Not a flattened struct: serde's `flatten` cannot
/// read numbers from a query string.)
fn resolve_range(
    from: Option<i64>,
    to: Option<i64>,
    max_points: Option<usize>,
) -> (i64, i64, usize) {
    let to = to.unwrap_or_else(crate::metrics::embedded::now_ms);
    let from = from.unwrap_or(to - 3_600_000);
    (from, to, max_points.unwrap_or(2000))
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
    let (from, to, max_points) = resolve_range(p.from, p.to, p.max_points);
    let fields: Vec<String> = p
        .fields
        .split(',')
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    if fields.is_empty() || fields.len() > 50 {
        return (StatusCode::BAD_REQUEST, "give 1 to 50 fields").into_response();
    }
    match st
        .metrics
        .store()
        .query(&id, &fields, from, to, max_points)
        .await
    {
        Ok(q) => Json(q).into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct MeanParams {
    field: String,
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
    let (from, to, max_points) = resolve_range(p.from, p.to, p.max_points);
    let groups = match host_groups(&st) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let hosts: Vec<String> = match st.inventory.agents() {
        Ok(a) => a
            .into_iter()
            .filter(|a| a.role == certs::Role::Monitor)
            .filter(|a| {
                let group = groups.get(a.id.as_str()).copied().flatten();
                caller.may(Act::SeeHost { group }).is_ok()
            })
            .filter(|a| p.group.is_none() || a.group == p.group)
            .filter(|a| p.room.is_none() || a.room == p.room)
            .map(|a| a.id.to_string())
            .collect(),
        Err(e) => {
            error!(error = %e, "listing hosts");
            return (StatusCode::INTERNAL_SERVER_ERROR, "inventory unavailable").into_response();
        }
    };
    match st
        .metrics
        .store()
        .query_mean(&hosts, &p.field, from, to, max_points)
        .await
    {
        Ok(q) => Json(serde_json::json!({ "hosts": hosts.len(), "result": q })).into_response(),
        Err(e) => store_error(e),
    }
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
/// state of their mail.
pub(super) async fn alerts(
    State(st): State<AppState>,
    caller: ApiCaller,
    axum::extract::Query(p): axum::extract::Query<AlertParams>,
) -> Response {
    if let Err(e) = caller.may(Act::SeeOperations) {
        return e.into_response();
    }
    let limit = p.limit.unwrap_or(200).clamp(1, 10_000);
    let firing: Vec<serde_json::Value> = st
        .alerts
        .firing()
        .into_iter()
        .map(|(host, kind, since)| serde_json::json!({ "host": host, "kind": kind, "since_ms": since }))
        .collect();
    match st.alerts.list(limit) {
        Ok(history) => {
            Json(serde_json::json!({ "firing": firing, "history": history })).into_response()
        }
        Err(e) => {
            error!(error = %e, "listing alerts");
            (StatusCode::INTERNAL_SERVER_ERROR, "inventory unavailable").into_response()
        }
    }
}
