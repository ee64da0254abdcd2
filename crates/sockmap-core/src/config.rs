//! Engine settings.

use std::time::Duration;

/// How external verdicts and parsers are batched.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    /// A batch is handed off once it holds this many messages.
    pub max_messages: usize,
    /// ...or once its oldest message has waited this long.
    pub max_delay: Duration,
    /// At most this many batches are awaiting answers at once, per shard
    /// (each I/O thread batches its own sockets).
    pub max_in_flight: usize,
    /// A batch handed off and not answered this long times out: its items
    /// get their program's error verdict
    /// ([`ErrorVerdict`](crate::program::ErrorVerdict); a parse item closes
    /// its socket with `ETIMEDOUT`), and its answer, if it ever comes, is
    /// ignored and counted (`verdicts_late`). Measured from the hand-off.
    pub verdict_timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> BatchConfig {
        BatchConfig {
            max_messages: 1024,
            max_delay: Duration::from_micros(50),
            max_in_flight: 4,
            verdict_timeout: DEFAULT_VERDICT_TIMEOUT,
        }
    }
}

/// Engine settings; the defaults suit a proxy on loopback.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Above this many queued bytes a send ring stops the sources feeding it.
    pub send_high_watermark: usize,
    /// Sources stopped by a full ring resume once it drains to this many bytes.
    pub send_low_watermark: usize,
    /// Bytes read from one socket per loop turn before others get a turn.
    pub read_budget: usize,
    /// Size of the buffers reads land in.
    pub read_buffer: usize,
    /// Bytes one socket may hold awaiting external verdicts (or unframed by
    /// an external parser) before it stops being read; it is read again once
    /// answers bring them back to half this (verdicts) or under it (parser).
    /// A read may take it past the bound by at most one read buffer.
    pub max_pending_bytes: usize,
    /// External verdict batching.
    pub batch: BatchConfig,
    /// Bounds each socket's application queue: above this many bytes
    /// delivered to the application ([`Event::Message`](crate::Event::Message))
    /// and not yet acknowledged with
    /// [`EngineHandle::ack`](crate::EngineHandle::ack), the sockets feeding it
    /// (itself for PASS, the sources of ingress redirects) stop being read;
    /// they resume once acknowledgements bring it to half this. `None` (the
    /// default): unbounded, no acknowledgement needed.
    pub app_high_watermark: Option<usize>,
    /// The backend; `None` (the default): the environment variable
    /// [`BACKEND_ENV`](crate::backend::select::BACKEND_ENV) decides, or else
    /// [`BackendChoice::Auto`].
    pub backend: Option<BackendChoice>,
    /// Buffers in the io_uring backend's provided-buffer ring (rounded up to
    /// a power of two, at most 32768), each [`read_buffer`](Self::read_buffer) bytes.
    pub recv_buffers: usize,
    /// I/O threads (shards), each with its own backend and sockets; `None`
    /// (the default): the environment variable
    /// [`SHARDS_ENV`](crate::backend::select::SHARDS_ENV) decides, or else 1.
    pub shards: Option<usize>,
    /// Splicing: a socket whose bytes nothing inspects (no parser, a native
    /// redirect of every message to one egress target) switches to
    /// splice(2) through a pipe, in the kernel, once a read brings at least
    /// this many bytes, and back to copying after a splice moves fewer.
    /// `None`: never. On the epoll backend; io_uring copies.
    pub splice_min: Option<usize>,
    /// Who runs the I/O loop; `None` (the default): the environment variable
    /// [`DRIVE_ENV`](crate::backend::select::DRIVE_ENV) decides, or else
    /// [`Drive::Threads`].
    pub drive: Option<Drive>,
    /// Bytes a datagram socket may hold queued to send; a datagram beyond it is dropped and counted.
    pub dgram_queue_bytes: usize,
    /// Datagrams a datagram socket may hold queued to send (and a session
    /// held before it reads); one beyond it is dropped and counted.
    pub dgram_queue_datagrams: usize,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            send_high_watermark: 1 << 20,
            send_low_watermark: 256 << 10,
            read_budget: 256 << 10,
            read_buffer: 64 << 10,
            max_pending_bytes: 1 << 20,
            batch: BatchConfig::default(),
            app_high_watermark: None,
            backend: None,
            recv_buffers: 128,
            shards: None,
            splice_min: Some(DEFAULT_SPLICE_MIN),
            drive: None,
            dgram_queue_bytes: DEFAULT_DGRAM_QUEUE_BYTES,
            dgram_queue_datagrams: DEFAULT_DGRAM_QUEUE_DATAGRAMS,
        }
    }
}

/// The bytes a datagram socket may hold queued to send: 1 MiB.
pub const DEFAULT_DGRAM_QUEUE_BYTES: usize = 1 << 20;

/// The datagrams a datagram socket may hold queued to send: 4096.
pub const DEFAULT_DGRAM_QUEUE_DATAGRAMS: usize = 4096;
/// How long a batch handed to external verdicts may go unanswered before
/// its items get the error verdict: 5 s.
pub const DEFAULT_VERDICT_TIMEOUT: Duration = Duration::from_secs(5);

/// The read size from which bytes nothing inspects are spliced: 16 KiB.
pub const DEFAULT_SPLICE_MIN: usize = 16 << 10;

/// The application queue bound of [`EngineConfig::acknowledged`]: 1 MiB.
pub const ACK_APP_HIGH_WATERMARK: usize = 1 << 20;

/// How long an upstream may leave a request unanswered in request/response
/// pairing before it is closed with `ETIMEDOUT`: 5 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests a client may have awaiting replies before it stops being read: 1024.
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 1024;

/// The accept backlog a listener gets when the application names none.
pub const DEFAULT_BACKLOG: u32 = 1024;

/// The address a listener binds, or a connect targets, when the application
/// names none: the IPv4 loopback.
pub const DEFAULT_HOST: &str = "127.0.0.1";

impl EngineConfig {
    /// The defaults for an application that acknowledges the messages it
    /// consumes ([`EngineHandle::ack`](crate::EngineHandle::ack)), as the
    /// Node.js binding does: [`EngineConfig::default`] with the application
    /// queue bounded at [`ACK_APP_HIGH_WATERMARK`].
    pub fn acknowledged() -> EngineConfig {
        EngineConfig {
            app_high_watermark: Some(ACK_APP_HIGH_WATERMARK),
            ..EngineConfig::default()
        }
    }
}

/// Which backend the application asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// io_uring where the kernel allows it, else epoll.
    #[default]
    Auto,
    /// epoll.
    Epoll,
    /// io_uring, or an error.
    IoUring,
}

impl BackendChoice {
    /// Parses `"auto"`, `"epoll"` or `"io_uring"`.
    pub fn parse(s: &str) -> Option<BackendChoice> {
        match s {
            "auto" => Some(BackendChoice::Auto),
            "epoll" => Some(BackendChoice::Epoll),
            "io_uring" => Some(BackendChoice::IoUring),
            _ => None,
        }
    }

    /// The name [`BackendChoice::parse`] takes.
    pub const fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Epoll => "epoll",
            BackendChoice::IoUring => "io_uring",
        }
    }
}

/// Who runs the engine's I/O loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Drive {
    /// The engine's own I/O threads, one per shard: the application's
    /// thread never runs the loop, and external verdicts cross threads in
    /// batches.
    #[default]
    Threads,
    /// The application's thread, through [`Driven`](crate::Driven): one
    /// shard on the readiness backend whose descriptor the application's own
    /// event loop watches, so that an external verdict is a call on the
    /// thread that runs the loop, with no thread hop.
    Inline,
}

impl Drive {
    /// Parses `"threads"` or `"inline"`.
    pub fn parse(s: &str) -> Option<Drive> {
        match s {
            "threads" => Some(Drive::Threads),
            "inline" => Some(Drive::Inline),
            _ => None,
        }
    }

    /// The name [`Drive::parse`] takes.
    pub const fn name(self) -> &'static str {
        match self {
            Drive::Threads => "threads",
            Drive::Inline => "inline",
        }
    }
}
