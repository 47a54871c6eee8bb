//! A mock model provider for tests, demos and benchmarks.
