//! One TCP-like stream per data channel: pumps between the application's half of an
//! in-memory pipe and the driver, with credit-based flow control.
//!
//! SCTP delivers whatever arrives; nothing stops a fast sender from filling a slow
//! receiver's memory. So each side may have at most [`WINDOW`] bytes of a channel in
//! flight: the sender spends credit for every chunk, the receiver returns credit (a text
//! message `c:N`) once it has written N bytes to the application. A text message `e` is a
//! half-close; when both sides have sent one, the channel is closed.

use std::sync::Arc;

use str0m::channel::ChannelId;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use crate::peer::Cmd;

/// Bytes of one channel that may be unacknowledged by the receiving application.
pub(crate) const WINDOW: usize = 4 << 20;
/// Largest data message.
pub(crate) const CHUNK: usize = 16 * 1024;
/// Size of the in-memory pipe to the application.
const PIPE: usize = 256 * 1024;

/// From a stream's pumps to the driver (as [`Cmd::Stream`], on the driver's one command
/// channel).
#[derive(Debug)]
pub(crate) enum ToDriver {
    Data(ChannelId, Vec<u8>),
    Credit(ChannelId, usize),
    Eof(ChannelId),
    Reset(ChannelId),
}

/// From the driver to a stream's writer.
pub(crate) enum ToWriter {
    Data(Vec<u8>),
    Eof,
}

/// The tasks of one stream; dropping it stops them.
pub(crate) struct Pumps {
    pub(crate) writer: mpsc::UnboundedSender<ToWriter>,
    pub(crate) credit: Arc<Semaphore>,
    reader: JoinHandle<()>,
}

impl Drop for Pumps {
    fn drop(&mut self) {
        self.reader.abort();
        self.credit.close();
    }
}

/// Starts the pumps of channel `id`; returns them and the application's end of the pipe.
pub(crate) fn spawn(id: ChannelId, to_driver: mpsc::UnboundedSender<Cmd>) -> (Pumps, DuplexStream) {
    let (app, mine) = tokio::io::duplex(PIPE);
    let (mut rd, mut wr) = tokio::io::split(mine);
    let credit = Arc::new(Semaphore::new(WINDOW));
    let (wtx, mut wrx) = mpsc::unbounded_channel::<ToWriter>();
    let tx = to_driver.clone();
    let sem = credit.clone();
    let reader = tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = match rd.read(&mut buf).await {
                Ok(0) => {
                    let _ = tx.send(Cmd::Stream(ToDriver::Eof(id)));
                    return;
                }
                Ok(n) => n,
                Err(_) => {
                    let _ = tx.send(Cmd::Stream(ToDriver::Reset(id)));
                    return;
                }
            };
            buf.truncate(n);
            match sem.acquire_many(n as u32).await {
                Ok(p) => p.forget(),
                Err(_) => return,
            }
            if tx.send(Cmd::Stream(ToDriver::Data(id, buf))).is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut owed = 0usize;
        while let Some(m) = wrx.recv().await {
            match m {
                ToWriter::Data(v) => {
                    if wr.write_all(&v).await.is_err() {
                        let _ = to_driver.send(Cmd::Stream(ToDriver::Reset(id)));
                        return;
                    }
                    owed += v.len();
                    // Return credit in batches, or at once when the queue runs dry.
                    if owed >= WINDOW / 8 || wrx.is_empty() {
                        let _ = to_driver.send(Cmd::Stream(ToDriver::Credit(id, owed)));
                        owed = 0;
                    }
                }
                ToWriter::Eof => break,
            }
        }
        let _ = wr.shutdown().await;
    });
    (
        Pumps {
            writer: wtx,
            credit,
            reader,
        },
        app,
    )
}
