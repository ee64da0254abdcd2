//! Choosing a backend: what the application asked for, what the kernel
//! offers, and why the engine runs what it runs.
//!
//! The chain, most capable first:
//! 1. io_uring with multishot receives into a provided-buffer ring;
//! 2. io_uring with single-shot receives into buffers of its own;
//! 3. epoll.
//!
//! [`BackendChoice::Auto`] walks the chain and records every step down with
//! its reason in [`BackendInfo::fallbacks`]. An explicit
//! [`BackendChoice::IoUring`] may lose features (step 2, recorded) but never
//! falls back to epoll: where io_uring cannot run at all, starting the engine
//! fails with the errno that refused it.
//!
//! The choice comes from [`EngineConfig::backend`], or when that is `None`
//! from the environment variable [`BACKEND_ENV`], or else is `Auto`.

use std::sync::Arc;

use crate::config::{BackendChoice, Drive, EngineConfig};
use crate::error::Errno;
pub use crate::error::StartError;

use super::epoll::EpollBackend;
#[cfg(target_os = "linux")]
use super::uring::UringBackend;
use super::{BackendCounters, Wake};

/// The environment variable that chooses the backend when the configuration does not.
pub const BACKEND_ENV: &str = "SOCKMAP_BACKEND";

/// The environment variable through which tests make io_uring fail at one
/// step of its start-up: `setup` (the ring cannot be created, `EPERM`),
/// `probe` (an opcode is missing) or `buf_ring` (the provided-buffer ring
/// cannot be registered, `ENOMEM`).
pub const URING_FAULT_ENV: &str = "SOCKMAP_IO_URING_FAULT";

/// The environment variable that sets the number of shards (I/O threads)
/// when the configuration does not: a count, or `auto` for the cores the
/// process may use.
pub const SHARDS_ENV: &str = "SOCKMAP_SHARDS";

/// The environment variable that chooses who runs the I/O loop when the
/// configuration does not: `threads` or `inline` ([`Drive`]).
pub const DRIVE_ENV: &str = "SOCKMAP_DRIVE";

/// The number of cores this process may use (at least 1).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The shard count [`SHARDS_ENV`] names, if it is set (and not empty).
///
/// # Errors
/// `EINVAL` when it is neither a count from 1 to 256 nor `auto`.
pub fn shards_from_env() -> Result<Option<usize>, StartError> {
    match std::env::var(SHARDS_ENV) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) if v == "auto" => Ok(Some(available_cores())),
        Ok(v) => match v.parse::<usize>() {
            Ok(n @ 1..=256) => Ok(Some(n)),
            _ => Err(StartError {
                code: Errno::Inval,
                detail: format!("{SHARDS_ENV}={v:?} is not a shard count (1 to 256, or auto)"),
            }),
        },
        Err(_) => Ok(None),
    }
}

/// The drive [`EngineConfig::drive`] or else [`DRIVE_ENV`] names, or else
/// [`Drive::Threads`].
///
/// # Errors
/// `EINVAL` when the environment variable names no drive.
pub fn drive_of(cfg: &EngineConfig) -> Result<Drive, StartError> {
    if let Some(d) = cfg.drive {
        return Ok(d);
    }
    match std::env::var(DRIVE_ENV) {
        Ok(v) if v.is_empty() => Ok(Drive::default()),
        Ok(v) => Drive::parse(&v).ok_or_else(|| StartError {
            code: Errno::Inval,
            detail: format!("{DRIVE_ENV}={v:?} names no drive: use threads or inline"),
        }),
        Err(_) => Ok(Drive::default()),
    }
}

/// The choice [`BACKEND_ENV`] names, if it is set (and not empty).
///
/// # Errors
/// `EINVAL` when it names no backend.
pub fn choice_from_env() -> Result<Option<BackendChoice>, StartError> {
    match std::env::var(BACKEND_ENV) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => BackendChoice::parse(&v)
            .map(Some)
            .ok_or_else(|| StartError {
                code: Errno::Inval,
                detail: format!(
                    "{BACKEND_ENV}={v:?} names no backend: use auto, epoll or io_uring"
                ),
            }),
        Err(_) => Ok(None),
    }
}

/// The backend an engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Readiness through mio: epoll on Linux, kqueue on macOS, IOCP on Windows.
    Epoll,
    /// Completions through io_uring.
    IoUring,
}

impl BackendKind {
    /// `"epoll"` (on Linux; `"poll"` elsewhere, where mio drives kqueue or IOCP) or `"io_uring"`.
    pub const fn name(self) -> &'static str {
        match self {
            BackendKind::Epoll if cfg!(target_os = "linux") => "epoll",
            BackendKind::Epoll => "poll",
            BackendKind::IoUring => "io_uring",
        }
    }
}

/// What an engine runs and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// The backend running.
    pub kind: BackendKind,
    /// What was asked for.
    pub requested: BackendChoice,
    /// The kernel features in use (`"multishot-recv"`, `"buffer-ring"`...).
    pub features: Vec<&'static str>,
    /// Each step down the chain, with its reason.
    pub fallbacks: Vec<String>,
}

/// An opened backend, ready for the loop.
pub(crate) enum Opened {
    Epoll(Box<EpollBackend>),
    #[cfg(target_os = "linux")]
    IoUring(Box<UringBackend>),
}

impl Opened {
    /// The backend's counters.
    pub(crate) fn counters(&self) -> Arc<BackendCounters> {
        match self {
            Opened::Epoll(b) => b.counters(),
            #[cfg(target_os = "linux")]
            Opened::IoUring(b) => b.counters(),
        }
    }
}

/// Opens the backend `cfg` asks for (see the module documentation), with
/// the waker other threads ring.
///
/// # Errors
/// When the backend asked for cannot run (or epoll itself cannot be created).
pub(crate) fn open(
    cfg: &EngineConfig,
    drive: Drive,
) -> Result<(Opened, Box<dyn Wake>, BackendInfo), StartError> {
    let requested = match cfg.backend {
        Some(c) => c,
        None => choice_from_env()?.unwrap_or_default(),
    };
    let mut fallbacks = Vec::new();
    if drive == Drive::Inline {
        // The caller's event loop watches one descriptor: the readiness backend's.
        match requested {
            BackendChoice::IoUring => {
                return Err(StartError {
                    code: Errno::OpNotSupp,
                    detail: "inline driving runs the readiness backend, not io_uring".into(),
                })
            }
            BackendChoice::Auto => {
                fallbacks.push("inline driving: io_uring not used, using epoll".into());
            }
            BackendChoice::Epoll => {}
        }
    } else if requested != BackendChoice::Epoll {
        match open_uring(cfg, &mut fallbacks) {
            Ok((backend, waker, features)) => {
                let info = BackendInfo {
                    kind: BackendKind::IoUring,
                    requested,
                    features,
                    fallbacks,
                };
                return Ok((backend, waker, info));
            }
            Err(e) if requested == BackendChoice::IoUring => {
                return Err(StartError {
                    code: e.code,
                    detail: format!("the io_uring backend cannot run: {}", e.detail),
                })
            }
            Err(e) => fallbacks.push(format!("io_uring unavailable ({}), using epoll", e.detail)),
        }
    }
    let (backend, waker) =
        EpollBackend::new(cfg.read_buffer).map_err(|e| StartError::os("epoll_create", &e))?;
    let backend = backend.with_splice(cfg.splice_min);
    let info = BackendInfo {
        kind: BackendKind::Epoll,
        requested,
        features: if cfg.splice_min.is_some() && cfg!(target_os = "linux") {
            vec!["edge-triggered", "splice"]
        } else {
            vec!["edge-triggered"]
        },
        fallbacks,
    };
    Ok((Opened::Epoll(Box::new(backend)), Box::new(waker), info))
}

/// An opened io_uring backend, its waker and the kernel features it uses.
type UringOpened = (Opened, Box<dyn Wake>, Vec<&'static str>);

#[cfg(target_os = "linux")]
fn open_uring(cfg: &EngineConfig, fallbacks: &mut Vec<String>) -> Result<UringOpened, StartError> {
    let fault = std::env::var(URING_FAULT_ENV).ok();
    let (backend, waker, features) = UringBackend::new(cfg, fault.as_deref(), fallbacks)?;
    Ok((
        Opened::IoUring(Box::new(backend)),
        Box::new(waker),
        features,
    ))
}

#[cfg(not(target_os = "linux"))]
fn open_uring(_: &EngineConfig, _: &mut Vec<String>) -> Result<UringOpened, StartError> {
    Err(StartError {
        code: Errno::OpNotSupp,
        detail: "io_uring exists only on Linux".into(),
    })
}
