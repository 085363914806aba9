mod common;
use common::*;
use pastry::{Client, Rng};

#[test]
fn smoke() {
    let mut rng = Rng::seeded(3);
    let ids = random_ids(&mut rng, 8);
    let net = Network::new(&ids);
    let client = Client::new(net.discovery.local_addr());
    let s = client.put("hello.txt", b"hello world").unwrap();
    eprintln!("{s:?}");
    let f = client.get("hello.txt").unwrap();
    assert_eq!(f.data, b"hello world");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
    client.put("big", &big).unwrap();
    assert_eq!(client.get("big").unwrap().data, big);
    assert!(matches!(
        client.get("nope"),
        Err(pastry::Error::NotFound { .. })
    ));
    let d = client.delete("hello.txt").unwrap();
    assert!(d.existed);
    assert!(matches!(
        client.get("hello.txt"),
        Err(pastry::Error::NotFound { .. })
    ));
}
