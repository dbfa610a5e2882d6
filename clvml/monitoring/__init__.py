"""Monitoring of scores in production: realised outcomes, champion and challenger."""
