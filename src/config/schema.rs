//! The key schema of `fila.toml`, read from the serde definitions themselves: the sections and
//! the keys each accepts. Used to report unknown keys with the valid ones, and by the test that
//! checks `docs/configuration.md` against the parser.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::sections::{
    AuthSection, FileConfig, LuaSection, SchedulerSection, ServerSection, StorageSection,
    TelemetrySection, TlsSection,
};

/// The section that accepts any key (and is ignored with a warning).
pub const OPEN_SECTION: &str = "cluster";

/// The top-level sections, in file order.
pub fn sections() -> &'static [&'static str] {
    fields_of::<FileConfig>()
}

/// The keys a section accepts; `None` for an unknown section or the open `[cluster]` section.
pub fn section_keys(section: &str) -> Option<&'static [&'static str]> {
    match section {
        "server" => Some(fields_of::<ServerSection>()),
        "scheduler" => Some(fields_of::<SchedulerSection>()),
        "lua" => Some(fields_of::<LuaSection>()),
        "telemetry" => Some(fields_of::<TelemetrySection>()),
        "storage" => Some(fields_of::<StorageSection>()),
        "tls" => Some(fields_of::<TlsSection>()),
        "auth" => Some(fields_of::<AuthSection>()),
        _ => None,
    }
}

/// Every `section.key` the parser accepts (the open section excluded).
pub fn all_keys() -> Vec<String> {
    sections()
        .iter()
        .filter_map(|section| section_keys(section).map(|keys| (section, keys)))
        .flat_map(|(section, keys)| keys.iter().map(move |key| format!("{section}.{key}")))
        .collect()
}

/// The field names serde's derive generated for `T`: it passes them to `deserialize_struct`,
/// which this probe records instead of deserializing anything.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(FieldProbe) {
        Err(ProbeResult::Fields(fields)) => fields,
        _ => &[],
    }
}

struct FieldProbe;

#[derive(Debug)]
enum ProbeResult {
    Fields(&'static [&'static str]),
    NotAStruct,
}

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for ProbeResult {}

impl de::Error for ProbeResult {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        ProbeResult::NotAStruct
    }
}

impl<'de> de::Deserializer<'de> for FieldProbe {
    type Error = ProbeResult;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(ProbeResult::NotAStruct)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(ProbeResult::Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_lists_sections_and_keys() {
        assert_eq!(
            sections(),
            [
                "server",
                "scheduler",
                "lua",
                "telemetry",
                "storage",
                "tls",
                "auth",
                "cluster"
            ]
        );
        assert!(section_keys("server").unwrap().contains(&"listen_addr"));
        assert_eq!(section_keys(OPEN_SECTION), None);
        assert!(all_keys().contains(&"storage.durability".to_owned()));
    }
}
