//! The HTTP/1.1 server loop: hyper with the bounds a public server needs.
//!
//! - A client has [`ServeConfig::header_read_timeout`] to send a request's head, and an idle
//!   keep-alive connection is closed after the same time (hyper runs the timer whenever the
//!   connection waits for a head); a request body must make progress every
//!   [`ServeConfig::body_frame_timeout`].
//! - At most [`ServeConfig::max_connections`] connections are open at once; one more is answered
//!   503 problem+json with `Retry-After` and closed, so a flood of idle sockets cannot take the
//!   process's file descriptors from everyone else.
//! - Requests that hyper refuses itself before our router sees them (a malformed head, a URI or
//!   header section over its limits) are answered with problem+json too ([`ProblemOnRefusal`]):
//!   hyper writes a bodiless status line for those, which this layer replaces.

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use yunnao_core::Problem;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_frame_timeout: Duration,
    /// Largest request head hyper buffers (request line and headers).
    pub max_head_bytes: usize,
    /// How long open connections may finish their requests after shutdown began.
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(15),
            body_frame_timeout: Duration::from_secs(15),
            max_head_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish
/// for the grace period.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let body_timeout = config.body_frame_timeout;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_head_bytes.max(8192))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before accept: wait a little
                    // rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let service = hyper::service::service_fn({
            let service = service.clone();
            move |request: hyper::Request<Incoming>| {
                service.clone().oneshot(request.map(|body| {
                    axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, body))
                }))
            }
        });
        let connection =
            builder.serve_connection(TokioIo::new(ProblemOnRefusal::new(stream)), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
    Ok(())
}

/// The answer to a connection past the limit: one 503 problem, then close.
async fn refuse(mut stream: tokio::net::TcpStream) {
    let body = br#"{"type":"/problems/unavailable","title":"Service unavailable","status":503,"detail":"the server has as many open connections as it accepts; try again shortly"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}

/// Wraps a connection so that the bodiless error answers hyper writes for requests it could
/// not parse (400, 413, 414, 431 with `content-length: 0`) go out as problem+json. Our own
/// answers never have an empty body with those statuses, since every problem has one.
pub struct ProblemOnRefusal<T> {
    inner: T,
    /// A replacement being written, how much of it is out, and the length of what hyper gave.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<T> ProblemOnRefusal<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            replacing: None,
        }
    }
}

/// The problem+json answer that replaces hyper's bodiless refusal in `head`, if it is one.
pub fn refusal_replacement(head: &[u8]) -> Option<Vec<u8>> {
    let (status, detail) = if head.starts_with(b"HTTP/1.1 400 ") {
        (
            400,
            "the request is not valid HTTP/1.1 (request line, header names or values)",
        )
    } else if head.starts_with(b"HTTP/1.1 413 ") {
        (413, "the request body is larger than this server accepts")
    } else if head.starts_with(b"HTTP/1.1 414 ") {
        (414, "the request URI is longer than this server accepts")
    } else if head.starts_with(b"HTTP/1.1 431 ") {
        (
            431,
            "the request's headers are larger than this server accepts",
        )
    } else {
        return None;
    };
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let lower = head[..end].to_ascii_lowercase();
    let mut lines = lower.split(|b| *b == b'\n').map(|line| line.trim_ascii());
    let bodiless = lines.clone().any(|line| line == b"content-length: 0");
    if !bodiless || lines.any(|line| line.starts_with(b"content-type:")) {
        return None;
    }
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = serde_json::to_string(&Problem::for_status(status, reason, detail)).ok()?;
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    // Whatever hyper wrote after the head (nothing, for a bodiless answer) is dropped.
    Some(out)
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemOnRefusal<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemOnRefusal<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none()
            && !buf.is_empty()
            && let Some(replacement) = refusal_replacement(buf)
        {
            this.replacing = Some((replacement, 0, buf.len()));
        }
        if let Some((replacement, written, given)) = &mut this.replacing {
            while *written < replacement.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &replacement[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
            let given = *given;
            this.replacing = None;
            return Poll::Ready(Ok(given.min(buf.len())));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes a head in one buffer, which is what is inspected.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bodiless_refusals_are_replaced() {
        let refusal =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let replaced = refusal_replacement(refusal).expect("replaced");
        let text = String::from_utf8(replaced).expect("utf-8");
        assert!(text.starts_with("HTTP/1.1 431 "));
        assert!(text.contains("application/problem+json"));
        assert!(text.ends_with("}"));
        for kept in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 10\r\n\r\n",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0",
        ] {
            assert!(refusal_replacement(kept).is_none());
        }
    }
}
