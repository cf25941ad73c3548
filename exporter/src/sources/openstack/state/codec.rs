//! Byte-level encoding of the state files: fixed-width little-endian numbers, floats as
//! their bits (exact), LEB128 varints for counts and indexes, length-prefixed UTF-8 strings.
//! Decoding never panics: a short or malformed input is an error naming its byte offset.

use super::super::compact::ServerId;

/// What could not be decoded, and where (byte offset in the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {what}")]
pub struct DecodeError {
    pub offset: u64,
    pub what: String,
}

/// An output buffer.
#[derive(Debug, Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    pub fn var(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
    pub fn len(&mut self, n: usize) {
        self.var(n as u64);
    }
    pub fn str(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }
    pub fn id(&mut self, id: &ServerId) {
        match id {
            ServerId::Uuid(b) => {
                self.u8(0);
                self.buf.extend_from_slice(b);
            }
            ServerId::Other(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
}

/// A reader over `buf`, which starts at byte `base` of its file.
#[derive(Debug)]
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8], base: u64) -> Self {
        Self { buf, pos: 0, base }
    }

    /// The file offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// An error at the current offset.
    pub fn error(&self, what: impl Into<String>) -> DecodeError {
        DecodeError {
            offset: self.offset(),
            what: what.into(),
        }
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(self.error(format!("{what}: ends early")));
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn f64(&mut self, what: &str) -> Result<f64, DecodeError> {
        self.u64(what).map(f64::from_bits)
    }
    pub fn var(&mut self, what: &str) -> Result<u64, DecodeError> {
        let start = self.offset();
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError {
            offset: start,
            what: format!("{what}: number too long"),
        })
    }
    /// A varint that must fit a `u32` index.
    pub fn index(&mut self, what: &str) -> Result<u32, DecodeError> {
        let at = self.offset();
        let v = self.var(what)?;
        u32::try_from(v).map_err(|_| DecodeError {
            offset: at,
            what: format!("{what}: {v} out of range"),
        })
    }
    /// A count of items that each take at least one byte (bounded by what is left).
    pub fn count(&mut self, what: &str) -> Result<usize, DecodeError> {
        let at = self.offset();
        let v = self.var(what)?;
        match usize::try_from(v) {
            Ok(n) if n <= self.buf.len() - self.pos => Ok(n),
            _ => Err(DecodeError {
                offset: at,
                what: format!("{what}: count {v} exceeds the file"),
            }),
        }
    }
    pub fn str(&mut self, what: &str) -> Result<&'a str, DecodeError> {
        let n = self.count(what)?;
        let at = self.offset();
        let b = self.take(n, what)?;
        std::str::from_utf8(b).map_err(|_| DecodeError {
            offset: at,
            what: format!("{what}: not UTF-8"),
        })
    }
    pub fn id(&mut self, what: &str) -> Result<ServerId, DecodeError> {
        match self.u8(what)? {
            0 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(self.take(16, what)?);
                Ok(ServerId::Uuid(b))
            }
            1 => Ok(ServerId::Other(self.str(what)?.into())),
            t => Err(self.error(format!("{what}: unknown id kind {t}"))),
        }
    }
}

/// Zigzag: small signed steps as small unsigned numbers.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn numbers_round_trip_and_short_input_names_the_offset() {
        let mut e = Enc::default();
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            e.var(v);
        }
        e.f64(-0.0);
        e.str("é");
        e.id(&ServerId::new("0b4f8c2e-1111-4a2b-9c3d-000000000001"));
        e.id(&ServerId::new("s1"));
        let mut d = Dec::new(&e.buf, 100);
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(d.var("n").unwrap(), v);
        }
        assert_eq!(d.f64("f").unwrap().to_bits(), (-0.0f64).to_bits());
        assert_eq!(d.str("s").unwrap(), "é");
        assert_eq!(
            d.id("id").unwrap().to_text(),
            "0b4f8c2e-1111-4a2b-9c3d-000000000001"
        );
        assert_eq!(d.id("id").unwrap().to_text(), "s1");
        assert!(d.is_empty());
        let err = d.u32("tail").unwrap_err();
        assert_eq!(err.offset, 100 + e.buf.len() as u64);
        assert!(err.to_string().contains("tail: ends early"), "{err}");
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        let mut d = Dec::new(&[0xff; 11], 0);
        assert!(d.var("n").unwrap_err().to_string().contains("too long"));
        let mut d = Dec::new(&[0x05, b'a'], 0);
        assert!(d.str("s").unwrap_err().to_string().contains("exceeds"));
    }
}
