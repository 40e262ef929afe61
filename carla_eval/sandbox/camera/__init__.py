"""Perspective cameras of the sandbox: scene, appearance, renderer (see renderer.py)."""
