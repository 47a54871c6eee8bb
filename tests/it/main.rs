//! The integration tests: one binary, so two cores link it once.

mod support;
