//! `Bounded<MIN, MAX>`: an integer setting checked against its allowed range while the file is
//! parsed, so a bad value is reported with the line of the value (toml attaches the span).

use serde::{Deserialize, Serialize};

/// An integer in `MIN..=MAX`. Deserializes from a TOML integer; anything outside the range is a
/// value error that names the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Bounded<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// Builds the value, or says why it is out of range.
    pub fn new(value: u64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&value) {
            Ok(Self(value))
        } else if MAX == u64::MAX {
            Err(format!("must be at least {MIN}, got {value}"))
        } else {
            Err(format!("must be between {MIN} and {MAX}, got {value}"))
        }
    }

    /// The value as `u64`.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The value as `usize` (saturating on 32-bit targets, where no limit here comes close).
    pub fn get_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// A compile-time-checked constant for defaults.
    pub const fn constant(value: u64) -> Self {
        assert!(value >= MIN && value <= MAX, "default out of range");
        Self(value)
    }
}

impl<const MIN: u64, const MAX: u64> TryFrom<u64> for Bounded<MIN, MAX> {
    type Error = String;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl<const MIN: u64, const MAX: u64> From<Bounded<MIN, MAX>> for u64 {
    fn from(value: Bounded<MIN, MAX>) -> u64 {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn range_is_inclusive_and_errors_name_it() {
        assert_eq!(Bounded::<1, 3>::new(1).unwrap().get(), 1);
        assert_eq!(Bounded::<1, 3>::new(3).unwrap().get(), 3);
        assert_eq!(
            Bounded::<1, 3>::new(0).unwrap_err(),
            "must be between 1 and 3, got 0"
        );
        assert_eq!(
            Bounded::<1, { u64::MAX }>::new(0).unwrap_err(),
            "must be at least 1, got 0"
        );
    }
}
