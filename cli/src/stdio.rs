//! The process's stdin and stdout as async streams for tunnels.
//!
//! An OpenSSH ProxyCommand gets pipes; tokio's `stdin()`/`stdout()` serve any file through a
//! blocking thread, one thread hop per read or write. Pipes can be driven by epoll instead
//! (`tokio::net::unix::pipe`, on a duplicate of the descriptor set non-blocking — the other
//! end is the parent's, so its mode is unaffected): measured on `scp` through
//! `perigee ssh --stdio`, see DECISIONS.md. Anything else (a terminal, a file) keeps tokio's
//! blocking handles.

use std::os::fd::AsFd as _;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// A readable half.
pub(crate) type Reader = Pin<Box<dyn AsyncRead + Send>>;
/// A writable half.
pub(crate) type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// Stdin and stdout, through epoll where they are pipes.
pub(crate) fn streams() -> (Reader, Writer) {
    let rd: Reader = match std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok())
    {
        Some(p) => Box::pin(p),
        None => Box::pin(tokio::io::stdin()),
    };
    let wr: Writer = match std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| tokio::net::unix::pipe::Sender::from_owned_fd(fd).ok())
    {
        Some(p) => Box::pin(p),
        None => Box::pin(tokio::io::stdout()),
    };
    (rd, wr)
}
