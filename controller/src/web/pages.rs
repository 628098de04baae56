//! The HTML pages: login/logout, the server list, and the admin pages for
//! groups, rooms, servers and users. Pages only read; every change goes
//! through the JSON API (the pages' script sends it with the CSRF token),
//! except login and logout, which are plain forms.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use tracing::error;

use super::AppState;
use super::api::visible_servers;
use super::caller::{LOGIN_COOKIE, PageCaller, PageRejection, SESSION_COOKIE, cookie, set_cookie};
use super::error::ApiError;
use crate::auth::{Act, constant_time_eq, new_secret};
use crate::inventory::model::RoomPurpose;
use crate::inventory::{Group, Room, Server};

/// "3 min ago" for a Unix-seconds time.
pub fn ago(secs: u64) -> String {
    let d = crate::inventory::unix_now().saturating_sub(secs);
    match d {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", d / 60),
        3600..86400 => format!("{} h ago", d / 3600),
        _ => format!("{} days ago", d / 86400),
    }
}

pub(super) fn render<S: Serialize>(
    st: &AppState,
    status: StatusCode,
    name: &str,
    ctx: S,
) -> Response {
    match st.templates.render(name, ctx) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            error!(template = name, error = %e, "rendering a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed").into_response()
        }
    }
}

/// The part of every logged-in page's context that the layout uses.
#[derive(Serialize)]
pub(super) struct Chrome<'a> {
    user: &'a str,
    admin: bool,
    csrf: &'a str,
    nav: &'static str,
}

pub(super) fn chrome<'a>(c: &'a PageCaller, nav: &'static str) -> Chrome<'a> {
    Chrome {
        user: &c.subject.name,
        admin: c.subject.admin,
        csrf: &c.csrf,
        nav,
    }
}

/// An error as a small page (the status is the API's).
pub fn error_page(e: ApiError) -> Response {
    let r = e.into_response();
    let status = r.status();
    let msg = match status {
        StatusCode::NOT_FOUND => "Not found.",
        StatusCode::FORBIDDEN => "Your account may not open this page.",
        _ => "Something went wrong; the controller's log says more.",
    };
    let html = format!(
        "<!doctype html><meta charset=utf-8><link rel=icon href=\"data:,\"><title>{code}</title><p>{msg}</p>",
        code = status.as_u16()
    );
    (status, Html(html)).into_response()
}

pub async fn not_found() -> Response {
    error_page(ApiError::NotFound("not found".into()))
}

/// The home page's URL: `/`, or the prefix itself (`/ops`, not `/ops/`,
/// which the nested router does not serve).
fn home_url(st: &AppState) -> String {
    if st.web.prefix.is_empty() {
        "/".into()
    } else {
        st.web.prefix.clone()
    }
}

/// Admins start on the overview of every host, users on the charts of
/// their groups.
pub async fn home(State(st): State<AppState>, c: PageCaller) -> Redirect {
    let page = if c.may(Act::SeeOperations).is_ok() {
        "overview"
    } else {
        "monitor"
    };
    Redirect::to(&format!("{}/{page}", st.web.prefix))
}

// ---- login / logout -----------------------------------------------------

#[derive(Deserialize)]
pub struct LoginQuery {
    expired: Option<String>,
}

#[derive(Serialize)]
struct LoginPage<'a> {
    csrf: &'a str,
    message: Option<&'a str>,
    name: &'a str,
}

fn login_page(st: &AppState, status: StatusCode, message: Option<&str>, name: &str) -> Response {
    let csrf = new_secret("");
    let mut r = render(
        st,
        status,
        "login.html",
        LoginPage {
            csrf: &csrf,
            message,
            name,
        },
    );
    if let Ok(v) = HeaderValue::from_str(&set_cookie(st, LOGIN_COOKIE, &csrf, Some(3600))) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub async fn login_form(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if let Some(t) = cookie(&headers, SESSION_COOKIE)
        && st.auth.session(&t).is_ok()
    {
        return Redirect::to(&home_url(&st)).into_response();
    }
    let message = q
        .expired
        .map(|_| "Your session expired; please log in again.");
    login_page(&st, StatusCode::OK, message, "")
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    csrf: String,
}

pub async fn login_submit(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    // Double submit: the form's token must match the cookie set with the
    // form, which another site can neither read nor set.
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(&f.csrf, &expected) {
        return login_page(
            &st,
            StatusCode::FORBIDDEN,
            Some("The login form expired; please try again."),
            &f.name,
        );
    }
    match super::api::login(&st, f.name.clone(), f.password, peer).await {
        Ok(s) => {
            let mut r = Redirect::to(&home_url(&st)).into_response();
            let h = r.headers_mut();
            for c in [
                set_cookie(&st, SESSION_COOKIE, &s.token, Some(st.session_max_age)),
                set_cookie(&st, LOGIN_COOKIE, "", Some(0)),
            ] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    h.append(header::SET_COOKIE, v);
                }
            }
            r
        }
        Err(e) => {
            let r = e.into_response();
            let status = r.status();
            let msg = match status {
                StatusCode::UNAUTHORIZED => "Wrong user name or password.".to_string(),
                StatusCode::TOO_MANY_REQUESTS => {
                    "Too many failed logins; wait a few minutes and try again.".to_string()
                }
                _ => "Login is unavailable right now.".to_string(),
            };
            login_page(&st, status, Some(&msg), &f.name)
        }
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

pub async fn logout(
    State(st): State<AppState>,
    c: PageCaller,
    headers: HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Response {
    if !constant_time_eq(&f.csrf, &c.csrf) {
        return error_page(ApiError::Csrf);
    }
    if let Some(t) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = st.auth.logout(&t)
    {
        return error_page(e.into());
    }
    let mut r = Redirect::to(&format!("{}/login", st.web.prefix)).into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&st, SESSION_COOKIE, "", Some(0))) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

// ---- servers ------------------------------------------------------------

#[derive(Deserialize)]
pub struct ServerFilter {
    /// Strings, so an empty `?group=` from the filter form means "any".
    group: Option<String>,
    room: Option<String>,
}

/// A server row with what the list shows computed.
#[derive(Serialize)]
struct ServerRow {
    s: Server,
    disk_total: Option<u64>,
    /// `online`, `offline`, or `none` (no agent).
    agent: &'static str,
}

fn row(s: Server) -> ServerRow {
    let disk_total = s
        .facts
        .as_ref()
        .map(|f| f.disks.iter().map(|(_, b)| *b).sum());
    let live = s.agents.iter().filter(|a| !a.revoked);
    let agent = if live.clone().any(|a| a.online) {
        "online"
    } else if live.count() > 0 {
        "offline"
    } else {
        "none"
    };
    ServerRow {
        s,
        disk_total,
        agent,
    }
}

#[derive(Serialize)]
struct ServersPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    servers: Vec<ServerRow>,
    groups: Vec<Group>,
    rooms: Vec<Room>,
    group: Option<i64>,
    room: Option<i64>,
}

pub async fn servers(
    State(st): State<AppState>,
    c: PageCaller,
    Query(f): Query<ServerFilter>,
) -> Result<Response, PageRejection> {
    let group = f.group.and_then(|g| g.parse().ok());
    let room = f.room.and_then(|r| r.parse().ok());
    let servers = visible_servers(&st, &c.subject, group, room)?;
    let groups: Vec<Group> = st
        .inventory
        .groups()
        .map_err(ApiError::from)?
        .into_iter()
        .filter(|g| c.subject.sees_group(g.id))
        .collect();
    let rooms = st.inventory.rooms().map_err(ApiError::from)?;
    Ok(render(
        &st,
        StatusCode::OK,
        "servers.html",
        ServersPage {
            chrome: chrome(&c, "servers"),
            servers: servers.into_iter().map(row).collect(),
            groups,
            rooms,
            group,
            room,
        },
    ))
}

#[derive(Serialize)]
struct ServerFormPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    server: Option<Server>,
    groups: Vec<Group>,
    rooms: Vec<Room>,
}

fn server_form(
    st: &AppState,
    c: &PageCaller,
    server: Option<Server>,
) -> Result<Response, PageRejection> {
    Ok(render(
        st,
        StatusCode::OK,
        "server_form.html",
        ServerFormPage {
            chrome: chrome(c, "servers"),
            server,
            groups: st.inventory.groups().map_err(ApiError::from)?,
            rooms: st.inventory.rooms().map_err(ApiError::from)?,
        },
    ))
}

pub async fn server_new(
    State(st): State<AppState>,
    c: PageCaller,
) -> Result<Response, PageRejection> {
    c.may(Act::EditEstate)?;
    server_form(&st, &c, None)
}

pub async fn server_edit(
    State(st): State<AppState>,
    c: PageCaller,
    Path(id): Path<i64>,
) -> Result<Response, PageRejection> {
    let s = st.inventory.server(id).map_err(ApiError::from)?;
    c.may(Act::EditServer { group: s.group_id })?;
    server_form(&st, &c, Some(s))
}

// ---- groups, rooms, users -----------------------------------------------

#[derive(Serialize)]
struct GroupsPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    groups: Vec<Group>,
}

pub async fn groups(State(st): State<AppState>, c: PageCaller) -> Result<Response, PageRejection> {
    c.may(Act::EditEstate)?;
    let groups = st.inventory.groups().map_err(ApiError::from)?;
    Ok(render(
        &st,
        StatusCode::OK,
        "groups.html",
        GroupsPage {
            chrome: chrome(&c, "groups"),
            groups,
        },
    ))
}

#[derive(Serialize)]
struct GroupPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    group: Group,
    members: Vec<crate::inventory::User>,
    others: Vec<crate::inventory::User>,
}

pub async fn group(
    State(st): State<AppState>,
    c: PageCaller,
    Path(id): Path<i64>,
) -> Result<Response, PageRejection> {
    c.may(Act::EditGroup { group: id })?;
    c.may(Act::ManageUsers)?;
    let group = st.inventory.group(id).map_err(ApiError::from)?;
    let (members, others) = st
        .inventory
        .users()
        .map_err(ApiError::from)?
        .into_iter()
        .partition(|u| u.groups.contains(&id));
    Ok(render(
        &st,
        StatusCode::OK,
        "group.html",
        GroupPage {
            chrome: chrome(&c, "groups"),
            group,
            members,
            others,
        },
    ))
}

#[derive(Serialize)]
struct Purpose {
    value: &'static str,
    label: &'static str,
}

#[derive(Serialize)]
struct RoomsPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    rooms: Vec<Room>,
    purposes: Vec<Purpose>,
}

pub async fn rooms(State(st): State<AppState>, c: PageCaller) -> Result<Response, PageRejection> {
    c.may(Act::EditEstate)?;
    Ok(render(
        &st,
        StatusCode::OK,
        "rooms.html",
        RoomsPage {
            chrome: chrome(&c, "rooms"),
            rooms: st.inventory.rooms().map_err(ApiError::from)?,
            purposes: RoomPurpose::ALL
                .iter()
                .map(|p| Purpose {
                    value: p.as_str(),
                    label: p.label(),
                })
                .collect(),
        },
    ))
}

#[derive(Serialize)]
struct UsersPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    users: Vec<crate::inventory::User>,
    groups: Vec<Group>,
    me: i64,
}

pub async fn users(State(st): State<AppState>, c: PageCaller) -> Result<Response, PageRejection> {
    c.may(Act::ManageUsers)?;
    Ok(render(
        &st,
        StatusCode::OK,
        "users.html",
        UsersPage {
            chrome: chrome(&c, "users"),
            users: st.inventory.users().map_err(ApiError::from)?,
            groups: st.inventory.groups().map_err(ApiError::from)?,
            me: c.subject.id,
        },
    ))
}

// ---- shell --------------------------------------------------------------

#[derive(Serialize)]
struct TerminalPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    server: Server,
    transfers: bool,
}

/// The browser shell for one server (open several, in tabs).
pub async fn terminal(
    State(st): State<AppState>,
    c: PageCaller,
    Path(id): Path<i64>,
) -> Result<Response, PageRejection> {
    let server = st.inventory.server(id).map_err(ApiError::from)?;
    c.may(Act::SeeServer {
        group: server.group_id,
    })?;
    c.may(Act::UseServer {
        group: server.group_id,
    })?;
    Ok(render(
        &st,
        StatusCode::OK,
        "terminal.html",
        TerminalPage {
            chrome: chrome(&c, "servers"),
            server,
            transfers: st.shell.transfers,
        },
    ))
}

#[derive(Serialize)]
struct SessionsPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    server: Server,
    sessions: Vec<crate::inventory::ShellSessionRecord>,
    audit: Vec<crate::inventory::AuditEntry>,
}

/// A server's shell sessions (with their recordings) and audit trail:
/// admins only, recordings show whatever was on the screen.
pub async fn sessions(
    State(st): State<AppState>,
    c: PageCaller,
    Path(id): Path<i64>,
) -> Result<Response, PageRejection> {
    let server = st.inventory.server(id).map_err(ApiError::from)?;
    c.may(Act::SeeServer {
        group: server.group_id,
    })?;
    c.may(Act::SeeOperations)?;
    Ok(render(
        &st,
        StatusCode::OK,
        "sessions.html",
        SessionsPage {
            chrome: chrome(&c, "servers"),
            sessions: st
                .inventory
                .shell_sessions(id, 500)
                .map_err(ApiError::from)?,
            audit: st
                .inventory
                .audit_log(Some(id), 200)
                .map_err(ApiError::from)?,
            server,
        },
    ))
}

#[derive(Serialize)]
struct PlayerPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    session: crate::inventory::ShellSessionRecord,
}

pub async fn player(
    State(st): State<AppState>,
    c: PageCaller,
    Path(id): Path<String>,
) -> Result<Response, PageRejection> {
    c.may(Act::SeeOperations)?;
    let session = st
        .inventory
        .shell_session(&id)
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::NotFound("no such session".into()))?;
    Ok(render(
        &st,
        StatusCode::OK,
        "player.html",
        PlayerPage {
            chrome: chrome(&c, "servers"),
            session,
        },
    ))
}

#[derive(Serialize)]
struct JobPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    job: crate::deploy::Job,
}

/// A deploy or removal in progress (or done).
pub async fn job(
    State(st): State<AppState>,
    c: PageCaller,
    Path(id): Path<String>,
) -> Result<Response, PageRejection> {
    c.may(Act::SeeOperations)?;
    let job = st
        .deployer
        .jobs
        .get(&id)
        .ok_or_else(|| ApiError::NotFound("no such job".into()))?;
    Ok(render(
        &st,
        StatusCode::OK,
        "job.html",
        JobPage {
            chrome: chrome(&c, "servers"),
            job,
        },
    ))
}

/// Join tokens and the one-line install for hosts without SSH access.
pub async fn tokens(State(st): State<AppState>, c: PageCaller) -> Result<Response, PageRejection> {
    c.may(Act::ManageUsers)?;
    // An unreadable folder lists nothing; the upload then says why.
    let packages = crate::deploy::packages::scan(&st.deployer.packages_dir).unwrap_or_default();
    Ok(render(
        &st,
        StatusCode::OK,
        "tokens.html",
        TokensPage {
            chrome: chrome(&c, "tokens"),
            packages,
        },
    ))
}

#[derive(Serialize)]
struct TokensPage<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    packages: Vec<crate::deploy::packages::AgentPackage>,
}
