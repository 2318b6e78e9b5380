//! h2 (the HTTP/2 implementation under hyper, tonic and reqwest, from crates.io, unchanged) opens
//! `tracing` spans of its own: `Connection` (with a `peer` field: `Server` or `Client`) around
//! everything a connection does, and trace-level spans inside it (`poll`, `FramedRead::poll_next`,
//! `FramedWrite::buffer`, `hpack::encode`, `send_data`...). This program serves HTTP/2 on
//! loopback and sends itself requests over one connection, in one process: a client of
//! `H2_TASKS` tasks (default 8) sends `H2_REQUESTS` requests (default 20,000) with a body of
//! `H2_BODY` bytes (default 16,384), which the server echoes back.
//!
//! `H2_LAYER=0` leaves contprof's layer out of the subscriber (the registry alone); by default it
//! is in, labelling samples with the innermost span's name (`span_name`) and h2's `peer` field.
//! No level filter: h2's trace-level spans are all enabled, as a subscriber without a filter has
//! them. Prints the wall time of the requests.

use std::time::Instant;

use bytes::Bytes;
use tracing_subscriber::prelude::*;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Reads a body to its end, giving its capacity back as it goes; its length.
async fn drain(mut body: h2::RecvStream) -> Result<usize, h2::Error> {
    let mut n = 0;
    while let Some(data) = body.data().await {
        let data = data?;
        n += data.len();
        let _ = body.flow_control().release_capacity(data.len());
    }
    Ok(n)
}

async fn serve(listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (socket, _) = listener.accept().await?;
    socket.set_nodelay(true)?;
    let mut connection = h2::server::handshake(socket).await?;
    while let Some(request) = connection.accept().await {
        let (request, mut respond) = request?;
        tokio::spawn(async move {
            let Ok(len) = drain(request.into_body()).await else { return };
            let Ok(mut send) = respond.send_response(http::Response::new(()), false) else { return };
            let _ = send.send_data(Bytes::from(vec![7u8; len]), true);
        });
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (tasks, requests, body) = (env("H2_TASKS", 8), env("H2_REQUESTS", 20_000), env("H2_BODY", 16_384));
    if env("H2_LAYER", 1) == 1 {
        let layer = contprof_tracing::ContprofLayer::new().fields(["peer"]);
        tracing_subscriber::registry().with(layer).init();
    } else {
        tracing_subscriber::registry().init();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve(listener));
    let socket = tokio::net::TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    let (client, connection) = h2::client::handshake(socket).await?;
    tokio::spawn(connection);
    let started = Instant::now();
    let payload = Bytes::from(vec![1u8; body]);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let mut client = client.clone();
        let payload = payload.clone();
        let mine = requests / tasks + usize::from(t < requests % tasks);
        handles.push(tokio::spawn(async move {
            let mut echoed = 0;
            for _ in 0..mine {
                client = client.ready().await?;
                let request = http::Request::post("http://h2.test/echo").body(())?;
                let (response, mut stream) = client.send_request(request, false)?;
                stream.send_data(payload.clone(), true)?;
                echoed += drain(response.await?.into_body()).await?;
            }
            Ok::<usize, Box<dyn std::error::Error + Send + Sync>>(echoed)
        }));
    }
    let mut echoed = 0;
    for h in handles {
        echoed += h.await??;
    }
    let elapsed = started.elapsed();
    assert_eq!(echoed, requests * body, "every body came back");
    println!("h2_spans: {requests} requests of {body} B in {:.3} s ({:.0}/s)", elapsed.as_secs_f64(), requests as f64 / elapsed.as_secs_f64());
    drop(client);
    server.abort();
    Ok(())
}
