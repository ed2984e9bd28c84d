//! Serving: the HTTP listener, the routes, the scrape coordinator and the
//! state behind `/health`.
//!
//! From the bottom up: `health.rs` records how each collector fared;
//! `scrape.rs` runs the collectors for a scrape and records into it;
//! `http.rs` maps a request to a route and answers it from the scraper and
//! the health state; `sockets.rs` opens the listening sockets (addresses,
//! or systemd's); `listener.rs` accepts connections and runs hyper on
//! them, with its own timeouts and bounds and the web security
//! (`crate::web`) around the routes; `self_metrics.rs` reads the
//! exporter's own `process_*` figures from `/proc/self`; `notify.rs` tells
//! systemd when the exporter is ready, reloading or stopping. Nothing here
//! knows which collectors exist: the exporter assembly (`crate::exporter`)
//! hands them over built.

pub mod health;
pub mod http;
pub mod listener;
pub mod notify;
pub mod scrape;
pub mod self_metrics;
pub mod sockets;
