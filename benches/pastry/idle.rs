//! Section 7: idle nodes, their memory and threads.

use super::*;

pub(crate) fn idle(ctx: &mut Ctx) {
    let sizes: Vec<(usize, Profile)> = ctx.opts.pick(
        vec![
            (64, Profile::Default),
            (256, Profile::Default),
            (256, Profile::NoPool),
            (1000, Profile::Default),
            (1000, Profile::Large),
        ],
        vec![(64, Profile::Default), (64, Profile::NoPool)],
    );
    ctx.report.note(format!(
        "Process resources once a network has been built and left idle for a few seconds, \
         minus those before it started, divided by the number of nodes (the discovery node is \
         included). Threads: per node, the leader of its reactor's crew (more while requests are \
         served, let go after 10 s without work) and a maintenance thread (256 KiB stacks); \
         connections: one per pair of nodes that talk, both ways. The process may open {} \
         files.",
        fd_limit()
    ));
    ctx.report.table(&[
        "Nodes",
        "Configuration",
        "Build (s)",
        "RSS per node",
        "Threads per node",
        "Descriptors per node",
        "Total threads",
        "Total descriptors",
    ]);
    for (n, profile) in sizes {
        let lead = vec![n.to_string(), profile.describe().into()];
        let net = match ctx.nets.get_or_report(n, profile, &mut ctx.report, lead) {
            Ok(net) => net,
            Err(e) => {
                if n >= 1000 {
                    ctx.report.check(
                        format!(
                            "1,000 nodes start and join in one process ({})",
                            profile.describe()
                        ),
                        e,
                        false,
                    );
                }
                continue;
            }
        };
        let (b, s) = (net.before, net.settled);
        let per = |x: f64| x / n as f64;
        let row = vec![
            n.to_string(),
            profile.describe().into(),
            format!("{:.1}", net.build_time.as_secs_f64()),
            format!("{:.0} KiB", per(s.rss_kb as f64 - b.rss_kb as f64)),
            format!("{:.1}", per(s.threads as f64 - b.threads as f64)),
            format!("{:.1}", per(s.fds as f64 - b.fds as f64)),
            s.threads.to_string(),
            s.fds.to_string(),
        ];
        let build = net.build_time;
        ctx.report.row(row);
        if n >= 1000 {
            ctx.report.check(
                format!(
                    "1,000 nodes start and join in one process ({})",
                    profile.describe()
                ),
                format!("built in {:.0} s", build.as_secs_f64()),
                true,
            );
        }
    }
}
