//! HTTP: the web UI (server-rendered pages with small scripts), the JSON
//! API, and the static assets embedded at build time. The only module that
//! knows HTTP, HTML and JSON; it holds no state of its own beyond the
//! rendered templates, and decides nothing about permissions: every route
//! takes a caller extractor ([`caller`]) and asks [`crate::auth::policy`].
//!
//! - [`pages`]: login and the HTML pages.
//! - [`api`]: the inventory API (groups, rooms, servers, users).
//! - [`monitoring`]: agents, hosts, series, alerts.
//! - [`assets`]: templates and static files.
//! - [`serve`]: plain HTTP or HTTPS, optionally under a path prefix.

mod api;
pub mod assets;
pub mod caller;
mod deploy;
mod error;
mod files;
mod monitoring;
pub mod pages;
pub mod plans;
pub mod serve;
mod shell;
pub mod tasks;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post, put};

pub use serve::serve;

use crate::auth::Auth;
use crate::gateway::Registry;
use crate::inventory::Inventory;
use crate::metrics::Metrics;
use crate::vault::Vault;

/// What of the configuration the web layer needs at request time.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// `""` or `/name`: where the UI lives behind a reverse proxy.
    pub prefix: String,
    /// Session cookies carry `Secure`.
    pub secure_cookies: bool,
    /// How long metrics are kept: charts say so when asked for older data.
    pub retention: crate::metrics::Retention,
}

impl WebConfig {
    pub fn cookie_path(&self) -> &str {
        if self.prefix.is_empty() {
            "/"
        } else {
            &self.prefix
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub alerts: Arc<crate::alerts::Alerts>,
    pub inventory: Arc<Inventory>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Auth>,
    pub vault: Arc<Vault>,
    pub web: Arc<WebConfig>,
    pub templates: Arc<assets::Templates>,
    /// Session cookie lifetime (seconds).
    pub session_max_age: u64,
    pub shell: Arc<crate::shell::ShellSettings>,
    pub deployer: crate::deploy::Deployer,
    /// Where live shell recordings are written before they go to `files`.
    pub shell_spool: std::path::PathBuf,
    pub files: crate::files::FileStore,
    pub plans: crate::loadtest::Plans,
    pub runner: Arc<crate::loadtest::runner::Runner>,
    /// Where uploads are spooled before they are checked and stored.
    pub upload_spool: std::path::PathBuf,
}

/// Every route. Paths are relative to the configured prefix.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/api/session",
            get(api::session_get)
                .post(api::session_login)
                .delete(api::session_logout),
        )
        .route("/api/groups", get(api::groups_list).post(api::group_create))
        .route(
            "/api/groups/{id}",
            get(api::group_get)
                .put(api::group_update)
                .delete(api::group_delete),
        )
        .route("/api/groups/{id}/members", get(api::members_list))
        .route(
            "/api/groups/{id}/members/{user}",
            put(api::member_add).delete(api::member_remove),
        )
        .route("/api/rooms", get(api::rooms_list).post(api::room_create))
        .route(
            "/api/rooms/{id}",
            get(api::room_get)
                .put(api::room_update)
                .delete(api::room_delete),
        )
        .route(
            "/api/servers",
            get(api::servers_list).post(api::server_create),
        )
        .route(
            "/api/servers/{id}",
            get(api::server_get)
                .put(api::server_update)
                .delete(api::server_delete),
        )
        .route("/api/servers/{id}/probe", post(api::server_probe))
        .route("/api/servers/{id}/shell", get(shell::shell))
        .route("/api/servers/{id}/sessions", get(shell::sessions))
        .route(
            "/api/servers/{id}/files",
            get(files::download)
                .post(files::upload)
                // Uploads stream to the server; their size is not bounded here.
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/recordings/{session}", get(shell::recording))
        .route(
            "/api/servers/{id}/host-key",
            delete(api::server_forget_host_key),
        )
        .route(
            "/api/servers/{id}/agents/{agent}",
            put(api::agent_link).delete(api::agent_unlink),
        )
        .route("/api/servers/{id}/deploy", post(deploy::deploy))
        .route("/api/servers/{id}/undeploy", post(deploy::remove))
        .route("/api/jobs/{id}", get(deploy::job))
        .route(
            "/api/packages",
            get(deploy::packages_list)
                .post(deploy::packages_upload)
                .layer(axum::extract::DefaultBodyLimit::max(300 * 1024 * 1024)),
        )
        .route("/packages/{name}", get(deploy::package_file))
        .route(
            "/api/tokens",
            get(deploy::tokens_list).post(deploy::token_create),
        )
        .route("/api/users", get(api::users_list).post(api::user_create))
        .route(
            "/api/users/{id}",
            get(api::user_get)
                .put(api::user_update)
                .delete(api::user_delete),
        )
        .route("/api/plans", get(plans::list).post(plans::create))
        .route(
            "/api/plans/{id}",
            get(plans::get_one).put(plans::save).delete(plans::delete),
        )
        .route(
            "/api/plans/import",
            post(plans::import).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/api/plans/upload",
            post(plans::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/plans/{id}/bundle", get(plans::bundle))
        .route("/api/plans/{id}/prepare", post(plans::prepare))
        .route("/api/plans/{id}/run-files", get(plans::run_files))
        .route("/api/plans/{id}/copy", post(plans::copy))
        .route("/api/plans/{id}/jmx", get(plans::jmx))
        .route(
            "/api/plans/{id}/files",
            post(plans::file_upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/api/plans/{id}/files/{name}",
            get(plans::file_get).delete(plans::file_delete),
        )
        .route("/api/plans/{id}/run", post(tasks::run_plan))
        .route("/api/tasks", get(tasks::list))
        .route("/api/rooms/{id}/generators", get(tasks::room_generators))
        .route("/api/tasks/{id}", get(tasks::get_one).delete(tasks::delete))
        .route("/api/tasks/{id}/stop", post(tasks::stop))
        .route("/api/tasks/{id}/rate", post(tasks::rate))
        .route("/api/tasks/{id}/series", get(tasks::series))
        .route("/api/tasks/{id}/live", get(tasks::live))
        .route("/api/tasks/{id}/artifact", get(tasks::artifact))
        .route("/api/tasks/{id}/generators", post(tasks::attach))
        .route(
            "/api/tasks/{id}/generators/{agent}/stop",
            post(tasks::generator_stop),
        )
        .route(
            "/api/tasks/{id}/generators/{agent}/rate",
            post(tasks::generator_rate),
        )
        .route(
            "/api/tasks/{id}/generators/{agent}/log",
            get(tasks::generator_log),
        )
        .route(
            "/api/tasks/{id}/generators/{agent}/jtl",
            get(tasks::generator_jtl),
        )
        .route("/api/agents", get(monitoring::agents))
        .route("/api/hosts", get(monitoring::hosts))
        .route("/api/hosts/{id}/series", get(monitoring::host_series))
        .route("/api/series/mean", get(monitoring::mean_series))
        .route("/api/alerts", get(monitoring::alerts))
        .route("/api/alerts/settings", get(monitoring::alert_settings))
        .route("/api/alerts/rules", put(monitoring::alert_rules_put))
        .route(
            "/api/alerts/recipients",
            put(monitoring::alert_recipients_put),
        )
        .route("/api/alerts/test-mail", post(monitoring::alert_test_mail))
        .route("/api/metrics/status", get(monitoring::metrics_status))
        .route("/api/{*rest}", axum::routing::any(api::not_found));
    let pages = Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login_submit))
        .route("/logout", post(pages::logout))
        .route("/servers", get(pages::servers))
        .route("/servers/new", get(pages::server_new))
        .route("/servers/{id}/edit", get(pages::server_edit))
        .route("/servers/{id}/terminal", get(pages::terminal))
        .route("/servers/{id}/sessions", get(pages::sessions))
        .route("/sessions/{id}", get(pages::player))
        .route("/jobs/{id}", get(pages::job))
        .route("/tokens", get(pages::tokens))
        .route("/plans", get(plans::list_page))
        .route("/plans/{id}", get(plans::editor_page))
        .route("/tasks", get(tasks::list_page))
        .route("/tasks/{id}", get(tasks::task_page))
        .route("/overview", get(monitoring::overview_page))
        .route("/monitor", get(monitoring::monitor_page))
        .route("/alerts", get(monitoring::alerts_page))
        .route("/groups", get(pages::groups))
        .route("/groups/{id}", get(pages::group))
        .route("/rooms", get(pages::rooms))
        .route("/users", get(pages::users))
        .route("/static/{*path}", get(assets::static_file))
        .route("/healthz", get(|| async { "ok" }));
    let app = api
        .merge(pages)
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state.clone());
    if state.web.prefix.is_empty() {
        app
    } else {
        Router::new().nest(&state.web.prefix, app)
    }
}

/// Headers every response carries: no framing (clickjacking), no MIME
/// sniffing, and a content policy that allows only our own scripts.
/// (Inline styles are allowed: the terminal sets its colours and sizes
/// through them; inline scripts are not. WebAssembly may compile: the
/// recording player's terminal emulator is WebAssembly.)
async fn security_headers(mut r: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let h = r.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    r
}
