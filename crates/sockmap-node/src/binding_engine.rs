//! `BindingEngine`: one engine, its wake-up threadsafe function and its teardown.
//!
//! The engine's notify callback runs on the I/O thread after a loop turn that produced events. It makes at most one
//! threadsafe-function call until JavaScript drains: an atomic flag coalesces wake-ups, and `drain()` clears it before
//! taking the events, so an event published during a drain is either taken by it or rings again. JavaScript never
//! waits on the I/O thread: every method returns at once, and `close()` joins the thread on the libuv pool.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{AsyncTask, Function, ObjectFinalize, Unknown};
use napi::{CleanupEnvHook, Env, Status, Task};
use napi_derive::napi;
use sockmap_core::stats::StatsSnapshot;
use sockmap_core::{Engine, EngineHandle, Errno, Hooks, MapId, SockId};

use crate::binding_batch::{Inbox, JsVerdicts, Taken, WakeFn, Waker};
use crate::binding_error::errno_error;
use crate::binding_event::{js_event, JsEvent};
use crate::binding_options::{engine_config, EngineOptions};

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

/// Runs `f`, turning a panic into an `ERR_ENGINE_PANIC` error.
pub(crate) fn guarded<T>(f: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(napi::Error::new(
            Status::GenericFailure,
            "[ERR_ENGINE_PANIC] the native binding panicked",
        ))
    })
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

/// Counters of a socket or map.
#[napi(object)]
pub struct JsStats {
    /// Bytes read.
    pub bytes_in: f64,
    /// Bytes written.
    pub bytes_out: f64,
    /// Messages framed from what was read.
    pub messages_in: f64,
    /// Messages passed to the application.
    pub passed: f64,
    /// Messages redirected to another socket's egress.
    pub redirected_egress: f64,
    /// Messages redirected to another socket's application.
    pub redirected_ingress: f64,
    /// Messages dropped, for any reason.
    pub dropped: f64,
    /// Dropped by a DROP verdict.
    pub dropped_verdict: f64,
    /// Dropped because the redirect key was absent.
    pub dropped_no_key: f64,
    /// Dropped because the redirect target could not take them.
    pub dropped_dead_target: f64,
    /// Dropped by a parser error or a close mid-message.
    pub dropped_parser: f64,
    /// Bytes of dropped messages.
    pub dropped_bytes: f64,
    /// Parser errors.
    pub parser_errors: f64,
    /// Frames (or pieces of frames) the parser skipped.
    pub skipped_frames: f64,
    /// Bytes the parser skipped.
    pub skipped_bytes: f64,
    /// Times the parser handed the stream back to the application.
    pub handbacks: f64,
    /// Bytes delivered to the application and not yet acknowledged.
    pub app_queued_bytes: f64,
    /// Queued bytes discarded at close.
    pub discarded_bytes: f64,
    /// Bytes waiting in the send ring.
    pub queued_bytes: f64,
    /// Bytes awaiting an external verdict or parser.
    pub pending_bytes: f64,
    /// Application sends accepted.
    pub sends: f64,
    /// Application sends refused.
    pub sends_refused: f64,
    /// Times reading stopped because a redirect target was full.
    pub backpressure_stalls: f64,
}

impl From<StatsSnapshot> for JsStats {
    fn from(s: StatsSnapshot) -> JsStats {
        JsStats {
            bytes_in: s.bytes_in as f64,
            bytes_out: s.bytes_out as f64,
            messages_in: s.messages_in as f64,
            passed: s.passed as f64,
            redirected_egress: s.redirected_egress as f64,
            redirected_ingress: s.redirected_ingress as f64,
            dropped: s.dropped as f64,
            dropped_verdict: s.dropped_verdict as f64,
            dropped_no_key: s.dropped_no_key as f64,
            dropped_dead_target: s.dropped_dead_target as f64,
            dropped_parser: s.dropped_parser as f64,
            dropped_bytes: s.dropped_bytes as f64,
            parser_errors: s.parser_errors as f64,
            skipped_frames: s.skipped_frames as f64,
            skipped_bytes: s.skipped_bytes as f64,
            handbacks: s.handbacks as f64,
            app_queued_bytes: s.app_queued_bytes as f64,
            discarded_bytes: s.discarded_bytes as f64,
            queued_bytes: s.queued_bytes as f64,
            pending_bytes: s.pending_bytes as f64,
            sends: s.sends as f64,
            sends_refused: s.sends_refused as f64,
            backpressure_stalls: s.backpressure_stalls as f64,
        }
    }
}

/// One engine with its I/O thread.
#[napi(custom_finalize)]
pub struct BindingEngine {
    pub(crate) cell: Arc<EngineCell>,
    pub(crate) handle: EngineHandle,
    pub(crate) maps: Mutex<Vec<MapId>>,
    pub(crate) inbox: Inbox,
    pub(crate) taken: Mutex<Option<Taken>>,
    /// Set while a wake-up is queued and not yet drained.
    pending: Arc<AtomicBool>,
    /// Wake-ups so far.
    wakeups: Arc<AtomicU64>,
    /// Released at close so that nothing keeps the event loop alive.
    wake: Mutex<Option<Arc<Waker>>>,
    cleanup: Option<CleanupEnvHook<Arc<EngineCell>>>,
}

impl BindingEngine {
    fn set_ref(&self, env: Env, strong: bool) -> napi::Result<()> {
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
            Err(napi::Error::new(
                Status::GenericFailure,
                "cannot change the engine's ref",
            ))
        }
    }
}

/// Locks a mutex, ignoring poisoning (every holder leaves the data consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn sock_id(id: f64) -> SockId {
    SockId::from_u64(id as u64)
}

fn resolve(host: &str, port: u32) -> napi::Result<SocketAddr> {
    let port = u16::try_from(port).map_err(|_| errno_error(Errno::Inval, "port out of range"))?;
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| errno_error(Errno::Inval, &format!("cannot resolve host '{host}'")))
}

fn engine_err(e: Errno, what: &str) -> napi::Error {
    errno_error(e, what)
}

#[napi]
impl BindingEngine {
    /// Starts an engine; `wake` is called (on the JS thread) when events are ready.
    #[napi(constructor)]
    pub fn new(
        env: Env,
        options: EngineOptions,
        wake: Function<(), Unknown<'static>>,
    ) -> napi::Result<Self> {
        guarded(|| {
            let tsfn: WakeFn = wake
                .build_threadsafe_function::<()>()
                .callee_handled::<false>()
                .build_callback(|_| Ok(()))?;
            let waker = Arc::new(Waker::new(tsfn));
            let inbox = Inbox::default();
            let hooks = Hooks {
                notify: Some({
                    let waker = waker.clone();
                    Box::new(move || waker.wake())
                }),
                external: Some(Box::new(JsVerdicts {
                    inbox: inbox.clone(),
                    waker: waker.clone(),
                })),
            };
            let engine = Engine::start(engine_config(&options), hooks)
                .map_err(|e| engine_err(Errno::from_io(&e), "cannot start the engine"))?;
            let handle = engine.handle().clone();
            let cell = Arc::new(EngineCell(Mutex::new(Some(engine))));
            let cleanup = env.add_env_cleanup_hook(cell.clone(), |cell| cell.stop())?;
            Ok(BindingEngine {
                cell,
                handle,
                maps: Mutex::new(Vec::new()),
                inbox,
                taken: Mutex::new(None),
                pending: waker.pending.clone(),
                wakeups: waker.wakeups.clone(),
                wake: Mutex::new(Some(waker)),
                cleanup: Some(cleanup),
            })
        })
    }

    /// Takes every event ready (clearing the wake-up flag first).
    #[napi]
    pub fn drain(&self) -> napi::Result<Vec<JsEvent>> {
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
    pub fn wakeups(&self) -> f64 {
        self.wakeups.load(Ordering::Relaxed) as f64
    }

    /// Keeps the Node.js event loop alive while the engine runs.
    #[napi(js_name = "ref")]
    pub fn refer(&self, env: Env) -> napi::Result<()> {
        self.set_ref(env, true)
    }

    /// Lets the Node.js event loop exit while the engine runs.
    #[napi]
    pub fn unref(&self, env: Env) -> napi::Result<()> {
        self.set_ref(env, false)
    }

    /// Listens on `host:port`.
    #[napi]
    pub fn listen(&self, host: String, port: u32, backlog: u32) -> napi::Result<ListenResult> {
        guarded(|| {
            let addr = resolve(&host, port)?;
            let (id, local) = self
                .handle
                .listen(addr, backlog)
                .map_err(|e| engine_err(e, "listen failed"))?;
            Ok(ListenResult {
                id: id.as_u64() as f64,
                address: local.ip().to_string(),
                port: u32::from(local.port()),
                family: if local.is_ipv4() { "IPv4" } else { "IPv6" }.to_string(),
            })
        })
    }

    /// Starts a connect; the `CONNECTED` event reports the outcome.
    #[napi]
    pub fn connect(&self, host: String, port: u32, timeout_ms: f64) -> napi::Result<f64> {
        guarded(|| {
            let addr = resolve(&host, port)?;
            let timeout =
                (timeout_ms > 0.0).then(|| Duration::from_micros((timeout_ms * 1000.0) as u64));
            let id = self
                .handle
                .connect(addr, timeout)
                .map_err(|e| engine_err(e, "connect failed"))?;
            Ok(id.as_u64() as f64)
        })
    }

    /// Takes over a connected TCP socket by file descriptor (the fd is duplicated; the caller closes its own).
    /// `initial`: bytes the application had already read from it, received first once the socket reads.
    #[napi]
    pub fn adopt(&self, fd: i32, initial: Option<&[u8]>) -> napi::Result<f64> {
        guarded(|| {
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
            let stream = std::net::TcpStream::from(owned);
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

    /// Sends `data` on the sk_msg path; the `SEND_DONE` event with `req` reports the outcome.
    #[napi]
    pub fn send(&self, sock: f64, data: &[u8], req: f64) {
        self.handle
            .send(sock_id(sock), Bytes::copy_from_slice(data), req as u64);
    }

    /// The application consumed `bytes` of the messages delivered to `sock`.
    #[napi]
    pub fn ack(&self, sock: f64, bytes: f64) {
        if bytes > 0.0 {
            self.handle.ack(sock_id(sock), bytes as usize);
        }
    }

    /// Starts (or restarts) reading and delivering.
    #[napi]
    pub fn resume(&self, sock: f64) {
        self.handle.resume(sock_id(sock));
    }

    /// Stops reading.
    #[napi]
    pub fn pause(&self, sock: f64) {
        self.handle.pause(sock_id(sock));
    }

    /// Writes what is queued, then shuts down the write side.
    #[napi]
    pub fn end(&self, sock: f64) {
        self.handle.end(sock_id(sock));
    }

    /// Closes at once.
    #[napi]
    pub fn destroy(&self, sock: f64) {
        self.handle.destroy(sock_id(sock));
    }

    /// The socket's counters, while it exists.
    #[napi]
    pub fn sock_stats(&self, sock: f64) -> Option<JsStats> {
        self.handle.sock_stats(sock_id(sock)).map(JsStats::from)
    }

    /// Stops the engine: flushes what is queued (briefly), closes every socket and joins the I/O thread, off the JS
    /// thread. Also releases the wake-up function so that the event loop may exit.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self) -> AsyncTask<CloseTask> {
        lock(&self.wake).take();
        lock(&self.inbox).clear();
        AsyncTask::new(CloseTask {
            cell: self.cell.clone(),
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

/// Joins the I/O thread on the libuv pool.
pub struct CloseTask {
    cell: Arc<EngineCell>,
}

impl Task for CloseTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        self.cell.stop();
        Ok(())
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> napi::Result<()> {
        Ok(())
    }
}
