//! The report: tables printed row by row as they are measured, then written as markdown.

use super::*;

#[derive(Default)]
pub(crate) struct Report {
    pub(crate) sections: Vec<Section>,
    pub(crate) targets: Vec<Check>,
    pub(crate) load_at_start: String,
}

pub(crate) struct Section {
    pub(crate) title: String,
    /// Notes and tables in the order they were made.
    pub(crate) items: Vec<Item>,
}

pub(crate) enum Item {
    Note(String),
    Table(Table),
}

pub(crate) struct Table {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
}

pub(crate) struct Check {
    pub(crate) target: String,
    pub(crate) measured: String,
    pub(crate) met: bool,
}

impl Report {
    pub(crate) fn begin(&mut self, name: &str, title: &str) {
        println!("\n## {title}  ({name})");
        self.sections.push(Section {
            title: title.to_string(),
            items: Vec::new(),
        });
    }

    pub(crate) fn section(&mut self) -> &mut Section {
        self.sections.last_mut().expect("a section has begun")
    }

    /// A line of explanation under the section's title.
    pub(crate) fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("{text}");
        self.section().items.push(Item::Note(text));
    }

    pub(crate) fn table(&mut self, columns: &[&str]) {
        println!("\n| {} |", columns.join(" | "));
        self.section().items.push(Item::Table(Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }));
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        println!("| {} |", cells.join(" | "));
        match self.section().items.last_mut() {
            Some(Item::Table(table)) => table.rows.push(cells),
            _ => panic!("a row outside a table"),
        }
    }

    pub(crate) fn check(
        &mut self,
        target: impl Into<String>,
        measured: impl Into<String>,
        met: bool,
    ) {
        let check = Check {
            target: target.into(),
            measured: measured.into(),
            met,
        };
        println!(
            "  target: {} -> {} ({})",
            check.target,
            check.measured,
            if met { "met" } else { "MISSED" }
        );
        self.targets.push(check);
    }

    pub(crate) fn targets_markdown(&self) -> String {
        let mut md = String::from("| Target | Measured | Met |\n|---|---|---|\n");
        for c in &self.targets {
            let met = if c.met { "yes" } else { "**no**" };
            let _ = writeln!(
                md,
                "| {} | {} | {met} |",
                cell(&c.target),
                cell(&c.measured)
            );
        }
        md
    }

    pub(crate) fn markdown(&self, opts: &Opts, took: Duration) -> String {
        let mut md = String::from("# Benchmarks\n\n");
        let _ = writeln!(md, "- Date: {}", utc_now());
        let _ = writeln!(md, "- Machine: {}", machine());
        let _ = writeln!(
            md,
            "- Library: built from the working tree at commit {}",
            git_commit()
        );
        let _ = writeln!(
            md,
            "- Load average (1, 5, 15 min) at the start: {}; at the end: {}. The machine is \
             shared: other work running meanwhile slows every figure, baselines included.",
            self.load_at_start,
            load_average()
        );
        let _ = writeln!(
            md,
            "- Command: `{}` (release build; the run took {:.0} s)",
            opts.command(),
            took.as_secs_f64()
        );
        md.push_str(
            "- Everything runs in one process on loopback (127.0.0.1). Every ratio is against a \
             baseline measured in the same run: a raw 64-byte request/response on an \
             established loopback TCP connection (std::net, TCP_NODELAY, echo thread per \
             connection) or a raw loopback TCP stream of the same size (1 MiB writes, a thread \
             reading and discarding).\n",
        );
        md.push_str(
            "- Percentiles are nearest-rank over the samples shown. Memory is VmRSS/VmHWM from \
             /proc/self/status, threads are /proc/self/task entries, sockets and files are \
             /proc/self/fd entries.\n",
        );
        md.push_str("\n## Targets\n\n");
        md.push_str(&self.targets_markdown());
        for s in &self.sections {
            let _ = write!(md, "\n## {}\n\n", s.title);
            for item in &s.items {
                match item {
                    Item::Note(n) => {
                        let _ = writeln!(md, "{n}\n");
                    }
                    Item::Table(t) => {
                        let _ = writeln!(md, "| {} |", row_markdown(&t.columns));
                        let _ = writeln!(md, "|{}", "---|".repeat(t.columns.len()));
                        for r in &t.rows {
                            let _ = writeln!(md, "| {} |", row_markdown(r));
                        }
                        md.push('\n');
                    }
                }
            }
        }
        md
    }
}

/// A table cell for markdown: a `|` in the text (as in `|L|`) must not end the cell.
pub(crate) fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

pub(crate) fn row_markdown(cells: &[String]) -> String {
    cells
        .iter()
        .map(|c| cell(c))
        .collect::<Vec<_>>()
        .join(" | ")
}
