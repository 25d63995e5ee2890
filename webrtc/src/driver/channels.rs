//! The driver's data channels: opening, the per-channel write queues drained as SCTP takes
//! them, credit and half-close messages, closing.

use std::collections::VecDeque;

use str0m::channel::{ChannelConfig, ChannelId};
use tokio::io::DuplexStream;
use tokio::sync::oneshot;
use tracing::debug;

use super::{Driver, CONTROL_LABEL};
use crate::peer::{Cmd, Incoming};
use crate::stream::{self, Pumps, ToDriver, ToWriter, WINDOW};
use crate::{PathInfo, PeerState};

pub(super) struct Chan {
    pub(super) pumps: Option<Pumps>,
    pub(super) opener: Option<oneshot::Sender<std::io::Result<DuplexStream>>>,
    pub(super) queue: VecDeque<(bool, Vec<u8>)>,
    pub(super) local_eof: bool,
    pub(super) remote_eof: bool,
}

impl Driver {
    pub(super) async fn on_cmd(&mut self, c: Cmd) {
        match c {
            Cmd::Open(label, reply) => {
                if !self.connected {
                    let _ = reply.send(Err(std::io::Error::other("the peer connection is not up")));
                    return;
                }
                let id = self.rtc.direct_api().create_data_channel(ChannelConfig {
                    label,
                    ..Default::default()
                });
                self.settle().await;
                self.chans.insert(
                    id,
                    Chan {
                        pumps: None,
                        opener: Some(reply),
                        queue: VecDeque::new(),
                        local_eof: false,
                        remote_eof: false,
                    },
                );
            }
            Cmd::Stream(ToDriver::Data(id, v)) => self.queue(id, true, v),
            Cmd::Stream(ToDriver::Credit(id, n)) => {
                self.queue(id, false, format!("c:{n}").into_bytes())
            }
            Cmd::Stream(ToDriver::Eof(id)) => {
                if let Some(c) = self.chans.get_mut(&id) {
                    c.local_eof = true;
                }
                self.queue(id, false, b"e".to_vec());
            }
            Cmd::Stream(ToDriver::Reset(id)) => {
                self.close_now(id);
                self.settle().await;
            }
        }
    }

    pub(super) fn queue(&mut self, id: ChannelId, binary: bool, v: Vec<u8>) {
        let Some(c) = self.chans.get_mut(&id) else {
            return;
        };
        c.queue.push_back((binary, v));
        self.blocked.insert(id);
    }

    /// Writes queued messages while the association takes them, draining the engine after
    /// each write (str0m's contract: one mutation, then poll to the timeout).
    pub(super) async fn flush_blocked(&mut self) {
        if self.blocked.is_empty() {
            return;
        }
        let ids: Vec<ChannelId> = self.blocked.iter().copied().collect();
        for id in ids {
            loop {
                let Some(c) = self.chans.get_mut(&id) else {
                    self.blocked.remove(&id);
                    break;
                };
                let Some((binary, data)) = c.queue.pop_front() else {
                    self.blocked.remove(&id);
                    self.maybe_close(id);
                    self.settle().await;
                    break;
                };
                let Some(mut ch) = self.rtc.channel(id) else {
                    c.queue.push_front((binary, data));
                    break;
                };
                match ch.write(binary, &data) {
                    Ok(true) => self.settle().await,
                    Ok(false) => {
                        c.queue.push_front((binary, data));
                        self.settle().await;
                        break;
                    }
                    Err(e) => {
                        debug!(error = %e, "channel write failed");
                        c.queue.clear();
                        self.settle().await;
                        break;
                    }
                }
            }
        }
    }

    pub(super) fn maybe_close(&mut self, id: ChannelId) {
        let done = self
            .chans
            .get(&id)
            .is_some_and(|c| c.local_eof && c.remote_eof && c.queue.is_empty());
        if done {
            self.close_now(id);
        }
    }

    /// Closes a channel; the caller drains (or is inside a drain).
    pub(super) fn close_now(&mut self, id: ChannelId) {
        if self.chans.remove(&id).is_some() {
            self.blocked.remove(&id);
            self.rtc.direct_api().close_data_channel(id);
        }
    }

    pub(super) fn on_open(&mut self, id: ChannelId, label: String) {
        if label == CONTROL_LABEL {
            if !self.connected {
                self.connected = true;
                let info = self.path.clone().unwrap_or(PathInfo {
                    relayed: false,
                    local: ([0, 0, 0, 0], 0).into(),
                    remote: ([0, 0, 0, 0], 0).into(),
                    turn: None,
                });
                self.state.send_replace(PeerState::Connected(info));
            }
            return;
        }
        let Some(cmds) = self.cmds.upgrade() else {
            self.close_now(id);
            return;
        };
        let (pumps, app) = stream::spawn(id, cmds);
        match self.chans.get_mut(&id) {
            Some(c) => {
                c.pumps = Some(pumps);
                if let Some(reply) = c.opener.take() {
                    let _ = reply.send(Ok(app));
                }
            }
            None => {
                self.chans.insert(
                    id,
                    Chan {
                        pumps: Some(pumps),
                        opener: None,
                        queue: VecDeque::new(),
                        local_eof: false,
                        remote_eof: false,
                    },
                );
                if self.incoming.send(Incoming { label, stream: app }).is_err() {
                    self.close_now(id);
                }
            }
        }
    }

    pub(super) fn on_channel_data(&mut self, d: str0m::channel::ChannelData) {
        let Some(c) = self.chans.get_mut(&d.id) else {
            return;
        };
        let Some(p) = c.pumps.as_ref() else {
            return;
        };
        if d.binary {
            let _ = p.writer.send(ToWriter::Data(d.data));
        } else if d.data == b"e" {
            let _ = p.writer.send(ToWriter::Eof);
            c.remote_eof = true;
            self.maybe_close(d.id);
        } else if let Some(n) = std::str::from_utf8(&d.data)
            .ok()
            .and_then(|s| s.strip_prefix("c:"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            // Never more than a window outstanding, whatever the other side claims.
            let room = (2 * WINDOW).saturating_sub(p.credit.available_permits());
            p.credit.add_permits(n.min(room));
        }
    }
}
