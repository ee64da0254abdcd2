//! Inline driving: the engine's one shard runs on the JavaScript thread, inside Node's own event loop.
//!
//! libuv watches the shard's descriptor (its epoll or kqueue instance) with a poll handle, a timer handle wakes it at
//! the core's next deadline, and an idle handle runs it again on the next iteration of the event loop when it stopped
//! with work left (a read budget spent, or its round limit reached: the application's own callbacks run in between).
//! Each callback runs loop turns that never wait ([`Driven::turn`]); when a turn
//! published events or handed new batches to the external verdicts, it calls the JavaScript wake function directly
//! (the same one a threaded engine calls through its threadsafe function), so a TypeScript verdict is a plain call on
//! the thread that read the message, and the next turn applies its answers and writes, with no thread hop and no
//! wake-up system call (the doorbell is held while JavaScript runs).
//!
//! Invariants: the handles and the shard live on the JavaScript thread that created them; a callback never
//! re-enters (libuv runs one at a time, and nothing here runs the loop); the shard is borrowed only inside a turn,
//! never across a call into JavaScript, so JavaScript may call every binding method, `close()` included;
//! JavaScript is called once per turn that produced something for it, never again for what it left waiting (a
//! batch it did not take), so the loop never spins on it; the handles are closed before the environment goes away (an async cleanup hook closes them when the environment is
//! torn down without `close()`, as in a terminated worker), and the state is freed after every close callback ran.
//!
//! The libuv functions are those of the host process (Node.js or Electron), looked up by name at run time; on a
//! host without them, or on a platform without a pollable descriptor (Windows' IOCP), inline driving is refused with
//! `EOPNOTSUPP` when the engine starts.

use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void};
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use napi::sys;
use sockmap_core::{Driven, Errno};

use crate::binding_batch::Inbox;
use crate::binding_error::{error_of, Result};
use crate::binding_lock::lock;
use crate::binding_wake::Wake;

/// Turns (each possibly with a call into JavaScript) one callback runs before it lets the event loop do other work.
const MAX_ROUNDS: u32 = 64;

type PollCb = unsafe extern "C" fn(*mut c_void, c_int, c_int);
type TimerCb = unsafe extern "C" fn(*mut c_void);
type IdleCb = unsafe extern "C" fn(*mut c_void);
type CloseCb = unsafe extern "C" fn(*mut c_void);

/// libuv's `UV_IDLE`, `UV_POLL` and `UV_TIMER` handle types, and `UV_READABLE`.
const UV_IDLE: c_int = 6;
const UV_POLL: c_int = 8;
const UV_TIMER: c_int = 13;
const UV_READABLE: c_int = 1;

type HandleSizeFn = unsafe extern "C" fn(c_int) -> usize;
type InitFn = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
type PollInitFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
type PollStartFn = unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int;
type TimerStartFn = unsafe extern "C" fn(*mut c_void, TimerCb, u64, u64) -> c_int;
type IdleStartFn = unsafe extern "C" fn(*mut c_void, IdleCb) -> c_int;
type StopFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type CloseFn = unsafe extern "C" fn(*mut c_void, CloseCb);
type SetDataFn = unsafe extern "C" fn(*mut c_void, *mut c_void);
type GetDataFn = unsafe extern "C" fn(*const c_void) -> *mut c_void;
type RefFn = unsafe extern "C" fn(*mut c_void);

/// The host's libuv functions this module calls.
struct Uv {
    handle_size: HandleSizeFn,
    poll_init: PollInitFn,
    poll_start: PollStartFn,
    poll_stop: StopFn,
    timer_init: InitFn,
    timer_start: TimerStartFn,
    timer_stop: StopFn,
    idle_init: InitFn,
    idle_start: IdleStartFn,
    idle_stop: StopFn,
    close: CloseFn,
    set_data: SetDataFn,
    get_data: GetDataFn,
    ref_: RefFn,
    unref: RefFn,
}

#[cfg(unix)]
fn uv() -> std::result::Result<&'static Uv, String> {
    static UV: OnceLock<std::result::Result<Uv, String>> = OnceLock::new();
    UV.get_or_init(|| {
        macro_rules! sym {
            ($name:literal as $ty:ty) => {{
                let name = concat!($name, "\0");
                // SAFETY: dlsym with RTLD_DEFAULT only looks a NUL-terminated name up in the loaded objects.
                let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast()) };
                if p.is_null() {
                    return Err(format!("the host process has no libuv function {}", $name));
                }
                // SAFETY: the symbol is libuv's function of that name, whose C signature `$ty` declares.
                unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
            }};
        }
        Ok(Uv {
            handle_size: sym!("uv_handle_size" as HandleSizeFn),
            poll_init: sym!("uv_poll_init" as PollInitFn),
            poll_start: sym!("uv_poll_start" as PollStartFn),
            poll_stop: sym!("uv_poll_stop" as StopFn),
            timer_init: sym!("uv_timer_init" as InitFn),
            timer_start: sym!("uv_timer_start" as TimerStartFn),
            timer_stop: sym!("uv_timer_stop" as StopFn),
            idle_init: sym!("uv_idle_init" as InitFn),
            idle_start: sym!("uv_idle_start" as IdleStartFn),
            idle_stop: sym!("uv_idle_stop" as StopFn),
            close: sym!("uv_close" as CloseFn),
            set_data: sym!("uv_handle_set_data" as SetDataFn),
            get_data: sym!("uv_handle_get_data" as GetDataFn),
            ref_: sym!("uv_ref" as RefFn),
            unref: sym!("uv_unref" as RefFn),
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

#[cfg(not(unix))]
fn uv() -> std::result::Result<&'static Uv, String> {
    Err("inline driving needs a pollable descriptor, which this platform's backend has not".into())
}

/// A libuv handle's memory, sized by the host's libuv and 16-byte aligned.
struct HandleMem(Box<[u128]>);

impl HandleMem {
    fn new(size: usize) -> HandleMem {
        HandleMem(vec![0u128; size.div_ceil(16)].into_boxed_slice())
    }

    fn ptr(&mut self) -> *mut c_void {
        self.0.as_mut_ptr().cast()
    }
}

/// The state the handles point to.
struct InlineLoop {
    uv: &'static Uv,
    env: sys::napi_env,
    poll: Cell<*mut c_void>,
    timer: Cell<*mut c_void>,
    idle: Cell<*mut c_void>,
    mem: RefCell<Vec<HandleMem>>,
    /// The JavaScript wake function and the async context it is called in.
    wake: sys::napi_ref,
    async_ctx: sys::napi_async_context,
    driven: RefCell<Option<Driven>>,
    inbox: Inbox,
    wakeups: Arc<AtomicU64>,
    /// `close()` was called: turn until the shard finished, without calling JavaScript.
    closing: Cell<bool>,
    /// JavaScript can no longer run (the environment is terminating).
    js_gone: Cell<bool>,
    /// The shard finished and the handles are closed (or closing).
    finished: Cell<bool>,
    /// Told once the shard finished after `close()`.
    on_finished: RefCell<Option<SyncSender<()>>>,
    /// Handles not yet closed.
    open: Cell<u8>,
    cleanup: Cell<sys::napi_async_cleanup_hook_handle>,
}

/// An engine's inline driver, owned by its `BindingEngine` on the JavaScript thread.
pub(crate) struct Inline {
    state: Rc<InlineLoop>,
}

fn check(status: sys::napi_status, what: &str) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(error_of(
            Errno::Io,
            &format!("inline driving: {what} failed"),
        ))
    }
}

fn uv_check(rc: c_int, what: &str) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        // libuv reports an OS error as its negated errno.
        let code = rc
            .checked_neg()
            .and_then(Errno::from_raw)
            .unwrap_or(Errno::Io);
        Err(error_of(
            code,
            &format!("inline driving: {what} failed ({rc})"),
        ))
    }
}

impl Inline {
    /// Starts driving `driven` from the event loop of `env`, calling `wake` (a JavaScript function) when events or
    /// batches are ready.
    ///
    /// # Safety
    /// `env` is the live environment of the calling (JavaScript) thread and `wake` a function value of it.
    pub(crate) unsafe fn start(
        env: sys::napi_env,
        wake: sys::napi_value,
        driven: Driven,
        inbox: Inbox,
        wakeups: Arc<AtomicU64>,
    ) -> Result<Inline> {
        let uv = uv().map_err(|e| error_of(Errno::OpNotSupp, &format!("inline driving: {e}")))?;
        #[cfg(unix)]
        let fd = driven.fd();
        #[cfg(not(unix))]
        let fd: c_int = -1;
        let mut uv_loop = ptr::null_mut();
        check(
            sys::napi_get_uv_event_loop(env, &mut uv_loop),
            "napi_get_uv_event_loop",
        )?;
        let mut wake_ref = ptr::null_mut();
        check(
            sys::napi_create_reference(env, wake, 1, &mut wake_ref),
            "napi_create_reference",
        )?;
        let mut name = ptr::null_mut();
        let label = "sockmap:inline";
        check(
            sys::napi_create_string_utf8(
                env,
                label.as_ptr().cast(),
                label.len() as isize,
                &mut name,
            ),
            "napi_create_string_utf8",
        )?;
        let mut async_ctx = ptr::null_mut();
        check(
            sys::napi_async_init(env, ptr::null_mut(), name, &mut async_ctx),
            "napi_async_init",
        )?;
        let mut poll = HandleMem::new((uv.handle_size)(UV_POLL));
        let mut timer = HandleMem::new((uv.handle_size)(UV_TIMER));
        let mut idle = HandleMem::new((uv.handle_size)(UV_IDLE));
        let (poll_ptr, timer_ptr, idle_ptr) = (poll.ptr(), timer.ptr(), idle.ptr());
        let state = Rc::new(InlineLoop {
            uv,
            env,
            poll: Cell::new(poll_ptr),
            timer: Cell::new(timer_ptr),
            idle: Cell::new(idle_ptr),
            mem: RefCell::new(vec![poll, timer, idle]),
            wake: wake_ref,
            async_ctx,
            driven: RefCell::new(Some(driven)),
            inbox,
            wakeups,
            closing: Cell::new(false),
            js_gone: Cell::new(false),
            finished: Cell::new(false),
            on_finished: RefCell::new(None),
            open: Cell::new(0),
            cleanup: Cell::new(ptr::null_mut()),
        });
        let release = |state: &Rc<InlineLoop>| {
            sys::napi_delete_reference(env, wake_ref);
            sys::napi_async_destroy(env, async_ctx);
            state.driven.borrow_mut().take();
        };
        if let Err(e) = uv_check((uv.poll_init)(uv_loop.cast(), poll_ptr, fd), "uv_poll_init") {
            release(&state);
            return Err(e);
        }
        state.open.set(1);
        (uv.set_data)(poll_ptr, Rc::into_raw(state.clone()) as *mut c_void);
        if let Err(e) = uv_check((uv.timer_init)(uv_loop.cast(), timer_ptr), "uv_timer_init") {
            state.timer.set(ptr::null_mut());
            state.idle.set(ptr::null_mut());
            state.close_handles();
            return Err(e);
        }
        state.open.set(2);
        (uv.set_data)(timer_ptr, Rc::into_raw(state.clone()) as *mut c_void);
        if let Err(e) = uv_check((uv.idle_init)(uv_loop.cast(), idle_ptr), "uv_idle_init") {
            state.idle.set(ptr::null_mut());
            state.close_handles();
            return Err(e);
        }
        state.open.set(3);
        (uv.set_data)(idle_ptr, Rc::into_raw(state.clone()) as *mut c_void);
        let mut hook = ptr::null_mut();
        let status = sys::napi_add_async_cleanup_hook(
            env,
            Some(on_env_cleanup),
            Rc::as_ptr(&state) as *mut c_void,
            &mut hook,
        );
        if let Err(e) = check(status, "napi_add_async_cleanup_hook") {
            state.close_handles();
            return Err(e);
        }
        state.cleanup.set(hook);
        if let Err(e) = uv_check(
            (uv.poll_start)(poll_ptr, UV_READABLE, on_poll),
            "uv_poll_start",
        ) {
            state.close_handles();
            return Err(e);
        }
        // Commands queued before the handles existed get a turn.
        state.soon();
        Ok(Inline { state })
    }

    /// Whether the handles keep the event loop alive.
    pub(crate) fn set_ref(&self, strong: bool) {
        let s = &self.state;
        for h in [s.poll.get(), s.timer.get(), s.idle.get()] {
            if !h.is_null() {
                // SAFETY: a handle of this thread's loop that is not closed (closed handles are nulled).
                unsafe {
                    if strong {
                        (s.uv.ref_)(h)
                    } else {
                        (s.uv.unref)(h)
                    }
                }
            }
        }
    }

    /// After the engine was told to shut down: turns until its sockets closed, then closes the handles and tells
    /// `done` (at once if the shard already finished). JavaScript is no longer called.
    pub(crate) fn close(&self, done: SyncSender<()>) {
        let s = &self.state;
        s.closing.set(true);
        lock(&s.inbox).clear();
        if s.finished.get() {
            let _ = done.send(());
            return;
        }
        *s.on_finished.borrow_mut() = Some(done);
        s.soon();
    }
}

impl InlineLoop {
    /// Runs turns until nothing is left to do now (or the round limit), calling JavaScript where a turn published
    /// events or handed off new batches, then arms the timer for the core's next deadline.
    fn drive(&self) {
        self.idle_stop();
        let (mut rounds, mut settle) = (0, false);
        loop {
            let waiting = lock(&self.inbox).len();
            let turned = {
                let mut d = self.driven.borrow_mut();
                let Some(d) = d.as_mut() else { return };
                // Right after JavaScript ran, what the turn is for is its answers: no need to ask the kernel.
                if std::mem::take(&mut settle) {
                    d.settle()
                } else {
                    d.turn()
                }
            };
            if turned.finished && self.closing.get() {
                self.finish();
                return;
            }
            let fresh = lock(&self.inbox).len() > waiting;
            let call = (turned.events || fresh) && !self.closing.get();
            if call {
                if let Some(d) = self.driven.borrow().as_ref() {
                    d.hold();
                }
                let mut what = 0;
                if turned.events {
                    what |= Wake::Events as u32;
                }
                if fresh {
                    what |= Wake::Batches as u32;
                }
                self.call_js(what);
                settle = true;
                if self.js_gone.get() {
                    self.stop_watching();
                    return;
                }
            }
            if turned.finished {
                // Shut down without `close()` (the engine was dropped), or failed (its fatal event was delivered
                // above): nothing more to drive.
                self.finish();
                return;
            }
            if !(call || turned.again) {
                break;
            }
            rounds += 1;
            if rounds >= MAX_ROUNDS {
                self.soon();
                return;
            }
        }
        let timeout = self.driven.borrow().as_ref().and_then(Driven::timeout);
        match timeout {
            Some(Duration::ZERO) => self.soon(),
            t => self.arm(t),
        }
    }

    /// Drives again on the next iteration of the event loop (after the application's own callbacks).
    fn soon(&self) {
        let h = self.idle.get();
        if !h.is_null() {
            // SAFETY: an open idle handle of this thread's loop.
            unsafe { (self.uv.idle_start)(h, on_idle) };
        }
    }

    fn idle_stop(&self) {
        let h = self.idle.get();
        if !h.is_null() {
            // SAFETY: an open idle handle of this thread's loop.
            unsafe { (self.uv.idle_stop)(h) };
        }
    }

    /// Arms the timer for `timeout` from now (`None`: disarms it).
    fn arm(&self, timeout: Option<Duration>) {
        let t = self.timer.get();
        if t.is_null() {
            return;
        }
        // SAFETY: an open timer handle of this thread's loop.
        unsafe {
            match timeout {
                Some(d) => {
                    let ms = d.as_micros().div_ceil(1000).min(u128::from(u32::MAX)) as u64;
                    (self.uv.timer_start)(t, on_timer, ms, 0);
                }
                None => {
                    (self.uv.timer_stop)(t);
                }
            }
        }
    }

    fn stop_watching(&self) {
        self.idle_stop();
        let (p, t) = (self.poll.get(), self.timer.get());
        // SAFETY: open handles of this thread's loop (closed ones are nulled).
        unsafe {
            if !p.is_null() {
                (self.uv.poll_stop)(p);
            }
            if !t.is_null() {
                (self.uv.timer_stop)(t);
            }
        }
    }

    /// The shard finished after `close()`: closes the handles and tells the waiting close task.
    fn finish(&self) {
        self.finished.set(true);
        self.close_handles();
        if let Some(done) = self.on_finished.borrow_mut().take() {
            let _ = done.send(());
        }
    }

    /// Closes the handles (once each); the last close callback frees the state.
    fn close_handles(&self) {
        for cell in [&self.poll, &self.timer, &self.idle] {
            let h = cell.replace(ptr::null_mut());
            if !h.is_null() {
                // SAFETY: an open handle of this thread's loop, closed once (its pointer is nulled first).
                unsafe { (self.uv.close)(h, on_close) };
            }
        }
    }

    /// Calls the JavaScript wake function in its async context with what there is for it (`Wake` bits); an exception it throws becomes the process's uncaught exception, as a throwing event
    /// listener's would.
    fn call_js(&self, what: u32) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
        let env = self.env;
        // SAFETY: on the JavaScript thread of `env`, outside any JavaScript frame (a libuv callback), with a handle
        // scope of our own around the values created here; the reference and the async context are alive until
        // the state is freed.
        unsafe {
            let mut scope = ptr::null_mut();
            if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
                return;
            }
            let (mut func, mut recv, mut result, mut arg) = (
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            );
            if sys::napi_get_reference_value(env, self.wake, &mut func) == sys::Status::napi_ok
                && !func.is_null()
                && sys::napi_get_global(env, &mut recv) == sys::Status::napi_ok
                && sys::napi_create_uint32(env, what, &mut arg) == sys::Status::napi_ok
            {
                let status =
                    sys::napi_make_callback(env, self.async_ctx, recv, func, 1, &arg, &mut result);
                if status == sys::Status::napi_pending_exception {
                    let mut exc = ptr::null_mut();
                    let mut kind = sys::ValueType::napi_undefined;
                    if sys::napi_get_and_clear_last_exception(env, &mut exc) == sys::Status::napi_ok
                        && sys::napi_typeof(env, exc, &mut kind) == sys::Status::napi_ok
                        && kind != sys::ValueType::napi_undefined
                    {
                        sys::napi_fatal_exception(env, exc);
                    } else {
                        // No exception value: the environment is terminating (a worker being stopped). JavaScript
                        // will not run again; the async cleanup hook closes the handles.
                        self.js_gone.set(true);
                    }
                }
            }
            sys::napi_close_handle_scope(env, scope);
        }
    }
}

/// The state a handle's data points to (one strong count per open handle).
///
/// # Safety
/// `h` is one of this module's open handles.
unsafe fn state_of<'a>(uv: &Uv, h: *mut c_void) -> &'a InlineLoop {
    &*((uv.get_data)(h) as *const InlineLoop)
}

unsafe extern "C" fn on_poll(h: *mut c_void, _status: c_int, _events: c_int) {
    let Ok(uv) = uv() else { return };
    // SAFETY: libuv passes the open poll handle whose data `Inline::start` set.
    let s = unsafe { state_of(uv, h) };
    guard(|| s.drive());
}

unsafe extern "C" fn on_timer(h: *mut c_void) {
    let Ok(uv) = uv() else { return };
    // SAFETY: libuv passes the open timer handle whose data `Inline::start` set.
    let s = unsafe { state_of(uv, h) };
    guard(|| s.drive());
}

unsafe extern "C" fn on_idle(h: *mut c_void) {
    let Ok(uv) = uv() else { return };
    // SAFETY: libuv passes the open idle handle whose data `Inline::start` set.
    let s = unsafe { state_of(uv, h) };
    guard(|| s.drive());
}

unsafe extern "C" fn on_close(h: *mut c_void) {
    let Ok(uv) = uv() else { return };
    // SAFETY: the handle's data holds one strong count of the state (`Rc::into_raw` in `Inline::start`), given
    // back here exactly once per handle, after libuv no longer uses the handle.
    let state = unsafe { Rc::from_raw((uv.get_data)(h) as *const InlineLoop) };
    let left = state.open.get().saturating_sub(1);
    state.open.set(left);
    if left == 0 {
        let env = state.env;
        // SAFETY: the environment is alive until its async cleanup hooks were removed, which happens here.
        unsafe {
            let hook = state.cleanup.replace(ptr::null_mut());
            sys::napi_delete_reference(env, state.wake);
            sys::napi_async_destroy(env, state.async_ctx);
            if !hook.is_null() {
                sys::napi_remove_async_cleanup_hook(hook);
            }
        }
        state.driven.borrow_mut().take();
        state.mem.borrow_mut().clear();
    }
}

/// The environment is going away without `close()`: closes the handles (sockets close at once with the shard).
unsafe extern "C" fn on_env_cleanup(_hook: sys::napi_async_cleanup_hook_handle, data: *mut c_void) {
    // SAFETY: `data` is the state, kept alive by the handles' counts until their close callbacks ran.
    let s = unsafe { &*(data as *const InlineLoop) };
    s.closing.set(true);
    s.close_handles();
}

/// Runs a callback of the loop; a panic must not unwind into libuv.
fn guard(f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        eprintln!("sockmap: a panic in the inline driver was contained");
    }
}
