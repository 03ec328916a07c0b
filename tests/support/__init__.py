"""Test support code shared by tests and benchmarks (tiny models built from configs)."""
