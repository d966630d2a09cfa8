//! Encoding primitives of §4: integers, `bool`, `string`, `bytes`, `map`, `string[]`,
//! `optional<string>` and list counts, with bounds checks on every read.
//!
//! This file owns the byte-level rules (big-endian, length prefixes, count limits, UTF-8);
//! it knows nothing about opcodes or bodies. Reads never index out of bounds and never
//! allocate for a count before checking it against the bytes that remain and a named limit.
//! Strings and payloads are zero-copy slices of the body they were read from.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::{DecodeError, EncodeError};
use crate::limits::{LIST_ITEMS_MAX, SHORT_LIST_ITEMS_MAX, STRING_BYTES_MAX};

/// A `map`: string pairs in wire order. Order carries no meaning; on duplicate keys the
/// last entry wins (see [`map_last_wins`]).
pub type StringMap = Vec<(ByteString, ByteString)>;

/// Collapses a wire map into a sorted map, the last of duplicate keys winning (§4).
pub fn map_last_wins(
    map: &[(ByteString, ByteString)],
) -> std::collections::BTreeMap<ByteString, ByteString> {
    map.iter().cloned().collect()
}

/// Smallest encoded size of a `string` (an empty one).
pub(crate) const STRING_BYTES_MIN: usize = 2;
/// Smallest encoded size of a `bytes` field.
pub(crate) const BYTES_BYTES_MIN: usize = 4;
/// Smallest encoded size of a `map` or `string[]` (no entries).
pub(crate) const SHORT_LIST_BYTES_MIN: usize = 2;

/// A cursor over one body. Every read checks the remaining length first.
pub(crate) struct Reader<'a> {
    body: &'a Bytes,
    position: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `body`.
    #[inline]
    pub(crate) fn new(body: &'a Bytes) -> Self {
        Reader { body, position: 0 }
    }

    /// Bytes not read yet.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.body.len().saturating_sub(self.position)
    }

    #[inline]
    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let end = self.position.saturating_add(N);
        let array = self
            .body
            .get(self.position..end)
            .and_then(|slice| <[u8; N]>::try_from(slice).ok())
            .ok_or(DecodeError::Truncated {
                field,
                needed: N,
                remaining: self.remaining(),
            })?;
        self.position = end;
        Ok(array)
    }

    #[inline]
    fn take_bytes(&mut self, length: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        if length > self.remaining() {
            return Err(DecodeError::Truncated {
                field,
                needed: length,
                remaining: self.remaining(),
            });
        }
        let start = self.position;
        self.position += length;
        if length == 0 {
            return Ok(Bytes::new());
        }
        Ok(self.body.slice(start..self.position))
    }

    /// A `u8`.
    #[inline]
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        let [byte] = self.take::<1>(field)?;
        Ok(byte)
    }

    /// A big-endian `u16`.
    #[inline]
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.take::<2>(field).map(u16::from_be_bytes)
    }

    /// A big-endian `u32`.
    #[inline]
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.take::<4>(field).map(u32::from_be_bytes)
    }

    /// A big-endian `u64`.
    #[inline]
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.take::<8>(field).map(u64::from_be_bytes)
    }

    /// A big-endian two's-complement `i64`.
    #[inline]
    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        self.take::<8>(field).map(i64::from_be_bytes)
    }

    /// A big-endian IEEE 754 `f64`.
    #[inline]
    pub(crate) fn f64(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        self.take::<8>(field).map(f64::from_be_bytes)
    }

    /// A `bool`: any non-zero byte is true (§4).
    #[inline]
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        Ok(self.u8(field)? != 0)
    }

    /// An error code byte; unknown codes become `InternalError`.
    #[inline]
    pub(crate) fn error_code(
        &mut self,
        field: &'static str,
    ) -> Result<crate::ErrorCode, DecodeError> {
        self.u8(field).map(crate::ErrorCode::from_u8)
    }

    /// A `string`: `u16` length, then UTF-8 bytes, sliced from the body without copying.
    #[inline]
    pub(crate) fn string(&mut self, field: &'static str) -> Result<ByteString, DecodeError> {
        let length = usize::from(self.u16(field)?);
        let bytes = self.take_bytes(length, field)?;
        ByteString::try_from(bytes).map_err(|source| DecodeError::InvalidUtf8 { field, source })
    }

    /// A `bytes` field: `u32` length, then raw bytes, sliced from the body without copying.
    #[inline]
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let length = self.u32(field)?;
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        self.take_bytes(length, field)
    }

    /// An `optional<string>`: presence byte (non-zero = present), then the string.
    #[inline]
    pub(crate) fn optional_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<ByteString>, DecodeError> {
        if self.bool(field)? {
            self.string(field).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A `map`: `u16` count, then key/value string pairs.
    pub(crate) fn map(&mut self, field: &'static str) -> Result<StringMap, DecodeError> {
        let count = self.count_u16(field, 2 * STRING_BYTES_MIN)?;
        let mut map = Vec::with_capacity(count);
        for _ in 0..count {
            let key = self.string(field)?;
            let value = self.string(field)?;
            map.push((key, value));
        }
        Ok(map)
    }

    /// A `string[]`: `u16` count, then strings.
    pub(crate) fn string_list(
        &mut self,
        field: &'static str,
    ) -> Result<Vec<ByteString>, DecodeError> {
        let count = self.count_u16(field, STRING_BYTES_MIN)?;
        let mut list = Vec::with_capacity(count);
        for _ in 0..count {
            list.push(self.string(field)?);
        }
        Ok(list)
    }

    /// A `u32` list count, checked against [`LIST_ITEMS_MAX`] and against the bytes left
    /// (each record takes at least `record_bytes_min`), so the caller may allocate `count`.
    #[inline]
    pub(crate) fn count_u32(
        &mut self,
        field: &'static str,
        record_bytes_min: usize,
    ) -> Result<usize, DecodeError> {
        let count = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        if count > LIST_ITEMS_MAX {
            return Err(DecodeError::CountTooLarge {
                field,
                count,
                max: LIST_ITEMS_MAX,
            });
        }
        self.check_fits(field, count, record_bytes_min)
    }

    /// A `u16` list count, checked against the bytes left like [`Reader::count_u32`].
    #[inline]
    pub(crate) fn count_u16(
        &mut self,
        field: &'static str,
        record_bytes_min: usize,
    ) -> Result<usize, DecodeError> {
        let count = usize::from(self.u16(field)?);
        self.check_fits(field, count, record_bytes_min)
    }

    #[inline]
    fn check_fits(
        &self,
        field: &'static str,
        count: usize,
        record_bytes_min: usize,
    ) -> Result<usize, DecodeError> {
        let needed = count.saturating_mul(record_bytes_min);
        if needed > self.remaining() {
            return Err(DecodeError::CountExceedsRemaining {
                field,
                count,
                needed,
                remaining: self.remaining(),
            });
        }
        Ok(count)
    }
}

/// Encoded size of a `string`.
#[inline]
pub(crate) fn string_len(value: &str) -> usize {
    2 + value.len()
}

/// Encoded size of a `bytes` field.
#[inline]
pub(crate) fn bytes_len(value: &[u8]) -> usize {
    4 + value.len()
}

/// Encoded size of an `optional<string>`.
#[inline]
pub(crate) fn optional_string_len(value: Option<&ByteString>) -> usize {
    1 + value.map_or(0, |value| string_len(value))
}

/// Encoded size of a `map`.
#[inline]
pub(crate) fn map_len(map: &[(ByteString, ByteString)]) -> usize {
    2 + map
        .iter()
        .map(|(key, value)| string_len(key) + string_len(value))
        .sum::<usize>()
}

/// Encoded size of a `string[]`.
#[inline]
pub(crate) fn string_list_len(list: &[ByteString]) -> usize {
    2 + list.iter().map(|item| string_len(item)).sum::<usize>()
}

/// Writes a `string`, refusing one over 65,535 bytes.
#[inline]
pub(crate) fn put_string(
    out: &mut BytesMut,
    field: &'static str,
    value: &str,
) -> Result<(), EncodeError> {
    let length = u16::try_from(value.len()).map_err(|_| EncodeError::StringTooLong {
        field,
        length: value.len(),
        max: STRING_BYTES_MAX,
    })?;
    out.put_u16(length);
    out.put_slice(value.as_bytes());
    Ok(())
}

/// Writes a `bytes` field. Anything over 4 GiB could never fit a frame.
#[inline]
pub(crate) fn put_bytes(out: &mut BytesMut, value: &[u8]) -> Result<(), EncodeError> {
    let length = u32::try_from(value.len()).map_err(|_| EncodeError::FrameTooLarge {
        length: value.len(),
        max: crate::limits::FRAME_BYTES_MAX,
    })?;
    out.put_u32(length);
    out.put_slice(value);
    Ok(())
}

/// Writes a `bool` as `0x00` or `0x01`.
#[inline]
pub(crate) fn put_bool(out: &mut BytesMut, value: bool) {
    out.put_u8(u8::from(value));
}

/// Writes an `optional<string>`.
#[inline]
pub(crate) fn put_optional_string(
    out: &mut BytesMut,
    field: &'static str,
    value: Option<&ByteString>,
) -> Result<(), EncodeError> {
    match value {
        None => {
            out.put_u8(0);
            Ok(())
        }
        Some(value) => {
            out.put_u8(1);
            put_string(out, field, value)
        }
    }
}

/// Writes a `u16` list count, refusing more than 65,535 entries.
#[inline]
pub(crate) fn put_count_u16(
    out: &mut BytesMut,
    field: &'static str,
    count: usize,
) -> Result<(), EncodeError> {
    let count = u16::try_from(count).map_err(|_| EncodeError::ListTooLong {
        field,
        count,
        max: SHORT_LIST_ITEMS_MAX,
    })?;
    out.put_u16(count);
    Ok(())
}

/// Writes a `u32` list count, refusing more than [`LIST_ITEMS_MAX`] entries (what decoders accept).
#[inline]
pub(crate) fn put_count_u32(
    out: &mut BytesMut,
    field: &'static str,
    count: usize,
) -> Result<(), EncodeError> {
    let checked = u32::try_from(count)
        .ok()
        .filter(|_| count <= LIST_ITEMS_MAX)
        .ok_or(EncodeError::ListTooLong {
            field,
            count,
            max: LIST_ITEMS_MAX,
        })?;
    out.put_u32(checked);
    Ok(())
}

/// Writes a `map`.
#[inline]
pub(crate) fn put_map(
    out: &mut BytesMut,
    field: &'static str,
    map: &[(ByteString, ByteString)],
) -> Result<(), EncodeError> {
    put_count_u16(out, field, map.len())?;
    for (key, value) in map {
        put_string(out, field, key)?;
        put_string(out, field, value)?;
    }
    Ok(())
}

/// Writes a `string[]`.
#[inline]
pub(crate) fn put_string_list(
    out: &mut BytesMut,
    field: &'static str,
    list: &[ByteString],
) -> Result<(), EncodeError> {
    put_count_u16(out, field, list.len())?;
    for item in list {
        put_string(out, field, item)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_over(bytes: &[u8]) -> Bytes {
        Bytes::copy_from_slice(bytes)
    }

    #[test]
    fn integers_are_big_endian() {
        let body = reader_over(&[
            0x01, 0x02, 0x00, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd,
        ]);
        let mut reader = Reader::new(&body);
        assert_eq!(reader.u16("a").unwrap(), 0x0102);
        assert_eq!(reader.u32("b").unwrap(), 0x0000_0100);
        assert_eq!(reader.i64("c").unwrap(), -3);
        assert_eq!(reader.remaining(), 0);
        assert!(matches!(
            reader.u8("d"),
            Err(DecodeError::Truncated {
                needed: 1,
                remaining: 0,
                ..
            })
        ));
    }

    #[test]
    fn f64_uses_the_ieee_bit_pattern() {
        let mut out = BytesMut::new();
        out.put_f64(7.5);
        assert_eq!(&out[..], &[0x40, 0x1e, 0, 0, 0, 0, 0, 0]);
        let body = out.freeze();
        assert_eq!(Reader::new(&body).f64("x").unwrap(), 7.5);
    }

    #[test]
    fn bool_and_presence_treat_any_non_zero_as_true() {
        let body = reader_over(&[0x00, 0x01, 0x7f, 0x02, 0x00, 0x01, b'x']);
        let mut reader = Reader::new(&body);
        assert!(!reader.bool("a").unwrap());
        assert!(reader.bool("b").unwrap());
        assert!(reader.bool("c").unwrap());
        assert_eq!(reader.optional_string("d").unwrap().as_deref(), Some("x"));
    }

    #[test]
    fn string_round_trips_and_is_zero_copy() {
        let mut out = BytesMut::new();
        put_string(&mut out, "s", "héllo").unwrap();
        assert_eq!(out.len(), string_len("héllo"));
        let body = out.freeze();
        let text = Reader::new(&body).string("s").unwrap();
        assert_eq!(text, "héllo");
        // The string points into the body, not into a copy.
        assert_eq!(text.as_bytes().as_ptr(), body[2..].as_ptr());
    }

    #[test]
    fn string_rejects_invalid_utf8_and_truncation() {
        let body = reader_over(&[0x00, 0x02, 0xc3, 0x28]);
        assert!(matches!(
            Reader::new(&body).string("s"),
            Err(DecodeError::InvalidUtf8 { field: "s", .. })
        ));
        let body = reader_over(&[0x00, 0x05, b'a']);
        assert!(matches!(
            Reader::new(&body).string("s"),
            Err(DecodeError::Truncated {
                needed: 5,
                remaining: 1,
                ..
            })
        ));
    }

    #[test]
    fn string_over_u16_is_an_encode_error_and_writes_nothing_usable() {
        let long = "x".repeat(STRING_BYTES_MAX + 1);
        let mut out = BytesMut::new();
        assert_eq!(
            put_string(&mut out, "s", &long),
            Err(EncodeError::StringTooLong {
                field: "s",
                length: STRING_BYTES_MAX + 1,
                max: STRING_BYTES_MAX
            })
        );
        assert!(out.is_empty());
        put_string(&mut out, "s", &long[..STRING_BYTES_MAX]).unwrap();
        assert_eq!(out.len(), 2 + STRING_BYTES_MAX);
    }

    #[test]
    fn bytes_round_trip_and_truncation() {
        let mut out = BytesMut::new();
        put_bytes(&mut out, &[1, 2, 3]).unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 3, 1, 2, 3]);
        let body = out.freeze();
        assert_eq!(&Reader::new(&body).bytes("p").unwrap()[..], &[1, 2, 3]);
        let body = reader_over(&[0xff, 0xff, 0xff, 0xff, 1]);
        assert!(matches!(
            Reader::new(&body).bytes("p"),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn map_and_string_list_round_trip() {
        let map: StringMap = vec![("a".into(), "1".into()), ("b".into(), "".into())];
        let list: Vec<ByteString> = vec!["x".into(), "yz".into()];
        let mut out = BytesMut::new();
        put_map(&mut out, "m", &map).unwrap();
        put_string_list(&mut out, "l", &list).unwrap();
        assert_eq!(out.len(), map_len(&map) + string_list_len(&list));
        let body = out.freeze();
        let mut reader = Reader::new(&body);
        assert_eq!(reader.map("m").unwrap(), map);
        assert_eq!(reader.string_list("l").unwrap(), list);
    }

    #[test]
    fn map_duplicates_last_wins() {
        let map: StringMap = vec![("k".into(), "old".into()), ("k".into(), "new".into())];
        let collapsed = map_last_wins(&map);
        assert_eq!(collapsed.len(), 1);
        assert_eq!(collapsed.get("k").map(|v| &**v), Some("new"));
    }

    #[test]
    fn huge_counts_with_few_bytes_are_rejected_before_allocating() {
        let body = reader_over(&[0xff, 0xff, 0, 0]);
        assert!(matches!(
            Reader::new(&body).map("m"),
            Err(DecodeError::CountExceedsRemaining { count: 65535, .. })
        ));
        let body = reader_over(&[0x00, 0x0f, 0x42, 0x41]);
        assert!(matches!(
            Reader::new(&body).count_u32("c", 1),
            Err(DecodeError::CountTooLarge {
                count: 1_000_001,
                ..
            })
        ));
        let body = reader_over(&[0x00, 0x0f, 0x42, 0x40]);
        assert!(matches!(
            Reader::new(&body).count_u32("c", 1),
            Err(DecodeError::CountExceedsRemaining {
                count: 1_000_000,
                ..
            })
        ));
    }

    #[test]
    fn counts_over_the_field_are_encode_errors() {
        let mut out = BytesMut::new();
        assert!(matches!(
            put_count_u16(&mut out, "l", 65_536),
            Err(EncodeError::ListTooLong {
                count: 65_536,
                max: 65_535,
                ..
            })
        ));
        assert!(matches!(
            put_count_u32(&mut out, "l", LIST_ITEMS_MAX + 1),
            Err(EncodeError::ListTooLong { .. })
        ));
        assert!(out.is_empty());
        put_count_u32(&mut out, "l", LIST_ITEMS_MAX).unwrap();
        assert_eq!(out.len(), 4);
    }
}
