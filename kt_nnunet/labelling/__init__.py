"""Teacher labelling: fusion strategies, confidence and the ignore label, provenance, resumable writing."""
