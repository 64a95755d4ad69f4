//! Integration tests: every test starts the real server on port 0 and talks to it
//! over real sockets with real WebSocket clients. One binary, one module per
//! behaviour, shared helpers in `util`.

mod util;

mod cli;
mod conformance;
mod echo;
mod embedding;
mod fan_out;
mod flash_policy;
mod handshake;
mod handshake_script;
mod heartbeat;
mod http;
mod metrics;
mod presence;
mod publish;
mod resume;
mod shutdown;
mod slow_client;
mod sse;
mod sse_client;
mod ticks;
