//! `PROTOCOL.md` restates the opcode and error-code tables; this test keeps them equal to
//! `Opcode` and `ErrorCode`, both ways (style rule 2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;

use fila_wire::{Direction, ErrorCode, Opcode};

const DOC: &str = include_str!("../PROTOCOL.md");

/// Rows `| `0xNN` | Name | ... |` of the section that starts with `heading`.
fn table(heading: &str) -> BTreeMap<u8, Vec<String>> {
    let start = DOC
        .find(heading)
        .unwrap_or_else(|| panic!("no section {heading}"));
    let section = &DOC[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|line| line.starts_with("| `0x")) {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().trim_matches('`').to_owned())
            .collect();
        let number = u8::from_str_radix(cells[0].trim_start_matches("0x"), 16).unwrap();
        assert!(
            rows.insert(number, cells[1..].to_vec()).is_none(),
            "{number:#04x} listed twice"
        );
    }
    rows
}

#[test]
fn opcode_table_matches_the_enum() {
    let rows = table("## Opcodes");
    assert_eq!(rows.len(), Opcode::ALL.len(), "row count");
    for opcode in Opcode::ALL {
        let row = rows
            .get(&opcode.as_u8())
            .unwrap_or_else(|| panic!("{opcode} missing from PROTOCOL.md"));
        assert_eq!(row[0], opcode.name(), "{opcode}");
        let direction = match opcode.direction() {
            Direction::ClientToServer => "C→S",
            Direction::ServerToClient => "S→C",
        };
        assert_eq!(row[1], direction, "{opcode}");
    }
    for (number, row) in &rows {
        let opcode =
            Opcode::from_u8(*number).unwrap_or_else(|| panic!("{number:#04x} not in Opcode"));
        assert_eq!(opcode.name(), row[0]);
    }
}

#[test]
fn error_code_table_matches_the_enum() {
    let rows = table("## Error codes");
    assert_eq!(rows.len(), ErrorCode::ALL.len(), "row count");
    for code in ErrorCode::ALL {
        let row = rows
            .get(&code.as_u8())
            .unwrap_or_else(|| panic!("{code} missing from PROTOCOL.md"));
        assert_eq!(row[0], code.name(), "{code}");
    }
    for (number, row) in &rows {
        assert!(
            ErrorCode::is_known(*number),
            "{number:#04x} not in ErrorCode"
        );
        assert_eq!(ErrorCode::from_u8(*number).name(), row[0]);
    }
}
