"""Decoding engine."""
