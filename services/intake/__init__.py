"""Intake: validates and normalises raw reports into EventNormalised, deduplicates, dead-letters."""
