//! A TCP forwarder between a test's node and PostgreSQL on 127.0.0.1 that
//! can go silent the way a dropped network does: the bytes are taken (the
//! kernel acknowledges them) and never passed on, nothing is closed. Also
//! traps a connection's next `COMMIT`: the commit reaches the server and
//! its reply is lost, or the commit itself is lost.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the next `COMMIT` a client sends runs into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trap {
    /// The server gets it; its reply (and everything after) is lost.
    LoseReply,
    /// The server never gets it (nor anything after).
    LoseCommit,
}

#[derive(Debug, Default)]
struct Link {
    /// Client to server bytes dropped.
    up_lost: AtomicBool,
    /// Server to client bytes dropped.
    down_lost: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    links: Mutex<Vec<Arc<Link>>>,
    silent: AtomicBool,
    trap: Mutex<Option<Trap>>,
}

/// The forwarder: listening on [`SilentProxy::port`], to `127.0.0.1:to`.
#[derive(Debug)]
pub struct SilentProxy {
    /// Where it listens (127.0.0.1).
    pub port: u16,
    state: Arc<State>,
}

impl SilentProxy {
    /// Forwards a port of its own to `127.0.0.1:to`.
    pub fn new(to: u16) -> std::io::Result<SilentProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State::default());
        let s = state.clone();
        std::thread::Builder::new()
            .name("silent-proxy".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let link = Arc::new(Link::default());
                    if s.silent.load(Ordering::SeqCst) {
                        link.up_lost.store(true, Ordering::SeqCst);
                        link.down_lost.store(true, Ordering::SeqCst);
                    }
                    if let Ok(mut links) = s.links.lock() {
                        links.push(link.clone());
                    }
                    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                        continue;
                    };
                    let (up, st) = (link.clone(), s.clone());
                    std::thread::spawn(move || pump_up(client, server, &up, &st));
                    std::thread::spawn(move || pump_down(s2, c2, &link));
                }
            })?;
        Ok(SilentProxy { port, state })
    }

    /// Every connection, open or new, goes silent both ways.
    pub fn silence(&self) {
        self.state.silent.store(true, Ordering::SeqCst);
        if let Ok(links) = self.state.links.lock() {
            for l in links.iter() {
                l.up_lost.store(true, Ordering::SeqCst);
                l.down_lost.store(true, Ordering::SeqCst);
            }
        }
    }

    /// New connections are forwarded again (the silent ones stay silent,
    /// as a connection whose state a firewall lost).
    pub fn speak(&self) {
        self.state.silent.store(false, Ordering::SeqCst);
    }

    /// The next `COMMIT` sent on any connection runs into `trap`.
    pub fn trap(&self, trap: Trap) {
        if let Ok(mut t) = self.state.trap.lock() {
            *t = Some(trap);
        }
    }
}

fn pump_up(mut from: TcpStream, mut to: TcpStream, link: &Link, state: &State) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if !link.up_lost.load(Ordering::SeqCst) && chunk.windows(6).any(|w| w == b"COMMIT") {
            let trap = state.trap.lock().ok().and_then(|mut t| t.take());
            match trap {
                Some(Trap::LoseReply) => link.down_lost.store(true, Ordering::SeqCst),
                Some(Trap::LoseCommit) => {
                    link.up_lost.store(true, Ordering::SeqCst);
                    link.down_lost.store(true, Ordering::SeqCst);
                }
                None => {}
            }
        }
        if link.up_lost.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn pump_down(mut from: TcpStream, mut to: TcpStream, link: &Link) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if link.down_lost.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
