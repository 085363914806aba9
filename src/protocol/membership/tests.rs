//! Unit tests of the membership core, with fake peers and time passed in.
