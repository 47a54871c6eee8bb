//! Checks every fixture under `tests/fixtures/` against the documented event rules.
