//! Bytes from a socket into the edge's framing: whatever arrives, the edge must not panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| roost_broker::fuzzing::read_socket(bytes));
