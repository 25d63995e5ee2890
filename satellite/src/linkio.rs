//! A link stream as one `AsyncRead + AsyncWrite` object, for protocol code that wants a
//! socket (the dev URL proxy's HTTP/1.1 client, TLS to a workspace port) without a pipe and
//! two copying tasks in between.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf as _, Bytes};
use hyper::body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::PollSender;

use crate::links::{LinkRecv, LinkSend};

enum Writer {
    Quic(quinn::SendStream),
    H2(PollSender<Bytes>),
}

/// Both halves of a link stream.
pub(crate) struct LinkIo {
    send: Writer,
    recv: LinkRecv,
    /// Received and not yet read (HTTP/2 hands whole frames).
    pending: Bytes,
}

impl LinkIo {
    pub(crate) fn new(send: LinkSend, recv: LinkRecv) -> Self {
        Self {
            send: match send {
                LinkSend::Quic(s) => Writer::Quic(s),
                LinkSend::H2(tx) => Writer::H2(PollSender::new(tx)),
            },
            recv,
            pending: Bytes::new(),
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "agent stream closed")
}

impl AsyncRead for LinkIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match &mut this.recv {
                LinkRecv::Quic(r) => return AsyncRead::poll_read(Pin::new(r), cx, buf),
                LinkRecv::H2(body) => match ready!(Pin::new(body).poll_frame(cx)) {
                    None => return Poll::Ready(Ok(())),
                    Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                    Some(Ok(f)) => {
                        if let Ok(data) = f.into_data() {
                            this.pending = data;
                        }
                    }
                },
            }
        }
    }
}

impl AsyncWrite for LinkIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().send {
            Writer::Quic(s) => AsyncWrite::poll_write(Pin::new(s), cx, buf),
            Writer::H2(tx) => {
                ready!(tx.poll_reserve(cx)).map_err(|_| closed())?;
                tx.send_item(Bytes::copy_from_slice(buf))
                    .map_err(|_| closed())?;
                Poll::Ready(Ok(buf.len()))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().send {
            Writer::Quic(s) => AsyncWrite::poll_flush(Pin::new(s), cx),
            Writer::H2(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().send {
            Writer::Quic(s) => AsyncWrite::poll_shutdown(Pin::new(s), cx),
            Writer::H2(tx) => {
                tx.close();
                Poll::Ready(Ok(()))
            }
        }
    }
}
