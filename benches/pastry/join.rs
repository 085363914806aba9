//! Section 6: join.

use super::*;

pub(crate) fn join(ctx: &mut Ctx) {
    let sizes = ctx.opts.pick(vec![16, 256, 1000], vec![16, 32, 64]);
    let joins = ctx.opts.pick(5, 2);
    ctx.report.note(format!(
        "{joins} nodes join one after another (each measured alone) a network of N nodes \
         configured {}: no background traffic, so the messages counted (`stats().sent` summed \
         over every node and the joiner, before and after) are the join's own, including the \
         joiner's requests to discovery. |L| = 16. The join's requests: register with \
         discovery, one JoinHop per node on the route, pulls from the 2 nearest neighbours, an \
         Announce to every node in the new tables (leaf set and routing table), and Joined.",
        Profile::Quiet.describe()
    ));
    ctx.report.table(&[
        "N",
        "Join time p50",
        "Join time max",
        "Messages (mean)",
        "by joiner",
        "by others",
        "log16 N + |L|",
        "Messages ÷ (log16 N + |L|)",
    ]);
    let mut points: Vec<(usize, f64)> = Vec::new();
    for n in sizes {
        let seed = ctx.rng.next_u64();
        let dir = ctx.root.join(format!("joiners-{n}"));
        let lead = vec![n.to_string()];
        let Ok(net) = ctx
            .nets
            .get_or_report(n, Profile::Quiet, &mut ctx.report, lead)
        else {
            continue;
        };
        let mut rng = Rng::seeded(seed);
        let taken: std::collections::HashSet<Id> = net.nodes.iter().map(|n| n.id()).collect();
        let mut times = Vec::new();
        let (mut by_joiner, mut by_others) = (0u64, 0u64);
        let mut joiners = Vec::new();
        let mut error = None;
        while joiners.len() + error.iter().count() < joins {
            let id = Id(rng.next_u64() as u16);
            if taken.contains(&id) || joiners.iter().any(|j: &Node| j.id() == id) {
                continue;
            }
            let config = NodeConfig {
                id: Some(id),
                ..Profile::Quiet.config(dir.join(format!("{}", joiners.len())))
            };
            let node = match Node::start(config) {
                Ok(node) => node,
                Err(e) => {
                    error = Some(e.to_string());
                    continue;
                }
            };
            let others = net.total_sent() + joiners.iter().map(|j| j.stats().sent).sum::<u64>();
            let t = Instant::now();
            let joined = node.join_discovery(net.discovery.local_addr());
            let took = t.elapsed();
            if let Err(e) = joined {
                error = Some(e.to_string());
                continue;
            }
            times.push(took);
            let others_after =
                net.total_sent() + joiners.iter().map(|j| j.stats().sent).sum::<u64>();
            by_joiner += node.stats().sent;
            by_others += others_after - others;
            joiners.push(node);
        }
        drop(joiners); // crash-stop: the others are told nothing in a quiet network
        let _ = fs::remove_dir_all(&dir);
        if times.is_empty() {
            let e = error.unwrap_or_default();
            ctx.report.row(vec![n.to_string(), format!("failed: {e}")]);
            continue;
        }
        sort(&mut times);
        let k = times.len() as f64;
        let messages = (by_joiner + by_others) as f64 / k;
        let scale = (n as f64).ln() / 16f64.ln() + LEAF_SET;
        points.push((n, messages));
        ctx.report.row(vec![
            n.to_string(),
            fmt_dur(pct(&times, 50.0)),
            fmt_dur(*times.last().expect("a join")),
            format!("{messages:.1}"),
            format!("{:.1}", by_joiner as f64 / k),
            format!("{:.1}", by_others as f64 / k),
            format!("{scale:.2}"),
            format!("{:.2}", messages / scale),
        ]);
    }
    // The joined nodes were crash-stopped: this network must not be reused.
    ctx.nets.current = None;
    join_growth(ctx, &points);
}

/// Whether messages per join grow like log16 N + |L| or like N: both models, `a + b·x`, are
/// fitted by least squares to the measured points, and the one with the smaller residual wins.
pub(crate) fn join_growth(ctx: &mut Ctx, points: &[(usize, f64)]) {
    if points.len() < 3 {
        return; // two points fit any two-parameter model exactly
    }
    let log_model = |n: usize| (n as f64).ln() / 16f64.ln() + LEAF_SET;
    let lin_model = |n: usize| n as f64;
    let (fit_log, rms_log) = fit(points, log_model);
    let (fit_lin, rms_lin) = fit(points, lin_model);
    let (&(n0, m0), &(n1, m1)) = (points.first().unwrap(), points.last().unwrap());
    let slope = (m1 / m0).ln() / (n1 as f64 / n0 as f64).ln();
    ctx.report.note(format!(
        "From {n0} to {n1} nodes (×{:.1}) the messages per join grew ×{:.2}, while log16 N + |L| \
         grew ×{:.2} (log-log slope in N: {slope:.2}; growth like N would be 1.00). Least-squares \
         fits: messages ≈ {:.1} + {:.2} × (log16 N + |L|), RMS residual {rms_log:.1}; messages ≈ \
         {:.1} + {:.4} × N, RMS residual {rms_lin:.1}.",
        n1 as f64 / n0 as f64,
        m1 / m0,
        log_model(n1) / log_model(n0),
        fit_log.0,
        fit_log.1,
        fit_lin.0,
        fit_lin.1,
    ));
    ctx.report.check(
        "Join messages grow like log16 N + |L|, not like N (the log model fits better)",
        format!(
            "{m0:.0} messages at {n0} nodes, {m1:.0} at {n1}; RMS residual {rms_log:.1} (log) \
             vs {rms_lin:.1} (linear)"
        ),
        rms_log < rms_lin,
    );
}

/// Least-squares `y ≈ a + b·model(n)`: ((a, b), RMS residual).
pub(crate) fn fit(points: &[(usize, f64)], model: impl Fn(usize) -> f64) -> ((f64, f64), f64) {
    let k = points.len() as f64;
    let xs: Vec<f64> = points.iter().map(|&(n, _)| model(n)).collect();
    let mx = xs.iter().sum::<f64>() / k;
    let my = points.iter().map(|p| p.1).sum::<f64>() / k;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs
        .iter()
        .zip(points)
        .map(|(x, p)| (x - mx) * (p.1 - my))
        .sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let a = my - b * mx;
    let sse: f64 = xs
        .iter()
        .zip(points)
        .map(|(x, p)| (p.1 - a - b * x).powi(2))
        .sum();
    ((a, b), (sse / k).sqrt())
}
