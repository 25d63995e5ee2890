//! One end of a resumable stream: the local byte stream, what was sent and not yet
//! acknowledged, and how much of the peer's stream arrived.
//!
//! [`Session::attach`] runs the stream over one transport until it is lost; every await in it
//! is cancel-safe with respect to the session (bytes read locally are queued for replay before
//! they are written to the transport; bytes received are counted and kept until written
//! locally), so a takeover by a newer transport can drop it at any point.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::Notify;

use super::{data_header, Frame, MAX_DATA};

/// Most unacknowledged bytes a side keeps for replay; reading locally pauses at this mark.
pub const MAX_UNACKED: u64 = 8 * 1024 * 1024;
/// Acknowledge at least every this many received bytes.
const ACK_EVERY: u64 = 256 * 1024;
/// Acknowledge smaller amounts after this long without a reason to send.
const ACK_DELAY: Duration = Duration::from_millis(200);
/// With nothing to send, an ACK still goes out this often, so the peer can tell a live but
/// quiet transport from a dead one.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A transport that brings nothing (not even a heartbeat) for this long is lost.
pub const IDLE_LOST: Duration = Duration::from_secs(30);

/// How long a finished side waits for the peer to close the transport too.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How an attachment ended.
#[derive(Debug)]
pub enum End {
    /// Both directions ended and were acknowledged: the session is over.
    Finished,
    /// The transport failed or closed; the session can resume on another.
    Lost(String),
    /// The local stream failed, or the peer broke the protocol: the session is over.
    Failed(std::io::Error),
}

#[derive(Default)]
struct Outgoing {
    chunks: VecDeque<Bytes>,
    /// Sequence number of the first unacknowledged byte.
    base: u64,
    /// Bytes in `chunks`.
    len: u64,
    /// The local reader ended: an EOF follows the data, at `base + len`.
    eof: bool,
    eof_acked: bool,
}

impl Outgoing {
    fn sent(&self) -> u64 {
        self.base + self.len + u64::from(self.eof)
    }

    fn push(&mut self, b: Bytes) {
        self.len += b.len() as u64;
        self.chunks.push_back(b);
    }

    /// The peer has every byte before `n`.
    fn ack(&mut self, n: u64) -> std::io::Result<()> {
        if n > self.sent() {
            return Err(protocol(format!(
                "peer acknowledges {n} bytes, {} were sent",
                self.sent()
            )));
        }
        let mut drop = n.saturating_sub(self.base).min(self.len);
        self.base += drop;
        self.len -= drop;
        while drop > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() as u64 <= drop {
                drop -= front.len() as u64;
                self.chunks.pop_front();
            } else {
                front.advance(drop as usize);
                drop = 0;
            }
        }
        if self.eof && n == self.sent() {
            self.eof_acked = true;
        }
        Ok(())
    }
}

fn protocol(m: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m)
}

/// State the sender and receiver halves of an attachment share.
struct Shared<'a> {
    out: &'a mut Outgoing,
    received: &'a mut u64,
    remote_eof: &'a mut bool,
    acked_sent: u64,
}

/// One end of a resumable stream over `R` (local bytes to send) and `W` (where received
/// bytes go).
pub struct Session<R, W> {
    rd: R,
    wr: W,
    out: Outgoing,
    read_buf: BytesMut,
    /// Peer bytes received (EOF counts one), including `pending`.
    received: u64,
    /// Received and not yet written to `wr`.
    pending: Bytes,
    /// The peer's EOF arrived and `wr` is shut down.
    remote_eof: bool,
    /// The peer's EOF arrived and `wr` is not shut down yet.
    shutdown_pending: bool,
}

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// A session over a local reader and writer, not yet attached.
    pub fn new(rd: R, wr: W) -> Self {
        Self {
            rd,
            wr,
            out: Outgoing::default(),
            read_buf: BytesMut::new(),
            received: 0,
            pending: Bytes::new(),
            remote_eof: false,
            shutdown_pending: false,
        }
    }

    /// How many of the peer's bytes arrived (EOF counts one): what the peer replays from.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether the peer's stream ended (all of it written locally).
    pub fn remote_eof(&self) -> bool {
        self.remote_eof
    }

    /// Runs the stream over `transport` (past the HELLO/WELCOME exchange), starting with a
    /// replay of what the peer lacks: it has `peer_received` of our bytes.
    pub async fn attach<T>(&mut self, transport: T, peer_received: u64) -> End
    where
        T: AsyncRead + AsyncWrite + Send,
    {
        if peer_received < self.out.base {
            return End::Failed(protocol(format!(
                "peer resumes from byte {peer_received}, bytes from {} on are kept",
                self.out.base
            )));
        }
        if let Err(e) = self.out.ack(peer_received) {
            return End::Failed(e);
        }
        let (mut trd, mut twr) = tokio::io::split(transport);
        let Session {
            rd,
            wr,
            out,
            read_buf,
            received,
            pending,
            remote_eof,
            shutdown_pending,
        } = self;
        let shared = Mutex::new(Shared {
            out,
            received,
            remote_eof,
            // The first loop of the sender always acknowledges, whatever this says.
            acked_sent: 0,
        });
        let wake = Notify::new();
        let sender = send_half(rd, read_buf, &mut twr, &shared, &wake);
        let receiver = receive_half(wr, pending, shutdown_pending, &mut trd, &shared, &wake);
        let end = tokio::select! {
            end = sender => end,
            end = receiver => end,
        };
        if matches!(end, End::Finished) {
            // A clean close: our side ends, then wait (briefly) for the peer's, so the last
            // ACK is not lost to a transport torn down under it.
            let _ = twr.shutdown().await;
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                let mut b = [0u8; 256];
                while let Ok(n) = trd.read(&mut b).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        end
    }
}

fn lock<'s, 'a>(m: &'s Mutex<Shared<'a>>) -> std::sync::MutexGuard<'s, Shared<'a>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn write_frame<T: AsyncWrite + Unpin>(t: &mut T, f: &Frame) -> std::io::Result<()> {
    let mut b = BytesMut::with_capacity(16);
    f.encode(&mut b);
    t.write_all(&b).await
}

async fn send_half<R, T>(
    rd: &mut R,
    buf: &mut BytesMut,
    twr: &mut T,
    shared: &Mutex<Shared<'_>>,
    wake: &Notify,
) -> End
where
    R: AsyncRead + Unpin,
    T: AsyncWrite + Unpin,
{
    let lost = |e: std::io::Error| End::Lost(format!("sending: {e}"));
    // Replay what the peer lacks (cheap clones of the kept chunks).
    let (replay, eof) = {
        let s = lock(shared);
        (s.out.chunks.clone(), s.out.eof)
    };
    for c in replay {
        let mut f = BytesMut::with_capacity(5 + c.len());
        f.put_slice(&data_header(c.len()));
        f.put_slice(&c);
        if let Err(e) = twr.write_all(&f).await {
            return lost(e);
        }
    }
    if eof {
        if let Err(e) = write_frame(twr, &Frame::Eof).await {
            return lost(e);
        }
    }
    let mut force_ack = true;
    loop {
        let (ack, delay, can_read, done) = {
            let mut s = lock(shared);
            let behind = *s.received - s.acked_sent;
            // An EOF is acknowledged at once: the peer's session ends on that ACK.
            let ack_now = force_ack || behind >= ACK_EVERY || (*s.remote_eof && behind > 0);
            let ack = ack_now.then_some(*s.received);
            if let Some(n) = ack {
                s.acked_sent = n;
            }
            let delay = if *s.received > s.acked_sent {
                ACK_DELAY
            } else {
                HEARTBEAT
            };
            let can_read = !s.out.eof && s.out.len < MAX_UNACKED;
            (ack, delay, can_read, *s.remote_eof && s.out.eof_acked)
        };
        force_ack = false;
        if let Some(n) = ack {
            if let Err(e) = write_frame(twr, &Frame::Ack(n)).await {
                return lost(e);
            }
        }
        if let Err(e) = twr.flush().await {
            return lost(e);
        }
        if done {
            return End::Finished;
        }
        if buf.is_empty() {
            buf.reserve(5 + MAX_DATA);
            buf.put_bytes(0, 5);
        }
        tokio::select! {
            biased;
            () = wake.notified() => {}
            r = async { (*rd).read_buf(&mut (&mut *buf).limit(MAX_DATA)).await }, if can_read => {
                match r {
                    Err(e) => return End::Failed(e),
                    Ok(0) => {
                        lock(shared).out.eof = true;
                        buf.clear();
                        if let Err(e) = write_frame(twr, &Frame::Eof).await {
                            return lost(e);
                        }
                    }
                    Ok(n) => {
                        buf[..5].copy_from_slice(&data_header(n));
                        // Small reads (keystrokes) are copied out, so the 64 KiB buffer is
                        // not kept alive until the peer acknowledges a few bytes.
                        let frame = if n < 4096 {
                            let f = Bytes::copy_from_slice(buf);
                            buf.clear();
                            f
                        } else {
                            buf.split().freeze()
                        };
                        // Kept for replay before it is written, so a cancel here loses nothing.
                        lock(shared).out.push(frame.slice(5..));
                        if let Err(e) = twr.write_all(&frame).await {
                            return lost(e);
                        }
                    }
                }
            }
            () = tokio::time::sleep(delay) => force_ack = true,
        }
    }
}

/// Writes what is pending to `wr`; cancel-safe (a cancelled write wrote nothing).
async fn drain<W: AsyncWrite + Unpin>(wr: &mut W, pending: &mut Bytes) -> std::io::Result<()> {
    while !pending.is_empty() {
        let n = wr.write(pending).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        pending.advance(n);
    }
    wr.flush().await
}

async fn receive_half<W, T>(
    wr: &mut W,
    pending: &mut Bytes,
    shutdown_pending: &mut bool,
    trd: &mut T,
    shared: &Mutex<Shared<'_>>,
    wake: &Notify,
) -> End
where
    W: AsyncWrite + Unpin,
    T: AsyncRead + Unpin,
{
    if let Err(e) = drain(wr, pending).await {
        return End::Failed(e);
    }
    if *shutdown_pending {
        if let Err(e) = wr.shutdown().await {
            return End::Failed(e);
        }
        *shutdown_pending = false;
        *lock(shared).remote_eof = true;
        wake.notify_one();
    }
    let mut rbuf = BytesMut::new();
    loop {
        let frame = loop {
            match Frame::decode(&mut rbuf) {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                Err(e) => return End::Failed(protocol(e.to_string())),
            }
            rbuf.reserve(MAX_DATA + 5);
            let why = match tokio::time::timeout(IDLE_LOST, trd.read_buf(&mut rbuf)).await {
                Err(_) => format!("nothing received for {IDLE_LOST:?}"),
                Ok(Err(e)) => format!("receiving: {e}"),
                Ok(Ok(0)) => "the transport closed".into(),
                Ok(Ok(_)) => continue,
            };
            // The peer closes once it is done; so are we if its last ACK arrived.
            let s = lock(shared);
            return if *s.remote_eof && s.out.eof_acked {
                End::Finished
            } else {
                End::Lost(why)
            };
        };
        match frame {
            Frame::Data(b) => {
                {
                    let mut s = lock(shared);
                    if *s.remote_eof || *shutdown_pending {
                        return End::Failed(protocol("data after EOF".into()));
                    }
                    *s.received += b.len() as u64;
                    if *s.received - s.acked_sent >= ACK_EVERY {
                        wake.notify_one();
                    }
                }
                *pending = b;
                if let Err(e) = drain(wr, pending).await {
                    return End::Failed(e);
                }
            }
            Frame::Ack(n) => {
                if let Err(e) = lock(shared).out.ack(n) {
                    return End::Failed(e);
                }
                wake.notify_one();
            }
            Frame::Eof => {
                {
                    let mut s = lock(shared);
                    if *s.remote_eof || *shutdown_pending {
                        return End::Failed(protocol("second EOF".into()));
                    }
                    *s.received += 1;
                }
                *shutdown_pending = true;
                if let Err(e) = wr.shutdown().await {
                    return End::Failed(e);
                }
                *shutdown_pending = false;
                *lock(shared).remote_eof = true;
                wake.notify_one();
            }
            Frame::Hello { .. } | Frame::Welcome { .. } => {
                return End::Failed(protocol("handshake frame inside a session".into()))
            }
        }
    }
}
