//! # sockmap-core
//!
//! The engine of sockmap: a user-space implementation of Linux's sk_msg
//! scatter-gather ring, stream parser (strparser) and socket maps, with no
//! knowledge of JavaScript.
#![deny(missing_docs)]

pub mod error;
pub mod msg;
pub mod ring;

pub use error::Errno;
pub use msg::SkMsg;
pub use ring::{RingFull, SgRing, IOV_MAX};
