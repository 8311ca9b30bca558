"""Helpers of the hardening suites (tests/test_hard_*.py): child programs and trace checks."""
