//! Just enough HTTP/1.1 for a local viewer: one `GET` or `HEAD` request per connection, answered
//! whole with `Connection: close`. Written over `std::net` rather than with a server crate because
//! that is all the viewer needs: no bodies, no keep-alive, no TLS. Requests are bounded (header size,
//! read timeout) so that a stuck or hostile client cannot hold a worker.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed request line and the headers the server looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `HEAD` (others are rejected by the router).
    pub method: String,
    /// Path without the query, not decoded (routes are plain ASCII).
    pub path: String,
    /// Raw query string, without `?`.
    pub query: String,
    /// The `Host` header, if any.
    pub host: Option<String>,
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into().into_bytes() }
    }
}

/// Why a request could not be read; the message goes back to the client with a 400.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed, closed or timed out: no answer is possible.
    Closed,
    /// The request is not HTTP we understand.
    Malformed(&'static str),
}

/// Parses a request head from `lines` (`\r\n` or `\n` separated, ending with an empty line).
pub fn parse_head(head: &str) -> Result<Request, ReadError> {
    let mut lines = head.lines();
    let line = lines.next().ok_or(ReadError::Malformed("empty request"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Malformed("unsupported HTTP version"));
    }
    if !target.starts_with('/') {
        return Err(ReadError::Malformed("request target must be a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut host = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':')
            && k.trim().eq_ignore_ascii_case("host")
        {
            host = Some(v.trim().to_owned());
        }
    }
    Ok(Request { method: method.to_owned(), path: path.to_owned(), query: query.to_owned(), host })
}

/// Reads one request head from a connection.
pub fn read_request(stream: &TcpStream) -> Result<Request, ReadError> {
    stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(|_| ReadError::Closed)?;
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = Read::take(&mut reader, (MAX_HEAD + 1 - head.len()) as u64).read_line(&mut line).map_err(
            |e| {
                if e.kind() == io::ErrorKind::InvalidData {
                    ReadError::Malformed("request head is not UTF-8")
                } else {
                    ReadError::Closed
                }
            },
        )?;
        if n == 0 {
            return Err(if head.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed("incomplete request head")
            });
        }
        head.push_str(&line);
        if head.len() > MAX_HEAD {
            return Err(ReadError::Malformed("request head too large"));
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    parse_head(&head)
}

/// The reason phrase of the status codes the server uses.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Writes a whole response. Pages may run inline scripts and styles but load nothing: the
/// Content-Security-Policy forbids every other source.
pub fn write_response(mut stream: impl Write, r: &Response, head_only: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
         img-src data:; form-action 'self'; frame-ancestors 'none'\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(&r.body)?;
    }
    stream.flush()
}
