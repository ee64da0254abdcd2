//! `BindingEngine`: one engine, its wake-up threadsafe function and its teardown.
//!
//! The engine's notify callback runs on the I/O thread after a loop turn that produced events. It makes at most one
//! threadsafe-function call until JavaScript drains: an atomic flag coalesces wake-ups, and `drain()` clears it before
//! taking the events, so an event published during a drain is either taken by it or rings again. JavaScript never
//! waits on the I/O thread: every method returns at once, and `close()` joins the thread on the libuv pool.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{
    AsyncTask, Buffer, Float64ArraySlice, Function, Int32ArraySlice, JsValue, ObjectFinalize,
    Uint8ArraySlice, Unknown,
};
use napi::{CleanupEnvHook, Env, Task};
use napi_derive::napi;
use sockmap_core::backend::select;
use sockmap_core::backend::select::BackendInfo;
use sockmap_core::config::DEFAULT_BACKLOG;
use sockmap_core::stats::StatsSnapshot;
use sockmap_core::{
    Addr, ChangeHold, Drive, Engine, EngineHandle, Errno, Hooks, Notify, OnClose, PairOptions,
    SockId, Stream, UnixName,
};

use crate::binding_batch::{Batches, JsVerdicts};
use crate::binding_error::{error_of, guarded, host_error, Error, Result};
use crate::binding_event::{js_event, unix_path, JsEvent};
use crate::binding_inline::Inline;
use crate::binding_lock::lock;
use crate::binding_options::{engine_config, session_config, EngineOptions, SessionsSpec};
use crate::binding_tls::{
    js_tls_stats, server_tls, ClientCache, JsTlsStats, TlsClientSpec, TlsServerSpec,
};
use crate::binding_wake::{WakeFn, Waker};

/// The engine, shared with the env cleanup hook so that an env torn down
/// without `close()` (a terminated worker) still stops the I/O thread.
#[derive(Default)]
pub(crate) struct EngineCell(Mutex<Option<Engine>>);

impl EngineCell {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Option<Engine>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the engine and joins its thread (no-op once stopped).
    fn stop(&self) {
        let engine = self.lock().take();
        drop(engine);
    }
}

/// A listening socket's id and bound address.
#[napi(object)]
pub struct ListenResult {
    /// The listener's socket id.
    pub id: f64,
    /// The bound IP address.
    pub address: String,
    /// The bound port.
    pub port: u32,
    /// `'IPv4'` or `'IPv6'`.
    pub family: String,
}

/// The backend an engine runs, and why.
#[napi(object)]
#[derive(Clone)]
pub struct BackendInfoJs {
    /// `'epoll'` or `'io_uring'`.
    pub backend: String,
    /// What was asked for: `'auto'`, `'epoll'` or `'io_uring'`.
    pub requested: String,
    /// The kernel features in use.
    pub features: Vec<String>,
    /// Each step down from the most capable backend, with its reason.
    pub fallbacks: Vec<String>,
}

/// The backends' counters.
#[napi(object)]
pub struct BackendStatsJs {
    /// Times the I/O threads entered the kernel to wait (epoll_wait, or io_uring_enter, which also submits).
    pub waits: f64,
    /// io_uring receives that ran out of provided buffers and were armed again.
    pub starved: f64,
    /// io_uring completions of operations whose socket had closed, ignored.
    pub stale: f64,
    /// Read passes that spliced bytes nothing inspects (epoll).
    pub spliced: f64,
    /// Datagrams sent as segments of `UDP_SEGMENT` sends (GSO).
    pub segmented: f64,
    /// Datagrams received coalesced with others by `UDP_GRO`.
    pub coalesced: f64,
}

fn backend_info(i: &BackendInfo) -> BackendInfoJs {
    BackendInfoJs {
        backend: i.kind.name().to_string(),
        requested: i.requested.name().to_string(),
        features: i.features.iter().map(|f| f.to_string()).collect(),
        fallbacks: i.fallbacks.clone(),
    }
}

/// The counters' names, camelCased, in the order `sockStats()` and `mapStats()` give their values.
#[napi]
pub fn stats_fields() -> Vec<String> {
    StatsSnapshot::FIELDS
        .iter()
        .map(|f| {
            let mut out = String::with_capacity(f.len());
            let mut upper = false;
            for c in f.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    out.push(c.to_ascii_uppercase());
                    upper = false;
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

/// Counter values as JS numbers, in the order of [`stats_fields`].
pub(crate) fn stats_values(s: &StatsSnapshot) -> Vec<f64> {
    s.values().into_iter().map(|v| v as f64).collect()
}

/// One engine with its I/O thread.
#[napi(custom_finalize)]
pub struct BindingEngine {
    pub(crate) cell: Arc<EngineCell>,
    pub(crate) handle: EngineHandle,
    batches: Batches,
    /// Set while a wake-up is queued and not yet drained.
    pending: Arc<AtomicBool>,
    /// Wake-ups so far.
    wakeups: Arc<AtomicU64>,
    /// Released at close so that nothing keeps the event loop alive (none when driven inline).
    wake: Mutex<Option<Arc<Waker>>>,
    /// The inline driver, when this thread runs the I/O loop.
    inline: Option<Inline>,
    cleanup: Option<CleanupEnvHook<Arc<EngineCell>>>,
    backend: BackendInfoJs,
    shards: u32,
    /// TLS client configurations by option set (sessions resume across connects).
    tls_clients: ClientCache,
    /// The hold on map changes of the current JavaScript task (`holdChanges`).
    pub(crate) hold: Mutex<Option<ChangeHold>>,
}

impl BindingEngine {
    fn set_ref(&self, env: Env, strong: bool) -> Result<()> {
        if let Some(inline) = &self.inline {
            inline.set_ref(strong);
            return Ok(());
        }
        let wake = lock(&self.wake);
        let Some(t) = wake.as_ref() else {
            return Ok(());
        };
        if t.tsfn.aborted() {
            return Ok(());
        }
        // SAFETY: called on the JS thread of the env that created the function, which is alive (not aborted) and
        // released only when the last `Arc` drops; ref/unref only toggle whether it keeps the event loop alive.
        let status = unsafe {
            if strong {
                napi::sys::napi_ref_threadsafe_function(env.raw(), t.tsfn.raw())
            } else {
                napi::sys::napi_unref_threadsafe_function(env.raw(), t.tsfn.raw())
            }
        };
        if status == napi::sys::Status::napi_ok {
            Ok(())
        } else {
            Err(Error::new(
                "GenericFailure".to_string(),
                "cannot change the engine's ref",
            ))
        }
    }
}

pub(crate) fn sock_id(id: f64) -> SockId {
    SockId::from_u64(id as u64)
}

/// The address of an IP literal and a port (names are resolved by the TypeScript layer).
fn socket_addr(ip: &str, port: u32) -> Result<SocketAddr> {
    let port = u16::try_from(port).map_err(|_| error_of(Errno::Inval, "port out of range"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| error_of(Errno::Inval, &format!("not an IP address: '{ip}'")))?;
    Ok(SocketAddr::new(ip, port))
}

/// The Unix socket name a JavaScript path stands for: a leading NUL makes it abstract (Linux), as in `node:net`.
fn unix_name(path: &str) -> UnixName {
    match path.strip_prefix('\0') {
        Some(name) => UnixName::Abstract(name.as_bytes().to_vec()),
        None => UnixName::Path(path.into()),
    }
}

/// The id and local address of an IP socket, as `listen()` reports them.
fn inet_result(id: SockId, local: SocketAddr) -> ListenResult {
    ListenResult {
        id: id.as_u64() as f64,
        address: local.ip().to_string(),
        port: u32::from(local.port()),
        family: if local.is_ipv4() { "IPv4" } else { "IPv6" }.to_string(),
    }
}

/// The id and name of a Unix socket bound to `path`, as `listen()` reports them.
fn unix_result(id: SockId, local: &UnixName, path: String) -> ListenResult {
    ListenResult {
        id: id.as_u64() as f64,
        address: unix_path(local).unwrap_or(path),
        port: 0,
        family: "Unix".to_string(),
    }
}

fn engine_err(e: Errno, what: &str) -> Error {
    error_of(e, what)
}

#[napi]
impl BindingEngine {
    /// Copies the next batch into `payload`, `descs` (`DESC_STRIDE` numbers per item, see `DescField`) and `meta`
    /// (`META_STRIDE` numbers per item, see `MetaField`). Returns the number of items; 0 when no batch waits; `-n`
    /// when `payload` needs `n` bytes or `descs` or `meta` has too few slots, so that JavaScript grows them and calls
    /// again.
    #[napi]
    pub fn take_batch(
        &self,
        mut payload: Uint8ArraySlice<'_>,
        mut descs: Float64ArraySlice<'_>,
        mut meta: Int32ArraySlice<'_>,
    ) -> Result<f64> {
        // SAFETY: this runs synchronously on the JS thread that owns the three arrays; no JavaScript runs until it
        // returns, and the engine never sees these pointers (it copies into them here and nowhere else).
        let (payload, descs, meta) = unsafe { (payload.as_mut(), descs.as_mut(), meta.as_mut()) };
        guarded(|| self.batches.take(payload, descs, meta))
    }

    /// Answers the batch last taken: `answers[i]` is an `AnswerCode` (`Redirect + t` for target `t` of `targets`,
    /// `TARGET_STRIDE` numbers each, see `TargetField`). `extras` holds, in item order, one record per parse and
    /// msg-verdict item: the item's index, a count, and that many parse results (one number each) or edits
    /// (`EDIT_STRIDE` numbers each, see `EditOp`). The codes go to the engine as they are, with the target table
    /// converted once; an answer this cannot read (a negative code, an unknown edit, a target that names a missing
    /// key) goes as invalid, and the engine treats codes naming no target as invalid too. Returns the number of
    /// batches still waiting to be taken (0: no need to call `takeBatch` again now). `Reply + r` answers a stream
    /// verdict item with the bytes `replies[r]` (`msg.reply`); `Route + r` routes it by the ring of route `r` of
    /// `routes` (the same rows as `targets`; `msg.route`).
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn answer_batch(
        &self,
        answers: &[i32],
        targets: &[f64],
        keys: Vec<Buffer>,
        extras: &[f64],
        replies: Vec<Buffer>,
        routes: &[f64],
    ) -> Result<u32> {
        guarded(|| {
            self.batches
                .answer(answers, targets, keys, extras, replies, routes)
        })
    }
}

#[napi]
impl BindingEngine {
    /// Starts an engine; `wake` is called (on the JS thread) when events are ready.
    #[napi(constructor)]
    pub fn new(
        env: Env,
        options: EngineOptions,
        wake: Function<(), Unknown<'static>>,
    ) -> Result<Self> {
        guarded(|| {
            let cfg = engine_config(&options)?;
            let inline = select::drive_of(&cfg).map_err(|e| {
                engine_err(e.code, &format!("cannot start the engine: {}", e.detail))
            })? == Drive::Inline;
            let batches = Batches::default();
            // A threaded engine wakes JavaScript through a threadsafe function; an inline one calls it directly.
            let waker = if inline {
                None
            } else {
                let tsfn: WakeFn = wake
                    .build_threadsafe_function::<()>()
                    .callee_handled::<false>()
                    .build_callback(|_| Ok(()))
                    .map_err(host_error)?;
                Some(Arc::new(Waker::new(tsfn)))
            };
            let (pending, wakeups) = waker.as_ref().map_or_else(
                || (Arc::default(), Arc::default()),
                |w| (w.pending.clone(), w.wakeups.clone()),
            );
            let hooks = Hooks {
                notify: waker.clone().map(|w| Box::new(move || w.wake()) as Notify),
                external: Some(Box::new(JsVerdicts {
                    inbox: batches.inbox.clone(),
                    waker: waker.clone(),
                })),
            };
            let (engine, driven) = Engine::start_driven(cfg, hooks).map_err(|e| {
                engine_err(e.code, &format!("cannot start the engine: {}", e.detail))
            })?;
            let inline = match driven {
                // SAFETY: `env` is this call's live environment and `wake` one of its function values.
                Some(driven) => Some(unsafe {
                    Inline::start(
                        env.raw(),
                        wake.value().value,
                        driven,
                        batches.inbox.clone(),
                        wakeups.clone(),
                    )
                }?),
                None => None,
            };
            let backend = backend_info(engine.backend_info());
            let shards = engine.shards() as u32;
            let handle = engine.handle().clone();
            let cell = Arc::new(EngineCell(Mutex::new(Some(engine))));
            let cleanup = env
                .add_env_cleanup_hook(cell.clone(), |cell| cell.stop())
                .map_err(host_error)?;
            Ok(BindingEngine {
                cell,
                handle,
                batches,
                pending,
                wakeups,
                wake: Mutex::new(waker),
                inline,
                cleanup: Some(cleanup),
                backend,
                shards,
                tls_clients: ClientCache::default(),
                hold: Mutex::new(None),
            })
        })
    }

    /// Who runs the I/O loop: `'threads'` (the engine's own I/O threads) or `'inline'` (this JavaScript thread).
    #[napi(getter)]
    pub fn drive(&self) -> &'static str {
        if self.inline.is_some() {
            Drive::Inline.name()
        } else {
            Drive::Threads.name()
        }
    }

    /// The backend this engine runs, and why.
    #[napi]
    pub fn backend_info(&self) -> BackendInfoJs {
        self.backend.clone()
    }

    /// The backends' counters, summed over the shards (zeros once the engine is closed).
    #[napi]
    pub fn backend_stats(&self) -> BackendStatsJs {
        let s = self
            .cell
            .lock()
            .as_ref()
            .map(|e| e.backend_stats())
            .unwrap_or_default();
        BackendStatsJs {
            waits: s.waits as f64,
            starved: s.starved as f64,
            stale: s.stale as f64,
            spliced: s.spliced as f64,
            segmented: s.segmented as f64,
            coalesced: s.coalesced as f64,
        }
    }

    /// The number of I/O threads (shards).
    #[napi]
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// The shard (I/O thread) that owns a socket.
    #[napi]
    pub fn shard_of(&self, sock: f64) -> u32 {
        self.handle.shard_of(sock_id(sock)) as u32
    }

    /// Takes every event ready (clearing the wake-up flag first).
    #[napi]
    pub fn drain(&self) -> Result<Vec<JsEvent>> {
        guarded(|| {
            // Cleared before taking: an event published meanwhile is either taken here or rings again.
            self.pending.store(false, Ordering::Release);
            let guard = self.cell.lock();
            let mut out = Vec::new();
            if let Some(engine) = guard.as_ref() {
                while let Some(ev) = engine.try_event() {
                    out.push(js_event(ev));
                }
            }
            Ok(out)
        })
    }

    /// Wake-ups of the JS thread so far.
    #[napi(getter)]
    pub fn wakeups(&self) -> Result<f64> {
        guarded(|| Ok(self.wakeups.load(Ordering::Relaxed) as f64))
    }

    /// Keeps the Node.js event loop alive while the engine runs.
    #[napi(js_name = "ref")]
    pub fn refer(&self, env: Env) -> Result<()> {
        guarded(|| self.set_ref(env, true))
    }

    /// Lets the Node.js event loop exit while the engine runs.
    #[napi]
    pub fn unref(&self, env: Env) -> Result<()> {
        guarded(|| self.set_ref(env, false))
    }

    /// Listens on `ip:port` (`ip` an IP address literal; `EINVAL` otherwise).
    #[napi]
    /// `tls`: terminate TLS on every accepted connection.
    pub fn listen(
        &self,
        ip: String,
        port: u32,
        backlog: Option<u32>,
        tls: Option<TlsServerSpec>,
    ) -> Result<ListenResult> {
        guarded(|| {
            let addr = socket_addr(&ip, port)?;
            let tls = tls.as_ref().map(|t| server_tls(t, None)).transpose()?;
            let (id, local) = self
                .handle
                .listen_tls(addr, backlog.unwrap_or(DEFAULT_BACKLOG), tls)
                .map_err(|e| engine_err(e, "listen failed"))?;
            Ok(inet_result(id, local))
        })
    }

    /// Listens on the Unix-domain stream socket `path` (a leading NUL: a Linux abstract name). The result's address
    /// is the path, its port 0 and its family `'Unix'`.
    #[napi]
    pub fn listen_unix(&self, path: String, backlog: Option<u32>) -> Result<ListenResult> {
        guarded(|| {
            let (id, local) = self
                .handle
                .listen_unix(&unix_name(&path), backlog.unwrap_or(DEFAULT_BACKLOG))
                .map_err(|e| engine_err(e, "listen failed"))?;
            Ok(unix_result(id, &local, path))
        })
    }

    /// Starts a connect to the Unix-domain stream socket `path` (a leading NUL: a Linux abstract name), giving up
    /// after `timeout_ms` if given; the `Connected` event reports the outcome.
    #[napi]
    pub fn connect_unix(
        &self,
        path: String,
        timeout_ms: Option<f64>,
        near: Option<f64>,
    ) -> Result<f64> {
        guarded(|| {
            let timeout = timeout_ms.map(|ms| Duration::from_micros((ms * 1000.0) as u64));
            let id = self
                .handle
                .connect_unix(&unix_name(&path), timeout, near.map(sock_id))
                .map_err(|e| engine_err(e, "connect failed"))?;
            Ok(id.as_u64() as f64)
        })
    }

    /// Starts a connect to `ip:port` (`ip` an IP address literal; `EINVAL` otherwise), giving up after `timeout_ms`
    /// if given; the `Connected` event reports the outcome.
    #[napi]
    /// `near`: a socket whose I/O thread (shard) the new one joins.
    pub fn connect(
        &self,
        ip: String,
        port: u32,
        timeout_ms: Option<f64>,
        near: Option<f64>,
        tls: Option<TlsClientSpec>,
    ) -> Result<f64> {
        guarded(|| {
            let addr = socket_addr(&ip, port)?;
            let timeout = timeout_ms.map(|ms| Duration::from_micros((ms * 1000.0) as u64));
            let tls = tls.as_ref().map(|t| self.tls_clients.get(t)).transpose()?;
            let id = self
                .handle
                .connect_tls(addr, timeout, near.map(sock_id), tls)
                .map_err(|e| engine_err(e, "connect failed"))?;
            Ok(id.as_u64() as f64)
        })
    }

    /// Replaces a TLS listener's certificates (and ALPN, SNI, client CA): later connections take them; sessions
    /// carry over.
    #[napi]
    pub fn set_secure_context(&self, listener: f64, tls: TlsServerSpec) -> Result<()> {
        guarded(|| {
            let id = sock_id(listener);
            let previous = self.handle.listener_tls(id);
            let next = server_tls(&tls, previous.as_ref())?;
            self.handle
                .set_listener_tls(id, next)
                .map_err(|e| engine_err(e, "setSecureContext failed: not a TLS listener"))
        })
    }

    /// The engine's TLS counters.
    #[napi]
    pub fn tls_stats(&self) -> Result<JsTlsStats> {
        guarded(|| Ok(js_tls_stats(self.handle.tls_stats())))
    }

    /// A TLS listener's counters; `null` for a socket that is not one.
    #[napi]
    pub fn listener_tls_stats(&self, listener: f64) -> Result<Option<JsTlsStats>> {
        guarded(|| {
            Ok(self
                .handle
                .listener_tls_stats(sock_id(listener))
                .map(js_tls_stats))
        })
    }

    /// Takes over a connected TCP or Unix stream socket by file descriptor (the fd is duplicated; the caller closes its own).
    /// `initial`: bytes the application had already read from it, received first once the socket reads.
    #[napi]
    pub fn adopt(&self, fd: i32, initial: Option<&[u8]>) -> Result<f64> {
        guarded(|| {
            let stream = stream_of_fd(fd)?;
            let id = self
                .handle
                .adopt_with(
                    stream,
                    initial.map(Bytes::copy_from_slice).unwrap_or_default(),
                )
                .map_err(|e| engine_err(e, "adopt failed"))?;
            Ok(id.as_u64() as f64)
        })
    }

    /// Binds a UDP socket on `ip:port`; with `sessions`, one session socket per client address (announced as
    /// `Accepted` events of the bound socket).
    #[napi]
    pub fn bind_udp(
        &self,
        ip: String,
        port: u32,
        sessions: Option<SessionsSpec>,
    ) -> Result<ListenResult> {
        guarded(|| {
            let addr = socket_addr(&ip, port)?;
            let (id, local) = self
                .handle
                .bind_udp(addr, sessions.as_ref().map(session_config))
                .map_err(|e| engine_err(e, "bind failed"))?;
            Ok(inet_result(id, local))
        })
    }

    /// A UDP socket connected to `ip:port`, bound to `localIp:localPort` if given; the result is its local address.
    #[napi]
    pub fn connect_udp(
        &self,
        ip: String,
        port: u32,
        local_ip: Option<String>,
        local_port: Option<u32>,
        near: Option<f64>,
    ) -> Result<ListenResult> {
        guarded(|| {
            let peer = socket_addr(&ip, port)?;
            let local = match local_ip {
                Some(l) => Some(socket_addr(&l, local_port.unwrap_or(0))?),
                None => None,
            };
            let (id, local) = self
                .handle
                .connect_udp(peer, local, near.map(sock_id))
                .map_err(|e| engine_err(e, "connect failed"))?;
            Ok(inet_result(id, local))
        })
    }

    /// Binds a Unix datagram socket on `path` (a leading NUL: a Linux abstract name), with sessions per client name
    /// if asked.
    #[napi]
    pub fn bind_unix_dgram(
        &self,
        path: String,
        sessions: Option<SessionsSpec>,
    ) -> Result<ListenResult> {
        guarded(|| {
            let (id, local) = self
                .handle
                .bind_unix_dgram(&unix_name(&path), sessions.as_ref().map(session_config))
                .map_err(|e| engine_err(e, "bind failed"))?;
            Ok(unix_result(id, &local, path))
        })
    }

    /// A Unix datagram socket connected to `path`, bound to `localPath` if given (to receive replies).
    #[napi]
    pub fn connect_unix_dgram(
        &self,
        path: String,
        local_path: Option<String>,
        near: Option<f64>,
    ) -> Result<f64> {
        guarded(|| {
            let local = local_path.as_deref().map(unix_name);
            let id = self
                .handle
                .connect_unix_dgram(&unix_name(&path), local.as_ref(), near.map(sock_id))
                .map_err(|e| engine_err(e, "connect failed"))?;
            Ok(id.as_u64() as f64)
        })
    }

    /// Sends one datagram from a bound datagram socket to `ip:port`, or with `port` absent to the Unix socket
    /// `address`; the `SendDone` event with `req` reports the outcome.
    #[napi]
    pub fn send_to(
        &self,
        sock: f64,
        data: &[u8],
        address: String,
        port: Option<u32>,
        req: f64,
    ) -> Result<()> {
        guarded(|| {
            let to = match port {
                Some(p) => Addr::Inet(socket_addr(&address, p)?),
                None => Addr::Unix(unix_name(&address)),
            };
            self.handle
                .send_to(sock_id(sock), Bytes::copy_from_slice(data), to, req as u64);
            Ok(())
        })
    }

    /// Sends `data` on the sk_msg path; the `SendDone` event with `req` reports the outcome.
    #[napi]
    pub fn send(&self, sock: f64, data: &[u8], req: f64) -> Result<()> {
        guarded(|| {
            self.handle
                .send(sock_id(sock), Bytes::copy_from_slice(data), req as u64);
            Ok(())
        })
    }

    /// The application consumed `bytes` of the messages delivered to `sock`.
    #[napi]
    pub fn ack(&self, sock: f64, bytes: f64) -> Result<()> {
        guarded(|| {
            self.handle.ack(sock_id(sock), bytes as usize);
            Ok(())
        })
    }

    /// Starts (or restarts) reading and delivering.
    #[napi]
    pub fn resume(&self, sock: f64) -> Result<()> {
        guarded(|| {
            self.handle.resume(sock_id(sock));
            Ok(())
        })
    }

    /// Stops reading.
    #[napi]
    pub fn pause(&self, sock: f64) -> Result<()> {
        guarded(|| {
            self.handle.pause(sock_id(sock));
            Ok(())
        })
    }

    /// Writes what is queued, then shuts down the write side.
    #[napi]
    pub fn end(&self, sock: f64) -> Result<()> {
        guarded(|| {
            self.handle.end(sock_id(sock));
            Ok(())
        })
    }

    /// Closes at once.
    #[napi]
    pub fn destroy(&self, sock: f64) -> Result<()> {
        guarded(|| {
            self.handle.destroy(sock_id(sock));
            Ok(())
        })
    }

    /// Declares `a` and `b` partners; `on_close` is `"end"` or `"destroy"` (what a close of one does to the other).
    #[napi]
    pub fn pair(&self, a: f64, b: f64, on_close: String) -> Result<()> {
        guarded(|| {
            let on_close = match on_close.as_str() {
                "end" => OnClose::End,
                "destroy" => OnClose::Destroy,
                _ => return Err(error_of(Errno::Inval, "onClose must be 'end' or 'destroy'")),
            };
            self.handle
                .pair(sock_id(a), sock_id(b), PairOptions { on_close })
                .map_err(|e| {
                    let why = match e {
                        Errno::Busy => "a socket already has a partner",
                        Errno::NotConn => "a socket is closed",
                        _ => "a socket cannot be paired with itself or a listener",
                    };
                    engine_err(e, why)
                })
        })
    }

    /// Dissolves the socket's pair; false when it had no partner.
    #[napi]
    pub fn unpair(&self, sock: f64) -> Result<bool> {
        guarded(|| Ok(self.handle.unpair(sock_id(sock))))
    }

    /// The socket's partner, while paired.
    #[napi]
    pub fn partner(&self, sock: f64) -> Result<Option<f64>> {
        guarded(|| {
            Ok(self
                .handle
                .partner(sock_id(sock))
                .map(|p| p.as_u64() as f64))
        })
    }

    /// The socket's counters while it exists, in the order of `statsFields()`.
    #[napi]
    pub fn sock_stats(&self, sock: f64) -> Result<Option<Vec<f64>>> {
        guarded(|| {
            Ok(self
                .handle
                .sock_stats(sock_id(sock))
                .map(|s| stats_values(&s)))
        })
    }

    /// Stops the engine: flushes what is queued (briefly), closes every socket and joins the I/O thread, off the JS
    /// thread. Also releases the wake-up function so that the event loop may exit.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self) -> Result<AsyncTask<CloseTask>> {
        guarded(|| {
            lock(&self.wake).take();
            lock(&self.batches.inbox).clear();
            let finished = self.inline.as_ref().map(|inline| {
                let (tx, rx) = sync_channel(1);
                inline.close(tx);
                rx
            });
            Ok(AsyncTask::new(CloseTask {
                cell: self.cell.clone(),
                finished,
            }))
        })
    }
}

impl ObjectFinalize for BindingEngine {
    fn finalize(mut self, env: Env) -> napi::Result<()> {
        if let Some(hook) = self.cleanup.take() {
            // During env teardown the hook may already be gone; nothing else to do then.
            let _ = env.remove_env_cleanup_hook(hook);
        }
        lock(&self.wake).take();
        self.cell.stop();
        Ok(())
    }
}

/// Joins the I/O thread on the libuv pool (or, driven inline, waits there until the JavaScript thread's turns
/// closed every socket).
pub struct CloseTask {
    cell: Arc<EngineCell>,
    finished: Option<Receiver<()>>,
}

/// How long a closing inline engine is waited for: past the engine's own shutdown grace period.
const INLINE_CLOSE_WAIT: Duration = Duration::from_secs(5);

impl Task for CloseTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        self.cell.stop();
        if let Some(rx) = self.finished.take() {
            let _ = rx.recv_timeout(INLINE_CLOSE_WAIT);
        }
        Ok(())
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> napi::Result<()> {
        Ok(())
    }
}

/// A stream (TCP or Unix, by the socket's family) over a duplicate of descriptor `fd` (the caller keeps its own).
#[cfg(unix)]
fn stream_of_fd(fd: i32) -> Result<Stream> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: `dup` on a descriptor number only creates a new descriptor (or fails); it touches no memory.
    let dup = unsafe { libc::dup(fd) };
    if dup < 0 {
        return Err(engine_err(
            Errno::BadF,
            "adopt: not an open file descriptor",
        ));
    }
    // SAFETY: `dup` just returned this descriptor; nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(dup) };
    Stream::from_socket_fd(owned)
        .map_err(|e| engine_err(Errno::from_io(&e), "adopt: not a TCP or Unix stream socket"))
}

/// Node exposes no socket descriptor on Windows (`handle.fd` is -1), so there is nothing to take over.
#[cfg(not(unix))]
fn stream_of_fd(_fd: i32) -> Result<Stream> {
    Err(engine_err(
        Errno::OpNotSupp,
        "adopt: taking over a socket by descriptor needs a Unix platform",
    ))
}
