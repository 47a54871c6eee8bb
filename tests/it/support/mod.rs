//! Shared test helpers: spawn the bridge on 127.0.0.1:0 against a mock upstream.
