"""Helpers shared by several test files: builders of test data, stand-ins, a fake server.

Not test files (pytest collects nothing here); fixtures live in tests/conftest.py.
"""
