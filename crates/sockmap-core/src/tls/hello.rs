//! The ClientHello peek: the server name a TLS client asks for, read from
//! the first bytes of a connection without terminating it (HAProxy's
//! `req.ssl_sni`).
//!
//! Pure and total: any input gives an answer, never a panic, and reads no
//! byte past what it was given. A ClientHello split over several records is
//! not reassembled (clients send it in one).

use std::ops::Range;

/// What the first bytes of a connection say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peek {
    /// Not enough bytes yet: at most this many more are needed to decide.
    NeedMore(usize),
    /// Not a TLS ClientHello.
    NotTls,
    /// A ClientHello, with its server name if it sent one.
    Hello {
        /// The SNI host name (ASCII, lowercased).
        sni: Option<String>,
    },
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize)
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// Reads the server name from the first record of a connection.
pub fn peek(data: &[u8]) -> Peek {
    match record(data) {
        Ok(body) => match hello(body) {
            Some(name) => Peek::Hello {
                sni: name.map(|n| String::from_utf8_lossy(n).to_ascii_lowercase()),
            },
            None => Peek::NotTls,
        },
        Err(p) => p,
    }
}

/// Where the server name lies in `data`, a connection's first record whole
/// (as `parsers.tlsRecords()` frames it): `None` when it is no ClientHello
/// or names no server. The bytes are as sent (not lowercased).
pub fn sni_range(data: &[u8]) -> Option<Range<usize>> {
    let name = hello(record(data).ok()?)??;
    // `name` is a subslice of `data`: its offset is the distance between their starts.
    let start = name.as_ptr() as usize - data.as_ptr() as usize;
    Some(start..start + name.len())
}

/// The body of the handshake record `data` starts with, or what `peek` answers.
fn record(data: &[u8]) -> Result<&[u8], Peek> {
    if data.len() < 5 {
        // A handshake record starts 0x16 0x03: refuse early what cannot be one.
        if data.first().is_some_and(|&b| b != 0x16) || data.get(1).is_some_and(|&b| b != 0x03) {
            return Err(Peek::NotTls);
        }
        return Err(Peek::NeedMore(5 - data.len()));
    }
    let mut r = Reader(data);
    let header = r.take(5).unwrap_or_default();
    if header[0] != 0x16 || header[1] != 0x03 {
        return Err(Peek::NotTls);
    }
    let len = u16::from_be_bytes([header[3], header[4]]) as usize;
    if len == 0 || len > 16384 + 2048 {
        return Err(Peek::NotTls);
    }
    r.take(len)
        .ok_or_else(|| Peek::NeedMore(5 + len - data.len()))
}

/// The server name of a ClientHello handshake message (`Some(None)`: none
/// sent); `None` when it is not a well-formed ClientHello.
fn hello(body: &[u8]) -> Option<Option<&[u8]>> {
    let mut r = Reader(body);
    if r.u8()? != 1 {
        return None;
    }
    let len = r.u24()?;
    // A ClientHello longer than its record continues in the next one: read what this record has.
    let mut r = Reader(r.take(len).unwrap_or(r.0));
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    if r.0.is_empty() {
        return Some(None);
    }
    let mut ext = Reader(r.vec16()?);
    while !ext.0.is_empty() {
        let kind = ext.u16()?;
        let data = ext.vec16()?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(Reader(data).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type == 0 {
                if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
                    return None;
                }
                return Some(Some(name));
            }
        }
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::{peek, sni_range, Peek};
    use crate::tls::{ClientOptions, ClientTls};

    /// The first flight of a real rustls client for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let tls = ClientTls::new(&ClientOptions {
            server_name: name.into(),
            insecure: true,
            ..ClientOptions::default()
        })
        .expect("client config");
        let mut conn =
            rustls::ClientConnection::new(tls.config.clone(), tls.name.clone()).expect("client");
        let mut out = Vec::new();
        conn.write_tls(&mut out).expect("write_tls");
        out
    }

    #[test]
    fn reads_the_server_name_of_a_real_client_hello() {
        let hello = client_hello("Api.Example.COM");
        assert_eq!(
            peek(&hello),
            Peek::Hello {
                sni: Some("api.example.com".into())
            }
        );
        // An IP address is never sent as SNI.
        assert_eq!(peek(&client_hello("127.0.0.1")), Peek::Hello { sni: None });
        let r = sni_range(&hello).expect("a name");
        assert_eq!(&hello[r], b"Api.Example.COM");
        assert_eq!(sni_range(&client_hello("127.0.0.1")), None);
        assert_eq!(sni_range(&hello[..hello.len() - 1]), None);
        assert_eq!(sni_range(b"GET / HTTP/1.1\r\n\r\n"), None);
    }

    #[test]
    fn asks_for_exactly_what_is_missing() {
        let hello = client_hello("a.test");
        for cut in 0..hello.len() {
            match peek(&hello[..cut]) {
                Peek::NeedMore(n) => {
                    assert_eq!(cut + n, if cut < 5 { 5 } else { hello.len() }, "cut {cut}")
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_client_hello() {
        assert_eq!(peek(b"GET / HTTP/1.1\r\n\r\n"), Peek::NotTls);
        assert_eq!(peek(b"G"), Peek::NotTls);
        assert_eq!(peek(&[0x16, 0x03, 0x01, 0x00, 0x00]), Peek::NotTls);
        // A handshake record holding a ServerHello (type 2), not a ClientHello.
        assert_eq!(
            peek(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]),
            Peek::NotTls
        );
        // A ClientHello whose extensions overrun their length.
        let mut hello = client_hello("a.test");
        let n = hello.len();
        hello[n - 1] = 0xff;
        hello.truncate(n - 3);
        let len = (hello.len() - 5) as u16;
        hello[3..5].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(peek(&hello), Peek::NotTls | Peek::Hello { .. }));
    }
}
