//! Choosing the backend: the configuration, the `SOCKMAP_BACKEND`
//! environment variable, and each step down the fallback chain, driven by
//! the start-up fault hook. One test in its own process, so that the
//! environment it sets is shared with no concurrent test.

mod engine_util;

use engine_util::stream::*;
use engine_util::*;
use sockmap_core::backend::select::{BackendKind, BACKEND_ENV, URING_FAULT_ENV};
use sockmap_core::config::BackendChoice;
use sockmap_core::{Engine, EngineConfig, Errno, Hooks};

#[test]
fn each_step_down_the_chain_is_taken_and_said() {
    let start = |choice: Option<BackendChoice>| {
        Engine::start(
            EngineConfig {
                backend: choice,
                ..EngineConfig::default()
            },
            Hooks::default(),
        )
    };
    std::env::set_var(URING_FAULT_ENV, "setup");
    let e = start(Some(BackendChoice::Auto)).expect("auto falls back");
    assert_eq!(e.backend_info().kind, BackendKind::Epoll);
    assert!(
        e.backend_info().fallbacks[0].contains("EPERM"),
        "{:?}",
        e.backend_info()
    );
    drop(e);
    let err = start(Some(BackendChoice::IoUring)).expect_err("explicit io_uring never falls back");
    assert_eq!(err.code, Errno::Perm);
    assert!(err.detail.contains("io_uring"), "{err}");

    std::env::set_var(URING_FAULT_ENV, "probe");
    let err = start(Some(BackendChoice::IoUring)).expect_err("a missing opcode refuses io_uring");
    assert_eq!(err.code, Errno::OpNotSupp);
    assert!(err.detail.contains("SENDMSG"), "{err}");

    if io_uring_allowed() {
        // Basic io_uring: single-shot receives into the socket's own buffers, same bytes.
        std::env::set_var(URING_FAULT_ENV, "buf_ring");
        let h = Harness::with_config(uring(EngineConfig::default()));
        let info = h.engine.backend_info().clone();
        assert_eq!(info.kind, BackendKind::IoUring);
        assert!(!info.features.contains(&"buffer-ring"), "{info:?}");
        assert!(info.fallbacks[0].contains("single-shot"), "{info:?}");
        round_trip(&h, 4 << 20);
        drop(h);
    }
    std::env::remove_var(URING_FAULT_ENV);

    std::env::set_var(BACKEND_ENV, "epoll");
    assert_eq!(start(None).unwrap().backend_info().kind, BackendKind::Epoll);
    assert_eq!(
        start(None).unwrap().backend_info().requested,
        BackendChoice::Epoll
    );
    std::env::set_var(BACKEND_ENV, "kqueue");
    let err = start(None).expect_err("an unknown name is refused");
    assert_eq!(err.code, Errno::Inval);
    assert!(err.detail.contains(BACKEND_ENV), "{err}");
    // The configuration wins over the environment.
    assert_eq!(
        start(Some(BackendChoice::Epoll))
            .unwrap()
            .backend_info()
            .kind,
        BackendKind::Epoll
    );
    std::env::remove_var(BACKEND_ENV);
}
