"""The pytest plugin (entry point pytest11): fixtures for tests that use containers (being written; issue 15)."""
