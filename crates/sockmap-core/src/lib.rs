//! # sockmap-core
//!
//! The engine of sockmap: a user-space implementation of Linux's sk_msg
//! scatter-gather ring, stream parser (strparser) and socket maps, with no
//! knowledge of JavaScript.
//!
//! Layers, each using only the ones below it:
//! - [`Engine`] / [`EngineHandle`]: the I/O thread and the thread-safe handle
//!   (sockets, maps, commands); [`sim::Sim`] runs the same loop over a
//!   simulated network for deterministic tests;
//! - the driver: one loop turn, written once, over any [`backend`];
//! - [`Core`] ([`psock`]): the sans-IO state machine. It performs no I/O,
//!   reads no clock (time comes in with the inputs) and takes no lock on the
//!   per-message path; `handle_*` methods take what happened, `poll_op`,
//!   `poll_event` and `poll_timeout` give what to do;
//! - the leaves: [`ring`], [`msg`], [`strparser`], [`framer`], [`map`],
//!   [`program`], [`rules`], [`stats`].
#![deny(missing_docs)]

pub mod backend;
pub mod batch;
mod batcher;
pub mod config;
pub mod dgram;
mod driver;
pub mod engine;
pub mod error;
pub mod event;
pub mod framer;
mod hash_ring;
pub mod id;
pub mod key;
pub mod map;
mod map_view;
pub mod msg;
pub mod partner;
pub mod program;
pub mod psock;
pub mod redis;
mod registry;
pub mod ring;
pub mod rules;
pub mod sim;
pub mod sock;
pub mod stats;
pub mod strparser;
mod sys;
mod timer;
pub mod tls;
mod verdict;

pub use config::{BatchConfig, Drive, EngineConfig};
pub use engine::{ChangeHold, Driven, Engine, EngineHandle, Hooks, Notify, Turned};
pub use error::Errno;
pub use event::{Event, Fatal, Frags};
pub use id::{MapId, SockId};
pub use key::Key;
pub use map::{EntryOptions, MapKind, UpdateFlag};
pub use msg::SkMsg;
pub use partner::{OnClose, PairOptions, Partner};
pub use psock::Core;
pub use registry::SockState;
pub use ring::{RingFull, SgRing, IOV_MAX};
pub use rules::{HttpRoute, KeySource, Rule, Verdict};
pub use sock::{Addr, Stream, UnixName};
