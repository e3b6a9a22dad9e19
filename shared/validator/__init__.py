"""Validator stage."""
