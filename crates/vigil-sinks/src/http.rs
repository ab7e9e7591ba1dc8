//! A minimal HTTP/1.1 client: one POST per connection (`Connection: close`), plain HTTP only.
//!
//! Hand-written rather than a crate (see Cargo.toml) because the ClickHouse sink's exactly-once
//! logic needs to know whether a failed request may have reached the server: [`HttpError::Connect`]
//! means it certainly did not; every other error is ambiguous.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Bad URL: not retried.
    #[error("invalid url {0:?}: {1}")]
    Url(String, &'static str),
    /// Could not connect: nothing was sent.
    #[error("connect to {0}: {1}")]
    Connect(String, io::Error),
    /// Failed after connecting: the request may or may not have been processed.
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("malformed response: {0}")]
    Malformed(String),
}

impl HttpError {
    /// The request may have reached the server.
    pub fn ambiguous(&self) -> bool {
        matches!(self, HttpError::Io(_) | HttpError::Malformed(_))
    }
}

/// `http://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port` as written (brackets kept for IPv6), for the Host header and connecting.
    pub authority: String,
    /// Path prefix without a trailing slash ("" for the root).
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| HttpError::Url(url.into(), "only http:// is supported (ClickHouse's HTTP port)"))?;
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if auth.is_empty() || auth.contains('@') {
            return Err(HttpError::Url(url.into(), "need host[:port], without credentials"));
        }
        let has_port = match auth.rfind(']') {
            Some(b) => auth[b..].contains(':'),
            None => auth.contains(':'),
        };
        let authority = if has_port { auth.to_string() } else { format!("{auth}:80") };
        Ok(Url { authority, path: path.to_string() })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Each read and write.
    pub io: Duration,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
}

/// Percent-encodes a query-string value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Sends one request to `endpoint` ("/", "/ping") under the URL's path; reads the whole response.
pub fn request(
    url: &Url,
    method: &str,
    endpoint: &str,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &[u8],
    timeouts: Timeouts,
) -> Result<Response, HttpError> {
    let addrs: Vec<SocketAddr> =
        url.authority.to_socket_addrs().map_err(|e| HttpError::Connect(url.authority.clone(), e))?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeouts.connect) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or_else(|| HttpError::Connect(url.authority.clone(), last))?;
    stream.set_read_timeout(Some(timeouts.io))?;
    stream.set_write_timeout(Some(timeouts.io))?;
    let _ = stream.set_nodelay(true);

    let mut target = format!("{}{endpoint}", url.path);
    for (i, (k, v)) in params.iter().enumerate() {
        target.push(if i == 0 { '?' } else { '&' });
        target.push_str(k);
        target.push('=');
        target.push_str(&encode(v));
    }
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        url.authority,
        body.len()
    );
    for (k, v) in headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    read_response(BufReader::new(stream))
}

fn read_response<R: BufRead>(mut r: R) -> Result<Response, HttpError> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(HttpError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a response")));
    }
    let mut parts = line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => {
            code.parse::<u16>().map_err(|_| HttpError::Malformed(line.trim().into()))?
        }
        _ => return Err(HttpError::Malformed(line.trim().into())),
    };
    let mut length: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(HttpError::Malformed("headers cut short".into()));
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse().map_err(|_| HttpError::Malformed(h.into()))?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(HttpError::Malformed("chunked body cut short".into()));
            }
            let size_hex = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| HttpError::Malformed(line.trim().into()))?;
            if size == 0 {
                break; // trailers, if any, are not needed
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://127.0.0.1:8123").unwrap();
        assert_eq!((u.authority.as_str(), u.path.as_str()), ("127.0.0.1:8123", ""));
        let u = Url::parse("http://ch.example/proxy/").unwrap();
        assert_eq!((u.authority.as_str(), u.path.as_str()), ("ch.example:80", "/proxy"));
        let u = Url::parse("http://[::1]:8123/").unwrap();
        assert_eq!(u.authority, "[::1]:8123");
        assert_eq!(Url::parse("http://[::1]").unwrap().authority, "[::1]:80");
        assert!(Url::parse("https://x").is_err());
        assert!(Url::parse("http://user:pw@x").is_err());
    }

    #[test]
    fn reads_chunked_and_sized_responses() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nOk.\r\n1\r\n\n\r\n0\r\n\r\n";
        let r = read_response(&raw[..]).unwrap();
        assert_eq!((r.status, r.text()), (200, "Ok.".to_string()));
        let raw = b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom";
        let r = read_response(&raw[..]).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (500, &b"boom"[..]));
        let e = read_response(&b""[..]).err().unwrap();
        assert!(e.ambiguous());
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("INSERT INTO a.b FORMAT JSONEachRow"), "INSERT%20INTO%20a.b%20FORMAT%20JSONEachRow");
        assert_eq!(encode("x='1'&y"), "x%3D%271%27%26y");
    }
}
