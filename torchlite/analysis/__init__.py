"""Whole-scan analysis and its evaluation."""
