//! The small versioned binary formats of stored values: message, lease and queue records.
//!
//! Layout: one version byte, then fixed-width big-endian integers and length-prefixed (u32)
//! byte strings. Decoding checks every length against the remaining input and fails with a
//! reason instead of panicking, so a corrupt record becomes `StorageError::Corrupt`.

/// Version byte of every record this code writes.
pub const RECORD_VERSION: u8 = 1;

/// Appends primitives to a buffer.
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer with `capacity` bytes reserved, starting with the version byte.
    pub fn new(capacity: usize) -> Writer {
        let mut buf = Vec::with_capacity(capacity + 1);
        buf.push(RECORD_VERSION);
        Writer { buf }
    }

    /// A u8.
    pub fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    /// A big-endian u32.
    pub fn u32(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    /// A big-endian u64.
    pub fn u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    /// Raw fixed-width bytes.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// A u32 length then the bytes. Lengths are bounded by the shard's limits (< 4 GiB).
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(bytes);
    }

    /// A string as bytes.
    pub fn str(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    /// An optional string: a presence byte, then the string.
    pub fn opt_str(&mut self, text: Option<&str>) {
        match text {
            Some(text) => {
                self.u8(1);
                self.str(text);
            }
            None => self.u8(0),
        }
    }

    /// The encoded record.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads primitives from a record, failing with a reason.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `record`, checking its version byte.
    pub fn new(record: &'a [u8]) -> Result<Reader<'a>, String> {
        let mut reader = Reader { rest: record };
        let version = reader.u8()?;
        if version != RECORD_VERSION {
            return Err(format!("unknown record version {version}"));
        }
        Ok(reader)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!(
                "truncated: needed {n} bytes, {} left",
                self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// A u8.
    pub fn u8(&mut self) -> Result<u8, String> {
        let (first, tail) = self
            .rest
            .split_first()
            .ok_or_else(|| "truncated: needed 1 byte".to_string())?;
        self.rest = tail;
        Ok(*first)
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, String> {
        let bytes = self.fixed::<4>()?;
        Ok(u32::from_be_bytes(bytes))
    }

    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, String> {
        let bytes = self.fixed::<8>()?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// `N` raw bytes.
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        bytes
            .try_into()
            .map_err(|_| "internal length mismatch".to_string())
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str, String> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|err| format!("invalid UTF-8: {err}"))
    }

    /// An optional string.
    pub fn opt_str(&mut self) -> Result<Option<&'a str>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            other => Err(format!("bad presence byte {other}")),
        }
    }

    /// A count that must be at most `max`.
    pub fn count(&mut self, max: usize, what: &str) -> Result<usize, String> {
        let count = self.u32()? as usize;
        if count > max {
            return Err(format!("{what} count {count} exceeds {max}"));
        }
        Ok(count)
    }

    /// Fails unless every byte was consumed.
    pub fn end(self) -> Result<(), String> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.rest.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip_and_truncation_is_an_error() {
        let mut w = Writer::new(0);
        w.u32(7);
        w.u64(9);
        w.str("héllo");
        w.opt_str(None);
        w.opt_str(Some("x"));
        let buf = w.finish();
        let mut r = Reader::new(&buf).unwrap();
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.u64().unwrap(), 9);
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(r.opt_str().unwrap(), None);
        assert_eq!(r.opt_str().unwrap(), Some("x"));
        r.end().unwrap();
        for cut in 0..buf.len() {
            let attempt = Reader::new(&buf[..cut]).and_then(|mut r| {
                r.u32()?;
                r.u64()?;
                r.str()?;
                r.opt_str()?;
                r.opt_str()?;
                r.end()
            });
            assert!(attempt.is_err(), "cut at {cut}");
        }
        assert!(Reader::new(&[9]).is_err());
    }
}
