use super::credentials::{Refused, BINDING_LEN};
use super::*;
use crate::id::{Id, NodeInfo};

fn node(id: u16, port: u16) -> NodeInfo {
    NodeInfo {
        id: Id(id),
        addr: ([127, 0, 0, 1], port).into(),
    }
}

const NOW: u64 = 1_800_000_000_000;

#[test]
fn a_certificate_verifies_only_for_its_authority_node_key_and_time() {
    let authority = Identity::generate().unwrap();
    let other_authority = Identity::generate().unwrap();
    let holder = Identity::generate().unwrap();
    let a = node(0x1234, 4000);
    let cert = Certificate::issue(&authority, a, holder.public(), NOW + 1000);
    let key = holder.public();
    assert_eq!(cert.check(&authority.public(), a, &key, NOW), Ok(()));
    assert_eq!(
        cert.check(&authority.public(), a, &key, NOW + 1000),
        Err(CertError::Expired)
    );
    assert_eq!(
        cert.check(&other_authority.public(), a, &key, NOW),
        Err(CertError::OtherAuthority)
    );
    let forged = Certificate::issue(&other_authority, a, key, NOW + 1000);
    assert_eq!(
        forged.check(&authority.public(), a, &key, NOW),
        Err(CertError::OtherAuthority)
    );
    let relabelled = Certificate {
        authority: authority.public(),
        ..forged
    };
    assert_eq!(
        relabelled.check(&authority.public(), a, &key, NOW),
        Err(CertError::BadSignature)
    );
    for other in [node(0x1234, 4001), node(0x1235, 4000)] {
        assert_eq!(
            cert.check(&authority.public(), other, &key, NOW),
            Err(CertError::OtherNode),
            "{other}"
        );
    }
    let stretched = Certificate {
        expires_ms: u64::MAX,
        ..cert.clone()
    };
    assert_eq!(
        stretched.check(&authority.public(), a, &key, NOW),
        Err(CertError::BadSignature)
    );
    let stranger = Identity::generate().unwrap().public();
    assert_eq!(
        cert.check(&authority.public(), a, &stranger, NOW),
        Err(CertError::OtherKey)
    );
}

#[test]
fn a_proof_holds_only_on_its_own_connection_and_end() {
    let authority = Credentials::authority(Identity::generate().unwrap());
    let a = node(0x1000, 4000);
    let alice = Credentials::node(Identity::generate().unwrap(), a);
    let cert = Certificate::issue(authority.identity(), a, alice.public(), NOW + 1000);
    alice.certify(cert, a, NOW).unwrap();
    let b = node(0x2000, 4001);
    let bob = Credentials::node(Identity::generate().unwrap(), b);
    let bob_cert = Certificate::issue(authority.identity(), b, bob.public(), NOW + 1000);
    bob.certify(bob_cert, b, NOW).unwrap();

    let binding = [7u8; BINDING_LEN];
    let proof = alice.prove(a, &binding, true);
    let seen = bob.judge(&proof, &binding, true, NOW).unwrap();
    assert_eq!(
        (seen.node, seen.key, seen.member),
        (a, alice.public(), true)
    );
    assert_eq!(
        bob.judge(&proof, &[8u8; BINDING_LEN], true, NOW),
        Err(Refused::Proof),
        "replayed on another connection"
    );
    assert_eq!(
        bob.judge(&proof, &binding, false, NOW),
        Err(Refused::Proof),
        "sent back as the other end's"
    );
    let claimed = Proof {
        node: b,
        ..proof.clone()
    };
    assert_eq!(
        bob.judge(&claimed, &binding, true, NOW),
        Err(Refused::Proof)
    );
    let expired = bob.judge(&proof, &binding, true, NOW + 1000);
    assert_eq!(expired, Err(Refused::Certificate(CertError::Expired)));

    // A participant with the cluster key and a key of its own, but no certificate.
    let client = Credentials::node(Identity::generate().unwrap(), b);
    let uncertified = client.prove(b, &binding, true);
    assert_eq!(
        bob.judge(&uncertified, &binding, true, NOW),
        Err(Refused::Uncertified)
    );
    // Discovery believes the key it proves, as no member.
    let at_discovery = authority.judge(&uncertified, &binding, true, NOW).unwrap();
    assert!(!at_discovery.member);
    assert!(authority.judge(&proof, &binding, true, NOW).unwrap().member);
}

#[test]
fn a_node_trusts_the_discovery_that_certified_it_first() {
    let first = Identity::generate().unwrap();
    let second = Identity::generate().unwrap();
    let a = node(0x1000, 4000);
    let me = Credentials::node(Identity::generate().unwrap(), a);
    me.certify(Certificate::issue(&first, a, me.public(), NOW + 10), a, NOW)
        .unwrap();
    assert_eq!(me.trusted_authority(), Some(first.public()));
    let other = Certificate::issue(&second, a, me.public(), NOW + 10);
    assert_eq!(
        me.certify(other.clone(), a, NOW),
        Err(CertError::OtherAuthority)
    );
    let someone = Identity::generate().unwrap().public();
    let foreign_key = Certificate::issue(&first, a, someone, NOW + 10);
    assert_eq!(
        me.certify(foreign_key, a, NOW),
        Err(CertError::OtherKey),
        "a certificate of another key is not this node's"
    );
}

#[test]
fn an_identity_is_kept_in_its_directory() {
    let dir = std::env::temp_dir().join(format!("pastry-identity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = Identity::in_dir(&dir).unwrap().public();
    assert_eq!(Identity::in_dir(&dir).unwrap().public(), first);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_ne!(Identity::in_dir(&dir).unwrap().public(), first);
    std::fs::remove_dir_all(&dir).unwrap();
}
