//! The listener the server accepts on: every connection's writes are guarded, so a peer that
//! stops reading (its receive window stays closed) cannot hold a connection, its buffers and the
//! graceful shutdown forever. A write that makes no progress for the connection's stall limit
//! fails with `TimedOut`, and the HTTP server drops the connection (a WebSocket after an
//! upgrade too: it keeps the guarded stream).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// A TCP listener whose connections fail a write stalled for `stall_limit`.
#[derive(Debug)]
pub struct GuardedListener {
    inner: TcpListener,
    stall_limit: Duration,
}

impl GuardedListener {
    pub fn new(inner: TcpListener, stall_limit: Duration) -> Self {
        GuardedListener { inner, stall_limit }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = WriteStallGuard<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own accept loop: retries, and backs off on errors such as EMFILE.
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (WriteStallGuard::new(stream, self.stall_limit), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A stream whose writes (and flushes) fail once they have made no progress for `limit`.
#[derive(Debug)]
pub struct WriteStallGuard<S> {
    inner: S,
    limit: Duration,
    /// Running while writes are pending; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteStallGuard<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        WriteStallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(v) => {
                self.stalled = None;
                Poll::Ready(v)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the peer read nothing for {} s", limit.as_secs()),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_that_makes_no_progress_fails_after_the_limit() {
        // A pipe whose reader never reads: 64 bytes of buffer, then writes pend.
        let (a, _b) = tokio::io::duplex(64);
        let mut w = WriteStallGuard::new(a, Duration::from_millis(300));
        w.write_all(&[0u8; 64]).await.expect("fits the buffer");
        let started = tokio::time::Instant::now();
        let e = w.write_all(&[0u8; 1]).await.expect_err("stalled");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn progress_resets_the_limit() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut w = WriteStallGuard::new(a, Duration::from_millis(600));
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 64];
            let mut total = 0;
            // A slow reader: 64 bytes every 200 ms, each wait under the limit, the whole
            // transfer over it.
            while total < 256 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                total += b.read(&mut buf).await.expect("read");
            }
            total
        });
        w.write_all(&[0u8; 256])
            .await
            .expect("a slow reader is not a stalled one");
        drop(w);
        assert_eq!(reader.await.expect("reader"), 256);
    }
}
