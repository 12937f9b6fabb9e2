//! Integration tests of the ingest tier: real HTTP and TCP listeners on port 0, with the partition
//! receivers held by the test so it can see exactly what was admitted.

mod access;
mod http;
mod support;
mod tcp;
