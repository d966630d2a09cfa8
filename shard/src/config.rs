//! Runtime configuration: the shard's own full copy of the key/value store (the server
//! broadcasts SetConfig to every shard), and the validation of `throttle.<key>` values.
//!
//! This module stores and validates the throttle limits and exposes them
//! ([`RuntimeConfig::throttle_limits`]); the buckets live in [`crate::throttle`].

use std::collections::BTreeMap;

use crate::limits::{CONFIG_KEY_BYTES_MAX, CONFIG_LIST_ENTRIES_MAX, CONFIG_VALUE_BYTES_MAX};

/// Prefix of throttle-limit keys.
pub const THROTTLE_PREFIX: &str = "throttle.";

/// A configured token-bucket limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleLimit {
    /// Tokens added per second.
    pub rate_per_second: f64,
    /// Bucket size.
    pub burst: f64,
}

/// Why a SetConfig was refused (nothing is stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidConfig {
    /// The empty key.
    #[error("a config key must not be empty")]
    EmptyKey,
    /// A key in the broker's reserved namespace.
    #[error("config keys starting with {prefix:?} are reserved for the broker")]
    Reserved {
        /// The reserved prefix.
        prefix: &'static str,
    },
    /// `throttle.` with nothing after the dot.
    #[error("throttle key name is empty: use throttle.<name>")]
    EmptyThrottleName,
    /// A throttle value that is not `"<rate>,<burst>"` with finite numbers ≥ 0.
    #[error(
        "invalid throttle value {value:?} for {key:?}: expected \"<rate_per_second>,<burst>\", two finite numbers >= 0"
    )]
    BadThrottleValue {
        /// The key.
        key: String,
        /// The refused value.
        value: String,
    },
    /// Key longer than the limit.
    #[error("config key is {len} bytes, the limit is {max}")]
    KeyTooLong {
        /// Length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Value longer than the limit.
    #[error("config value is {len} bytes, the limit is {max}")]
    ValueTooLong {
        /// Length.
        len: usize,
        /// Limit.
        max: usize,
    },
}

/// Parses `"<rate_per_second>,<burst>"`: two finite numbers ≥ 0, fractions allowed, whitespace
/// around each number trimmed.
pub fn parse_throttle_value(value: &str) -> Option<ThrottleLimit> {
    let (rate, burst) = value.split_once(',')?;
    let parse = |text: &str| -> Option<f64> {
        let number: f64 = text.trim().parse().ok()?;
        (number.is_finite() && number >= 0.0).then_some(number)
    };
    Some(ThrottleLimit {
        rate_per_second: parse(rate)?,
        burst: parse(burst)?,
    })
}

/// Keys the broker keeps for itself (never settable, never visible to Lua); the same prefix
/// as `lua::INTERNAL_CONFIG_PREFIX`.
pub const RESERVED_PREFIX: &str = "__fila.";

/// Checks a SetConfig before anything is stored. An empty value (a delete) is always valid.
pub fn validate(key: &str, value: &str) -> Result<(), InvalidConfig> {
    if key.is_empty() {
        return Err(InvalidConfig::EmptyKey);
    }
    if key.starts_with(RESERVED_PREFIX) {
        return Err(InvalidConfig::Reserved {
            prefix: RESERVED_PREFIX,
        });
    }
    if key.len() > CONFIG_KEY_BYTES_MAX {
        return Err(InvalidConfig::KeyTooLong {
            len: key.len(),
            max: CONFIG_KEY_BYTES_MAX,
        });
    }
    if value.len() > CONFIG_VALUE_BYTES_MAX {
        return Err(InvalidConfig::ValueTooLong {
            len: value.len(),
            max: CONFIG_VALUE_BYTES_MAX,
        });
    }
    if let Some(name) = key.strip_prefix(THROTTLE_PREFIX) {
        if name.is_empty() {
            return Err(InvalidConfig::EmptyThrottleName);
        }
        if !value.is_empty() && parse_throttle_value(value).is_none() {
            return Err(InvalidConfig::BadThrottleValue {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
    }
    Ok(())
}

/// The runtime key/value store of one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    entries: BTreeMap<String, String>,
}

impl RuntimeConfig {
    /// An empty store.
    pub fn new() -> RuntimeConfig {
        RuntimeConfig::default()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Sets (or, with an empty value, removes) a key without validation; callers validate.
    pub(crate) fn apply(&mut self, key: &str, value: &str) {
        if value.is_empty() {
            self.entries.remove(key);
        } else {
            self.entries.insert(key.to_string(), value.to_string());
        }
    }

    /// Entries whose key starts with `prefix`, in key order, at most
    /// [`CONFIG_LIST_ENTRIES_MAX`].
    pub fn list(&self, prefix: &str) -> Vec<(String, String)> {
        self.entries
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(CONFIG_LIST_ENTRIES_MAX)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// Every configured throttle limit, by throttle key, in key order.
    pub fn throttle_limits(&self) -> impl Iterator<Item = (&str, ThrottleLimit)> {
        self.entries
            .range::<str, _>((
                std::ops::Bound::Included(THROTTLE_PREFIX),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(THROTTLE_PREFIX))
            .filter_map(|(key, value)| {
                let name = key.strip_prefix(THROTTLE_PREFIX)?;
                Some((name, parse_throttle_value(value)?))
            })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, value: &str, ok: bool) {
        assert_eq!(validate(key, value).is_ok(), ok, "{key:?} = {value:?}");
    }

    #[test]
    fn throttle_values_are_validated_as_compat_says() {
        check("throttle.api", "10,100", true);
        check("throttle.api", "10.5, 0.25", true);
        check("throttle.api", "  0 ,  0  ", true);
        check("throttle.api", "", true);
        check("throttle.api", "10", false);
        check("throttle.api", "10,100,1", false);
        check("throttle.api", "-1,5", false);
        check("throttle.api", "1,-5", false);
        check("throttle.api", "inf,5", false);
        check("throttle.api", "NaN,5", false);
        check("throttle.api", "1e400,5", false);
        check("throttle.api", "abc,5", false);
        check("throttle.api", ",", false);
        check("throttle.", "1,1", false);
        check("other", "anything at all", true);
        check("throttle", "not a throttle key", true);
    }

    #[test]
    fn list_and_limits() {
        let mut config = RuntimeConfig::new();
        config.apply("throttle.b", "2,3");
        config.apply("throttle.a", " 1.5 ,4");
        config.apply("app.x", "y");
        assert_eq!(config.list("throttle.").len(), 2);
        assert_eq!(config.list("").len(), 3);
        assert_eq!(config.list("app").first().map(|e| e.1.as_str()), Some("y"));
        let limits: Vec<_> = config.throttle_limits().collect();
        assert_eq!(limits.len(), 2);
        assert_eq!(limits[0].0, "a");
        assert_eq!(limits[0].1.rate_per_second, 1.5);
        config.apply("app.x", "");
        assert_eq!(config.get("app.x"), None);
    }
}
