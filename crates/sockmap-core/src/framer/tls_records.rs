//! [`TlsRecords`]: TLS records framed by their 5-byte header, without
//! decrypting them (`parsers.tlsRecords()`), for routing TLS connections by
//! server name and passing them through untouched (HAProxy's `req.ssl_sni`).
//!
//! Invariants: each message is one whole record, header included, so the
//! bytes delivered are the bytes received; the first record of a stream is
//! its ClientHello, and its [`MessageMeta::Tls`] names where its server name
//! lies (later records carry no metadata: the socket remembers the name,
//! see `rules.key.sni`). A header that is not a TLS record's (content type
//! 20 to 24, major version 3, at most 2^14 + 2048 bytes) aborts with `EPROTO`.

use super::{Chunks, Framer, MessageMeta, Parse};
use crate::error::Errno;
use crate::tls::hello::sni_range;

/// The largest record body a TLS peer may send (`TLSCiphertext`: 2^14 + 2048).
const MAX_RECORD: usize = 16384 + 2048;

/// A framer cutting a TLS stream into records (`parsers.tlsRecords()`).
#[derive(Clone, Debug, Default)]
pub struct TlsRecords {
    /// Set once the first record was delivered.
    past_first: bool,
    /// The server name's range in the first record, once it is complete.
    sni: Option<std::ops::Range<usize>>,
}

impl TlsRecords {
    /// A framer for a stream that starts with a ClientHello.
    pub fn new() -> TlsRecords {
        TlsRecords::default()
    }
}

impl Framer for TlsRecords {
    fn parse(&mut self, data: &Chunks<'_>) -> Parse {
        let mut header = [0u8; 5];
        if !data.copy_to(0, &mut header) {
            return Parse::NeedMore { hint: Some(5) };
        }
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if !(20..=24).contains(&header[0]) || header[1] != 3 || len > MAX_RECORD {
            return Parse::Error(Errno::Proto);
        }
        let total = 5 + len;
        if !self.past_first {
            if data.len() < total {
                return Parse::NeedMore { hint: Some(total) };
            }
            self.sni = match data.contiguous(0, total) {
                Some(record) => sni_range(record),
                None => {
                    let mut record = vec![0u8; total];
                    data.copy_to(0, &mut record);
                    sni_range(&record)
                }
            };
        }
        Parse::Length(total)
    }

    fn meta(&self) -> MessageMeta {
        match self.past_first {
            false => MessageMeta::Tls {
                sni: self.sni.clone(),
            },
            true => MessageMeta::None,
        }
    }

    fn reset(&mut self) {
        self.past_first = true;
        self.sni = None;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn parse(f: &mut TlsRecords, data: &[u8]) -> Parse {
        f.parse(&Chunks::new(&[Bytes::copy_from_slice(data)]))
    }

    #[test]
    fn frames_records_and_names_the_first() {
        // A minimal ClientHello naming "a.b": version, random, no session id, one suite, one compression method.
        let name = b"a.b";
        let sni_ext = [
            &[0u8, 0][..],
            &((name.len() + 5) as u16).to_be_bytes(),
            &((name.len() + 3) as u16).to_be_bytes(),
            &[0],
            &(name.len() as u16).to_be_bytes(),
            name,
        ]
        .concat();
        let mut body = vec![3, 3];
        body.extend([0u8; 32]);
        body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
        body.extend((sni_ext.len() as u16).to_be_bytes());
        body.extend(&sni_ext);
        let mut hs = vec![1, 0, 0, body.len() as u8];
        hs.extend(&body);
        let mut record = vec![0x16, 3, 1, 0, hs.len() as u8];
        record.extend(&hs);

        let mut f = TlsRecords::new();
        assert_eq!(
            parse(&mut f, &record[..3]),
            Parse::NeedMore { hint: Some(5) }
        );
        assert_eq!(
            parse(&mut f, &record[..9]),
            Parse::NeedMore {
                hint: Some(record.len())
            }
        );
        assert_eq!(parse(&mut f, &record), Parse::Length(record.len()));
        let MessageMeta::Tls { sni: Some(r) } = f.finish().1 else {
            panic!("no server name")
        };
        assert_eq!(&record[r], name);
        // Later records: framed by their header alone, no metadata.
        let app = [0x17, 3, 3, 0, 2, b'h', b'i'];
        assert_eq!(parse(&mut f, &app[..5]), Parse::Length(7));
        assert_eq!(f.finish().1, MessageMeta::None);
        assert_eq!(parse(&mut f, b"GET / "), Parse::Error(Errno::Proto));
        assert_eq!(
            parse(&mut f, &[0x17, 3, 3, 0xff, 0xff]),
            Parse::Error(Errno::Proto)
        );
    }
}
