//! Section 11: a million small values on one node.

use std::os::unix::fs::MetadataExt;

use pastry::store::{ObjectStore, StoreOptions};

use super::*;

pub(crate) fn million(ctx: &mut Ctx) {
    let count: usize = ctx.opts.pick(1_000_000, 100_000);
    let dir = ctx.root.join("million");
    let _ = fs::remove_dir_all(&dir);
    ctx.report.note(format!(
        "{count} values of 4 bytes under 16-byte names (`tracker/` and 8 hex digits, as the \
         compact protocol names 32-bit keys) put into one node's store (`ObjectStore::put`, \
         unsynced, from 2 threads), then a node started on that data directory \
         (`Node::start`, which opens the store and replays its log). Disk: blocks allocated \
         under the data directory (`st_blocks`), against the bytes of names plus values. \
         Memory: the process's RSS growth from before the node started (the filled store \
         closed and its freed memory given back with `malloc_trim`) to after it did."
    ));
    ctx.report.table(&[
        "Values",
        "Put time",
        "Disk used",
        "Names + values",
        "Disk ÷ (names + values)",
        "Node start-up",
        "Node memory",
        "Memory per value",
    ]);
    let name = |i: usize| format!("tracker/{i:08x}");
    let options = StoreOptions {
        sync: false,
        ..StoreOptions::default()
    };
    let t = Instant::now();
    {
        let store = ObjectStore::open_options(&dir, options).expect("open the store");
        thread::scope(|s| {
            for part in 0..2 {
                let store = &store;
                s.spawn(move || {
                    for i in (part..count).step_by(2) {
                        let value = (i as u32).to_be_bytes();
                        store.put(name(i).as_bytes(), &value, 1).expect("put");
                    }
                });
            }
        });
    }
    let put_time = t.elapsed();
    // The filled store's memory, freed, goes back to the system: else the node would reuse
    // it and its own growth would not show.
    trim_heap();
    let disk = allocated(&dir);
    let payload = (count * (name(0).len() + 4)) as u64;
    let before = Resources::now();
    let t = Instant::now();
    let mut config = NodeConfig::new(key());
    config.data_dir = Some(dir.clone());
    let node = Node::start(config).expect("start a node on the million values");
    let start_up = t.elapsed();
    let after = Resources::now();
    let held = node.objects().map(|o| o.len()).unwrap_or(0);
    drop(node);
    let grown = after.rss_kb.saturating_sub(before.rss_kb);
    let ratio = disk as f64 / payload as f64;
    ctx.report.row(vec![
        count.to_string(),
        fmt_dur(put_time),
        fmt_bytes(disk),
        fmt_bytes(payload),
        format!("{ratio:.2}"),
        fmt_dur(start_up),
        format!("{:.1} MiB", grown as f64 / 1024.0),
        format!("{:.0} B", grown as f64 * 1024.0 / count as f64),
    ]);
    ctx.report.check(
        format!("{count} 4-byte values: disk ≤ 4× the bytes of names plus values"),
        format!(
            "{} for {} → {ratio:.2}×; the node lists {held}",
            fmt_bytes(disk),
            fmt_bytes(payload)
        ),
        ratio <= 4.0 && held == count,
    );
    let _ = fs::remove_dir_all(&dir);
}

/// Bytes of disk allocated to the files and directories under `dir`.
fn allocated(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}
