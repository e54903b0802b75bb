//! How the CLI prints: tables with a header row for every list, one JSON
//! document for `--json`, and colour only where it helps (table headers,
//! `validate`'s error and warning words), only on a terminal and never
//! with `NO_COLOR` set (<https://no-color.org>) or `--color never`.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU8, Ordering};

/// `--color`: when the CLI colours its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    // No `///` on the variants: clap would list them in every `--help`.
    #[default]
    #[allow(missing_docs)]
    Auto,
    #[allow(missing_docs)]
    Always,
    #[allow(missing_docs)]
    Never,
}

/// Whether to colour, from the choice, whether stdout is a terminal and
/// `NO_COLOR`'s value: `NO_COLOR` set and not empty always wins; `auto`
/// colours a terminal only.
pub fn colour_wanted(choice: ColorChoice, stdout_is_tty: bool, no_color: Option<&str>) -> bool {
    if no_color.is_some_and(|v| !v.is_empty()) {
        return false;
    }
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => stdout_is_tty,
    }
}

/// 0 not decided yet, 1 no colour, 2 colour.
static COLOUR: AtomicU8 = AtomicU8::new(0);

/// Decides once, at start, whether this process colours its stdout.
pub fn init_colour(choice: ColorChoice) {
    let no_color = std::env::var("NO_COLOR").ok();
    let on = colour_wanted(choice, std::io::stdout().is_terminal(), no_color.as_deref());
    COLOUR.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// Whether stdout gets colour ([`init_colour`]; never before it ran).
pub fn colour() -> bool {
    COLOUR.load(Ordering::Relaxed) == 2
}

/// A style: the SGR parameters of an ANSI escape.
#[derive(Debug, Clone, Copy)]
pub enum Style {
    /// Table headers.
    Bold,
    /// `error`.
    Red,
    /// `warning`.
    Yellow,
    /// `ok`, `no problems`.
    Green,
}

impl Style {
    fn sgr(self) -> &'static str {
        match self {
            Style::Bold => "1",
            Style::Red => "1;31",
            Style::Yellow => "1;33",
            Style::Green => "32",
        }
    }
}

/// `text` in `style` when colouring ([`colour`]), else `text` as it is.
pub fn paint(text: &str, style: Style) -> String {
    paint_if(colour(), text, style)
}

/// `text` in `style` when `on`.
pub fn paint_if(on: bool, text: &str, style: Style) -> String {
    if on && !text.is_empty() {
        format!("\x1b[{}m{text}\x1b[0m", style.sgr())
    } else {
        text.to_string()
    }
}

/// How a column lines up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table: a header row (upper case, as `kubectl`/`ps`) and rows of
/// cells; columns are two spaces apart, padded, the last one unpadded.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers, all left-aligned.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            align: vec![Align::Left; header.len()],
            rows: Vec::new(),
        }
    }

    /// Right-aligns the columns at `cols` (numbers).
    pub fn right(mut self, cols: &[usize]) -> Self {
        for &c in cols {
            if let Some(a) = self.align.get_mut(c) {
                *a = Align::Right;
            }
        }
        self
    }

    /// Adds a row (missing cells are empty, extra ones dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, the header painted when `colour` is on.
    pub fn render(&self, colour: bool) -> String {
        let n = self.header.len();
        let widths: Vec<usize> = (0..n)
            .map(|i| {
                std::iter::once(&self.header[i])
                    .chain(self.rows.iter().map(|r| &r[i]))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String], header: bool| -> String {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                let pad = " ".repeat(widths[i].saturating_sub(cell.chars().count()));
                let shown = if header {
                    paint_if(colour, cell, Style::Bold)
                } else {
                    cell.clone()
                };
                match self.align[i] {
                    Align::Right => {
                        out.push_str(&pad);
                        out.push_str(&shown);
                    }
                    Align::Left => {
                        out.push_str(&shown);
                        if i + 1 < n {
                            out.push_str(&pad);
                        }
                    }
                }
            }
            let mut out = out.trim_end().to_string();
            out.push('\n');
            out
        };
        let mut out = line(&self.header, true);
        for r in &self.rows {
            out.push_str(&line(r, false));
        }
        out
    }

    /// Writes the table to `out`, coloured as the process decided.
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(self.render(colour()).as_bytes())
    }
}

/// Writes `value` as one pretty-printed JSON document and a newline.
pub fn print_json(out: &mut impl Write, value: &serde_json::Value) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_rule() {
        use ColorChoice::*;
        let cases: &[(ColorChoice, bool, Option<&str>, bool)] = &[
            (Auto, true, None, true),
            (Auto, false, None, false),
            (Auto, true, Some("1"), false),
            (Auto, true, Some(""), true),
            (Always, false, None, true),
            (Always, false, Some("1"), false),
            (Always, true, Some("0"), false),
            (Never, true, None, false),
        ];
        for &(choice, tty, no_color, want) in cases {
            assert_eq!(
                colour_wanted(choice, tty, no_color),
                want,
                "{choice:?} tty={tty} NO_COLOR={no_color:?}"
            );
        }
    }

    #[test]
    fn tables_have_headers_and_align() {
        let mut t = Table::new(&["NAME", "COUNT", "NOTE"]).right(&[1]);
        t.row(vec!["a".into(), "5".into(), "x".into()]);
        t.row(vec!["long-name".into(), "12".into()]);
        assert_eq!(
            t.render(false),
            "NAME       COUNT  NOTE\na              5  x\nlong-name     12\n"
        );
        let coloured = t.render(true);
        assert!(coloured.starts_with("\x1b[1mNAME\x1b[0m"), "{coloured:?}");
        assert_eq!(paint_if(false, "error", Style::Red), "error");
        assert_eq!(
            paint_if(true, "error", Style::Red),
            "\x1b[1;31merror\x1b[0m"
        );
    }
}
