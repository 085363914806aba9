//! A node that is not part of an overlay (never joined, failed to join, or left) stays idle:
//! its maintenance waits out each interval instead of spinning. Alone in its own test binary,
//! so that the CPU time measured is this test's.

use std::time::{Duration, Instant};

use pastry::{Node, NodeConfig};

/// CPU time this process has used (user + system), from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc is mounted");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // The kernel's clock ticks are 100 a second on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

#[test]
fn nodes_outside_an_overlay_do_not_spin() {
    let config = NodeConfig {
        maintenance_interval: Duration::from_millis(20),
        ..NodeConfig::new(pastry::ClusterKey::generate().unwrap())
    };
    let never_joined = Node::start(config.clone()).unwrap();
    let left = Node::start(config).unwrap();
    left.create().unwrap();
    left.leave().unwrap();

    let (cpu_before, wall_before) = (cpu_time(), Instant::now());
    // Many maintenance intervals pass.
    while wall_before.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = cpu_time() - cpu_before;
    // A spinning maintenance thread would use a whole core, the full two seconds per node.
    assert!(
        cpu < Duration::from_millis(500),
        "idle nodes used {cpu:?} of CPU in 2 s"
    );
    drop((never_joined, left));
}
