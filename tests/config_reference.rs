//! `docs/configuration.md` against the code: every key the parser accepts is documented and
//! every documented key is accepted; documented defaults equal the real defaults; documented
//! environment variables and flags are the ones the server reads and offers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeSet;

use fila::config::{AuthSection, ENV_VARS, FileConfig, TlsSection, schema};

fn doc() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap()
}

/// Rows of the Markdown table whose header starts with `| {first} |`: cells, trimmed.
fn table(doc: &str, first: &str) -> Vec<Vec<String>> {
    let header = format!("| {first} |");
    let mut lines = doc
        .lines()
        .skip_while(|line| !line.starts_with(&header))
        .skip(2);
    std::iter::from_fn(|| lines.next().filter(|line| line.starts_with('|')))
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The first `code` span of a cell.
fn code(cell: &str) -> Option<&str> {
    let start = cell.find('`')? + 1;
    let end = start + cell[start..].find('`')?;
    Some(&cell[start..end])
}

#[test]
fn documented_keys_are_exactly_the_parsed_keys() {
    let rows = table(&doc(), "key");
    let documented: BTreeSet<String> = rows
        .iter()
        .map(|row| code(&row[0]).unwrap().to_owned())
        .collect();
    let parsed: BTreeSet<String> = schema::all_keys().into_iter().collect();
    assert_eq!(
        documented.difference(&parsed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "documented but not parsed"
    );
    assert_eq!(
        parsed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "parsed but not documented"
    );
    assert_eq!(rows.len(), documented.len(), "a key is documented twice");
}

#[test]
fn documented_defaults_are_the_real_defaults() {
    let mut defaults = toml::Table::try_from(FileConfig::default()).unwrap();
    // Optional sections are absent by default; their keys default to the section's defaults.
    defaults.insert(
        "auth".to_owned(),
        toml::Value::Table(toml::Table::try_from(AuthSection::default()).unwrap()),
    );
    defaults.insert(
        "tls".to_owned(),
        toml::Value::Table(toml::Table::try_from(TlsSection::default()).unwrap()),
    );
    for row in table(&doc(), "key") {
        let key = code(&row[0]).unwrap();
        let (section, name) = key.split_once('.').unwrap();
        let real =
            defaults
                .get(section)
                .and_then(|table| table.get(name))
                .map(|value| match value {
                    toml::Value::String(text) => text.clone(),
                    other => other.to_string(),
                });
        let documented = row[1]
            .starts_with('`')
            .then(|| code(&row[1]).unwrap().to_owned());
        assert_eq!(documented, real, "default of {key}");
    }
}

#[test]
fn documented_environment_variables_are_the_ones_read() {
    let documented: BTreeSet<String> = table(&doc(), "variable")
        .iter()
        .map(|row| code(&row[0]).unwrap().to_owned())
        .collect();
    let mut read: BTreeSet<String> = ENV_VARS.iter().map(|name| (*name).to_owned()).collect();
    read.insert("RUST_LOG".to_owned());
    assert_eq!(documented, read);
}

#[test]
fn documented_flags_are_the_ones_offered() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_fila-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let offered: BTreeSet<String> = help
        .split_whitespace()
        .filter(|word| word.starts_with("--"))
        .map(|word| word.trim_end_matches(',').to_owned())
        .collect();
    let documented: BTreeSet<String> = table(&doc(), "flag")
        .iter()
        .map(|row| {
            code(&row[0])
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(documented, offered);
}
