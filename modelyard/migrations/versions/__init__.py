"""Revision files, one per schema change, named ``v<rev>_<slug>.py``."""
