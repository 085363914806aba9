//! Section 13: what strangers' connections cost a listener. Connections without the cluster
//! key, from this process, to one node of a formed network: thousands held idle, then as
//! many each sending a frame header that claims 4 MiB. The process's memory and the node's
//! open connections while they are held, and whether a member is served meanwhile.

use super::*;

/// A frame header claiming `len` bytes on stream 1: what a stranger may send in place of
/// the handshake.
fn claiming_header(len: u32) -> Vec<u8> {
    let mut frame = bytes::BytesMut::new();
    let trailer = pastry::wire::Trailer::Crc;
    pastry::wire::encode(&pastry::wire::Message::Ping, 1, trailer, &mut frame);
    let mut header = frame[..pastry::wire::HEADER_LEN].to_vec();
    header[pastry::wire::HEADER_LEN - 4..].copy_from_slice(&len.to_be_bytes());
    header
}

pub(crate) fn strangers(ctx: &mut Ctx) {
    let nodes = 16;
    let count = ctx.opts.pick(3000, 500);
    let claim: u32 = 4 << 20;
    ctx.report.note(format!(
        "{count} connections without the cluster key to one node of a {nodes}-node network \
         ({}), from this process: first held idle, then {count} more each sending a frame \
         header that claims {} and nothing after. Memory is the process's RSS growth from \
         before the first connection to when all of a kind had been accepted (the node's \
         connections and whatever they hold; the strangers' sockets hold no process memory). \
         While each kind is held, two members get a value that node holds: a client whose \
         connection to it was made before, and a new client, which must connect from the \
         strangers' own address (127.0.0.1) and so waits behind their share of the node's \
         slots for handshakes (`max_handshakes_per_source`) until the node closes them \
         (`io_timeout`).",
        Profile::Default.describe(),
        fmt_bytes(claim as u64)
    ));
    ctx.report.table(&[
        "Strangers",
        "Sending",
        "Accepted",
        "Node's connections held",
        "RSS growth",
        "Per connection held",
        "Get, member connected before",
        "Get, new member from their address",
    ]);
    let net = match ctx.nets.get(nodes, Profile::Default) {
        Ok(net) => net,
        Err(e) => return ctx.report.note(format!("the network did not start: {e}")),
    };
    let node = &net.nodes[1];
    let addr = node.info().addr;
    // A value the node itself is responsible for: every get of it reaches the node.
    let Some(name) = (0..10_000)
        .map(|i| format!("member's value {i}"))
        .find(|name| net.is_responsible(pastry::key_of(name.as_bytes()), node.id()))
    else {
        return ctx.report.note("no name found for the node".to_string());
    };
    // Members entering through the node the strangers hold: one that connected before
    // them, and one anew while they are held.
    let member = || Client::with_config(Entry::Peer(addr), ClientConfig::new(key()));
    let connected = member();
    if connected.put(&name, b"kept").is_err() {
        return ctx
            .report
            .note("a member's put failed before the strangers came".to_string());
    }
    let header = claiming_header(claim);
    let mut rows = Vec::new();
    for (kind, send) in [("nothing", &[][..]), ("a 4 MiB frame header", &header[..])] {
        trim_heap();
        let before = Resources::now();
        let accepted = node.stats().accepted;
        let flood: Vec<TcpStream> = (0..count)
            .filter_map(|_| TcpStream::connect(addr).ok())
            .filter_map(|mut s| s.write_all(send).ok().map(|()| s))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        // Bounded by the deadline.
        while node.stats().accepted < accepted + flood.len() as u64 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let took = node.stats().accepted - accepted;
        let held = node.stats().open_connections;
        let grown = Resources::now().rss_kb.saturating_sub(before.rss_kb);
        let timed_get = |client: &Client| {
            let t = Instant::now();
            let got = matches!(client.get(&name), Ok(f) if f.data == b"kept");
            got.then(|| t.elapsed())
        };
        let gets = [timed_get(&connected), timed_get(&member())];
        drop(flood);
        rows.push((kind, took, held, grown, gets));
    }
    let shown = |get: Option<Duration>| get.map_or("**failed**".into(), fmt_dur);
    for (kind, took, held, grown, gets) in rows {
        ctx.report.row(vec![
            format!("{count}"),
            kind.into(),
            format!("{took}"),
            format!("{held}"),
            format!("{:.1} MiB", grown as f64 / 1024.0),
            format!("{:.1} KiB", grown as f64 / held.max(1) as f64),
            shown(gets[0]),
            shown(gets[1]),
        ]);
        ctx.report.check(
            format!("members are served while {count} strangers send {kind}"),
            format!(
                "{took} accepted, {held} held; a get in {} (connected before), {} (new)",
                shown(gets[0]),
                shown(gets[1])
            ),
            gets.iter().all(Option::is_some),
        );
    }
}
