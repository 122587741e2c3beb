//! `keygate-bare-axum`: the floor for `scripts/load-wrk`. A hello-world axum server answering
//! `GET /api/v3/ping` with `{}` (and Binance's content type), on the same tokio runtime shape as
//! `keygate serve` (multi-threaded, one worker per core) and the same allocator (mimalloc), served
//! by `axum::serve`. keygate's own
//! ping is measured against it: what keygate adds to the cheapest request.
//!
//! Usage: `keygate-bare-axum 127.0.0.1:PORT`; prints `listening on http://ADDR` and serves until
//! killed.

#![allow(clippy::print_stdout)]

use axum::http::header;

/// The same allocator as `keygate`, so the floor is measured on equal terms.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let app = axum::Router::new().route(
        "/api/v3/ping",
        axum::routing::get(|| async { ([(header::CONTENT_TYPE, "application/json;charset=UTF-8")], "{}") }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
