//! The routes: the metrics at `telemetry_path` (`/metrics`), `/health`, `/`,
//! `/config`, `/subgroups`, `/doc`; any other path is 404. GET and HEAD are
//! answered (HEAD without the body, as node_exporter does); another method
//! on a known path is 405.
//!
//! Handlers only route and format. Collection happens in
//! [`super::scrape::Scraper`] on the blocking pool, so a slow `/proc` file
//! never stalls the async threads that accept connections. Sockets,
//! timeouts and connection bounds are the listener's ([`super::listener`]);
//! the routes see a request and nothing of the transport.
//!
//! Routing is a `match` on the path: six fixed paths with no parameters
//! need no routing framework.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use tokio::sync::Semaphore;

use super::health::Health;
use super::listener::{Limits, Stats};
use super::scrape::Scraper;
use crate::config::{Config, Format};
use crate::util::{html_escape, Swap};
use crate::web::{Redacted, WebSlot};

/// The exposition format version we write.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A response with its whole body.
pub type Response = http::Response<Full<Bytes>>;

/// Renders the `/subgroups` page body; supplied by the classification layer.
pub type SubgroupsPage = Arc<dyn Fn() -> String + Send + Sync>;

/// What the handlers share.
pub struct App {
    pub scraper: Arc<Scraper>,
    pub health: Arc<Health>,
    pub config: Arc<Config>,
    /// Bounds concurrent `/metrics` requests (`--web.max-requests`).
    pub limiter: Arc<Semaphore>,
    pub subgroups: Option<SubgroupsPage>,
    /// The web security connections are served with; `/config` shows it.
    pub web: WebSlot,
}

/// Serve the current [`App`] of `routes` on `listeners` until `shutdown`
/// resolves, then finish in-flight requests. Each request is answered by
/// the `App` current when it arrived, so a reload that replaces it never
/// changes the configuration under a request. The connection bound is
/// sized from the descriptors left now, after the collectors opened
/// theirs.
///
/// The listener's own metrics are added to the scraper before this
/// returns the future (not when it is first polled), so a reload that
/// follows at once hands them on to its new scraper.
pub fn serve(
    listeners: Vec<tokio::net::TcpListener>,
    routes: Arc<Swap<App>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = ()> {
    let limits = Limits::for_this_process();
    tracing::debug!(
        max_connections = limits.max_connections,
        header_read_timeout = ?limits.header_read_timeout,
        idle_timeout = ?limits.idle_timeout,
        "HTTP connection limits"
    );
    let stats = Arc::new(Stats::default());
    // The slot is shared by every `App` a reload makes: the reload
    // replaces what is in it, not the slot.
    let web = routes.load().web.clone();
    {
        // Rendered only while the exporter's own metrics are on
        // (`enable_telemetry`): the scraper leaves every meta source out
        // otherwise. The certificate is the one served now, whichever web
        // config put it there.
        let (stats, web) = (stats.clone(), web.clone());
        routes.load().scraper.add_meta_source(Arc::new(move |out| {
            stats.render(out);
            if let Some(tls) = web.current().tls() {
                tls.render(out);
            }
        }));
    }
    let handler = move |req| handle(routes.load(), req);
    super::listener::serve(listeners, web, handler, limits, stats, shutdown)
}

/// The paths we serve.
enum Route {
    Metrics,
    Health,
    Index,
    Config,
    Subgroups,
    Doc,
}

/// Answer one request.
pub async fn handle(app: Arc<App>, req: Request<()>) -> Response {
    let route = match req.uri().path() {
        p if p == app.config.telemetry_path => Route::Metrics,
        "/health" if app.config.enable_health => Route::Health,
        "/" => Route::Index,
        "/config" => Route::Config,
        "/subgroups" => Route::Subgroups,
        "/doc" => Route::Doc,
        _ => return not_found(),
    };
    // hyper sends a HEAD response's headers, Content-Length included, and
    // leaves the body out.
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "405 method not allowed\n",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match route {
        Route::Metrics => metrics(&app, &req).await,
        Route::Health => respond(StatusCode::OK, "application/json", app.health.report_json()),
        Route::Index => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            index_page(&app.config),
        ),
        Route::Config => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            config_page(&app.config, app.web.current().redacted()),
        ),
        Route::Subgroups => {
            let body = match &app.subgroups {
                Some(render) => render(),
                None => "<p>Process classification is not available in this build.</p>".to_string(),
            };
            respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page("Subgroups", &body),
            )
        }
        Route::Doc => respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            doc_text(&app.config.telemetry_path),
        ),
    }
}

async fn metrics(app: &App, req: &Request<()>) -> Response {
    let Ok(_permit) = app.limiter.clone().try_acquire_owned() else {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "too many concurrent scrapes (--web.max-requests)\n",
        );
    };
    let (mut collect, mut exclude) = (Vec::new(), Vec::new());
    let query = req.uri().query().unwrap_or_default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "collect[]" => collect.push(v.into_owned()),
            "exclude[]" => exclude.push(v.into_owned()),
            _ => {}
        }
    }
    let sel = match app.scraper.select(&collect, &exclude) {
        Ok(s) => s,
        Err(e) => {
            return respond(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            )
        }
    };
    let out = app.scraper.scrape(sel).await;
    let gzip = req
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(accepts_gzip);
    let mut resp = respond(
        StatusCode::OK,
        METRICS_CONTENT_TYPE,
        if gzip { out.gzip() } else { out.text.clone() },
    );
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

/// True when an Accept-Encoding header allows gzip (and does not refuse it
/// with `q=0`).
fn accepts_gzip(header: &str) -> bool {
    header.split(',').any(|part| {
        let mut it = part.split(';').map(str::trim);
        let coding = it.next().unwrap_or_default();
        let refused = it.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn not_found() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "404 page not found\n",
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t} - herakles-node-exporter</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}pre{{background:#f6f6f6;padding:1em}}</style>\
         </head><body><h1>{t}</h1>\n{body}\n</body></html>\n",
        t = html_escape(title)
    )
}

fn index_page(config: &Config) -> String {
    let mut links = vec![(config.telemetry_path.as_str(), "Metrics")];
    if config.enable_health {
        links.push(("/health", "Health (JSON)"));
    }
    links.extend([
        ("/config", "Effective configuration"),
        ("/subgroups", "Process subgroups"),
        ("/doc", "Reference (plain text)"),
    ]);
    let mut body = format!(
        "<p>herakles-node-exporter {}</p><ul>",
        env!("CARGO_PKG_VERSION")
    );
    for (href, label) in links {
        let href = html_escape(href);
        body.push_str(&format!("<li><a href=\"{href}\">{label}</a></li>"));
    }
    body.push_str("</ul>");
    page("herakles-node-exporter", &body)
}

/// The effective configuration, and the web configuration in force, as
/// [`Redacted`] shows it: file names and user names, no secret.
fn config_page(config: &Config, web: &Redacted) -> String {
    fn yaml(value: &impl serde::Serialize) -> String {
        Format::Yaml
            .to_string(value)
            .unwrap_or_else(|e| format!("cannot render config: {e}"))
    }
    page(
        "Effective configuration",
        &format!(
            "<pre>{}</pre>\n<h2>Web configuration</h2>\n<pre>{}</pre>",
            html_escape(&yaml(config)),
            html_escape(&yaml(web))
        ),
    )
}

/// The `/doc` reference: endpoints, collectors and every config key, all
/// generated from the code so it cannot go stale. `metrics` is the
/// telemetry path.
pub fn doc_text(metrics: &str) -> String {
    let mut s = format!(
        "herakles-node-exporter {}\n\n\
         ENDPOINTS\n\
         \x20 {metrics:<11} Prometheus metrics; ?collect[]=NAME or ?exclude[]=NAME select collectors\n\
         \x20 /health     JSON: status, uptime, last scrape, per-collector last success and error\n\
         \x20 /config     effective configuration (HTML)\n\
         \x20 /subgroups  process classification rules (HTML)\n\
         \x20 /doc        this text\n\n\
         COLLECTORS (enable with --collector.NAME, disable with --no-collector.NAME)\n",
        env!("CARGO_PKG_VERSION")
    );
    for r in herakles_core::registrations() {
        s.push_str(&format!(
            "  {:<12} {:<8} {}\n",
            r.name,
            if r.default_enabled {
                "default"
            } else {
                "opt-in"
            },
            r.description
        ));
    }
    s.push_str("\nCONFIGURATION (every key at its default)\n\n");
    s.push_str(&crate::config::commented_template(Format::Yaml).unwrap_or_default());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
    }
}
