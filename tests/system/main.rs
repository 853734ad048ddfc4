//! System tests: each boots a real Roost process on ephemeral ports with its own data dir and
//! drives it with real clients. `TEST_LOG=debug` shows the server's logs.

mod acl;
mod auth;
mod bots;
mod browser;
mod chat;
mod cluster;
mod durability;
mod examples;
mod harness;
mod limits;
mod media;
mod mqtt5;
mod openapi;
mod presence;
mod push;
mod room_events;
mod rooms_all;
mod security;
mod split;
mod startup;
mod tls;
