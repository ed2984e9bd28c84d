//! Serving securely: HTTPS, client certificates, basic authentication and
//! security headers, configured by a web config file in exporter-toolkit's
//! format (`--web.config.file`), the one node_exporter and most Prometheus
//! exporters read.
//!
//! The listener uses it in three places:
//!
//! 1. Load: [`WebConfig::load`] (or [`WebConfig::from_spec_keys`] for the
//!    main config's `enable_tls`), then [`WebSecurity::new`]; on SIGHUP the
//!    same again, swapping the new `Arc<WebSecurity>` in only if both
//!    succeed.
//! 2. Accept: if [`WebSecurity::tls`] is `Some`, run
//!    [`TlsAcceptor::accept`] on the socket (under the listener's header
//!    timeout) and serve HTTP on the stream it returns.
//! 3. Request: [`WebSecurity::authorize`] before routing (`Err` is the 401
//!    to send), and [`WebSecurity::finish`] on every response, 401s
//!    included.
//!
//! `/config` shows [`WebConfig::redacted`], which has no secret in it.
//!
//! See docs/security.md for the file's keys and what is refused.

mod auth;
mod config;
mod headers;
mod tls;
mod values;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, AUTHORIZATION};
use http::Response;
use http_body_util::Full;

pub use auth::{unauthorized, Access, BasicAuth, BcryptHash, Users, CACHE_ENTRIES, CHALLENGE};
pub use config::{Redacted, RedactedHttp, RedactedTls, WebConfig};
pub use headers::ResponseHeaders;
pub use tls::{ReloadCounts, TlsAcceptor, TlsError, TlsSettings};
pub use values::{CipherSuite, ClientAuth, Curve, TlsVersion};

/// A web config made ready to serve: the TLS acceptor (reloading renewed
/// certificates), the basic auth checker with its cache, and the headers.
/// One per web config, shared by every listener and connection.
#[derive(Debug)]
pub struct WebSecurity {
    tls: Option<TlsAcceptor>,
    auth: Option<Arc<BasicAuth>>,
    headers: ResponseHeaders,
}

impl WebSecurity {
    /// Build from a checked config. This reads the certificate files again:
    /// it fails only if they changed for the worse since the config was
    /// loaded.
    pub fn new(config: &WebConfig) -> Result<WebSecurity, TlsError> {
        Ok(WebSecurity {
            tls: config.tls.clone().map(TlsAcceptor::new).transpose()?,
            auth: BasicAuth::new(&config.users).map(Arc::new),
            headers: config.headers.clone(),
        })
    }

    /// `None`: serve plain HTTP.
    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }

    /// The basic auth checker, `None` when no user is configured.
    pub fn basic_auth(&self) -> Option<&Arc<BasicAuth>> {
        self.auth.as_ref()
    }

    /// Whether the request may proceed; `Err` is the 401 to answer with
    /// (headers applied). Without users, every request may.
    pub async fn authorize(&self, request: &HeaderMap) -> Result<(), Response<Full<Bytes>>> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        match auth.check(request.get(AUTHORIZATION)).await {
            Access::Granted => Ok(()),
            Access::Denied => {
                let mut response = unauthorized();
                self.finish(response.headers_mut());
                Err(response)
            }
        }
    }

    /// Add the configured security headers to a response's headers.
    pub fn finish(&self, response: &mut HeaderMap) {
        self.headers.apply(response);
    }
}
