"""Reconciler stage."""
