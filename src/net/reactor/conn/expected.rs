//! Answers no thread waits for: a request sent with what to do with its answer
//! ([`OnAnswer`]), which the reader of the connection hands to a thread of the crew as soon
//! as the answer's frame comes, or the stream or connection fails, or its deadline passes.
//! A node forwarding a route so holds no thread while the next hop works on it.

use std::io;

use super::state::{State, Tick};
use crate::net::mux::Inbound;
use crate::wire::Message;

/// What to do with the answer to a request (or why there is none): called once, on a thread
/// of the crew, which may wait.
pub(crate) type OnAnswer = Box<dyn FnOnce(io::Result<Message>) + Send>;

/// An answer due, to be handed to a thread of the crew with what it is for.
pub(crate) struct Answered {
    then: OnAnswer,
    result: io::Result<Message>,
}

impl Answered {
    /// Does what was asked with the answer.
    pub(crate) fn run(self) {
        (self.then)(self.result);
    }
}

/// One answer expected.
struct Expect {
    stream: u32,
    deadline: Tick,
    then: OnAnswer,
}

/// A connection's expected answers: none most of the time, a few under load. (Boxed: 8
/// bytes in each of a process's thousands of connections, where a vector takes 24.)
#[allow(clippy::box_collection)]
#[derive(Default)]
pub(super) struct Expected(Option<Box<Vec<Expect>>>);

impl Expected {
    pub(super) fn insert(&mut self, stream: u32, deadline: Tick, then: OnAnswer) {
        self.0.get_or_insert_with(Box::default).push(Expect {
            stream,
            deadline,
            then,
        });
    }

    /// Whether an answer on `stream` is expected.
    pub(super) fn has(&self, stream: u32) -> bool {
        self.0
            .as_ref()
            .is_some_and(|v| v.iter().any(|e| e.stream == stream))
    }

    /// Takes out the expectations `which` picks.
    fn take_if(&mut self, mut which: impl FnMut(&Expect) -> bool) -> Vec<Expect> {
        let Some(all) = self.0.as_mut() else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        let mut i = 0;
        // Bounded by the vector's length, which shrinks or is stepped past each pass.
        while i < all.len() {
            if which(&all[i]) {
                taken.push(all.swap_remove(i));
            } else {
                i += 1;
            }
        }
        if all.is_empty() {
            self.0 = None;
        }
        taken
    }
}

impl State {
    /// The answer on `stream`, which came (a frame) or will not (the peer gave the stream
    /// up), if one was expected: its frame taken and the stream closed.
    pub(super) fn answer(&mut self, stream: u32) -> Option<Answered> {
        let expect = self.expected.take_if(|e| e.stream == stream).pop()?;
        let result = match self.link.take(stream) {
            Ok(Some(Inbound::Message(msg))) => Ok(msg),
            Ok(Some(Inbound::Chunk(_))) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a chunk where a single answer was expected",
            )),
            Ok(None) | Err(_) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the peer gave the request up",
            )),
        };
        self.link.close(stream);
        Some(Answered {
            then: expect.then,
            result,
        })
    }

    /// The answers that will not come: all of them once the connection is closed (`why`),
    /// else those past their deadline at `now` (their streams given up, the peer told).
    pub(super) fn answers_failed(&mut self, now: Tick, closed: Option<&str>) -> Vec<Answered> {
        let late =
            |e: &Expect| closed.is_some() || now.since(e.deadline) > std::time::Duration::ZERO;
        let failed = self.expected.take_if(late);
        failed
            .into_iter()
            .map(|e| {
                let error = match closed {
                    Some(why) => io::Error::new(io::ErrorKind::ConnectionAborted, why.to_string()),
                    None => {
                        self.link.cancel(e.stream);
                        io::ErrorKind::TimedOut.into()
                    }
                };
                Answered {
                    then: e.then,
                    result: Err(error),
                }
            })
            .collect()
    }
}
