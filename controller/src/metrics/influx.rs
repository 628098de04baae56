//! InfluxDB metric backend for large fleets, over the InfluxDB 1.x HTTP API
//! (`/ping`, `/write` with line protocol, `/query` with InfluxQL), which
//! InfluxDB 1.6, 1.8+ and the v1-compatibility endpoints of 2.x and 3.x all
//! answer. Plain HTTP only: an `https://` URL is refused at
//! [`InfluxStore::connect`].
//!
//! Owns: the schema (measurement `host`, tag `host=<id>`, one float field
//! per metric name), line-protocol encoding and escaping (non-finite values
//! and unrepresentable names are skipped, never sent), InfluxQL quoting of
//! every name and value it puts into a query, the bounded retry queue and
//! the one background task that drains it in order, and reading query
//! answers back into [`Point`]s.
//!
//! Must not: block or fail a caller of [`InfluxStore::write`] because
//! InfluxDB is slow or down (rows wait in the queue; when it is full the
//! oldest are dropped and counted); retry a rejected row forever; put the
//! password in `Debug` output, logs or error messages; build a query by
//! pasting unescaped input. It knows nothing about agents, QUIC or the web
//! API.
//!
//! Delivery is at least once, and exactly once in effect: a point is keyed
//! by (host, time), so a batch re-sent after a lost answer overwrites itself.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

const MEASUREMENT: &str = "host";
const HOST_TAG: &str = "host";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How much of an error answer's body goes into errors and logs.
const BODY_EXCERPT: usize = 300;
/// Rows per chunk InfluxDB streams back for a query.
const QUERY_CHUNK_ROWS: &str = "10000";
/// At most one "rows dropped" warning per this period.
const LOSS_LOG_PERIOD: Duration = Duration::from_secs(10);

fn default_queue_rows() -> usize {
    100_000
}

fn default_batch_rows() -> usize {
    5_000
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxSettings {
    /// Base URL, e.g. `http://127.0.0.1:8086` (a path prefix is kept).
    pub url: String,
    /// Created on connect if missing.
    pub database: String,
    /// With `password`: HTTP basic auth (1.x users, 2.x/3.x v1 auth).
    #[serde(default)]
    pub username: Option<String>,
    /// Without `username`: sent as `Authorization: Token <password>`
    /// (a 2.x/3.x API token).
    #[serde(default)]
    pub password: Option<String>,
    /// Bound of the retry queue, in rows.
    #[serde(default = "default_queue_rows")]
    pub queue_rows: usize,
    /// Rows per write request (at most `queue_rows`).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
}

impl InfluxSettings {
    /// Settings with the default queue and batch sizes and no auth.
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> InfluxSettings {
        InfluxSettings {
            url: url.into(),
            database: database.into(),
            username: None,
            password: None,
            queue_rows: default_queue_rows(),
            batch_rows: default_batch_rows(),
        }
    }
}

impl fmt::Debug for InfluxSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxSettings")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("queue_rows", &self.queue_rows)
            .field("batch_rows", &self.batch_rows)
            .finish()
    }
}

/// One host, one instant, many fields (metric name -> value).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub host: String,
    pub ts_ms: i64,
    pub fields: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub ts_ms: i64,
    pub value: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct WriterStats {
    /// Rows waiting (including the batch being sent).
    pub queued: usize,
    /// Rows InfluxDB accepted.
    pub written: u64,
    /// Failed write attempts that were retried.
    pub retries: u64,
    /// Rows dropped: pushed out of a full queue, or rejected by InfluxDB
    /// (4xx for that row).
    pub lost: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    #[error("invalid InfluxDB settings: {0}")]
    Settings(String),
    #[error("InfluxDB at {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("InfluxDB answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("unexpected answer from InfluxDB: {0}")]
    Protocol(String),
}

/// The InfluxDB store. Cheap to clone; the writer task stops when the last
/// clone is dropped (call [`InfluxStore::flush`] first to not lose rows).
#[derive(Clone)]
pub struct InfluxStore {
    shared: Arc<Shared>,
    _writer: Arc<AbortOnDrop>,
}

impl fmt::Debug for InfluxStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxStore")
            .field("url", &self.shared.http.shown_url)
            .field("database", &self.shared.http.database)
            .finish_non_exhaustive()
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    http: Http,
    queue: Mutex<Queue>,
    wake: Notify,
    queue_rows: usize,
    batch_rows: usize,
}

#[derive(Default)]
struct Queue {
    /// Encoded lines, oldest first.
    lines: VecDeque<String>,
    /// Lines at the front that are in a request right now: never dropped
    /// (the server may already have them).
    in_flight: usize,
    written: u64,
    retries: u64,
    lost: u64,
    last_error: Option<String>,
    last_loss_log: Option<Instant>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue stays consistent even if a holder panicked.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl InfluxStore {
    /// Checks the settings, pings InfluxDB, creates the database if missing
    /// and starts the writer task (so it must run inside a Tokio runtime).
    /// InfluxDB down -> [`InfluxError::Unreachable`].
    pub async fn connect(settings: InfluxSettings) -> Result<InfluxStore, InfluxError> {
        if settings.queue_rows == 0 || settings.batch_rows == 0 {
            return Err(InfluxError::Settings(
                "queue_rows and batch_rows must be at least 1".into(),
            ));
        }
        let http = Http::new(&settings)?;
        http.ping().await?;
        http.create_database().await?;
        let shared = Arc::new(Shared {
            http,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            queue_rows: settings.queue_rows,
            batch_rows: settings.batch_rows.min(settings.queue_rows),
        });
        let task = tokio::spawn(writer(shared.clone()));
        info!(
            url = %shared.http.shown_url,
            database = %shared.http.database,
            "InfluxDB metric store connected"
        );
        Ok(InfluxStore {
            shared,
            _writer: Arc::new(AbortOnDrop(task.abort_handle())),
        })
    }

    /// Never blocks on InfluxDB: rows go into the bounded queue; a
    /// background task writes them in batches and retries failures (server
    /// down, 5xx, timeouts, auth) with backoff, keeping order; a row
    /// InfluxDB rejects (4xx: bad data, type conflict) is logged and counted
    /// in `lost`, not retried forever. When the queue is full the oldest
    /// rows (except a batch being sent) are dropped and counted in `lost`.
    ///
    /// Non-finite values are skipped, as are fields named `time` or `host`
    /// and names line protocol cannot carry (empty, line breaks, a
    /// backslash before `,`, ` `, `=` or at the end); a row left with no
    /// field, or whose host id is such a name, is skipped.
    pub fn write(&self, rows: Vec<Row>) {
        let lines: Vec<String> = rows.iter().filter_map(encode_row).collect();
        if lines.len() < rows.len() {
            debug!(
                skipped = rows.len() - lines.len(),
                "rows without any writable field skipped"
            );
        }
        if lines.is_empty() {
            return;
        }
        let mut q = self.shared.lock();
        q.lines.extend(lines);
        let excess = q.lines.len().saturating_sub(self.shared.queue_rows);
        if excess > 0 {
            // in_flight <= batch_rows <= queue_rows, so `excess` rows
            // outside the batch being sent always exist.
            let start = q.in_flight;
            q.lines.drain(start..start + excess);
            q.lost += excess as u64;
            let now = Instant::now();
            if q.last_loss_log
                .is_none_or(|t| now.duration_since(t) >= LOSS_LOG_PERIOD)
            {
                q.last_loss_log = Some(now);
                warn!(
                    dropped = excess,
                    lost_total = q.lost,
                    queue_rows = self.shared.queue_rows,
                    "InfluxDB write queue full: oldest rows dropped"
                );
            }
        }
        drop(q);
        self.shared.wake.notify_one();
    }

    pub fn stats(&self) -> WriterStats {
        let q = self.shared.lock();
        WriterStats {
            queued: q.lines.len(),
            written: q.written,
            retries: q.retries,
            lost: q.lost,
            last_error: q.last_error.clone(),
        }
    }

    /// Waits until the queue is empty (everything written or dropped) or
    /// `timeout` passes; true if it emptied.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.lock().lines.is_empty() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(10))).await;
        }
    }

    /// One host's fields over [from, to] (ms, both ends included), one
    /// entry per distinct requested field, in request order (empty if it
    /// has no data). `step_ms` None = raw points; Some(step) = mean per
    /// bucket (`GROUP BY time(step) fill(none)`): buckets are aligned to
    /// multiples of `step` since the epoch and stamped with their start,
    /// so the first one may start before `from` (its mean still only uses
    /// points in range).
    pub async fn query_host(
        &self,
        host: &str,
        fields: &[&str],
        from_ms: i64,
        to_ms: i64,
        step_ms: Option<i64>,
    ) -> Result<Vec<(String, Vec<Point>)>, InfluxError> {
        let mut wanted: Vec<&str> = Vec::new();
        for f in fields {
            if !wanted.contains(f) {
                wanted.push(f);
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = String::from("SELECT ");
        for (i, f) in wanted.iter().enumerate() {
            if i > 0 {
                q.push_str(", ");
            }
            match step_ms {
                None => push_ident(&mut q, f),
                Some(_) => {
                    q.push_str("mean(");
                    push_ident(&mut q, f);
                    q.push_str(") AS ");
                    push_ident(&mut q, f);
                }
            }
        }
        q.push_str(" FROM ");
        push_ident(&mut q, MEASUREMENT);
        q.push_str(" WHERE ");
        push_ident(&mut q, HOST_TAG);
        q.push_str(" = ");
        push_string(&mut q, host);
        push_time_range(&mut q, from_ms, to_ms);
        if let Some(step) = step_ms {
            push_group_by_time(&mut q, step)?;
            q.push_str(" fill(none)");
        }
        let series = self.shared.http.query(&q).await?;
        let mut out: Vec<(String, Vec<Point>)> =
            wanted.iter().map(|f| (f.to_string(), Vec::new())).collect();
        for s in &series {
            for (name, points) in &mut out {
                // Column 0 is time; a field named like it cannot be stored.
                if let Some(col) = s.columns.iter().skip(1).position(|c| c == name) {
                    points.extend(s.points(col + 1)?);
                }
            }
        }
        Ok(out)
    }

    /// Mean over the given hosts per bucket of `step_ms` (aligned as in
    /// [`InfluxStore::query_host`]): first the mean per host and bucket,
    /// then the mean of those, so a host sampling more often does not weigh
    /// more. Buckets where no host has data are left out.
    pub async fn query_hosts_mean(
        &self,
        hosts: &[&str],
        field: &str,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<Point>, InfluxError> {
        let mut distinct: Vec<&str> = Vec::new();
        for h in hosts {
            if !distinct.contains(h) {
                distinct.push(h);
            }
        }
        if distinct.is_empty() {
            return Ok(Vec::new());
        }
        let mut inner = String::from("SELECT mean(");
        push_ident(&mut inner, field);
        inner.push_str(") AS \"m\" FROM ");
        push_ident(&mut inner, MEASUREMENT);
        inner.push_str(" WHERE (");
        for (i, h) in distinct.iter().enumerate() {
            if i > 0 {
                inner.push_str(" OR ");
            }
            push_ident(&mut inner, HOST_TAG);
            inner.push_str(" = ");
            push_string(&mut inner, h);
        }
        inner.push(')');
        push_time_range(&mut inner, from_ms, to_ms);
        push_group_by_time(&mut inner, step_ms)?;
        inner.push_str(", ");
        push_ident(&mut inner, HOST_TAG);
        inner.push_str(" fill(none)");

        let mut q = String::from("SELECT mean(\"m\") AS \"m\" FROM (");
        q.push_str(&inner);
        q.push_str(") WHERE true");
        push_time_range(&mut q, from_ms, to_ms);
        push_group_by_time(&mut q, step_ms)?;
        q.push_str(" fill(none)");
        let series = self.shared.http.query(&q).await?;
        let mut out = Vec::new();
        for s in &series {
            if let Some(col) = s.columns.iter().position(|c| c == "m") {
                out.extend(s.points(col)?);
            }
        }
        out.sort_by_key(|p| p.ts_ms);
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// The writer task.

enum WriteError {
    /// Worth retrying the same batch later: server down, 5xx, timeout,
    /// auth, unknown endpoint.
    Retry(String),
    /// The database disappeared: create it, then retry.
    NoDatabase(String),
    /// This batch is refused (4xx): some row in it is bad, or it is too big.
    Reject(String),
}

async fn writer(shared: Arc<Shared>) {
    let mut backoff = BACKOFF_MIN;
    // Shrinks to isolate a rejected row, grows back after successes.
    let mut limit = shared.batch_rows;
    let mut failing = false;
    loop {
        let batch = {
            let mut q = shared.lock();
            let n = q.lines.len().min(limit);
            if n == 0 {
                None
            } else {
                q.in_flight = n;
                let size = q.lines.range(..n).map(|l| l.len() + 1).sum();
                let mut body = String::with_capacity(size);
                for l in q.lines.range(..n) {
                    body.push_str(l);
                    body.push('\n');
                }
                Some((n, body))
            }
        };
        let Some((n, body)) = batch else {
            shared.wake.notified().await;
            continue;
        };
        let result = shared.http.write(body).await;
        let mut create_database = false;
        let mut pause = false;
        match result {
            Ok(()) => {
                let mut q = shared.lock();
                q.lines.drain(..n);
                q.in_flight = 0;
                q.written += n as u64;
                drop(q);
                backoff = BACKOFF_MIN;
                limit = (limit * 2).min(shared.batch_rows);
                if failing {
                    failing = false;
                    info!(url = %shared.http.shown_url, "InfluxDB writes work again");
                }
            }
            Err(WriteError::Reject(reason)) if n > 1 => {
                // Split to find the row(s) at fault; rows in an accepted half
                // may be re-sent, which overwrites them with themselves.
                shared.lock().in_flight = 0;
                debug!(rows = n, %reason, "InfluxDB rejected a batch: splitting it");
                limit = n / 2;
            }
            Err(WriteError::Reject(reason)) => {
                let mut q = shared.lock();
                q.lines.drain(..1);
                q.in_flight = 0;
                q.lost += 1;
                q.last_error = Some(reason.clone());
                drop(q);
                warn!(%reason, "InfluxDB rejected a row: dropped");
                limit = shared.batch_rows;
            }
            Err(WriteError::NoDatabase(reason)) => {
                note_failure(&shared, &reason);
                warn!(%reason, database = %shared.http.database, "InfluxDB database missing: creating it");
                create_database = true;
                pause = true;
            }
            Err(WriteError::Retry(reason)) => {
                let queued = note_failure(&shared, &reason);
                if !failing {
                    failing = true;
                    warn!(%reason, queued, "InfluxDB write failed: retrying with backoff");
                } else {
                    debug!(%reason, queued, "InfluxDB write failed again");
                }
                pause = true;
            }
        }
        if create_database && let Err(e) = shared.http.create_database().await {
            shared.lock().last_error = Some(e.to_string());
        }
        if pause {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Counts a failed attempt that will be retried; returns the queue length.
fn note_failure(shared: &Shared, reason: &str) -> usize {
    let mut q = shared.lock();
    // Not in flight while waiting: if the queue overflows now, the truly
    // oldest rows go.
    q.in_flight = 0;
    q.retries += 1;
    q.last_error = Some(reason.to_string());
    q.lines.len()
}

// ---------------------------------------------------------------------------
// HTTP.

enum Auth {
    None,
    Basic(String, String),
    Token(String),
}

struct Http {
    client: reqwest::Client,
    ping_url: Url,
    write_url: Url,
    query_url: Url,
    /// The base URL as shown in errors and logs.
    shown_url: String,
    database: String,
    auth: Auth,
}

impl Http {
    fn new(s: &InfluxSettings) -> Result<Http, InfluxError> {
        let bad = |m: String| InfluxError::Settings(m);
        let base = Url::parse(s.url.trim())
            .map_err(|e| bad(format!("url {:?} is not a URL: {e}", s.url)))?;
        match base.scheme() {
            "http" => {}
            "https" => {
                return Err(bad(format!(
                    "url {}: only plain http:// is supported (no TLS in this client)",
                    s.url
                )));
            }
            other => return Err(bad(format!("url {}: unknown scheme {other:?}", s.url))),
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad(
                "url must not carry credentials: use username and password".into(),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad(format!(
                "url {} must not have a query or fragment",
                s.url
            )));
        }
        if s.database.is_empty() {
            return Err(bad("database must not be empty".into()));
        }
        let shown_url = base.as_str().trim_end_matches('/').to_string();
        let endpoint = |name: &str| {
            let mut u = base.clone();
            u.set_path(&format!("{}/{name}", base.path().trim_end_matches('/')));
            u
        };
        let ping_url = endpoint("ping");
        let mut write_url = endpoint("write");
        write_url
            .query_pairs_mut()
            .append_pair("db", &s.database)
            .append_pair("precision", "ms");
        let mut query_url = endpoint("query");
        query_url
            .query_pairs_mut()
            .append_pair("db", &s.database)
            .append_pair("epoch", "ms")
            .append_pair("chunked", "true")
            .append_pair("chunk_size", QUERY_CHUNK_ROWS);
        let auth = match (&s.username, &s.password) {
            (Some(u), p) => Auth::Basic(u.clone(), p.clone().unwrap_or_default()),
            (None, Some(p)) => Auth::Token(p.clone()),
            (None, None) => Auth::None,
        };
        // reqwest has rustls without a bundled provider (https URLs work
        // with the workspace's ring): it needs the process default.
        certs::tls::install_default_provider();
        #[allow(clippy::disallowed_methods)] // the provider is installed just above
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| bad(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(Http {
            client,
            ping_url,
            write_url,
            query_url,
            shown_url,
            database: s.database.clone(),
            auth,
        })
    }

    fn authed(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => r,
            Auth::Basic(u, p) => r.basic_auth(u, Some(p)),
            Auth::Token(t) => r.header(reqwest::header::AUTHORIZATION, format!("Token {t}")),
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> InfluxError {
        InfluxError::Unreachable {
            url: self.shown_url.clone(),
            reason: error_chain(e),
        }
    }

    async fn ping(&self) -> Result<(), InfluxError> {
        let resp = self
            .authed(self.client.get(self.ping_url.clone()))
            .timeout(CONNECT_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = excerpt(&resp.text().await.unwrap_or_default());
        Err(InfluxError::Status {
            status: status.as_u16(),
            body,
        })
    }

    /// `CREATE DATABASE` (idempotent). Servers that manage databases
    /// otherwise (2.x buckets, 3.x creating on write) may refuse it: that
    /// is logged, not an error; refused credentials are.
    async fn create_database(&self) -> Result<(), InfluxError> {
        let mut q = String::from("CREATE DATABASE ");
        push_ident(&mut q, &self.database);
        match self.run_query(&q).await {
            Ok(_) => Ok(()),
            Err(
                e @ (InfluxError::Unreachable { .. }
                | InfluxError::Status {
                    status: 401 | 403, ..
                }),
            ) => Err(e),
            Err(e) => {
                warn!(database = %self.database, error = %e, "cannot create the InfluxDB database; writing anyway");
                Ok(())
            }
        }
    }

    async fn write(&self, body: String) -> Result<(), WriteError> {
        let resp = self
            .authed(self.client.post(self.write_url.clone()))
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .timeout(WRITE_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(|e| WriteError::Retry(self.unreachable(&e).to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = excerpt(&resp.text().await.unwrap_or_default());
        let reason = InfluxError::Status {
            status: status.as_u16(),
            body: body.clone(),
        }
        .to_string();
        Err(match status {
            StatusCode::NOT_FOUND if body.contains("database not found") => {
                WriteError::NoDatabase(reason)
            }
            StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::NOT_FOUND
            | StatusCode::REQUEST_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS => WriteError::Retry(reason),
            s if s.is_client_error() => WriteError::Reject(reason),
            _ => WriteError::Retry(reason),
        })
    }

    /// Runs `q`, retrying once at once if the request did not get through
    /// (a pooled connection the server closed after a restart).
    async fn query(&self, q: &str) -> Result<Vec<Series>, InfluxError> {
        match self.run_query(q).await {
            Err(InfluxError::Unreachable { .. }) => self.run_query(q).await,
            other => other,
        }
    }

    async fn run_query(&self, q: &str) -> Result<Vec<Series>, InfluxError> {
        // The form body is the same encoding as a URL query.
        let mut form = Url::parse("http://form.invalid/").expect("constant URL");
        form.query_pairs_mut().append_pair("q", q);
        let body = form.query().unwrap_or_default().to_string();
        let resp = self
            .authed(self.client.post(self.query_url.clone()))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .timeout(QUERY_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.unreachable(&e))?;
        if status == StatusCode::BAD_REQUEST {
            let msg = serde_json::from_str::<QueryResponse>(&text)
                .ok()
                .and_then(|r| r.error)
                .unwrap_or_else(|| excerpt(&text));
            return Err(InfluxError::BadQuery(format!(
                "{msg} (query: {})",
                excerpt(q)
            )));
        }
        if !status.is_success() {
            return Err(InfluxError::Status {
                status: status.as_u16(),
                body: excerpt(&text),
            });
        }
        parse_query_response(&text).map_err(|e| match e {
            InfluxError::BadQuery(m) => {
                InfluxError::BadQuery(format!("{m} (query: {})", excerpt(q)))
            }
            other => other,
        })
    }
}

/// A reqwest error with its causes ("error sending request: connection
/// refused"), which its `Display` alone leaves out.
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        // Its Display names the URL, which the caller shows already.
        let top = e.to_string();
        match e.url() {
            Some(u) => top.replace(&format!(" ({u})"), ""),
            None => top,
        }
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        source = s.source();
    }
    out
}

fn excerpt(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(BODY_EXCERPT) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Query answers.

#[derive(Deserialize)]
struct QueryResponse {
    #[serde(default)]
    results: Vec<StatementResult>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<Series>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
}

impl Series {
    /// The non-null values of column `col` with their times (column 0).
    fn points(&self, col: usize) -> Result<Vec<Point>, InfluxError> {
        let mut out = Vec::with_capacity(self.values.len());
        for row in &self.values {
            let ts = row
                .first()
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| {
                    InfluxError::Protocol(format!("row without an integer time: {row:?}"))
                })?;
            match row.get(col) {
                None | Some(serde_json::Value::Null) => {}
                Some(v) => {
                    let value = v.as_f64().ok_or_else(|| {
                        InfluxError::Protocol(format!("non-numeric value {v} at {ts}"))
                    })?;
                    out.push(Point { ts_ms: ts, value });
                }
            }
        }
        Ok(out)
    }
}

/// One JSON document, or several (`chunked=true`): the series of the first
/// statement, chunks of the same series joined.
fn parse_query_response(text: &str) -> Result<Vec<Series>, InfluxError> {
    let mut out: Vec<Series> = Vec::new();
    for doc in serde_json::Deserializer::from_str(text).into_iter::<QueryResponse>() {
        let doc = doc.map_err(|e| InfluxError::Protocol(format!("{e}: {}", excerpt(text))))?;
        if let Some(e) = doc.error {
            return Err(InfluxError::BadQuery(e));
        }
        for result in doc.results {
            if let Some(e) = result.error {
                return Err(InfluxError::BadQuery(e));
            }
            for s in result.series {
                match out
                    .iter_mut()
                    .find(|o| o.tags == s.tags && o.columns == s.columns)
                {
                    Some(o) => o.values.extend(s.values),
                    None => out.push(s),
                }
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Line protocol.

/// Whether line protocol (1.x, where `\` escapes only `,`, ` ` and `=`) can
/// carry `s` as a tag value or field key unchanged.
fn representable(s: &str) -> bool {
    if s.is_empty() || s.contains(['\n', '\r']) {
        return false;
    }
    let b = s.as_bytes();
    !b.iter()
        .enumerate()
        .any(|(i, &c)| c == b'\\' && matches!(b.get(i + 1), None | Some(b',' | b' ' | b'=')))
}

fn push_escaped_key(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, ',' | ' ' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
}

fn encode_row(row: &Row) -> Option<String> {
    if !representable(&row.host) {
        return None;
    }
    let mut line = String::with_capacity(32 + row.host.len() + row.fields.len() * 32);
    line.push_str(MEASUREMENT);
    line.push(',');
    line.push_str(HOST_TAG);
    line.push('=');
    push_escaped_key(&mut line, &row.host);
    let mut any = false;
    for (name, value) in &row.fields {
        if !value.is_finite() || name == "time" || name == HOST_TAG || !representable(name) {
            continue;
        }
        line.push(if any { ',' } else { ' ' });
        any = true;
        push_escaped_key(&mut line, name);
        // Display of f64 is plain decimal (no exponent): read back exactly.
        let _ = write!(line, "={value}");
    }
    if !any {
        return None;
    }
    let _ = write!(line, " {}", row.ts_ms);
    Some(line)
}

// ---------------------------------------------------------------------------
// InfluxQL.

fn push_quoted(out: &mut String, s: &str, quote: char) {
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// A double-quoted identifier.
fn push_ident(out: &mut String, s: &str) {
    push_quoted(out, s, '"');
}

/// A single-quoted string literal.
fn push_string(out: &mut String, s: &str) {
    push_quoted(out, s, '\'');
}

fn push_time_range(out: &mut String, from_ms: i64, to_ms: i64) {
    let _ = write!(out, " AND time >= {from_ms}ms AND time <= {to_ms}ms");
}

fn push_group_by_time(out: &mut String, step_ms: i64) -> Result<(), InfluxError> {
    if step_ms <= 0 {
        return Err(InfluxError::BadQuery(format!(
            "step must be positive, not {step_ms} ms"
        )));
    }
    let _ = write!(out, " GROUP BY time({step_ms}ms)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, fields: &[(&str, f64)]) -> Row {
        Row {
            host: host.into(),
            ts_ms: 1000,
            fields: fields.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn line_protocol_escapes_and_skips() {
        assert_eq!(
            encode_row(&row("a b,c=d", &[("x,y z=w", 1.5), ("cpu.busy_pct", 2.0)])).unwrap(),
            r"host,host=a\ b\,c\=d x\,y\ z\=w=1.5,cpu.busy_pct=2 1000"
        );
        assert_eq!(
            encode_row(&row(
                "h",
                &[("nan", f64::NAN), ("inf", f64::INFINITY), ("ok", -0.25)]
            ))
            .unwrap(),
            "host,host=h ok=-0.25 1000"
        );
        assert!(encode_row(&row("h", &[("nan", f64::NAN)])).is_none());
        assert!(encode_row(&row("h", &[])).is_none());
        assert!(encode_row(&row("", &[("a", 1.0)])).is_none());
        assert!(encode_row(&row("h\n", &[("a", 1.0)])).is_none());
        assert!(encode_row(&row("h\\", &[("a", 1.0)])).is_none());
        assert_eq!(
            encode_row(&row(
                r"a\b",
                &[("time", 1.0), ("host", 2.0), (r"k\=", 3.0), ("v", 4.0)]
            ))
            .unwrap(),
            r"host,host=a\b v=4 1000"
        );
        // Plain decimal, no exponent, round-trips.
        let line = encode_row(&row("h", &[("v", 1e-7), ("w", 1.5e300)])).unwrap();
        assert!(!line.contains('e'), "{line}");
    }

    #[test]
    fn influxql_quoting() {
        let mut s = String::new();
        push_string(&mut s, r"it's\ ';DROP DATABASE x");
        assert_eq!(s, r"'it\'s\\ \';DROP DATABASE x'");
        let mut s = String::new();
        push_ident(&mut s, "a\"b\nc");
        assert_eq!(s, r#""a\"b\nc""#);
    }

    #[test]
    fn settings_debug_hides_password_and_defaults_apply() {
        let s: InfluxSettings = serde_json::from_str(
            r#"{"url":"http://127.0.0.1:8086","database":"m","username":"u","password":"hunter2"}"#,
        )
        .unwrap();
        assert_eq!(s.queue_rows, 100_000);
        assert_eq!(s.batch_rows, 5_000);
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(
            serde_json::from_str::<InfluxSettings>(r#"{"url":"x","database":"m","oops":1}"#)
                .is_err()
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        for url in [
            "https://h:8086",
            "ftp://h",
            "not a url",
            "http://u:p@h:8086",
            "http://h/?db=x",
        ] {
            let s = InfluxSettings::new(url, "db");
            assert!(
                matches!(Http::new(&s), Err(InfluxError::Settings(_))),
                "{url}"
            );
        }
        assert!(Http::new(&InfluxSettings::new("http://h:8086", "")).is_err());
        let h = Http::new(&InfluxSettings::new("http://h:8086/prefix/", "d b")).unwrap();
        assert_eq!(
            h.write_url.as_str(),
            "http://h:8086/prefix/write?db=d+b&precision=ms"
        );
        assert_eq!(h.shown_url, "http://h:8086/prefix");
    }

    #[test]
    fn chunked_answers_are_joined() {
        let text = r#"{"results":[{"statement_id":0,"series":[{"name":"host","columns":["time","v"],"values":[[1,1.5],[2,null]],"partial":true}],"partial":true}]}
{"results":[{"statement_id":0,"series":[{"name":"host","columns":["time","v"],"values":[[3,3]]}]}]}"#;
        let s = parse_query_response(text).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].points(1).unwrap(),
            vec![
                Point {
                    ts_ms: 1,
                    value: 1.5
                },
                Point {
                    ts_ms: 3,
                    value: 3.0
                }
            ]
        );
        let err = parse_query_response(
            r#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#,
        );
        assert!(matches!(err, Err(InfluxError::BadQuery(m)) if m.contains("database not found")));
    }
}
