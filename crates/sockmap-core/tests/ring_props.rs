//! Model-based property tests of the scatter-gather ring: random operation
//! sequences, with random and invalid arguments, checked byte for byte
//! against a `Vec<u8>` after every step (see `ring_model`).

mod ring_model;

use proptest::collection::vec;
use proptest::prelude::*;
use ring_model::{Arg, Harness, Op};

fn arg() -> impl Strategy<Value = Arg> {
    prop_oneof![
        8 => (0u16..300).prop_map(Arg),
        1 => (0u16..8).prop_map(|i| Arg(Arg::EXTREME_BASE + i)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u16..64, any::<bool>()).prop_map(|(len, shared)| Op::Push { len, shared }),
        1 => Just(Op::Push { len: 0, shared: false }),
        2 => arg().prop_map(Op::Advance),
        1 => arg().prop_map(Op::BufAdvance),
        1 => arg().prop_map(Op::Trim),
        1 => arg().prop_map(Op::SplitTo),
        1 => (arg(), arg()).prop_map(|(a, b)| Op::CloneRange(a, b)),
        1 => (arg(), arg()).prop_map(|(a, b)| Op::CopyToSlice(a, b)),
        1 => vec(0u16..64, 0..6).prop_map(Op::Append),
        2 => (arg(), arg()).prop_map(|(a, b)| Op::Pull(a, b)),
        2 => (arg(), arg()).prop_map(|(a, b)| Op::PushZeroed(a, b)),
        2 => (arg(), arg()).prop_map(|(a, b)| Op::Pop(a, b)),
    ]
}

fn max_frags() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=4, 5usize..=17, Just(256)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn ring_matches_vec_model(max in max_frags(), ops in vec(op(), 1..80)) {
        let mut h = Harness::new(max);
        for op in &ops {
            h.apply(op);
        }
    }
}

#[test]
fn u32_wrapping_pop_is_rejected_by_the_model_harness() {
    let mut h = Harness::new(4);
    h.apply(&Op::Push {
        len: 10,
        shared: false,
    });
    // start 2 + len u32::MAX wraps to 1 in 32 bits.
    h.apply(&Op::Pop(Arg(2), Arg(Arg::EXTREME_BASE + 2)));
    h.apply(&Op::PushZeroed(Arg(0), Arg(Arg::EXTREME_BASE + 2)));
}
