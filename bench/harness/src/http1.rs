//! Just enough HTTP/1.1 for loopback peers we control or know: requests and
//! responses with `content-length` or chunked bodies, persistent connections.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A request or a response: its start line, headers (names lower-cased) and body.
#[derive(Debug, Default)]
pub struct Message {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Method and path of a request.
    pub fn request_line(&self) -> (&str, &str) {
        let mut parts = self.start.split_whitespace();
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
    }

    /// Status code of a response.
    pub fn status(&self) -> u16 {
        self.start
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Option<String>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

/// Reads one message; `None` when the peer closed the connection between messages.
/// A message with neither `content-length` nor chunking has an empty body.
pub async fn read_message<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Option<Message>> {
    let start = loop {
        match read_line(r).await? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let mut message = Message {
        start,
        ..Message::default()
    };
    loop {
        let line = read_line(r)
            .await?
            .ok_or_else(|| bad("connection closed inside the headers".into()))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("malformed header line {line:?}")))?;
        message
            .headers
            .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let chunked = message
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        loop {
            let size_line = read_line(r)
                .await?
                .ok_or_else(|| bad("connection closed inside a chunk".into()))?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while let Some(line) = read_line(r).await? {
                    if line.is_empty() {
                        break;
                    }
                }
                break;
            }
            let at = message.body.len();
            message.body.resize(at + size, 0);
            r.read_exact(&mut message.body[at..]).await?;
            read_line(r).await?;
        }
    } else if let Some(length) = message.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| bad(format!("bad content-length {length:?}")))?;
        message.body = vec![0; length];
        r.read_exact(&mut message.body).await?;
    }
    Ok(Some(message))
}

/// Writes a message with the given start line and headers plus `content-length`.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    start: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(start.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    w.write_all(&out).await?;
    w.flush().await
}

pub async fn write_response<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        404 => "Not Found",
        _ => "Status",
    };
    write_message(w, &format!("HTTP/1.1 {status} {reason}"), headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn reads_length_and_chunked_bodies_back_to_back() {
        let wire = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nX-Y: z\r\n\r\nabc\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3;x=y\r\nllo\r\n0\r\n\r\n";
        let mut r = BufReader::new(&wire[..]);
        let first = read_message(&mut r).await.unwrap().unwrap();
        assert_eq!(first.request_line(), ("POST", "/a"));
        assert_eq!(first.header("x-y"), Some("z"));
        assert_eq!(first.body, b"abc");
        let second = read_message(&mut r).await.unwrap().unwrap();
        assert_eq!(second.status(), 200);
        assert_eq!(second.body, b"hello");
        assert!(read_message(&mut r).await.unwrap().is_none());
    }
}
