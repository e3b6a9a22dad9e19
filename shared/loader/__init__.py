"""Loader stage."""
