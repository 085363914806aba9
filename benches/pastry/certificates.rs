//! Section 12: what certified node ids cost. The same network twice in one run: nodes
//! certified by discovery (registration, certificates in every introduction and with every
//! node entry they tell of), and nodes joined through a peer with no discovery, which trust
//! no authority and check no certificate.

use super::*;

pub(crate) fn certificates(ctx: &mut Ctx) {
    ctx.nets.current = None; // room for the two networks
    let n = ctx.opts.pick(64, 24);
    let lookups = ctx.opts.pick(3000, 300);
    ctx.report.note(format!(
        "Two networks of {n} nodes configured {} with the same ids, built one after the other: \
         certified (each node joins through discovery, which checks its key and address and \
         signs its certificate; nodes check certificates when they learn of a node) and \
         uncertified (the first node creates the overlay, the others join through it; no \
         discovery, no certificate). Join time is each node's `join` call, p50 over the {n}. \
         Then {lookups} lookups of random keys from random nodes on each, in interleaved \
         rounds of 100 after untimed rounds that open the connections.",
        Profile::Default.describe()
    ));
    ctx.report.table(&[
        "Network",
        "Join p50",
        "Join max",
        "Lookup p50",
        "Lookup p99",
        "Mean hops",
    ]);
    let mut rng = Rng::seeded(ctx.rng.next_u64());
    let mut ids: Vec<Id> = Vec::new();
    while ids.len() < n {
        let id = Id(rng.next_u64() as u16);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let certified = match build(ctx, &ids, true) {
        Ok(net) => net,
        Err(e) => {
            return ctx
                .report
                .row(vec!["certified".into(), format!("failed: {e}")])
        }
    };
    let uncertified = match build(ctx, &ids, false) {
        Ok(net) => net,
        Err(e) => {
            return ctx
                .report
                .row(vec!["uncertified".into(), format!("failed: {e}")])
        }
    };
    let nets = [&certified, &uncertified];
    for net in nets {
        for _ in 0..3 {
            for node in &net.nodes {
                let _ = node.lookup(Id(rng.next_u64() as u16));
            }
        }
    }
    let mut times = [Vec::new(), Vec::new()];
    let mut hops = [0usize, 0usize];
    for _ in 0..lookups / 100 {
        for (i, net) in nets.iter().enumerate() {
            for _ in 0..100 {
                let from = &net.nodes[(rng.next_u64() as usize) % net.nodes.len()];
                let key = Id(rng.next_u64() as u16);
                let t = Instant::now();
                if let Ok(route) = from.lookup(key) {
                    times[i].push(t.elapsed());
                    hops[i] += route.hops();
                }
            }
        }
    }
    let mut p50 = [Duration::ZERO; 2];
    let mut joins_p50 = [Duration::ZERO; 2];
    for (i, net) in nets.iter().enumerate() {
        sort(&mut times[i]);
        let mut joins = net.joins.clone();
        sort(&mut joins);
        p50[i] = pct(&times[i], 50.0);
        joins_p50[i] = pct(&joins, 50.0);
        ctx.report.row(vec![
            net.name.into(),
            fmt_dur(joins_p50[i]),
            fmt_dur(joins.last().copied().unwrap_or_default()),
            fmt_dur(p50[i]),
            fmt_dur(pct(&times[i], 99.0)),
            format!("{:.2}", hops[i] as f64 / times[i].len().max(1) as f64),
        ]);
    }
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    ctx.report.note(format!(
        "Certified ÷ uncertified: join p50 {:.2}, lookup p50 {:.2} (certificates are checked \
         when a node is learnt, never on a lookup's hops).",
        ratio(joins_p50[0], joins_p50[1]),
        ratio(p50[0], p50[1]),
    ));
    drop((certified, uncertified));
}

/// One of the two networks.
struct Built {
    name: &'static str,
    _discovery: Option<Discovery>,
    nodes: Vec<Node>,
    joins: Vec<Duration>,
}

/// Nodes of `ids` joined one after another: through discovery when `certified`, else
/// through the first node.
fn build(ctx: &Ctx, ids: &[Id], certified: bool) -> Result<Built, String> {
    let name = if certified {
        "certified"
    } else {
        "uncertified"
    };
    let dir = ctx.root.join(format!("certificates-{name}"));
    let discovery = if certified {
        let local = "127.0.0.1:0".parse().expect("an address");
        Some(Discovery::start(local, key()).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let mut nodes: Vec<Node> = Vec::new();
    let mut joins = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let config = NodeConfig {
            id: Some(id),
            ..Profile::Default.config(dir.join(i.to_string()))
        };
        let node = Node::start(config).map_err(|e| e.to_string())?;
        let t = Instant::now();
        let joined = match (&discovery, nodes.first()) {
            (Some(d), _) => node.join_discovery(d.local_addr()),
            (None, Some(first)) => node.join_peer(first.info().addr),
            (None, None) => node.create(),
        };
        joined.map_err(|e| format!("{id} joins: {e}"))?;
        joins.push(t.elapsed());
        nodes.push(node);
    }
    Ok(Built {
        name,
        _discovery: discovery,
        nodes,
        joins,
    })
}
