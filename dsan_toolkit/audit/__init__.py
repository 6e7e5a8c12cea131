"""Reproducibility audits of run and bench directories."""
