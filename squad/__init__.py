"""squad: specialist LLM agents that talk only through git-committed decision records."""

__version__ = "0.1.0"
