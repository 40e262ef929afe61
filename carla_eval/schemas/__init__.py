"""JSON schemas of the files the harness writes (package data)."""
