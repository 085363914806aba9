//! The two mirrored mappings between errors and refusals: a server turns its error into the
//! refusal it answers with, a caller turns a refusal back into the error it stands for.

use crate::error::Error;
use crate::transfer::lossy;
use crate::wire::{Message, RemoteCode};

/// The error reply for `e`.
pub(crate) fn error_reply(e: &Error) -> Message {
    let code = match e {
        Error::NotFound { .. } => RemoteCode::NotFound,
        Error::Corrupt { .. } => RemoteCode::Corrupt,
        Error::InvalidName { .. } => RemoteCode::InvalidName,
        // Passed on from the node this one asked for the client (a relayed write).
        Error::Refused { code, message, .. } => {
            return Message::Error {
                code: *code,
                message: message.clone(),
            }
        }
        _ => RemoteCode::Internal,
    };
    Message::Error {
        code,
        message: e.to_string(),
    }
}

/// The typed error for a holder's refusal about `name`.
pub(crate) fn typed(name: &[u8], e: Error) -> Error {
    let Error::Refused { code, message, .. } = &e else {
        return e;
    };
    match code {
        RemoteCode::NotFound | RemoteCode::Gone => Error::NotFound { name: lossy(name) },
        RemoteCode::Corrupt => Error::Corrupt {
            name: lossy(name),
            what: message.clone(),
        },
        RemoteCode::InvalidName => Error::InvalidName {
            reason: message.clone(),
        },
        _ => e,
    }
}
