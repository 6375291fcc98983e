"""Developer tooling for eventshop: native runtime, replay, test fixtures."""
