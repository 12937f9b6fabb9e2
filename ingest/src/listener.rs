//! The accept loop both listeners share: a connection cap, accept errors that must not stop the
//! listener, one task per connection, and an orderly stop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::shutdown::Shutdown;

/// Least time between two logs about refused connections.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);
/// Pause after an accept error that is not about one connection (out of file descriptors, of
/// memory, of buffers): such conditions pass, so the loop waits instead of spinning or giving up.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Connections the kernel queues for the accept loop: a fleet reconnecting at once after a restart
/// must not find a full queue (the kernel then drops SYNs and clients wait a second or more).
/// The kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;

/// A listener on `addr` with a 4096-deep accept queue (the usual default is 128).
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts connections on `listener` until `shutdown`, running `handle` for each in its own task,
/// at most `max_connections` at once (more are closed on accept). Waits for every connection task
/// before returning; tasks get the shutdown signal to finish their work in flight. No accept error
/// stops the loop: dropping the listener would abort every open connection and its requests.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    protocol: &'static str,
    max_connections: usize,
    mut shutdown: Shutdown,
    mut handle: F,
) where
    F: FnMut(TcpStream, SocketAddr, Shutdown) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let connections = Arc::new(Semaphore::new(max_connections));
    let mut tasks = tokio::task::JoinSet::new();
    let mut refused = 0u64;
    let mut last_refused_log: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_per_connection(&error) => {
                    debug!(protocol, %error, "Accept failed for one connection.");
                    continue;
                }
                Err(error) => {
                    warn!(protocol, %error, "Accept failed; retrying shortly.");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            refused += 1;
            if last_refused_log.is_none_or(|at| at.elapsed() >= REFUSED_LOG_EVERY) {
                warn!(protocol, %peer, limit = max_connections, refused, "Connections refused: at the connection limit.");
                last_refused_log = Some(Instant::now());
                refused = 0;
            }
            continue; // dropping the stream closes it
        };
        let connection = handle(stream, peer, shutdown.clone());
        tasks.spawn(async move {
            connection.await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    // Stop listening at once, so new clients are refused rather than left in the backlog while
    // the open connections finish.
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}
