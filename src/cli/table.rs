//! Aligned text tables: a header row of column names and rows of cells, each column padded to
//! its widest cell, two spaces between columns, no trailing spaces.

use std::fmt::Write as _;

/// A table under construction.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are empty, extra cells are dropped. Control characters
    /// in cells are escaped (a name holding terminal escapes or newlines cannot forge lines).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells
            .into_iter()
            .map(|cell| {
                if cell.chars().any(crate::cli::commands::needs_escape) {
                    crate::cli::commands::one_line(&cell)
                } else {
                    cell
                }
            })
            .collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as text, one line per row, each line ending in `\n`.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                let _ = write!(line, "{cell:<width$}  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let mut table = Table::new(&["NAME", "DEPTH"]);
        table.row(vec!["orders".into(), "12".into()]);
        table.row(vec!["q".into(), "1".into()]);
        assert_eq!(table.render(), "NAME    DEPTH\norders  12\nq       1\n");
    }

    #[test]
    fn control_characters_cannot_forge_lines() {
        let mut table = Table::new(&["NAME"]);
        table.row(vec!["evil\u{1b}[2J\nfake row".into()]);
        table.row(vec!["report\u{202e}txt.exe".into()]);
        assert_eq!(
            table.render(),
            "NAME\nevil\\u{1b}[2J\\nfake row\nreport\\u{202e}txt.exe\n"
        );
    }
}
