"""Explanations: exact TreeSHAP contributions, global and segment drivers, per-customer reason codes."""
