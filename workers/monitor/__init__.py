"""Monitoring: are the answers right? Capture, feedback, quality and drift per version."""
