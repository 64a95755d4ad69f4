//! RFC 6455 conformance cases (Autobahn sections 1-7, 9), crafted over raw sockets.
