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

/// One connection to the server.
#[derive(Debug)]
pub enum Sender {
    /// HTTP: each batch is a POST answered by a status.
    Http {
        /// The request sender of the connection.
        request: SendRequest<Full<Bytes>>,
        /// Host header value.
        host: String,
        /// Path and query of the write endpoint.
        path: String,
        /// Whether bodies are gzip.
        gzip: bool,
        /// `Authorization` header value, if any.
        authorization: Option<String>,
    },
    /// TCP: a batch counts as delivered once written; the protocol has no acknowledgement.
    Tcp(TcpStream),
}

impl Sender {
    /// Connects over HTTP, posting to `path`.
    ///
    /// # Errors
    /// When the connection or handshake fails.
    pub async fn http(addr: SocketAddr, path: &str, gzip: bool, token: Option<&str>) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (request, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        let authorization = token.map(|t| format!("Token {t}"));
        Ok(Self::Http { request, host: addr.to_string(), path: path.to_owned(), gzip, authorization })
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

    /// Sends one body (already gzip-compressed if the sender is gzip).
    ///
    /// # Errors
    /// When the connection fails; the caller reconnects.
    pub async fn send(&mut self, body: Bytes) -> std::io::Result<Ack> {
        match self {
            Self::Http { request, host, path, gzip, authorization } => {
                let mut builder = hyper::Request::post(path.as_str())
                    .header(hyper::header::HOST, host.as_str())
                    .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8");
                if *gzip {
                    builder = builder.header(hyper::header::CONTENT_ENCODING, "gzip");
                }
                if let Some(authorization) = authorization {
                    builder = builder.header(hyper::header::AUTHORIZATION, authorization.as_str());
                }
                let req = builder.body(Full::new(body)).map_err(std::io::Error::other)?;
                request.ready().await.map_err(std::io::Error::other)?;
                let response = request.send_request(req).await.map_err(std::io::Error::other)?;
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
