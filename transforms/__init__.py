"""Graph rewrites: preparation (folding) and the QLinear integer rewrite, one rule a file."""
