"""Extractor stage."""
