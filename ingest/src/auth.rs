//! Who may do what: tokens with scopes, read from the credentials real clients send.
//!
//! A request presents a token as `Authorization: Token …` (InfluxDB v2 clients), `Bearer …`,
//! HTTP Basic (the password is the token: InfluxDB v1 clients, browsers) or the v1 query
//! parameters `u` and `p`. Tokens are compared as SHA-256 digests against every configured token
//! without an early exit, so the time taken says nothing about how much of a guess was right.
//! Tokens are never logged; a failed attempt is logged by client address and reason, at most once
//! per 10 s.
//!
//! Routes declare the scope they need with [`require`]; `admin` implies `read` and `write`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::warn;

use crate::config::{AuthConfig, Scope};
use crate::http::error_response;
use crate::limits::Rate;
use crate::point::now_nanos;

/// Who made a request: a configured token, or an anonymous client when auth is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (never the token itself), or the client's IP address when anonymous.
    pub name: Arc<str>,
    /// The account limits count against: the token's tenant, else its name; `""` when anonymous.
    pub tenant: Arc<str>,
    /// The token's own rate limit, if it has one (else `[limits]` applies).
    pub rate: Option<Rate>,
    scopes: Vec<Scope>,
}

impl Principal {
    /// An unauthenticated client (auth off): every scope, named by its address.
    pub fn anonymous(addr: Option<SocketAddr>) -> Self {
        let name = addr.map_or_else(|| "anonymous".to_owned(), |a| a.ip().to_string());
        Self { name: name.into(), tenant: "".into(), rate: None, scopes: vec![Scope::Admin] }
    }

    /// Whether this principal may use routes needing `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|&s| s == scope || s == Scope::Admin)
    }

    /// The key rate limits are kept under: per tenant for tokens, per address when anonymous.
    pub fn rate_key(&self) -> &Arc<str> {
        if self.tenant.is_empty() {
            &self.name
        } else {
            &self.tenant
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all.
    #[error("authentication required: send `Authorization: Token <token>` (or Bearer, HTTP Basic with the token as password, or the v1 `u`/`p` parameters)")]
    Missing,
    /// Credentials that could not be read.
    #[error("unreadable credentials: {0}")]
    Malformed(&'static str),
    /// A token no one configured.
    #[error("invalid token")]
    Invalid,
    /// A valid token without the scope this route needs.
    #[error("token `{name}` lacks the `{needed}` scope this endpoint needs")]
    Forbidden {
        /// The token's name.
        name: Arc<str>,
        /// The scope needed.
        needed: Scope,
    },
}

struct Credential {
    digest: [u8; 32],
    principal: Arc<Principal>,
}

/// The configured tokens, ready to check requests against.
pub struct Auth {
    enabled: bool,
    credentials: Vec<Credential>,
    refused: AtomicU64,
    last_log: AtomicI64,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("enabled", &self.enabled).field("tokens", &self.credentials.len()).finish()
    }
}

impl Auth {
    /// Checks requests against `config`'s tokens (or lets everyone in when it is disabled).
    pub fn new(config: &AuthConfig) -> Self {
        let credentials = config
            .tokens
            .iter()
            .map(|t| Credential {
                digest: Sha256::digest(t.token.as_bytes()).into(),
                principal: Arc::new(Principal {
                    name: t.name.as_str().into(),
                    tenant: t.tenant.as_deref().unwrap_or(&t.name).into(),
                    rate: t.points_per_second.and_then(|n| Rate::new(n, t.burst_points.unwrap_or(0))),
                    scopes: t.scopes.clone(),
                }),
            })
            .collect();
        Self { enabled: config.enabled, credentials, refused: AtomicU64::new(0), last_log: AtomicI64::new(0) }
    }

    /// Whether requests must present a token.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Requests refused so far (401 and 403).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Who presented `headers` and `query`, if allowed `needed`.
    ///
    /// # Errors
    /// [`AuthError`] naming what was wrong.
    pub fn check(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        peer: Option<SocketAddr>,
        needed: Scope,
    ) -> Result<Arc<Principal>, AuthError> {
        if !self.enabled {
            return Ok(Arc::new(Principal::anonymous(peer)));
        }
        let token = presented(headers, query)?.ok_or(AuthError::Missing)?;
        let principal = self.find(token.as_bytes()).ok_or(AuthError::Invalid)?;
        if principal.allows(needed) {
            Ok(principal)
        } else {
            Err(AuthError::Forbidden { name: principal.name.clone(), needed })
        }
    }

    /// The principal whose token is `token`: every credential is compared, in constant time.
    fn find(&self, token: &[u8]) -> Option<Arc<Principal>> {
        let digest: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        for credential in &self.credentials {
            if bool::from(credential.digest.ct_eq(&digest)) {
                found = Some(credential.principal.clone());
            }
        }
        found
    }

    fn refuse(&self, error: &AuthError, peer: Option<SocketAddr>) -> Response {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let now = now_nanos();
        let last = self.last_log.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000_000_000
            && self.last_log.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            let peer = peer.map(|p| p.to_string()).unwrap_or_default();
            warn!(%peer, reason = %error, refused = self.refused(), "Refused a request: authentication.");
        }
        let (status, code) = match error {
            AuthError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            _ => (StatusCode::UNAUTHORIZED, "unauthorized"),
        };
        let mut response = error_response(status, code, error.to_string());
        if status == StatusCode::UNAUTHORIZED {
            // Browsers (the status page) ask for a token as the password on this.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"augur\", charset=\"UTF-8\""));
        }
        response
    }
}

/// The token in the request, if any.
fn presented(headers: &HeaderMap, query: Option<&str>) -> Result<Option<String>, AuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::Malformed("Authorization is not ASCII"))?;
        let (scheme, rest) = value.trim().split_once(' ').ok_or(AuthError::Malformed("Authorization has no scheme"))?;
        let rest = rest.trim();
        return match scheme.to_ascii_lowercase().as_str() {
            "token" | "bearer" => Ok(Some(rest.to_owned())),
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .map_err(|_| AuthError::Malformed("Basic credentials are not base64"))?;
                let decoded =
                    String::from_utf8(decoded).map_err(|_| AuthError::Malformed("Basic credentials are not UTF-8"))?;
                let (_user, password) =
                    decoded.split_once(':').ok_or(AuthError::Malformed("Basic credentials have no `:`"))?;
                Ok(Some(password.to_owned()))
            }
            _ => Err(AuthError::Malformed("unknown Authorization scheme (use Token, Bearer or Basic)")),
        };
    }
    // InfluxDB v1 clients: `?u=<user>&p=<password>`; the password is the token.
    Ok(query.and_then(|q| url_pairs(q).find(|(k, _)| k == "p").map(|(_, v)| v)))
}

/// The decoded `key=value` pairs of a query string.
pub(crate) fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (byte, None) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `router` with every route needing `scope`: the credentials are checked, then the request goes
/// on with its [`Principal`] as an extension (the write handlers rate-limit by it). Unmatched
/// paths (404) are not guarded.
pub fn require(router: axum::Router, auth: Arc<Auth>, scope: Scope) -> axum::Router {
    router.route_layer(axum::middleware::from_fn_with_state((auth, scope), guard))
}

async fn guard(State((auth, scope)): State<(Arc<Auth>, Scope)>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    match auth.check(request.headers(), request.uri().query(), peer, scope) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => auth.refuse(&error, peer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    fn auth() -> Auth {
        let token = |name: &str, token: &str, scopes: Vec<Scope>, tenant: Option<&str>| TokenConfig {
            name: name.into(),
            token: token.into(),
            scopes,
            tenant: tenant.map(Into::into),
            points_per_second: None,
            burst_points: None,
        };
        Auth::new(&AuthConfig {
            enabled: true,
            tokens: vec![
                token("fleet", "fleet-secret-0123456789", vec![Scope::Write], Some("acme")),
                token("grafana", "grafana-secret-0123456789", vec![Scope::Read], None),
                token("ops", "ops-secret-0123456789abc", vec![Scope::Admin], None),
            ],
        })
    }

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        headers
    }

    #[test]
    fn every_form_influxdb_clients_send_is_read() {
        let auth = auth();
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:fleet-secret-0123456789");
        for h in ["Token fleet-secret-0123456789", "Bearer fleet-secret-0123456789", &format!("Basic {basic}")] {
            let who = auth.check(&headers(h), None, None, Scope::Write).unwrap();
            assert_eq!((&*who.name, &*who.tenant), ("fleet", "acme"), "{h}");
        }
        let who = auth.check(&HeaderMap::new(), Some("db=x&u=me&p=fleet-secret-0123456789"), None, Scope::Write);
        assert_eq!(&*who.unwrap().name, "fleet");
        let escaped = auth.check(&HeaderMap::new(), Some("p=ops-secret-0123456789%61bc"), None, Scope::Read);
        assert_eq!(&*escaped.unwrap().name, "ops", "percent-escapes are decoded");
    }

    #[test]
    fn wrong_missing_and_out_of_scope_tokens_are_told_apart() {
        let auth = auth();
        assert_eq!(auth.check(&HeaderMap::new(), None, None, Scope::Write), Err(AuthError::Missing));
        assert_eq!(
            auth.check(&headers("Token fleet-secret-012345678"), None, None, Scope::Write),
            Err(AuthError::Invalid)
        );
        assert!(matches!(auth.check(&headers("Digest x"), None, None, Scope::Write), Err(AuthError::Malformed(_))));
        let denied = auth.check(&headers("Token grafana-secret-0123456789"), None, None, Scope::Write).unwrap_err();
        assert_eq!(denied.to_string(), "token `grafana` lacks the `write` scope this endpoint needs");
        assert!(auth.check(&headers("Token fleet-secret-0123456789"), None, None, Scope::Read).is_err());
        for scope in [Scope::Read, Scope::Write, Scope::Admin] {
            assert!(
                auth.check(&headers("Token ops-secret-0123456789abc"), None, None, scope).is_ok(),
                "admin: {scope}"
            );
        }
    }

    #[test]
    fn with_auth_off_clients_are_named_by_address() {
        let auth = Auth::new(&AuthConfig { enabled: false, tokens: Vec::new() });
        let peer = "10.1.2.3:4567".parse().unwrap();
        let who = auth.check(&HeaderMap::new(), None, Some(peer), Scope::Admin).unwrap();
        assert_eq!((&*who.name, &**who.rate_key(), &*who.tenant), ("10.1.2.3", "10.1.2.3", ""));
    }
}
