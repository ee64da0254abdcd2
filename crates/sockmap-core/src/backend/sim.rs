//! A simulated backend: no sockets, a scripted kernel.
