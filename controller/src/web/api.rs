//! The inventory half of the JSON API: session, groups, rooms, servers,
//! memberships, users. Each handler parses its input into the inventory's
//! types, asks the policy, then calls the inventory; the pages' scripts use
//! these same routes, so there is one way to change anything.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::AppState;
use super::caller::{ApiCaller, SESSION_COOKIE, cookie, set_cookie};
use super::error::{ApiError, ApiResult};
use crate::auth::{self, Act};
use crate::inventory::model::{
    AppIdentifier, Credential, Name, RoomPurpose, ServerAddr, check_password, parse_port,
    parse_user_name,
};
use crate::inventory::{CredentialChange, Server, ServerInput};

/// A JSON body whose rejections are JSON errors too.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) => {
                let status = match &e {
                    JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    _ => e.status(),
                };
                Err(ApiError::BadRequest(status, e.body_text()))
            }
        }
    }
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such API route".into())
}

// ---- session ------------------------------------------------------------

pub async fn session_get(caller: ApiCaller) -> Response {
    Json(serde_json::json!({
        "user": { "id": caller.subject.id, "name": caller.subject.name, "admin": caller.subject.admin },
        "csrf": caller.csrf,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct LoginBody {
    name: String,
    password: String,
}

pub async fn session_login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(b): JsonBody<LoginBody>,
) -> ApiResult<Response> {
    let s = login(&st, b.name, b.password, peer).await?;
    let mut r = Json(serde_json::json!({
        "user": { "id": s.subject.id, "name": s.subject.name, "admin": s.subject.admin },
        "csrf": s.csrf,
    }))
    .into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&set_cookie(
            &st,
            SESSION_COOKIE,
            &s.token,
            Some(st.session_max_age),
        ))
        .map_err(|_| ApiError::Internal("cookie"))?,
    );
    Ok(r)
}

/// Checks a password off the async threads (argon2 takes milliseconds).
pub async fn login(
    st: &AppState,
    name: String,
    password: String,
    peer: SocketAddr,
) -> ApiResult<auth::NewSession> {
    let a = st.auth.clone();
    tokio::task::spawn_blocking(move || a.login(&name, &password, peer.ip()))
        .await
        .map_err(|_| ApiError::Internal("login failed"))?
        .map_err(ApiError::from)
}

pub async fn session_logout(
    _caller: ApiCaller,
    headers: HeaderMap,
    State(st): State<AppState>,
) -> ApiResult<Response> {
    if let Some(t) = cookie(&headers, SESSION_COOKIE) {
        st.auth.logout(&t)?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&set_cookie(&st, SESSION_COOKIE, "", Some(0)))
            .map_err(|_| ApiError::Internal("cookie"))?,
    );
    Ok(r)
}

// ---- groups -------------------------------------------------------------

#[derive(Deserialize)]
pub struct GroupBody {
    name: String,
    #[serde(default)]
    app_identifier: String,
}

impl GroupBody {
    fn parse(&self) -> ApiResult<(Name, AppIdentifier)> {
        Ok((
            Name::parse("name", &self.name)?,
            AppIdentifier::parse(&self.app_identifier)?,
        ))
    }
}

pub async fn groups_list(caller: ApiCaller, State(st): State<AppState>) -> ApiResult<Response> {
    let groups: Vec<_> = st
        .inventory
        .groups()?
        .into_iter()
        .filter(|g| caller.subject.sees_group(g.id))
        .collect();
    Ok(Json(groups).into_response())
}

pub async fn group_get(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::SeeGroup { group: id })?;
    Ok(Json(st.inventory.group(id)?).into_response())
}

pub async fn group_create(
    caller: ApiCaller,
    State(st): State<AppState>,
    JsonBody(b): JsonBody<GroupBody>,
) -> ApiResult<Response> {
    caller.may(Act::EditEstate)?;
    let (name, app) = b.parse()?;
    let id = st.inventory.create_group(&name, &app)?;
    tracing::info!(by = %caller.subject.name, group = %name, "group created");
    Ok((StatusCode::CREATED, Json(st.inventory.group(id)?)).into_response())
}

pub async fn group_update(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    JsonBody(b): JsonBody<GroupBody>,
) -> ApiResult<Response> {
    caller.may(Act::EditGroup { group: id })?;
    let (name, app) = b.parse()?;
    st.inventory.update_group(id, &name, &app)?;
    Ok(Json(st.inventory.group(id)?).into_response())
}

pub async fn group_delete(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::EditGroup { group: id })?;
    st.inventory.delete_group(id)?;
    tracing::info!(by = %caller.subject.name, group = id, "group deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn members_list(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::EditGroup { group: id })?;
    st.inventory.group(id)?;
    Ok(Json(st.inventory.members(id)?).into_response())
}

pub async fn member_add(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path((group, user)): Path<(i64, i64)>,
) -> ApiResult<Response> {
    caller.may(Act::EditGroup { group })?;
    caller.may(Act::ManageUsers)?;
    st.inventory.group(group)?;
    st.inventory.user(user)?;
    st.inventory.add_member(group, user)?;
    tracing::info!(by = %caller.subject.name, group, user, "member added");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn member_remove(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path((group, user)): Path<(i64, i64)>,
) -> ApiResult<Response> {
    caller.may(Act::EditGroup { group })?;
    caller.may(Act::ManageUsers)?;
    st.inventory.group(group)?;
    st.inventory.remove_member(group, user)?;
    tracing::info!(by = %caller.subject.name, group, user, "member removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- rooms --------------------------------------------------------------

#[derive(Deserialize)]
pub struct RoomBody {
    name: String,
    purpose: String,
}

impl RoomBody {
    fn parse(&self) -> ApiResult<(Name, RoomPurpose)> {
        Ok((Name::parse("name", &self.name)?, self.purpose.parse()?))
    }
}

pub async fn rooms_list(caller: ApiCaller, State(st): State<AppState>) -> ApiResult<Response> {
    caller.may(Act::SeeRooms)?;
    Ok(Json(st.inventory.rooms()?).into_response())
}

pub async fn room_get(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::SeeRooms)?;
    Ok(Json(st.inventory.room(id)?).into_response())
}

pub async fn room_create(
    caller: ApiCaller,
    State(st): State<AppState>,
    JsonBody(b): JsonBody<RoomBody>,
) -> ApiResult<Response> {
    caller.may(Act::EditEstate)?;
    let (name, purpose) = b.parse()?;
    let id = st.inventory.create_room(&name, purpose)?;
    Ok((StatusCode::CREATED, Json(st.inventory.room(id)?)).into_response())
}

pub async fn room_update(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    JsonBody(b): JsonBody<RoomBody>,
) -> ApiResult<Response> {
    caller.may(Act::EditEstate)?;
    let (name, purpose) = b.parse()?;
    st.inventory.update_room(id, &name, purpose)?;
    Ok(Json(st.inventory.room(id)?).into_response())
}

pub async fn room_delete(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::EditEstate)?;
    st.inventory.delete_room(id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- servers ------------------------------------------------------------

#[derive(Deserialize)]
pub struct CredentialBody {
    /// `password`, `private_key`, `none` (remove), `keep` (default on edit).
    kind: String,
    #[serde(default)]
    secret: String,
}

#[derive(Deserialize)]
pub struct ServerBody {
    name: String,
    group_id: i64,
    room_id: i64,
    address: String,
    #[serde(default = "default_ssh_port")]
    ssh_port: i64,
    ssh_user: String,
    credential: Option<CredentialBody>,
}

fn default_ssh_port() -> i64 {
    22
}

impl ServerBody {
    /// Checks the fields in the order the form shows them, so the first
    /// error named is the first one on the page.
    fn parse(self) -> ApiResult<ServerInput> {
        let name = Name::parse("name", &self.name)?;
        let address = ServerAddr::parse(&self.address)?;
        let ssh_port = parse_port(self.ssh_port)?;
        let ssh_user = Name::parse("SSH user", &self.ssh_user)?;
        let credential = match self.credential {
            None => CredentialChange::Keep,
            Some(c) => match c.kind.as_str() {
                "keep" => CredentialChange::Keep,
                "none" => CredentialChange::Clear,
                "password" => CredentialChange::Set(Credential::Password(c.secret)),
                "private_key" => CredentialChange::Set(Credential::PrivateKey(c.secret)),
                other => {
                    return Err(ApiError::invalid(
                        "credential",
                        format!(
                            "{other:?} is not a credential kind (password, private_key, none, keep)"
                        ),
                    ));
                }
            },
        };
        if let CredentialChange::Set(c) = &credential {
            c.check()?;
        }
        Ok(ServerInput {
            name,
            group_id: self.group_id,
            room_id: self.room_id,
            address,
            ssh_port,
            ssh_user,
            credential,
        })
    }
}

#[derive(Deserialize)]
pub struct ServerFilter {
    group: Option<i64>,
    room: Option<i64>,
}

/// The servers a subject sees, optionally filtered.
pub fn visible_servers(
    st: &AppState,
    subject: &auth::Subject,
    group: Option<i64>,
    room: Option<i64>,
) -> ApiResult<Vec<Server>> {
    let mut servers = st.inventory.servers(subject.visible_groups().as_deref())?;
    servers
        .retain(|s| group.is_none_or(|g| s.group_id == g) && room.is_none_or(|r| s.room_id == r));
    Ok(servers)
}

pub async fn servers_list(
    caller: ApiCaller,
    State(st): State<AppState>,
    Query(f): Query<ServerFilter>,
) -> ApiResult<Response> {
    Ok(Json(visible_servers(&st, &caller.subject, f.group, f.room)?).into_response())
}

/// The server, if the caller may see it (else "not found", like a server
/// that does not exist).
fn seen_server(st: &AppState, caller: &ApiCaller, id: i64) -> ApiResult<Server> {
    let s = st.inventory.server(id)?;
    caller.may(Act::SeeServer { group: s.group_id })?;
    Ok(s)
}

pub async fn server_get(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    Ok(Json(seen_server(&st, &caller, id)?).into_response())
}

pub async fn server_create(
    caller: ApiCaller,
    State(st): State<AppState>,
    JsonBody(b): JsonBody<ServerBody>,
) -> ApiResult<Response> {
    caller.may(Act::EditEstate)?;
    let input = b.parse()?;
    st.inventory
        .group(input.group_id)
        .map_err(|_| ApiError::invalid("group", "no such group"))?;
    st.inventory
        .room(input.room_id)
        .map_err(|_| ApiError::invalid("room", "no such room"))?;
    let id = st.inventory.create_server(&input, &st.vault)?;
    tracing::info!(by = %caller.subject.name, server = %input.name, "server created");
    Ok((StatusCode::CREATED, Json(st.inventory.server(id)?)).into_response())
}

pub async fn server_update(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    JsonBody(b): JsonBody<ServerBody>,
) -> ApiResult<Response> {
    let s = st.inventory.server(id)?;
    caller.may(Act::EditServer { group: s.group_id })?;
    let input = b.parse()?;
    st.inventory
        .group(input.group_id)
        .map_err(|_| ApiError::invalid("group", "no such group"))?;
    st.inventory
        .room(input.room_id)
        .map_err(|_| ApiError::invalid("room", "no such room"))?;
    st.inventory.update_server(id, &input, &st.vault)?;
    tracing::info!(by = %caller.subject.name, server = id, "server updated");
    Ok(Json(st.inventory.server(id)?).into_response())
}

pub async fn server_delete(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let s = st.inventory.server(id)?;
    caller.may(Act::EditServer { group: s.group_id })?;
    st.inventory.delete_server(id)?;
    tracing::info!(by = %caller.subject.name, server = %s.name, "server deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Reads OS, CPU, memory and disk over SSH once, for a server with no
/// monitor agent yet; trusts the host key on first use.
pub async fn server_probe(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let s = seen_server(&st, &caller, id)?;
    caller.may(Act::UseServer { group: s.group_id })?;
    let cred = st
        .inventory
        .server_credential(id, &st.vault)?
        .ok_or_else(|| {
            ApiError::Conflict(format!("server {:?} has no stored SSH credential", s.name))
        })?;
    let (facts, host_key) = crate::ssh::probe_server(&s, &cred)
        .await
        .map_err(|e| ApiError::Upstream(e.to_string()))?;
    st.inventory.record_probe(id, &facts, &host_key)?;
    tracing::info!(by = %caller.subject.name, server = %s.name, "server probed over SSH");
    Ok(Json(st.inventory.server(id)?).into_response())
}

/// Forgets the trusted host key: the next connection trusts what it is
/// shown (after a server was reinstalled).
pub async fn server_forget_host_key(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let s = st.inventory.server(id)?;
    caller.may(Act::EditServer { group: s.group_id })?;
    st.inventory.set_host_key(id, None)?;
    tracing::info!(by = %caller.subject.name, server = %s.name, "host key forgotten");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn agent_id(raw: &str) -> ApiResult<certs::AgentId> {
    raw.parse()
        .map_err(|_| ApiError::NotFound("no such agent".into()))
}

pub async fn agent_link(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path((id, agent)): Path<(i64, String)>,
) -> ApiResult<Response> {
    let s = st.inventory.server(id)?;
    caller.may(Act::EditServer { group: s.group_id })?;
    st.inventory.link_agent(&agent_id(&agent)?, Some(id))?;
    Ok(Json(st.inventory.server(id)?).into_response())
}

pub async fn agent_unlink(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path((id, agent)): Path<(i64, String)>,
) -> ApiResult<Response> {
    let s = st.inventory.server(id)?;
    caller.may(Act::EditServer { group: s.group_id })?;
    let agent = agent_id(&agent)?;
    if !s.agents.iter().any(|a| a.id == agent.as_str()) {
        return Err(ApiError::NotFound(
            "that agent is not linked to this server".into(),
        ));
    }
    st.inventory.link_agent(&agent, None)?;
    Ok(Json(st.inventory.server(id)?).into_response())
}

// ---- users --------------------------------------------------------------

#[derive(Deserialize)]
pub struct UserCreateBody {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize)]
pub struct UserUpdateBody {
    admin: bool,
    disabled: bool,
    /// A new password; absent or empty keeps the old one.
    #[serde(default)]
    password: Option<String>,
}

pub async fn users_list(caller: ApiCaller, State(st): State<AppState>) -> ApiResult<Response> {
    caller.may(Act::ManageUsers)?;
    Ok(Json(st.inventory.users()?).into_response())
}

pub async fn user_get(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::ManageUsers)?;
    Ok(Json(st.inventory.user(id)?).into_response())
}

pub async fn user_create(
    caller: ApiCaller,
    State(st): State<AppState>,
    JsonBody(b): JsonBody<UserCreateBody>,
) -> ApiResult<Response> {
    caller.may(Act::ManageUsers)?;
    let name = parse_user_name(&b.name)?;
    check_password(&b.password)?;
    let inv = st.inventory.clone();
    let n = name.clone();
    let id = tokio::task::spawn_blocking(move || auth::create_user(&inv, &n, &b.password, b.admin))
        .await
        .map_err(|_| ApiError::Internal("creating the user failed"))??;
    tracing::info!(by = %caller.subject.name, user = %name, "user created");
    Ok((StatusCode::CREATED, Json(st.inventory.user(id)?)).into_response())
}

pub async fn user_update(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    JsonBody(b): JsonBody<UserUpdateBody>,
) -> ApiResult<Response> {
    caller.may(Act::ManageUsers)?;
    let hash = match b.password.filter(|p| !p.is_empty()) {
        Some(p) => {
            check_password(&p)?;
            Some(
                tokio::task::spawn_blocking(move || auth::hash_password(&p))
                    .await
                    .map_err(|_| ApiError::Internal("hashing failed"))?,
            )
        }
        None => None,
    };
    st.inventory
        .update_user(id, b.admin, b.disabled, hash.as_deref())?;
    tracing::info!(by = %caller.subject.name, user = id, admin = b.admin, disabled = b.disabled, password_changed = hash.is_some(), "user updated");
    Ok(Json(st.inventory.user(id)?).into_response())
}

pub async fn user_delete(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.may(Act::ManageUsers)?;
    if id == caller.subject.id {
        return Err(ApiError::Conflict("you cannot delete yourself".into()));
    }
    st.inventory.delete_user(id)?;
    tracing::info!(by = %caller.subject.name, user = id, "user deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
