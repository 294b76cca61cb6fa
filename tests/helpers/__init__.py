"""Test-only helpers shared by the test suites (not shipped in src)."""
