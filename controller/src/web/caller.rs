//! Who is calling: the extractors every protected route takes. A JSON
//! route takes [`ApiCaller`] (401 without a valid session or API token;
//! 403 on a state-changing request without the session's CSRF token); a
//! page takes [`PageCaller`] (redirect to the login page). What the caller
//! may then do is asked of [`crate::auth::policy`], never decided here.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::AppState;
use super::error::ApiError;
use crate::auth::{Act, Denied, SessionError, Subject, constant_time_eq};

pub const SESSION_COOKIE: &str = "mp_session";
pub const LOGIN_COOKIE: &str = "mp_login";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name`, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value with the attributes every cookie of ours has.
pub fn set_cookie(st: &AppState, name: &str, value: &str, max_age_secs: Option<u64>) -> String {
    let mut c = format!(
        "{name}={value}; Path={}; HttpOnly; SameSite=Strict",
        st.web.cookie_path()
    );
    if let Some(s) = max_age_secs {
        c.push_str(&format!("; Max-Age={s}"));
    }
    if st.web.secure_cookies {
        c.push_str("; Secure");
    }
    c
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A caller of the JSON API.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub subject: Subject,
    /// The session's CSRF token; none for an API-token caller.
    pub csrf: Option<String>,
}

impl ApiCaller {
    pub fn may(&self, act: Act) -> Result<(), ApiError> {
        self.subject.may(act).map_err(ApiError::Denied)
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        if let Some(v) = parts.headers.get(header::AUTHORIZATION) {
            // Bearer tokens are not sent by browsers on their own, so they
            // need no CSRF token.
            let token = v
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    ApiError::Unauthenticated("Authorization must be `Bearer <token>`".into())
                })?;
            let subject = st.auth.api_token(token.trim()).map_err(|e| match e {
                SessionError::Inventory(e) => ApiError::from(e),
                _ => ApiError::Unauthenticated("unknown or revoked API token".into()),
            })?;
            return Ok(ApiCaller {
                subject,
                csrf: None,
            });
        }
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .ok_or_else(|| ApiError::Unauthenticated("not logged in".into()))?;
        let view = st.auth.session(&token)?;
        if !is_safe(&parts.method) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_time_eq(sent, &view.csrf) {
                return Err(ApiError::Csrf);
            }
        }
        Ok(ApiCaller {
            subject: view.subject,
            csrf: Some(view.csrf),
        })
    }
}

/// A logged-in visitor of a page, with the CSRF token the page embeds for
/// its scripts.
#[derive(Debug, Clone)]
pub struct PageCaller {
    pub subject: Subject,
    pub csrf: String,
}

/// Where a page sends someone it cannot serve.
pub enum PageRejection {
    Login { prefix: String, expired: bool },
    Error(ApiError),
}

impl IntoResponse for PageRejection {
    fn into_response(self) -> Response {
        match self {
            PageRejection::Login { prefix, expired } => {
                let q = if expired { "?expired=1" } else { "" };
                Redirect::to(&format!("{prefix}/login{q}")).into_response()
            }
            PageRejection::Error(e) => super::pages::error_page(e),
        }
    }
}

impl From<ApiError> for PageRejection {
    fn from(e: ApiError) -> Self {
        PageRejection::Error(e)
    }
}

impl From<Denied> for PageRejection {
    fn from(d: Denied) -> Self {
        PageRejection::Error(ApiError::Denied(d))
    }
}

impl PageCaller {
    pub fn may(&self, act: Act) -> Result<(), PageRejection> {
        self.subject.may(act).map_err(PageRejection::from)
    }
}

impl FromRequestParts<AppState> for PageCaller {
    type Rejection = PageRejection;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, PageRejection> {
        let login = |expired| PageRejection::Login {
            prefix: st.web.prefix.clone(),
            expired,
        };
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(|| login(false))?;
        match st.auth.session(&token) {
            Ok(v) => Ok(PageCaller {
                subject: v.subject,
                csrf: v.csrf,
            }),
            Err(SessionError::Missing) => Err(login(false)),
            Err(SessionError::Expired) => Err(login(true)),
            Err(SessionError::Inventory(e)) => Err(PageRejection::Error(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; mp_session=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("mp_login=q"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, LOGIN_COOKIE).as_deref(), Some("q"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
