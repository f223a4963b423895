"""Thin Prefect tasks: each executes one step of a plan through one adapter."""
