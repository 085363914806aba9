//! Section 3: hops.

use super::*;

pub(crate) fn hops(ctx: &mut Ctx) {
    let sizes: Vec<(usize, Profile)> = ctx.opts.pick(
        vec![
            (16, Profile::Default),
            (64, Profile::Default),
            (256, Profile::Default),
            (1000, Profile::Large),
        ],
        vec![(16, Profile::Default), (64, Profile::Default)],
    );
    let samples = ctx.opts.pick(3000, 300);
    ctx.report.note(format!(
        "{samples} lookups per size for random keys from random nodes. Hops do not depend on the \
         connection settings; the configuration is the one with which each size starts in one \
         process (section 7)."
    ));
    ctx.report.table(&[
        "Nodes",
        "Configuration",
        "Build (s)",
        "Mean hops",
        "p99 hops",
        "Max hops",
        "log16 N",
        "ceil(log16 N) + 1",
        "Mean ≤ log16 N",
        "Max ≤ ceil + 1",
    ]);
    for (n, profile) in sizes {
        let mut rng = Rng::seeded(ctx.rng.next_u64());
        let lead = vec![n.to_string(), profile.describe().into()];
        let net = match ctx.nets.get_or_report(n, profile, &mut ctx.report, lead) {
            Ok(net) => net,
            Err(e) => {
                ctx.report.check(
                    format!("Hops at {n} nodes"),
                    format!("network does not start: {e}"),
                    false,
                );
                continue;
            }
        };
        let build = net.build_time;
        let mut l = random_lookups(net, samples, &mut rng);
        l.hops.sort_unstable();
        let mean = mean_usize(&l.hops);
        let max = l.hops.last().copied().unwrap_or(0);
        let log = (n as f64).ln() / 16f64.ln();
        let bound = log.ceil() as usize + 1;
        ctx.report.row(vec![
            n.to_string(),
            profile.describe().into(),
            format!("{:.1}", build.as_secs_f64()),
            format!("{mean:.2}{}", failures_note(&l)),
            pct(&l.hops, 99.0).to_string(),
            max.to_string(),
            format!("{log:.2}"),
            bound.to_string(),
            yes_no(mean <= log),
            yes_no(max <= bound),
        ]);
        ctx.report.check(
            format!("Mean hops ≤ log16 N, {n} nodes"),
            format!("{mean:.2} vs {log:.2}"),
            mean <= log,
        );
        ctx.report.check(
            format!("Max hops ≤ ceil(log16 N) + 1, {n} nodes"),
            format!("{max} vs {bound}"),
            max <= bound,
        );
        if n >= 1000 {
            ctx.report.check(
                "1,000 nodes start, join and answer lookups in one process",
                format!(
                    "with {}: built in {:.0} s; {} of {samples} lookups answered",
                    profile.describe(),
                    build.as_secs_f64(),
                    l.hops.len(),
                ),
                l.failures == 0,
            );
        }
    }
}
