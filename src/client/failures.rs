//! How a client reads a failure: whether another holder may get around it, whether it says
//! a guess went to the wrong node, and whether no node answers at an address any more.

use crate::error::Error;
use crate::wire::RemoteCode;

/// Whether a write refused by the responsible node may go through another holder: the
/// responsible node is busy or out of reach, not refusing the write itself.
pub(super) fn is_busy_or_gone(e: &Error) -> bool {
    match e {
        Error::Unreachable { .. } | Error::Timeout { .. } => true,
        Error::Refused { code, .. } => *code == RemoteCode::Busy,
        _ => false,
    }
}

/// Whether a direct request failed for going to the wrong node rather than for anything
/// about the object: the node is not responsible, busy, out of reach, or no node of the
/// overlay is there any more (it left, or something else took its address).
pub(super) fn misdirected(e: &Error) -> bool {
    e.is_retryable() || is_no_node_there(e)
}

/// Whether a failure says that no node of the overlay answers at that address any more
/// (it left, went silent, or something else took the address): the client forgets it
/// there. Not a refusal of a node that is there (not responsible, busy) nor a failure of
/// this side.
pub(super) fn is_no_node_there(e: &Error) -> bool {
    match e {
        e if e.is_peer_failure() => true,
        Error::Refused { code, .. } => {
            matches!(code, RemoteCode::NotJoined | RemoteCode::BadRequest)
        }
        _ => false,
    }
}

/// Whether a read the responsible node could not serve may be served by another holder: as
/// for a write, and also when its copy is corrupt or it does not hold one yet (it became
/// responsible just now). Not when it holds the object's deletion record.
pub(super) fn can_serve_elsewhere(e: &Error) -> bool {
    is_busy_or_gone(e)
        || matches!(
            e,
            Error::Corrupt { .. }
                | Error::Refused {
                    code: RemoteCode::NotFound | RemoteCode::Corrupt,
                    ..
                }
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: RemoteCode) -> Error {
        Error::Refused {
            addr: ([127, 0, 0, 1], 1).into(),
            code,
            message: String::new(),
        }
    }

    #[test]
    fn a_guess_is_routed_around_when_it_went_to_the_wrong_node_and_forgotten_when_none_is_there() {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], 1).into();
        let gone = Error::Unreachable {
            addr,
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        // (error, routed around, forgotten)
        let cases = [
            (refused(RemoteCode::NotResponsible), true, false),
            (refused(RemoteCode::Busy), true, false),
            (refused(RemoteCode::NotJoined), true, true),
            (refused(RemoteCode::BadRequest), true, true),
            (gone, true, true),
            // The responsible node's word on the object, and failures of this side, stand.
            (refused(RemoteCode::InvalidName), false, false),
            (refused(RemoteCode::Gone), false, false),
            (refused(RemoteCode::Internal), false, false),
            (Error::NotFound { name: "x".into() }, false, false),
        ];
        for (e, routed, forgotten) in cases {
            assert_eq!(
                (misdirected(&e), is_no_node_there(&e)),
                (routed, forgotten),
                "{e:?}"
            );
        }
    }
}
