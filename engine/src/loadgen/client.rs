//! Senders: one HTTP/1.1 keep-alive connection (hyper's client connection, no pool) or one raw TCP
//! stream per load-generator connection.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// What happened to one sent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// 2xx: stored.
    Stored,
    /// Any other status.
    Refused(u16),
}

/// What every POST of one run carries besides its body.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Host header value.
    pub host: String,
    /// Path and query of the write endpoint.
    pub path: String,
    /// Content-Type header value.
    pub content_type: &'static str,
    /// Content-Encoding header value, if any (`gzip`, or remote write's `snappy`).
    pub encoding: Option<&'static str>,
    /// `Authorization` header value, if any.
    pub authorization: Option<String>,
}

/// One connection to the server.
#[derive(Debug)]
pub enum Sender {
    /// HTTP: each batch is a POST answered by a status.
    Http {
        /// The request sender of the connection.
        sender: SendRequest<Full<Bytes>>,
        /// What each request carries.
        request: HttpRequest,
    },
    /// TCP: a batch counts as delivered once written; the protocol has no acknowledgement.
    Tcp(TcpStream),
}

impl Sender {
    /// Connects over HTTP, to post `request`s.
    ///
    /// # Errors
    /// When the connection or handshake fails.
    pub async fn http(addr: SocketAddr, request: HttpRequest) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        Ok(Self::Http { sender, request })
    }

    /// Connects over TCP.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn tcp(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self::Tcp(stream))
    }

    /// Sends one body (already compressed as the request's encoding says).
    ///
    /// # Errors
    /// When the connection fails; the caller reconnects.
    pub async fn send(&mut self, body: Bytes) -> std::io::Result<Ack> {
        match self {
            Self::Http { sender, request } => {
                let mut builder = hyper::Request::post(request.path.as_str())
                    .header(hyper::header::HOST, request.host.as_str())
                    .header(hyper::header::CONTENT_TYPE, request.content_type);
                if let Some(encoding) = request.encoding {
                    builder = builder.header(hyper::header::CONTENT_ENCODING, encoding);
                }
                if let Some(authorization) = &request.authorization {
                    builder = builder.header(hyper::header::AUTHORIZATION, authorization.as_str());
                }
                let req = builder.body(Full::new(body)).map_err(std::io::Error::other)?;
                sender.ready().await.map_err(std::io::Error::other)?;
                let response = sender.send_request(req).await.map_err(std::io::Error::other)?;
                let status = response.status();
                // Read the body so the connection is ready for the next request.
                response.into_body().collect().await.map_err(std::io::Error::other)?;
                Ok(if status.is_success() { Ack::Stored } else { Ack::Refused(status.as_u16()) })
            }
            Self::Tcp(stream) => {
                stream.write_all(&body).await?;
                Ok(Ack::Stored)
            }
        }
    }
}
