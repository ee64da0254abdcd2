#![no_main]
//! TlsRecords: no panic, the same records and server-name range however the
//! stream is cut, and each record of a well-formed stream is one message.

use libfuzzer_sys::fuzz_target;
use sockmap_core::framer::TlsRecords;

#[path = "split_common.rs"]
mod split_common;

use split_common::framer_common::Out;

/// The largest record body a TLS peer may send.
const MAX_RECORD: usize = 16384 + 2048;

/// A record: its content type (20 to 24, or any byte if the flag is set),
/// minor version and body.
type Record = (u8, bool, u8, Vec<u8>);

fuzz_target!(|input: (Vec<u8>, Vec<Record>)| {
    let (cuts, records) = input;
    let mut stream = Vec::new();
    let mut wanted = Vec::new();
    let mut well_formed = true;
    for (ty, any_type, minor, body) in &records {
        let ty = if *any_type { *ty } else { 20 + ty % 5 };
        let len = body.len().min(usize::from(u16::MAX));
        let start = stream.len();
        stream.extend([ty, 3, minor % 5]);
        stream.extend((len as u16).to_be_bytes());
        stream.extend(&body[..len]);
        well_formed &= (20..=24).contains(&ty) && len <= MAX_RECORD;
        if well_formed {
            wanted.push(stream[start..].to_vec());
        }
    }
    let outs = split_common::check(|| Box::new(TlsRecords::new()), &stream, &cuts);
    let got: Vec<&[u8]> = outs
        .iter()
        .filter_map(|o| match o {
            Out::Msg(bytes, _) => Some(bytes.as_slice()),
            _ => None,
        })
        .collect();
    assert_eq!(got, wanted.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let refused = outs.iter().any(|o| matches!(o, Out::Error(_)));
    assert_eq!(refused, !well_formed, "a stream is refused exactly when a record is malformed");
});
