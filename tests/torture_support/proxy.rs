//! A faulty network between client and server: a TCP proxy on 127.0.0.1 (std::net and
//! threads) that, per connection, passes bytes through, resets the connection after some
//! request bytes, stalls it (forwards nothing, answers nothing) and then closes it, or
//! throttles the client-to-server direction to a fixed rate, or loses every answer.
//!
//! Owns: its listening socket, its connections and their threads. Must not: connect anywhere
//! but the upstream address it was given.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the proxy does to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways unchanged.
    Pass,
    /// Forward this many client bytes, then tear both sides down (the client sees a reset or
    /// an early close in the middle of its request).
    Reset(u64),
    /// Forward this many client bytes, then forward nothing either way for this many
    /// milliseconds, then close.
    Stall(u64, u64),
    /// Forward client bytes at this many bytes per second (server bytes unthrottled).
    Throttle(u64),
    /// Forward client bytes, swallow every server byte, close after this many milliseconds
    /// (the server acts on the request; its answer is lost).
    Mute(u64),
}

/// Counters of what the proxy did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections reset.
    pub resets: AtomicU64,
    /// Connections stalled.
    pub stalls: AtomicU64,
    /// Client bytes forwarded to the server.
    pub forwarded: AtomicU64,
}

type Chooser = Box<dyn FnMut(u64) -> Mode + Send>;

struct Shared {
    stop: AtomicBool,
    stats: ProxyStats,
    streams: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running proxy; stopped (all threads joined) on [`Proxy::stop`] or drop.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`; `choose(i)` picks the
    /// mode of the `i`-th connection (0-based).
    pub fn start(upstream: SocketAddr, choose: impl FnMut(u64) -> Mode + Send + 'static) -> Proxy {
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only forwards to loopback"
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stats: ProxyStats::default(),
            streams: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let mut choose: Chooser = Box::new(choose);
        let accept = std::thread::spawn(move || {
            let mut i = 0u64;
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let mode = choose(i);
                i += 1;
                sh.stats.connections.fetch_add(1, Ordering::Relaxed);
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2))
                else {
                    continue;
                };
                start_pumps(&sh, client, server, mode);
            }
        });
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters.
    pub fn stats(&self) -> &ProxyStats {
        &self.shared.stats
    }

    /// Stops accepting, closes every connection and joins every thread.
    pub fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        let _ = accept.join();
        for s in self.shared.streams.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start_pumps(sh: &Arc<Shared>, client: TcpStream, server: TcpStream, mode: Mode) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    {
        let mut streams = sh.streams.lock().unwrap();
        streams.retain(|s| s.peer_addr().is_ok());
        streams.push(c3);
        streams.push(s3);
    }
    let stalled = Arc::new(AtomicBool::new(matches!(mode, Mode::Mute(_))));
    if matches!(mode, Mode::Mute(_)) {
        // Wake up regularly to notice the deadline while the client waits for an answer.
        let _ = client.set_read_timeout(Some(Duration::from_millis(50)));
    }
    let (sh1, st1) = (sh.clone(), stalled.clone());
    let up = std::thread::spawn(move || upstream_pump(&sh1, client, server, mode, &st1));
    let sh2 = sh.clone();
    let down = std::thread::spawn(move || downstream_pump(&sh2, s2, c2, &stalled));
    let mut threads = sh.threads.lock().unwrap();
    threads.retain(|t| !t.is_finished());
    threads.push(up);
    threads.push(down);
}

fn close_both(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

/// Sleeps `ms`, in slices, unless the proxy stops.
fn nap(sh: &Shared, ms: u64) {
    let end = Instant::now() + Duration::from_millis(ms);
    while !sh.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// Client → server, applying `mode`.
fn upstream_pump(
    sh: &Shared,
    mut client: TcpStream,
    mut server: TcpStream,
    mode: Mode,
    stalled: &AtomicBool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent = 0u64;
    let limit = match mode {
        Mode::Reset(n) | Mode::Stall(n, _) => Some(n),
        _ => None,
    };
    let started = Instant::now();
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            break;
        }
        let mut want = buf.len();
        if let Some(l) = limit {
            if sent >= l {
                match mode {
                    Mode::Reset(_) => {
                        sh.stats.resets.fetch_add(1, Ordering::Relaxed);
                    }
                    Mode::Stall(_, ms) => {
                        sh.stats.stalls.fetch_add(1, Ordering::Relaxed);
                        stalled.store(true, Ordering::SeqCst);
                        nap(sh, ms);
                    }
                    _ => {}
                }
                break;
            }
            want = want.min((l - sent) as usize);
        }
        if let Mode::Throttle(rate) = mode {
            // Stay on the line `rate` bytes per second since the start, in small slices.
            want = want.min((rate / 20).max(1) as usize);
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            let el = started.elapsed();
            if due > el {
                std::thread::sleep((due - el).min(Duration::from_millis(50)));
                continue;
            }
        }
        if let Mode::Mute(ms) = mode {
            if started.elapsed() >= Duration::from_millis(ms) {
                break;
            }
        }
        let n = match client.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        sh.stats.forwarded.fetch_add(n as u64, Ordering::Relaxed);
    }
    close_both(&client, &server);
}

/// Server → client, unchanged, except that nothing is passed on once the connection stalls.
fn downstream_pump(
    sh: &Shared,
    mut server: TcpStream,
    mut client: TcpStream,
    stalled: &AtomicBool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            break;
        }
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stalled.load(Ordering::SeqCst) {
            continue;
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    close_both(&client, &server);
}
