//! Reading one `fila.toml`: TOML syntax, unknown sections and keys (checked against the schema
//! before typed parsing so the error can list the valid keys), then typed values. Every error
//! carries the file and the 1-based line, computed from toml's byte spans.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::ConfigError;
use super::schema;
use super::sections::FileConfig;

/// Parses the text of the config file at `path` (the path is used in messages only).
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let root = DeTable::parse(text).map_err(|error| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: line_of(text, error.span()),
        message: error.message().to_owned(),
    })?;
    let entries = check_keys(path, text, root.get_ref())?;
    FileConfig::deserialize(toml::de::Deserializer::from(root)).map_err(|error| {
        let span = error.span();
        ConfigError::Value {
            path: path.to_path_buf(),
            line: line_of(text, span.clone()),
            key: key_at(&entries, span).unwrap_or_else(|| "(file)".to_owned()),
            message: error.message().to_owned(),
        }
    })
}

/// A `section.key` with the spans of its key and value, for naming the key of a value error.
struct Entry {
    path: String,
    span: Range<usize>,
}

/// Rejects unknown sections and keys; returns every known entry for error reporting.
fn check_keys(path: &Path, text: &str, root: &DeTable<'_>) -> Result<Vec<Entry>, ConfigError> {
    let mut entries = Vec::new();
    for (section, value) in root.iter() {
        let name = section.get_ref().as_ref();
        if !schema::sections().contains(&name) {
            return Err(ConfigError::UnknownSection {
                path: path.to_path_buf(),
                line: line_of(text, Some(section.span())),
                section: name.to_owned(),
                valid: schema::sections().join(", "),
            });
        }
        entries.push(Entry {
            path: name.to_owned(),
            span: span_of(section, value),
        });
        let (Some(keys), DeValue::Table(table)) = (schema::section_keys(name), value.get_ref())
        else {
            // The open section (`schema::OPEN_SECTION`) takes anything; a section that is not a
            // table is a type error that typed parsing reports with its line.
            continue;
        };
        for (key, value) in table.iter() {
            let key_name = key.get_ref().as_ref();
            if !keys.contains(&key_name) {
                return Err(ConfigError::UnknownKey {
                    path: path.to_path_buf(),
                    line: line_of(text, Some(key.span())),
                    section: name.to_owned(),
                    key: key_name.to_owned(),
                    valid: keys.join(", "),
                });
            }
            entries.push(Entry {
                path: format!("{name}.{key_name}"),
                span: span_of(key, value),
            });
        }
    }
    Ok(entries)
}

/// The smallest range covering a key and its value.
fn span_of<K, V>(key: &Spanned<K>, value: &Spanned<V>) -> Range<usize> {
    let (key, value) = (key.span(), value.span());
    key.start.min(value.start)..key.end.max(value.end)
}

/// The most specific entry whose key or value contains the start of `span`.
fn key_at(entries: &[Entry], span: Option<Range<usize>>) -> Option<String> {
    let offset = span?.start;
    entries
        .iter()
        .filter(|entry| entry.span.contains(&offset))
        .min_by_key(|entry| entry.span.len())
        .map(|entry| entry.path.clone())
}

/// The 1-based line of the start of `span` (line 1 when toml gave no span).
fn line_of(text: &str, span: Option<Range<usize>>) -> usize {
    let offset = span.map_or(0, |span| span.start);
    let before = text.get(..offset).unwrap_or(text);
    before.bytes().filter(|byte| *byte == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sections::Durability;

    fn check(text: &str) -> Result<FileConfig, String> {
        parse(Path::new("/etc/fila/fila.toml"), text).map_err(|error| error.to_string())
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(check("").unwrap(), FileConfig::default());
    }

    #[test]
    fn values_are_read() {
        let config = check(
            "[server]\nlisten_addr = \"127.0.0.1:7000\"\nshards = 3\n\n[storage]\ndurability = \"fsync\"\n",
        )
        .unwrap();
        assert_eq!(config.server.listen_addr.0.port(), 7000);
        assert_eq!(config.server.shards.map(|shards| shards.get()), Some(3));
        assert_eq!(config.storage.durability, Durability::Fsync);
    }

    #[test]
    fn dotted_keys_work_like_sections() {
        let config = check("scheduler.quantum = 7\n").unwrap();
        assert_eq!(config.scheduler.quantum.get(), 7);
    }

    #[test]
    fn errors_name_file_key_and_line() {
        let cases = [
            (
                "[server]\nlisten_addr = \n",
                "/etc/fila/fila.toml, line 2: not valid TOML",
            ),
            (
                "[server]\n\nbogus = 1\n",
                "/etc/fila/fila.toml, line 3: unknown key `server.bogus`; valid keys in [server]: \
                 listen_addr, shards, pin_cores,",
            ),
            (
                "\n[nope]\n",
                "/etc/fila/fila.toml, line 2: unknown section `nope`; valid sections: server,",
            ),
            (
                "[scheduler]\nquantum = 0\n",
                "/etc/fila/fila.toml, line 2: bad value for `scheduler.quantum`: must be at least 1, got 0",
            ),
            (
                "[storage]\n\ndurability = \"sometimes\"\n",
                "/etc/fila/fila.toml, line 3: bad value for `storage.durability`: unknown variant `sometimes`, expected one of `process`, `fsync`, `none`",
            ),
            (
                "[server]\nlisten_addr = \"nonsense\"\n",
                "/etc/fila/fila.toml, line 2: bad value for `server.listen_addr`: `nonsense` is not a usable address",
            ),
            (
                "[lua]\ndefault_timeout_ms = \"ten\"\n",
                "/etc/fila/fila.toml, line 2: bad value for `lua.default_timeout_ms`: invalid type: string \"ten\"",
            ),
            (
                "server = 5\n",
                "/etc/fila/fila.toml, line 1: bad value for `server`: invalid type: integer",
            ),
            (
                "[server]\nshards = 0\n",
                "line 2: bad value for `server.shards`: must be between 1 and 1024",
            ),
        ];
        for (text, expected) in cases {
            let message = check(text).unwrap_err();
            assert!(
                message.contains(expected),
                "for {text:?}: got {message:?}, want {expected:?}"
            );
        }
    }

    #[test]
    fn cluster_accepts_anything() {
        let config = check("[cluster]\nnode_id = 3\npeers = [\"a\", \"b\"]\n").unwrap();
        assert_eq!(config.cluster.unwrap().len(), 2);
    }

    #[test]
    fn tls_and_auth_are_parsed_when_present() {
        let config =
            check("[tls]\ncert_file = \"c.pem\"\n[auth]\nbootstrap_apikey = \"k\"\n").unwrap();
        assert!(config.tls.is_some());
        assert_eq!(config.auth.unwrap().bootstrap_apikey.as_deref(), Some("k"));
        assert_eq!(check("[tls]\n").unwrap().tls, Some(Default::default()));
    }
}
